// One track (/tracks/{id}): the line on a map coloured by speed, its
// summary, speed and elevation charts sharing a cursor with the map, a
// replay slider, exports, renaming, deleting and stopping.
import uPlot from 'uplot';
import { api, message, quiet } from '../api.js';
import { alertBox, confirmDialog, field, h, statusBox } from '../dom.js';
import { clock, count, duration, km, kmh, metres, trackName, whenExact } from '../format.js';
import { createMap, L, pin, refitOnResize } from '../map.js';
import { loading } from '../shell.js';

// Tracks with fewer points than this are drawn whole.
const SIMPLIFY_FROM = 5000;

// Speed colours, slow to fast.
const COLOURS = ['#3a53a4', '#2b83ba', '#1b9e8a', '#5cb247', '#d9c02b', '#f28e2b', '#d6301d'];

const R = 6371008.8;
const rad = Math.PI / 180;

function haversine(lat1, lon1, lat2, lon2) {
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * R * Math.asin(Math.min(1, Math.sqrt(a)));
}

// tolerance is the simplification, in metres, that brings the track down
// to a few thousand points, or 0 for none.
export function tolerance(summary) {
  if (!summary || !(summary.points >= SIMPLIFY_FROM) || !Array.isArray(summary.bbox)) return 0;
  const [minLon, minLat, maxLon, maxLat] = summary.bbox;
  const diag = haversine(minLat, minLon, maxLat, maxLon);
  return Math.max(1, Math.round((diag / 5000) * 10) / 10);
}

// series turns the points into columns for the map and charts: times in
// seconds, positions, speeds in m/s (measured, else from the neighbours)
// and altitudes (null when unknown). Points without a fix are left out.
function series(points) {
  const pts = points.filter((p) => p && p.fix !== 'none' && Number.isFinite(p.lat) && Number.isFinite(p.lon));
  const n = pts.length;
  const t = new Array(n);
  const lat = new Float64Array(n);
  const lon = new Float64Array(n);
  const speed = new Float64Array(n);
  const alt = new Array(n);
  let hasAlt = false;
  for (let i = 0; i < n; i++) {
    const p = pts[i];
    t[i] = Date.parse(p.time) / 1000;
    lat[i] = p.lat;
    lon[i] = p.lon;
    speed[i] = typeof p.speed === 'number' ? p.speed : NaN;
    alt[i] = typeof p.alt === 'number' ? p.alt : null;
    if (alt[i] !== null) hasAlt = true;
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isNaN(speed[i])) continue;
    const a = Math.max(0, i - 1);
    const b = Math.min(n - 1, i + 1);
    const dt = t[b] - t[a];
    speed[i] = dt > 0 ? haversine(lat[a], lon[a], lat[b], lon[b]) / dt : 0;
  }
  return { pts, n, t, lat, lon, speed, alt, hasAlt };
}

// scale picks the speed buckets: equal steps of a round size in km/h,
// enough to hold nearly all of the track's speeds.
function scale(speed) {
  const kmhs = Array.from(speed, (v) => v * 3.6).sort((a, b) => a - b);
  const top = kmhs.length ? kmhs[Math.min(kmhs.length - 1, Math.floor(kmhs.length * 0.98))] : 0;
  const steps = [1, 2, 3, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500];
  const want = top / (COLOURS.length - 1);
  const step = steps.find((s) => s >= want) || steps[steps.length - 1];
  return {
    step,
    bucket: (mps) => Math.max(0, Math.min(COLOURS.length - 1, Math.floor((mps * 3.6) / step))),
  };
}

// smooth averages each speed with its neighbours so that GPS noise does
// not flicker the line's colour.
function smooth(speed, w = 2) {
  const n = speed.length;
  const out = new Float64Array(n);
  let sum = 0;
  let lo = 0;
  let hi = -1;
  for (let i = 0; i < n; i++) {
    while (hi < Math.min(n - 1, i + w)) sum += speed[++hi];
    while (lo < i - w) sum -= speed[lo++];
    out[i] = sum / (hi - lo + 1);
  }
  return out;
}

