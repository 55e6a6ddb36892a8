//! One WebSocket connection after the upgrade: the handshake (subscription,
//! token check, confirmation), then streaming until either side closes.
//!
//! A session is a single task that owns its socket and is the only writer to
//! it. It waits on the socket, its outbox and one timer; frames queued by the
//! shard while it was busy are written together in one vectored write.

mod conn;
mod handshake;
mod stream;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::WsContext;
use super::access::Watching;
use super::codec;
use super::messages::{self, ErrorCode, HandshakeError};
use super::wire::Wire;
use crate::auth::Token;
use crate::broker::{ClientId, ClientProfile, Live, Outbox, Registration, Replay};
use crate::subscription::ResumeFrom;
use conn::Conn;
use handshake::handshake;
pub(crate) use handshake::{Accepted, check};
pub(crate) use stream::replay_ended;
use stream::stream_events;

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
    // The join stays in this task's own state, as it did before the join
    // moved to the broker: a larger box here left idle connections holding
    // more memory (hold-19k).
    let Some(accepted) = Box::pin(accept(&mut conn, &token, peer, &ctx)).await else {
        return;
    };
    let Some((live, said)) = join(&mut conn, accepted, peer, &ctx).await else {
        return;
    };
    // Queued on the connection itself: it is written before anything is
    // taken from the outbox or the replay, so it precedes every event.
    conn.queue(codec::text_frame(&said.message(&live)).0);
    let access = subscribed(&ctx, token, peer, &live, &said);
    let Live {
        id,
        outbox,
        registration,
        replay,
        ..
    } = live;
    let Confirmation { login, org, .. } = said;
    let shard = registration.shard();
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

/// The handshake: the accepted subscription, or `None` when the client
/// went away or was refused (already answered).
async fn accept<W: Wire>(
    conn: &mut Conn<W>,
    token: &Token,
    peer: IpAddr,
    ctx: &WsContext,
) -> Option<Accepted> {
    match handshake(conn, token, ctx).await {
        Ok(Some(a)) => Some(a),
        Ok(None) => {
            ctx.metrics.handshake("abandoned");
            None
        }
        Err(e) => {
            answer_on(conn, refused_check(ctx, token, peer, e)).await;
            None
        }
    }
}

/// Counts, logs and watches a client that just joined: its token is
/// checked again from now on, as long as the returned watch is kept.
pub(crate) fn subscribed(
    ctx: &Arc<WsContext>,
    token: Token,
    peer: IpAddr,
    live: &Live,
    said: &Confirmation,
) -> Watching {
    ctx.metrics.handshake("confirmed");
    let (id, stream) = (live.id, &live.stream);
    let (login, org) = (&said.login, &said.org);
    let shard = live.registration.shard();
    tracing::info!(client = id, %peer, %login, %org, shard, seq = stream.seq, "client subscribed");
    if let (Some(from), Some(Err(refusal))) = (&said.resume, live.resume) {
        tracing::info!(
            client = id, %login, outcome = refusal.as_str(), after = from.after,
            oldest = stream.oldest, seq = stream.seq,
            "resume refused: the client may have missed events"
        );
    }
    ctx.access.watch(ctx, token, id)
}

/// Joins the hub with the accepted subscription (and its resume position):
/// what the session streams, or `None` when the hub refused it (already
/// answered).
async fn join<W: Wire>(
    conn: &mut Conn<W>,
    accepted: Accepted,
    peer: IpAddr,
    ctx: &WsContext,
) -> Option<(Live, Confirmation)> {
    match join_hub(accepted, peer, ctx).await {
        Ok(joined) => Some(joined),
        Err(answer) => {
            answer_on(conn, answer).await;
            None
        }
    }
}

/// Joins the hub with the accepted subscription: what the client streams,
/// or the answer to a refusal (logged and counted).
pub(crate) async fn join_hub(
    accepted: Accepted,
    peer: IpAddr,
    ctx: &WsContext,
) -> Result<(Live, Confirmation), Answer> {
    // Fields moved out one by one, not destructured into more locals:
    // this future holds its locals across the join's awaits.
    let said = Confirmation {
        login: accepted.subscription.username.clone(),
        org: accepted.subscription.organization.clone(),
        resume: accepted.subscription.resume.clone(),
        listed: accepted.listed,
        warnings: accepted.warnings,
    };
    let backfill = ctx.backfill.as_deref();
    let profile = ClientProfile {
        orgs: accepted.filter.orgs.clone(),
        subscription: accepted.subscription,
        can_see_private: accepted.can_see_private,
    };
    let resume = said.resume.as_ref();
    match ctx
        .hub
        .join_client(profile, accepted.filter, resume, backfill)
        .await
    {
        Ok(live) => Ok((live, said)),
        Err(e) => {
            let log = |code: &str, detail: &str| {
                tracing::info!(%peer, login = %said.login, error = code, detail = %detail, "subscription refused");
            };
            Err(refused(ctx, e.into(), log))
        }
    }
}

/// What the confirmation says of an accepted subscription, besides the
/// stream and the resume's outcome.
pub(crate) struct Confirmation {
    login: String,
    org: String,
    resume: Option<ResumeFrom>,
    /// The event types it lists.
    listed: Option<Vec<String>>,
    warnings: Vec<String>,
}

impl Confirmation {
    /// The client's login and the organization it subscribed to.
    pub(crate) fn names(&self) -> (&str, &str) {
        (&self.login, &self.org)
    }

    /// The `subscription_confirmed` message (JSON) for `live`.
    pub(crate) fn message(&self, live: &Live) -> Vec<u8> {
        messages::confirmation_json(&messages::Confirmed {
            organization: &self.org,
            username: &self.login,
            event_types: self.listed.as_deref(),
            stream: &live.stream,
            resume: live.resume,
            warnings: &self.warnings,
        })
    }
}

/// A refused subscription's error message and close code.
pub(crate) struct Answer {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) close: u16,
}

/// Counts and logs a refused subscription (`log` says who was refused);
/// returns what to answer.
fn refused(ctx: &WsContext, refusal: HandshakeError, log: impl FnOnce(&str, &str)) -> Answer {
    ctx.metrics.handshake(refusal.outcome());
    let (code, message, close) = refusal.answer();
    log(code.as_str(), &message);
    Answer {
        code,
        message,
        close,
    }
}

/// [`refused`] for a failed handshake, counting a rejected token against
/// the client's address.
pub(crate) fn refused_check(
    ctx: &WsContext,
    token: &Token,
    peer: IpAddr,
    e: HandshakeError,
) -> Answer {
    if e.rejects_token() {
        ctx.failed_checks.record(crate::limits::client_key(peer));
    }
    // Logged with the token's short hash, never the token.
    let token = token.fingerprint();
    let log = |code: &str, detail: &str| {
        tracing::info!(%peer, %token, error = code, detail = %detail, "subscription refused");
    };
    refused(ctx, e, log)
}

/// Sends a refusal's error message, and closes.
async fn answer_on<W: Wire>(conn: &mut Conn<W>, answer: Answer) {
    conn.queue(messages::error_frame(answer.code, &answer.message));
    conn.close(answer.close, answer.code.as_str()).await;
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
