//! One WebSocket connection after the upgrade: the handshake (subscription,
//! token check, confirmation), then streaming until either side closes.
//!
//! A session is a single task that owns its socket and is the only writer to
//! it. It waits on the socket, its outbox and one timer; frames queued by the
//! shard while it was busy are written together in one vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::WsContext;
use super::access::Watching;
use super::codec::{self, Decoder, Message, ProtocolError};
use super::messages::{self, ClientMessage, HandshakeError};
use super::wire::Wire;
use crate::auth::{AuthError, IdentityKind, Token};
use crate::broker::filter::Verdict;
use crate::broker::{
    Backfilled, ClientId, ClientProfile, Drained, Filter, JoinError, Missed, Outbox, Outgoing,
    Registration, Replay, ResumeRefusal, Subscriber,
};
use crate::event::Event;
use crate::metrics::LatencyHistogram;
use crate::subscription::{Subscription, SubscriptionError};

/// Largest message a client may send (the subscription included).
pub(crate) const MAX_MESSAGE: usize = 8192;

/// How long a closing connection waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Most frames written with one system call.
const MAX_IOVECS: usize = 64;

/// Bytes read per system call; a client sends small messages.
const READ_CHUNK: usize = 2048;

/// A socket with a frame decoder and a queue of frames to write.
struct Conn<W> {
    stream: W,
    decoder: Decoder,
    /// Bytes hyper read past the upgrade request; decoded before the socket.
    prefix: Option<Bytes>,
    /// Frames to write, oldest first.
    pending: VecDeque<Outgoing>,
    /// Bytes of `pending[0]` already written.
    written: usize,
    /// When a write last made progress (or pending became non-empty).
    write_progress: Instant,
    /// Where event frames' delivery latencies go once written.
    latency: Arc<LatencyHistogram>,
}

enum ReadOutcome {
    /// Bytes were decoded (possibly none, on a spurious wakeup).
    Data,
    /// The client closed the connection.
    Eof,
}

impl<W: Wire> Conn<W> {
    fn new(stream: W, prefix: Bytes, latency: Arc<LatencyHistogram>) -> Self {
        Self {
            stream,
            decoder: Decoder::new(MAX_MESSAGE),
            prefix: (!prefix.is_empty()).then_some(prefix),
            pending: VecDeque::new(),
            written: 0,
            write_progress: Instant::now(),
            latency,
        }
    }

    /// Queues a control frame (not an event).
    fn queue(&mut self, frame: Bytes) {
        if self.pending.is_empty() {
            self.write_progress = Instant::now();
        }
        self.pending.push_back(Outgoing::control(frame));
    }

    /// Reads what is available without waiting and decodes it, together
    /// with any complete frames the decoder held back.
    fn read_now(
        &mut self,
        on_message: impl FnMut(Message<'_>) -> bool,
    ) -> Result<ReadOutcome, ConnError> {
        if let Some(prefix) = self.prefix.take() {
            let mut buf = prefix.to_vec();
            self.decoder.feed(&mut buf, on_message)?;
            return Ok(ReadOutcome::Data);
        }
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.try_read(&mut buf) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(ConnError::Io(e)),
        };
        self.decoder.feed(&mut buf[..n], on_message)?;
        Ok(ReadOutcome::Data)
    }

