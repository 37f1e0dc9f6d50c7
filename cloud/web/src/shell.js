// Parts of the app's frame that pages share.
import { config } from './api.js';
import { h } from './dom.js';

// signOutForm is the sign-out form: a POST to /auth/logout with the CSRF
// token; the server ends the session and answers with the sign-in page.
export function signOutForm(style = 'secondary') {
  return h('form', { method: 'post', action: '/auth/logout', class: 'signout' },
    h('input', { type: 'hidden', name: 'csrf', value: config.csrf }),
    h('button', { type: 'submit', class: style }, 'Sign out'));
}

// loading is a placeholder shown while a page waits for the API.
export function loading(text = 'Loading…') {
  return h('p', { class: 'loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}
