// What the JavaScript tests share: the real hookfan daemon as a child
// process, signed webhooks, a TCP proxy that can cut and refuse
// connections, and bounded waits. (Outside test/ so that `node --test
// test/` does not take it for a test file.)

import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const FIXTURES = join(ROOT, 'tests/fixtures/webhooks');

/** The dev tokens of config/dev-tokens.toml. */
export const TOKENS = Object.freeze({
  alice: 'ghp_devAlice0000000000000000000000000000',
  bob: 'ghp_devBob000000000000000000000000000000',
  carol: 'ghp_devCarol0000000000000000000000000000',
});
/** Well shaped, in no table: the server answers authentication_failed. */
export const UNKNOWN_TOKEN = 'ghp_' + 'Z'.repeat(36);

const children = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** The daemon binary: $HOOKFAN_BIN, else target/release/hookfan. */
export function hookfanBin() {
  const bin = process.env.HOOKFAN_BIN || join(ROOT, 'target/release/hookfan');
  if (!existsSync(bin)) {
    throw new Error(`no hookfan binary at ${bin}: build it (cargo build --release) or set HOOKFAN_BIN`);
  }
  return bin;
}

/**
 * Starts the daemon on 127.0.0.1:0 with static tokens (config/dev-tokens.toml)
 * and a webhook secret of its own, `extra` appended to its config. Resolves
 * to {addr, port, secret, stderr(), stop()} once it printed `listening on`.
 */
export async function startDaemon({ extra = '', timeout = 15000 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'hookfan-js-'));
  const secret = `js-test-secret-${randomUUID()}`;
  writeFileSync(join(dir, 'secret.txt'), secret);
  writeFileSync(join(dir, 'tokens.toml'), readFileSync(join(ROOT, 'config/dev-tokens.toml')));
  writeFileSync(
    join(dir, 'hookfan.toml'),
    `[webhook]\nsecret_file = "secret.txt"\n[auth]\nprovider = "static"\ntokens_file = "tokens.toml"\n[log]\nlevel = "info"\n${extra}`,
  );
  const child = spawn(hookfanBin(), ['--config', join(dir, 'hookfan.toml'), '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const stop = () => {
    child.kill('SIGKILL');
    children.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const addr = await new Promise((ok, fail) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error(`hookfan did not print "listening on" within ${timeout} ms; stderr:\n${stderr}`)), timeout);
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d) => {
        out += d;
        const m = /^listening on (\S+)\n/m.exec(out);
        if (m) {
          clearTimeout(timer);
          ok(m[1]);
        }
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        fail(new Error(`hookfan exited (${code ?? signal}) before listening; stderr:\n${stderr}`));
      });
    });
    const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
    return { addr, port, secret, stderr: () => stderr, stop };
  } catch (e) {
    stop();
    throw e;
  }
}

/** POSTs a signed webhook to the daemon at `addr`; resolves to {status, body}. */
export async function sendWebhook(addr, secret, type, body, deliveryId = randomUUID()) {
  const raw = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const sig = createHmac('sha256', secret).update(raw).digest('hex');
  const res = await fetch(`http://${addr}/webhook`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-GitHub-Event': type,
      'X-GitHub-Delivery': deliveryId,
      'X-Hub-Signature-256': `sha256=${sig}`,
    },
    body: raw,
    signal: AbortSignal.timeout(10000),
  });
  return { status: res.status, body: await res.text() };
}

export function fixture(name) {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'));
}

/** pull_request.opened.json made into PR `n` of acme/api (its own URL), head `sha`. */
export function pullRequest(n, sha) {
  const p = fixture('pull_request.opened.json');
  p.number = n;
  p.pull_request.number = n;
  p.pull_request.html_url = `https://github.com/acme/api/pull/${n}`;
  if (sha) p.pull_request.head.sha = sha;
  return p;
}

/** Sends pull_request webhooks for PRs `numbers` in order; resolves when all were answered 200 OK. */
export async function sendPullRequests(daemon, numbers) {
  for (const n of numbers) {
    const r = await sendWebhook(daemon.addr, daemon.secret, 'pull_request', pullRequest(n));
    if (r.status !== 200 || r.body.trim() !== 'OK') throw new Error(`webhook for PR ${n}: ${r.status} ${r.body}`);
  }
}

/**
 * A TCP proxy on 127.0.0.1:0 to `target` ("host:port"). It counts the
 * connections it is offered: `attempts` all of them, `wsAttempts` those
 * whose request is `GET /ws` (WebSocket upgrades, not page loads), `refused`
 * those refused while `down`. `down = true` refuses new connections (reads
 * the request line, then closes); `cut()` destroys every connection it
 * carries.
 */
export async function startProxy(target) {
  const i = target.lastIndexOf(':');
  const host = target.slice(0, i);
  const port = Number(target.slice(i + 1));
  const sockets = new Set();
  const proxy = {
    attempts: 0,
    wsAttempts: 0,
    refused: 0,
    down: false,
    port: 0,
    get addr() {
      return `127.0.0.1:${this.port}`;
    },
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    close() {
      this.cut();
      return new Promise((ok) => server.close(() => ok()));
    },
  };
  const server = net.createServer((client) => {
    proxy.attempts += 1;
    sockets.add(client);
    client.on('error', () => {});
    client.on('close', () => sockets.delete(client));
    client.once('data', (first) => {
      if (first.toString('latin1').startsWith('GET /ws ')) proxy.wsAttempts += 1;
      if (proxy.down) {
        proxy.refused += 1;
        client.destroy();
        return;
      }
      const upstream = net.connect(port, host);
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      upstream.on('close', () => {
        sockets.delete(upstream);
        client.destroy();
      });
      client.on('close', () => upstream.destroy());
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  proxy.port = server.address().port;
  return proxy;
}

/** Resolves when `check()` returns a truthy value (which it resolves to); rejects after `timeout` ms. */
export async function waitFor(check, { timeout = 10000, interval = 25, what = 'a condition' } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
