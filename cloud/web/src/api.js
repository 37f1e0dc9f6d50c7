// The page's configuration and same-origin calls to the cloud's API.

const DEFAULT_CONFIG = {
  user: '',
  csrf: '',
  tiles: { url: '', attribution: '' },
  mqtt: { host: location.hostname, port: 1883, tls: false, ws: false },
  issuer: location.origin,
};

// readConfig reads the JSON object the server puts in #tg-config.
function readConfig() {
  const el = document.getElementById('tg-config');
  let cfg = {};
  try {
    const text = el ? el.textContent.trim() : '';
    if (text && text !== '__TG_CONFIG__') cfg = JSON.parse(text) || {};
  } catch {
    cfg = {};
  }
  return {
    ...DEFAULT_CONFIG,
    ...cfg,
    tiles: { ...DEFAULT_CONFIG.tiles, ...(cfg.tiles || {}) },
    mqtt: { ...DEFAULT_CONFIG.mqtt, ...(cfg.mqtt || {}) },
  };
}

export const config = readConfig();

// ApiError is an answer other than 2xx: status, and the problem's title,
// detail and code when the body was a problem object.
export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || `The server answered ${status}.`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = p;
    this.code = p.code || '';
  }
}

// SessionEnded is thrown after a 401 answer, while the page goes to the
// sign-in page: there is nothing to show.
export class SessionEnded extends Error {
  constructor() {
    super('The session has ended.');
    this.name = 'SessionEnded';
  }
}

let leaving = false;

// toSignIn sends the person to the sign-in page, to come back here.
export function toSignIn() {
  if (leaving) return;
  leaving = true;
  location.assign('/login?return_to=' + encodeURIComponent(location.pathname + location.search));
}

// api calls the API at path. body (any JSON value) is sent as JSON; a Blob
// (a File from a file input) is sent as it is, as
// application/octet-stream. It resolves to the parsed JSON answer (null
// for 204) and rejects with ApiError, SessionEnded, or the fetch's own
// error (e.g. AbortError).
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json, application/problem+json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = config.csrf;
  const init = { method, headers, signal, credentials: 'same-origin', cache: 'no-store' };
  if (body instanceof Blob) {
    headers['Content-Type'] = 'application/octet-stream';
    init.body = body;
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, { title: 'The server could not be reached. Check the connection and try again.' });
  }
  if (res.status === 401) {
    toSignIn();
    throw new SessionEnded();
  }
  if (res.status === 204 || res.status === 205) return null;
  const type = res.headers.get('Content-Type') || '';
  let data = null;
  if (type.includes('json')) {
    try {
      data = await res.json();
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      if (res.ok) throw new ApiError(res.status, { title: 'The server sent an answer that could not be read.' });
    }
  } else {
    await res.text().catch(() => '');
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// quiet reports whether err needs no message: the page is leaving, or the
// request was cancelled because the person moved on.
export function quiet(err) {
  return err instanceof SessionEnded || (err && err.name === 'AbortError');
}

// message is the text to show a person for err.
export function message(err) {
  if (err instanceof ApiError) return err.message;
  return 'Something went wrong: ' + (err && err.message ? err.message : String(err));
}

// devicesWithState lists the person's devices with their state (last
// position, status, recording track). When the list lacks the state, each
// device's own route gives it.
export async function devicesWithState(signal) {
  const { devices = [] } = (await api('/api/v1/devices', { signal })) || {};
  return Promise.all(devices.map(async (d) => {
    if ('last_seen' in d) return d;
    try {
      const full = await api('/api/v1/devices/' + encodeURIComponent(d.id), { signal });
      return { ...d, ...full };
    } catch (err) {
      if (quiet(err)) throw err;
      return { ...d, last_seen: null, position: null, status: null, stateError: message(err) };
    }
  }));
}
