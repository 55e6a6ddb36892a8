//! Hooks for the criterion benchmarks in `benches/`: one shard's delivery
//! path driven directly, without threads or sockets. Not a stable API.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::Filter;
use super::outbox::{Drained, Outbox};
use super::shard::{Shard, ShardCounters, ShardMsg, ShardSettings, Subscriber};
use crate::config::SlowClientPolicy;
use crate::event::Event;

/// A shard and the outboxes of its subscribers.
pub struct ShardBench {
    shard: Shard,
    counters: Arc<ShardCounters>,
    outboxes: Vec<Arc<Outbox>>,
    next_id: u64,
    queue: usize,
}

impl ShardBench {
    /// An empty shard whose clients queue up to `queue` frames.
    pub fn new(queue: usize) -> Self {
        let counters = Arc::new(ShardCounters::default());
        let settings = ShardSettings {
            slow_client: SlowClientPolicy::Drop,
            enforce_tiers: false,
        };
        Self {
            shard: Shard::new(0, counters.clone(), settings),
            counters,
            outboxes: Vec::new(),
            next_id: 1,
            queue,
        }
    }

    /// Registers a client subscribed to organization `org`.
    pub fn add_org_subscriber(&mut self, org: &str) {
        let outbox = Arc::new(Outbox::new(self.queue));
        let filter = Filter {
            login: "bench".into(),
            orgs: crate::auth::OrgSet::new([org]),
            organization: org.into(),
            can_see_private: true,
            ..Filter::default()
        }
        .normalized();
        self.shard.handle(ShardMsg::Register(Box::new(Subscriber {
            id: self.next_id,
            filter,
            outbox: outbox.clone(),
        })));
        self.next_id += 1;
        self.outboxes.push(outbox);
    }

    /// Routes one event through the index into the matching outboxes.
    pub fn deliver(&mut self, event: &Arc<Event>) {
        self.shard.handle(ShardMsg::Event(event.clone()));
    }

    /// Empties every outbox; returns how many frames were in them.
    pub fn drain(&self) -> usize {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = VecDeque::new();
        let mut n = 0;
        for o in &self.outboxes {
            while let Poll::Ready(Drained::Frames) = o.poll_drain(&mut cx, &mut out) {
                n += out.len();
                out.clear();
            }
        }
        n
    }

    /// Frames queued so far.
    pub fn deliveries(&self) -> u64 {
        self.counters
            .deliveries
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
