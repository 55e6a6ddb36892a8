// Settings shared by the k6 scenarios, all from the environment. The
// defaults target the development config (`hookfan --config
// config/hookfan.toml`: 127.0.0.1:8080, config/dev-webhook-secret.txt,
// config/dev-tokens.toml); scripts/loadtest.sh sets every one of them for
// its generated config. The full list is in loadtest/README.md.
import crypto from 'k6/crypto';

export const ADDR = __ENV.HOOKFAN_ADDR || '127.0.0.1:8080';
// bob in config/dev-tokens.toml: member of acme and widgets, tier pro.
export const TOKEN = __ENV.HOOKFAN_TOKEN || 'ghp_devBob000000000000000000000000000000';
// hookfan drops the secret file's trailing line end; so does this.
export const SECRET = __ENV.HOOKFAN_SECRET !== undefined
  ? __ENV.HOOKFAN_SECRET
  : open('../../config/dev-webhook-secret.txt').replace(/[\r\n]+$/, '');

// ORGS: comma-separated organization names (the token must belong to each),
// or a number N, short for load0,...,load<N-1> (what scripts/loadtest.sh
// passes: its token belongs to load0..load99).
function parseOrgs(spec) {
  spec = spec.trim();
  const orgs = /^\d+$/.test(spec)
    ? Array.from({ length: parseInt(spec, 10) }, (_, k) => `load${k}`)
    : spec.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (orgs.length === 0) throw new Error(`ORGS names no organization: "${spec}"`);
  const lower = orgs.map((o) => o.toLowerCase());
  if (new Set(lower).size !== orgs.length) throw new Error(`ORGS repeats an organization: "${spec}"`);
  return orgs;
}
export const ORGS = parseOrgs(__ENV.ORGS || 'acme,widgets');

// The webhook body: a pull_request payload of organization PAYLOAD_ORG
// (default acme, as in the project's fixture), retargeted per org by
// replacing every occurrence of that name.
export const PAYLOAD_ORG = __ENV.PAYLOAD_ORG || 'acme';

// A PAYLOAD path from the environment is taken relative to the directory k6
// runs in, like any command-line path (open() alone would take it relative
// to this file); the default is relative to this file.
function payloadPath() {
  const p = __ENV.PAYLOAD;
  if (!p) return '../../tests/fixtures/webhooks/pull_request.opened.json';
  if (/^([A-Za-z]:)?[\\/]/.test(p) || !__ENV.PWD) return p;
  return `${__ENV.PWD}/${p}`;
}

// The payload for each of ORGS, in order. Call it in the init context.
export function loadPayloads() {
  const raw = open(payloadPath());
  if (!raw.includes(PAYLOAD_ORG)) {
    throw new Error(`the payload (${payloadPath()}) does not mention PAYLOAD_ORG "${PAYLOAD_ORG}"`);
  }
  return ORGS.map((org) => payloadFor(raw, org));
}

// The fixture with its organization (every `PAYLOAD_ORG`) replaced by `org`.
export function payloadFor(raw, org) {
  return raw.split(PAYLOAD_ORG).join(org);
}

export function signedHeaders(body, delivery) {
  return {
    'Content-Type': 'application/json',
    'X-GitHub-Event': 'pull_request',
    'X-GitHub-Delivery': delivery,
    'X-Hub-Signature-256': 'sha256=' + crypto.hmac('sha256', SECRET, body, 'hex'),
  };
}

// Logs why a k6/ws handshake did not upgrade (the checks count it).
export function warnUnlessUpgraded(who, res) {
  if (!res || res.status === 101) return;
  const why = String(res.error || res.body || '').trim();
  console.warn(`${who}: handshake ${res.status ? `answered ${res.status}` : 'failed'}: ${why}`);
}

// Milliseconds since an RFC 3339 timestamp with nanoseconds (cut to ms,
// which is what Date.parse understands).
export function ageMs(timestamp) {
  const ms = Date.parse(timestamp.replace(/(\.\d{3})\d*Z$/, '$1Z'));
  return Date.now() - ms;
}
