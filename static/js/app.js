// app.js: the one shared module of the postcast web UI. It holds the API helper (JSON,
// cookies, errors, redirect to /login on 401, and for a change that needs a recent
// password confirmation — 403 reauth_required — a dialog asking for the password, then
// the same request again), the page header with its navigation and
// log-out button (or, on public pages, a log-in link for visitors), form and message
// helpers, and small formatting helpers. Page scripts import what they need from here;
// nothing here touches a particular page.

const API_BASE = '/api/v1';

/** The pages of a logged-in user, in navigation order. */
export const PAGES = [
  { href: '/', label: 'Overview', blurb: 'Your account at a glance.' },
  { href: '/security', label: 'Security', blurb: '2-step verification, recovery codes and your password.' },
  { href: '/app-passwords', label: 'App passwords', blurb: 'Passwords for mail apps that use IMAP and SMTP.' },
  { href: '/sessions', label: 'Sessions', blurb: 'Where you are logged in; log out other devices.' },
  { href: '/security-log', label: 'Security log', blurb: 'Recent logins and changes to your account.' },
  { href: '/profile', label: 'Profile', blurb: 'Your name, picture, signature and time zone.' },
  { href: '/preferences', label: 'Preferences', blurb: 'Settings as JSON, and files that go with them.' },
  { href: '/live', label: 'Live', blurb: 'Who is streaming now, and recordings to watch.' },
  { href: '/golive', label: 'Go live', blurb: 'Your stream key, the OBS settings, and how your stream is doing.' },
];

/** The pages anybody may open without logging in. */
export const PUBLIC_PAGES = [
  { href: '/live', label: 'Live' },
];

/** An error answered by the API (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.redirecting = false;
  }
}

/** A problem the user can fix (an empty field, a mismatch): shown as it is. */
export class UserError extends Error {
  constructor(message) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * Calls the API and answers `{status, headers, data}`; `data` is the parsed JSON body,
 * or null when there is none. Options: `json` (a value sent as JSON), `body` and
 * `headers` (sent as they are), `redirectOn401` (default true: go to the login page),
 * `reauth` (default true: when the server wants the password confirmed first, ask for it
 * in a dialog and send the request once more).
 * Throws an ApiError for every answer that is not 2xx.
 */
export async function request(method, path, options = {}) {
  const { json, body, headers = {}, redirectOn401 = true, reauth = true } = options;
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json', ...headers } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers['Content-Type'] = 'application/json';
  } else if (body !== undefined) {
    init.body = body;
  }
  let res;
  try {
    res = await fetch(API_BASE + path, init);
  } catch {
    throw new ApiError(0, 'network', 'Could not reach the server. Check your connection and try again.');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const detail = (data && typeof data === 'object' && data.error) || {};
    const retryAfter = res.headers.get('Retry-After');
    const err = new ApiError(res.status, detail.code || `http_${res.status}`, errorMessage(res, detail, retryAfter), retryAfter);
    if (res.status === 401 && redirectOn401) {
      err.redirecting = true;
      goToLogin();
    }
    if (res.status === 403 && err.code === 'reauth_required' && reauth && await confirmPassword()) {
      return request(method, path, { ...options, reauth: false });
    }
    throw err;
  }
  return { status: res.status, headers: res.headers, data };
}

/** Like `request`, answering the body only. */
export async function api(method, path, options) {
  return (await request(method, path, options)).data;
}

/**
 * Asks for the account password in a modal dialog and confirms it with the server
 * (POST /auth/reauth: sensitive changes are then allowed for ten minutes). Answers true
 * once confirmed, false when the user cancels. A wrong password is said in the dialog.
 */