function legend(sc) {
  return h('div', { class: 'legend', 'aria-label': 'Speed colours' },
    h('span', { class: 'legend-title' }, 'km/h'),
    COLOURS.map((c, i) => h('span', { class: 'legend-item' },
      h('span', { class: 'swatch', style: `background:${c}` }),
      i === COLOURS.length - 1 ? `${i * sc.step}+` : `${i * sc.step}–${(i + 1) * sc.step}`)));
}

// drawLine adds the track to the map: a casing under the line, then one
// multi-part polyline per speed bucket, so that even long tracks are a
// handful of canvas layers.
function drawLine(map, s, sc) {
  const latlngs = new Array(s.n);
  for (let i = 0; i < s.n; i++) latlngs[i] = L.latLng(s.lat[i], s.lon[i]);
  const layers = L.featureGroup();
  if (s.n >= 2) {
    L.polyline(latlngs, { className: 'track-casing', color: '#10202a', weight: 7, opacity: 0.35, interactive: false }).addTo(layers);
    const sm = smooth(s.speed);
    const parts = COLOURS.map(() => []);
    let run = null;
    let runBucket = -1;
    for (let i = 0; i < s.n - 1; i++) {
      const b = sc.bucket((sm[i] + sm[i + 1]) / 2);
      if (b !== runBucket) {
        run = [latlngs[i]];
        parts[b].push(run);
        runBucket = b;
      }
      run.push(latlngs[i + 1]);
    }
    parts.forEach((lines, b) => {
      if (lines.length) L.polyline(lines, { color: COLOURS[b], weight: 4, opacity: 1, interactive: false, lineJoin: 'round' }).addTo(layers);
    });
  }
  if (s.n >= 1) {
    L.marker(latlngs[0], { icon: pin('pin-start'), title: 'Start', alt: 'Start', keyboard: false }).addTo(layers);
    if (s.n >= 2) L.marker(latlngs[s.n - 1], { icon: pin('pin-end'), title: 'End', alt: 'End', keyboard: false }).addTo(layers);
  }
  layers.addTo(map);
  const fit = () => {
    if (s.n >= 2) map.fitBounds(L.latLngBounds(latlngs), { padding: [24, 24], animate: false, maxZoom: 17 });
    else if (s.n === 1) map.setView(latlngs[0], 16, { animate: false });
  };
  fit();
  refitOnResize(map, fit);
  return latlngs;
}

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

const hm = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const hms = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dayHm = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

// timeTicks labels the time axis in the browser's locale, with the day
// when the track spans more than one.
function timeTicks(u, splits) {
  const span = u.scales.x.max - u.scales.x.min;
  const f = span > 36 * 3600 ? dayHm : span < 600 ? hms : hm;
  return splits.map((v) => f.format(new Date(v * 1000)));
}