    /// Writes as much of `pending` as the socket takes now. Returns whether
    /// everything was written.
    fn write_now(&mut self) -> io::Result<bool> {
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, f) in self.pending.iter().take(MAX_IOVECS).enumerate() {
                let b = f.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.written..] } else { b });
                n += 1;
            }
            let mut wrote = match self.stream.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            self.write_progress = now;
            while wrote > 0 {
                let left = self.pending[0].bytes().len() - self.written;
                if wrote >= left {
                    wrote -= left;
                    self.written = 0;
                    let done = self.pending.pop_front().expect("a frame was being written");
                    if let Some(accepted) = done.accepted() {
                        self.latency
                            .observe(now.into_std().saturating_duration_since(accepted));
                    }
                } else {
                    self.written += wrote;
                    wrote = 0;
                }
            }
        }
        if self.pending.capacity() > 64 {
            self.pending = VecDeque::new();
        }
        match self.stream.try_flush() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            r => r,
        }
    }

    /// Whether anything is waiting to be written: frames, or (TLS) records.
    fn writing(&self) -> bool {
        !self.pending.is_empty() || self.stream.wants_write()
    }

    async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)).await
    }

    /// Starts writing a batch of frames just moved to `pending`.
    fn write_batch(&mut self) -> io::Result<bool> {
        self.write_progress = Instant::now();
        self.write_now()
    }

    /// Writes everything pending, waiting for the socket as needed.
    async fn flush(&mut self) -> io::Result<()> {
        while !self.write_now()? {
            std::future::poll_fn(|cx| self.stream.poll_write_ready(cx)).await?;
        }
        Ok(())
    }

    /// Sends a close frame and waits briefly for the client's answer, so that
    /// a final error message is read before the TCP connection goes away.
    async fn close(&mut self, code: u16, reason: &str) {
        self.queue(codec::close_frame(code, reason));
        let deadline = Instant::now() + CLOSE_GRACE;
        let _ = tokio::time::timeout_at(deadline, async {
            self.flush().await?;
            loop {
                self.readable().await?;
                let mut closed = false;
                match self.read_now(|m| {
                    closed = matches!(m, Message::Close(_));
                    !closed
                }) {
                    Ok(ReadOutcome::Eof) | Err(_) => return io::Result::Ok(()),
                    Ok(ReadOutcome::Data) if closed => return Ok(()),
                    Ok(ReadOutcome::Data) => {}
                }
            }
        })
        .await;
    }
}

#[derive(Debug)]
enum ConnError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}

/// What the client sent first.
enum First {
    Text(String),
    Binary,
    Closed,
}

