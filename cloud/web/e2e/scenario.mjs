// The web app's browser scenario: signs in (password, then TOTP), walks the
// tracks list, a track (map, charts, hover, replay, GPX export, rename), a
// 50,000-point track against the clock, deleting a track, importing a GPX
// file (its job's progress and outcome, the new track, a refused upload and
// a failed import), the live map, registering and revoking a device, the
// account page, and signing out.
// It fails (exit 1, the reason on stderr) at the first step that does not
// hold, and at the end if any page logged a console error or threw.
//
// Environment: TG_URL, TG_USER, TG_PASSWORD, TG_TOTP_SECRET, TG_TRACK,
// TG_DEVICE, TG_BIG_TRACK, TG_DELETE_TRACK, TG_LIVE_DEVICE, TG_OUT;
// optional CHROMIUM (the browser, default /usr/bin/chromium), TG_STEPS (a
// comma-separated list of step numbers to run, default all; step 1, the
// sign-in, always runs) and TG_BIG_TRACK_LIMIT_MS (default 2000).
import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));

class Failure extends Error {}

function env(name) {
  const v = process.env[name];
  if (!v) throw new Failure(`environment variable ${name} is not set`);
  return v;
}

function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

// totp is the RFC 6238 code of a base32 secret at time t: HMAC-SHA1, 30 s
// steps, 6 digits.
export function totp(secret, t = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.toUpperCase().replace(/[\s=]/g, '')) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Failure('TG_TOTP_SECRET is not base32');
    bits += v.toString(2).padStart(5, '0');
  }
  const key = Buffer.alloc(Math.floor(bits.length / 8));
  for (let i = 0; i < key.length; i++) key[i] = parseInt(bits.slice(i * 8, i * 8 + 8), 2);
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(t / 1000 / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(code).padStart(6, '0');
}

let cfg;
try {
  cfg = {
    url: env('TG_URL').replace(/\/+$/, ''),
    user: env('TG_USER'),
    password: env('TG_PASSWORD'),
    secret: env('TG_TOTP_SECRET'),
    track: env('TG_TRACK'),
    device: env('TG_DEVICE'),
    big: env('TG_BIG_TRACK'),
    del: env('TG_DELETE_TRACK'),
    live: env('TG_LIVE_DEVICE'),
    out: env('TG_OUT'),
    limit: Number(process.env.TG_BIG_TRACK_LIMIT_MS || 2000),
  };
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
const only = process.env.TG_STEPS ? new Set(process.env.TG_STEPS.split(',').map((s) => Number(s.trim()))) : null;
const origin = new URL(cfg.url).origin;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };
const results = {};

// Console errors and page errors, with the ones a step expects (a 404 it
// asks for on purpose) let through.
const problems = [];
const expected = [/\/favicon\.ico$/];
function expectConsole(re) {
  expected.push(re);
}

const log = (msg) => console.log(msg);
const path = (page) => new URL(page.url()).pathname;

async function shot(page, name) {
  await page.screenshot({ path: join(cfg.out, name), fullPage: true });
}

async function atPhone(page, name, { noScroll = false } = {}) {
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(300); // resize handlers run on the next frame
  if (noScroll) {
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    check(w <= PHONE.width, `${name}: the page scrolls sideways at 375 px wide (scrollWidth ${w})`);
  }
  await shot(page, `${name}-375.png`);
  await page.setViewportSize(DESKTOP);
  await page.waitForTimeout(200);
}

async function ready(page, name, timeout = 15000) {
  try {
    await page.waitForSelector(`body[data-ready="${name}"]`, { timeout });
  } catch {
    const alert = await page.locator('[role=alert]:not([hidden])').allTextContents().catch(() => []);
    throw new Failure(`the ${name} page did not become ready within ${timeout} ms at ${page.url()}` +
      (alert.length ? ` (it shows: ${alert.join(' | ')})` : ''));
  }
}

async function findTrackRow(page, id) {
  const row = page.locator(`.track-row[data-track="${id}"]`);
  for (let i = 0; i < 20; i++) {
    if (await row.count()) return row;
    const more = page.locator('button.load-more:visible');
    if (!(await more.count())) break;
    await more.click();
    await page.waitForTimeout(400);
  }
  return null;
}

