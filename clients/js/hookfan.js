// hookfan.js: a client of hookfan's WebSocket protocol (docs/protocol.md)
// for browsers and Node. One ES module, no dependencies; served by the
// daemon at /ui/hookfan.js.
//
//   import { connect } from './hookfan.js';
//   const client = connect({
//     url: 'wss://hookfan.example.com/ws',
//     token: 'ghp_...',
//     subscription: { organization: 'acme' },
//     onEvent: (event) => console.log(event.seq, event.type, event.url),
//   });
//   ...
//   client.close();
//
// It authenticates with the token as a WebSocket subprotocol
// (`hookfan.v1`, `hookfan.bearer.<token>`: browsers cannot set headers),
// reconnects with exponential backoff and full jitter, resumes after the
// last event handled (so nothing is lost or repeated while the server's
// replay window holds it), reports when events may have been missed
// (onGap), and stops for good on the errors retrying cannot fix.

/** The subprotocol the client offers and the server answers. */
export const PROTOCOL = 'hookfan.v1';

/**
 * Error codes of the protocol after which retrying cannot help: the client
 * stops (state 'closed', onError). Every other code, close or network
 * failure is retried. `invalid_subscription` answered to a subscription
 * that carried `resume` is the exception: the position is dropped and the
 * client retries once without it (protocol.md, "A minimal client loop").
 */
export const FATAL_ERRORS = Object.freeze([
  'authentication_failed',
  'access_denied',
  'invalid_subscription',
  'event_type_not_allowed',
]);

/**
 * HTTP answers to the upgrade that retrying cannot fix (403: missing or
 * malformed token). Only visible where the WebSocket implementation reports
 * them (npm `ws`: "Unexpected server response: 403"); a browser shows any
 * refused upgrade as a close before open, which is retried: see
 * {@link tokenLooksValid}.
 */
export const FATAL_HTTP_STATUSES = Object.freeze([400, 401, 403, 404, 405]);

const DEFAULT_BACKOFF = Object.freeze({ base: 500, cap: 30000, resetAfter: 60000 });

/** An error the client reports: `code` is the protocol's error code, or
 * `http_<status>`, `malformed_token`, `bad_options`, `handler_failed`. */
