// WebSocket fan-out: VUS subscribers over ORGS orgs, then WEBHOOKS signed
// webhooks at RATE/s; each subscriber counts its events and checks their
// latency from their `timestamp`. Fails on any lost, duplicated or
// unexpected event, or any WebSocket error. Subscriber i subscribes to
// ORGS[i % ORGS.length], webhook j is for ORGS[j % ORGS.length].
//   HOOKFAN_ADDR HOOKFAN_TOKEN HOOKFAN_SECRET PAYLOAD PAYLOAD_ORG ORGS VUS
//   WEBHOOKS RATE CONNECT_S DRAIN_S (defaults: loadtest/README.md)
import ws from 'k6/ws';
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { ADDR, TOKEN, ORGS, loadPayloads, signedHeaders, ageMs, warnUnlessUpgraded } from './common.js';

// The default VUS stays under the dev config's limits.max_conns_per_ip (10).
const VUS = parseInt(__ENV.VUS || '8', 10);
const RATE = parseInt(__ENV.RATE || '10', 10);
const WEBHOOKS = parseInt(__ENV.WEBHOOKS || '40', 10);
const PAYLOADS = loadPayloads();
const N = ORGS.length;
// Seconds for the subscribers to connect before the first webhook, and to
// wait for events after the last one.
const CONNECT_S = parseInt(__ENV.CONNECT_S || '3', 10);
const DRAIN_S = parseInt(__ENV.DRAIN_S || '5', 10);
const SEND_S = Math.ceil(WEBHOOKS / RATE);
const HOLD_S = CONNECT_S + SEND_S + DRAIN_S;

// Webhooks for subscriber `vu` (0..VUS-1); their sum over all subscribers is what
// events_received must reach (also when a subscriber's iteration fails).
function expectedFor(vu) {
  let n = 0;
  for (let j = 0; j < WEBHOOKS; j++) if (j % N === vu % N) n++;
  return n;
}
let EXPECTED_TOTAL = 0;
for (let vu = 0; vu < VUS; vu++) EXPECTED_TOTAL += expectedFor(vu);

const received = new Counter('events_received');
const missing = new Counter('events_missing');
const duplicated = new Counter('events_duplicated');
const unexpected = new Counter('events_unexpected');
const wsErrors = new Counter('ws_errors');
const latency = new Trend('event_latency_ms', true);

if (WEBHOOKS % RATE !== 0) {
  throw new Error('WEBHOOKS must be a multiple of RATE (so that every iteration runs)');
}

export const options = {
  scenarios: {
    subscribers: {
      executor: 'per-vu-iterations', vus: VUS, iterations: 1,
      exec: 'subscriber', maxDuration: `${HOLD_S + 30}s`,
    },
    sender: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s',
      duration: `${SEND_S}s`, preAllocatedVUs: 8, maxVUs: 32,
      exec: 'sender', startTime: `${CONNECT_S}s`,
    },
  },
  thresholds: {
    events_received: [`count==${EXPECTED_TOTAL}`],
    events_missing: ['count==0'],
    events_duplicated: ['count==0'],
    events_unexpected: ['count==0'],
    ws_errors: ['count==0'],
    dropped_iterations: ['count==0'],
    checks: ['rate==1'],
    'http_req_failed{scenario:sender}': ['rate==0'],
  },
};

export function sender() {
  const j = exec.scenario.iterationInTest;
  // constant-arrival-rate may start one iteration past rate x duration.
  if (j >= WEBHOOKS) return;
  const k = j % N;
  const res = http.post(`http://${ADDR}/webhook`, PAYLOADS[k], { headers: signedHeaders(PAYLOADS[k], `k6-${j}`) });
  check(res, { 'webhook 200 OK': (r) => r.status === 200 && r.body === 'OK' });
}

export function subscriber() {
  // 0..VUS-1, one per subscriber (one iteration each), whatever the VU ids.
  const vu = exec.scenario.iterationInTest;
  const org = vu % N;
  const seen = {};
  let confirmed = false;
  const deadline = exec.scenario.startTime + HOLD_S * 1000;
  let res = null;
  try {
    res = ws.connect(`ws://${ADDR}/ws`, { headers: { Authorization: `Bearer ${TOKEN}` } }, (socket) => {
      socket.on('open', () => socket.send(JSON.stringify({ organization: ORGS[org] })));
      socket.on('message', (data) => {
        // Unknown fields (seq, stream, warnings, ...) are ignored.
        const m = JSON.parse(data);
        if (m.type === 'subscription_confirmed') {
          confirmed = true;
          return;
        }
        if (m.type === 'error') {
          console.warn(`subscriber ${vu} (${ORGS[org]}): ${data}`);
          return;
        }
        if (m.type === 'ping' || m.type === 'pong' || !m.delivery_id) return;
        const j = parseInt(m.delivery_id.replace('k6-', ''), 10);
        if (isNaN(j) || j >= WEBHOOKS || j % N !== org) {
          unexpected.add(1);
        } else if (seen[j]) {
          duplicated.add(1);
        } else {
          seen[j] = true;
          received.add(1);
          latency.add(ageMs(m.timestamp));
        }
      });
      socket.on('error', () => wsErrors.add(1));
      socket.setTimeout(() => socket.close(), Math.max(1000, deadline - Date.now()));
    });
  } catch (e) {
    // k6 reports a refused handshake (a 429 over limits.max_conns_per_ip, a
    // refused connection) in res, below; anything that throws is counted here.
    console.warn(`subscriber ${vu} (${ORGS[org]}): ${e}`);
    wsErrors.add(1);
  }
  warnUnlessUpgraded(`subscriber ${vu} (${ORGS[org]})`, res);
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  check(confirmed, { 'subscription confirmed': (c) => c });
  missing.add(expectedFor(vu) - Object.keys(seen).length);
}
