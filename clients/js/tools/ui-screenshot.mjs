// Opens the live events page in headless Chromium at 1280x800, connects
// with a token, sends fixture webhooks to the daemon, waits until the page
// shows them, and saves a screenshot. Run by scripts/ui-screenshot.sh.
//
//   node clients/js/tools/ui-screenshot.mjs --server http://127.0.0.1:PORT \
//     --secret-file config/dev-webhook-secret.txt --token ghp_... \
//     --chromium /path/to/chromium --out docs/ui.png [--page URL] [--organization ORG]
//
// --page: the page to open (default SERVER/ui/); --organization: the
// subscription's (default acme).

import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import { FIXTURES } from '../testing/harness.mjs';

const { values: o } = parseArgs({
  options: {
    server: { type: 'string' },
    page: { type: 'string' },
    'secret-file': { type: 'string' },
    token: { type: 'string' },
    organization: { type: 'string', default: 'acme' },
    chromium: { type: 'string' },
    out: { type: 'string' },
  },
});
for (const k of ['server', 'secret-file', 'token', 'chromium', 'out']) {
  if (!o[k]) throw new Error(`--${k} is required`);
}
const secret = readFileSync(o['secret-file'], 'utf8').replace(/\r?\n$/, '');

// A morning on acme/api#7, in the order GitHub would send it.
const WEBHOOKS = [
  ['pull_request', 'pull_request.opened.json'],
  ['check_suite', 'check_suite.completed.json'],
  ['pull_request', 'pull_request.review_requested.json'],
  ['pull_request', 'pull_request.synchronize.json'],
  ['check_run', 'check_run.completed.json'],
  ['pull_request_review_comment', 'pull_request_review_comment.created.json'],
  ['pull_request_review', 'pull_request_review.submitted.json'],
  ['issue_comment', 'issue_comment.created.on-pull-request.json'],
  ['pull_request', 'pull_request.labeled.json'],
  ['pull_request_review_thread', 'pull_request_review_thread.resolved.json'],
  ['pull_request', 'pull_request.closed.json'],
];

async function send(type, file) {
  const body = readFileSync(join(FIXTURES, file));
  const sig = createHmac('sha256', secret).update(body).digest('hex');
  const res = await fetch(`${o.server}/webhook`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-GitHub-Event': type,
      'X-GitHub-Delivery': randomUUID(),
      'X-Hub-Signature-256': `sha256=${sig}`,
    },
    body,
    signal: AbortSignal.timeout(10000),
  });
  const text = (await res.text()).trim();
  if (res.status !== 200 || text !== 'OK') throw new Error(`${file}: ${res.status} ${text}`);
}

const browser = await chromium.launch({ executablePath: o.chromium, timeout: 30000 });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(15000);
  await page.goto(o.page ?? `${o.server}/ui/`);
  await page.fill('input[name=token]', o.token);
  await page.fill('input[name=organization]', o.organization);
  await page.click('button[type=submit]');
  await page.waitForFunction(() => document.getElementById('state')?.textContent.trim() === 'connected');
  for (const [type, file] of WEBHOOKS) {
    await send(type, file);
    await new Promise((ok) => setTimeout(ok, 120)); // distinct times on the page
  }
  await page.waitForFunction((n) => document.querySelectorAll('[data-seq]').length >= n, WEBHOOKS.length);
  await page.mouse.move(0, 0);
  await page.screenshot({ path: o.out });
  console.log(`wrote ${o.out}`);
} finally {
  await browser.close();
}