export class HookfanError extends Error {
  constructor(code, message, { fatal = false, status, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'HookfanError';
    this.code = code;
    this.fatal = fatal;
    if (status !== undefined) this.status = status;
  }
}

/**
 * Whether `token` has a shape the server accepts (protocol.md, "Connecting":
 * `ghp_`, `gho_`, `ghs_` + 36 letters and digits; `github_pat_` + 36 or more
 * of `[A-Za-z0-9_]`; or 40 letters and digits; 40 to 255 characters). The
 * server answers any other token with HTTP 403 before the upgrade, which a
 * browser cannot tell from a network failure: connect() checks the shape
 * first and fails with `malformed_token` instead of retrying for ever.
 */
export function tokenLooksValid(token) {
  if (typeof token !== 'string' || token.length < 40 || token.length > 255) return false;
  return /^(?:gh[pos]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{36,}|[A-Za-z0-9]{40})$/.test(token);
}

/** A position store in memory (the default): `{get(), set(position)}`. */
export function memoryStore(initial = null) {
  let position = initial;
  return {
    get: () => position,
    set: (p) => {
      position = p;
    },
  };
}

/**
 * A position store in a Web Storage object (`sessionStorage`,
 * `localStorage`, or anything with getItem/setItem/removeItem) under `key`.
 */
export function webStorageStore(storage, key = 'hookfan.position') {
  return {
    get() {
      try {
        const p = JSON.parse(storage.getItem(key) ?? 'null');
        return isPosition(p) ? p : null;
      } catch {
        return null;
      }
    },
    set(p) {
      if (p) storage.setItem(key, JSON.stringify(p));
      else storage.removeItem(key);
    },
  };
}

/** The delay before reconnect attempt `attempt` (0, 1, ...): full jitter,
 * uniform in 0 ..= min(cap, base * 2^attempt) milliseconds. */
export function backoffDelay(attempt, { base, cap } = DEFAULT_BACKOFF, random = Math.random) {
  return Math.round(random() * Math.min(cap, base * 2 ** Math.min(attempt, 30)));
}

function isPosition(p) {
  return (
    p !== null &&
    typeof p === 'object' &&
    typeof p.epoch === 'string' &&
    p.epoch.length > 0 &&
    Number.isSafeInteger(p.seq) &&
    p.seq >= 0
  );
}

const noop = () => {};

/**
 * Subscribes and keeps the subscription alive. Returns at once with
 * `{ close(), state, position }`; the first connection starts right after.
 *
 * Options:
 * - `url`: `ws://HOST:PORT/ws` or `wss://HOST/ws`.
 * - `token`: a GitHub token (or a static token of the server's table).
 * - `subscription`: the subscription message without `resume`
 *   (`organization`, `pull_requests`, `event_types`, `user_events_only`).
 * - `onEvent(event)`: each event, in order, once. May return a promise: the
 *   next event waits for it. The position (epoch, event.seq) is stored
 *   after it returned (or its promise resolved). If it throws (or rejects),
 *   the position stays before that event and the client reconnects and
 *   resumes, so the event is handed over again (at least once).
 * - `onState(state, detail)`: 'connecting' (first attempt), 'connected'
 *   (subscription confirmed; detail: username, organization, resumed,
 *   stream, warnings, confirmation), 'reconnecting' (after a failure, and
 *   at each failed attempt; detail: reason, retryIn ms, attempt, error for
 *   a retryable protocol error), 'closed' (for good; detail: reason, error).
 * - `onError(error)`: a fatal HookfanError (then state 'closed'; no retry).
 * - `onGap(info)`: events may have been missed: a resume was refused
 *   (`reason` 'unknown_epoch' or 'too_old', the server's `resume_error`;
 *   'resume_rejected' when the server answered the resume
 *   invalid_subscription and the client went on without it; 'no_resume'
 *   when a server without resume support reconnected). `info.after` is the
 *   position asked for, `info.stream` the server's stream state.
 * - `store`: `{get(), set(position)}` (either may return a promise), the
 *   last handled position `{epoch, seq}` or null. Default: memoryStore().
 * - `WebSocket`: the WebSocket constructor; default globalThis.WebSocket
 *   (browsers, Node 22+); on Node 20, pass the npm `ws` package's.
 * - `backoff`: `{base: 500, cap: 30000, resetAfter: 60000}` ms; the attempt
 *   count goes back to 0 once a connection has lived `resetAfter`.
 * - `auth`: 'subprotocol' (default) or 'header' (`Authorization: Bearer`,
 *   for WebSocket constructors taking `{headers}` as npm `ws` does).
 * - `connectTimeout` (35000 ms: upgrade to confirmation) and `idleTimeout`
 *   (108000 ms: twice the server's ping interval; silence that long means
 *   a dead connection).
 */
export function connect(options = {}) {
  const {
    url,
    token,
    subscription = {},
    onEvent = noop,
    onState = noop,
    onError = noop,
    onGap = noop,
    store = memoryStore(),
    auth = 'subprotocol',
    connectTimeout = 35000,
    idleTimeout = 108000,
  } = options;
  const WS = options.WebSocket ?? globalThis.WebSocket;
  if (typeof WS !== 'function') {
    throw new HookfanError(
      'bad_options',
      'hookfan: no WebSocket implementation: pass connect({WebSocket}) (on Node 20, the npm "ws" package\'s default export), or run where globalThis.WebSocket exists (browsers, Node 22+)',
      { fatal: true },
    );
  }
  if (typeof url !== 'string' || !/^wss?:\/\//i.test(url)) {
    throw new HookfanError('bad_options', `hookfan: url must be ws:// or wss://, not ${JSON.stringify(url)}`, { fatal: true });
  }
  if (typeof token !== 'string' || token === '') {
    throw new HookfanError('bad_options', 'hookfan: a token is required', { fatal: true });
  }
  if (subscription === null || typeof subscription !== 'object' || Array.isArray(subscription)) {
    throw new HookfanError('bad_options', 'hookfan: subscription must be an object', { fatal: true });
  }
  if (auth !== 'subprotocol' && auth !== 'header') {
    throw new HookfanError('bad_options', `hookfan: auth must be 'subprotocol' or 'header'`, { fatal: true });
  }
  const backoff = { ...DEFAULT_BACKOFF, ...(options.backoff ?? {}) };
  const random = backoff.random ?? Math.random;

  let state = null;
  let stopped = false; // closed for good (by the caller or a fatal error)
  let conn = null; // the current attempt
  let retryTimer = null;
  let attempt = 0; // failed attempts since the last stable connection
  let position = undefined; // last handled {epoch, seq}; undefined: not loaded
  let connectedBefore = false;
  let resumeRejected = null; // the position whose resume was answered invalid_subscription
  let chain = Promise.resolve(); // event handling, in order

  const setState = (s, detail = {}) => {
    state = s;
    safe(onState, s, detail);
  };

  async function currentPosition() {
    if (position === undefined) {
      const p = await store.get();
      position = isPosition(p) ? { epoch: p.epoch, seq: p.seq } : null;
    }
    return position;
  }

  async function savePosition(p) {
    position = p;
    await store.set(p ? { epoch: p.epoch, seq: p.seq } : null);
  }

  function fail(error) {
    if (stopped) return;
    stopped = true;
    clearTimeout(retryTimer);
    safe(onError, error);
    setState('closed', { reason: error.message, error });
  }

  async function open() {
    retryTimer = null;
    // Events of the previous connection are handled first: the resume must
    // start after the last of them.
    await chain;
    if (stopped) return;
    let asked;
    try {
      asked = await currentPosition();
    } catch (e) {
      fail(new HookfanError('bad_options', `hookfan: store.get() failed: ${e?.message ?? e}`, { fatal: true, cause: e }));
      return;
    }
    if (stopped) return;
    if (!tokenLooksValid(token)) {
      fail(
        new HookfanError(
          'malformed_token',
          'The token does not look like a GitHub token (ghp_, gho_, ghs_ or github_pat_ followed by letters and digits, or 40 letters and digits); the server would refuse it (HTTP 403).',
          { fatal: true },
        ),
      );
      return;
    }
    const c = {
      ws: null,
      opened: false,
      confirmed: false,
      confirmedAt: 0,
      epoch: null,
      asked,
      refusal: null, // the server's {"type":"error"} message
      status: undefined, // an HTTP status refusing the upgrade, where visible
      handlerError: null,
      timer: null,
      done: false,
    };
    conn = c;
    try {
      c.ws =
        auth === 'header'
          ? new WS(url, { headers: { Authorization: `Bearer ${token}` } })
          : new WS(url, [PROTOCOL, `hookfan.bearer.${token}`]);
    } catch (e) {
      fail(new HookfanError('bad_options', `hookfan: cannot open ${url}: ${e?.message ?? e}`, { fatal: true, cause: e }));
      return;
    }
    c.timer = setTimeout(() => drop(c, `not subscribed within ${connectTimeout / 1000} s`), connectTimeout);
    c.ws.onopen = () => {
      if (conn !== c) return;
      c.opened = true;
      const message = { ...subscription };
      delete message.resume;
      if (c.asked) message.resume = { epoch: c.asked.epoch, after: c.asked.seq };
      send(c, message);
    };
    c.ws.onmessage = (ev) => {
      if (conn !== c || c.done || typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg === null || typeof msg !== 'object') return;
      if (c.confirmed) armIdle(c);
      if (typeof msg.url === 'string') {
        if (c.confirmed) handleEvent(c, msg);
      } else if (msg.type === 'subscription_confirmed' && !c.confirmed) {
        confirmed(c, msg);
      } else if (msg.type === 'error') {
        c.refusal = msg;
        if (isFatal(c) && !(msg.error === 'invalid_subscription' && c.asked)) finish(c, 'refused');
      } else if (msg.type === 'ping') {
        send(c, msg.seq === undefined ? { type: 'pong' } : { type: 'pong', seq: msg.seq });
      }
    };
    c.ws.onerror = (ev) => {
      if (conn !== c) return;
      const text = String(ev?.message ?? ev?.error?.message ?? '');
      const m = /Unexpected server response: (\d{3})/.exec(text);
      if (m) c.status = Number(m[1]);
      c.errorText = text;
    };
    c.ws.onclose = (ev) => {
      if (conn !== c) return;
      c.closeCode = ev?.code;
      c.closeReason = ev?.reason ?? '';
      finish(c, 'closed');
    };
  }

  function send(c, message) {
    try {
      c.ws.send(JSON.stringify(message));
    } catch {
      // the close that follows says what happened
    }
  }

  function armIdle(c) {
    clearTimeout(c.timer);
    c.timer = setTimeout(() => drop(c, `no message from the server in ${idleTimeout / 1000} s`), idleTimeout);
  }

  // Ends the attempt from our side (a timeout, a failed handler).
  function drop(c, why) {
    if (c.done || conn !== c) return;
    c.dropped = why;
    finish(c, 'dropped');
  }

  function confirmed(c, conf) {
    c.confirmed = true;
    c.confirmedAt = Date.now();
    armIdle(c);
    const stream = conf.stream && typeof conf.stream === 'object' ? conf.stream : null;
    const live =
      stream && typeof stream.epoch === 'string' && Number.isSafeInteger(stream.seq) ? { epoch: stream.epoch, seq: stream.seq } : null;
    let gap = null;
    if (c.asked && conf.resumed !== true) {
      gap = conf.resumed === false ? conf.resume_error || 'refused' : 'no_resume';
    } else if (!c.asked && resumeRejected) {
      gap = 'resume_rejected';
    } else if (!c.asked && connectedBefore) {
      gap = 'no_resume';
    }
    const asked = c.asked ?? resumeRejected;
    resumeRejected = null;
    if (conf.resumed === true && c.asked) {
      c.epoch = c.asked.epoch;
    } else {
      c.epoch = live ? live.epoch : null;
      // Live from the stream's seq: a later resume starts there.
      chain = chain.then(() => (stopped ? undefined : savePosition(live))).catch(() => {});
    }
    connectedBefore = true;
    if (gap) {
      safe(onGap, {
        reason: gap,
        after: asked ? { epoch: asked.epoch, seq: asked.seq } : null,
        stream,
        message: gapMessage(gap, asked),
      });
    }
    setState('connected', {
      username: conf.username,
      organization: conf.organization,
      resumed: c.asked ? conf.resumed === true : undefined,
      stream,
      warnings: Array.isArray(conf.warnings) ? conf.warnings : [],
      confirmation: conf,
    });
  }

  function handleEvent(c, event) {
    chain = chain.then(async () => {
      if (stopped || c.handlerError) return;
      const seq = event.seq;
      if (Number.isSafeInteger(seq) && position && position.epoch === c.epoch && seq <= position.seq) return; // already handled
      try {
        await onEvent(event);
      } catch (e) {
        c.handlerError = e;
        drop(c, `onEvent failed on seq ${seq}: ${e?.message ?? e}`);
        return;
      }
      if (Number.isSafeInteger(seq) && c.epoch) {
        try {
          await savePosition({ epoch: c.epoch, seq });
        } catch (e) {
          c.handlerError = e;
          drop(c, `store.set() failed: ${e?.message ?? e}`);
        }
      }
    });
  }

  function isFatal(c) {
    return c.refusal && FATAL_ERRORS.includes(c.refusal.error);
  }

  // The attempt is over (closed, refused, dropped): stop or retry.
  function finish(c, how) {
    if (c.done) return;
    c.done = true;
    clearTimeout(c.timer);
    if (how !== 'closed') {
      try {
        c.ws.close(how === 'refused' ? 1000 : 4000, how === 'refused' ? '' : 'client gave up on the connection');
      } catch {
        // already closing
      }
    }
    if (stopped || conn !== c) return;
    conn = null;
    // The close frame's reason is the error code when no message came.
    if (!c.refusal && FATAL_ERRORS.includes(c.closeReason)) c.refusal = { error: c.closeReason, message: c.closeReason };
    if (isFatal(c)) {
      if (c.refusal.error === 'invalid_subscription' && c.asked) {
        // e.g. "after" beyond the stream's last seq: go on without resume.
        resumeRejected = c.asked;
        chain = chain.then(() => savePosition(null)).catch(() => {});
        retry(c, `resume refused: ${c.refusal.message ?? 'invalid_subscription'}`);
        return;
      }
      const { error, message } = c.refusal;
      fail(new HookfanError(error, message || error, { fatal: true }));
      return;
    }
    if (!c.opened && FATAL_HTTP_STATUSES.includes(c.status)) {
      fail(
        new HookfanError(`http_${c.status}`, `the server refused the upgrade with HTTP ${c.status}${c.status === 403 ? ' (missing or malformed token)' : ''}`, {
          fatal: true,
          status: c.status,
        }),
      );
      return;
    }
    let reason;
    let error;
    if (c.refusal) {
      error = new HookfanError(c.refusal.error, c.refusal.message || c.refusal.error);
      reason = `${error.message} (${error.code})`;
    } else if (c.dropped) {
      reason = c.dropped;
    } else if (!c.opened) {
      reason = c.status ? `the server answered HTTP ${c.status}` : `could not connect${c.errorText ? `: ${c.errorText}` : ''}`;
    } else {
      reason = `connection closed${c.closeCode ? ` (${c.closeCode}${c.closeReason ? ` ${c.closeReason}` : ''})` : ''}`;
    }
    retry(c, reason, error);
  }

  function retry(c, reason, error) {
    if (c.confirmed && Date.now() - c.confirmedAt >= backoff.resetAfter) attempt = 0;
    const retryIn = backoffDelay(attempt, backoff, random);
    attempt += 1;
    setState('reconnecting', error ? { reason, retryIn, attempt, error } : { reason, retryIn, attempt });
    retryTimer = setTimeout(open, retryIn);
  }

  const handle = {
    /** Closes the connection for good (state 'closed'); idempotent. */
    close() {
      if (stopped) return;
      stopped = true;
      clearTimeout(retryTimer);
      const c = conn;
      conn = null;
      if (c) {
        c.done = true;
        clearTimeout(c.timer);
        try {
          c.ws.close(1000);
        } catch {
          // already closing
        }
      }
      setState('closed', { reason: 'closed by the caller' });
    },
    /** 'connecting' | 'connected' | 'reconnecting' | 'closed'. */
    get state() {
      return state;
    },
    /** The last handled position {epoch, seq}, or null. */
    get position() {
      return position ? { ...position } : null;
    },
  };
  // The first callback comes after connect() has returned its handle.
  state = 'connecting';
  Promise.resolve().then(() => {
    if (stopped) return;
    setState('connecting', { url });
    return open();
  });
  return handle;
}

function gapMessage(reason, after) {
  const from = after ? `after seq ${after.seq} (epoch ${after.epoch})` : 'since the last connection';
  const why = {
    unknown_epoch: 'the server restarted (a new epoch)',
    too_old: 'the server no longer holds them',
    resume_rejected: 'the server refused the resume position',
    no_resume: 'the server cannot resume',
  }[reason];
  return `events ${from} may have been missed: ${why ?? reason}`;
}

function safe(fn, ...args) {
  try {
    fn(...args);
  } catch (e) {
    // A throwing callback must not break the connection's state machine.
    queueMicrotask(() => {
      throw e;
    });
  }
}