/// Runs a connection from just after the upgrade: the handshake here, then
/// the streaming phase in a task of its own, so that an idle subscribed
/// client holds only the streaming state (the upgrade's and the
/// handshake's state go with this task). `held` (the session count, the
/// connection slot) is released when the connection ends, however it ends.
pub(crate) async fn run<W: Wire, H: Send + 'static>(
    stream: W,
    prefix: Bytes,
    token: Token,
    peer: IpAddr,
    ctx: Arc<WsContext>,
    held: H,
) {
    let mut conn = Conn::new(stream, prefix, ctx.metrics.delivery_latency.clone());
    let started = Instant::now();
    // Boxed: the handshake's state (the auth provider's future) is large.
    let accepted = Box::pin(handshake(&mut conn, &token, &ctx)).await;
    // Refusals are logged with the token's short hash, never the token.
    let fingerprint = accepted.is_err().then(|| token.fingerprint());
    let accepted = match accepted {
        Ok(Some(a)) => a,
        Ok(None) => {
            ctx.metrics.handshake("abandoned");
            return;
        }
        Err(e) => {
            if e.rejects_token() {
                ctx.failed_checks.record(crate::limits::client_key(peer));
            }
            ctx.metrics.handshake(e.outcome());
            let (code, message, close) = e.answer();
            let token = fingerprint.unwrap_or_default();
            tracing::info!(%peer, %token, error = code.as_str(), detail = %message, "subscription refused");
            conn.queue(messages::error_frame(code, &message));
            conn.close(close, code.as_str()).await;
            return;
        }
    };
    let Accepted {
        subscription,
        can_see_private,
        listed,
        warnings,
        filter,
    } = accepted;
    let orgs = filter.orgs.clone();
    let login = subscription.username.clone();
    let org = subscription.organization.clone();
    let resume = subscription.resume.clone();
    let outbox = Arc::new(Outbox::new(ctx.hub.config().client_queue));
    let id = ctx.hub.next_client_id();
    // The replay judges events with the same filter as the shard.
    let replay_filter = resume.is_some().then(|| filter.clone());
    let profile = ClientProfile {
        subscription,
        can_see_private,
        orgs,
    };
    // In a cluster, a client may resume after a seq another node has
    // applied first: let this node catch up before judging `after`.
    if let (Some(from), Some(backfill)) = (&resume, &ctx.backfill)
        && from.after > ctx.hub.stream_state().seq
        && let Err(e) = backfill.catch_up().await
    {
        tracing::warn!(error = %e, "could not catch up with the stream for a resume");
    }
    let joined = ctx.hub.register(
        Subscriber {
            id,
            filter,
            outbox: outbox.clone(),
        },
        profile,
        resume.as_ref(),
    );
    let mut joined = match joined {
        Ok(j) => j,
        Err(e) => {
            let refusal = match e {
                JoinError::Stopped => HandshakeError::ShuttingDown,
                JoinError::ResumeAfterFuture { after, last } => {
                    HandshakeError::Invalid(SubscriptionError::ResumeAfterFuture { after, last })
                }
            };
            refuse(&mut conn, &ctx, peer, &login, refusal).await;
            return;
        }
    };
    if let Some(backfill) = &ctx.backfill {
        joined.stream.oldest = joined.stream.oldest.min(backfill.oldest());
    }
    let enforce = ctx.hub.config().enforce_tiers;
    let (replay, resume_outcome) = match (joined.resume.take(), &resume, replay_filter) {
        (Some(Missed::Refused(refusal)), _, _) => (None, Some(Err(refusal))),
        (Some(Missed::Held(held)), _, Some(filter)) => (
            Some(Box::new(Replay::new(held, filter, enforce))),
            Some(Ok(())),
        ),
        (Some(Missed::Partly { floor, mut held }), Some(from), Some(filter)) => {
            // What this node no longer holds comes from the stream.
            let fetched = match &ctx.backfill {
                None => Ok(Backfilled::NotHeld),
                Some(backfill) => {
                    let judge = filter.clone();
                    let keep = Box::new(move |e: &Event| judge.judge(e, enforce) != Verdict::Skip);
                    backfill.fetch(from.after + 1, floor, keep).await
                }
            };
            match fetched {
                Ok(Backfilled::Events(older)) => {
                    held.prepend(older);
                    (
                        Some(Box::new(Replay::new(held, filter, enforce))),
                        Some(Ok(())),
                    )
                }
                Ok(Backfilled::NotHeld | Backfilled::TooLarge) => {
                    (None, Some(Err(ResumeRefusal::TooOld)))
                }
                Err(e) => {
                    // Not "too_old": nothing is lost, it just cannot be
                    // read now. The client is told to come back.
                    tracing::warn!(error = %e, after = from.after, "resume could not read the stream");
                    drop(joined);
                    refuse(
                        &mut conn,
                        &ctx,
                        peer,
                        &login,
                        HandshakeError::StreamUnavailable,
                    )
                    .await;
                    return;
                }
            }
        }
        _ => (None, None),
    };
    if let Some(outcome) = resume_outcome {
        ctx.hub.count_resume(outcome);
    }
    // Queued on the connection itself: it is written before anything is
    // taken from the outbox or the replay, so it precedes every event.
    conn.queue(messages::confirmation_frame(&messages::Confirmed {
        organization: &org,
        username: &login,
        event_types: listed.as_deref(),
        stream: &joined.stream,
        resume: resume_outcome,
        warnings: &warnings,
    }));
    ctx.metrics.handshake("confirmed");
    let registration = joined.registration;
    let shard = registration.shard();
    let access = ctx.access.watch(&ctx, token, id);
    tracing::info!(client = id, %peer, %login, %org, shard, seq = joined.stream.seq, "client subscribed");
    if let (Some(from), Some(Err(refusal))) = (&resume, resume_outcome) {
        tracing::info!(
            client = id, %login, outcome = refusal.as_str(), after = from.after,
            oldest = joined.stream.oldest, seq = joined.stream.seq,
            "resume refused: the client may have missed events"
        );
    }
    tokio::spawn(
        Subscribed {
            conn,
            outbox,
            replay,
            registration: Some(registration),
            access: Some(access),
            ctx,
            held: Some(held),
            id,
            shard,
            login: login.into_boxed_str(),
            org: org.into_boxed_str(),
            peer,
            started,
        }
        .stream(),
    );
}

