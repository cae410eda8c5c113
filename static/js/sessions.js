// sessions.js: the sessions page. Lists the account's sessions (GET /auth/sessions),
// marks this one, and logs out one or all the others (DELETE /auth/sessions/{id}).
// Revoking this very session goes to the login page.

import { $, api, describeAgent, goToLogin, h, onClick, pageFailed, showError, showMessage, startPage, timeEl } from './app.js';

let sessions = [];

async function load() {
  const answer = await api('GET', '/auth/sessions');
  sessions = Array.isArray(answer?.sessions) ? answer.sessions : [];
  sessions.sort((a, b) => Number(b.current) - Number(a.current));
  $('#sessions tbody').replaceChildren(...sessions.map(row));
  $('#revoke-others').hidden = !sessions.some((s) => !s.current);
}

function row(s) {
  const button = h('button', { type: 'button', class: 'small danger' }, s.current ? 'Log out' : 'Revoke');
  button.setAttribute('aria-label', s.current ? 'Log out this session' : `Revoke the session from ${describeAgent(s.user_agent)}`);
  button.addEventListener('click', () => revoke(s, button));
  return h('tr', { class: s.current ? 'current' : null, 'data-id': s.id },
    h('td', {},
      describeAgent(s.user_agent), s.current ? ' ' : null,
      s.current ? h('span', { class: 'badge info' }, 'This device') : null,
      h('span', { class: 'ua', title: s.user_agent ?? '' }, s.user_agent ?? '')),
    h('td', { class: 'mono' }, s.ip ?? '—'),
    h('td', {}, timeEl(s.created_at)),
    h('td', {}, timeEl(s.last_seen)),
    h('td', { class: 'num' }, button));
}

async function revoke(s, button) {
  const what = s.current ? 'Log out this browser?' : `Log out the session from ${describeAgent(s.user_agent)}?`;
  if (!confirm(what)) return;
  button.disabled = true;
  try {
    await api('DELETE', `/auth/sessions/${encodeURIComponent(s.id)}`);
    if (s.current) {
      goToLogin();
      return;
    }
    await load();
    showMessage($('#page-status'), 'The session is logged out.', 'info');
  } catch (err) {
    button.disabled = false;
    showError($('#page-status'), err);
  }
}

onClick($('#revoke-others'), $('#page-status'), async () => {
  const others = sessions.filter((s) => !s.current);
  if (others.length === 0 || !confirm(`Log out ${others.length} other session${others.length === 1 ? '' : 's'}?`)) return undefined;
  for (const s of others) await api('DELETE', `/auth/sessions/${encodeURIComponent(s.id)}`);
  await load();
  return 'All other sessions are logged out.';
});

async function main() {
  await startPage();
  await load();
}

main().catch(pageFailed);
