// watch.mjs: drives the streaming pages in headless Chromium (the Rust test
// tests/web_stream.rs starts the server and the ffmpeg push). In `live` mode, while the
// stream is live: the Live page lists the stream for a visitor, the watch page plays it
// with hls.js (the video's time advances, the quality menu lists "Auto" and every
// rendition, switching quality keeps it playing, the viewer count counts this player), and
// the owner's "Go live" page shows the RTMP URL and that a key is set, never the key
// itself; a new key is shown once, hidden until asked. In
// `recording` mode, after the stream ended: the Live page lists it as a recording, the
// watch page plays it from the start without the LIVE badge, and the owner deletes it on
// "Go live", after which its watch page says it is gone. It fails on any uncaught page
// error or Content-Security-Policy violation.
//
// Usage: node tests/ui/watch.mjs http://127.0.0.1:PORT STREAM_ID SESSION_TOKEN STREAM_KEY USERNAME [live|recording]
// Exit code 0 when every step passed; on failure it prints the step, the page's URL and
// messages, and saves a screenshot.

import { expectText, sleep, startRun } from './harness.mjs';

const SESSION_COOKIE = 'postcast_session';
const [baseArg, streamId, token, streamKey, username, mode = 'live'] = process.argv.slice(2);
const base = (baseArg ?? '').replace(/\/+$/, '');
if (!/^https?:\/\//.test(base) || !streamId || !token || !streamKey || !username || !['live', 'recording'].includes(mode)) {
  console.error('usage: node tests/ui/watch.mjs http://HOST:PORT STREAM_ID SESSION_TOKEN STREAM_KEY USERNAME [live|recording]');
  process.exit(2);
}

const { browser, watchedPage, step, run } = await startRun({
  name: 'stream-ui',
  limitMs: 90_000,
  extraFlags: ['--autoplay-policy=no-user-gesture-required', '--mute-audio'],
});

const visitor = await browser.newContext({ viewport: { width: 1100, height: 900 } });
const page = await watchedPage(visitor);
let current = page;

const url = (path) => base + path;

/** The video element's state. */
function videoState(p) {
  return p.evaluate(() => {
    const v = document.querySelector('#video');
    return { time: v.currentTime, paused: v.paused, readyState: v.readyState, error: v.error?.message ?? null };
  });
}

/** Waits until the video's time has moved `seconds` past where it is once it plays. */
async function expectPlaying(p, seconds, timeout) {
  const until = Date.now() + timeout;
  let first = null;
  let state = null;
  while (Date.now() < until) {
    state = await videoState(p);
    if (state.error) throw new Error(`the video failed: ${state.error}`);
    if (first === null && state.time > 0) first = state.time;
    if (first !== null && state.time >= first + seconds) return { from: first, to: state.time };
    await sleep(200);
  }
  throw new Error(`the video did not advance ${seconds} s within ${timeout / 1000} s (from ${first}, now ${JSON.stringify(state)})`);
}