/// Answers a subscription the hub would not take, and closes.
async fn refuse<W: Wire>(
    conn: &mut Conn<W>,
    ctx: &WsContext,
    peer: IpAddr,
    login: &str,
    refusal: HandshakeError,
) {
    ctx.metrics.handshake(refusal.outcome());
    let (code, message, close) = refusal.answer();
    tracing::info!(%peer, %login, error = code.as_str(), detail = %message, "subscription refused");
    conn.queue(messages::error_frame(code, &message));
    conn.close(close, code.as_str()).await;
}

/// What a subscribed connection keeps for its whole life.
struct Subscribed<W, H> {
    conn: Conn<W>,
    outbox: Arc<Outbox>,
    /// The events missed before a resume, while they are being written.
    replay: Option<Box<Replay>>,
    /// Taken at the end: unregisters the client.
    registration: Option<Registration>,
    /// Taken at the end: the client's token is no longer rechecked for it.
    access: Option<Watching>,
    ctx: Arc<WsContext>,
    /// Taken at the end: the session count and the connection slot.
    held: Option<H>,
    id: ClientId,
    shard: u16,
    login: Box<str>,
    org: Box<str>,
    peer: IpAddr,
    started: Instant,
}

impl<W: Wire, H> Subscribed<W, H> {
    /// An `async move` block rather than an `async fn`: the latter would
    /// keep both the argument and its moved copy in the task (352 bytes
    /// more for every connection).
    #[allow(clippy::manual_async_fn)]
    fn stream(mut self) -> impl std::future::Future<Output = ()> {
        async move { self.stream_inner().await }
    }

    async fn stream_inner(&mut self) {
        let end = stream_events(
            &mut self.conn,
            &self.outbox,
            &mut self.replay,
            &self.ctx,
            self.id,
        )
        .await;
        if let Some(r) = self.replay.take() {
            // Gone before its replay ended.
            self.ctx.hub.count_replayed(r.replayed);
            tracing::info!(
                client = self.id, login = %self.login, outcome = "resumed",
                replayed = r.replayed, candidates = r.candidates(), complete = false,
                "resume ended with the connection"
            );
        }
        self.registration.take();
        self.access.take();
        tracing::info!(
            client = self.id,
            peer = %self.peer,
            login = %self.login,
            org = %self.org,
            shard = self.shard,
            duration_ms = self.started.elapsed().as_millis() as u64,
            events = end.frames,
            drops = self.outbox.dropped(),
            reason = end.reason,
            "client disconnected"
        );
        self.held.take();
    }
}

/// A successful handshake.
struct Accepted {
    /// As accepted: username and pinned org filled in.
    subscription: Subscription,
    can_see_private: bool,
    /// The event types the confirmation lists.
    listed: Option<Vec<String>>,
    warnings: Vec<String>,
    filter: Filter,
}