function chartOptions({ width, label, unit, colour, sync, digits, onCursor }) {
  const axis = cssVar('--muted', '#5b6770');
  const grid = cssVar('--grid', 'rgba(0,0,0,0.08)');
  const fmt = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(digits)} ${unit}`);
  return {
    width,
    height: width < 500 ? 170 : 210,
    cursor: {
      sync: { key: sync, setSeries: false },
      drag: { x: true, y: false, setScale: true },
      points: { size: 8 },
    },
    scales: { x: { time: true } },
    legend: { show: true, live: true },
    series: [
      { label: 'Time', value: (u, v) => (v === null || v === undefined ? '–' : clock(v * 1000)) },
      { label, stroke: colour, width: 1.5, fill: colour + '22', points: { show: false }, spanGaps: false, value: (u, v) => fmt(v) },
    ],
    axes: [
      { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, values: timeTicks, space: 70 },
      { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 50 },
    ],
    hooks: {
      setCursor: [(u) => onCursor(u.cursor.idx)],
    },
  };
}

export async function trackPage(ctx) {
  const id = ctx.params[0];
  const base = '/api/v1/tracks/' + encodeURIComponent(id);
  const head = h('div', { class: 'page-head' }, h('p', { class: 'crumbs' }, h('a', { href: '/tracks' }, '← Tracks')), h('h1', null, 'Track'));
  const wait = loading('Loading the track…');
  ctx.main.append(head, wait);

  let track;
  let pointsAnswer;
  try {
    track = await api(base, { signal: ctx.signal });
    ctx.title(trackName(track));
    head.querySelector('h1').textContent = trackName(track);
    const tol = tolerance(track.summary);
    pointsAnswer = await api(`${base}/points?format=json${tol ? '&simplify=' + tol : ''}`, { signal: ctx.signal });
  } finally {
    wait.remove();
  }
  if (ctx.signal.aborted) return;
  if (pointsAnswer && pointsAnswer.track) track = { ...track, ...pointsAnswer.track, recording: track.recording, auto: track.auto };
  const s = series((pointsAnswer && pointsAnswer.points) || []);
  const sc = scale(s.speed);
  const sum = track.summary || {};

  const alert = alertBox();
  const status = statusBox();
  const title = head.querySelector('h1');
  title.textContent = trackName(track);
  ctx.title(trackName(track));

  // Badges and the stop button of a recording track.
  const badges = h('div', { class: 'badges' },
    track.recording ? h('span', { class: 'badge recording' }, 'recording') : null,
    track.auto ? h('span', { class: 'badge subtle' }, 'automatic') : null,
    track.stale ? h('span', { class: 'badge subtle', title: 'Late points are being added to the summary' }, 'updating') : null);
  if (track.recording) {
    const stopBtn = h('button', { type: 'button', class: 'danger' }, 'Stop recording');
    stopBtn.addEventListener('click', async () => {
      stopBtn.disabled = true;
      alert.clear();
      try {
        await api(base + '/stop', { method: 'POST', signal: ctx.signal });
        ctx.navigate(location.pathname, { replace: true });
      } catch (err) {
        if (quiet(err)) return;
        stopBtn.disabled = false;
        alert.show(message(err));
      }
    });
    badges.append(stopBtn);
  }
  head.append(badges);

  // Map.
  const mapEl = h('div', { class: 'map track-map', role: 'region', 'aria-label': 'Map of the track' });
  const mapPanel = h('section', { class: 'map-panel' }, mapEl, legend(sc));

  // Summary.
  const fact = (k, v) => h('div', null, h('dt', null, k), h('dd', null, v));
  const summary = h('section', { class: 'panel summary', 'aria-labelledby': 'sum-h' },
    h('h2', { id: 'sum-h' }, 'Summary'),
    h('dl', { class: 'facts grid' },
      fact('Distance', km(sum.distance_m)),
      fact('Duration', duration(sum.duration_s)),
      fact('Moving time', duration(sum.moving_s)),
      fact('Average speed', kmh(sum.avg_speed_mps)),
      fact('Max speed', kmh(sum.max_speed_mps)),
      fact('Elevation gain', metres(sum.elevation_gain_m)),
      fact('Elevation loss', metres(sum.elevation_loss_m)),
      fact('Points', count(sum.points)),
      fact('Started', h('time', { datetime: track.started }, whenExact(track.started))),
      fact('Stopped', track.stopped ? h('time', { datetime: track.stopped }, whenExact(track.stopped)) : (track.recording ? 'still recording' : '–')),
      fact('Device', track.device)));

  // Replay.
  const range = h('input', { type: 'range', id: 'replay', min: 0, max: Math.max(0, s.n - 1), step: 1, value: 0, disabled: s.n < 2 });
  const play = h('button', { type: 'button', class: 'secondary play', 'aria-pressed': 'false', disabled: s.n < 2 }, 'Play');
  const readout = h('output', { for: 'replay', class: 'readout', 'aria-live': 'off' }, s.n ? 'Move the slider to follow the track.' : 'This track has no points yet.');
  const replay = h('section', { class: 'panel replay', 'aria-labelledby': 'replay-h' },
    h('h2', { id: 'replay-h' }, 'Replay'),
    h('label', { for: 'replay' }, 'Position along the track'),
    h('div', { class: 'replay-row' }, play, range),
    readout);

  // Exports.
  const file = (track.name || 'track-' + track.id).replace(/[^A-Za-z0-9_-]+/g, '_');
  const exportsEl = h('section', { class: 'panel exports', 'aria-labelledby': 'exp-h' },
    h('h2', { id: 'exp-h' }, 'Export'),
    h('div', { class: 'button-row' },
      h('a', { class: 'button secondary', href: `${base}/points?format=gpx`, download: file + '.gpx', 'data-format': 'gpx' }, 'GPX'),
      h('a', { class: 'button secondary', href: `${base}/points?format=geojson`, download: file + '.geojson', 'data-format': 'geojson' }, 'GeoJSON'),
      h('a', { class: 'button secondary', href: `${base}/points?format=csv`, download: file + '.csv', 'data-format': 'csv' }, 'CSV')));

  // Rename.
  const nameField = field('Track name', { type: 'text', name: 'name', value: track.name || '', maxlength: 200, autocomplete: 'off', placeholder: trackName({ ...track, name: '' }) });
  const saveBtn = h('button', { type: 'submit', class: 'primary' }, 'Save');
  const renameForm = h('form', { class: 'inline-form rename' }, nameField.el, saveBtn);
  renameForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    alert.clear();
    status.clear();
    saveBtn.disabled = true;
    try {
      const t = await api(base, { method: 'PATCH', body: { name: nameField.input.value.trim() }, signal: ctx.signal });
      track = { ...track, ...t };
      title.textContent = trackName(track);
      ctx.title(trackName(track));
      status.show('Name saved.');
    } catch (err) {
      if (!quiet(err)) alert.show(message(err));
    } finally {
      saveBtn.disabled = false;
    }
  });

  // Delete.
  const deleteBtn = h('button', { type: 'button', class: 'danger' }, 'Delete track…');
  deleteBtn.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Delete this track?',
      text: `“${trackName(track)}” and its ${count(sum.points)} points will be deleted. This cannot be undone.`,
      confirm: 'Delete',
    });
    if (!ok) return;
    alert.clear();
    deleteBtn.disabled = true;
    try {
      await api(base, { method: 'DELETE', signal: ctx.signal });
      ctx.navigate('/tracks');
    } catch (err) {
      if (quiet(err)) return;
      deleteBtn.disabled = false;
      alert.show(message(err));
    }
  });
  const manage = h('section', { class: 'panel manage', 'aria-labelledby': 'manage-h' },
    h('h2', { id: 'manage-h' }, 'Manage'), renameForm, h('div', { class: 'button-row' }, deleteBtn), status.el);

  // Charts.
  const speedBox = h('div', { class: 'chart', id: 'chart-speed' });
  const altBox = h('div', { class: 'chart', id: 'chart-elevation' });
  const charts = h('section', { class: 'charts', 'aria-label': 'Charts' },
    h('figure', { class: 'panel chart-panel' }, h('figcaption', null, h('h2', null, 'Speed (km/h)')), speedBox),
    h('figure', { class: 'panel chart-panel' }, h('figcaption', null, h('h2', null, 'Elevation (m)')), altBox,
      s.hasAlt ? null : h('p', { class: 'muted small' }, 'No altitude in this track.')));

  ctx.main.append(alert.el, h('div', { class: 'track-layout' },
    mapPanel,
    h('div', { class: 'side' }, replay, summary, exportsEl, manage),
    charts));
  ctx.focus();

  // Draw.
  const map = createMap(mapEl);
  ctx.onLeave(() => map.remove());
  const latlngs = drawLine(map, s, sc);

  let cursorMarker = null;
  function showPoint(i) {
    if (i === null || i === undefined || i < 0 || i >= s.n) return;
    if (!cursorMarker) {
      cursorMarker = L.marker(latlngs[i], { icon: pin('pin-cursor', null, 18), title: 'Selected point', alt: 'Selected point', keyboard: false, interactive: false, zIndexOffset: 1000 }).addTo(map);
    } else {
      cursorMarker.setLatLng(latlngs[i]);
    }
    const el = cursorMarker.getElement();
    if (el) el.dataset.index = String(i);
  }

  function describe(i) {
    const parts = [clock(s.t[i] * 1000), kmh(s.speed[i])];
    if (s.alt[i] !== null) parts.push(metres(s.alt[i]));
    return parts.join(' · ');
  }

  const syncKey = 'track-' + id;
  const speedData = [s.t, Array.from(s.speed, (v) => Math.round(v * 36) / 10)];
  const altData = [s.t, s.alt];
  const plots = [];
  const onCursor = (i) => showPoint(i);
  const make = (box, data, opts) => {
    const u = new uPlot(chartOptions({ ...opts, width: Math.max(200, box.clientWidth), sync: syncKey, onCursor }), data, box);
    plots.push({ u, box });
    return u;
  };
  make(speedBox, speedData, { label: 'Speed', unit: 'km/h', colour: '#2b83ba', digits: 1 });
  make(altBox, altData, { label: 'Elevation', unit: 'm', colour: '#5cb247', digits: 0 });

  // Zooming one chart zooms the other.
  let zooming = false;
  for (const { u } of plots) {
    u.hooks.setScale = u.hooks.setScale || [];
    u.hooks.setScale.push((self, key) => {
      if (key !== 'x' || zooming) return;
      zooming = true;
      for (const { u: other } of plots) {
        if (other !== self) other.setScale('x', { min: self.scales.x.min, max: self.scales.x.max });
      }
      zooming = false;
    });
  }
  ctx.onLeave(() => plots.forEach(({ u }) => u.destroy()));

  let frame = 0;
  const onResize = () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      for (const { u, box } of plots) {
        const w = Math.max(200, box.clientWidth);
        u.setSize({ width: w, height: w < 500 ? 170 : 210 });
      }
    });
  };
  window.addEventListener('resize', onResize);
  ctx.onLeave(() => {
    window.removeEventListener('resize', onResize);
    cancelAnimationFrame(frame);
  });

  // Replay: the slider and Play move the same marker.
  const moveTo = (i) => {
    showPoint(i);
    readout.textContent = describe(i);
  };
  range.addEventListener('input', () => moveTo(Number(range.value)));
  let playing = 0;
  let last = 0;
  const stopPlay = () => {
    cancelAnimationFrame(playing);
    playing = 0;
    play.textContent = 'Play';
    play.setAttribute('aria-pressed', 'false');
  };
  const perSecond = Math.max(1, s.n / 30); // a whole replay takes about 30 s
  let pos = 0;
  const stepPlay = (now) => {
    const dt = last ? (now - last) / 1000 : 0;
    last = now;
    pos = Math.min(s.n - 1, pos + dt * perSecond);
    range.value = String(Math.floor(pos));
    moveTo(Math.floor(pos));
    if (pos >= s.n - 1) stopPlay();
    else playing = requestAnimationFrame(stepPlay);
  };
  play.addEventListener('click', () => {
    if (playing) {
      stopPlay();
      return;
    }
    pos = Number(range.value) >= s.n - 1 ? 0 : Number(range.value);
    last = 0;
    play.textContent = 'Pause';
    play.setAttribute('aria-pressed', 'true');
    playing = requestAnimationFrame(stepPlay);
  });
  ctx.onLeave(stopPlay);

  document.body.dataset.ready = 'track';
  if (performance.mark) performance.mark('tg-ready-track');
}
