//! A shard: one OS thread owning a slice of the clients and their index.
//!
//! Registration, removal and delivery for a client all happen here, in the
//! order the hub sent them, so the shard's state needs no lock. Delivery
//! pushes the event's shared frame into each matching client's outbox; it
//! never serializes or allocates per recipient.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use crossbeam_channel::Receiver;

use super::ClientId;
use super::filter::{Filter, Verdict};
use super::index::FamilyMaps;
use super::outbox::{CloseReason, Outbox, Outgoing, Push};
use crate::auth::OrgSet;
use crate::broker::SlowClientPolicy;
use crate::event::Event;

/// A client as registered with its shard.
pub(crate) struct Subscriber {
    /// Unique for the life of the hub.
    pub id: ClientId,
    /// What it receives.
    pub filter: Filter,
    /// Where its frames go.
    pub outbox: Arc<Outbox>,
}

/// What the hub tells a shard.
pub(crate) enum ShardMsg {
    Register(Box<Subscriber>),
    Unregister(ClientId),
    /// A recheck changed the client's organizations or tier.
    Access {
        id: ClientId,
        orgs: OrgSet,
        can_see_private: bool,
    },
    Event(Arc<Event>),
    /// Answered once every earlier message has been handled.
    Sync(tokio::sync::oneshot::Sender<()>),
    /// Close every client (after its queued frames) and stop the thread.
    Stop(CloseReason),
}

/// Counters a shard publishes; written only by its own thread, read at
/// scrape time, so they add no contention between shards.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    pub clients: AtomicUsize,
    pub index_keys: AtomicUsize,
    pub index_entries: AtomicUsize,
    pub events: AtomicU64,
    pub deliveries: AtomicU64,
    pub drops: AtomicU64,
    pub slow_closes: AtomicU64,
    pub unentitled_deliveries: AtomicU64,
}

/// Settings every shard shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShardSettings {
    pub slow_client: SlowClientPolicy,
    pub enforce_tiers: bool,
}

pub(crate) struct Shard {
    id: usize,
    /// Clients by slot; index entries hold slot numbers. Boxed as they
    /// arrive: a slot then costs a pointer, and the vector's spare capacity
    /// (up to half of it) holds no client-sized holes (hold-19k).
    slots: Vec<Option<Box<Subscriber>>>,
    free: Vec<u32>,
    by_id: AHashMap<ClientId, u32>,
    index: FamilyMaps<Vec<u32>>,
    counters: Arc<ShardCounters>,
    settings: ShardSettings,
    unentitled_warning: RateLimitedWarning,
    drop_warning: RateLimitedWarning,
    close_warning: RateLimitedWarning,
}

/// At most one warning of each kind per this interval per shard.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

impl Shard {
    pub fn new(id: usize, counters: Arc<ShardCounters>, settings: ShardSettings) -> Self {
        Self {
            id,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: AHashMap::new(),
            index: FamilyMaps::default(),
            counters,
            settings,
            unentitled_warning: RateLimitedWarning::default(),
            drop_warning: RateLimitedWarning::default(),
            close_warning: RateLimitedWarning::default(),
        }
    }

    /// Handles messages until told to stop or until the hub is gone.
    pub fn run(mut self, rx: Receiver<ShardMsg>) {
        while let Ok(msg) = rx.recv() {
            if !self.handle(msg) {
                break;
            }
        }
    }