/// Reads the subscription, checks it and the token. `Ok(None)`: the client
/// went away or broke the protocol (already answered).
async fn handshake<W: Wire>(
    conn: &mut Conn<W>,
    token: &Token,
    ctx: &WsContext,
) -> Result<Option<Accepted>, HandshakeError> {
    let timeout = ctx.settings.handshake_timeout;
    let first = match tokio::time::timeout(timeout, read_first(conn)).await {
        Err(_) => return Err(HandshakeError::Timeout(timeout)),
        Ok(Err(ConnError::Protocol(ProtocolError::TooLarge))) => {
            return Err(HandshakeError::TooLarge(MAX_MESSAGE));
        }
        Ok(Err(ConnError::Protocol(e))) => {
            conn.close(e.close_code(), e.reason()).await;
            return Ok(None);
        }
        Ok(Err(ConnError::Io(e))) => {
            tracing::debug!(error = %e, "connection failed during the handshake");
            return Ok(None);
        }
        Ok(Ok(First::Closed)) => return Ok(None),
        Ok(Ok(First::Binary)) => return Err(HandshakeError::Binary),
        Ok(Ok(First::Text(t))) => t,
    };
    let (sub, unknown) =
        Subscription::parse_with_unknown(&first).map_err(HandshakeError::Invalid)?;
    if let Some(allowed) = &ctx.settings.allowed_events
        && let Some(t) = sub.event_types.iter().find(|t| !allowed.contains(t))
    {
        return Err(HandshakeError::EventTypeNotAllowed(t.clone()));
    }
    let limit = ctx.settings.auth_timeout;
    let checked = tokio::time::timeout(limit, ctx.auth.authenticate(token))
        .await
        .unwrap_or_else(|_| {
            Err(AuthError::Unavailable(format!(
                "token check took longer than {} s (auth.check_timeout_s)",
                limit.as_secs()
            )))
        });
    let identity = checked.map_err(|e| {
        ctx.metrics.auth_result(match e {
            AuthError::InvalidToken => "invalid_token",
            AuthError::Forbidden => "forbidden",
            AuthError::RateLimited => "rate_limited",
            AuthError::Unavailable(_) => "unavailable",
        });
        HandshakeError::Auth(e)
    })?;
    let mut org = sub.organization.clone();
    if !org.is_empty() && org != "*" && !identity.is_member_of(&org) {
        ctx.metrics.auth_result("not_member");
        return Err(HandshakeError::NotMember {
            login: identity.login,
            org,
        });
    }
    ctx.metrics.auth_result("ok");
    if org.is_empty()
        && identity.kind == IdentityKind::AppInstallation
        && let Some(only) = identity
            .orgs
            .names()
            .next()
            .filter(|_| identity.orgs.len() == 1)
    {
        org = only.to_owned();
    }

    let mut warnings = crate::subscription::unknown_field_warnings(&unknown);
    let subscription = Subscription {
        organization: org,
        username: identity.login,
        ..sub
    };
    let listed = if subscription.event_types.is_empty() {
        ctx.settings.allowed_events.as_deref()
    } else {
        Some(&subscription.event_types[..])
    };
    if subscription.matches_nothing() {
        warnings.push(
            "this subscription matches no event: it names no organization and no pull_requests, and user_events_only is false".to_owned(),
        );
    }
    let listed = listed.map(<[String]>::to_vec);
    let org = &subscription.organization;
    let lower = |s: &str| Box::<str>::from(s.to_ascii_lowercase());
    let filter = Filter {
        login: lower(&subscription.username),
        orgs: identity.orgs.clone(),
        organization: lower(org),
        event_types: subscription
            .event_types
            .iter()
            .map(|t| Box::from(t.as_str()))
            .collect(),
        pr_keys: subscription.pr_keys().into_boxed_slice(),
        user_events_only: subscription.user_events_only,
        can_see_private: identity.tier.can_see_private(),
    }
    .normalized();
    Ok(Some(Accepted {
        subscription,
        can_see_private: identity.tier.can_see_private(),
        listed,
        warnings,
        filter,
    }))
}

/// Waits for the client's first data message, answering pings meanwhile.
async fn read_first<W: Wire>(conn: &mut Conn<W>) -> Result<First, ConnError> {
    loop {
        if conn.prefix.is_none() {
            conn.readable().await.map_err(ConnError::Io)?;
        }
        let mut first = None;
        let mut pongs = Vec::new();
        let outcome = conn.read_now(|m| {
            match m {
                Message::Text(t) => first = Some(First::Text(t.to_owned())),
                Message::Binary(_) => first = Some(First::Binary),
                Message::Close(_) => first = Some(First::Closed),
                Message::Ping(p) => pongs.push(codec::pong_frame(p)),
                Message::Pong => {}
            }
            first.is_none()
        })?;
        for p in pongs {
            conn.queue(p);
        }
        conn.flush().await.map_err(ConnError::Io)?;
        if let Some(f) = first {
            return Ok(f);
        }
        if let ReadOutcome::Eof = outcome {
            return Ok(First::Closed);
        }
    }
}

/// How streaming ended.
struct End {
    reason: &'static str,
    /// Events taken from the outbox.
    frames: u64,
}

/// What reading from the client found.
enum Input {
    /// Messages handled (or none yet).
    More,
    /// The client sent a close frame with this code.
    Close(Option<u16>),
    /// The client closed the TCP connection.
    Eof,
}

/// What woke the streaming loop.
enum Wake {
    Readable(io::Result<()>),
    Writable(io::Result<()>),
    Drained(Drained),
    Timer,
}

