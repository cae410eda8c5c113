// watch.js: the watch page, /watch?id=ID, for anybody (no login needed). It plays
// /hls/ID/master.m3u8 with hls.js (loaded as /vendor/hls.min.js, from the npm registry),
// or with the browser's own HLS where hls.js cannot run (Safari without Media Source
// Extensions). A live stream starts at the live edge, a recording from the start. The
// quality menu lists hls.js's levels, named after their renditions, with "Auto" first.
// Title, owner, the LIVE badge and the viewer count come from GET /api/v1/streams/ID,
// refreshed every 10 s. Every HLS request carries `?session=` with a random id for this
// page, so the server counts this player once. User data goes in as text only.

import { $, ApiError, api, clearMessage, formatDuration, pageFailed, showMessage, startPublicPage, timeEl } from './app.js';
import { stateBadge, streamTitle, viewersText } from './streams.js';

const REFRESH_MS = 10_000;
/** How long to wait before asking again for a playlist that is not there yet. */
const RETRY_MS = 3_000;
/** Media errors recovered before giving up. */
const MAX_RECOVERIES = 5;

const video = $('#video');
const quality = $('#quality');
const streamId = new URLSearchParams(location.search).get('id') ?? '';

/** This player's id for the viewer count: random, made fresh for every page load. */
const viewerSession = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');

let hls = null;
let recoveries = 0;
let levelNames = [];
let reconnecting = false;

function playerMessage(text, kind = 'info') {
  showMessage($('#player-status'), text, kind);
}

function clearPlayerMessage() {
  clearMessage($('#player-status'));
}

/* ---------- The stream's status ---------- */

async function loadStatus() {
  const status = await api('GET', `/streams/${encodeURIComponent(streamId)}`, { redirectOn401: false });
  render(status);
  return status;
}

function render(s) {
  const title = streamTitle(s);
  document.title = `${title} · postcast`;
  $('#stream-title').textContent = title;
  $('#stream-owner').textContent = s.username ?? '';
  $('#stream-when').replaceChildren(
    s.live ? 'started ' : '', timeEl(s.started_at), s.live ? '' : ` · ${formatDuration(s.duration_ms)}`);
  $('#live-badge').hidden = !(s.live && s.state !== 'reconnecting');
  $('#state-badge').replaceChildren(stateBadge(s));
  $('#viewers').textContent = viewersText(s.viewers);
  if (s.state === 'reconnecting') {
    playerMessage('The broadcaster lost the connection. The stream goes on when they are back.');
    reconnecting = true;
  } else if (reconnecting) {
    clearPlayerMessage();
    reconnecting = false;
  }
}

async function refreshStatus() {
  try {
    await loadStatus();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      playerMessage('This stream is gone: its recording was deleted.', 'error');
    }
    // Otherwise keep what is shown; the next refresh tries again.
  }
}

/* ---------- Playing ---------- */

/** `url` with this player's `?session=` when it is one of our HLS URLs. */
function withSession(url) {
  try {
    const u = new URL(url, location.href);
    if (u.origin !== location.origin || !u.pathname.startsWith('/hls/')) return url;
    u.searchParams.set('session', viewerSession);
    return u.href;
  } catch {
    return url;
  }
}

/** Starts playback; when the browser refuses sound without a click, plays muted. */
async function play() {
  try {
    await video.play();
  } catch (err) {
    if (err?.name !== 'NotAllowedError') return;
    video.muted = true;
    try {
      await video.play();
      $('#unmute').hidden = false;
    } catch {
      playerMessage('Press play to start the video.');
    }
  }
}

/** The rendition a level plays, from its playlist URL: /hls/ID/RENDITION/index.m3u8. */
function renditionOf(level) {
  const url = Array.isArray(level?.url) ? level.url[0] : level?.url;
  try {
    const parts = new URL(url, location.href).pathname.split('/');
    return decodeURIComponent(parts[parts.length - 2] ?? '') || null;
  } catch {
    return null;
  }
}

