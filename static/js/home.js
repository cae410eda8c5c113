// home.js: the home page. Shows the account from GET /me (name, address, since when,
// second factors, recovery codes left), the profile's name and picture, and a link card
// for every account page.

import { $, PAGES, api, h, pageFailed, startPage, timeEl } from './app.js';

function badge(on, onText = 'On', offText = 'Off') {
  return h('span', { class: `badge ${on ? 'on' : 'off'}` }, on ? onText : offText);
}

function initials(text) {
  return (text || '?').trim().split(/\s+/).slice(0, 2).map((w) => w[0]).join('').toUpperCase();
}

async function main() {
  const me = await startPage();
  $('#me-name').textContent = me.username;
  $('#me-address').textContent = me.address;
  $('#me-username').textContent = me.username;
  $('#me-created').replaceChildren(timeEl(me.created_at));
  $('#me-totp').replaceChildren(badge(me.totp_enabled));
  $('#me-sms').replaceChildren(badge(me.sms_enabled), me.sms_enabled && me.phone ? ` ${me.phone}` : '');
  $('#me-recovery').textContent = String(me.recovery_codes_left ?? 0);
  $('#no-second-factor').hidden = Boolean(me.totp_enabled || me.sms_enabled);

  $('#page-links').replaceChildren(...PAGES.filter((p) => p.href !== '/').map((p) =>
    h('a', { class: 'card link-card', href: p.href }, h('strong', {}, p.label), h('span', {}, p.blurb))));

  // The profile adds a display name and a picture; the page works without them.
  try {
    const profile = await api('GET', '/profile');
    if (profile?.display_name) $('#me-name').textContent = profile.display_name;
    const slot = $('#avatar-slot');
    const picture = profile?.avatar_thumb_url || profile?.avatar_url;
    slot.replaceChildren(picture
      ? h('img', { class: 'avatar', src: picture, alt: '' })
      : h('span', { class: 'avatar avatar-placeholder', 'aria-hidden': 'true' }, initials(profile?.display_name || me.username)));
  } catch (err) {
    if (err.redirecting) return;
    $('#avatar-slot').replaceChildren(h('span', { class: 'avatar avatar-placeholder', 'aria-hidden': 'true' }, initials(me.username)));
  }
}

main().catch(pageFailed);