// gpxFile is a GPX 1.1 file of n track points one second apart from start:
// a small loop near the harbour. withoutTimeAt, when set, is the index of
// a point left without its <time> (which makes the import fail).
function gpxFile(start, n, { withoutTimeAt = -1 } = {}) {
  const pts = [];
  for (let i = 0; i < n; i++) {
    const a = (i / n) * 2 * Math.PI;
    const lat = (53.54 + 0.004 * Math.sin(a)).toFixed(6);
    const lon = (9.98 + 0.007 * Math.cos(a)).toFixed(6);
    const time = i === withoutTimeAt ? '' : `<time>${new Date(start + i * 1000).toISOString()}</time>`;
    pts.push(`      <trkpt lat="${lat}" lon="${lon}"><ele>${(12 + 3 * Math.sin(a * 3)).toFixed(1)}</ele>${time}</trkpt>`);
  }
  return Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="trackgate e2e" xmlns="http://www.topografix.com/GPX/1/1">
  <trk><name>e2e import</name><trkseg>
${pts.join('\n')}
  </trkseg></trk>
</gpx>
`);
}

// importFile fills the Tracks page's import form with a file and submits it.
async function importFile(page, file, { name = '', device = cfg.device } = {}) {
  if (await page.locator('details.import-box:not([open])').count()) await page.click('details.import-box > summary');
  await page.selectOption('#import-device', device);
  await page.setInputFiles('#import-file', file);
  await page.fill('#import-name', name);
  await page.click('form.import-form button[type=submit]');
}

// importLines counts the lines the imports panel shows: outcomes (done)
// and failures (failed).
async function importLines(page) {
  return page.evaluate(() => ({
    done: document.querySelectorAll('.import-results p').length,
    failed: document.querySelectorAll('.import-failures p').length,
  }));
}

// importOutcome waits until the imports panel reports something new since
// before (importLines): an outcome, a failure, or an alert in the form; it
// returns which and the text.
async function importOutcome(page, before, timeout = 30000) {
  const handle = await page.waitForFunction((b) => {
    const done = document.querySelectorAll('.import-results p');
    const last = done[done.length - 1];
    if (done.length > b.done) return { kind: 'done', text: last.textContent, href: last.querySelector('a')?.getAttribute('href') || '' };
    const failed = document.querySelectorAll('.import-failures p');
    if (failed.length > b.failed) return { kind: 'failed', text: failed[failed.length - 1].textContent };
    const alert = document.querySelector('form.import-form [role=alert]:not([hidden])');
    if (alert && alert.textContent) return { kind: 'refused', text: alert.textContent };
    return null;
  }, before, { timeout, polling: 100 }).catch(() => null);
  if (!handle) {
    const jobs = await page.locator('.job-row').allTextContents().catch(() => []);
    throw new Failure(`the import reported no outcome within ${timeout} ms (listed: ${jobs.join(' | ') || 'nothing'})`);
  }
  return handle.jsonValue();
}

// markerPos is the screen position of the map's selected-point marker.
async function markerPos(page) {
  return page.evaluate(() => {
    const el = document.querySelector('.leaflet-marker-icon.pin-cursor');
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return { x: Math.round(r.x), y: Math.round(r.y), index: el.dataset.index, transform: el.style.transform };
  });
}

const steps = [
  [1, 'sign in with password and TOTP', async (page) => {
    await page.goto(cfg.url + '/tracks');
    check(path(page) === '/login', `opening /tracks signed out should land on /login, got ${page.url()}`);
    await page.fill('input[name=username]', cfg.user);
    await page.fill('input[name=password]', cfg.password);
    await Promise.all([
      page.waitForURL((u) => u.pathname !== '/login', { timeout: 10000 }).catch(() => {}),
      page.locator('input[name=password]').press('Enter'),
    ]);
    check(path(page) === '/login/totp', `after the password the TOTP page /login/totp should ask for a code, got ${page.url()}`);
    // A code is taken once: when this one was already used (or the step
    // turned meanwhile), try once more with the next step's code.
    const signedIn = () => !path(page).startsWith('/login');
    for (let attempt = 0; attempt < 2 && !signedIn(); attempt++) {
      if (attempt) {
        log('  the TOTP code was refused; trying the next one');
        await page.waitForTimeout(30000 - (Date.now() % 30000) + 1000);
        if (!(await page.locator('input[name=code]').count())) await page.goto(cfg.url + '/login/totp?return_to=%2Ftracks');
      }
      await page.fill('input[name=code]', totp(cfg.secret));
      await Promise.all([
        page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: 10000 }).catch(() => {}),
        page.locator('input[name=code]').press('Enter'),
      ]);
    }
    check(signedIn(), `the TOTP code was not accepted: still on ${page.url()}`);
    check(path(page) === '/tracks', `after the code the browser should be back on /tracks, got ${page.url()}`);
    await ready(page, 'tracks');
    check(await findTrackRow(page, cfg.track), `the tracks list does not show TG_TRACK ${cfg.track}`);
  }],

  [2, 'tracks list', async (page) => {
    if (path(page) !== '/tracks') {
      await page.goto(cfg.url + '/tracks');
      await ready(page, 'tracks');
    }
    const rows = await page.locator('.track-row').count();
    check(rows > 0, 'the tracks list has no rows');
    const link = page.locator(`.track-row[data-track="${cfg.track}"] a.track-link`);
    check(await link.count(), `no link to TG_TRACK ${cfg.track} in the list`);
    check((await link.getAttribute('href')) === `/tracks/${cfg.track}`, 'the track link does not point at /tracks/{id}');
    await page.waitForSelector('.record-row, .record .muted', { timeout: 10000 });
    await shot(page, 'tracks-desktop.png');
    await atPhone(page, 'tracks', { noScroll: true });
  }],

  [3, 'track page: map, charts, hover, replay', async (page) => {
    if (path(page) !== '/tracks') {
      await page.goto(cfg.url + '/tracks');
      await ready(page, 'tracks');
    }
    const row = await findTrackRow(page, cfg.track);
    check(row, `TG_TRACK ${cfg.track} is not in the list`);
    await row.locator('a.track-link').click();
    await ready(page, 'track');
    check(path(page) === `/tracks/${cfg.track}`, `clicking the track opened ${page.url()}`);

    const line = await page.evaluate(() => {
      const pane = document.querySelector('.leaflet-overlay-pane');
      if (!pane) return { pane: false };
      const paths = pane.querySelectorAll('svg path').length;
      let painted = 0;
      for (const c of pane.querySelectorAll('canvas')) {
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < data.length; i += 16) if (data[i]) painted++;
      }
      return { pane: true, paths, painted };
    });
    check(line.pane, 'the track map has no Leaflet overlay pane');
    check(line.paths > 0 || line.painted > 0, 'the track line is not drawn on the map (no painted canvas pixel, no SVG path)');
    for (const id of ['chart-speed', 'chart-elevation']) {
      check(await page.locator(`#${id} .uplot canvas`).count(), `the ${id} chart has no uPlot canvas`);
    }
    check(await page.locator('.leaflet-marker-icon[title="Start"]').count(), 'no Start marker');
    check(await page.locator('.leaflet-marker-icon[title="End"]').count(), 'no End marker');

    // Hovering the speed chart shows the point on the map.
    await page.locator('#chart-speed .u-over').scrollIntoViewIfNeeded();
    const over = await page.locator('#chart-speed .u-over').boundingBox();
    check(over, 'the speed chart has no plot area');
    await page.mouse.move(over.x + over.width * 0.25, over.y + over.height / 2);
    await page.waitForTimeout(100);
    const a = await markerPos(page);
    check(a, 'hovering the speed chart shows no marker on the map');
    await page.mouse.move(over.x + over.width * 0.75, over.y + over.height / 2);
    await page.waitForTimeout(100);
    const b = await markerPos(page);
    check(b && (b.index !== a.index || b.transform !== a.transform), 'moving along the speed chart does not move the map marker');
    check(await page.locator('#chart-elevation .u-cursor-x').count(), 'the elevation chart has no cursor');

    // The replay slider, by keyboard.
    await page.mouse.move(5, 5);
    const slider = page.locator('input#replay');
    await slider.focus();
    await page.keyboard.press('Home');
    await page.waitForTimeout(50);
    const c = await markerPos(page);
    const readout1 = await page.locator('output.readout').textContent();
    for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowRight');
    await page.keyboard.press('PageUp');
    await page.waitForTimeout(50);
    const d = await markerPos(page);
    const readout2 = await page.locator('output.readout').textContent();
    check(c && d && d.index !== c.index && d.index !== undefined, `the replay slider does not move the marker (${c && c.index} → ${d && d.index})`);
    check(readout2 !== readout1, 'the replay readout does not change with the slider');
    await shot(page, 'track-desktop.png');
    await atPhone(page, 'track', { noScroll: true });
  }],

  [4, 'export GPX', async (page) => {
    if (path(page) !== `/tracks/${cfg.track}`) {
      await page.goto(`${cfg.url}/tracks/${cfg.track}`);
      await ready(page, 'track');
    }
    const link = page.locator('a[download]', { hasText: 'GPX' });
    check(await link.count(), 'no GPX download link');
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), link.click()]);
    const file = join(cfg.out, 'export.gpx');
    await download.saveAs(file);
    const failure = await download.failure();
    check(!failure, `the GPX download failed: ${failure}`);
    const gpx = (await readFile(file, 'utf8')).trim();
    check(/^(<\?xml[^>]*>\s*)?<gpx[\s>]/.test(gpx), 'the GPX file does not start with a <gpx> root');
    check(gpx.endsWith('</gpx>'), 'the GPX file does not end with </gpx>');
    const points = (gpx.match(/<trkpt\s+lat="-?\d+(\.\d+)?"\s+lon="-?\d+(\.\d+)?"/g) || []).length;
    check(points > 0, 'the GPX file has no <trkpt lat lon> elements');
    results.gpx_points = points;
  }],

  [5, 'rename a track', async (page) => {
    if (path(page) !== `/tracks/${cfg.track}`) {
      await page.goto(`${cfg.url}/tracks/${cfg.track}`);
      await ready(page, 'track');
    }
    const name = `Renamed in the browser ${new Date().toISOString().slice(11, 19)}`;
    await page.fill('form.rename input[name=name]', name);
    await page.click('form.rename button[type=submit]');
    await page.waitForFunction((n) => document.querySelector('h1')?.textContent === n, name, { timeout: 10000 })
      .catch(() => { throw new Failure('the heading does not show the new name after Save'); });
    await page.reload();
    await ready(page, 'track');
    const h1 = await page.locator('h1').textContent();
    check(h1 === name, `after a reload the track is called "${h1}", not "${name}"`);
    check((await page.inputValue('form.rename input[name=name]')) === name, 'after a reload the name field does not hold the new name');
  }],

  [6, 'open the 50,000-point track', async (page) => {
    await page.goto('about:blank');
    const t0 = Date.now();
    await page.goto(`${cfg.url}/tracks/${cfg.big}`);
    await ready(page, 'track', 30000);
    const ms = Date.now() - t0;
    const inPage = await page.evaluate(() => {
      const m = performance.getEntriesByName('tg-ready-track')[0];
      return m ? Math.round(m.startTime) : null;
    });
    results.big_track_open_ms = ms;
    results.big_track_ready_in_page_ms = inPage;
    log(`  big track ready after ${ms} ms (in the page: ${inPage} ms from navigation start)`);
    check(ms <= cfg.limit, `the ${cfg.big} track took ${ms} ms to get ready, more than ${cfg.limit} ms`);
    await shot(page, 'bigtrack-desktop.png');
  }],

  [7, 'delete a track', async (page) => {
    await page.goto(`${cfg.url}/tracks/${cfg.del}`);
    await ready(page, 'track');
    await page.click('button:has-text("Delete track")');
    const dialog = page.locator('dialog[open]');
    await dialog.waitFor({ timeout: 5000 }).catch(() => { throw new Failure('Delete does not open a confirmation dialog'); });
    await dialog.locator('button', { hasText: 'Delete' }).click();
    await page.waitForURL((u) => u.pathname === '/tracks', { timeout: 10000 })
      .catch(() => { throw new Failure(`after deleting, the browser is on ${page.url()}, not /tracks`); });
    await ready(page, 'tracks');
    check(!(await page.locator(`.track-row[data-track="${cfg.del}"]`).count()), 'the deleted track is still listed');
    expectConsole(new RegExp(`/api/v1/tracks/${cfg.del}\\b`));
    const status = await page.evaluate((id) => fetch('/api/v1/tracks/' + id).then((r) => r.status), cfg.del);
    check(status === 404, `GET /api/v1/tracks/${cfg.del} answers ${status} after deleting, not 404`);
  }],

  [8, 'import a GPX file', async (page) => {
    if (path(page) !== '/tracks') {
      await page.goto(cfg.url + '/tracks');
      await ready(page, 'tracks');
    }
    await page.waitForSelector('#import-device option[value]:not([value=""])', { state: 'attached', timeout: 10000 })
      .catch(() => { throw new Failure('the import form offers no device'); });
    const panel = page.locator('section.imports');
    check(await panel.locator('h2', { hasText: 'Imports' }).count(), 'the Tracks page has no Imports panel');
    for (const sel of ['#import-device', '#import-file', '#import-name']) {
      const label = await page.locator(`label[for="${sel.slice(1)}"]`).count();
      check(label, `the import form's ${sel} has no label`);
    }

    // 200 points three days ago, for TG_DEVICE.
    const start = Math.floor(Date.now() / 1000 - 3 * 86400) * 1000;
    const fileName = `e2e-import-${start / 1000}.gpx`;
    const trackName = 'Imported in the browser';
    const before = await importLines(page);
    await importFile(page, { name: fileName, mimeType: 'application/gpx+xml', buffer: gpxFile(start, 200) }, { name: trackName });
    // The job may be listed while it runs, or be over before the page
    // looks again: then only its outcome shows.
    const listed = await page.waitForSelector('.job-row', { timeout: 1500 }).then(() => true).catch(() => false);
    if (listed) {
      const row = page.locator('.job-row').first();
      check(await row.locator('progress[max="100"]').count(), 'the import job row has no <progress max=100>');
      check(await row.locator('button', { hasText: 'Cancel' }).count(), 'the import job row has no Cancel button');
      check((await row.textContent()).includes(fileName), `the import job row does not name ${fileName}`);
      await shot(page, 'tracks-import-running.png').catch(() => {});
    }
    const out = await importOutcome(page, before);
    check(out.kind === 'done', `the import did not complete: ${out.text}`);
    check(out.text.includes(`Imported 200 positions from ${fileName}`), `the import's status says "${out.text}"`);
    const m = /^\/tracks\/([^/]+)$/.exec(out.href);
    check(m, `the import's status links to "${out.href}", not to /tracks/{id}`);
    const id = decodeURIComponent(m[1]);
    results.import_listed_while_running = listed;
    await page.waitForSelector(`.track-row[data-track="${id}"]`, { timeout: 10000 })
      .catch(() => { throw new Failure(`the imported track ${id} does not appear in the tracks list`); });
    const link = await page.locator(`.track-row[data-track="${id}"] a.track-link`).textContent();
    check(link === trackName, `the imported track is listed as "${link}", not "${trackName}"`);
    check(!(await page.locator('.job-row').count()), 'a finished import is still listed as running');
    // A new track's summary is computed again from its points shortly
    // after it is made (it is "stale" until then).
    let t = null;
    for (let i = 0; i < 40; i++) {
      t = await page.evaluate((tid) => fetch('/api/v1/tracks/' + tid).then((r) => r.json()), id);
      if (!t.stale) break;
      await page.waitForTimeout(500);
    }
    check(t.device === cfg.device, `the imported track is of ${t.device}, not ${cfg.device}`);
    check(t.summary && t.summary.points === 200, `the imported track holds ${t.summary && t.summary.points} points, not 200 (stale: ${Boolean(t.stale)})`);
    await shot(page, 'tracks-import-desktop.png');
    await atPhone(page, 'tracks-import', { noScroll: true });

    // A file of no known format is refused at upload (415), and a GPX
    // point without a time fails the import with the line it is on.
    expectConsole(/\/api\/v1\/imports\b/);
    await importFile(page, { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('just some notes\n') });
    const refused = await importOutcome(page, await importLines(page));
    check(refused.kind === 'refused', `an upload of no known format was not refused: ${refused.kind}: ${refused.text}`);
    check(refused.text.trim(), 'the refused upload shows an empty alert');
    results.import_refusal = refused.text;
    check(/format could not be told/.test(refused.text), `the refusal of a file of no known format does not speak of its format: "${refused.text}"`);
    const bad = gpxFile(start + 3600 * 1000, 20, { withoutTimeAt: 7 });
    const beforeBad = await importLines(page);
    await importFile(page, { name: 'no-time.gpx', mimeType: 'application/gpx+xml', buffer: bad });
    const failed = await importOutcome(page, beforeBad);
    check(failed.kind === 'failed', `a GPX point without a time did not fail the import: ${failed.kind}: ${failed.text}`);
    check(failed.text.includes('no-time.gpx') && /line \d+/.test(failed.text), `the failure does not name the file and line: "${failed.text}"`);
    await panel.screenshot({ path: join(cfg.out, 'tracks-import-failed.png') });

    // Cancelling by keyboard a larger import (100,000 points a week ago)
    // as soon as it is listed: pending, it is cancelled at once; running,
    // it stops at its next progress report. The focus stays in the panel.
    const lines = await importLines(page);
    await importFile(page, { name: 'large.gpx', mimeType: 'application/gpx+xml', buffer: gpxFile(start - 7 * 86400 * 1000, 100000) });
    const cancel = page.locator('.job-row', { hasText: 'large.gpx' }).locator('button', { hasText: 'Cancel' });
    const cancellable = await cancel.waitFor({ timeout: 30000 }).then(() => true).catch(() => false);
    if (cancellable) {
      await cancel.focus();
      await page.keyboard.press('Enter');
    }
    const ended = await importOutcome(page, lines, 60000);
    check(ended.kind === 'done', `the large import did not end well: ${ended.kind}: ${ended.text}`);
    if (cancellable && /cancelled/.test(ended.text)) {
      check(ended.text.includes('Import of large.gpx cancelled'), `the cancel's status says "${ended.text}"`);
      const inPanel = await page.evaluate(() => Boolean(document.activeElement && document.activeElement.closest('section.imports')));
      check(inPanel, 'after the cancel the focus left the Imports panel');
    } else {
      log(`  the large import ended before it could be cancelled: ${ended.text}`);
    }
    results.import_cancel = ended.text;
    check(!(await page.locator('.job-row').count()), 'an ended import is still listed as running');
  }],

  [9, 'live positions', async (page) => {
    await page.goto(cfg.url + '/live');
    await ready(page, 'live');
    const sel = `.live-row[data-device="${cfg.live}"][data-lat]`;
    await page.waitForSelector(sel, { timeout: 10000 })
      .catch(() => { throw new Failure(`the live list has no row with a position for ${cfg.live}`); });
    const before = await page.locator(sel).evaluate((el) => el.dataset.lat + ',' + el.dataset.lon);
    await page.waitForFunction(([s, b]) => {
      const el = document.querySelector(s);
      return el && el.dataset.lat + ',' + el.dataset.lon !== b;
    }, [sel, before], { timeout: 10000 })
      .catch(() => { throw new Failure(`the position of ${cfg.live} did not change within 10 s (still ${before})`); });
    check(await page.locator(`.leaflet-marker-icon[title="${cfg.live}"]`).count(), `no map marker titled ${cfg.live}`);
    await shot(page, 'live-desktop.png');
    await atPhone(page, 'live', { noScroll: true });
  }],

  [10, 'register and revoke a device', async (page) => {
    await page.click('nav a[href="/devices"]');
    await ready(page, 'devices');
    const id = 'e2e-phone';
    await page.fill('form.register input[name=id]', id);
    await page.fill('form.register input[name=name]', 'Test phone');
    await page.click('form.register button[type=submit]');
    await page.waitForSelector('#device-token', { timeout: 10000 })
      .catch(async () => {
        const alert = await page.locator('form.register [role=alert]').textContent().catch(() => '');
        throw new Failure(`registering ${id} shows no token${alert ? ': ' + alert : ''}`);
      });
    const token = await page.inputValue('#device-token');
    check(token.length > 10, 'the device token field is empty');
    check(await page.locator('.token-result svg.qr, .token-result canvas').count(), 'no QR code for the OwnTracks settings');
    const card = page.locator(`.device-card[data-device="${id}"]`);
    await card.waitFor({ timeout: 10000 }).catch(() => { throw new Failure(`${id} is not in the device list after registering`); });
    await shot(page, 'devices-desktop.png');
    await atPhone(page, 'devices', { noScroll: true });
    await card.locator('button', { hasText: 'Revoke' }).click();
    const dialog = page.locator('dialog[open]');
    await dialog.waitFor({ timeout: 5000 }).catch(() => { throw new Failure('Revoke does not open a confirmation dialog'); });
    await dialog.locator('button', { hasText: 'Revoke' }).click();
    await card.waitFor({ state: 'detached', timeout: 10000 })
      .catch(() => { throw new Failure(`${id} is still listed after revoking`); });
  }],

  [11, 'account page', async (page) => {
    await page.click('nav a[href="/account"]');
    await ready(page, 'account');
    check(await page.locator('main form.signout').count(), 'the account page has no sign-out form');
    await shot(page, 'account-desktop.png');
    await atPhone(page, 'account', { noScroll: true });
  }],

  [12, 'sign out', async (page) => {
    if (!page.url().startsWith(origin)) await page.goto(cfg.url + '/tracks');
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/login' || u.pathname.startsWith('/login'), { timeout: 10000 }).catch(() => {}),
      page.click('header form.signout button[type=submit]'),
    ]);
    check(path(page).startsWith('/login'), `signing out should land on the sign-in page, got ${page.url()}`);
    // Signed out, a page's API calls may be refused before the redirect.
    expectConsole(/status of 401/);
    await page.goto(`${cfg.url}/tracks/${cfg.track}`);
    await page.waitForURL((u) => u.pathname === '/login', { timeout: 10000 }).catch(() => {});
    const u = new URL(page.url());
    check(u.pathname === '/login', `a track signed out should go to /login, got ${page.url()}`);
    check(u.searchParams.get('return_to') === `/tracks/${cfg.track}`, `the sign-in page's return_to is "${u.searchParams.get('return_to')}", not /tracks/${cfg.track}`);
  }],
];

