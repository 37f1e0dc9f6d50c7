// The tracks list (/tracks and /): filters kept in the page's query, pages
// of tracks by cursor, recording controls for each device, and imports of
// track files (the upload form, and the running import jobs with their
// progress, whoever started them).
import { api, ApiError, devicesWithState, message, quiet } from '../api.js';
import { alertBox, field, h, id as elementId, replace, statusBox } from '../dom.js';
import { count, dayEnd, dayStart, duration, km, trackName, when } from '../format.js';
import { loading } from '../shell.js';

const PAGE_SIZE = 50;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

// Imports: how often the running jobs are asked for (and after a failed
// ask), how many are listed, how many ended ones stay shown, and the files
// the file input offers.
const JOBS_POLL_MS = 1500;
const JOBS_RETRY_MS = 5000;
const JOBS_LIMIT = 20;
const ENDED_SHOWN = 5;
const IMPORT_ACCEPT = '.gpx,.nmea,.txt,.log,.geojson,.json,.csv';
const ENDED = new Set(['completed', 'failed', 'cancelled']);

// fileLabel is how an import job's file is named to a person.
const fileLabel = (j) => j.file_name || `the upload ${j.id}`;

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

  // Imports: the running jobs, the ended ones' outcomes, and the form.
  const jobList = h('ul', { class: 'job-list', 'aria-label': 'Running imports' });
  const jobsNone = h('p', { class: 'muted small jobs-none', hidden: true }, 'No imports running.');
  const jobsDone = h('div', { class: 'status import-results', role: 'status' });
  const jobsFailed = h('div', { class: 'alert import-failures', role: 'alert', hidden: true });
  const jobsAlert = alertBox();
  const importDevice = h('select', { id: 'import-device', name: 'device', required: true });
  const importFile = field('File', { type: 'file', id: 'import-file', name: 'file', accept: IMPORT_ACCEPT, required: true },
    'GPX, NMEA log, GeoJSON or CSV, with a time for each position.');
  const importFormat = h('select', { id: 'import-format', name: 'format' },
    h('option', { value: '' }, 'Tell from the file'),
    h('option', { value: 'gpx' }, 'GPX'),
    h('option', { value: 'nmea' }, 'NMEA log'),
    h('option', { value: 'geojson' }, 'GeoJSON'),
    h('option', { value: 'csv' }, 'CSV'));
  const importName = field('Track name (optional)', { type: 'text', id: 'import-name', name: 'name', maxlength: 200, autocomplete: 'off' });
  const importBtn = h('button', { type: 'submit', class: 'primary' }, 'Import');
  const importAlert = alertBox();
  const importStatus = statusBox();
  const importForm = h('form', { class: 'import-form', 'aria-labelledby': 'import-form-h' },
    h('div', { class: 'field' }, h('label', { for: 'import-device' }, 'Device'), importDevice),
    importFile.el,
    h('div', { class: 'field' }, h('label', { for: 'import-format' }, 'Format'), importFormat),
    importName.el,
    h('div', { class: 'button-row' }, importBtn),
    importAlert.el,
    importStatus.el);
  // The form is open on wide screens; on narrow ones, where the tracks
  // come below, it opens on demand.
  const importBox = h('details', { class: 'import-box', open: matchMedia('(min-width: 961px)').matches },
    h('summary', { id: 'import-form-h' }, 'Import a file'),
    importForm);
  const importsHead = h('h2', { id: 'imports-h', tabindex: '-1' }, 'Imports');
  const imports = h('section', { class: 'panel imports', 'aria-labelledby': 'imports-h' },
    importsHead,
    jobList,
    jobsNone,
    jobsDone,
    jobsFailed,
    jobsAlert.el,
    importBox);

  // jobRows holds the jobs listed as pending or running, by id;
  // a listed job that the server no longer lists as such has ended, and
  // its outcome is shown. jobsEnded keeps a stale answer from listing an
  // ended job again.
  const jobRows = new Map();
  const jobsEnded = new Set();
  let jobsTimer = 0;
  let jobsPolling = false;
  let jobsAgain = false;
  let uploaded = ''; // the job of the last upload, while its status shows
  let uploading = false;

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
      h('div', { class: 'tracks-side' }, record, imports),
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
    const label = (d) => (d.name ? `${d.name} (${d.id})` : d.id);
    replace(deviceSelect, h('option', { value: '' }, 'All devices'),
      devices.map((d) => h('option', { value: d.id, selected: d.id === filters.device }, label(d))));
    if (filters.device && !devices.some((d) => d.id === filters.device)) {
      deviceSelect.append(h('option', { value: filters.device, selected: true }, filters.device));
    }
    const chosen = importDevice.value || filters.device;
    const pick = devices.some((d) => d.id === chosen) ? chosen : (devices[0] || {}).id;
    if (devices.length) {
      replace(importDevice, devices.map((d) => h('option', { value: d.id, selected: d.id === pick }, label(d))));
    } else {
      replace(importDevice, h('option', { value: '' }, 'No devices yet'));
    }
    importDevice.disabled = !devices.length;
    importBtn.disabled = uploading || !devices.length;
    for (const r of jobRows.values()) showJob(r.job);
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

  // Imports.

  // pushLine adds a line (nodes) to box, keeping the last ENDED_SHOWN.
  function pushLine(box, ...nodes) {
    box.append(h('p', null, nodes));
    while (box.children.length > ENDED_SHOWN) box.firstElementChild.remove();
    box.hidden = false;
  }

  function jobRow(j) {
    const file = fileLabel(j);
    const fileId = elementId('job');
    const r = {
      job: j,
      badge: h('span', { class: 'badge subtle' }),
      device: h('span', { class: 'muted small' }),
      bar: h('progress', { max: 100, 'aria-labelledby': fileId }),
      counts: h('p', { class: 'small job-counts' }),
      cancel: h('button', { type: 'button', class: 'secondary', 'aria-label': `Cancel the import of ${file}` }, 'Cancel'),
      cancelling: false,
    };
    r.li = h('li', { class: 'job-row', dataset: { job: j.id } },
      h('div', { class: 'job-head' },
        h('div', { class: 'job-title' }, h('strong', { id: fileId, class: 'job-file' }, file), ' ', r.badge),
        r.cancel),
      r.device,
      r.bar,
      r.counts);
    r.cancel.addEventListener('click', () => cancelJob(r));
    return r;
  }

  // showJob lists a pending or running job, or updates its row.
  function showJob(j) {
    if (jobsEnded.has(j.id)) return;
    let r = jobRows.get(j.id);
    if (!r) {
      r = jobRow(j);
      jobRows.set(j.id, r);
      // Newest first, as the server lists them; rows already shown stay
      // where they are, so that a focused Cancel button keeps the focus.
      const at = Date.parse(j.created);
      const later = [...jobRows.values()].find((o) => o !== r && Date.parse(o.job.created) < at);
      jobList.insertBefore(r.li, later ? later.li : null);
    }
    r.job = j;
    const stopping = Boolean(j.cancel_requested);
    r.li.dataset.state = j.state;
    r.badge.textContent = stopping ? 'stopping' : j.state;
    r.device.textContent = 'Device: ' + deviceName(j.device);
    const total = j.total_items;
    if (total === null || total === undefined) {
      r.bar.removeAttribute('value'); // indeterminate
      r.counts.textContent = j.state === 'pending' ? 'Waiting to start' : 'Reading the file…';
    } else {
      r.bar.value = Math.max(0, Math.min(100, j.progress || 0));
      r.counts.textContent = `${count(j.processed_items || 0)} of ${count(total)} positions` +
        (j.skipped_items ? ` (${count(j.skipped_items)} skipped)` : '');
    }
    // aria-disabled rather than disabled: a disabled button loses the
    // focus, and the person would have to find their place again.
    r.cancel.setAttribute('aria-disabled', String(stopping || r.cancelling));
    jobsNone.hidden = true;
  }

  function dropJob(jid) {
    const r = jobRows.get(jid);
    jobsEnded.add(jid);
    if (!r) return;
    jobRows.delete(jid);
    const hadFocus = r.li.contains(document.activeElement);
    r.li.remove();
    if (hadFocus) importsHead.focus();
    jobsNone.hidden = jobRows.size > 0;
  }

  // jobEnded shows the outcome of a job the page listed or started.
  function jobEnded(j) {
    const shown = jobRows.has(j.id) || !jobsEnded.has(j.id);
    dropJob(j.id);
    if (!shown) return;
    if (j.id === uploaded) importStatus.clear();
    const file = fileLabel(j);
    if (j.state === 'completed') {
      const skipped = j.skipped_items ? ` (${count(j.skipped_items)} skipped)` : '';
      pushLine(jobsDone, `Imported ${count(j.processed_items || 0)} positions from ${file}${skipped}. `,
        j.track ? h('a', { href: '/tracks/' + encodeURIComponent(j.track), class: 'import-track' }, 'Open the track') : null);
      loadTracks(true);
    } else if (j.state === 'failed') {
      pushLine(jobsFailed, `The import of ${file} failed: ${(j.error || 'the server gave no reason').replace(/\.$/, '')}.`);
    } else {
      pushLine(jobsDone, `Import of ${file} cancelled.`);
    }
  }

  function scheduleJobs(ms) {
    if (ctx.signal.aborted) return;
    if (jobsPolling) {
      jobsAgain = true;
      return;
    }
    clearTimeout(jobsTimer);
    jobsTimer = setTimeout(pollJobs, ms);
  }

  // pollJobs lists the pending and running jobs, and asks for each listed
  // job that has left that list how it ended. It asks again while any job
  // is listed.
  async function pollJobs() {
    clearTimeout(jobsTimer);
    jobsTimer = 0;
    if (ctx.signal.aborted) return;
    if (jobsPolling) {
      jobsAgain = true;
      return;
    }
    jobsPolling = true;
    jobsAgain = false;
    let next = JOBS_POLL_MS;
    try {
      const page = await api(`/api/v1/jobs?state=pending,running&limit=${JOBS_LIMIT}`, { signal: ctx.signal });
      const open = new Set();
      for (const j of (page && page.jobs) || []) {
        open.add(j.id);
        if (ENDED.has(j.state)) jobEnded(j);
        else showJob(j);
      }
      for (const jid of [...jobRows.keys()]) {
        if (open.has(jid)) continue;
        let j;
        try {
          j = await api('/api/v1/jobs/' + encodeURIComponent(jid), { signal: ctx.signal });
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) {
            dropJob(jid);
            continue;
          }
          throw err;
        }
        if (ENDED.has(j.state)) jobEnded(j);
        else showJob(j);
      }
      jobsAlert.clear();
      jobsNone.hidden = jobRows.size > 0;
    } catch (err) {
      if (quiet(err)) {
        jobsPolling = false;
        return;
      }
      jobsAlert.show('The imports could not be listed: ' + message(err));
      next = JOBS_RETRY_MS;
    }
    jobsPolling = false;
    if (ctx.signal.aborted) return;
    if (jobsAgain) scheduleJobs(0);
    else if (jobRows.size) scheduleJobs(next);
  }

  async function cancelJob(r) {
    if (r.cancel.getAttribute('aria-disabled') === 'true') return;
    jobsAlert.clear();
    r.cancelling = true;
    r.cancel.setAttribute('aria-disabled', 'true');
    try {
      const j = await api(`/api/v1/jobs/${encodeURIComponent(r.job.id)}/cancel`, { method: 'POST', signal: ctx.signal });
      if (ENDED.has(j.state)) jobEnded(j);
      else showJob(j);
    } catch (err) {
      if (quiet(err)) return;
      // 409: it ended meanwhile; the next look tells how.
      if (!(err instanceof ApiError && err.status === 409)) {
        r.cancelling = false;
        if (jobRows.get(r.job.id) === r) showJob(r.job);
        jobsAlert.show(`The import of ${fileLabel(r.job)} could not be cancelled: ${message(err)}`);
      }
    }
    scheduleJobs(0);
  }

  function uploadMessage(err) {
    if (!(err instanceof ApiError)) return message(err);
    const detail = err.problem.detail || '';
    if (err.status === 413) return 'The file is too large' + (detail ? `: ${detail}.` : '.') + ' Split it and import the parts.';
    if (err.status === 415) {
      return 'The file’s format could not be told' + (detail ? ` (${detail})` : '') +
        '. Choose its format under “Format”, or check that it is GPX, an NMEA log, GeoJSON or CSV.';
    }
    if (err.status === 404) return 'The device was not found. Reload the page to see your devices.';
    return message(err);
  }

  importForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    importAlert.clear();
    importStatus.clear();
    uploaded = '';
    const file = importFile.input.files && importFile.input.files[0];
    if (!importDevice.value) {
      importAlert.show('Choose the device the file was recorded with.');
      importDevice.focus();
      return;
    }
    if (!file) {
      importAlert.show('Choose a file to import.');
      importFile.input.focus();
      return;
    }
    if (!file.size) {
      importAlert.show(`${file.name} is empty.`);
      importFile.input.focus();
      return;
    }
    const params = new URLSearchParams({ device: importDevice.value, filename: file.name });
    if (importFormat.value) params.set('format', importFormat.value);
    const name = importName.input.value.trim();
    if (name) params.set('name', name);
    uploading = true;
    importBtn.disabled = true;
    importBtn.textContent = 'Uploading…';
    importForm.setAttribute('aria-busy', 'true');
    try {
      const j = await api('/api/v1/imports?' + params, { method: 'POST', body: file, signal: ctx.signal });
      importFile.input.value = '';
      importName.input.value = '';
      importFormat.value = '';
      uploaded = j.id;
      importStatus.show(`Uploaded ${file.name}; it is being imported.`);
      if (ENDED.has(j.state)) jobEnded(j);
      else showJob(j);
      scheduleJobs(JOBS_POLL_MS);
    } catch (err) {
      if (quiet(err)) return;
      importAlert.show(uploadMessage(err));
    } finally {
      uploading = false;
      importBtn.disabled = !devices.length;
      importBtn.textContent = 'Import';
      importForm.removeAttribute('aria-busy');
    }
  });

  // A job started elsewhere (the command line, another tab) shows when the
  // page is looked at again.
  const onVisible = () => {
    if (!document.hidden && !jobsTimer && !jobsPolling) pollJobs();
  };
  document.addEventListener('visibilitychange', onVisible);
  ctx.onLeave(() => {
    clearTimeout(jobsTimer);
    document.removeEventListener('visibilitychange', onVisible);
  });
  pollJobs();

  await Promise.all([loadDevices(), loadTracks(true)]);
}
