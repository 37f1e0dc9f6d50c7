// Devices (/devices): the person's devices, registering a new one (its
// token shown once, with OwnTracks settings and a QR code to set up the
// app), automatic tracks, and revoking.
import { api, config, devicesWithState, message, quiet } from '../api.js';
import { alertBox, confirmDialog, copyText, field, h, replace, statusBox } from '../dom.js';
import { ago, when } from '../format.js';
import { qrCode } from '../qr.js';
import { loading } from '../shell.js';

// ownTracksURL is the OwnTracks app's configuration link for a device.
export function ownTracksURL(id, token) {
  const conf = {
    _type: 'configuration',
    mode: 0,
    host: config.mqtt.host,
    port: Number(config.mqtt.port),
    tls: Boolean(config.mqtt.tls),
    ws: Boolean(config.mqtt.ws),
    auth: true,
    username: id,
    password: token,
    deviceId: id,
    tid: id.slice(-2),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(conf));
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'owntracks:///config?inline=' + encodeURIComponent(btoa(bin));
}

function copyButton(text, input, label) {
  const btn = h('button', { type: 'button', class: 'secondary copy', 'aria-label': label }, 'Copy');
  btn.addEventListener('click', async () => {
    const ok = await copyText(text, input);
    btn.textContent = ok ? 'Copied' : 'Press Ctrl+C';
    setTimeout(() => {
      btn.textContent = 'Copy';
    }, 2000);
  });
  return btn;
}

