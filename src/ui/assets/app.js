// The live events page (/ui/): a form for the token and the subscription,
// and the events as they arrive, newest first. The connection is
// hookfan.js's: reconnects with backoff, resumes after the last event
// shown, reports gaps, and stops on errors retrying cannot fix.

import { connect, memoryStore, webStorageStore } from './hookfan.js';

const MAX_ROWS = 1000; // older rows are removed from the page (the count goes on)
const KEY = {
  token: 'hookfan.token',
  form: 'hookfan.form',
  live: 'hookfan.live', // "1" while connected: a reload reconnects
  position: 'hookfan.position',
};

const $ = (id) => document.getElementById(id);
const form = $('connect-form');
const els = {
  state: $('state'),
  stateDetail: $('state-detail'),
  error: $('error'),
  disconnect: $('disconnect'),
  submit: form.querySelector('button[type=submit]'),
  session: $('session'),
  user: $('session-user'),
  org: $('session-org'),
  epoch: $('session-epoch'),
  lastSeq: $('session-seq'),
  warnings: $('warnings'),
  filter: $('filter'),
  pause: $('pause'),
  clear: $('clear'),
  count: $('count'),
  gap: $('gap'),
  gapText: $('gap-text'),
  gapDismiss: $('gap-dismiss'),
  events: $('events'),
  empty: $('empty'),
};

let client = null;
let received = 0; // events received since the page was opened
let paused = false;
let held = []; // events received while paused, oldest first

// --- session storage (the token never goes anywhere else) -------------------

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: nothing is kept
  }
}

function saveForm() {
  const s = storage();
  if (!s) return;
  const f = form.elements;
  s.setItem(KEY.token, f.token.value.trim());
  s.setItem(
    KEY.form,
    JSON.stringify({
      organization: f.organization.value,
      pull_requests: f.pull_requests.value,
      event_types: f.event_types.value,
      user_events_only: f.user_events_only.checked,
    }),
  );
}

function restoreForm() {
  const s = storage();
  if (!s) return;
  const f = form.elements;
  f.token.value = s.getItem(KEY.token) ?? '';
  try {
    const v = JSON.parse(s.getItem(KEY.form) ?? 'null');
    if (v) {
      f.organization.value = v.organization ?? '';
      f.pull_requests.value = v.pull_requests ?? '';
      f.event_types.value = v.event_types ?? '';
      f.user_events_only.checked = Boolean(v.user_events_only);
    }
  } catch {
    // a damaged entry: start empty
  }
}

// The position to resume from, in session storage: a reload picks up where
// the page was.
function positionStore() {
  const s = storage();
  return s ? webStorageStore(s, KEY.position) : memoryStore();
}

// --- the subscription ----------------------------------------------------------

function words(text) {
  return text
    .split(/[\s,]+/)
    .map((w) => w.trim())
    .filter(Boolean);
}

function subscription() {
  const f = form.elements;
  const sub = {};
  const org = f.organization.value.trim();
  if (org) sub.organization = org;
  const prs = words(f.pull_requests.value);
  if (prs.length) sub.pull_requests = prs;
  const types = words(f.event_types.value);
  if (types.length) sub.event_types = types;
  if (f.user_events_only.checked) sub.user_events_only = true;
  return sub;
}

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
}

// --- connecting ------------------------------------------------------------

function start({ resume }) {
  stop();
  hideError();
  const token = form.elements.token.value.trim();
  if (!token) {
    showError('Paste a token first.');
    form.elements.token.focus();
    return;
  }
  saveForm();
  const store = positionStore();
  if (!resume) store.set(null);
  try {
    client = connect({
      url: wsUrl(),
      token,
      subscription: subscription(),
      store,
      onEvent,
      onState,
      onGap,
      onError,
    });
  } catch (e) {
    showError(e.message);
    return;
  }
  setFormBusy(true);
}

function stop() {
  if (!client) return;
  const c = client;
  client = null;
  c.close();
}

function setFormBusy(busy) {
  els.submit.textContent = busy ? 'Reconnect' : 'Connect';
  els.disconnect.disabled = !busy;
}

function onState(state, detail) {
  els.state.textContent = state;
  els.state.className = `state state-${state}`;
  const s = storage();
  switch (state) {
    case 'connecting':
      els.stateDetail.textContent = '';
      break;
    case 'connected':
      els.stateDetail.textContent = detail.resumed ? 'resumed without a gap' : '';
      s?.setItem(KEY.live, '1');
      showSession(detail);
      break;
    case 'reconnecting':
      els.stateDetail.textContent = `${detail.reason}; retrying in ${(detail.retryIn / 1000).toFixed(1)} s`;
      break;
    case 'closed':
      els.stateDetail.textContent = detail.error ? '' : detail.reason ?? '';
      s?.removeItem(KEY.live);
      setFormBusy(false);
      break;
  }
}

function onError(error) {
  const text =
    {
      authentication_failed: 'The server rejected the token.',
      access_denied: 'Access denied.',
      invalid_subscription: 'The server refused the subscription.',
      event_type_not_allowed: 'An event type is not allowed on this server.',
      malformed_token: 'This does not look like a GitHub token.',
    }[error.code] ?? 'The server refused the connection.';
  showError(`${text} ${error.message && error.message !== error.code ? error.message : ''}`.trim(), error.code);
}

function showError(text, code) {
  els.error.replaceChildren();
  if (code) {
    const c = document.createElement('code');
    c.textContent = code;
    els.error.append(c, ' ');
  }
  els.error.append(text);
  els.error.hidden = false;
}

function hideError() {
  els.error.hidden = true;
  els.error.replaceChildren();
}

