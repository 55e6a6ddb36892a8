// The live events page (/ui/) in headless Chromium (playwright-core over
// the DevTools protocol) against the real daemon (HOOKFAN_BIN), through a
// TCP proxy that counts, cuts and refuses connections. Skipped, saying
// why, only when no Chromium can be found or installed
// (scripts/install-chromium.sh).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { ROOT, TOKENS, UNKNOWN_TOKEN, sendPullRequests, sleep, startDaemon, startProxy, waitFor } from '../testing/harness.mjs';

const WAIT = 15000; // every wait on the page is bounded

// The Chromium to drive, or why there is none.
function findChromium() {
  if (process.env.HOOKFAN_NO_CHROMIUM) return { why: process.env.HOOKFAN_NO_CHROMIUM };
  if (process.env.HOOKFAN_CHROMIUM) return { path: process.env.HOOKFAN_CHROMIUM };
  const r = spawnSync('bash', [join(ROOT, 'scripts/install-chromium.sh')], { encoding: 'utf8', timeout: 300000 });
  const path = r.stdout?.trim();
  if (r.status === 0 && path) return { path };
  return { why: `scripts/install-chromium.sh found and installed no Chromium: ${(r.stderr || r.error?.message || '').trim()}` };
}

const chromium = findChromium();
const skip = chromium.path ? false : `no headless Chromium (${chromium.why}): the browser tests did not run`;
if (skip) console.log(`# SKIPPED ${skip}`);

let daemon;
let proxy;
let browser;

before(async () => {
  if (skip) return;
  daemon = await startDaemon();
  proxy = await startProxy(daemon.addr);
  const { chromium: driver } = await import('playwright-core');
  browser = await driver.launch({ executablePath: chromium.path, timeout: WAIT });
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  daemon?.stop();
});

// A fresh page (its own session storage) on the proxy's /ui/; it records
// console errors (a CSP violation is one) and uncaught exceptions.
async function openPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: `http://${proxy.addr}` });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const res = await page.goto(`http://${proxy.addr}/ui/`);
  assert.equal(res.status(), 200);
  return { page, context, problems };
}

async function subscribe(page, token, organization = 'acme') {
  await page.fill('input[name=token]', token);
  await page.fill('input[name=organization]', organization);
  await page.click('button[type=submit]');
}

const stateIs = (page, s) => page.waitForFunction((s) => document.getElementById('state')?.textContent.trim() === s, s);
const rowCount = (page) => page.locator('[data-seq]').count();

// The events on the page, top (newest) first: [seq, text].
async function rows(page) {
  return page.$$eval('[data-seq]', (els) => els.map((e) => [Number(e.dataset.seq), e.textContent]));
}

const pr = (n) => `https://github.com/acme/api/pull/${n}`;

function assertEvents(list, numbers) {
  // Newest first: the last PR sent is on top.
  const expected = [...numbers].reverse();
  assert.equal(list.length, expected.length, `rows: ${JSON.stringify(list)}`);
  list.forEach(([seq, text], i) => {
    assert.ok(text.includes(pr(expected[i])), `row ${i} (seq ${seq}) shows ${pr(expected[i])}: ${text}`);
    if (i > 0) assert.ok(seq < list[i - 1][0], `seqs decrease downwards: ${list.map((r) => r[0])}`);
  });
  assert.equal(new Set(list.map((r) => r[0])).size, list.length, 'every seq once');
}