export async function devicesPage(ctx) {
  ctx.title('Devices');
  const alert = alertBox();
  const status = statusBox();
  const listEl = h('div', { class: 'device-list' }, loading('Loading devices…'));

  const idField = field('Device id', {
    type: 'text', name: 'id', required: true, maxlength: 64, pattern: '[A-Za-z0-9._:\\-]{1,64}',
    autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false',
  }, 'Letters, digits and . _ - : only, e.g. anna-phone. It is also the device’s MQTT user name.');
  const nameField = field('Name', { type: 'text', name: 'name', maxlength: 200, autocomplete: 'off' }, 'Optional, e.g. Anna’s phone.');
  const regBtn = h('button', { type: 'submit', class: 'primary' }, 'Register');
  const regAlert = alertBox();
  const form = h('form', { class: 'register' }, idField.el, nameField.el, h('div', { class: 'button-row' }, regBtn), regAlert.el);
  const result = h('div', { class: 'token-result', hidden: true });

  ctx.main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Devices')),
    alert.el,
    status.el,
    h('div', { class: 'devices-layout' },
      h('section', { class: 'panel', 'aria-labelledby': 'dev-list-h' }, h('h2', { id: 'dev-list-h' }, 'Your devices'), listEl),
      h('section', { class: 'panel', 'aria-labelledby': 'dev-reg-h' }, h('h2', { id: 'dev-reg-h' }, 'Register a device'), form, result)));
  ctx.focus();

  function card(d) {
    const label = d.name || d.id;
    const splitId = 'split-' + d.id.replace(/[^A-Za-z0-9_-]/g, '_');
    const splitInput = h('input', {
      id: splitId, type: 'number', name: 'auto_split', min: 0, max: 10080, step: 1, inputmode: 'numeric', value: String(d.auto_split || 0),
    });
    const splitBtn = h('button', { type: 'submit', class: 'secondary' }, 'Save');
    const splitForm = h('form', { class: 'split' },
      h('label', { for: splitId }, 'Automatic tracks (minutes, 0 = off)'),
      h('div', { class: 'split-row' }, splitInput, splitBtn));
    splitForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      alert.clear();
      status.clear();
      const minutes = Number(splitInput.value);
      if (!Number.isInteger(minutes) || minutes < 0 || minutes > 10080) {
        alert.show('Automatic tracks: give whole minutes from 0 (off) to 10080 (a week).');
        return;
      }
      splitBtn.disabled = true;
      try {
        await api('/api/v1/devices/' + encodeURIComponent(d.id), { method: 'PATCH', body: { auto_split: minutes }, signal: ctx.signal });
        status.show(minutes ? `${label} starts a new track after ${minutes} min without positions.` : `Automatic tracks are off for ${label}.`);
      } catch (err) {
        if (!quiet(err)) alert.show(message(err));
      } finally {
        splitBtn.disabled = false;
      }
    });

    const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke ${label}` }, 'Revoke');
    revoke.addEventListener('click', async () => {
      const ok = await confirmDialog({
        title: `Revoke ${label}?`,
        text: `The device ${d.id} is forgotten and its token stops working at once. Its tracks stay.`,
        confirm: 'Revoke',
      });
      if (!ok) return;
      alert.clear();
      status.clear();
      revoke.disabled = true;
      try {
        await api('/api/v1/devices/' + encodeURIComponent(d.id), { method: 'DELETE', signal: ctx.signal });
        status.show(`${label} was revoked.`);
        await load();
      } catch (err) {
        if (quiet(err)) return;
        revoke.disabled = false;
        alert.show(message(err));
      }
    });

    const hasState = 'last_seen' in d;
    return h('li', { class: 'device-card', dataset: { device: d.id } },
      h('div', { class: 'device-head' },
        h('h3', null, label),
        d.recording ? h('a', { class: 'badge recording', href: '/tracks/' + encodeURIComponent(d.recording) }, 'recording') : null),
      h('dl', { class: 'facts' },
        h('div', null, h('dt', null, 'Id'), h('dd', null, h('code', null, d.id))),
        h('div', null, h('dt', null, 'Registered'), h('dd', null, d.created ? h('time', { datetime: d.created }, when(d.created)) : '–')),
        hasState ? h('div', null, h('dt', null, 'Last seen'), h('dd', null, d.last_seen
          ? h('time', { datetime: d.last_seen, title: when(d.last_seen) }, ago(d.last_seen))
          : 'never')) : null),
      h('div', { class: 'device-actions' }, hasState ? splitForm : null, revoke));
  }

  async function load() {
    try {
      const devices = await devicesWithState(ctx.signal);
      if (!devices.length) replace(listEl, h('p', { class: 'empty' }, 'No devices yet. Register your first one.'));
      else replace(listEl, h('ul', { class: 'device-cards' }, devices.map(card)));
    } catch (err) {
      if (quiet(err)) throw err;
      replace(listEl);
      alert.show(message(err));
    }
  }

  function showToken(dev) {
    const id = dev.id;
    if (!dev.token) {
      replace(result, h('p', { class: 'status' }, `Device ${id} is registered with its own key; it signs in by itself.`));
      result.hidden = false;
      return;
    }
    const tokenId = 'device-token';
    const tokenInput = h('input', { id: tokenId, type: 'text', readOnly: true, value: dev.token, class: 'mono', spellcheck: 'false', autocomplete: 'off' });
    tokenInput.addEventListener('focus', () => tokenInput.select());
    const url = ownTracksURL(id, dev.token);
    const settings = [
      ['Mode', 'MQTT'],
      ['Host', config.mqtt.host],
      ['Port', String(config.mqtt.port)],
      ['TLS', config.mqtt.tls ? 'on' : 'off'],
      ['WebSockets', config.mqtt.ws ? 'on' : 'off'],
      ['User name', id],
      ['Password', dev.token],
      ['Device ID', id],
      ['Tracker ID', id.slice(-2)],
    ];
    const done = h('button', { type: 'button', class: 'secondary' }, 'Done');
    done.addEventListener('click', () => {
      result.hidden = true;
      replace(result);
    });
    replace(result,
      h('h3', null, `${id} is registered`),
      h('div', { class: 'field' },
        h('label', { for: tokenId }, 'Device token'),
        h('div', { class: 'copy-row' }, tokenInput, copyButton(dev.token, tokenInput, 'Copy the device token'))),
      h('p', { class: 'warning' }, 'Copy the token now: it will not be shown again. Revoke the device and register it again if it is lost.'),
      h('h4', null, 'OwnTracks settings'),
      h('div', { class: 'owntracks' },
        h('dl', { class: 'facts settings' }, settings.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, h('code', null, v))))),
        h('figure', { class: 'qr-box' },
          qrCode(url, `QR code of the OwnTracks configuration of ${id}`, 'L'),
          h('figcaption', { class: 'small muted' }, 'Scan with the phone’s camera, or open the link on the phone, to set up OwnTracks.'))),
      h('p', { class: 'small' }, h('a', { href: url }, 'Open in OwnTracks')),
      h('div', { class: 'button-row' }, done));
    result.hidden = false;
    result.scrollIntoView({ block: 'nearest' });
    tokenInput.focus();
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    regAlert.clear();
    status.clear();
    const id = idField.input.value.trim();
    const name = nameField.input.value.trim();
    if (!/^[A-Za-z0-9._:-]{1,64}$/.test(id)) {
      regAlert.show('The device id takes 1 to 64 letters, digits and . _ - : only.');
      idField.input.focus();
      return;
    }
    regBtn.disabled = true;
    try {
      const body = { id };
      if (name) body.name = name;
      const dev = await api('/api/v1/devices', { method: 'POST', body, signal: ctx.signal });
      form.reset();
      showToken({ ...dev, id: dev.id || id });
      await load();
    } catch (err) {
      if (!quiet(err)) regAlert.show(message(err));
    } finally {
      regBtn.disabled = false;
    }
  });

  await load();
  document.body.dataset.ready = 'devices';
}
