// Settings shared by the k6 scenarios, all from the environment
// (scripts/loadtest.sh sets them).
import crypto from 'k6/crypto';

export const ADDR = __ENV.HOOKFAN_ADDR || '127.0.0.1:8080';
export const TOKEN = __ENV.HOOKFAN_TOKEN || '';
export const SECRET = __ENV.HOOKFAN_SECRET || '';
export const ORGS = parseInt(__ENV.ORGS || '10', 10);

// A pull_request fixture whose organization is `load<k>`.
export function payloadFor(raw, k) {
  return raw.split('Codertocat').join(`load${k}`);
}

export function signedHeaders(body, delivery) {
  return {
    'Content-Type': 'application/json',
    'X-GitHub-Event': 'pull_request',
    'X-GitHub-Delivery': delivery,
    'X-Hub-Signature-256': 'sha256=' + crypto.hmac('sha256', SECRET, body, 'hex'),
  };
}

// Milliseconds since an RFC 3339 timestamp with nanoseconds (cut to ms,
// which is what Date.parse understands).
export function ageMs(timestamp) {
  const ms = Date.parse(timestamp.replace(/(\.\d{3})\d*Z$/, '$1Z'));
  return Date.now() - ms;
}
