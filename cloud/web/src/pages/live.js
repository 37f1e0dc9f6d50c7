// Live positions (/live): a marker per device, moved by the cloud's
// Server-Sent Events, and a list with each device's last-seen time and
// battery.
import { api, devicesWithState, message, quiet } from '../api.js';
import { alertBox, h } from '../dom.js';
import { ago, kmh, percent, whenExact } from '../format.js';
import { createMap, L, pin, refitOnResize } from '../map.js';
import { loading } from '../shell.js';

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

export async function livePage(ctx) {
  ctx.title('Live');
  const alert = alertBox();
  const conn = h('span', { class: 'conn', role: 'status' }, 'Connecting…');
  const note = h('p', { class: 'muted small', role: 'status' });
  const fitBtn = h('button', { type: 'button', class: 'secondary' }, 'Show all');
  const listEl = h('ul', { class: 'live-list', 'aria-label': 'Devices' });
  const wait = loading('Loading devices…');
  const mapEl = h('div', { class: 'map live-map', role: 'region', 'aria-label': 'Map of your devices' });
  ctx.main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Live'), h('div', { class: 'head-tools' }, conn, fitBtn)),
    alert.el,
    h('div', { class: 'live-layout' },
      h('section', { class: 'map-panel' }, mapEl),
      h('section', { class: 'panel live-side', 'aria-labelledby': 'live-devices-h' },
        h('h2', { id: 'live-devices-h' }, 'Devices'), wait, listEl, note)));
  ctx.focus();

  const map = createMap(mapEl);
  ctx.onLeave(() => map.remove());

  const state = new Map(); // id → { device, row, marker, pos, seen, batt, parts }

  function entry(d) {
    let e = state.get(d.id);
    if (e) return e;
    const label = d.name || d.id;
    const seen = h('time', { class: 'seen' }, 'never');
    const batt = h('span', { class: 'batt' }, '–');
    const speed = h('span', { class: 'speed' }, '–');
    const focusBtn = h('button', { type: 'button', class: 'link', 'aria-label': `Show ${label} on the map` }, label);
    const row = h('li', { class: 'live-row', dataset: { device: d.id } },
      h('div', { class: 'live-name' }, h('span', { class: 'dot', 'aria-hidden': 'true' }), focusBtn, d.name ? h('span', { class: 'muted id' }, d.id) : null),
      h('dl', { class: 'facts compact' },
        h('div', null, h('dt', null, 'Last seen'), h('dd', null, seen)),
        h('div', null, h('dt', null, 'Battery'), h('dd', null, batt)),
        h('div', null, h('dt', null, 'Speed'), h('dd', null, speed))));
    e = { device: d, row, marker: null, pos: null, seen: null, batt: null, els: { seen, batt, speed } };
    focusBtn.addEventListener('click', () => {
      if (e.pos) map.setView([e.pos.lat, e.pos.lon], Math.max(map.getZoom(), 15));
      else note.textContent = `${label} has sent no position yet.`;
    });
    state.set(d.id, e);
    listEl.append(row);
    return e;
  }

  function tick() {
    const now = Date.now();
    for (const e of state.values()) {
      e.els.seen.textContent = e.seen ? ago(e.seen, now) : 'never';
      e.row.classList.toggle('stale', !e.seen || now - Date.parse(e.seen) > 5 * 60 * 1000);
    }
  }

  function setPosition(e, p, time) {
    if (!p || !finite(p.lat) || !finite(p.lon)) return;
    const when = time || p.time;
    if (e.seen && when && Date.parse(when) < Date.parse(e.seen)) return; // older than what is shown
    e.pos = p;
    e.seen = when || e.seen;
    e.row.dataset.lat = String(p.lat);
    e.row.dataset.lon = String(p.lon);
    if (e.seen) {
      e.els.seen.setAttribute('datetime', e.seen);
      e.els.seen.title = whenExact(e.seen);
    }
    if (finite(p.batt)) e.batt = p.batt;
    e.els.batt.textContent = percent(e.batt);
    e.els.speed.textContent = finite(p.speed) ? kmh(p.speed) : '–';
    const ll = [p.lat, p.lon];
    if (e.marker) e.marker.setLatLng(ll);
    else {
      const id = e.device.id;
      e.marker = L.marker(ll, { icon: pin('pin-device', id.slice(-2), 30), title: id, alt: id, keyboard: false, riseOnHover: true }).addTo(map);
      e.marker.bindTooltip(e.device.name ? `${e.device.name} (${id})` : id, { direction: 'top', offset: [0, -14] });
    }
    tick();
  }

  function setStatus(e, st) {
    if (st && finite(st.batt)) {
      e.batt = st.batt;
      e.els.batt.textContent = percent(e.batt);
    }
  }

  function fitAll() {
    const pts = [...state.values()].filter((e) => e.pos).map((e) => [e.pos.lat, e.pos.lon]);
    if (pts.length === 1) map.setView(pts[0], 15, { animate: false });
    else if (pts.length > 1) map.fitBounds(pts, { padding: [40, 40], maxZoom: 16, animate: false });
  }
  fitBtn.addEventListener('click', fitAll);
  refitOnResize(map, fitAll);

  try {
    const devices = await devicesWithState(ctx.signal);
    for (const d of devices) {
      const e = entry(d);
      if (d.position) setPosition(e, d.position, d.last_seen);
      else if (d.last_seen) e.seen = d.last_seen;
      setStatus(e, d.status);
    }
    if (!devices.length) note.append('No devices yet. ', h('a', { href: '/devices' }, 'Register a device'), ' to see it here.');
    fitAll();
  } catch (err) {
    if (quiet(err)) throw err;
    alert.show(message(err));
  } finally {
    wait.remove();
  }
  tick();
  const ticker = setInterval(tick, 1000);
  ctx.onLeave(() => clearInterval(ticker));

  // The event stream. "expired" means the credentials behind it ran out:
  // a new stream is opened a second later. A stream the server refused is
  // checked against the session (a 401 goes to the sign-in page) and tried
  // again.
  let es = null;
  let retry = 0;
  let closed = false;
  const setConn = (text, cls) => {
    conn.textContent = text;
    conn.className = 'conn ' + (cls || '');
  };
  function connect() {
    if (closed) return;
    es = new EventSource('/api/v1/live');
    es.addEventListener('open', () => setConn('Live', 'on'));
    es.addEventListener('position', (ev) => {
      const d = parse(ev.data);
      if (!d || !d.device) return;
      const e = entry({ id: d.device, name: '' });
      const hadMarker = Boolean(e.marker);
      setPosition(e, d.position, d.time);
      if (!hadMarker && e.marker && [...state.values()].filter((x) => x.marker).length === 1) fitAll();
    });
    es.addEventListener('status', (ev) => {
      const d = parse(ev.data);
      if (d && d.device) setStatus(entry({ id: d.device, name: '' }), d.status);
    });
    es.addEventListener('dropped', (ev) => {
      const d = parse(ev.data);
      note.textContent = `Missed ${d && d.count ? d.count : 'some'} updates while the connection was slow.`;
    });
    es.addEventListener('expired', () => {
      es.close();
      setConn('Reconnecting…');
      retry = setTimeout(connect, 1000);
    });
    es.addEventListener('error', () => {
      if (!es || es.readyState !== EventSource.CLOSED) {
        setConn('Reconnecting…');
        return;
      }
      setConn('Offline', 'off');
      api('/api/v1/devices', { signal: ctx.signal })
        .then(() => {
          retry = setTimeout(connect, 5000);
        })
        .catch((err) => {
          if (quiet(err)) return;
          retry = setTimeout(connect, 5000);
        });
    });
  }
  const stop = () => {
    closed = true;
    clearTimeout(retry);
    if (es) es.close();
  };
  ctx.onLeave(stop);
  window.addEventListener('pagehide', stop, { once: true });
  ctx.onLeave(() => window.removeEventListener('pagehide', stop));
  connect();
  document.body.dataset.ready = 'live';
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
