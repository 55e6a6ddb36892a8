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
use super::messages::{self, HandshakeError};
use super::wire::Wire;
use crate::auth::Token;
use crate::broker::{ClientId, ClientProfile, Live, Outbox, Registration, Replay};
use crate::subscription::ResumeFrom;
use conn::Conn;
use handshake::{Accepted, handshake};
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
    conn.queue(messages::confirmation_frame(&messages::Confirmed {
        organization: &said.org,
        username: &said.login,
        event_types: said.listed.as_deref(),
        stream: &live.stream,
        resume: live.resume,
        warnings: &said.warnings,
    }));
    ctx.metrics.handshake("confirmed");
    let Live {
        id,
        outbox,
        registration,
        stream,
        replay,
        resume: outcome,
    } = live;
    let Confirmation {
        login, org, resume, ..
    } = said;
    let shard = registration.shard();
    let access = ctx.access.watch(&ctx, token, id);
    tracing::info!(client = id, %peer, %login, %org, shard, seq = stream.seq, "client subscribed");
    if let (Some(from), Some(Err(refusal))) = (&resume, outcome) {
        tracing::info!(
            client = id, %login, outcome = refusal.as_str(), after = from.after,
            oldest = stream.oldest, seq = stream.seq,
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
            refuse_handshake(conn, ctx, token, peer, e).await;
            None
        }
    }
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
        Ok(live) => Some((live, said)),
        Err(e) => {
            let log = |code: &str, detail: &str| {
                tracing::info!(%peer, login = %said.login, error = code, detail = %detail, "subscription refused");
            };
            refuse(conn, ctx, e.into(), log).await;
            None
        }
    }
}

/// What the confirmation says of an accepted subscription, besides the
/// stream and the resume's outcome.
struct Confirmation {
    login: String,
    org: String,
    resume: Option<ResumeFrom>,
    /// The event types it lists.
    listed: Option<Vec<String>>,
    warnings: Vec<String>,
}

/// Answers a failed handshake, counting a rejected token against the
/// client's address.
async fn refuse_handshake<W: Wire>(
    conn: &mut Conn<W>,
    ctx: &WsContext,
    token: &Token,
    peer: IpAddr,
    e: HandshakeError,
) {
    if e.rejects_token() {
        ctx.failed_checks.record(crate::limits::client_key(peer));
    }
    // Logged with the token's short hash, never the token.
    let token = token.fingerprint();
    let log = |code: &str, detail: &str| {
        tracing::info!(%peer, %token, error = code, detail = %detail, "subscription refused");
    };
    refuse(conn, ctx, e, log).await;
}

/// Answers a subscription that is refused (by the handshake or the hub)
/// with its error message, and closes. `log` says who was refused.
async fn refuse<W: Wire>(
    conn: &mut Conn<W>,
    ctx: &WsContext,
    refusal: HandshakeError,
    log: impl FnOnce(&str, &str),
) {
    ctx.metrics.handshake(refusal.outcome());
    let (code, message, close) = refusal.answer();
    log(code.as_str(), &message);
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
