// golive.js: the "Go live" page (login needed). Shows the RTMP server and whether the
// user has a stream key (GET /stream-key); the key itself only comes with the rotation
// that makes it (POST /stream-key/rotate), is masked until "Show" and can be copied until
// the page is left. Revokes the key (DELETE /stream-key); lists the OBS settings
// the server answers; every 5 s shows how the user's live stream is doing (GET /streams,
// then GET /streams/ID: viewers, incoming bitrate, keyframe interval, renditions and the
// warnings to act on); lists their recordings with a delete button (DELETE /streams/ID).

import { $, api, copyButton, copyText, formatDuration, h, onClick, pageFailed, showError, showMessage, startPage, timeEl } from './app.js';
import { stateBadge, streamTitle, viewersText, watchHref } from './streams.js';

const REFRESH_MS = 5_000;
const MASK = '••••••••••••••••';

let me = null;
let key = null;
let hasKey = false;
let revealed = false;

/* ---------- Key and OBS settings ---------- */

function showKey(body) {
  key = body?.key ?? null;
  hasKey = Boolean(key || body?.has_key);
  revealed = false;
  $('#ingest-url').textContent = body?.ingest_url ?? '';
  $('#ingest-copy').replaceChildren(copyButton(() => $('#ingest-url').textContent, 'Copy'));
  $('#no-key').hidden = hasKey;
  $('#key-set').hidden = !hasKey || Boolean(key);
  $('#key-made').replaceChildren(timeEl(body?.created_at));
  $('#key-box').hidden = !key;
  $('#key-once').hidden = !key;
  $('#revoke-key').hidden = !hasKey;
  $('#rotate-key').textContent = hasKey ? 'Make a new key' : 'Create a stream key';
  drawKey();
  showObs(body?.obs ?? {});
}

function drawKey() {
  const el = $('#stream-key');
  el.textContent = revealed && key ? key : MASK;
  el.setAttribute('aria-label', revealed ? 'Stream key' : 'Stream key, hidden');
  const button = $('#reveal-key');
  button.textContent = revealed ? 'Hide' : 'Show';
  button.setAttribute('aria-pressed', String(revealed));
}

function showObs(obs) {
  $('#obs-server').textContent = obs.server ?? '';
  $('#obs-key').textContent = hasKey ? 'the stream key above' : 'make a stream key first (above)';
  const rows = [
    ['Video Encoder', obs.encoder === 'x264' ? 'x264 (software)' : obs.encoder],
    ['Rate Control', obs.rate_control],
    ['Bitrate', obs.bitrate_kbps ? `${obs.bitrate_kbps} Kbps (2500 for 720p, up to 6000 for 1080p)` : null],
    ['Keyframe Interval', obs.keyframe_interval_s ? `${obs.keyframe_interval_s} s (not 0 = auto)` : null],
    ['CPU Usage Preset', obs.preset],
    ['Profile', obs.profile],
    ['Tune', obs.tune ? `${obs.tune} (optional)` : null],
    ['Audio Bitrate', obs.audio_bitrate_kbps ? `${obs.audio_bitrate_kbps} Kbps (Settings → Output → Audio)` : null],
  ].filter(([, v]) => v !== null && v !== undefined && v !== '');
  $('#obs-output').replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));
}

$('#reveal-key').addEventListener('click', () => {
  revealed = !revealed;
  drawKey();
});

$('#copy-key').addEventListener('click', async () => {
  const button = $('#copy-key');
  const ok = key ? await copyText(key) : false;
  if (!ok && key) {
    revealed = true;
    drawKey();
  }
  button.textContent = ok ? 'Copied' : 'Select and copy by hand';
  setTimeout(() => { button.textContent = 'Copy'; }, 2000);
});

onClick($('#rotate-key'), $('#key-status'), async () => {
  const had = hasKey;
  if (had && !confirm('Make a new stream key? The current one stops working: OBS needs the new key.')) return undefined;
  showKey(await api('POST', '/stream-key/rotate'));
  return had ? 'New key made. Paste it into OBS (Settings → Stream).' : 'Stream key made. Paste it into OBS (Settings → Stream).';
});