/// Streams frames from the outbox to the socket and handles the client's
/// messages until the connection ends.
///
/// One `poll_fn` waits on everything (socket readiness through the stream's
/// own waker slots, the outbox, one timer) rather than `select!` over
/// readiness futures: an idle connection's task is several hundred bytes
/// smaller for it.
async fn stream_events<W: Wire>(
    conn: &mut Conn<W>,
    outbox: &Outbox,
    replay: &mut Option<Box<Replay>>,
    ctx: &WsContext,
    id: ClientId,
) -> End {
    let s = &ctx.settings;
    let mut frames = 0u64;
    let mut last_read = Instant::now();
    let mut next_ping = last_read + s.ping_interval;
    let mut ping_seq = 0u64;
    // Set once the server has queued its close frame: the connection then
    // ends when the client answers, or at this deadline.
    let mut closing: Option<Instant> = None;
    let mut reason = "closed by client";
    let sleep = tokio::time::sleep_until(next_ping);
    tokio::pin!(sleep);
    // Messages may have arrived together with the subscription.
    let mut input_ready = conn.decoder.has_partial();
    // Alternates which of reading and writing is looked at first, so that
    // a client flooding us cannot starve its own writes (nor the reverse).
    let mut read_first = true;
    let mut replay_batches = 0u32;

    loop {
        if input_ready {
            input_ready = false;
            match handle_input(conn, &mut last_read) {
                Ok(Input::More) => {}
                Ok(Input::Eof) => {
                    let why = if closing.is_some() {
                        reason
                    } else {
                        "client went away"
                    };
                    return End {
                        reason: why,
                        frames,
                    };
                }
                Ok(Input::Close(code)) => {
                    if closing.is_none() {
                        conn.queue(codec::close_frame(code.unwrap_or(1000), ""));
                        // Boxed, like the close below: rare paths must not
                        // grow every idle connection's task.
                        let _ = Box::pin(tokio::time::timeout(CLOSE_GRACE, conn.flush())).await;
                    }
                    return End { reason, frames };
                }
                Err(ConnError::Protocol(p)) => {
                    Box::pin(conn.close(p.close_code(), p.reason())).await;
                    return End {
                        reason: p.reason(),
                        frames,
                    };
                }
                Err(ConnError::Io(e)) => {
                    tracing::debug!(error = %e, "client connection failed");
                    return End {
                        reason: "i/o error",
                        frames,
                    };
                }
            }
        }
        // A replay goes first: live events wait in the outbox (under its
        // bound and the slow-client policy) until it is written, at the
        // pace the socket takes it.
        if conn.pending.is_empty()
            && closing.is_none()
            && let Some(r) = replay
        {
            if outbox.is_closing() || !r.fill(&mut conn.pending, MAX_IOVECS) {
                ctx.hub.count_replayed(r.replayed);
                tracing::info!(
                    client = id,
                    outcome = "resumed",
                    replayed = r.replayed,
                    candidates = r.candidates(),
                    complete = !outbox.is_closing(),
                    "resume replayed"
                );
                *replay = None;
            } else {
                frames += conn.pending.len() as u64;
                if conn.write_batch().is_err() {
                    return End {
                        reason: "write error",
                        frames,
                    };
                }
                // A long replay to a fast reader never waits on the
                // socket: give the runtime thread back now and then.
                replay_batches += 1;
                if replay_batches.is_multiple_of(16) {
                    Box::pin(tokio::task::yield_now()).await;
                }
                continue;
            }
        }
        let mut deadline = match closing {
            Some(d) => d,
            None => (last_read + s.read_timeout).min(next_ping),
        };
        if conn.writing() {
            deadline = deadline.min(conn.write_progress + s.write_timeout);
        }
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        read_first = !read_first;
        let wake = std::future::poll_fn(|cx| {
            let stream = &conn.stream;
            let writing = conn.writing();
            let read =
                |cx: &mut std::task::Context<'_>| stream.poll_read_ready(cx).map(Wake::Readable);
            let write = |cx: &mut std::task::Context<'_>| {
                if writing {
                    stream.poll_write_ready(cx).map(Wake::Writable)
                } else {
                    Poll::Pending
                }
            };
            let first = if read_first { read(cx) } else { write(cx) };
            if first.is_ready() {
                return first;
            }
            let second = if read_first { write(cx) } else { read(cx) };
            if second.is_ready() {
                return second;
            }
            if !writing
                && closing.is_none()
                && replay.is_none()
                && let Poll::Ready(d) = outbox.poll_drain(cx, &mut conn.pending)
            {
                return Poll::Ready(Wake::Drained(d));
            }
            sleep.as_mut().poll(cx).map(|()| Wake::Timer)
        })
        .await;
        match wake {
            Wake::Readable(r) => {
                if r.is_err() {
                    return End {
                        reason: "read error",
                        frames,
                    };
                }
                input_ready = true;
            }
            Wake::Writable(r) => {
                if r.is_err() || conn.write_now().is_err() {
                    return End {
                        reason: "write error",
                        frames,
                    };
                }
            }
            Wake::Drained(Drained::Frames) => {
                frames += conn.pending.len() as u64;
                if conn.write_batch().is_err() {
                    return End {
                        reason: "write error",
                        frames,
                    };
                }
            }
            Wake::Drained(Drained::Closed(why)) => {
                reason = why.text();
                conn.queue(codec::close_frame(why.code(), why.text()));
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            Wake::Timer => {
                let now = Instant::now();
                if closing.is_some_and(|d| now >= d) {
                    return End { reason, frames };
                }
                if conn.writing() && now >= conn.write_progress + s.write_timeout {
                    return End {
                        reason: "write timeout",
                        frames,
                    };
                }
                if closing.is_none() && now >= last_read + s.read_timeout {
                    // 1001 ("going away"), not 1000: clients reconnect on it.
                    reason = "read timeout";
                    let why = format!(
                        "read timeout: no message from the client within {} s",
                        s.read_timeout.as_secs()
                    );
                    conn.queue(codec::close_frame(1001, &why));
                    closing = Some(now + CLOSE_GRACE);
                } else if closing.is_none() && now >= next_ping {
                    // The JSON ping for sprinkler's clients, and a WebSocket
                    // ping that any client library answers by itself: its
                    // pong counts as activity, like any message.
                    ping_seq += 1;
                    conn.queue(messages::ping_frame(ping_seq));
                    conn.queue(codec::ping_frame(&ping_seq.to_be_bytes()));
                    next_ping += s.ping_interval;
                }
            }
        }
    }
}

