// Leaflet maps as the app uses them: canvas rendering (no WebGL, no marker
// images), the configured tile layer if any, and small divIcon markers.
import L from 'leaflet';
import { config } from './api.js';
import { h } from './dom.js';

// createMap makes a map in container. With no tile URL configured the map
// has a plain background; a tile that fails to load leaves a gap only.
export function createMap(container) {
  const map = L.map(container, {
    preferCanvas: true,
    zoomControl: true,
    attributionControl: true,
    worldCopyJump: false,
    fadeAnimation: false,
  });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com" target="_blank" rel="noopener">Leaflet</a>');
  const url = config.tiles && config.tiles.url;
  if (url) {
    L.tileLayer(url, {
      attribution: config.tiles.attribution || '',
      maxZoom: 19,
      crossOrigin: false,
      detectRetina: false,
    }).addTo(map);
  } else {
    container.classList.add('no-tiles');
  }
  map.setView([20, 0], 2);
  return map;
}

// pin is a marker icon drawn by CSS: className picks its look, label is an
// optional short text inside it.
export function pin(className, label, size = 16) {
  const html = h('span', { class: 'pin-dot' }, label || null);
  return L.divIcon({ className: 'pin ' + className, html, iconSize: [size, size], iconAnchor: [size / 2, size / 2] });
}

// refitOnResize calls fit when the map's size changes (a rotated phone, a
// resized window) until the person moves or zooms the map themselves.
export function refitOnResize(map, fit) {
  let moved = false;
  const mine = () => {
    moved = true;
  };
  map.on('dragstart', mine);
  const el = map.getContainer();
  el.addEventListener('wheel', mine, { passive: true });
  el.addEventListener('dblclick', mine);
  el.addEventListener('keydown', mine);
  const zoom = el.querySelector('.leaflet-control-zoom');
  if (zoom) zoom.addEventListener('click', mine);
  map.on('resize', () => {
    if (!moved) fit();
  });
}

export { L };