    /// Handles one message; `false` means stop.
    pub fn handle(&mut self, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Register(sub) => self.register(sub),
            ShardMsg::Unregister(id) => self.unregister(id),
            ShardMsg::Access {
                id,
                orgs,
                can_see_private,
            } => self.update_access(id, orgs, can_see_private),
            ShardMsg::Event(e) => self.deliver(&e),
            ShardMsg::Sync(done) => {
                let _ = done.send(());
            }
            ShardMsg::Stop(reason) => {
                for sub in self.slots.iter().flatten() {
                    sub.outbox.close(reason, false);
                }
                return false;
            }
        }
        true
    }

    fn register(&mut self, sub: Box<Subscriber>) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        index(&mut self.index, &sub.filter, slot);
        self.by_id.insert(sub.id, slot);
        self.slots[slot as usize] = Some(sub);
        self.publish_sizes();
    }

    fn unregister(&mut self, id: ClientId) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        let sub = self.slots[slot as usize]
            .take()
            .expect("slot of a registered id");
        unindex(&mut self.index, &sub.filter, slot);
        self.free.push(slot);
        self.publish_sizes();
    }

    /// Judges the client's events by its rechecked organizations and tier,
    /// and indexes it by them (they are its keys under `*`).
    fn update_access(&mut self, id: ClientId, orgs: OrgSet, can_see_private: bool) {
        let Some(&slot) = self.by_id.get(&id) else {
            return;
        };
        let sub = self.slots[slot as usize]
            .as_mut()
            .expect("slot of a registered id");
        unindex(&mut self.index, &sub.filter, slot);
        sub.filter.orgs = orgs;
        sub.filter.can_see_private = can_see_private;
        index(&mut self.index, &sub.filter, slot);
        self.publish_sizes();
    }

    fn publish_sizes(&self) {
        self.counters.clients.store(self.by_id.len(), Relaxed);
        self.counters.index_keys.store(self.index.len(), Relaxed);
        self.counters
            .index_entries
            .store(self.index.total(Vec::len), Relaxed);
    }

    fn deliver(&mut self, event: &Arc<Event>) {
        let e: &Event = event;
        let (mut delivered, mut dropped, mut closed, mut unentitled) = (0u64, 0u64, 0u64, 0u64);
        let slots = &self.slots;
        let settings = self.settings;
        self.index.for_event(e, |candidates| {
            for &slot in candidates {
                let Some(sub) = slots[slot as usize].as_ref() else {
                    continue;
                };
                let verdict = sub.filter.judge(e, settings.enforce_tiers);
                if verdict == Verdict::Skip {
                    continue;
                }
                match sub
                    .outbox
                    .push(Outgoing::event(event, sub.filter.include_payload))
                {
                    Push::Queued => {
                        delivered += 1;
                        unentitled += (verdict == Verdict::DeliverUnentitled) as u64;
                    }
                    Push::Full => {
                        dropped += 1;
                        if settings.slow_client == SlowClientPolicy::Disconnect {
                            sub.outbox.close(CloseReason::SlowClient, true);
                            closed += 1;
                        }
                    }
                    Push::Closed => {}
                }
            }
        });
        let c = &self.counters;
        c.events.fetch_add(1, Relaxed);
        c.deliveries.fetch_add(delivered, Relaxed);
        c.drops.fetch_add(dropped, Relaxed);
        c.slow_closes.fetch_add(closed, Relaxed);
        c.unentitled_deliveries.fetch_add(unentitled, Relaxed);
        if let Some(n) = self.unentitled_warning.hit(unentitled) {
            tracing::warn!(
                shard = self.id,
                deliveries = n,
                "private-repository events delivered to clients whose tier may not see them (tiers.enforce = false)"
            );
        }
        if let Some(n) = self.drop_warning.hit(dropped - closed) {
            tracing::warn!(
                shard = self.id,
                dropped = n,
                "events dropped for slow clients whose queue was full (broker.slow_client = \"drop\")"
            );
        }
        if let Some(n) = self.close_warning.hit(closed) {
            tracing::warn!(
                shard = self.id,
                clients = n,
                "slow clients disconnected: queue full (broker.slow_client = \"disconnect\")"
            );
        }
        if let Some(routed) = e.routing().add(delivered, dropped) {
            crate::event::log_routed(e, routed);
        }
    }
}

/// Lists `slot` under each of its filter's index keys.
fn index(index: &mut FamilyMaps<Vec<u32>>, filter: &Filter, slot: u32) {
    if let Some((family, keys)) = filter.index_keys() {
        for k in keys {
            index.entry(family, k).push(slot);
        }
    }
}

/// Takes `slot` back out of each of its filter's index keys.
fn unindex(index: &mut FamilyMaps<Vec<u32>>, filter: &Filter, slot: u32) {
    let Some((family, keys)) = filter.index_keys() else {
        return;
    };
    for k in keys {
        index.update(family, k, |slots| {
            if let Some(i) = slots.iter().position(|&s| s == slot) {
                slots.swap_remove(i);
            }
            if slots.is_empty() {
                true
            } else {
                if slots.capacity() > 4 * slots.len() + 8 {
                    slots.shrink_to_fit();
                }
                false
            }
        });
    }
}

/// A warning logged at most once per [`WARN_INTERVAL`], carrying the count
/// of what happened since the last one.
#[derive(Debug, Default)]
struct RateLimitedWarning {
    last: Option<Instant>,
    pending: u64,
}

impl RateLimitedWarning {
    /// Records `n` occurrences; returns the count to log when a warning is due.
    fn hit(&mut self, n: u64) -> Option<u64> {
        if n == 0 {
            return None;
        }
        self.pending += n;
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}
