// app-passwords.js: the app passwords page. Lists them (GET /app-passwords), creates one
// and shows its password once, and revokes one after asking.

import { $, UserError, api, bindForm, copyButton, h, pageFailed, showError, showMessage, startPage, timeEl } from './app.js';

let lastPassword = '';

async function load() {
  const answer = await api('GET', '/app-passwords');
  const list = Array.isArray(answer?.app_passwords) ? answer.app_passwords : [];
  const rows = list.map((p) => {
    const revoke = h('button', { type: 'button', class: 'small danger', 'aria-label': `Revoke ${p.name}` }, 'Revoke');
    revoke.addEventListener('click', () => revokeOne(p, revoke));
    return h('tr', { 'data-id': p.id },
      h('td', {}, p.name),
      h('td', {}, timeEl(p.created_at)),
      h('td', {}, timeEl(p.last_used, 'Never')),
      h('td', { class: 'num' }, revoke));
  });
  $('#app-passwords tbody').replaceChildren(...rows);
  $('#app-passwords').hidden = rows.length === 0;
  $('#list-empty').hidden = rows.length > 0;
}

async function revokeOne(p, button) {
  if (!confirm(`Revoke the app password "${p.name}"? Apps using it will stop working.`)) return;
  button.disabled = true;
  try {
    await api('DELETE', `/app-passwords/${encodeURIComponent(p.id)}`);
    await load();
    showMessage($('#page-status'), `Revoked "${p.name}".`, 'info');
  } catch (err) {
    button.disabled = false;
    showError($('#page-status'), err);
  }
}

bindForm($('#create-form'), async (fields, form) => {
  const name = String(fields.name ?? '').trim();
  if (!name) throw new UserError('Give the password a name, so you know which app uses it');
  const created = await api('POST', '/app-passwords', { json: { name } });
  lastPassword = created.password;
  $('#new-password-name').textContent = created.name ?? name;
  $('#new-app-password').textContent = created.password;
  const box = $('#new-password-box');
  box.hidden = false;
  box.focus();
  form.reset();
  await load();
});

$('#new-password-copy').replaceChildren(copyButton(() => lastPassword));

$('#new-password-done').addEventListener('click', () => {
  lastPassword = '';
  $('#new-app-password').textContent = '';
  $('#new-password-box').hidden = true;
});

async function main() {
  await startPage();
  await load();
}

main().catch(pageFailed);