async function bundleGzipBytes() {
  const dir = join(here, '..', 'dist', 'assets');
  let total = 0;
  for (const name of await readdir(dir)) {
    if (name.endsWith('.js')) total += gzipSync(await readFile(join(dir, name)), { level: 9 }).length;
  }
  return total;
}

async function main() {
  await mkdir(cfg.out, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
  let failed = null;
  let page;
  try {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true, locale: 'en-GB' });
    // Nothing leaves the machine: requests to hosts other than this one
    // (map tiles from the internet) get an empty image.
    const blank = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=', 'base64');
    const local = (host) => host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
    await context.route((u) => (u.protocol === 'http:' || u.protocol === 'https:') && !local(u.hostname),
      (route) => route.fulfill({ status: 200, contentType: 'image/png', body: blank }));
    page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location() && msg.location().url ? msg.location().url : '';
      const text = msg.text();
      if (expected.some((re) => re.test(where) || re.test(text))) return;
      problems.push(`console error at ${page.url()}: ${text}${where ? ` (${where})` : ''}`);
    });
    page.on('pageerror', (err) => problems.push(`uncaught exception at ${page.url()}: ${err.stack || err.message}`));

    for (const [n, name, run] of steps) {
      if (only && n !== 1 && !only.has(n)) continue;
      const t0 = Date.now();
      try {
        await run(page);
      } catch (err) {
        failed = { n, name, err };
        break;
      }
      log(`ok ${n} ${name} (${Date.now() - t0} ms)`);
    }
  } finally {
    if (failed && page) await shot(page, `failed-step-${failed.n}.png`).catch(() => {});
    await browser.close();
  }

  results.bundle_gzip_bytes = await bundleGzipBytes();
  await writeFile(join(cfg.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  console.log(JSON.stringify(results));

  if (failed) {
    const { n, name, err } = failed;
    console.error(`step ${n} (${name}) failed: ${err instanceof Failure ? err.message : err.stack || err}`);
  }
  if (problems.length) {
    console.error(`${problems.length} console error(s) or uncaught exception(s):`);
    for (const p of problems) console.error('  ' + p);
  }
  if (failed || problems.length) process.exit(1);
  console.log('scenario passed');
}

main().catch((err) => {
  console.error(err instanceof Failure ? err.message : err.stack || err);
  process.exit(1);
});