/** "240p", or "source (360p)" for a rendition whose name is not its height. */
function levelLabel(level) {
  const name = renditionOf(level) || level?.name || '';
  const height = Number(level?.height) || 0;
  if (!name) return height ? `${height}p` : 'Unknown';
  if (!height || name.includes(String(height))) return name;
  return `${name} (${height}p)`;
}

function buildQualityMenu(levels) {
  levelNames = levels.map(levelLabel);
  const order = levels.map((level, index) => ({ index, height: Number(level.height) || 0, bitrate: level.bitrate || 0 }))
    .sort((a, b) => b.height - a.height || b.bitrate - a.bitrate);
  const auto = new Option('Auto', '-1');
  quality.replaceChildren(auto, ...order.map(({ index }) => new Option(levelNames[index], String(index))));
  quality.value = '-1';
  $('#quality-field').hidden = levels.length < 2;
}

function startHlsJs(Hls, src, status) {
  hls = new Hls({
    startPosition: status.live ? -1 : 0,
    liveSyncDurationCount: 3,
    backBufferLength: 60,
    // hls.js opens the request itself unless this does (with the session added).
    xhrSetup: (xhr, url) => {
      const tagged = withSession(url);
      if (tagged !== url) xhr.open('GET', tagged, true);
    },
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
    clearPlayerMessage();
    buildQualityMenu(data.levels ?? hls.levels);
    play();
  });
  hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
    const auto = quality.querySelector('option[value="-1"]');
    if (auto) auto.textContent = hls.autoLevelEnabled ? `Auto (${levelNames[data.level] ?? '…'})` : 'Auto';
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    const manifest = /^manifest/i.test(String(data.details));
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR && manifest) {
      // A live stream lists its playlists once its first segment is ready.
      playerMessage('Waiting for the stream to start…');
      setTimeout(() => hls?.loadSource(src), RETRY_MS);
    } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      playerMessage('The connection dropped; trying again…');
      setTimeout(() => hls?.startLoad(), RETRY_MS);
    } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR && recoveries < MAX_RECOVERIES) {
      recoveries += 1;
      hls.recoverMediaError();
    } else {
      hls.destroy();
      hls = null;
      playerMessage(`The video cannot be played (${data.details}). Reload the page to try again.`, 'error');
    }
  });
  quality.addEventListener('change', () => {
    if (hls) hls.currentLevel = Number(quality.value);
  });
  hls.loadSource(src);
  hls.attachMedia(video);
}

function startNative(src, status) {
  $('#quality-field').hidden = true;
  if (!status.live) {
    video.addEventListener('loadedmetadata', () => { video.currentTime = 0; }, { once: true });
  }
  video.src = withSession(src);
  play();
}

function startPlayer(status) {
  const src = status.master_url || `/hls/${encodeURIComponent(streamId)}/master.m3u8`;
  const Hls = window.Hls;
  if (Hls?.isSupported()) {
    startHlsJs(Hls, src, status);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    startNative(src, status);
  } else if (!Hls) {
    playerMessage('The video player did not load. Reload the page; if that does not help, the server needs `npm ci` and a new build.', 'error');
  } else {
    playerMessage('This browser cannot play the video. Try a current Firefox, Chrome, Edge or Safari.', 'error');
  }
}

/* ---------- The page ---------- */

$('#unmute').addEventListener('click', () => {
  video.muted = false;
  $('#unmute').hidden = true;
});
video.addEventListener('volumechange', () => {
  if (!video.muted) $('#unmute').hidden = true;
});
// Count this viewer soon after playback starts, not only at the next refresh.
video.addEventListener('playing', () => setTimeout(refreshStatus, 2_000), { once: true });

async function main() {
  startPublicPage().catch(() => {});
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(streamId)) {
    $('#stream-title').textContent = 'No stream chosen';
    playerMessage('Pick a stream on the Live page.', 'error');
    return;
  }
  let status;
  try {
    status = await loadStatus();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      $('#stream-title').textContent = 'Stream not found';
      playerMessage('This stream does not exist, or its recording was deleted.', 'error');
      return;
    }
    throw err;
  }
  startPlayer(status);
  setInterval(() => {
    if (document.visibilityState === 'visible') refreshStatus();
  }, REFRESH_MS);
}

main().catch(pageFailed);