await run(async () => {
  const watchPath = `/watch?id=${encodeURIComponent(streamId)}`;

  if (mode === 'live') {
    await step('the Live page lists the stream for a visitor', async () => {
      await page.goto(url('/live'));
      const link = page.locator(`#live-list a[href="${watchPath}"]`);
      await expectText(link, username, 15_000);
      await expectText(link, 'LIVE');
      await page.getByRole('link', { name: 'Log in' }).waitFor();
    });

    await step('the watch page plays the stream with hls.js', async () => {
      await page.locator(`#live-list a[href="${watchPath}"]`).click();
      await page.waitForURL((u) => u.pathname === '/watch' && u.searchParams.get('id') === streamId);
      if (!(await page.evaluate(() => Boolean(window.Hls?.isSupported())))) throw new Error('hls.js is not loaded or not supported');
      await page.locator('#live-badge').waitFor({ state: 'visible' });
      await expectText(page.locator('#stream-owner'), username);
      await page.evaluate(() => { document.querySelector('#video').muted = true; });
      const { from, to } = await expectPlaying(page, 2.5, 30_000);
      console.log(`# currentTime ${from.toFixed(2)} → ${to.toFixed(2)} s`);
    });

    await step('the quality menu lists Auto and every rendition; switching keeps playing', async () => {
      const res = await fetch(url(`/api/v1/streams/${encodeURIComponent(streamId)}`));
      const status = await res.json();
      const names = (status.renditions ?? []).map((r) => r.name);
      if (names.length < 2) throw new Error(`the status lists renditions ${JSON.stringify(names)}`);
      await page.locator('#quality-field').waitFor({ state: 'visible' });
      const options = await page.locator('#quality option').allTextContents();
      if (!options[0]?.startsWith('Auto')) throw new Error(`the first choice is ${options[0]}`);
      for (const name of names) {
        if (!options.some((o) => o.includes(name))) throw new Error(`no ${name} in the quality menu ${JSON.stringify(options)}`);
      }
      const lowest = options.find((o) => o.includes('240p'));
      await page.locator('#quality').selectOption({ label: lowest });
      await expectPlaying(page, 1, 15_000);
      console.log(`# quality menu: ${options.join(' | ')}`);
    });

    await step('the viewer count counts this player', async () => {
      await expectText(page.locator('#viewers'), /^[1-9]\d* watching$/, 15_000);
    });

    await step('Go live needs a login', async () => {
      await page.goto(url('/golive'));
      await page.waitForURL((u) => u.pathname === '/login' && u.searchParams.get('next') === '/golive');
    });

    await step('Go live shows the owner the RTMP URL and that a key is set, never the key', async () => {
      const owner = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      await owner.addCookies([{ name: SESSION_COOKIE, value: token, url: base }]);
      current = await watchedPage(owner);
      await current.goto(url('/golive'));
      await expectText(current.locator('#ingest-url'), /^rtmp:\/\/\S+\/live$/);
      await expectText(current.locator('#key-set'), 'shown once');
      if (await current.locator('#key-box').isVisible()) throw new Error('a key box is shown for a stored key');
      if ((await current.content()).includes(streamKey)) throw new Error('the stored key is in the page');
      await expectText(current.locator('#obs-output'), 'Keyframe Interval');
      await expectText(current.locator('#my-badge'), 'LIVE', 15_000);
      await expectText(current.locator('#renditions tbody'), '240p');
    });

    await step('a new key is shown once, hidden until shown', async () => {
      await current.getByRole('button', { name: 'Make a new key' }).click();
      await current.locator('#key-box').waitFor({ state: 'visible' });
      await expectText(current.locator('#key-status'), 'New key made');
      const masked = (await current.locator('#stream-key').textContent()) ?? '';
      if (!/^•+$/.test(masked)) throw new Error(`the new key is shown before "Show": ${masked}`);
      await current.getByRole('button', { name: 'Show' }).click();
      const fresh = (await expectText(current.locator('#stream-key'), /^live_\S{16,}$/)).trim();
      if (fresh === streamKey) throw new Error('the new key is the old one');
      await current.getByRole('button', { name: 'Hide' }).click();
      await expectText(current.locator('#stream-key'), /^•+$/);
      await current.reload();
      await expectText(current.locator('#key-set'), 'shown once');
      if ((await current.content()).includes(fresh)) throw new Error('the new key is shown again after a reload');
    });

  } else {
    await step('the Live page lists the recording for a visitor', async () => {
      await page.goto(url('/live'));
      const link = page.locator(`#recordings-list a[href="${watchPath}"]`);
      await expectText(link, username, 15_000);
      await expectText(link, 'Recording');
      if (await page.locator(`#live-list a[href="${watchPath}"]`).count()) throw new Error('still listed as live');
    });

    await step('the recording plays from the start, without the LIVE badge', async () => {
      await page.locator(`#recordings-list a[href="${watchPath}"]`).click();
      await page.waitForURL((u) => u.pathname === '/watch' && u.searchParams.get('id') === streamId);
      await expectText(page.locator('#state-badge'), 'Recording');
      if (await page.locator('#live-badge').isVisible()) throw new Error('a recording shows the LIVE badge');
      await page.evaluate(() => { document.querySelector('#video').muted = true; });
      const { from, to } = await expectPlaying(page, 2, 30_000);
      if (from > 2) throw new Error(`the recording started at ${from.toFixed(2)} s, not at the start`);
      console.log(`# currentTime ${from.toFixed(2)} → ${to.toFixed(2)} s`);
    });

    await step('the owner deletes the recording on Go live; its watch page says it is gone', async () => {
      const owner = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      await owner.addCookies([{ name: SESSION_COOKIE, value: token, url: base }]);
      current = await watchedPage(owner);
      await current.goto(url('/golive'));
      const row = current.locator(`#my-recordings tbody tr[data-id="${streamId}"]`);
      await row.waitFor();
      await expectText(current.locator('#not-live'), 'not live');
      await row.getByRole('button', { name: /^Delete/ }).click();
      await expectText(current.locator('#page-status'), 'deleted');
      await row.waitFor({ state: 'detached' });
      current = page;
      await page.goto(url(watchPath));
      await expectText(page.locator('#stream-title'), 'not found');
    });
  }
}, () => current);
