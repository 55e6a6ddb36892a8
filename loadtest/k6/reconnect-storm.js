// Reconnect storm: VUS clients subscribe, all drop at the same moment, and
// all reconnect at once. Fails unless every one of the 2 x VUS handshakes
// is upgraded and confirmed without a WebSocket error. Client i subscribes to
// ORGS[i % ORGS.length].
//   HOOKFAN_ADDR HOOKFAN_TOKEN ORGS VUS HOLD_S (defaults: loadtest/README.md)
import ws from 'k6/ws';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { ADDR, TOKEN, ORGS, warnUnlessUpgraded } from './common.js';

// The default VUS keeps both rounds' connections (the old ones may not be
// released yet when the new ones arrive) within the dev config's
// limits.max_conns_per_ip (10).
const VUS = parseInt(__ENV.VUS || '5', 10);
const HOLD_S = parseInt(__ENV.HOLD_S || '5', 10);
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
  const org = ORGS[(exec.vu.idInTest - 1) % ORGS.length];
  let confirmed = false;
  let res = null;
  try {
    res = ws.connect(`ws://${ADDR}/ws`, { headers: { Authorization: `Bearer ${TOKEN}` } }, (socket) => {
      socket.on('open', () => socket.send(JSON.stringify({ organization: org })));
      socket.on('message', (data) => {
        // Unknown fields (stream, warnings, seq, ...) are ignored.
        const m = JSON.parse(data);
        if (m.type === 'subscription_confirmed') {
          confirmed = true;
          confirmations.add(1);
        } else if (m.type === 'error') {
          console.warn(`client ${exec.vu.idInTest} (${org}), round ${round}: ${data}`);
        }
      });
      socket.on('error', () => wsErrors.add(1));
      socket.setTimeout(() => socket.close(), Math.max(100, dropAt - Date.now()));
    });
  } catch (e) {
    // k6 reports a refused handshake (a 429 over limits.max_conns_per_ip, a
    // refused connection) in res, below; anything that throws is counted here.
    console.warn(`client ${exec.vu.idInTest} (${org}), round ${round}: ${e}`);
    wsErrors.add(1);
  }
  warnUnlessUpgraded(`client ${exec.vu.idInTest} (${org}), round ${round}`, res);
  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
  check(confirmed, { 'subscription confirmed': (c) => c });
}