/// Most replies (pongs) waiting to be written; a client that keeps pinging
/// but never reads is dropped rather than allowed to grow the queue.
const MAX_PENDING_FRAMES: usize = 4096;

/// Reads and handles what the client sent.
fn handle_input<W: Wire>(conn: &mut Conn<W>, last_read: &mut Instant) -> Result<Input, ConnError> {
    let mut replies: Vec<Bytes> = Vec::new();
    let mut close = None;
    let outcome = conn.read_now(|m| {
        *last_read = Instant::now();
        match m {
            Message::Text(t) => {
                if let Ok(msg) = serde_json::from_str::<ClientMessage>(t)
                    && msg.kind.as_deref() == Some("ping")
                {
                    replies.push(messages::pong_frame(msg.seq.as_ref()));
                }
                // pong, keepalive, heartbeat and anything else: accepted, ignored.
            }
            Message::Binary(_) | Message::Pong => {}
            Message::Ping(p) => replies.push(codec::pong_frame(p)),
            Message::Close(code) => {
                close = Some(code);
                return false;
            }
        }
        true
    })?;
    for r in replies {
        conn.queue(r);
    }
    if conn.pending.len() > MAX_PENDING_FRAMES {
        return Err(ConnError::Io(io::ErrorKind::OutOfMemory.into()));
    }
    if conn.writing() {
        conn.write_now().map_err(ConnError::Io)?;
    }
    Ok(match (close, outcome) {
        (Some(code), _) => Input::Close(code),
        (None, ReadOutcome::Eof) => Input::Eof,
        (None, ReadOutcome::Data) => Input::More,
    })
}
