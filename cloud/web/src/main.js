// trackgate's browser app: the shell (header, navigation, sign-out), the
// client-side router over the History API, and the pages.
import 'leaflet/dist/leaflet.css';
import 'uplot/dist/uPlot.min.css';
import './style.css';

import { ApiError, config, message, quiet } from './api.js';
import { h, replace } from './dom.js';
import { signOutForm } from './shell.js';
import { tracksPage } from './pages/tracks.js';
import { trackPage } from './pages/track.js';
import { livePage } from './pages/live.js';
import { devicesPage } from './pages/devices.js';
import { accountPage } from './pages/account.js';

const ROUTES = [
  { path: /^\/(?:tracks\/?)?$/, page: tracksPage, nav: '/tracks' },
  { path: /^\/tracks\/([^/]+)\/?$/, page: trackPage, nav: '/tracks' },
  { path: /^\/live\/?$/, page: livePage, nav: '/live' },
  { path: /^\/devices\/?$/, page: devicesPage, nav: '/devices' },
  { path: /^\/account\/?$/, page: accountPage, nav: '/account' },
];

const NAV = [
  ['/tracks', 'Tracks'],
  ['/live', 'Live'],
  ['/devices', 'Devices'],
  ['/account', 'Account'],
];

function match(pathname) {
  for (const r of ROUTES) {
    const m = r.path.exec(pathname);
    if (m) return { route: r, params: m.slice(1).map(decodeURIComponent) };
  }
  return null;
}

const navLinks = NAV.map(([href, label]) => h('a', { href }, label));
const main = h('main', { id: 'main', tabindex: '-1' });

function shell() {
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
    h('a', { class: 'brand', href: '/tracks' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'trackgate'),
    h('nav', { 'aria-label': 'Main' }, h('ul', null, navLinks.map((a) => h('li', null, a)))),
    h('div', { class: 'who' },
      config.user ? h('span', { class: 'user', title: 'Signed in as ' + config.user }, config.user) : null,
      signOutForm('link')));
  const root = document.getElementById('app');
  replace(root, header, main);
}

let current = null; // { controller, cleanups }

// navigate shows path (with its query) in the app, adding a history entry
// unless replace.
export function navigate(path, { replace: rep = false } = {}) {
  if (rep) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render(true);
}

function leave() {
  for (const dlg of document.querySelectorAll('dialog[open]')) dlg.close();
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups.splice(0).reverse()) {
    try {
      fn();
    } catch (err) {
      console.warn('cleanup', err);
    }
  }
  current = null;
}

async function render(moved) {
  leave();
  delete document.body.dataset.ready;
  const controller = new AbortController();
  const cleanups = [];
  current = { controller, cleanups };

  const found = match(location.pathname);
  for (const a of navLinks) {
    if (found && found.route.nav === a.getAttribute('href')) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  document.title = 'trackgate';
  if (moved) window.scrollTo(0, 0);

  const ctx = {
    main,
    params: found ? found.params : [],
    query: new URLSearchParams(location.search),
    signal: controller.signal,
    onLeave: (fn) => cleanups.push(fn),
    navigate,
    title: (t) => {
      document.title = t ? `${t} · trackgate` : 'trackgate';
    },
    focus: () => {
      if (!moved) return;
      const h1 = main.querySelector('h1');
      if (h1) {
        h1.tabIndex = -1;
        h1.focus({ preventScroll: true });
      }
    },
  };
  if (!found) {
    ctx.title('Not found');
    main.append(h('h1', null, 'Page not found'),
      h('p', null, 'There is no page at this address. ', h('a', { href: '/tracks' }, 'Go to your tracks'), '.'));
    document.body.dataset.ready = 'notfound';
    return;
  }
  try {
    await found.route.page(ctx);
  } catch (err) {
    if (quiet(err) || controller.signal.aborted) return;
    if (!(err instanceof ApiError)) console.warn(err);
    main.append(h('div', { class: 'alert', role: 'alert' }, message(err)));
  }
}

// Links inside the app move by the History API; others (sign-in pages,
// downloads, new tabs, modified clicks) are left to the browser.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target instanceof Element ? e.target.closest('a[href]') : null;
  if (!a || a.hasAttribute('download') || (a.target && a.target !== '_self')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !match(url.pathname)) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', () => render(true));

shell();
render(false);
