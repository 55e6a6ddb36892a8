//! The sharded event broker.
//!
//! Clients are hashed by id to N shard threads; each shard owns its clients,
//! their outboxes and an inverted index (org / PR key / user -> clients). The
//! [`Hub`] keeps, per index key, which shards hold subscribers, and sends an
//! event (over a crossbeam channel) only to those shards. Every event gets a
//! sequence number under the same lock that sends it, so every shard sees
//! events in acceptance order, and a client receives its events in order and
//! once. The hub also keeps a registry of its clients (what an embedder can
//! read or disconnect) and the replay window that lets a reconnecting client
//! resume (`replay`). It knows nothing of webhooks: intake hands it built
//! [`Event`]s.

#[doc(hidden)]
pub mod bench;
mod config;
pub(crate) mod filter;
mod index;
#[cfg(test)]
mod model_tests;
pub(crate) mod outbox;
pub(crate) mod replay;
mod shard;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use ahash::AHashMap;
use bytes::Bytes;
use crossbeam_channel::Sender;
use smallvec::SmallVec;

use crate::auth::OrgSet;
use crate::event::Event;
use crate::subscription::ResumeFrom;
use crate::subscription::Subscription;
pub use config::{BrokerConfig, ReplayConfig as ReplaySection, SlowClientPolicy};
use filter::Family;
pub(crate) use filter::Filter;
use index::FamilyMaps;
pub(crate) use outbox::{CloseReason, Drained, Outbox, Outgoing, Revocation};
use replay::ReplayWindow;
pub(crate) use replay::{Backfill, BackfillError, BackfillFuture, Backfilled, Replay};
pub use replay::{ReplayConfig, ResumeRefusal, StreamState};
pub(crate) use shard::Subscriber;
use shard::{Shard, ShardCounters, ShardMsg, ShardSettings};

/// A connected client's id, unique for the life of a hub.
pub type ClientId = u64;

/// How a hub is built.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Shard threads (at least 1, at most 256).
    pub shards: usize,
    /// Frames queued per client.
    pub client_queue: usize,
    /// What happens to a client whose queue is full.
    pub slow_client: SlowClientPolicy,
    /// Withhold private-repository events from clients whose tier may not
    /// see them (the default); `false` delivers them and counts each.
    pub enforce_tiers: bool,
    /// The window of recent events clients resume from.
    pub replay: ReplayConfig,
    /// The stream's epoch; `None`: a random one (a new history per start).
    pub epoch: Option<String>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            shards: 1,
            client_queue: 256,
            slow_client: SlowClientPolicy::Drop,
            enforce_tiers: true,
            replay: ReplayConfig::default(),
            epoch: None,
        }
    }
}

/// A fresh epoch: 64 random bits in hex.
fn random_epoch() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Most shards a hub can have.
pub const MAX_SHARDS: usize = 256;

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
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[ShardHandle]>,
    routing: Mutex<Routing>,
    next_id: AtomicU64,
    config: HubConfig,
    stopped: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    live_sessions: AtomicUsize,
    /// Shard threads still running.
    running: tokio::sync::watch::Sender<usize>,
    epoch: Arc<str>,
    /// Resumes by outcome: resumed, unknown_epoch, too_old.
    resumes: [AtomicU64; 3],
    /// Events written to clients by replays.
    replayed: AtomicU64,
}

struct ShardHandle {
    tx: Sender<ShardMsg>,
    counters: Arc<ShardCounters>,
}

/// Subscriber counts per shard for one index key.
#[derive(Debug, Default)]
struct ShardCounts(SmallVec<[(u16, u32); 2]>);

struct Routing {
    seq: u64,
    window: ReplayWindow,
    routes: FamilyMaps<ShardCounts>,
    taps: Vec<Sender<Arc<Event>>>,
    clients: AHashMap<ClientId, Registered>,
}

/// The hub's record of a registered client.
struct Registered {
    shard: u16,
    /// Its index keys, to take its routes back out.
    keys: Option<(Family, Box<[Box<str>]>)>,
    outbox: Arc<Outbox>,
    profile: Arc<ClientProfile>,
}

impl Registered {
    fn snapshot(&self, id: ClientId) -> Client {
        Client {
            id,
            shard: self.shard,
            closing: self.outbox.is_closing(),
            profile: self.profile.clone(),
        }
    }
}

/// What is known about a client beyond its filter, for [`Client`] and
/// for rechecks of its access.
#[derive(Debug)]
pub(crate) struct ClientProfile {
    /// The subscription as accepted (username filled in, org pinned).
    pub subscription: Subscription,
    /// Its tier may see private repositories.
    pub can_see_private: bool,
    /// The organizations its account belongs to, as last checked.
    pub orgs: OrgSet,
}

