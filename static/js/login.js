// login.js: the login page. Step one posts the user name and password; when the account
// has a second factor, step two asks for an authenticator code, a text-message code (sent
// on request) or a recovery code, then goes on to the page the user came from.

import { $, UserError, api, bindForm, clearMessage, nextPath, onClick, showMessage } from './app.js';

const METHODS = {
  totp: {
    label: 'Code from your authenticator app',
    hint: 'Open your authenticator app and enter the 6-digit code for postcast.',
    inputmode: 'numeric',
    maxlength: '6',
  },
  sms: {
    label: 'Code from the text message',
    hint: 'Send yourself a code with the button above, then enter it here.',
    inputmode: 'numeric',
    maxlength: '8',
  },
  recovery: {
    label: 'Recovery code',
    hint: 'Enter one of the recovery codes you saved. Each code works once.',
    inputmode: 'text',
    maxlength: '40',
  },
};

const loginForm = $('#login-form');
const secondForm = $('#second-form');
const code = $('#code');
let pending = null;

showArrivalNotice();

bindForm(loginForm, async (fields) => {
  if (!fields.username.trim() || !fields.password) throw new UserError('Enter your user name and password');
  const answer = await api('POST', '/auth/login', {
    json: { username: fields.username.trim(), password: fields.password },
    redirectOn401: false,
  });
  if (answer && answer.token) return done();
  if (answer && answer.pending) return askSecondFactor(answer);
  throw new Error('the server answered in an unexpected way');
});

bindForm(secondForm, async (fields) => {
  const value = String(fields.code ?? '').trim();
  if (!value) {
    code.setAttribute('aria-invalid', 'true');
    throw new UserError('Enter the code');
  }
  code.removeAttribute('aria-invalid');
  await api('POST', '/auth/login/second-factor', { json: { pending, code: value }, redirectOn401: false });
  return done();
});

onClick($('#send-sms'), $('#sms-status'), async () => {
  await api('POST', '/auth/login/sms', { json: { pending }, redirectOn401: false });
  code.focus();
  return 'We sent a code to your phone. It may take a minute to arrive.';
});

$('#start-over').addEventListener('click', () => {
  pending = null;
  secondForm.hidden = true;
  loginForm.hidden = false;
  $('#register-link').hidden = false;
  $('#login-title').textContent = 'Log in';
  $('#password').value = '';
  $('#password').focus();
});

for (const radio of secondForm.querySelectorAll('input[name="method"]')) {
  radio.addEventListener('change', () => chooseMethod(radio.value));
}

function askSecondFactor(answer) {
  pending = answer.pending;
  const offered = Array.isArray(answer.second_factor) ? answer.second_factor : [];
  let first = null;
  for (const label of secondForm.querySelectorAll('[data-method]')) {
    const available = offered.includes(label.dataset.method);
    label.hidden = !available;
    if (available && !first) first = label.dataset.method;
  }
  // A recovery code is always worth offering: the server says when it does not apply.
  if (!first) first = 'recovery';
  $('#method-choice').hidden = offered.length < 2;
  const radio = secondForm.querySelector(`input[value="${first}"]`);
  if (radio) radio.checked = true;
  chooseMethod(first);
  loginForm.hidden = true;
  $('#register-link').hidden = true;
  $('#login-title').textContent = 'Verify it is you';
  secondForm.hidden = false;
  code.focus();
}

function chooseMethod(method) {
  const m = METHODS[method] ?? METHODS.recovery;
  $('#code-label').textContent = m.label;
  $('#code-hint').textContent = m.hint;
  code.setAttribute('inputmode', m.inputmode);
  code.setAttribute('maxlength', m.maxlength);
  $('#sms-send').hidden = method !== 'sms';
  clearMessage($('#sms-status'));
  code.value = '';
}

function done() {
  location.assign(nextPath());
  return 'Logged in.';
}

function showArrivalNotice() {
  const params = new URLSearchParams(location.search);
  const name = params.get('registered');
  if (name) {
    $('#username').value = name;
    const address = params.get('address');
    showMessage($('#notice'), address
      ? `Your account is ready: your address is ${address}. Log in to continue.`
      : 'Your account is ready. Log in to continue.', 'ok');
    $('#password').focus();
  } else {
    $('#username').focus();
  }
}
