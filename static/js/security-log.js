// security-log.js: the security log page. Shows GET /security-log as a table, newest
// first, with a refresh button.

import { $, api, h, humanize, onClick, pageFailed, startPage, timeEl, toDate } from './app.js';

async function load() {
  const answer = await api('GET', '/security-log');
  const events = Array.isArray(answer?.events) ? [...answer.events] : [];
  events.sort((a, b) => (toDate(b.at)?.getTime() ?? 0) - (toDate(a.at)?.getTime() ?? 0));
  $('#events tbody').replaceChildren(...events.map((e) => h('tr', { 'data-kind': e.kind },
    h('td', {}, timeEl(e.at)),
    h('td', {}, humanize(e.kind)),
    h('td', { class: 'mono' }, e.ip ?? '—'),
    h('td', {}, typeof e.detail === 'string' ? e.detail : e.detail == null ? '' : JSON.stringify(e.detail)))));
  $('#events').hidden = events.length === 0;
  $('#events-empty').hidden = events.length > 0;
}

onClick($('#reload'), $('#page-status'), load);

async function main() {
  await startPage();
  await load();
}

main().catch(pageFailed);
