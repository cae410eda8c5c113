// preferences.js: the preferences page. Edits the JSON object of GET /prefs in a textarea,
// checks it as you type, and saves it whole with PUT /prefs and If-Match (a 412 means it
// changed elsewhere: the latest version is loaded and the user's edits kept to restore).
// Uploads attachments as raw bodies to POST /prefs/attachments?name= and lists them.

import {
  $, ApiError, UserError, api, bindForm, formatBytes, h, onClick, pageFailed, request, showMessage, startPage,
} from './app.js';

const editor = $('#prefs-editor');
const validity = $('#prefs-validity');
let etag = null;
let savedText = '';
let draft = null;

/** Parses the editor; answers the object or null, and says what is wrong. */
function check() {
  const text = editor.value;
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return invalid(describeJsonError(err, text));
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return invalid('The preferences must be a JSON object: { … }.');
  }
  editor.removeAttribute('aria-invalid');
  validity.className = 'editor-status ok';
  validity.textContent = text === savedText ? 'Valid JSON. No unsaved changes.' : 'Valid JSON. Unsaved changes.';
  $('#prefs-save').disabled = false;
  return value;
}

function invalid(message) {
  editor.setAttribute('aria-invalid', 'true');
  validity.className = 'editor-status error';
  validity.textContent = message;
  $('#prefs-save').disabled = true;
  return null;
}

/** "Unexpected token at position 12" → a message with the line and column. */
function describeJsonError(err, text) {
  // V8 quotes the whole text back ("…" is not valid JSON): keep only the reason.
  const msg = String(err.message ?? err).replace(/, ".*" is not valid JSON$/s, '');
  const pos = /position (\d+)/.exec(msg);
  if (pos && !/line \d+/.test(msg)) {
    const before = text.slice(0, Number(pos[1]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    return `Not valid JSON (line ${line}, column ${column}): ${msg}`;
  }
  return `Not valid JSON: ${msg}`;
}

function show(value) {
  savedText = JSON.stringify(value ?? {}, null, 2);
  editor.value = savedText;
  check();
}

async function load() {
  const res = await request('GET', '/prefs');
  etag = res.headers.get('ETag');
  show(res.data);
}

editor.addEventListener('input', check);

editor.addEventListener('keydown', (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 's') {
    event.preventDefault();
    $('#prefs-form').requestSubmit();
  }
});

bindForm($('#prefs-form'), async () => {
  const value = check();
  if (!value) throw new UserError('Fix the JSON before saving');
  const headers = etag ? { 'If-Match': etag } : {};
  try {
    const res = await request('PUT', '/prefs', { json: value, headers });
    etag = res.headers.get('ETag');
    if (res.data && typeof res.data === 'object' && !Array.isArray(res.data)) show(res.data);
    else show(value);
    if (!etag) await load();
    $('#prefs-restore').hidden = true;
    return 'Your preferences are saved.';
  } catch (err) {
    if (err instanceof ApiError && err.status === 412) {
      draft = editor.value;
      await load();
      $('#prefs-restore').hidden = false;
      throw new UserError('Your preferences were changed elsewhere since you opened them. The latest version is shown now; “Put my edits back” restores yours, and saving then replaces the other change');
    }
    throw err;
  }
});

$('#prefs-format').addEventListener('click', () => {
  const value = check();
  if (value) {
    editor.value = JSON.stringify(value, null, 2);
    check();
  }
});

onClick($('#prefs-reload'), $('#prefs-form .form-status'), async () => {
  if (editor.value !== savedText && !confirm('Discard your unsaved changes?')) return undefined;
  await load();
  return 'Loaded the saved preferences.';
});

$('#prefs-restore').addEventListener('click', () => {
  if (draft !== null) editor.value = draft;
  draft = null;
  $('#prefs-restore').hidden = true;
  check();
  editor.focus();
});

window.addEventListener('beforeunload', (event) => {
  if (editor.value !== savedText) event.preventDefault();
});

/* ---------- Attachments ---------- */

async function loadAttachments() {
  const answer = await api('GET', '/prefs/attachments');
  const list = Array.isArray(answer) ? answer : (answer?.attachments ?? answer?.items ?? []);
  $('#attachments tbody').replaceChildren(...list.map((a) => h('tr', { 'data-id': a.id },
    h('td', {}, a.name ?? ''),
    h('td', { class: 'mono' }, a.content_type ?? ''),
    h('td', { class: 'num' }, formatBytes(a.size)))));
  $('#attachments').hidden = list.length === 0;
  $('#attachments-empty').hidden = list.length > 0;
}

bindForm($('#upload-form'), async (_fields, form) => {
  const file = $('#attachment-file').files?.[0];
  if (!file) throw new UserError('Choose a file first');
  const type = file.type || 'application/octet-stream';
  const saved = await api('POST', `/prefs/attachments?name=${encodeURIComponent(file.name)}`, {
    body: file,
    headers: { 'Content-Type': type },
  });
  form.reset();
  await loadAttachments();
  return `Uploaded ${saved?.name ?? file.name} (${formatBytes(saved?.size ?? file.size)}).`;
});

async function main() {
  await startPage();
  await load();
  await loadAttachments().catch((err) => {
    if (!err.redirecting) showMessage($('#upload-form .form-status'), `Could not list the attachments: ${err.message}`, 'error');
  });
}

main().catch(pageFailed);
