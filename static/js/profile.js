// profile.js: the profile page. Loads and saves GET/PUT /profile (display name, signature,
// time zone, language); uploads a picture as the raw image body of PUT /profile/avatar
// after showing a local preview, and removes it with DELETE.

import { $, UserError, api, bindForm, onClick, pageFailed, showMessage, startPage } from './app.js';

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const LANGUAGES = [
  ['en', 'English'], ['en-GB', 'English (UK)'], ['en-US', 'English (US)'], ['de', 'Deutsch'], ['es', 'Español'],
  ['fr', 'Français'], ['it', 'Italiano'], ['nl', 'Nederlands'], ['pl', 'Polski'], ['pt', 'Português'],
  ['pt-BR', 'Português (Brasil)'], ['sv', 'Svenska'], ['tr', 'Türkçe'], ['ru', 'Русский'], ['uk', 'Українська'],
  ['ar', 'العربية'], ['hi', 'हिन्दी'], ['bn', 'বাংলা'], ['ta', 'தமிழ்'], ['zh', '中文'], ['ja', '日本語'], ['ko', '한국어'],
];

let me = null;
let previewUrl = null;

function fillLists() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  $('#time-zones').replaceChildren(...zones.map((z) => new Option(z, z)));
  $('#language').replaceChildren(...LANGUAGES.map(([tag, name]) => new Option(`${name} (${tag})`, tag)));
}

function setLanguage(tag) {
  const select = $('#language');
  if (tag && ![...select.options].some((o) => o.value === tag)) select.append(new Option(tag, tag));
  select.value = tag || 'en';
}

function showProfile(p) {
  $('#display-name').value = p.display_name ?? '';
  $('#signature').value = p.signature_html ?? '';
  $('#time-zone').value = p.time_zone ?? '';
  setLanguage(p.language);
  showAvatar(p.avatar_url);
}

function showAvatar(url) {
  const current = $('#avatar-current');
  if (url) {
    const sep = url.includes('?') ? '&' : '?';
    current.src = `${url}${sep}v=${Date.now()}`;
  } else {
    current.removeAttribute('src');
  }
  current.hidden = !url;
  $('#avatar-none').hidden = Boolean(url);
  $('#avatar-none').textContent = (me?.username ?? '?')[0].toUpperCase();
  $('#avatar-remove').hidden = !url;
}

function clearPreview() {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  $('#avatar-preview').hidden = true;
  $('#avatar-preview').removeAttribute('src');
  $('#avatar-upload').disabled = true;
}

$('#avatar-file').addEventListener('change', () => {
  clearPreview();
  const file = $('#avatar-file').files?.[0];
  const status = $('#avatar-form .form-status');
  status.hidden = true;
  if (!file) return;
  if (!IMAGE_TYPES.includes(file.type)) {
    showMessage(status, 'Choose a PNG, JPEG, GIF or WebP picture.', 'error');
    return;
  }
  previewUrl = URL.createObjectURL(file);
  $('#avatar-preview').src = previewUrl;
  $('#avatar-preview').hidden = false;
  $('#avatar-upload').disabled = false;
});

bindForm($('#avatar-form'), async (_fields, form) => {
  const file = $('#avatar-file').files?.[0];
  if (!file) throw new UserError('Choose a picture first');
  if (!IMAGE_TYPES.includes(file.type)) throw new UserError('Choose a PNG, JPEG, GIF or WebP picture');
  await api('PUT', '/profile/avatar', { body: file, headers: { 'Content-Type': file.type } });
  form.reset();
  clearPreview();
  showAvatar((await api('GET', '/profile'))?.avatar_url);
  return 'Your picture is saved.';
});

onClick($('#avatar-remove'), $('#avatar-form .form-status'), async () => {
  if (!confirm('Remove your picture?')) return undefined;
  await api('DELETE', '/profile/avatar');
  showAvatar(null);
  return 'Your picture is removed.';
});

$('#use-device-zone').addEventListener('click', () => {
  $('#time-zone').value = Intl.DateTimeFormat().resolvedOptions().timeZone ?? '';
});

bindForm($('#profile-form'), async (fields) => {
  const body = {
    display_name: String(fields.display_name ?? '').trim(),
    signature_html: String(fields.signature_html ?? ''),
    time_zone: String(fields.time_zone ?? '').trim(),
    language: String(fields.language ?? ''),
  };
  const saved = await api('PUT', '/profile', { json: body });
  if (saved && typeof saved === 'object' && 'display_name' in saved) showProfile(saved);
  return 'Your profile is saved.';
});

async function main() {
  me = await startPage();
  fillLists();
  showProfile(await api('GET', '/profile'));
  // Only now: a change typed before the profile arrived would be overwritten by it.
  $('#profile-form').removeAttribute('aria-busy');
  $('#save-profile').disabled = false;
}

main().catch(pageFailed);
