// security.js: the security page. Sets up the authenticator app (QR code and key from
// POST /auth/totp/setup, confirmed with a code), text-message codes (phone, then the code
// sent to it; only where the server has an SMS provider), makes new recovery codes and
// changes the password (revoking the app passwords unless unticked). Setting a factor up
// needs a recent password confirmation, which app.js asks for in a dialog. New recovery
// codes are shown once, in the panel at the top.

import {
  $, UserError, api, bindForm, copyButton, downloadText, onClick, pageFailed, renderHeader, showMessage, startPage,
} from './app.js';

let me = null;
let shownCodes = [];

/** Base64 of a string's UTF-8 bytes, for a data: URL. */
function base64Utf8(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Shows the state of every section from the account `me`. */
function render() {
  const totpBadge = $('#totp-status');
  totpBadge.textContent = me.totp_enabled ? 'On' : 'Off';
  totpBadge.className = `badge ${me.totp_enabled ? 'on' : 'off'}`;
  $('#totp-on').hidden = !me.totp_enabled;
  if (me.totp_enabled) {
    $('#totp-off').hidden = true;
    $('#totp-setup').hidden = true;
  } else {
    $('#totp-off').hidden = !$('#totp-setup').hidden;
  }

  const smsBadge = $('#sms-status');
  smsBadge.textContent = me.sms_enabled ? 'On' : 'Off';
  smsBadge.className = `badge ${me.sms_enabled ? 'on' : 'off'}`;
  $('#sms-on').hidden = !me.sms_enabled;
  $('#sms-phone-masked').textContent = me.phone ?? '';
  const smsOffered = me.sms_available !== false;
  $('#sms-unavailable').hidden = me.sms_enabled || smsOffered;
  if (me.sms_enabled || !smsOffered) {
    $('#sms-phone-form').hidden = true;
    $('#sms-confirm-form').hidden = true;
  } else {
    $('#sms-phone-form').hidden = !$('#sms-confirm-form').hidden;
  }

  $('#recovery-left').textContent = String(me.recovery_codes_left ?? 0);
  const protectedBySecondFactor = Boolean(me.totp_enabled || me.sms_enabled);
  $('#recovery-none').hidden = protectedBySecondFactor;
  $('#recovery-some').hidden = !protectedBySecondFactor;
  $('#recovery-form').hidden = !protectedBySecondFactor;
}

async function refresh() {
  me = await api('GET', '/me');
  renderHeader(me);
  render();
}

/** Shows freshly made recovery codes at the top of the page. */
function showCodes(codes) {
  if (!Array.isArray(codes) || codes.length === 0) return;
  shownCodes = codes.map(String);
  $('#recovery-codes').replaceChildren(...shownCodes.map((c) => {
    const li = document.createElement('li');
    li.textContent = c;
    return li;
  }));
  const panel = $('#codes-panel');
  panel.hidden = false;
  panel.scrollIntoView({ block: 'start' });
  panel.focus({ preventScroll: true });
}

/* ---------- Authenticator app ---------- */

onClick($('#totp-start'), $('#totp-start-status'), async () => {
  const setup = await api('POST', '/auth/totp/setup');
  const qr = $('#totp-qr');
  qr.src = `data:image/svg+xml;base64,${base64Utf8(setup.qr_svg)}`;
  $('#totp-secret').textContent = String(setup.secret).replace(/(.{4})(?=.)/g, '$1 ');
  $('#totp-secret').dataset.secret = setup.secret;
  $('#totp-uri').href = setup.uri;
  $('#totp-off').hidden = true;
  $('#totp-setup').hidden = false;
  $('#totp-code').value = '';
  $('#totp-code').focus();
});

$('#totp-copy-slot').replaceChildren(copyButton(() => $('#totp-secret').dataset.secret ?? '', 'Copy key'));

$('#totp-cancel').addEventListener('click', () => {
  $('#totp-setup').hidden = true;
  $('#totp-off').hidden = false;
  $('#totp-qr').removeAttribute('src');
  $('#totp-secret').textContent = '';
});

bindForm($('#totp-confirm-form'), async (fields) => {
  const code = String(fields.code ?? '').replace(/\s+/g, '');
  if (!/^\d{6,8}$/.test(code)) throw new UserError('Enter the 6-digit code from your app');
  const answer = await api('POST', '/auth/totp/confirm', { json: { code } });
  $('#totp-setup').hidden = true;
  $('#totp-qr').removeAttribute('src');
  $('#totp-secret').textContent = '';
  showCodes(answer?.recovery_codes);
  await refresh();
  showMessage($('#page-status'), 'The authenticator app is on. You will be asked for a code when you log in.', 'ok');
});

bindForm($('#totp-disable-form'), async (fields, form) => {
  if (!fields.password) throw new UserError('Enter your password');
  await api('POST', '/auth/totp/disable', { json: { password: fields.password } });
  form.reset();
  await refresh();
  showMessage($('#page-status'), 'The authenticator app is off.', 'info');
});

/* ---------- Text messages ---------- */

bindForm($('#sms-phone-form'), async (fields) => {
  const phone = String(fields.phone ?? '').trim();
  if (!phone) throw new UserError('Enter your mobile phone number');
  await api('POST', '/auth/sms/phone', { json: { phone } });
  $('#sms-sent-to').textContent = phone;
  $('#sms-phone-form').hidden = true;
  $('#sms-confirm-form').hidden = false;
  $('#sms-code').value = '';
  $('#sms-code').focus();
});

$('#sms-other-number').addEventListener('click', () => {
  $('#sms-confirm-form').hidden = true;
  $('#sms-phone-form').hidden = false;
  $('#sms-phone').focus();
});

bindForm($('#sms-confirm-form'), async (fields) => {
  const code = String(fields.code ?? '').replace(/\s+/g, '');
  if (!code) throw new UserError('Enter the code from the text message');
  const answer = await api('POST', '/auth/sms/confirm', { json: { code } });
  $('#sms-confirm-form').hidden = true;
  showCodes(answer?.recovery_codes);
  await refresh();
  showMessage($('#page-status'), 'Text-message codes are on.', 'ok');
});

bindForm($('#sms-disable-form'), async (fields, form) => {
  if (!fields.password) throw new UserError('Enter your password');
  await api('POST', '/auth/sms/disable', { json: { password: fields.password } });
  form.reset();
  await refresh();
  showMessage($('#page-status'), 'Text-message codes are off.', 'info');
});

/* ---------- Recovery codes ---------- */

bindForm($('#recovery-form'), async (fields, form) => {
  if (!fields.password) throw new UserError('Enter your password');
  const answer = await api('POST', '/auth/recovery-codes', { json: { password: fields.password } });
  form.reset();
  showCodes(answer?.recovery_codes);
  await refresh();
});

$('#codes-copy-slot').replaceChildren(copyButton(() => shownCodes.join('\n'), 'Copy all'));

$('#codes-download').addEventListener('click', () => {
  const who = me?.address ?? 'postcast';
  downloadText('postcast-recovery-codes.txt', `Recovery codes for ${who}\nEach code works once.\n\n${shownCodes.join('\n')}\n`);
});

$('#codes-done').addEventListener('click', () => {
  $('#codes-panel').hidden = true;
  $('#recovery-codes').replaceChildren();
  shownCodes = [];
});

/* ---------- Password ---------- */

bindForm($('#password-form'), async (fields, form) => {
  if (!fields.current || !fields.new) throw new UserError('Enter your current and your new password');
  if (fields.new !== fields.new2) throw new UserError('The two new passwords differ');
  const revoke = fields.revoke_app_passwords === 'on';
  await api('POST', '/auth/password', { json: { current: fields.current, new: fields.new, revoke_app_passwords: revoke } });
  form.reset();
  return revoke ? 'Your password is changed, and your app passwords are revoked.' : 'Your password is changed.';
});

async function main() {
  me = await startPage();
  render();
}

main().catch(pageFailed);
