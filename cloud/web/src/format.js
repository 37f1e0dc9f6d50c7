// Formatting of distances, durations, speeds and times for people, in the
// browser's locale and time zone.

const nf = (digits) => new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
const n0 = nf(0);
const n1 = nf(1);
const n2 = nf(2);

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateTimeSec = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeSec = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

export function km(metres) {
  if (!finite(metres)) return '–';
  if (metres < 1000) return n0.format(metres) + ' m';
  return (metres < 100000 ? n2 : n1).format(metres / 1000) + ' km';
}

export function metres(m) {
  return finite(m) ? n0.format(m) + ' m' : '–';
}

export function kmh(mps) {
  return finite(mps) ? n1.format(mps * 3.6) + ' km/h' : '–';
}

export function percent(v) {
  return finite(v) ? n0.format(v) + ' %' : '–';
}

export function count(v) {
  return finite(v) ? n0.format(v) : '–';
}

// duration formats seconds as h:mm:ss.
export function duration(seconds) {
  if (!finite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
}

function date(v) {
  if (!v) return null;
  const d = v instanceof Date ? v : new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function when(v) {
  const d = date(v);
  return d ? dateTime.format(d) : '–';
}

export function whenExact(v) {
  const d = date(v);
  return d ? dateTimeSec.format(d) : '–';
}

export function clock(v) {
  const d = date(v);
  return d ? timeSec.format(d) : '–';
}

// ago formats the time since v, e.g. "12 s ago".
export function ago(v, now = Date.now()) {
  const d = date(v);
  if (!d) return 'never';
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < -5) return 'in the future';
  if (s < 60) return `${Math.max(0, s)} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ago`;
  return `${Math.floor(hr / 24)} d ago`;
}

// isoDate is the yyyy-mm-dd form of a date in local time.
export function isoDate(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

// dayStart and dayEnd turn a yyyy-mm-dd value of a date input into the
// RFC 3339 instants where that local day begins and ends.
export function dayStart(value) {
  const [y, m, d] = value.split('-').map(Number);
  const t = new Date(y, m - 1, d, 0, 0, 0, 0);
  return Number.isNaN(t.getTime()) ? '' : t.toISOString();
}

export function dayEnd(value) {
  const [y, m, d] = value.split('-').map(Number);
  const t = new Date(y, m - 1, d, 23, 59, 59, 999);
  return Number.isNaN(t.getTime()) ? '' : t.toISOString();
}

// trackName is a track's name, or a name made from its start.
export function trackName(t) {
  return t.name && t.name.trim() ? t.name : `Track of ${when(t.started)}`;
}
