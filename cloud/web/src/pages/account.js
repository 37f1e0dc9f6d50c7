// Account (/account): two-factor sign-in, the password, and signing out.
import { api, message, quiet } from '../api.js';
import { alertBox, field, h, replace, statusBox } from '../dom.js';
import { qrCode } from '../qr.js';
import { loading, signOutForm } from '../shell.js';

export async function accountPage(ctx) {
  ctx.title('Account');
  const head = h('div', { class: 'page-head' }, h('h1', null, 'Account'));
  const wait = loading();
  ctx.main.append(head, wait);
  let account;
  try {
    account = await api('/api/v1/account', { signal: ctx.signal });
  } finally {
    wait.remove();
  }
  head.append(h('p', { class: 'muted' }, 'Signed in as ', h('strong', null, account.name)));

  // Two-factor sign-in.
  const totpAlert = alertBox();
  const totpStatus = statusBox();
  const totpState = h('p', { class: 'state' });
  const pw = field('Current password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const setupBtn = h('button', { type: 'submit', class: 'primary' });
  // The hidden user name lets password managers pair the passwords with it.
  const who = () => h('input', { type: 'text', name: 'username', autocomplete: 'username', value: account.name, hidden: true, readOnly: true, tabindex: '-1' });
  const setupForm = h('form', { class: 'setup' }, who(), pw.el, h('div', { class: 'button-row' }, setupBtn));
  const enrol = h('div', { class: 'enrol', hidden: true });

  function showState() {
    totpState.textContent = account.totp
      ? 'Two-factor sign-in is on: signing in asks for a code from your authenticator app.'
      : 'Two-factor sign-in is off. Turn it on so that a password alone cannot sign in.';
    totpState.classList.toggle('on', Boolean(account.totp));
    setupBtn.textContent = account.totp ? 'Replace two-factor key' : 'Set up two-factor';
  }
  showState();

  setupForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    totpAlert.clear();
    totpStatus.clear();
    setupBtn.disabled = true;
    try {
      const en = await api('/api/v1/account/totp', { method: 'POST', body: { password: pw.input.value }, signal: ctx.signal });
      pw.input.value = '';
      showEnrolment(en);
    } catch (err) {
      if (!quiet(err)) totpAlert.show(message(err));
    } finally {
      setupBtn.disabled = false;
    }
  });

  function showEnrolment(en) {
    const code = field('Code from the app', {
      type: 'text', name: 'code', inputmode: 'numeric', pattern: '[0-9]{6}', maxlength: 6, autocomplete: 'one-time-code', required: true,
    });
    const confirmBtn = h('button', { type: 'submit', class: 'primary' }, 'Confirm');
    const cancelBtn = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const confirmForm = h('form', { class: 'inline-form' }, code.el, confirmBtn, cancelBtn);
    const secret = (en.secret || '').replace(/(.{4})/g, '$1 ').trim();
    cancelBtn.addEventListener('click', () => {
      enrol.hidden = true;
      replace(enrol);
      setupForm.hidden = false;
    });
    confirmForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      totpAlert.clear();
      const value = code.input.value.replace(/\s+/g, '');
      if (!/^\d{6}$/.test(value)) {
        totpAlert.show('Enter the 6-digit code the app shows.');
        return;
      }
      confirmBtn.disabled = true;
      try {
        await api('/api/v1/account/totp/confirm', { method: 'POST', body: { enrolment: en.enrolment, code: value }, signal: ctx.signal });
        account.totp = true;
        enrol.hidden = true;
        replace(enrol);
        setupForm.hidden = false;
        showState();
        totpStatus.show('Two-factor sign-in is on.');
      } catch (err) {
        if (!quiet(err)) totpAlert.show(message(err));
      } finally {
        confirmBtn.disabled = false;
      }
    });
    replace(enrol,
      h('p', null, 'Scan this code with your authenticator app, or enter the key by hand. Then type the code the app shows.'),
      h('div', { class: 'enrol-grid' },
        h('figure', { class: 'qr-box' }, qrCode(en.uri, 'QR code of the two-factor key')),
        h('div', null,
          h('p', { class: 'small muted' }, 'Key'),
          h('p', null, h('code', { class: 'secret' }, secret)),
          confirmForm)));
    enrol.hidden = false;
    setupForm.hidden = true;
    code.input.focus();
  }

  // Password.
  const pwAlert = alertBox();
  const pwStatus = statusBox();
  const cur = field('Current password', { type: 'password', name: 'current', autocomplete: 'current-password', required: true });
  const next = field('New password', { type: 'password', name: 'new', autocomplete: 'new-password', required: true });
  const again = field('Repeat the new password', { type: 'password', name: 'repeat', autocomplete: 'new-password', required: true });
  const pwBtn = h('button', { type: 'submit', class: 'primary' }, 'Change password');
  const pwForm = h('form', { class: 'password' }, who(), cur.el, next.el, again.el, h('div', { class: 'button-row' }, pwBtn), pwAlert.el, pwStatus.el);
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    pwAlert.clear();
    pwStatus.clear();
    if (next.input.value !== again.input.value) {
      pwAlert.show('The new password and its repetition differ.');
      again.input.focus();
      return;
    }
    if (next.input.value === cur.input.value) {
      pwAlert.show('The new password is the same as the current one.');
      next.input.focus();
      return;
    }
    pwBtn.disabled = true;
    try {
      await api('/api/v1/account/password', { method: 'POST', body: { current: cur.input.value, new: next.input.value }, signal: ctx.signal });
      pwForm.reset();
      pwStatus.show('Password changed. Every sign-in has ended: sign in again with the new password.');
      setTimeout(() => location.assign('/login'), 2500);
    } catch (err) {
      if (!quiet(err)) pwAlert.show(message(err));
      pwBtn.disabled = false;
    }
  });

  ctx.main.append(h('div', { class: 'account-layout' },
    h('section', { class: 'panel', 'aria-labelledby': 'tfa-h' },
      h('h2', { id: 'tfa-h' }, 'Two-factor sign-in'), totpState, setupForm, enrol, totpAlert.el, totpStatus.el),
    h('section', { class: 'panel', 'aria-labelledby': 'pw-h' },
      h('h2', { id: 'pw-h' }, 'Password'), pwForm),
    h('section', { class: 'panel', 'aria-labelledby': 'out-h' },
      h('h2', { id: 'out-h' }, 'Sign out'),
      h('p', { class: 'muted' }, 'Ends this sign-in in this browser.'),
      signOutForm('secondary'))));
  ctx.focus();
  document.body.dataset.ready = 'account';
}
