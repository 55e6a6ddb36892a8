// hookfan.js and the server's keepalive: a daemon that pings every second
// (server.ping_interval_s = 1) and closes clients silent for 2 s.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { connect } from '../hookfan.js';
import { TOKENS, sleep, startDaemon, waitFor } from '../testing/harness.mjs';

let daemon;
const clients = [];

before(async () => {
  daemon = await startDaemon({ extra: '[server]\nping_interval_s = 1\nread_timeout_s = 2\n' });
});

after(() => {
  for (const c of clients) c.close();
  daemon?.stop();
});

// A WebSocket that records the text messages the client sends.
function recording(sent) {
  return class extends WebSocket {
    send(data, ...rest) {
      sent.push(String(data));
      return super.send(data, ...rest);
    }
  };
}

function client(idleTimeout, sent = []) {
  const states = [];
  const reasons = [];
  const handle = connect({
    url: `ws://${daemon.addr}/ws`,
    token: TOKENS.alice,
    subscription: { organization: 'acme' },
    WebSocket: recording(sent),
    idleTimeout,
    backoff: { base: 50, cap: 200 },
    onState: (s, d) => {
      states.push(s);
      if (d.reason) reasons.push(d.reason);
    },
  });
  clients.push(handle);
  return { handle, states, reasons, sent };
}

test("the server's pings keep the client connected, and are answered", async () => {
  const c = client(2500);
  await waitFor(() => c.handle.state === 'connected', { what: 'connected' });
  await sleep(3500);
  assert.deepEqual(c.states, ['connecting', 'connected'], `reasons: ${c.reasons}`);
  const pongs = c.sent.map((m) => JSON.parse(m)).filter((m) => m.type === 'pong');
  assert.ok(pongs.length >= 2, `pongs sent: ${c.sent}`);
  assert.deepEqual(pongs[0], { type: 'pong', seq: 1 });
  c.handle.close();
});

test('silence longer than idleTimeout: the client drops the connection and reconnects', async () => {
  const c = client(300);
  await waitFor(() => c.states.includes('reconnecting'), { what: 'a reconnect' });
  assert.match(c.reasons.find((r) => r.startsWith('no message')), /no message from the server in 0.3 s/);
  await waitFor(() => c.states.filter((s) => s === 'connected').length >= 2, { what: 'connected again' });
  c.handle.close();
});