/// What a recheck of a client's access changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessUpdate {
    /// Its organizations and tier are as they were.
    Unchanged,
    /// It receives by its new organizations or tier from the next event on.
    Updated,
    /// It is not registered (any more).
    Gone,
}

/// What an embedder can read about a connected client: a snapshot.
#[derive(Debug, Clone)]
pub struct Client {
    id: ClientId,
    shard: u16,
    closing: bool,
    profile: Arc<ClientProfile>,
}

impl Client {
    /// The client's id (unique for the life of the hub).
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Its subscription, as accepted: `username` is the authenticated
    /// login, and an app installation that named no organization has its
    /// installation's.
    pub fn subscription(&self) -> &Subscription {
        &self.profile.subscription
    }

    /// Whether the client is being closed (disconnected, too slow, or the
    /// hub is stopping) and receives no further events.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether its tier may receive events of private repositories.
    pub fn can_see_private(&self) -> bool {
        self.profile.can_see_private
    }

    /// The shard it lives on.
    pub fn shard(&self) -> usize {
        self.shard as usize
    }
}

/// What became of a broadcast event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastReceipt {
    /// The event's sequence number.
    pub seq: u64,
    /// How many shards hold possible recipients (0: nobody is subscribed).
    pub shards: usize,
}

/// A snapshot of the broker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Registered clients, per shard.
    pub clients_per_shard: Vec<usize>,
    /// Registered clients.
    pub clients: usize,
    /// Index keys over all shards.
    pub index_keys: usize,
    /// Index entries (key, client) over all shards.
    pub index_entries: usize,
    /// Index keys in the hub's shard routing table.
    pub routes: usize,
    /// Events accepted (the last sequence number).
    pub events_accepted: u64,
    /// Events handled by shards (one event counts once per shard it reached).
    pub shard_events: u64,
    /// Frames queued to clients.
    pub deliveries: u64,
    /// Frames dropped because a client's queue was full.
    pub drops: u64,
    /// Clients closed because their queue was full (`disconnect` policy).
    pub slow_closes: u64,
    /// Private events delivered to clients whose tier may not see them.
    pub unentitled_deliveries: u64,
    /// WebSocket connection tasks alive (upgraded, not yet finished).
    pub live_sessions: usize,
    /// Messages (events, registrations, ...) waiting in the shards' channels.
    pub shard_queue: usize,
    /// Events in the replay window.
    pub window_events: usize,
    /// Bytes the replay window holds.
    pub window_bytes: usize,
    /// The oldest seq in the replay window (`events_accepted + 1` when empty).
    pub window_oldest: u64,
    /// Resumes that replayed what the client missed.
    pub resumes_resumed: u64,
    /// Resumes refused: the client's epoch is another stream's.
    pub resumes_unknown_epoch: u64,
    /// Resumes refused: the window no longer reaches back far enough.
    pub resumes_too_old: u64,
    /// Events written to clients by replays.
    pub events_replayed: u64,
}

/// What joining the hub gave a client.
pub(crate) struct Joined {
    /// Unregisters the client when dropped.
    pub registration: Registration,
    /// The stream when the client went live.
    pub stream: StreamState,
    /// With a resume request: the events it missed (before any filtering),
    /// or why they cannot be replayed.
    pub resume: Option<Missed>,
}

/// What the hub holds of the events a resuming client missed.
pub(crate) enum Missed {
    /// All of them.
    Held(replay::Snapshot),
    /// Only those after `floor`: the older ones are no longer held here
    /// (a cluster node fetches them from the stream).
    Partly { floor: u64, held: replay::Snapshot },
    /// None: the resume is refused.
    Refused(ResumeRefusal),
}

/// Why a client could not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// The hub is stopping.
    Stopped,
    /// `resume.after` is beyond the stream's last seq.
    ResumeAfterFuture { after: u64, last: u64 },
}

/// A client's place in the hub; dropping it unregisters the client, so no
/// index entry outlives its connection whatever path the connection ends by.
pub(crate) struct Registration {
    hub: Hub,
    id: ClientId,
    shard: u16,
}

