// account.mjs: drives the postcast web UI in headless Chromium through an account's life:
// register, log in, turn on an authenticator app (TOTP computed here, RFC 6238) after
// confirming the password in the re-authentication dialog (cancelled once, a wrong
// password once), log in again with a recovery code, turn on text-message codes (the
// dialog again: a new session), change the password, make an app password, save a
// profile with a picture, edit the preferences JSON (and hit an If-Match conflict), upload
// an attachment, look at the sessions and the security log, and finally log in with a
// text-message code and with a TOTP code. It fails on any uncaught page error or
// Content-Security-Policy violation.
//
// Usage: node tests/ui/account.mjs http://127.0.0.1:PORT [SMS-GATEWAY-URL]
// The optional SMS gateway is the fake webhook receiver of tests/web_ui.rs: GET
// SMS-GATEWAY-URL/messages answers the texts the server sent; without it the SMS steps
// are skipped.
// Exit code 0 when every step passed; on failure it prints the step, the page's URL and
// messages, and saves a screenshot.

import { createHmac, randomBytes } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { expectText, startRun } from './harness.mjs';

const base = (process.argv[2] ?? '').replace(/\/+$/, '');
const smsGateway = (process.argv[3] ?? '').replace(/\/+$/, '');
if (!/^https?:\/\//.test(base)) {
  console.error('usage: node tests/ui/account.mjs http://HOST:PORT');
  process.exit(2);
}