test('connect with a token, see events in order with their URLs', { skip }, async () => {
  const { page, context, problems } = await openPage();
  try {
    await subscribe(page, TOKENS.alice);
    await stateIs(page, 'connected');
    assert.equal(await page.evaluate(() => location.search + location.hash), '', 'nothing in the URL');
    await sendPullRequests(daemon, [701, 702, 703, 704]);
    await waitFor(async () => (await rowCount(page)) === 4, { timeout: WAIT, what: '4 events on the page' });
    assertEvents(await rows(page), [701, 702, 703, 704]);
    const link = page.locator(`[data-seq] a[href="${pr(704)}"]`);
    assert.equal(await link.count(), 1);
    assert.match(await page.locator('#count').textContent(), /4 events/);
    // The filter narrows the list; clearing it shows them all again.
    await page.fill('#filter', 'pull/702');
    await waitFor(async () => (await page.locator('[data-seq]:visible').count()) === 1, { timeout: WAIT, what: 'the filter' });
    await page.fill('#filter', '');
    assert.equal(await page.locator('[data-seq]:visible').count(), 4);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('hookfan.token')), TOKENS.alice);
    // Paused, events are held (and counted); resumed, they show.
    await page.click('#pause');
    await sendPullRequests(daemon, [705]);
    await page.waitForFunction(() => /1 held/.test(document.getElementById('count').textContent));
    assert.equal(await rowCount(page), 4);
    await page.click('#pause');
    await waitFor(async () => (await rowCount(page)) === 5, { timeout: WAIT, what: 'the held event' });
    assertEvents(await rows(page), [701, 702, 703, 704, 705]);
    // Copy JSON puts the event on the clipboard.
    await page.click('[data-seq] button.copy');
    await page.waitForFunction(() => document.querySelector('[data-seq] button.copy').textContent === 'Copied');
    const copied = JSON.parse(await page.evaluate(() => navigator.clipboard.readText()));
    assert.equal(copied.url, pr(705));
    assert.equal(String(copied.seq), await page.getAttribute('[data-seq]', 'data-seq'));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a killed connection: the page reconnects and resumes, every event once', { skip }, async () => {
  const { page, context, problems } = await openPage();
  try {
    await subscribe(page, TOKENS.alice);
    await stateIs(page, 'connected');
    await sendPullRequests(daemon, [711, 712]);
    await waitFor(async () => (await rowCount(page)) === 2, { timeout: WAIT, what: '2 events' });
    const refused = proxy.refused;
    proxy.down = true;
    proxy.cut();
    await stateIs(page, 'reconnecting');
    await sendPullRequests(daemon, [713, 714, 715]);
    await waitFor(() => proxy.refused >= refused + 1, { timeout: WAIT, what: 'a refused reconnect attempt' });
    proxy.down = false;
    await stateIs(page, 'connected');
    await sendPullRequests(daemon, [716]);
    await waitFor(async () => (await rowCount(page)) === 6, { timeout: WAIT, what: '6 events' });
    await sleep(300); // a duplicate would show by now
    assertEvents(await rows(page), [711, 712, 713, 714, 715, 716]);
    assert.equal(await page.locator('#gap').isHidden(), true, 'no gap warning');
    // Refused attempts (the proxy down) are network failures: retried, not shown as errors.
    assert.equal(await page.locator('#error').isHidden(), true);
    assert.deepEqual(problems.filter((p) => !/WebSocket/.test(p)), []);
  } finally {
    await context.close();
  }
});

test('a resume the server refuses shows the gap warning', { skip }, async () => {
  const { page, context, problems } = await openPage();
  try {
    await subscribe(page, TOKENS.alice);
    await stateIs(page, 'connected');
    // As if the page had been connected to an earlier server (another epoch),
    // then reloaded: it resumes from there and the server refuses.
    await page.evaluate(() => sessionStorage.setItem('hookfan.position', JSON.stringify({ epoch: 'ffffffffffffffff', seq: 1 })));
    await page.reload();
    await stateIs(page, 'connected');
    await page.locator('#gap').waitFor({ state: 'visible' });
    assert.match(await page.locator('#gap').textContent(), /may have been missed/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a bad token shows the error and stops retrying', { skip }, async () => {
  const { page, context, problems } = await openPage();
  try {
    const attempts = proxy.wsAttempts;
    await subscribe(page, UNKNOWN_TOKEN);
    await page.locator('#error').waitFor({ state: 'visible' });
    assert.match(await page.locator('#error').textContent(), /authentication_failed/);
    await stateIs(page, 'closed');
    await sleep(3000); // the page's first retry would come within 0.5 s
    assert.equal(proxy.wsAttempts - attempts, 1, 'one connection attempt, no retry');
    assert.equal((await page.locator('#state').textContent()).trim(), 'closed');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