/// Counts a live WebSocket task for [`HubStats::live_sessions`].
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

    fn state_of(&self, r: &Routing) -> StreamState {
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

    fn routing(&self) -> MutexGuard<'_, Routing> {
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

    fn shard_of(&self, id: ClientId) -> usize {
        let mixed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        (mixed % self.inner.shards.len() as u64) as usize
    }

    /// Registers a client: from now on it is offered every accepted event.
    /// With `resume`, also returns (decided in the same step, so that the
    /// boundary has no gap and no duplicate) the events after
    /// `resume.after` that it missed, or why they cannot be replayed.
    pub(crate) fn register(
        &self,
        sub: Subscriber,
        profile: ClientProfile,
        resume: Option<&ResumeFrom>,
    ) -> Result<Joined, JoinError> {
        let shard = self.shard_of(sub.id);
        let keys = sub
            .filter
            .index_keys()
            .map(|(family, keys)| (family, keys.to_vec().into_boxed_slice()));
        let id = sub.id;
        let mut r = self.routing();
        // Checked under the routing lock so that a client can never register
        // after `stop` has told the shards to close their clients.
        if self.inner.stopped.load(Relaxed) {
            return Err(JoinError::Stopped);
        }
        r.window.evict_expired(Instant::now());
        let missed = match resume {
            None => None,
            Some(from) if *from.epoch != *self.inner.epoch => {
                Some(Missed::Refused(ResumeRefusal::UnknownEpoch))
            }
            Some(from) if from.after > r.seq => {
                return Err(JoinError::ResumeAfterFuture {
                    after: from.after,
                    last: r.seq,
                });
            }
            Some(from) => Some(match r.window.held_after(from.after, r.seq) {
                None => Missed::Refused(ResumeRefusal::TooOld),
                Some(held) if from.after >= r.window.floor() => Missed::Held(held),
                Some(held) => Missed::Partly {
                    floor: r.window.floor(),
                    held,
                },
            }),
        };
        let stream = self.state_of(&r);
        if let Some((family, keys)) = &keys {
            add_routes(&mut r.routes, *family, keys, shard as u16);
        }
        r.clients.insert(
            id,
            Registered {
                shard: shard as u16,
                keys,
                outbox: sub.outbox.clone(),
                profile: Arc::new(profile),
            },
        );
        let _ = self.inner.shards[shard]
            .tx
            .send(ShardMsg::Register(Box::new(sub)));
        drop(r);
        Ok(Joined {
            registration: Registration {
                hub: self.clone(),
                id,
                shard: shard as u16,
            },
            stream,
            resume: missed,
        })
    }

    /// Counts a resume by its outcome.
    pub(crate) fn count_resume(&self, outcome: Result<(), ResumeRefusal>) {
        let i = match outcome {
            Ok(()) => 0,
            Err(ResumeRefusal::UnknownEpoch) => 1,
            Err(ResumeRefusal::TooOld) => 2,
        };
        self.inner.resumes[i].fetch_add(1, Relaxed);
    }

    /// Counts events written by a client's replay.
    pub(crate) fn count_replayed(&self, n: u64) {
        self.inner.replayed.fetch_add(n, Relaxed);
    }

    fn unregister(&self, reg: &Registration) {
        let mut r = self.routing();
        let Some(gone) = r.clients.remove(&reg.id) else {
            return;
        };
        if let Some((family, keys)) = &gone.keys {
            remove_routes(&mut r.routes, *family, keys, reg.shard);
        }
        let _ = self.inner.shards[reg.shard as usize]
            .tx
            .send(ShardMsg::Unregister(reg.id));
    }

    /// Applies a recheck of a client's account: the organizations it
    /// belongs to and whether its tier may see private repositories now.
    /// A client subscribed to every organization of its account (`*`) is
    /// routed by the new list. Ordered with the events like everything the
    /// hub sends its shards: every event accepted after the call is judged
    /// with the new values.
    pub(crate) fn update_access(
        &self,
        id: ClientId,
        orgs: &OrgSet,
        can_see_private: bool,
    ) -> AccessUpdate {
        let mut r = self.routing();
        let Routing {
            clients, routes, ..
        } = &mut *r;
        let Some(client) = clients.get_mut(&id) else {
            return AccessUpdate::Gone;
        };
        let old = &client.profile;
        if old.orgs == *orgs && old.can_see_private == can_see_private {
            return AccessUpdate::Unchanged;
        }
        let subscription = old.subscription.clone();
        // Subscribed to every organization of the account: routed by them.
        if let Some((Family::Org, keys)) = &mut client.keys
            && subscription.organization == "*"
        {
            let new_keys: Box<[Box<str>]> = orgs.lowercase().into();
            remove_routes(routes, Family::Org, keys, client.shard);
            add_routes(routes, Family::Org, &new_keys, client.shard);
            *keys = new_keys;
        }
        client.profile = Arc::new(ClientProfile {
            subscription,
            can_see_private,
            orgs: orgs.clone(),
        });
        let _ = self.inner.shards[client.shard as usize]
            .tx
            .send(ShardMsg::Access {
                id,
                orgs: orgs.clone(),
                can_see_private,
            });
        AccessUpdate::Updated
    }

    /// Closes a client whose access a recheck refused: its queued events
    /// are discarded, it gets `farewell` (the error message) and a close
    /// frame 1008 whose reason is `why`'s error code. Returns whether such
    /// a client was connected.
    pub(crate) fn revoke(&self, id: ClientId, why: Revocation, farewell: Bytes) -> bool {
        let outbox = self.routing().clients.get(&id).map(|c| c.outbox.clone());
        outbox.is_some_and(|o| {
            o.close_with(CloseReason::Revoked(why), Outgoing::control(farewell));
            true
        })
    }

    /// A snapshot of one client, if it is connected.
    pub fn client(&self, id: ClientId) -> Option<Client> {
        self.routing().clients.get(&id).map(|c| c.snapshot(id))
    }

    /// Snapshots of every connected client, in no particular order.
    pub fn clients(&self) -> Vec<Client> {
        self.routing()
            .clients
            .iter()
            .map(|(id, c)| c.snapshot(*id))
            .collect()
    }

    /// Subscribed clients now.
    pub fn client_count(&self) -> usize {
        self.routing().clients.len()
    }

    /// Closes a client: it gets what is already queued for it, then a close
    /// frame 1000, and is unregistered when its connection ends. Returns
    /// whether such a client was connected.
    pub fn disconnect(&self, id: ClientId) -> bool {
        let outbox = self.routing().clients.get(&id).map(|c| c.outbox.clone());
        match outbox {
            Some(o) => {
                o.close(CloseReason::Disconnected, false);
                true
            }
            None => false,
        }
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

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let mut s = {
            let mut r = self.routing();
            r.window.evict_expired(Instant::now());
            HubStats {
                events_accepted: r.seq,
                routes: r.routes.len(),
                window_events: r.window.len(),
                window_bytes: r.window.bytes(),
                window_oldest: r.window.oldest(r.seq),
                ..HubStats::default()
            }
        };
        s.live_sessions = self.inner.live_sessions.load(Relaxed);
        let [resumed, unknown_epoch, too_old] = &self.inner.resumes;
        s.resumes_resumed = resumed.load(Relaxed);
        s.resumes_unknown_epoch = unknown_epoch.load(Relaxed);
        s.resumes_too_old = too_old.load(Relaxed);
        s.events_replayed = self.inner.replayed.load(Relaxed);
        for shard in self.inner.shards.iter() {
            s.shard_queue += shard.tx.len();
            let c = &shard.counters;
            let clients = c.clients.load(Relaxed);
            s.clients_per_shard.push(clients);
            s.clients += clients;
            s.index_keys += c.index_keys.load(Relaxed);
            s.index_entries += c.index_entries.load(Relaxed);
            s.shard_events += c.events.load(Relaxed);
            s.deliveries += c.deliveries.load(Relaxed);
            s.drops += c.drops.load(Relaxed);
            s.slow_closes += c.slow_closes.load(Relaxed);
            s.unentitled_deliveries += c.unentitled_deliveries.load(Relaxed);
        }
        s
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
    /// [`HubStats::live_sessions`]).
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

/// Counts a client of `shard` under each of `keys`.
fn add_routes(routes: &mut FamilyMaps<ShardCounts>, family: Family, keys: &[Box<str>], shard: u16) {
    for k in keys {
        let counts = &mut routes.entry(family, k).0;
        match counts.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, n)) => *n += 1,
            None => counts.push((shard, 1)),
        }
    }
}

/// Takes a client of `shard` back out of each of `keys`.
fn remove_routes(
    routes: &mut FamilyMaps<ShardCounts>,
    family: Family,
    keys: &[Box<str>],
    shard: u16,
) {
    for k in keys {
        routes.update(family, k, |counts| {
            if let Some(i) = counts.0.iter().position(|(s, _)| *s == shard) {
                counts.0[i].1 -= 1;
                if counts.0[i].1 == 0 {
                    counts.0.swap_remove(i);
                }
            }
            counts.0.is_empty()
        });
    }
}

impl Registration {
    /// The shard the client lives on.
    pub fn shard(&self) -> u16 {
        self.shard
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self);
    }
}

/// A set of shard numbers below [`MAX_SHARDS`].
#[derive(Debug, Default, Clone, Copy)]
struct ShardSet([u64; MAX_SHARDS / 64]);

impl ShardSet {
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParts;
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

    #[test]
    fn shard_set() {
        let mut s = ShardSet::default();
        for i in [0, 63, 64, 200, 255, 64] {
            s.insert(i);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 63, 64, 200, 255]);
        assert_eq!(s.len(), 5);
    }
}
