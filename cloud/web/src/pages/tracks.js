// The tracks list (/tracks and /): filters kept in the page's query, pages
// of tracks by cursor, and recording controls for each device.
import { api, ApiError, devicesWithState, message, quiet } from '../api.js';
import { alertBox, field, h, replace, statusBox } from '../dom.js';
import { dayEnd, dayStart, duration, km, trackName, when } from '../format.js';
import { loading } from '../shell.js';

const PAGE_SIZE = 50;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export async function tracksPage(ctx) {
  ctx.title('Tracks');
  const q = ctx.query;
  const filters = {
    device: q.get('device') || '',
    from: DATE.test(q.get('from') || '') ? q.get('from') : '',
    to: DATE.test(q.get('to') || '') ? q.get('to') : '',
  };

  const alert = alertBox();
  const listAlert = alertBox();
  const status = statusBox();
  let devices = [];
  const deviceName = (id) => {
    const d = devices.find((x) => x.id === id);
    return d && d.name ? d.name : id;
  };

  // Record: start and stop a recording for each device.
  const recordList = h('div', { class: 'record-list' }, loading('Loading devices…'));
  const nextName = field('Name of the next track (optional)', { type: 'text', name: 'track-name', maxlength: 200, autocomplete: 'off' });
  const record = h('section', { class: 'panel record', 'aria-labelledby': 'record-h' },
    h('h2', { id: 'record-h' }, 'Record'),
    nextName.el,
    recordList,
    alert.el,
    status.el);

  // Filters.
  const deviceSelect = h('select', { id: 'filter-device', name: 'device' }, h('option', { value: '' }, 'All devices'));
  const fromField = field('From', { type: 'date', name: 'from', value: filters.from });
  const toField = field('To', { type: 'date', name: 'to', value: filters.to });
  const clearLink = h('a', { href: '/tracks', class: 'clear' }, 'Clear filters');
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tracks' },
    h('div', { class: 'field' }, h('label', { for: 'filter-device' }, 'Device'), deviceSelect),
    fromField.el,
    toField.el,
    h('div', { class: 'filter-actions' }, h('button', { type: 'submit', class: 'secondary' }, 'Apply'), clearLink));

  const list = h('ul', { class: 'track-list', 'aria-label': 'Tracks' });
  const empty = h('p', { class: 'empty', hidden: true });
  const more = h('button', { type: 'button', class: 'secondary load-more', hidden: true }, 'Load more');
  const listLoading = h('div', null, loading('Loading tracks…'));

  ctx.main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Tracks')),
    h('div', { class: 'tracks-layout' },
      record,
      h('div', { class: 'tracks-main' },
        form,
        listAlert.el,
        list,
        listLoading,
        empty,
        h('div', { class: 'more' }, more))));
  ctx.focus();

  let cursor = '';
  let listController = null;
  let busy = false;

  function filtersActive() {
    return Boolean(filters.device || filters.from || filters.to);
  }

  function row(t) {
    const started = h('time', { datetime: t.started }, when(t.started));
    const s = t.summary || {};
    return h('li', { class: 'track-row', dataset: { track: t.id } },
      h('div', { class: 'track-title' },
        h('a', { href: '/tracks/' + encodeURIComponent(t.id), class: 'track-link' }, trackName(t)),
        t.recording ? h('span', { class: 'badge recording' }, 'recording') : null,
        t.auto ? h('span', { class: 'badge subtle' }, 'automatic') : null),
      h('dl', { class: 'facts' },
        h('div', null, h('dt', null, 'Started'), h('dd', null, started)),
        h('div', null, h('dt', null, 'Device'), h('dd', { dataset: { deviceName: t.device } }, deviceName(t.device))),
        h('div', null, h('dt', null, 'Distance'), h('dd', null, km(s.distance_m))),
        h('div', null, h('dt', null, 'Duration'), h('dd', null, duration(s.duration_s)))));
  }

  async function loadTracks(reset) {
    if (busy && !reset) return;
    if (reset) {
      if (listController) listController.abort();
      cursor = '';
      list.replaceChildren();
      empty.hidden = true;
      more.hidden = true;
      listLoading.hidden = false;
    }
    listController = new AbortController();
    const signal = AbortSignal.any ? AbortSignal.any([ctx.signal, listController.signal]) : listController.signal;
    const mine = listController;
    busy = true;
    more.disabled = true;
    listAlert.clear();
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (filters.device) params.set('device', filters.device);
    if (filters.from) params.set('from', dayStart(filters.from));
    if (filters.to) params.set('to', dayEnd(filters.to));
    if (cursor) params.set('cursor', cursor);
    try {
      const page = await api('/api/v1/tracks?' + params, { signal });
      if (mine !== listController || ctx.signal.aborted) return;
      const tracks = page.tracks || [];
      list.append(...tracks.map(row));
      cursor = page.next_cursor || '';
      more.hidden = !cursor;
      if (!list.children.length) {
        empty.textContent = filtersActive()
          ? 'No tracks match these filters.'
          : 'No tracks yet. Start recording on a device, or turn on automatic tracks on the Devices page.';
        empty.hidden = false;
      }
    } catch (err) {
      if (quiet(err) || mine !== listController) return;
      listAlert.show(message(err));
    } finally {
      if (mine === listController) {
        busy = false;
        more.disabled = false;
        listLoading.hidden = true;
        document.body.dataset.ready = 'tracks';
      }
    }
  }

  more.addEventListener('click', () => loadTracks(false));
  if ('IntersectionObserver' in window) {
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !more.hidden && !busy) loadTracks(false);
    }, { rootMargin: '200px' });
    io.observe(more);
    ctx.onLeave(() => io.disconnect());
  }

  function applyFilters() {
    filters.device = deviceSelect.value;
    const from = fromField.input.value;
    const to = toField.input.value;
    filters.from = DATE.test(from) ? from : '';
    filters.to = DATE.test(to) ? to : '';
    if (filters.from && filters.to && filters.to < filters.from) {
      listAlert.show('The “To” date is before the “From” date.');
      return;
    }
    const p = new URLSearchParams();
    for (const k of ['device', 'from', 'to']) if (filters[k]) p.set(k, filters[k]);
    const qs = p.toString();
    history.replaceState(null, '', '/tracks' + (qs ? '?' + qs : ''));
    loadTracks(true);
  }
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    applyFilters();
  });
  for (const el of [deviceSelect, fromField.input, toField.input]) el.addEventListener('change', applyFilters);

  function fillDevices() {
    replace(deviceSelect, h('option', { value: '' }, 'All devices'),
      devices.map((d) => h('option', { value: d.id, selected: d.id === filters.device }, d.name ? `${d.name} (${d.id})` : d.id)));
    if (filters.device && !devices.some((d) => d.id === filters.device)) {
      deviceSelect.append(h('option', { value: filters.device, selected: true }, filters.device));
    }
  }

  function recordRows() {
    if (!devices.length) {
      return h('p', { class: 'muted' }, 'No devices yet. ', h('a', { href: '/devices' }, 'Register a device'), ' to record tracks.');
    }
    return h('ul', { class: 'record-rows' }, devices.map((d) => {
      const recording = d.recording;
      const btn = recording
        ? h('button', { type: 'button', class: 'danger', 'aria-label': `Stop recording on ${d.name || d.id}` }, 'Stop recording')
        : h('button', { type: 'button', class: 'primary', 'aria-label': `Start recording on ${d.name || d.id}` }, 'Start recording');
      btn.addEventListener('click', () => (recording ? stop(d, btn) : start(d, btn)));
      return h('li', { class: 'record-row', dataset: { device: d.id } },
        h('div', null,
          h('strong', null, d.name || d.id),
          d.name ? h('div', { class: 'muted small' }, d.id) : null,
          h('div', { class: 'small' }, recording
            ? ['Recording: ', h('a', { href: '/tracks/' + encodeURIComponent(recording) }, 'open the track')]
            : d.stateError ? d.stateError : 'Not recording')),
        btn);
    }));
  }

  async function loadDevices() {
    try {
      devices = await devicesWithState(ctx.signal);
      fillDevices();
      for (const dd of list.querySelectorAll('[data-device-name]')) dd.textContent = deviceName(dd.dataset.deviceName);
      replace(recordList, recordRows());
    } catch (err) {
      if (quiet(err)) throw err;
      replace(recordList);
      alert.show(message(err));
    }
  }

  async function start(d, btn) {
    alert.clear();
    status.clear();
    btn.disabled = true;
    const body = { device: d.id };
    const name = nextName.input.value.trim();
    if (name) body.name = name;
    try {
      const t = await api('/api/v1/tracks', { method: 'POST', body, signal: ctx.signal });
      nextName.input.value = '';
      status.show(`Recording started on ${d.name || d.id}: ${trackName(t)}.`);
    } catch (err) {
      if (quiet(err)) return;
      if (err instanceof ApiError && err.status === 409) {
        alert.show(`${d.name || d.id} is already recording a track. Stop it first.`);
      } else {
        alert.show(message(err));
      }
    }
    await refresh();
  }

  async function stop(d, btn) {
    alert.clear();
    status.clear();
    btn.disabled = true;
    try {
      await api(`/api/v1/tracks/${encodeURIComponent(d.recording)}/stop`, { method: 'POST', signal: ctx.signal });
      status.show(`Recording stopped on ${d.name || d.id}.`);
    } catch (err) {
      if (quiet(err)) return;
      alert.show(message(err));
    }
    await refresh();
  }

  async function refresh() {
    try {
      await Promise.all([loadDevices(), loadTracks(true)]);
    } catch (err) {
      if (!quiet(err)) alert.show(message(err));
    }
  }

  await Promise.all([loadDevices(), loadTracks(true)]);
}
