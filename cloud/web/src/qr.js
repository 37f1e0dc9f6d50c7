// QR codes drawn as SVG: one path of the dark modules, so it scales crisply.
import { encode } from 'uqr';
import { svg } from './dom.js';

// qrCode returns an <svg> of text's QR code, labelled for assistive tech.
export function qrCode(text, label, ecc = 'M') {
  const { data, size } = encode(text, { ecc, border: 4 });
  let d = '';
  for (let y = 0; y < size; y++) {
    const row = data[y];
    for (let x = 0; x < size; x++) {
      if (!row[x]) continue;
      let w = 1;
      while (x + w < size && row[x + w]) w++;
      d += `M${x} ${y}h${w}v1h-${w}z`;
      x += w - 1;
    }
  }
  return svg('svg', {
    class: 'qr',
    viewBox: `0 0 ${size} ${size}`,
    role: 'img',
    'aria-label': label,
    'shape-rendering': 'crispEdges',
  },
  svg('rect', { width: size, height: size, fill: '#fff' }),
  svg('path', { d, fill: '#000' }));
}
