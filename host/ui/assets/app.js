// The dashboard's entry: asks the gateway who we are (GET /ui/api/session),
// shows the login form on 401, and mounts one page per hash route
// (#/overview, #/requests, #/requests/<id>, #/models, #/keys, #/playground).
// A page module exports mount(main, ctx) and returns a cleanup function
// that stops its timers and streams.

import { api, key, setUnauthorizedHandler } from './api.js';
import { h, notice, show } from './dom.js';
import * as login from './page-login.js';
import * as overview from './page-overview.js';
import * as requests from './page-requests.js';
import * as request from './page-request.js';
import * as models from './page-models.js';
import * as keys from './page-keys.js';
import * as playground from './page-playground.js';

const ROUTES = { overview, requests, models, keys, playground };
const TITLES = { overview: 'Overview', requests: 'Requests', request: 'Request', models: 'Models', keys: 'Keys', playground: 'Playground' };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let session = null;
let cleanup = null;
let firstRoute = true;

function unmount() {
  try {
    cleanup?.();
  } finally {
    cleanup = null;
  }
}

/** The page a hash names: {name, page, params}. */
function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'requests' && parts[1]) return { name: 'request', page: request, params: { id: parts.slice(1).join('/') } };
  if (ROUTES[parts[0]]) return { name: parts[0], page: ROUTES[parts[0]], params: {} };
  return null;
}

function route() {
  if (!session) return;
  const r = parseHash();
  if (!r) {
    history.replaceState(null, '', '#/overview');
    return route();
  }
  unmount();
  main.replaceChildren();
  for (const a of nav.querySelectorAll('a[data-nav]')) {
    const current = a.dataset.nav === r.name || (r.name === 'request' && a.dataset.nav === 'requests');
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[r.name]} · conclave`;
  cleanup = r.page.mount(main, { session, params: r.params }) ?? null;
  // After a navigation (not the first load), start reading at the page.
  if (!firstRoute) main.focus({ preventScroll: false });
  firstRoute = false;
}

function chrome() {
  nav.hidden = !session;
  const who = document.getElementById('who');
  who.textContent = session
    ? `${session.role === 'key' ? (session.key_alias ?? session.caller) : session.role === 'open' ? 'open gateway' : 'admin'}${session.version ? ` · v${session.version}` : ''}`
    : '';
  // Nothing to log out of on an open gateway reached without a key.
  document.getElementById('logout').hidden = !session || !key.get();
}

function showLogin(message) {
  session = null;
  unmount();
  chrome();
  document.title = 'Sign in · conclave';
  cleanup = login.mount(main, { message, signIn }) ?? null;
}

/** Tries a key; resolves to null when the gateway accepts it, else to the reason. */
async function signIn(value) {
  key.set(value);
  try {
    session = await api('/ui/api/session', { quiet401: true });
  } catch (e) {
    session = null;
    key.clear();
    return e.status === 401 ? `This key was refused: ${e.message}` : e.message;
  }
  if (session?.login_required || !session?.role) {
    session = null;
    key.clear();
    return 'This key was refused.';
  }
  chrome();
  firstRoute = true;
  route();
  return null;
}

async function boot() {
  show(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    session = await api('/ui/api/session', { quiet401: true });
  } catch (e) {
    if (e.status === 401) {
      key.clear();
      return showLogin('Your key is no longer accepted; sign in again.');
    }
    show(main, notice(`The dashboard could not start: ${e.message}`, 'error'),
      h('button', { type: 'button', class: 'btn', onclick: boot }, 'Try again'));
    return;
  }
  // Asked without a key where one is needed, the gateway answers
  // login_required (a 200, so the browser logs no error) rather than 401.
  if (session?.login_required || !session?.role) return showLogin(null);
  chrome();
  route();
}

// ---- header controls --------------------------------------------------------

const THEMES = ['auto', 'dark', 'light'];
const THEME_KEY = 'conclave.theme'; // a display preference only, never the key

function applyTheme(t) {
  if (t === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  const b = document.getElementById('theme-toggle');
  b.textContent = { auto: '◐ auto', dark: '● dark', light: '○ light' }[t];
  b.setAttribute('aria-label', `Colour theme: ${t === 'auto' ? 'follow the system' : t}; change`);
}

function wireHeader() {
  let theme = localStorage.getItem(THEME_KEY) ?? 'auto';
  if (!THEMES.includes(theme)) theme = 'auto';
  applyTheme(theme);
  document.getElementById('theme-toggle').addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem(THEME_KEY, theme);
    applyTheme(theme);
  });
  document.getElementById('logout').addEventListener('click', () => {
    key.clear();
    showLogin('Signed out.');
  });
  // The skip link must not change the hash (that is the router's).
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    main.focus();
  });
}

setUnauthorizedHandler(() => {
  if (session) showLogin('The gateway no longer accepts this key; sign in again.');
});
window.addEventListener('hashchange', route);
wireHeader();
boot();
