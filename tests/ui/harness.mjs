// harness.mjs: what the browser tests share. It launches Debian's Chromium with the flags
// this machine needs and makes pages that report uncaught errors and CSP violations as
// failures. It runs numbered steps (TAP-like output) under a watchdog, waits for text, and
// on failure prints the step, the page's URL and messages, and saves a screenshot.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `locator` is visible and its text matches; answers the text. */
export async function expectText(locator, pattern, timeout = 10_000) {
  const matches = (t) => (pattern instanceof RegExp ? pattern.test(t) : t.includes(pattern));
  const until = Date.now() + timeout;
  await locator.waitFor({ state: 'visible', timeout });
  let text = '';
  for (;;) {
    text = (await locator.textContent()) ?? '';
    if (matches(text)) return text;
    if (Date.now() > until) throw new Error(`expected ${pattern} in ${JSON.stringify(text)}`);
    await sleep(50);
  }
}

/**
 * Starts a browser run called `name` that must end within `limitMs`. Answers the browser,
 * `watchedPage(context)`, `step(name, fn)` and `run(body, pageNow)`, which runs the steps,
 * reports a failure on the page `pageNow()` answers, and closes the browser.
 */
export async function startRun({ name, limitMs, extraFlags = [] }) {
  const started = Date.now();
  const watchdog = setTimeout(() => {
    console.error(`not ok - ${name} took longer than ${limitMs / 1000} s`);
    process.exit(1);
  }, limitMs);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, ...extraFlags] });
  const problems = [];
  const consoleErrors = [];
  let stepNo = 0;
  let currentStep = '';

  async function watchedPage(context) {
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.setDefaultNavigationTimeout(15_000);
    page.on('pageerror', (err) => problems.push(`uncaught error on ${page.url()}: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const text = msg.text();
      consoleErrors.push(`${page.url()}: ${text}`);
      if (/Content[- ]Security[- ]Policy/i.test(text)) problems.push(`CSP violation on ${page.url()}: ${text}`);
    });
    page.on('dialog', (dialog) => dialog.accept());
    return page;
  }

  async function step(stepName, fn) {
    currentStep = stepName;
    stepNo += 1;
    const t0 = Date.now();
    await fn();
    if (problems.length) throw new Error(problems.join('\n'));
    console.log(`ok ${stepNo} - ${stepName} (${Date.now() - t0} ms)`);
  }

  async function run(body, pageNow) {
    try {
      await body();
      console.log(`# ${stepNo} steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } catch (err) {
      console.log(`not ok ${stepNo} - ${currentStep}`);
      console.log(`# ${String(err?.stack ?? err).split('\n').join('\n# ')}`);
      const page = pageNow();
      console.log(`# page: ${page.url()}`);
      try {
        const messages = await page.locator('.form-status:not([hidden]), .notice:not([hidden])').allTextContents();
        for (const m of messages) console.log(`# message on the page: ${m.trim()}`);
        const shot = join(tmpdir(), `postcast-${name}-failure.png`);
        await page.screenshot({ path: shot, fullPage: true });
        console.log(`# screenshot: ${shot}`);
      } catch {
        // the page may be gone
      }
      for (const e of consoleErrors) console.log(`# console: ${e}`);
      process.exitCode = 1;
    } finally {
      clearTimeout(watchdog);
      await browser.close();
    }
  }

  return { browser, watchedPage, step, run };
}
