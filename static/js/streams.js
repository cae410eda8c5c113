// streams.js: small helpers shared by the streaming pages (live, watch, go live): the
// watch-page link of a stream, its state badge and the viewer count text. No side
// effects: it only builds elements (user data as text, never HTML).

import { h } from './app.js';

/** The watch page of a stream. */
export function watchHref(id) {
  return `/watch?id=${encodeURIComponent(id)}`;
}

/** A badge for a stream's state: LIVE, Reconnecting or Recording. */
export function stateBadge(summary) {
  if (summary?.state === 'reconnecting') return h('span', { class: 'badge warn' }, 'Reconnecting');
  if (summary?.live) return h('span', { class: 'badge live' }, 'LIVE');
  return h('span', { class: 'badge' }, 'Recording');
}

/** "1 watching", "12 watching". */
export function viewersText(n) {
  return `${Number(n) || 0} watching`;
}

/** The title to show: the stream's own, else "NAME's stream". */
export function streamTitle(summary) {
  return summary?.title || `${summary?.username ?? 'Someone'}'s stream`;
}
