// hookfan.js in Node (npm `ws` as the WebSocket) against the real daemon
// (HOOKFAN_BIN), through a TCP proxy that counts, cuts and refuses
// connections.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { connect, memoryStore, tokenLooksValid } from '../hookfan.js';
import { TOKENS, UNKNOWN_TOKEN, sendPullRequests, sleep, startDaemon, startProxy, waitFor } from '../testing/harness.mjs';

let daemon;
let proxy;
const clients = [];

before(async () => {
  daemon = await startDaemon();
  proxy = await startProxy(daemon.addr);
});

after(async () => {
  for (const c of clients) c.close();
  await proxy?.close();
  daemon?.stop();
});

// A client of `token` through the proxy, recording what it reports.
function client({ token = TOKENS.alice, subscription = { organization: 'acme' }, store = memoryStore(), onEvent } = {}) {
  const seen = { events: [], states: [], gaps: [], errors: [], connected: [] };
  const handle = connect({
    url: `ws://${proxy.addr}/ws`,
    token,
    subscription,
    store,
    WebSocket,
    backoff: { base: 50, cap: 400, resetAfter: 60000 },
    onEvent: (e) => {
      onEvent?.(e);
      seen.events.push(e);
    },
    onState: (s, d) => {
      seen.states.push(s);
      if (s === 'connected') seen.connected.push(d);
    },
    onGap: (g) => seen.gaps.push(g),
    onError: (e) => seen.errors.push(e),
  });
  clients.push(handle);
  return { handle, seen, store };
}

const connected = (c, n = 1) => waitFor(() => c.seen.connected.length >= n, { what: `connection #${n}` });
const events = (c, n) => waitFor(() => c.seen.events.length >= n, { what: `${n} events (have ${c.seen.events.length})` });
const urls = (c) => c.seen.events.map((e) => e.url);
const pr = (n) => `https://github.com/acme/api/pull/${n}`;

function assertIncreasingSeqs(c) {
  const seqs = c.seen.events.map((e) => e.seq);
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `seqs increase: ${seqs}`);
}

test('events arrive in order, and the position is the last one handled', async () => {
  const c = client();
  await connected(c);
  assert.equal(c.handle.state, 'connected');
  assert.deepEqual(c.seen.states, ['connecting', 'connected']);
  assert.equal(c.seen.connected[0].username, 'alice');
  await sendPullRequests(daemon, [101, 102, 103, 104, 105]);
  await events(c, 5);
  assert.deepEqual(urls(c), [101, 102, 103, 104, 105].map(pr));
  assertIncreasingSeqs(c);
  const last = c.seen.events.at(-1);
  await waitFor(() => c.store.get()?.seq === last.seq, { what: 'the stored position' });
  assert.equal(c.store.get().epoch, c.seen.connected[0].stream.epoch);
  c.handle.close();
  assert.equal(c.handle.state, 'closed');
  assert.deepEqual(c.seen.gaps, []);
  assert.deepEqual(c.seen.errors, []);
});

test('a dropped connection reconnects and resumes: every event once, in order, no gap', async () => {
  const c = client();
  await connected(c);
  await sendPullRequests(daemon, [201, 202]);
  await events(c, 2);
  const refusedBefore = proxy.refused;
  proxy.down = true;
  proxy.cut();
  await waitFor(() => c.handle.state === 'reconnecting', { what: 'state reconnecting' });
  // Sent while the client cannot connect: they must come with the resume.
  await sendPullRequests(daemon, [203, 204, 205]);
  await waitFor(() => proxy.refused >= refusedBefore + 2, { what: 'refused reconnect attempts' });
  proxy.down = false;
  await connected(c, 2);
  await sendPullRequests(daemon, [206]);
  await events(c, 6);
  await sleep(300); // a duplicate would arrive by now
  assert.deepEqual(urls(c), [201, 202, 203, 204, 205, 206].map(pr));
  assertIncreasingSeqs(c);
  assert.equal(c.seen.connected[1].resumed, true);
  assert.deepEqual(c.seen.gaps, []);
  assert.deepEqual(c.seen.errors, []);
  assert.ok(c.seen.states.includes('reconnecting'));
  c.handle.close();
});

test('a token the server rejects: onError authentication_failed, closed, no retry', async () => {
  const before = proxy.wsAttempts;
  const c = client({ token: UNKNOWN_TOKEN });
  await waitFor(() => c.seen.errors.length > 0, { what: 'onError' });
  assert.equal(c.seen.errors[0].code, 'authentication_failed');
  assert.equal(c.seen.errors[0].fatal, true);
  assert.equal(c.handle.state, 'closed');
  await sleep(1500); // backoff here is at most 400 ms: a retry would show
  assert.equal(proxy.wsAttempts - before, 1, 'one connection attempt');
  assert.deepEqual(c.seen.states, ['connecting', 'closed']);
  assert.equal(c.seen.errors.length, 1);
});

test('a subscription the server refuses: onError with its code, no retry', async () => {
  const before = proxy.wsAttempts;
  const c = client({ subscription: { organization: 'widgets' } }); // alice is not a member
  await waitFor(() => c.seen.errors.length > 0, { what: 'onError' });
  assert.equal(c.seen.errors[0].code, 'access_denied');
  const d = client({ subscription: { organization: 'not an org!' } });
  await waitFor(() => d.seen.errors.length > 0, { what: 'onError' });
  assert.equal(d.seen.errors[0].code, 'invalid_subscription');
  await sleep(1000);
  assert.equal(proxy.wsAttempts - before, 2);
  assert.equal(c.handle.state, 'closed');
  assert.equal(d.handle.state, 'closed');
});

