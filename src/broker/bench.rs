//! Hooks for the criterion benchmarks in `benches/`: one shard's delivery
//! path, and a resume over the replay window, driven directly, without
//! threads or sockets. Not a stable API.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::Filter;
use super::outbox::{Drained, Outbox};
use super::replay::{Replay, ReplayConfig, ReplayWindow};
use super::shard::{Shard, ShardCounters, ShardMsg, ShardSettings, Subscriber};
use crate::broker::SlowClientPolicy;
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

/// A replay window full of events and one client resuming over it.
pub struct ReplayBench {
    window: ReplayWindow,
    last: u64,
    filter: Filter,
}

impl ReplayBench {
    /// A window of `events` events, one in `one_in` of them for the
    /// client's organization.
    pub fn new(events: u64, one_in: u64) -> Self {
        let mut window = ReplayWindow::new(ReplayConfig {
            max_events: events as usize,
            max_bytes: usize::MAX,
            max_age: std::time::Duration::from_secs(3600),
        });
        for seq in 1..=events {
            let org = if seq % one_in == 0 { "mine" } else { "other" };
            let mut e = Event::new(crate::event::EventParts {
                kind: "pull_request".into(),
                delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
                url: format!("https://github.com/{org}/api/pull/{seq}"),
                org: Some(org.into()),
                users: vec!["alice".into(), "bob".into()],
                ..Default::default()
            });
            e.set_seq(seq);
            window.push(&Arc::new(e));
        }
        let filter = Filter {
            login: "bench".into(),
            orgs: crate::auth::OrgSet::new(["mine"]),
            organization: "mine".into(),
            can_see_private: true,
            ..Filter::default()
        }
        .normalized();
        Self {
            window,
            last: events,
            filter,
        }
    }

    /// What the hub does under its lock: the events after seq 0.
    pub fn snapshot(&self) -> usize {
        self.window.since(0, self.last).expect("held").len()
    }

    /// A whole resume from seq 0: the snapshot, then every matching event
    /// queued for writing (as the connection does, 64 at a time); returns
    /// how many were replayed.
    pub fn resume(&self) -> usize {
        let missed = self.window.since(0, self.last).expect("held");
        let mut replay = Replay::new(missed, self.filter.clone(), false);
        let mut out = VecDeque::new();
        let mut n = 0;
        while replay.fill(&mut out, 64) {
            n += out.len();
            out.clear();
        }
        n
    }
}
