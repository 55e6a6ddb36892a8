//! The hub: sequence numbers, routing of each event to the shards that hold
//! possible recipients, and the shard threads' life (start, sync, stop).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use ahash::AHashMap;
use crossbeam_channel::Sender;

use super::clients::Routing;
use super::index::FamilyMaps;
use super::outbox::CloseReason;
use super::replay::{ReplayWindow, StreamState};
use super::routes::ShardSet;
use super::shard::{Shard, ShardCounters, ShardMsg, ShardSettings};
use super::{ClientId, HubConfig, MAX_SHARDS};
use crate::event::Event;

/// The broker: takes events and routes each to the clients whose
/// subscription matches; keeps the registry of its clients.
///
/// Cheap to clone (every clone is the same hub) and safe to use from any
/// thread, inside or outside a tokio runtime, except where a method says
/// otherwise. Clients are registered by the WebSocket endpoint
/// ([`WsEndpoint`](crate::WsEndpoint)).
///
/// Ordering: every accepted event gets the next sequence number, and each
/// client receives the events that match it exactly once, in sequence
/// order (unless its queue overflows: see
/// [`HubConfig::slow_client`]). Concurrent `broadcast` calls are ordered by
/// the hub; one caller's events keep its order.
#[derive(Clone)]
pub struct Hub {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) shards: Box<[ShardHandle]>,
    routing: Mutex<Routing>,
    next_id: AtomicU64,
    config: HubConfig,
    pub(super) stopped: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub(super) live_sessions: AtomicUsize,
    /// Shard threads still running.
    running: tokio::sync::watch::Sender<usize>,
    pub(super) epoch: Arc<str>,
    /// Resumes by outcome: resumed, unknown_epoch, too_old.
    pub(super) resumes: [AtomicU64; 3],
    /// Events written to clients by replays.
    pub(super) replayed: AtomicU64,
}

pub(super) struct ShardHandle {
    pub(super) tx: Sender<ShardMsg>,
    pub(super) counters: Arc<ShardCounters>,
}

/// What became of a broadcast event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastReceipt {
    /// The event's sequence number.
    pub seq: u64,
    /// How many shards hold possible recipients (0: nobody is subscribed).
    pub shards: usize,
}

/// Counts a live WebSocket task for [`HubStats::live_sessions`](super::HubStats::live_sessions).
pub(crate) struct SessionGuard(Hub);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.inner.live_sessions.fetch_sub(1, Relaxed);
    }
}