onClick($('#revoke-key'), $('#key-status'), async () => {
  if (!confirm('Revoke the stream key? Nobody can stream with it any more, you neither, until you make a new one.')) return undefined;
  await api('DELETE', '/stream-key');
  showKey({ ...(await api('GET', '/stream-key')), key: null });
  return 'The key is revoked.';
});

/* ---------- The user's own stream ---------- */

function kbps(n) {
  return n === null || n === undefined ? '—' : `${Number(n).toLocaleString()} kbit/s`;
}

function showLive(status) {
  $('#not-live').hidden = Boolean(status);
  $('#live-box').hidden = !status;
  $('#my-badge').replaceChildren(status ? stateBadge(status) : '');
  if (!status) return;
  const warnings = Array.isArray(status.warnings) ? status.warnings : [];
  if (status.state === 'reconnecting') warnings.unshift('OBS is disconnected: the stream goes on if it reconnects soon.');
  $('#warnings').replaceChildren(...warnings.map((w) => h('li', {}, w)));
  $('#warnings').hidden = warnings.length === 0;
  $('#my-watch').href = watchHref(status.id);
  $('#my-viewers').textContent = viewersText(status.viewers);
  $('#my-duration').textContent = formatDuration(status.duration_ms);
  const fps = status.fps === null || status.fps === undefined ? '' : ` at ${Number(status.fps).toFixed(1)} fps`;
  $('#my-ingest').textContent = `${kbps(status.ingest_kbps)}${fps}`;
  $('#my-keyframes').textContent = status.keyframe_interval_ms ? `${(status.keyframe_interval_ms / 1000).toFixed(1)} s` : '—';
  $('#my-lag').textContent = status.transcode_lag_ms === null || status.transcode_lag_ms === undefined
    ? '—' : `${(status.transcode_lag_ms / 1000).toFixed(1)} s`;
  $('#my-failures').textContent = String(status.failures ?? 0);
  const renditions = Array.isArray(status.renditions) ? status.renditions : [];
  $('#renditions tbody').replaceChildren(...renditions.map((r) => h('tr', {},
    h('td', {}, r.name),
    h('td', {}, r.width && r.height ? `${r.width}×${r.height}` : '—'),
    h('td', { class: 'num' }, r.bandwidth ? kbps(Math.round(r.bandwidth / 1000)) : '—'),
    h('td', { class: 'num' }, String(r.segments ?? 0)),
    h('td', { class: 'num' }, String(r.failures ?? 0)))));
}

function recordingRow(s) {
  const del = h('button', { type: 'button', class: 'small danger' }, 'Delete');
  del.setAttribute('aria-label', `Delete the recording ${streamTitle(s)}`);
  del.addEventListener('click', async () => {
    if (!confirm(`Delete the recording "${streamTitle(s)}"? This cannot be undone.`)) return;
    del.disabled = true;
    try {
      await api('DELETE', `/streams/${encodeURIComponent(s.id)}`);
      showMessage($('#page-status'), 'The recording is deleted.', 'info');
      await refresh();
    } catch (err) {
      del.disabled = false;
      showError($('#page-status'), err);
    }
  });
  return h('tr', { 'data-id': s.id },
    h('td', {}, h('a', { href: watchHref(s.id) }, streamTitle(s))),
    h('td', {}, timeEl(s.started_at)),
    h('td', { class: 'num' }, formatDuration(s.duration_ms)),
    h('td', { class: 'num' }, del));
}

async function refresh() {
  const list = await api('GET', '/streams');
  const mine = (items) => (Array.isArray(items) ? items : []).filter((s) => s.username === me.username);
  const live = mine(list?.live)[0] ?? null;
  showLive(live ? await api('GET', `/streams/${encodeURIComponent(live.id)}`) : null);
  const recordings = mine(list?.recordings);
  $('#my-recordings tbody').replaceChildren(...recordings.map(recordingRow));
  $('#my-recordings').hidden = recordings.length === 0;
  $('#recordings-empty').hidden = recordings.length > 0;
}

async function main() {
  me = await startPage();
  showKey(await api('GET', '/stream-key'));
  await refresh();
  setInterval(() => {
    if (document.visibilityState === 'visible') refresh().catch(pageFailed);
  }, REFRESH_MS);
}

main().catch(pageFailed);