export function confirmPassword() {
  const input = h('input', { id: 'reauth-password', name: 'password', type: 'password',
    autocomplete: 'current-password', required: true });
  const status = h('p', { class: 'form-status', role: 'alert', hidden: true });
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const confirmButton = h('button', { type: 'submit', class: 'primary' }, 'Confirm');
  const form = h('form', { novalidate: true },
    h('h2', { id: 'reauth-title' }, 'Confirm your password'),
    h('p', { id: 'reauth-why' }, 'This change needs your password. It is not asked again for ten minutes.'),
    h('div', { class: 'field' }, h('label', { for: 'reauth-password' }, 'Your password'), input),
    status,
    h('div', { class: 'actions' }, confirmButton, cancel));
  const dialog = h('dialog', { id: 'reauth-dialog', class: 'dialog', 'aria-labelledby': 'reauth-title',
    'aria-describedby': 'reauth-why' }, form);
  return new Promise((resolve) => {
    const finish = (confirmed) => {
      dialog.close();
      dialog.remove();
      resolve(confirmed);
    };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearMessage(status);
      if (!input.value) {
        showMessage(status, 'Enter your password.', 'error');
        return;
      }
      confirmButton.disabled = true;
      try {
        await request('POST', '/auth/reauth', { json: { password: input.value }, redirectOn401: false, reauth: false });
        finish(true);
      } catch (err) {
        showError(status, err.status === 401 ? new UserError('That is not your password') : err);
        input.select();
      } finally {
        confirmButton.disabled = false;
      }
    });
    cancel.addEventListener('click', () => finish(false));
    dialog.addEventListener('cancel', (event) => {
      event.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

function errorMessage(res, detail, retryAfter) {
  if (res.status === 429) {
    const secs = Number.parseInt(retryAfter ?? '', 10);
    return Number.isFinite(secs) && secs > 0
      ? `Too many attempts. Try again in ${describeSeconds(secs)}.`
      : 'Too many attempts. Wait a little and try again.';
  }
  if (detail.message) return sentence(detail.message);
  if (res.status === 413) return 'That is too large for the server.';
  if (res.status >= 500) return 'The server had a problem. Try again in a moment.';
  return `The request failed (${res.status} ${res.statusText}).`.replace(' )', ')');
}

function describeSeconds(secs) {
  if (secs < 90) return `${secs} second${secs === 1 ? '' : 's'}`;
  const mins = Math.ceil(secs / 60);
  return `${mins} minutes`;
}

/** Capitalises a message and ends it with a full stop. */
export function sentence(text) {
  const t = String(text).trim();
  if (!t) return t;
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** Sends the browser to the login page, coming back here afterwards. */
export function goToLogin() {
  if (location.pathname === '/login') return;
  const here = location.pathname + location.search;
  const next = here === '/' ? '' : `?next=${encodeURIComponent(here)}`;
  location.assign(`/login${next}`);
}

/**
 * A same-origin path from `?next=`, or '/' when it is missing or points elsewhere. The
 * browser's own URL parser decides (it drops tabs and newlines, so `/\t/evil.example`
 * would become `//evil.example`); only a path resolving to this origin is kept.
 */
export function nextPath(search = location.search) {
  const next = new URLSearchParams(search).get('next') ?? '';
  if (!next.startsWith('/')) return '/';
  try {
    const target = new URL(next, location.origin);
    return target.origin === location.origin ? target.pathname + target.search + target.hash : '/';
  } catch {
    return '/';
  }
}

/* ---------- DOM helpers ---------- */

/** Finds one element or throws, so a missing id shows up at once. */
export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

/**
 * Builds an element: `h('td', {class: 'num'}, 'text', otherNode)`. Attributes named
 * `on…` with a function become event listeners; text is always set as text, never HTML.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/* ---------- Messages ---------- */

/** Shows `text` in a message element; `kind` is 'error', 'ok' or 'info'. */
export function showMessage(el, text, kind = 'info') {
  if (!el) return;
  el.textContent = text;
  el.classList.remove('error', 'ok', 'info');
  el.classList.add(kind);
  el.hidden = false;
}

/** Shows an error (an ApiError or any Error) in a message element. */
export function showError(el, err) {
  if (err && err.redirecting) return;
  const known = err instanceof ApiError || err instanceof UserError;
  const text = known ? sentence(err.message) : `Something went wrong: ${err?.message ?? err}`;
  if (!known) console.error(err);
  showMessage(el, text, 'error');
}

/** Hides a message element. */
export function clearMessage(el) {
  if (!el) return;
  el.hidden = true;
  el.textContent = '';
}

/**
 * Handles a form's submit: prevents the page load, disables its buttons while busy,
 * clears and then shows errors in the form's own `.form-status` element (a direct
 * child, else the first one inside). The handler gets
 * the form's fields as an object and may answer a success message to show.
 */
export function bindForm(form, handler) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const status = form.querySelector(':scope > .form-status') ?? form.querySelector('.form-status');
    clearMessage(status);
    const buttons = [...form.querySelectorAll('button')];
    for (const b of buttons) b.disabled = true;
    const submit = event.submitter ?? form.querySelector('button[type="submit"]');
    submit?.setAttribute('aria-busy', 'true');
    try {
      const fields = Object.fromEntries(new FormData(form));
      const done = await handler(fields, form);
      if (typeof done === 'string') showMessage(status, done, 'ok');
    } catch (err) {
      showError(status, err);
    } finally {
      for (const b of buttons) b.disabled = false;
      submit?.removeAttribute('aria-busy');
    }
  });
}

/** Runs an async action from a button, disabling it meanwhile; errors go to `statusEl`. */
export function onClick(button, statusEl, action) {
  button.addEventListener('click', async () => {
    clearMessage(statusEl);
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    try {
      const done = await action();
      if (typeof done === 'string') showMessage(statusEl, done, 'ok');
    } catch (err) {
      showError(statusEl, err);
    } finally {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  });
}

/* ---------- The page shell ---------- */

/**
 * For pages that need a login: fetches the account (redirecting to /login on 401) and
 * draws the header with the navigation and a log-out button. Answers the account.
 */
export async function startPage() {
  renderHeader(null);
  const me = await api('GET', '/me');
  renderHeader(me);
  return me;
}

/**
 * For pages anybody may see (live streams): draws the header for a visitor, then, when
 * the browser is logged in, for that user. Answers the account, or null for a visitor.
 */
export async function startPublicPage() {
  renderHeader(null, { visitor: true });
  let me = null;
  try {
    me = await api('GET', '/me', { redirectOn401: false });
  } catch {
    // A visitor (or the server is away): the page works without an account.
  }
  renderHeader(me, { visitor: !me });
  return me;
}

/**
 * Draws the header; `me` null draws the brand only (login and registration), or with
 * `{visitor: true}` the public pages and a log-in link.
 */
export function renderHeader(me, { visitor = false } = {}) {
  const header = document.querySelector('header.site-header');
  if (!header) return;
  const inner = h('div', { class: 'site-header-inner' },
    h('a', { class: 'brand', href: '/' }, h('img', { src: '/favicon.svg', alt: '' }), 'postcast'));
  const here = location.pathname.replace(/\/$/, '') || '/';
  const nav = (pages, label) => h('nav', { class: 'site-nav', 'aria-label': label }, h('ul', {}, pages.map((p) =>
    h('li', {}, h('a', { href: p.href, 'aria-current': p.href === here ? 'page' : null }, p.label)))));
  if (me) {
    inner.append(nav(PAGES, 'Account'));
    const logout = h('button', { type: 'button', class: 'small', id: 'logout' }, 'Log out');
    logout.addEventListener('click', logOut);
    inner.append(h('div', { class: 'user-box' }, h('span', { class: 'who', title: me.address }, me.username), logout));
  } else if (visitor) {
    inner.append(nav(PUBLIC_PAGES, 'Site'));
    const back = location.pathname + location.search;
    inner.append(h('div', { class: 'user-box' },
      h('a', { class: 'button small', href: `/login?next=${encodeURIComponent(back)}` }, 'Log in')));
  }
  header.replaceChildren(inner);
}

/**
 * Whether the page was reached over plain HTTP by a name other than this machine's own
 * (localhost, 127.0.0.0/8, ::1): passwords and session cookies then cross a network in
 * the clear. Behind an HTTPS proxy the page's protocol is https and this is false.
 */
export function plainHttpFromAfar(loc = location) {
  if (loc.protocol !== 'http:') return false;
  const host = loc.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback = host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1';
  return !loopback;
}

/** Puts a warning on top of the page when it came over plain HTTP from afar. */
function warnOfPlainHttp() {
  if (!plainHttpFromAfar() || document.getElementById('plain-http-warning')) return;
  const where = document.querySelector('main') ?? document.body;
  where.prepend(h('p', { class: 'notice', id: 'plain-http-warning', role: 'alert' },
    'This connection is not encrypted: your password and mail can be read on the way. ',
    'Use this site over HTTPS (put a TLS proxy such as Caddy or nginx in front of postcast).'));
}

warnOfPlainHttp();

/** Ends this session and goes to the login page. */
export async function logOut() {
  try {
    await api('POST', '/auth/logout', { redirectOn401: false });
  } catch {
    // Already logged out, or the server is away: the login page is right either way.
  }
  location.assign('/login');
}

/** Reports a failure to load a page's data in its `#page-status` element. */
export function pageFailed(err) {
  showError(document.querySelector('#page-status'), err);
}

/* ---------- Formatting ---------- */

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** A Date from Unix seconds, milliseconds or an ISO 8601 string; null when unknown. */
export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  let d;
  if (typeof value === 'number' || /^\d+(\.\d+)?$/.test(String(value))) {
    const n = Number(value);
    d = new Date(n > 1e12 ? n : n * 1000);
  } else {
    d = new Date(value);
  }
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A `<time>` element for a timestamp, or a dash when there is none. */
export function timeEl(value, empty = '—') {
  const d = toDate(value);
  if (!d) return h('span', { class: 'empty' }, empty);
  return h('time', { datetime: d.toISOString(), title: d.toISOString() }, dateTime.format(d));
}

/** A timestamp as text. */
export function formatTime(value, empty = '—') {
  const d = toDate(value);
  return d ? dateTime.format(d) : empty;
}

/** A length in milliseconds as text: 1:02:03 or 4:05. */
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(Number(ms) / 1000));
  if (!Number.isFinite(total)) return '—';
  const hours = Math.floor(total / 3600);
  const mins = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(mins).padStart(2, '0')}:${secs}` : `${mins}:${secs}`;
}

/** A byte count as text: 1.2 MB. */
export function formatBytes(n) {
  const size = Number(n);
  if (!Number.isFinite(size)) return '—';
  if (size < 1024) return `${size} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = size;
  let i = -1;
  do {
    v /= 1024;
    i += 1;
  } while (v >= 1024 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** `some_event_kind` → `Some event kind`. */
export function humanize(kind) {
  const t = String(kind ?? '').replace(/[_.-]+/g, ' ').trim();
  return t ? t[0].toUpperCase() + t.slice(1) : '';
}

/** A short description of a browser from its user agent: "Firefox on Linux". */
export function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = [
    [/Edg\//, 'Edge'], [/OPR\//, 'Opera'], [/Firefox\//, 'Firefox'], [/Chrom(e|ium)\//, 'Chrome'],
    [/Safari\//, 'Safari'], [/Thunderbird\//, 'Thunderbird'], [/curl\//, 'curl'], [/reqwest/i, 'reqwest'],
  ].find(([re]) => re.test(ua))?.[1];
  const os = [
    [/Android/, 'Android'], [/iPhone|iPad|iOS/, 'iOS'], [/Windows/, 'Windows'], [/Mac OS X|Macintosh/, 'macOS'],
    [/CrOS/, 'ChromeOS'], [/Linux/, 'Linux'],
  ].find(([re]) => re.test(ua))?.[1];
  if (browser && os) return `${browser} on ${os}`;
  return browser ?? os ?? ua.slice(0, 40);
}

/* ---------- Clipboard and downloads ---------- */

/** Copies text, falling back to selecting it; answers whether it was copied. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/** A copy button for `text` that says "Copied" for a moment. */
export function copyButton(getText, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'small' }, label);
  b.addEventListener('click', async () => {
    const ok = await copyText(typeof getText === 'function' ? getText() : getText);
    b.textContent = ok ? 'Copied' : 'Select and copy by hand';
    setTimeout(() => { b.textContent = label; }, 2000);
  });
  return b;
}

/** Offers `text` as a file download named `filename`. */
export function downloadText(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