impl Hub {
    /// Starts a hub and its `config.shards` shard threads (OS threads, not
    /// runtime tasks). Fails only if a thread cannot be spawned.
    pub fn start(config: HubConfig) -> std::io::Result<Hub> {
        let n = config.shards.clamp(1, MAX_SHARDS);
        let settings = ShardSettings {
            slow_client: config.slow_client,
            enforce_tiers: config.enforce_tiers,
        };
        let mut shards = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        let (running, _) = tokio::sync::watch::channel(n);
        for id in 0..n {
            let (tx, rx) = crossbeam_channel::unbounded();
            let counters = Arc::new(ShardCounters::default());
            let shard = Shard::new(id, counters.clone(), settings);
            let running = running.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hookfan-shard-{id}"))
                    .spawn(move || {
                        shard.run(rx);
                        running.send_modify(|n| *n -= 1);
                    })?,
            );
            shards.push(ShardHandle { tx, counters });
        }
        let epoch: Arc<str> = config.epoch.clone().unwrap_or_else(random_epoch).into();
        Ok(Hub {
            inner: Arc::new(Inner {
                shards: shards.into_boxed_slice(),
                routing: Mutex::new(Routing {
                    seq: 0,
                    window: ReplayWindow::new(config.replay),
                    routes: FamilyMaps::default(),
                    taps: Vec::new(),
                    clients: AHashMap::new(),
                }),
                next_id: AtomicU64::new(1),
                config: HubConfig {
                    shards: n,
                    ..config
                },
                stopped: AtomicBool::new(false),
                threads: Mutex::new(threads),
                live_sessions: AtomicUsize::new(0),
                running,
                epoch,
                resumes: Default::default(),
                replayed: AtomicU64::new(0),
            }),
        })
    }

    /// The epoch: the name of this hub's event history (see
    /// [`HubConfig::epoch`]).
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// The stream now: epoch, last seq, and the oldest seq a client can
    /// still resume from.
    pub fn stream_state(&self) -> StreamState {
        let mut r = self.routing();
        r.window.evict_expired(Instant::now());
        self.state_of(&r)
    }

    pub(super) fn state_of(&self, r: &Routing) -> StreamState {
        StreamState {
            epoch: self.inner.epoch.clone(),
            seq: r.seq,
            oldest: r.window.oldest(r.seq),
        }
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub(super) fn routing(&self) -> MutexGuard<'_, Routing> {
        // Routing state is updated in single steps that cannot be left half
        // done by a panic elsewhere; keep serving.
        self.inner.routing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Assigns the event its sequence number and sends it to the shards that
    /// hold possible recipients. Never blocks on clients: it returns once
    /// the event is handed to the shards, before anyone received it.
    pub fn broadcast(&self, event: Event) -> BroadcastReceipt {
        let r = self.routing();
        let seq = r.seq + 1;
        self.broadcast_locked(r, event, seq)
    }

    /// Broadcasts an event whose seq was assigned elsewhere (a cluster's
    /// stream); `None` when `seq` is not past the last one (already seen).
    pub(crate) fn broadcast_at(&self, event: Event, seq: u64) -> Option<BroadcastReceipt> {
        let r = self.routing();
        (seq > r.seq).then(|| self.broadcast_locked(r, event, seq))
    }

    /// The stream moved past `seq` without an event for clients (a message
    /// this node skips); the window still holds everything above its floor.
    pub(crate) fn skip_to(&self, seq: u64) {
        let mut r = self.routing();
        r.seq = r.seq.max(seq);
    }

    /// The stream continues after `seq`, and nothing before it is held
    /// here: a cluster node's start, or a stream that dropped messages this
    /// node never consumed. A resume from before goes to the stream.
    pub(crate) fn restart_at(&self, seq: u64) {
        let mut r = self.routing();
        r.seq = r.seq.max(seq);
        let at = r.seq;
        r.window.restart_at(at);
    }

    fn broadcast_locked(
        &self,
        mut r: MutexGuard<'_, Routing>,
        mut event: Event,
        seq: u64,
    ) -> BroadcastReceipt {
        r.seq = seq;
        event.set_seq(seq);
        let event = Arc::new(event);
        r.window.push(&event);
        let mut set = ShardSet::default();
        r.routes.for_event(&event, |counts| {
            for &(shard, _) in &counts.0 {
                set.insert(shard as usize);
            }
        });
        let shards = set.len();
        event.routing().expect(shards as u32);
        for shard in set.iter() {
            let _ = self.inner.shards[shard]
                .tx
                .send(ShardMsg::Event(event.clone()));
        }
        r.taps.retain(|t| t.send(event.clone()).is_ok());
        drop(r);
        if shards == 0 {
            // No shard will report it; logged outside the lock.
            let nobody = crate::event::Routed {
                shards: 0,
                matched: 0,
                dropped: 0,
            };
            crate::event::log_routed(&event, nobody);
        }
        BroadcastReceipt { seq, shards }
    }

    /// A channel receiving every event the hub accepts, in order, from now
    /// on (for observers such as tests or a replication link). Dropping the
    /// receiver ends the tap.
    pub fn tap(&self) -> crossbeam_channel::Receiver<Arc<Event>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.routing().taps.push(tx);
        rx
    }

    /// A fresh client id.
    pub(crate) fn next_client_id(&self) -> ClientId {
        self.inner.next_id.fetch_add(1, Relaxed)
    }

    pub(super) fn shard_of(&self, id: ClientId) -> usize {
        let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        (mixed % self.inner.shards.len() as u64) as usize
    }

    /// Counts a WebSocket task alive until the guard is dropped.
    pub(crate) fn track_session(&self) -> SessionGuard {
        self.inner.live_sessions.fetch_add(1, Relaxed);
        SessionGuard(self.clone())
    }

    /// Waits until every shard has handled everything sent to it before this
    /// call (so that [`Hub::stats`] reflects it).
    pub async fn sync(&self) {
        let mut waits = Vec::with_capacity(self.inner.shards.len());
        for s in self.inner.shards.iter() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if s.tx.send(ShardMsg::Sync(tx)).is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }

    /// Whether [`Hub::stop`] has been called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Relaxed)
    }

    /// Stops taking clients and tells every shard to close its clients (each
    /// gets its queued frames, then a close frame 1001) and to end. Returns
    /// at once; see [`Hub::join`].
    pub fn stop(&self) {
        let _r = self.routing();
        if self.inner.stopped.swap(true, Relaxed) {
            return;
        }
        for s in self.inner.shards.iter() {
            let _ = s.tx.send(ShardMsg::Stop(CloseReason::Shutdown));
        }
    }

    /// Waits for the shard threads to end (after [`Hub::stop`]), without
    /// blocking a runtime thread. Clients' connections end on their own
    /// once they have written their last frames (see
    /// [`HubStats::live_sessions`](super::HubStats::live_sessions)).
    pub async fn stopped(&self) {
        let mut rx = self.inner.running.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Waits for the shard threads to end (after [`Hub::stop`]). Blocking:
    /// not for a runtime thread (see [`Hub::stopped`]).
    pub fn join(&self) {
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A fresh epoch: 64 random bits in hex.
fn random_epoch() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::super::shard::Subscriber;
    use super::*;
    use crate::broker::{
        ClientProfile, Drained, Filter, JoinError, Outbox, Outgoing, Registration,
    };
    use crate::event::EventParts;
    use crate::subscription::Subscription;
    use std::collections::VecDeque;
    use std::task::{Context, Poll, Waker};

    fn hub(shards: usize) -> Hub {
        Hub::start(HubConfig {
            shards,
            client_queue: 16,
            ..HubConfig::default()
        })
        .unwrap()
    }

    fn org_client(hub: &Hub, org: &str) -> (Registration, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(16));
        let filter = Filter {
            login: "u".into(),
            orgs: crate::auth::OrgSet::new([org]),
            organization: org.into(),
            can_see_private: true,
            ..Filter::default()
        }
        .normalized();
        let reg = hub
            .register(
                Subscriber {
                    id: hub.next_client_id(),
                    filter,
                    outbox: outbox.clone(),
                },
                profile(),
                None,
            )
            .unwrap()
            .registration;
        (reg, outbox)
    }

    fn profile() -> ClientProfile {
        ClientProfile {
            subscription: Subscription::default(),
            can_see_private: true,
            orgs: crate::auth::OrgSet::default(),
        }
    }

    fn event(org: &str) -> Event {
        Event::new(EventParts {
            kind: "pull_request".into(),
            url: "https://github.com/o/r/pull/1".into(),
            org: Some(org.into()),
            ..EventParts::default()
        })
    }

    fn drain(o: &Outbox) -> Vec<Outgoing> {
        let mut out = VecDeque::new();
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(Drained::Frames) = o.poll_drain(&mut cx, &mut out) {}
        out.into()
    }

    #[tokio::test]
    async fn events_reach_only_shards_with_subscribers() {
        let hub = hub(8);
        let (_a, a) = org_client(&hub, "acme");
        let (_b, b) = org_client(&hub, "zeta");
        let receipt = hub.broadcast(event("acme"));
        assert_eq!(receipt, BroadcastReceipt { seq: 1, shards: 1 });
        assert_eq!(hub.broadcast(event("nobody")).shards, 0);
        hub.sync().await;
        assert_eq!(drain(&a).len(), 1);
        assert!(drain(&b).is_empty());
        let s = hub.stats();
        assert_eq!(s.shard_events, 1, "only one shard saw an event");
        assert_eq!(s.deliveries, 1);
        assert_eq!(s.events_accepted, 2);
    }

    #[tokio::test]
    async fn dropping_a_registration_clears_every_trace() {
        let hub = hub(4);
        let regs: Vec<_> = (0..50)
            .map(|i| org_client(&hub, &format!("org{}", i % 5)))
            .collect();
        hub.sync().await;
        let s = hub.stats();
        assert_eq!(
            (s.clients, s.index_keys, s.index_entries),
            (50, s.index_keys, 50)
        );
        assert_eq!(s.routes, 5);
        drop(regs);
        hub.sync().await;
        let s = hub.stats();
        assert_eq!(
            (s.clients, s.index_keys, s.index_entries, s.routes),
            (0, 0, 0, 0)
        );
    }

    #[tokio::test]
    async fn stop_closes_clients_after_their_frames_and_refuses_new_ones() {
        let hub = hub(2);
        let (_reg, o) = org_client(&hub, "acme");
        hub.broadcast(event("acme"));
        hub.stop();
        hub.join();
        let mut out = VecDeque::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Frames)
        );
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Closed(CloseReason::Shutdown))
        );
        let outbox = Arc::new(Outbox::new(1));
        let refused = hub.register(
            Subscriber {
                id: hub.next_client_id(),
                filter: Filter::default(),
                outbox,
            },
            profile(),
            None,
        );
        assert!(matches!(refused, Err(JoinError::Stopped)));
    }
}
