//! The body of an `/events` response: the confirmation, then each event
//! as it reaches the client's outbox (after a resume's replay), a comment
//! as keepalive, and an `error` event before a revoked client's end.
//!
//! hyper polls it whenever it can take more; the slow-client policy bounds
//! what waits in the outbox meanwhile, and the connection's write deadline
//! ends a client that stops reading.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::time::{Instant, Sleep};

use super::super::WsContext;
use super::super::access::Watching;
use super::super::codec;
use super::super::session::replay_ended;
use crate::broker::{ClientId, Drained, Live, Outbox, Outgoing, Registration, Replay};

/// Most frames taken from the replay at once.
const REPLAY_BATCH: usize = 64;

/// What a subscribed `/events` client holds until its response ends.
pub(crate) struct Subscribed {
    pub(crate) live: Live,
    pub(crate) access: Watching,
    pub(crate) login: Box<str>,
    pub(crate) org: Box<str>,
    pub(crate) peer: IpAddr,
}

/// An `/events` response body.
pub(crate) struct EventStream {
    ctx: Arc<WsContext>,
    /// Chunks ready to go, oldest first.
    ready: VecDeque<Bytes>,
    /// Nothing follows what is ready.
    ending: bool,
    /// `None` for a refused subscription (its error is all there is).
    client: Option<Client>,
}

/// A subscribed client's side of the stream.
struct Client {
    id: ClientId,
    epoch: Box<str>,
    outbox: Arc<Outbox>,
    replay: Option<Box<Replay>>,
    taken: VecDeque<Outgoing>,
    keepalive: Pin<Box<Sleep>>,
    /// Dropped with the stream: the hub forgets the client, its token is
    /// no longer checked, its connection slot is free.
    _registration: Registration,
    _access: Watching,
    _held: Box<dyn Send>,
    login: Box<str>,
    org: Box<str>,
    peer: IpAddr,
    started: Instant,
    events: u64,
    reason: &'static str,
}

impl EventStream {
    /// A stream of `first` (the confirmation) and then the client's events.
    pub(crate) fn new(
        ctx: Arc<WsContext>,
        first: Vec<u8>,
        sub: Subscribed,
        held: Box<dyn Send>,
    ) -> Self {
        let Subscribed {
            live,
            access,
            login,
            org,
            peer,
        } = sub;
        let keepalive = Box::pin(tokio::time::sleep(ctx.settings.ping_interval));
        let client = Client {
            id: live.id,
            epoch: Box::from(&*live.stream.epoch),
            outbox: live.outbox,
            replay: live.replay,
            taken: VecDeque::new(),
            keepalive,
            _registration: live.registration,
            _access: access,
            _held: held,
            login,
            org,
            peer,
            started: Instant::now(),
            events: 0,
            reason: "client went away",
        };
        Self {
            ctx,
            ready: VecDeque::from([named("subscription_confirmed", &first)]),
            ending: false,
            client: Some(client),
        }
    }

    /// A stream of one `error` event: a refused subscription.
    pub(crate) fn refused(ctx: Arc<WsContext>, error: &[u8]) -> Self {
        Self {
            ctx,
            ready: VecDeque::from([named("error", error)]),
            ending: true,
            client: None,
        }
    }

    /// Moves what is waiting (the replay first, then the outbox, then a
    /// due keepalive) into `ready`; `Pending` when there is nothing.
    fn refill(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(c) = self.client.as_mut() else {
            return Poll::Pending;
        };
        if let Some(r) = c.replay.as_mut() {
            if c.outbox.is_closing() || !r.fill(&mut c.taken, REPLAY_BATCH) {
                replay_ended(&self.ctx, c.id, r, &c.outbox);
                c.replay = None;
            } else {
                c.convert(&mut self.ready, &self.ctx);
                return Poll::Ready(());
            }
        }
        match c.outbox.poll_drain(cx, &mut c.taken) {
            Poll::Ready(Drained::Frames) => {
                c.convert(&mut self.ready, &self.ctx);
                return Poll::Ready(());
            }
            Poll::Ready(Drained::Closed(why)) => {
                c.reason = why.text();
                self.ending = true;
                return Poll::Ready(());
            }
            Poll::Pending => {}
        }
        if c.keepalive.as_mut().poll(cx).is_ready() {
            let next = Instant::now() + self.ctx.settings.ping_interval;
            c.keepalive.as_mut().reset(next);
            self.ready.push_back(Bytes::from_static(b": keepalive\n\n"));
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Client {
    /// Turns the frames taken from the replay or the outbox into chunks:
    /// each event with its `id:`, an error message (a revoked client's last
    /// frame) as an `error` event.
    fn convert(&mut self, ready: &mut VecDeque<Bytes>, ctx: &WsContext) {
        let now = std::time::Instant::now();
        for frame in self.taken.drain(..) {
            match &frame {
                // `/events` takes no include_payload: its clients get the
                // small event (a payload may hold newlines, which a `data:`
                // line cannot).
                Outgoing::Event(e) | Outgoing::Full(e) => {
                    let payload = e.payload();
                    let mut chunk = Vec::with_capacity(payload.len() + self.epoch.len() + 40);
                    write!(chunk, "id: {}:{}\ndata: ", self.epoch, e.seq())
                        .expect("writing to a Vec cannot fail");
                    chunk.extend_from_slice(payload);
                    chunk.extend_from_slice(b"\n\n");
                    ready.push_back(chunk.into());
                    ctx.metrics
                        .delivery_latency
                        .observe(now.saturating_duration_since(e.accepted_instant()));
                    self.events += 1;
                }
                Outgoing::Control(b) => {
                    if let Some(json) = codec::text_payload(b) {
                        ready.push_back(named("error", json));
                    }
                }
            }
        }
    }
}

/// `event: NAME` and `data: JSON`: a message that is not an event.
fn named(name: &str, json: &[u8]) -> Bytes {
    let mut chunk = Vec::with_capacity(json.len() + name.len() + 16);
    chunk.extend_from_slice(b"event: ");
    chunk.extend_from_slice(name.as_bytes());
    chunk.extend_from_slice(b"\ndata: ");
    chunk.extend_from_slice(json);
    chunk.extend_from_slice(b"\n\n");
    chunk.into()
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.ending {
                return Poll::Ready(None);
            }
            if self.refill(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ending && self.ready.is_empty()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let Some(c) = self.client.take() else {
            return;
        };
        if let Some(r) = &c.replay {
            self.ctx.hub.count_replayed(r.replayed);
        }
        tracing::info!(
            client = c.id,
            peer = %c.peer,
            login = %c.login,
            org = %c.org,
            duration_ms = c.started.elapsed().as_millis() as u64,
            events = c.events,
            drops = c.outbox.dropped(),
            reason = c.reason,
            transport = "events",
            "client disconnected"
        );
    }
}
