// Signed webhooks of realistic size (a pull_request fixture, ~28 KB) at
// RATE/s for DURATION_S seconds. Fails on any non-200 or error.
//   HOOKFAN_ADDR HOOKFAN_SECRET PAYLOAD RATE DURATION_S
import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { ADDR, ORGS, payloadFor, signedHeaders } from './common.js';

const RATE = parseInt(__ENV.RATE || '500', 10);
const DURATION_S = parseInt(__ENV.DURATION_S || '20', 10);
const RAW = open(__ENV.PAYLOAD);
const PAYLOADS = Array.from({ length: ORGS }, (_, k) => payloadFor(RAW, k));

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
  const body = PAYLOADS[j % ORGS];
  const res = http.post(`http://${ADDR}/webhook`, body, { headers: signedHeaders(body, `flood-${j}`) });
  check(res, { 'webhook answered 200': (r) => r.status === 200 });
}
