// WebSocket fan-out: VUS subscribers over ORGS orgs, then WEBHOOKS signed
// webhooks at RATE/s; each subscriber counts its events and checks their
// latency from their `timestamp`. Fails on any lost, duplicated or
// unexpected event, or any WebSocket error.
//   HOOKFAN_ADDR HOOKFAN_TOKEN HOOKFAN_SECRET PAYLOAD VUS ORGS WEBHOOKS RATE
import ws from 'k6/ws';
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { ADDR, TOKEN, ORGS, payloadFor, signedHeaders, ageMs } from './common.js';

const VUS = parseInt(__ENV.VUS || '200', 10);
const RATE = parseInt(__ENV.RATE || '20', 10);
const WEBHOOKS = parseInt(__ENV.WEBHOOKS || '100', 10);
const RAW = open(__ENV.PAYLOAD);
const PAYLOADS = Array.from({ length: ORGS }, (_, k) => payloadFor(RAW, k));
const CONNECT_S = parseInt(__ENV.CONNECT_S || '10', 10);
const SEND_S = Math.ceil(WEBHOOKS / RATE);
const HOLD_S = CONNECT_S + SEND_S + 10;

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
  const k = j % ORGS;
  const res = http.post(`http://${ADDR}/webhook`, PAYLOADS[k], { headers: signedHeaders(PAYLOADS[k], `k6-${j}`) });
  check(res, { 'webhook 200 OK': (r) => r.status === 200 && r.body === 'OK' });
}

export function subscriber() {
  const org = (exec.vu.idInTest - 1) % ORGS;
  const seen = {};
  let confirmed = false;
  const deadline = exec.scenario.startTime + HOLD_S * 1000;
  const res = ws.connect(`ws://${ADDR}/ws`, { headers: { Authorization: `Bearer ${TOKEN}` } }, (socket) => {
    socket.on('open', () => socket.send(JSON.stringify({ organization: `load${org}` })));
    socket.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'subscription_confirmed') {
        confirmed = true;
        return;
      }
      if (m.type === 'ping' || !m.delivery_id) return;
      const j = parseInt(m.delivery_id.replace('k6-', ''), 10);
      if (isNaN(j) || j >= WEBHOOKS || j % ORGS !== org) {
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
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  check(confirmed, { 'subscription confirmed': (c) => c });
  let expected = 0;
  for (let j = 0; j < WEBHOOKS; j++) if (j % ORGS === org) expected++;
  missing.add(expected - Object.keys(seen).length);
}