function showSession(d) {
  els.session.hidden = false;
  els.user.textContent = d.username || '–';
  els.org.textContent = d.organization || '(none)';
  els.epoch.textContent = d.stream?.epoch ?? '–';
  els.warnings.replaceChildren(
    ...d.warnings.map((w) => {
      const li = document.createElement('li');
      li.textContent = w;
      return li;
    }),
  );
}

function onGap(gap) {
  const why =
    {
      unknown_epoch: 'the server restarted',
      too_old: 'the server no longer holds them',
      resume_rejected: 'the server refused the resume position',
      no_resume: 'the server cannot resume',
    }[gap.reason] ?? gap.reason;
  const from = gap.after ? `after seq ${gap.after.seq}` : 'since the last connection';
  els.gapText.textContent = `Events ${from} may have been missed: ${why}. Check GitHub for what happened meanwhile.`;
  els.gap.hidden = false;
  const row = document.createElement('tr');
  row.className = 'gap-row';
  const td = document.createElement('td');
  td.colSpan = 6;
  td.textContent = `Events ${from} may have been missed (${gap.reason})`;
  row.append(td);
  insertRow(row);
}

// --- events ----------------------------------------------------------------

function onEvent(event) {
  received += 1;
  els.lastSeq.textContent = String(event.seq ?? '–');
  if (paused) held.push(event);
  else render(event);
  updateCount();
}

function render(event) {
  const row = document.createElement('tr');
  row.dataset.seq = String(event.seq ?? '');
  row.className = 'event-row';

  const time = cell('c-time');
  const when = new Date(event.timestamp);
  time.textContent = Number.isNaN(when.getTime()) ? String(event.timestamp ?? '') : formatTime(when);
  time.title = String(event.timestamp ?? '');

  const type = cell('c-type');
  const badge = document.createElement('span');
  badge.className = `badge badge-${typeFamily(event.type)}`;
  badge.textContent = String(event.type ?? '');
  type.append(badge);

  const url = cell('c-url');
  const text = String(event.url ?? '');
  if (/^https:\/\//.test(text)) {
    const a = document.createElement('a');
    a.href = text;
    a.textContent = text;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    url.append(a);
  } else {
    url.textContent = text;
  }

  const sha = cell('c-sha');
  if (event.commit_sha) {
    const code = document.createElement('code');
    code.textContent = String(event.commit_sha).slice(0, 7);
    code.title = String(event.commit_sha);
    sha.append(code);
  }

  const seq = cell('c-seq');
  seq.textContent = String(event.seq ?? '');

  const copy = cell('c-copy');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'copy';
  button.textContent = 'Copy JSON';
  button.title = 'Copy this event as JSON';
  const json = JSON.stringify(event);
  button.addEventListener('click', () => copyText(json, button));
  copy.append(button);

  row.append(time, type, url, sha, seq, copy);
  row.dataset.text = [event.type, event.url, event.commit_sha, event.seq, event.delivery_id].join(' ').toLowerCase();
  applyFilter(row);
  insertRow(row);
}

function cell(cls) {
  const td = document.createElement('td');
  td.className = cls;
  return td;
}

function insertRow(row) {
  els.events.prepend(row);
  while (els.events.rows.length > MAX_ROWS) els.events.lastElementChild.remove();
  els.empty.hidden = els.events.rows.length > 0;
}

function typeFamily(type) {
  if (typeof type !== 'string') return 'other';
  if (type.startsWith('pull_request')) return 'pr';
  if (type.startsWith('check') || type === 'status' || type === 'workflow_run') return 'ci';
  if (type.endsWith('comment')) return 'comment';
  return 'other';
}

function formatTime(d) {
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // No clipboard API (not a secure context): the old way.
    const area = document.createElement('textarea');
    area.value = text;
    area.className = 'offscreen';
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
  }
  button.textContent = ok ? 'Copied' : 'Copy failed';
  button.classList.toggle('done', ok);
  setTimeout(() => {
    button.textContent = 'Copy JSON';
    button.classList.remove('done');
  }, 1200);
}

// --- filter, pause, clear, count ------------------------------------------

function applyFilter(row) {
  const q = els.filter.value.trim().toLowerCase();
  row.classList.toggle('filtered', q !== '' && !(row.dataset.text ?? '').includes(q));
}

function updateCount() {
  const shown = els.events.querySelectorAll('tr.event-row:not(.filtered)').length;
  const rows = els.events.querySelectorAll('tr.event-row').length;
  let text = `${received} event${received === 1 ? '' : 's'}`;
  if (els.filter.value.trim()) text += ` · ${shown} shown`;
  else if (rows + held.length < received) text += ` · the latest ${rows} on the page`;
  if (held.length) text += ` · ${held.length} held while paused`;
  els.count.textContent = text;
}

els.filter.addEventListener('input', () => {
  for (const row of els.events.querySelectorAll('tr.event-row')) applyFilter(row);
  updateCount();
});

els.pause.addEventListener('click', () => {
  paused = !paused;
  els.pause.textContent = paused ? 'Resume' : 'Pause';
  els.pause.setAttribute('aria-pressed', String(paused));
  els.pause.classList.toggle('active', paused);
  if (!paused) {
    const h = held;
    held = [];
    for (const e of h) render(e);
  }
  updateCount();
});

els.clear.addEventListener('click', () => {
  els.events.replaceChildren();
  held = [];
  received = 0;
  els.empty.hidden = false;
  updateCount();
});

els.gapDismiss.addEventListener('click', () => {
  els.gap.hidden = true;
});

// --- wiring ----------------------------------------------------------------

form.addEventListener('submit', (e) => {
  e.preventDefault();
  start({ resume: false });
});

els.disconnect.addEventListener('click', () => stop());

restoreForm();
if (storage()?.getItem(KEY.live) === '1' && form.elements.token.value) {
  start({ resume: true });
}
