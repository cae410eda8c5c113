// register.js: the registration page. Checks the two passwords match, posts the new
// account (with the invitation from the link's ?invitation=, if any) and sends the user
// on to the login page with the name filled in.

import { $, UserError, api, bindForm } from './app.js';

const username = $('#username');
const password2 = $('#password2');
// Registration may be closed to anyone without an invitation from the administrator.
const invitation = new URLSearchParams(location.search).get('invitation')?.trim() || null;

bindForm($('#register-form'), async (fields) => {
  const name = fields.username.trim();
  if (!name) {
    username.setAttribute('aria-invalid', 'true');
    username.focus();
    throw new UserError('Choose a user name');
  }
  username.removeAttribute('aria-invalid');
  if (!fields.password) throw new UserError('Choose a password');
  if (fields.password !== fields.password2) {
    password2.setAttribute('aria-invalid', 'true');
    password2.focus();
    throw new UserError('The two passwords differ');
  }
  password2.removeAttribute('aria-invalid');
  const answer = await api('POST', '/auth/register', {
    json: { username: name, password: fields.password, ...(invitation ? { invitation } : {}) },
    redirectOn401: false,
  });
  const user = answer?.user ?? {};
  const params = new URLSearchParams({ registered: user.username ?? name });
  if (user.address) params.set('address', user.address);
  location.assign(`/login?${params}`);
  return 'Account created.';
});

username.focus();
