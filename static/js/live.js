// live.js: the public list of streams (GET /api/v1/streams, no login needed): a card per
// live stream and per recording, each linking to /watch?id=ID, refreshed every 10 s while
// the tab is visible. User data goes in as text only.

import { $, api, clearMessage, formatDuration, h, pageFailed, startPublicPage, timeEl } from './app.js';
import { stateBadge, streamTitle, viewersText, watchHref } from './streams.js';

const REFRESH_MS = 10_000;

function card(s) {
  const title = streamTitle(s);
  const facts = s.live
    ? [viewersText(s.viewers), ' · started ', timeEl(s.started_at)]
    : [timeEl(s.started_at), ' · ', formatDuration(s.duration_ms)];
  return h('li', { 'data-id': s.id },
    h('a', { class: 'card link-card stream-card', href: watchHref(s.id) },
      h('span', { class: 'stream-card-head' }, stateBadge(s), h('strong', {}, title)),
      h('span', { class: 'stream-owner' }, s.username),
      h('span', { class: 'stream-facts' }, ...facts)));
}

function fill(listSel, emptySel, items) {
  $(listSel).replaceChildren(...items.map(card));
  $(listSel).hidden = items.length === 0;
  $(emptySel).hidden = items.length > 0;
}

async function refresh() {
  const list = await api('GET', '/streams', { redirectOn401: false });
  fill('#live-list', '#live-empty', Array.isArray(list?.live) ? list.live : []);
  fill('#recordings-list', '#recordings-empty', Array.isArray(list?.recordings) ? list.recordings : []);
  $('#updated').replaceChildren(timeEl(Date.now()));
  clearMessage($('#page-status'));
}

async function main() {
  await startPublicPage();
  await refresh().catch(pageFailed);
  setInterval(() => {
    if (document.visibilityState === 'visible') refresh().catch(pageFailed);
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') refresh().catch(pageFailed);
  });
}

main().catch(pageFailed);
