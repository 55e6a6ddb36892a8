// Reconnect storm: VUS clients subscribe, all drop at the same moment, and
// all reconnect at once. Fails unless every one of the 2 x VUS handshakes
// is upgraded and confirmed without a WebSocket error.
//   HOOKFAN_ADDR HOOKFAN_TOKEN VUS HOLD_S
import ws from 'k6/ws';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { ADDR, TOKEN, ORGS } from './common.js';

const VUS = parseInt(__ENV.VUS || '500', 10);
const HOLD_S = parseInt(__ENV.HOLD_S || '10', 10);
const confirmations = new Counter('subscriptions_confirmed');
const wsErrors = new Counter('ws_errors');

export const options = {
  scenarios: {
    storm: {
      executor: 'per-vu-iterations', vus: VUS, iterations: 2,
      maxDuration: `${3 * HOLD_S + 30}s`,
    },
  },
  thresholds: {
    checks: ['rate==1'],
    ws_errors: ['count==0'],
    subscriptions_confirmed: [`count==${2 * VUS}`],
  },
};

export default function () {
  const round = exec.vu.iterationInScenario; // 0, then 1
  // Everyone holds until the same wall-clock moment, then drops.
  const dropAt = exec.scenario.startTime + (round + 1) * HOLD_S * 1000;
  const org = (exec.vu.idInTest - 1) % ORGS;
  let confirmed = false;
  const res = ws.connect(`ws://${ADDR}/ws`, { headers: { Authorization: `Bearer ${TOKEN}` } }, (socket) => {
    socket.on('open', () => socket.send(JSON.stringify({ organization: `load${org}` })));
    socket.on('message', (data) => {
      if (JSON.parse(data).type === 'subscription_confirmed') {
        confirmed = true;
        confirmations.add(1);
      }
    });
    socket.on('error', () => wsErrors.add(1));
    socket.setTimeout(() => socket.close(), Math.max(100, dropAt - Date.now()));
  });
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  check(confirmed, { 'subscription confirmed': (c) => c });
}