test('an upgrade refused with HTTP 403 (no token offered): onError http_403, no retry', async () => {
  // The WebSocket constructor drops the token the client offers, so that
  // the daemon answers the upgrade 403 (what a malformed token gets).
  class WithoutToken extends WebSocket {
    constructor(url, protocols) {
      super(url, Array.isArray(protocols) ? protocols.filter((p) => !p.startsWith('hookfan.bearer.')) : []);
    }
  }
  const before = proxy.wsAttempts;
  const errors = [];
  const states = [];
  const handle = connect({
    url: `ws://${proxy.addr}/ws`,
    token: TOKENS.alice,
    WebSocket: WithoutToken,
    backoff: { base: 50, cap: 400 },
    onState: (s) => states.push(s),
    onError: (e) => errors.push(e),
  });
  clients.push(handle);
  await waitFor(() => errors.length > 0, { what: 'onError' });
  assert.equal(errors[0].code, 'http_403');
  assert.equal(errors[0].status, 403);
  await sleep(1000);
  assert.equal(proxy.wsAttempts - before, 1);
  assert.deepEqual(states, ['connecting', 'closed']);
});

test('a malformed token fails before connecting', async () => {
  assert.equal(tokenLooksValid('not-a-token'), false);
  assert.equal(tokenLooksValid(TOKENS.alice), true);
  const before = proxy.wsAttempts;
  const c = client({ token: 'not-a-token' });
  await waitFor(() => c.seen.errors.length > 0, { what: 'onError' });
  assert.equal(c.seen.errors[0].code, 'malformed_token');
  assert.equal(c.handle.state, 'closed');
  await sleep(200);
  assert.equal(proxy.wsAttempts, before);
});

test('a resume the server refuses (another epoch): onGap unknown_epoch, then live', async () => {
  const store = memoryStore({ epoch: 'ffffffffffffffff', seq: 3 });
  const c = client({ store });
  await connected(c);
  assert.equal(c.seen.gaps.length, 1);
  assert.equal(c.seen.gaps[0].reason, 'unknown_epoch');
  assert.deepEqual(c.seen.gaps[0].after, { epoch: 'ffffffffffffffff', seq: 3 });
  assert.equal(c.seen.connected[0].resumed, false);
  const live = c.seen.connected[0].stream;
  await waitFor(() => c.store.get()?.epoch === live.epoch, { what: 'the position from the stream' });
  assert.equal(c.store.get().seq, live.seq);
  await sendPullRequests(daemon, [301]);
  await events(c, 1);
  assert.deepEqual(urls(c), [pr(301)]);
  c.handle.close();
});

test('a resume beyond the stream (invalid_subscription): the client goes on without it and reports the gap', async () => {
  const first = client();
  await connected(first);
  const { epoch, seq } = first.seen.connected[0].stream;
  first.handle.close();
  const store = memoryStore({ epoch, seq: seq + 1000 });
  const c = client({ store });
  await connected(c);
  assert.equal(c.seen.gaps.length, 1);
  assert.equal(c.seen.gaps[0].reason, 'resume_rejected');
  assert.deepEqual(c.seen.gaps[0].after, { epoch, seq: seq + 1000 });
  assert.deepEqual(c.seen.errors, []);
  await sendPullRequests(daemon, [401]);
  await events(c, 1);
  assert.deepEqual(urls(c), [pr(401)]);
  c.handle.close();
});

test('a resumed client that stayed away gets what it missed, from its stored position', async () => {
  const store = memoryStore();
  const a = client({ store });
  await connected(a);
  await sendPullRequests(daemon, [501]);
  await events(a, 1);
  a.handle.close();
  await sendPullRequests(daemon, [502, 503]);
  const b = client({ store });
  await connected(b);
  await events(b, 2);
  assert.deepEqual(urls(b), [pr(502), pr(503)]);
  assert.equal(b.seen.connected[0].resumed, true);
  assert.deepEqual(b.seen.gaps, []);
  b.handle.close();
});

test('an onEvent that throws: the event is handed over again after a resume', async () => {
  let failed = false;
  const c = client({
    onEvent: (e) => {
      if (e.url === pr(602) && !failed) {
        failed = true;
        throw new Error('handler failed once');
      }
    },
  });
  await connected(c);
  await sendPullRequests(daemon, [601, 602, 603]);
  await events(c, 3);
  await sleep(300);
  assert.ok(failed);
  assert.deepEqual(urls(c), [601, 602, 603].map(pr));
  assert.equal(c.seen.connected.length, 2);
  assert.equal(c.seen.connected[1].resumed, true);
  assert.deepEqual(c.seen.gaps, []);
  c.handle.close();
});

test('without a WebSocket implementation connect() throws a clear error', () => {
  const saved = globalThis.WebSocket;
  try {
    globalThis.WebSocket = undefined;
    assert.throws(() => connect({ url: 'ws://127.0.0.1:1/ws', token: TOKENS.alice }), /no WebSocket implementation/);
  } finally {
    globalThis.WebSocket = saved;
  }
});