/* ---------- RFC 6238 TOTP (RFC 4226 HOTP over a time step) ---------- */

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = text.toUpperCase().replace(/[\s=-]/g, '');
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const idx = alphabet.indexOf(ch);
    if (idx < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | idx;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

function hotp(key, counter, digits = 6, algorithm = 'sha1') {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac(algorithm, key).update(msg).digest();
  const offset = mac[mac.length - 1] & 0x0f; // RFC 4226 §5.3 dynamic truncation
  const bin = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(bin % 10 ** digits).padStart(digits, '0');
}

// RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082.
if (hotp(Buffer.from('12345678901234567890'), Math.floor(59 / 30), 8) !== '94287082') {
  throw new Error('the TOTP implementation in this script is wrong');
}

/** The TOTP parameters from the page's otpauth:// URI (defaults: SHA1, 6 digits, 30 s). */
function totpParams(secret, uri) {
  let digits = 6;
  let period = 30;
  let algorithm = 'sha1';
  try {
    const q = new URL(uri).searchParams;
    digits = Number(q.get('digits') ?? 6) || 6;
    period = Number(q.get('period') ?? 30) || 30;
    algorithm = (q.get('algorithm') ?? 'SHA1').toLowerCase().replace('-', '');
  } catch {
    // keep the defaults
  }
  return { key: base32Decode(secret), digits, period, algorithm };
}

const stepOf = (p, ms = Date.now()) => Math.floor(ms / 1000 / p.period);
const codeAt = (p, step) => hotp(p.key, step, p.digits, p.algorithm);

/* ---------- The fake SMS gateway ---------- */

async function smsMessages() {
  const res = await fetch(`${smsGateway}/messages`);
  if (!res.ok) throw new Error(`SMS gateway answered ${res.status}`);
  return res.json();
}

/** Waits for a text after the first `seen` ones and answers the code in it. */
async function nextSmsCode(seen) {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const all = await smsMessages();
    if (all.length > seen) {
      const code = /\b(\d{4,8})\b/.exec(String(all[all.length - 1]?.text ?? ''))?.[1];
      if (!code) throw new Error(`no code in the text ${JSON.stringify(all[all.length - 1])}`);
      return code;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the server sent no text message within 10 s');
}

/* ---------- A small PNG for the avatar ---------- */

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k += 1) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function png(size = 48) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < size; y += 1) {
    rows.push(0);
    for (let x = 0; x < size; x += 1) rows.push((x * 255) / size, (y * 255) / size, 160);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/* ---------- The run ---------- */

// `postcast.example` reaches the server too, as a visitor from another machine would.
const FAR_HOST = 'postcast.example';
const { browser, watchedPage, step, run } = await startRun({
  name: 'ui',
  limitMs: 100_000,
  extraFlags: [`--host-resolver-rules=MAP ${FAR_HOST} 127.0.0.1`],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
const page = await watchedPage(context);

const url = (path) => base + path;
const atPath = (path) => (u) => u.pathname === path;
async function expectHidden(locator) {
  await locator.waitFor({ state: 'hidden' });
}

const username = `ui-${randomBytes(4).toString('hex')}`;
let password = `violet harbour ${randomBytes(3).toString('hex')} lantern`;
let totp = null;
let lastStep = -1;
let recoveryCodes = [];

/** Answers the password dialog that a sensitive change opens. */
async function confirmPasswordInDialog() {
  const dialog = page.getByRole('dialog', { name: 'Confirm your password' });
  await dialog.waitFor({ state: 'visible' });
  await dialog.getByLabel('Your password').fill(password);
  await dialog.getByRole('button', { name: 'Confirm' }).click();
  await dialog.waitFor({ state: 'detached' });
}

async function logIn() {
  await page.getByLabel('User name', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
}

await run(async () => {
  await step('plain HTTP is flagged to a visitor from another machine, not on this one', async () => {
    const far = new URL(base);
    far.hostname = FAR_HOST;
    await page.goto(`${far.origin}/login`);
    await expectText(page.locator('#plain-http-warning'), 'not encrypted');
    await page.goto(url('/login'));
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    if (await page.locator('#plain-http-warning').count() !== 0) throw new Error('warned on a loopback visit');
  });

  await step('registration rejects a weak password with its message', async () => {
    await page.goto(url('/register'));
    await page.getByLabel('User name', { exact: true }).fill(username);
    await page.getByLabel('Password', { exact: true }).fill('short');
    await page.getByLabel('Repeat the password').fill('short');
    await page.getByRole('button', { name: 'Create account' }).click();
    await expectText(page.locator('#register-form .form-status.error'), /password/i);
  });

  await step('register a user', async () => {
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByLabel('Repeat the password').fill(password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(atPath('/login'));
    await expectText(page.locator('#notice'), 'ready');
    const prefilled = await page.getByLabel('User name', { exact: true }).inputValue();
    if (prefilled !== username) throw new Error(`user name not filled in: ${prefilled}`);
  });

  await step('a wrong password is refused on the page', async () => {
    await page.getByLabel('Password', { exact: true }).fill(`${password}x`);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#login-form .form-status.error').waitFor();
    if (new URL(page.url()).pathname !== '/login') throw new Error('left the login page');
  });

  await step('log in; the home page shows the address', async () => {
    await logIn();
    await page.waitForURL(atPath('/'));
    await expectText(page.locator('#me-address'), `${username}@`);
    await expectText(page.locator('#me-totp'), 'Off');
    await page.locator('nav.site-nav a[aria-current="page"]', { hasText: 'Overview' }).waitFor();
  });

  await step('setting up the authenticator app asks for the password first', async () => {
    await page.getByRole('link', { name: 'Security', exact: true }).click();
    await page.waitForURL(atPath('/security'));
    await page.getByRole('button', { name: 'Set up authenticator app' }).click();
    const dialog = page.getByRole('dialog', { name: 'Confirm your password' });
    await dialog.waitFor({ state: 'visible' });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    await expectText(page.locator('#totp-start-status.error'), 'Confirm your password');
    if (await page.locator('#totp-setup').isVisible()) throw new Error('set-up went on without the password');
    await page.getByRole('button', { name: 'Set up authenticator app' }).click();
    await dialog.getByLabel('Your password').fill(`${password}x`);
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await expectText(dialog.locator('.form-status.error'), 'not your password');
  });

  await step('set up the authenticator app with its QR code', async () => {
    await page.getByRole('dialog', { name: 'Confirm your password' }).getByLabel('Your password').fill(password);
    await page.getByRole('dialog', { name: 'Confirm your password' }).getByRole('button', { name: 'Confirm' }).click();
    const qr = page.locator('#totp-qr');
    await qr.waitFor({ state: 'visible' });
    await page.waitForFunction(() => {
      const img = document.querySelector('#totp-qr');
      return img && img.complete && img.naturalWidth > 0;
    });
    const src = await qr.getAttribute('src');
    if (!src?.startsWith('data:image/svg+xml;base64,')) throw new Error(`QR code src: ${src?.slice(0, 40)}`);
    const secret = ((await page.locator('#totp-secret').textContent()) ?? '').replace(/\s+/g, '');
    const uri = (await page.locator('#totp-uri').getAttribute('href')) ?? '';
    if (!/^[A-Z2-7]+=*$/i.test(secret)) throw new Error(`secret shown: ${secret}`);
    if (!uri.startsWith('otpauth://totp/')) throw new Error(`uri: ${uri}`);
    totp = totpParams(secret, uri);
    lastStep = stepOf(totp);
    await page.getByLabel('Code from the app').fill(codeAt(totp, lastStep));
    await page.getByRole('button', { name: 'Turn on' }).click();
    await page.locator('#codes-panel').waitFor({ state: 'visible' });
    recoveryCodes = await page.locator('#recovery-codes li').allTextContents();
    if (recoveryCodes.length !== 10) throw new Error(`expected 10 recovery codes, saw ${recoveryCodes.length}`);
    await expectText(page.locator('#totp-status'), 'On');
    await expectText(page.locator('#recovery-left'), '10');
  });

  await step('log out; a page that needs a login sends to /login', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(atPath('/login'));
    await page.goto(url('/security'));
    await page.waitForURL((u) => u.pathname === '/login' && u.searchParams.get('next') === '/security');
  });

  await step('?next= only ever leads to a path of this site', async () => {
    const answers = await page.evaluate(async () => {
      const { nextPath } = await import('/js/app.js');
      const tries = ['/security', '/%09/evil.example', '//evil.example', '/\\evil.example',
        'https://evil.example/', '/%0a/evil.example', 'javascript:alert(1)', '/mail?x=1#y'];
      return tries.map((t) => [t, nextPath(`?next=${t}`)]);
    });
    const expected = ['/security', '/', '/', '/', '/', '/', '/', '/mail?x=1#y'];
    answers.forEach(([given, got], i) => {
      if (got !== expected[i]) throw new Error(`next=${given} led to ${got}, not ${expected[i]}`);
    });
  });

  await step('login asks for the code; a wrong code is refused', async () => {
    await logIn();
    await page.locator('#second-form').waitFor({ state: 'visible' });
    await expectHidden(page.locator('#login-form'));
    const offered = await page.locator('#method-choice label:not([hidden])').allTextContents();
    if (!offered.some((t) => /authenticator/i.test(t))) throw new Error(`methods offered: ${offered}`);
    if (!offered.some((t) => /recovery/i.test(t))) throw new Error(`methods offered: ${offered}`);
    const good = codeAt(totp, stepOf(totp));
    const wrong = String((Number(good) + 500_000) % 10 ** totp.digits).padStart(totp.digits, '0');
    await page.locator('#code').fill(wrong);
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.locator('#second-form > .form-status.error').waitFor();
  });

  await step('a recovery code logs in and returns to /security', async () => {
    await page.getByRole('radio', { name: 'Recovery code' }).check();
    await page.getByRole('textbox', { name: 'Recovery code' }).fill(recoveryCodes[0]);
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.waitForURL(atPath('/security'));
    await expectText(page.locator('#totp-status'), 'On');
    await expectText(page.locator('#recovery-left'), '9');
  });

  if (smsGateway) {
    await step('turn on text-message codes with the code sent to the phone', async () => {
      const seen = (await smsMessages()).length;
      await page.getByLabel('Mobile phone number').fill('+447700900123');
      await page.getByRole('button', { name: 'Send a code' }).click();
      // A new session (the recovery-code login): the password is asked again.
      await confirmPasswordInDialog();
      await page.locator('#sms-confirm-form').waitFor({ state: 'visible' });
      await page.getByLabel('Code from the text message').fill(await nextSmsCode(seen));
      await page.getByRole('button', { name: 'Confirm', exact: true }).click();
      await expectText(page.locator('#sms-status'), 'On');
      await expectText(page.locator('#sms-phone-masked'), /\d/);
      await expectHidden(page.locator('#sms-confirm-form'));
    });
  } else {
    console.log('# no SMS gateway given: skipping the text-message steps');
  }

  await step('make new recovery codes and change the password', async () => {
    await page.getByLabel('Your password', { exact: true }).and(page.locator('#recovery-password')).fill(password);
    await page.getByRole('button', { name: 'Make new recovery codes' }).click();
    await page.locator('#codes-panel').waitFor({ state: 'visible' });
    const fresh = await page.locator('#recovery-codes li').allTextContents();
    if (fresh.length !== 10 || fresh.includes(recoveryCodes[1])) throw new Error(`new codes: ${fresh}`);
    recoveryCodes = fresh;
    await expectText(page.locator('#recovery-left'), '10');
    await page.getByRole('button', { name: 'I have saved them' }).click();
    await expectHidden(page.locator('#codes-panel'));
    const newPassword = `copper kettle ${randomBytes(3).toString('hex')} meadow`;
    await page.getByLabel('Current password').fill(password);
    await page.getByLabel('New password', { exact: true }).fill(newPassword);
    await page.getByLabel('Repeat the new password').fill(`${newPassword}x`);
    await page.getByRole('button', { name: 'Change password' }).click();
    await expectText(page.locator('#password-form .form-status.error'), 'differ');
    await page.getByLabel('Repeat the new password').fill(newPassword);
    if (!(await page.getByLabel('Also revoke my app passwords').isChecked())) throw new Error('revoking is not the default');
    await page.getByRole('button', { name: 'Change password' }).click();
    await expectText(page.locator('#password-form .form-status.ok'), 'app passwords are revoked');
    password = newPassword;
  });

  await step('create an app password and see it once', async () => {
    await page.goto(url('/app-passwords'));
    await page.getByLabel('Name of the app or device').fill('Thunderbird');
    await page.getByRole('button', { name: 'Create password' }).click();
    const shown = (await expectText(page.locator('#new-app-password'), /\S{8,}/)).trim();
    await expectText(page.locator('#app-passwords tbody'), 'Thunderbird');
    await page.reload();
    await expectText(page.locator('#app-passwords tbody'), 'Thunderbird');
    if (await page.locator('#new-password-box').isVisible()) throw new Error('the password box is still shown');
    if ((await page.content()).includes(shown)) throw new Error('the app password is shown again after a reload');
    await page.getByRole('button', { name: 'Revoke Thunderbird' }).click();
    await page.locator('#list-empty').waitFor({ state: 'visible' });
  });

  await step('the profile saves a display name and a picture', async () => {
    await page.goto(url('/profile'));
    // The form is usable once the stored profile is in it.
    await page.locator('#profile-form:not([aria-busy])').waitFor();
    const name = page.getByLabel('Display name');
    await name.fill('Ada UI Tester');
    await page.getByRole('button', { name: 'Save profile' }).click();
    await expectText(page.locator('#profile-form .form-status.ok'), 'saved');
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#display-name')?.value === 'Ada UI Tester');
    await page.getByLabel('Choose a picture').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: png() });
    await page.locator('#avatar-preview').waitFor({ state: 'visible' });
    await page.getByRole('button', { name: 'Upload picture' }).click();
    await expectText(page.locator('#avatar-form .form-status.ok'), 'saved');
    await page.waitForFunction(() => {
      const img = document.querySelector('#avatar-current');
      return img && !img.hidden && img.complete && img.naturalWidth > 0;
    });
  });

  await step('the preferences editor validates and saves JSON', async () => {
    await page.goto(url('/preferences'));
    const editor = page.getByLabel('Preferences (JSON)');
    await page.waitForFunction(() => document.querySelector('#prefs-editor')?.value.trim().startsWith('{'));
    const before = JSON.parse(await editor.inputValue());
    await editor.fill('{"theme": ');
    await expectText(page.locator('#prefs-validity.error'), 'Not valid JSON');
    if (!(await page.locator('#prefs-save').isDisabled())) throw new Error('Save is enabled for broken JSON');
    await editor.fill(JSON.stringify({ ...before, theme: 'dark', ui_test: { ok: true } }));
    await expectText(page.locator('#prefs-validity.ok'), 'Valid');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await expectText(page.locator('#prefs-form .form-status.ok'), 'saved');
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#prefs-editor')?.value.includes('ui_test'));
  });

  await step('a preferences change made elsewhere is detected (412) and the edits kept', async () => {
    const status = await page.evaluate(async () => {
      const r = await fetch('/api/v1/prefs', {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ changed_elsewhere: 1 }),
      });
      return r.status;
    });
    if (status !== 200 && status !== 204) throw new Error(`PATCH /api/v1/prefs answered ${status}`);
    const editor = page.getByLabel('Preferences (JSON)');
    const mine = JSON.stringify({ theme: 'light', ui_test: { ok: true } }, null, 2);
    await editor.fill(mine);
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await expectText(page.locator('#prefs-form .form-status.error'), 'changed elsewhere');
    await page.waitForFunction(() => document.querySelector('#prefs-editor')?.value.includes('changed_elsewhere'));
    await page.getByRole('button', { name: 'Put my edits back' }).click();
    if ((await editor.inputValue()) !== mine) throw new Error('the edits were not put back');
    await page.getByRole('button', { name: 'Save', exact: true }).click();
    await expectText(page.locator('#prefs-form .form-status.ok'), 'saved');
  });

  await step('upload a preferences attachment', async () => {
    await page.getByLabel('File', { exact: true }).setInputFiles({
      name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello from the UI test\n'),
    });
    await page.getByRole('button', { name: 'Upload' }).click();
    await expectText(page.locator('#upload-form .form-status.ok'), 'notes.txt');
    await expectText(page.locator('#attachments tbody'), 'notes.txt');
  });

  await step('the sessions page marks this device', async () => {
    await page.getByRole('link', { name: 'Sessions', exact: true }).click();
    await page.waitForURL(atPath('/sessions'));
    await expectText(page.locator('#sessions tbody tr.current'), 'This device');
  });

  await step('the security log lists events', async () => {
    await page.getByRole('link', { name: 'Security log', exact: true }).click();
    await page.waitForURL(atPath('/security-log'));
    await page.locator('#events tbody tr').first().waitFor();
    const n = await page.locator('#events tbody tr').count();
    if (n < 2) throw new Error(`only ${n} events in the security log`);
  });

  if (smsGateway) {
    await step('log out; a text-message code logs in', async () => {
      await page.getByRole('button', { name: 'Log out' }).click();
      await page.waitForURL(atPath('/login'));
      await logIn();
      await page.locator('#second-form').waitFor({ state: 'visible' });
      await page.getByRole('radio', { name: 'Text message' }).check();
      const seen = (await smsMessages()).length;
      await page.getByRole('button', { name: 'Text me a code' }).click();
      await page.locator('#sms-status.ok').waitFor();
      await page.getByRole('textbox', { name: 'Code from the text message' }).fill(await nextSmsCode(seen));
      await page.getByRole('button', { name: 'Verify' }).click();
      await page.waitForURL(atPath('/'));
      await expectText(page.locator('#me-sms'), 'On');
    });
  }

  await step('log out; the TOTP code of a new time step logs in', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(atPath('/login'));
    await logIn();
    await page.locator('#second-form').waitFor({ state: 'visible' });
    // A code is accepted once only: wait for the step after the one used to confirm.
    const nextStepAt = (lastStep + 1) * totp.period * 1000 + 300;
    const wait = nextStepAt - Date.now();
    if (wait > 0) {
      console.log(`# waiting ${(wait / 1000).toFixed(1)} s for the next TOTP step`);
      await page.waitForTimeout(wait);
    }
    lastStep = stepOf(totp);
    await page.getByRole('textbox', { name: 'Code from your authenticator app' }).fill(codeAt(totp, lastStep));
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.waitForURL(atPath('/'));
    await expectText(page.locator('#me-totp'), 'On');
    await expectText(page.locator('#me-recovery'), '10');
  });

  await step('an unknown page is a 404', async () => {
    const res = await page.goto(url('/no-such-page'));
    if (res?.status() !== 404) throw new Error(`status ${res?.status()}`);
  });
}, () => page);
