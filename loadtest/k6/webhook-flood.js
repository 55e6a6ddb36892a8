// Signed webhooks of realistic size (a pull_request fixture, ~27 KB) at
// RATE/s for DURATION_S seconds, spread over ORGS. Fails on any non-200 or
// error.
//   HOOKFAN_ADDR HOOKFAN_SECRET PAYLOAD PAYLOAD_ORG ORGS RATE DURATION_S
//   (defaults: loadtest/README.md)
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { ADDR, loadPayloads, signedHeaders } from './common.js';

const RATE = parseInt(__ENV.RATE || '100', 10);
const DURATION_S = parseInt(__ENV.DURATION_S || '10', 10);
const PAYLOADS = loadPayloads();

export const options = {
  scenarios: {
    flood: {
      executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s',
      duration: `${DURATION_S}s`, preAllocatedVUs: 64, maxVUs: 256,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    dropped_iterations: ['count==0'],
  },
};

export default function () {
  const j = exec.scenario.iterationInTest;
  const body = PAYLOADS[j % PAYLOADS.length];
  const res = http.post(`http://${ADDR}/webhook`, body, { headers: signedHeaders(body, `flood-${j}`) });
  // "OK": accepted and broadcast (not ignored as unroutable).
  check(res, { 'webhook 200 OK': (r) => r.status === 200 && r.body === 'OK' });
}
