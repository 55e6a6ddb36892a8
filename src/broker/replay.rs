//! Resume: the window of recent events a reconnecting client is replayed
//! from, and one client's replay in progress.
//!
//! The window holds the events' `Arc`s (the frames already built, no copy),
//! in sequence order, bounded by count, bytes and age. It lives under the
//! hub's routing lock, so that "the events up to seq S" and "live from
//! S + 1" are decided in the same step: a resuming client takes a snapshot
//! of the events it missed there and is registered for the live ones at
//! once, so the boundary has neither gap nor duplicate. The snapshot is
//! filtered (by the same [`Filter::judge`] as live delivery) and written by
//! the client's own connection task, at the pace its socket takes it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::filter::{Filter, Verdict};
use super::outbox::Outgoing;
use crate::event::Event;

/// Bounds of the replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Most events held; 0 turns resume off (every resume is `too_old`).
    pub max_events: usize,
    /// Most bytes held (frames and event data).
    pub max_bytes: usize,
    /// Oldest event held.
    pub max_age: Duration,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_events: 100_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(3600),
        }
    }
}

/// The stream's state when a client goes live, as its confirmation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Names the stream's history; changes when that history is lost.
    pub epoch: Arc<str>,
    /// The last event accepted.
    pub seq: u64,
    /// The oldest seq still held for replay (`seq + 1` when none is).
    pub oldest: u64,
}

/// Why a resume was refused (the client then goes live from now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefusal {
    /// The client's epoch is not this stream's.
    UnknownEpoch,
    /// Events after the client's seq are no longer held (or resume is off).
    TooOld,
}

impl ResumeRefusal {
    /// The `resume_error` of the confirmation, and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeRefusal::UnknownEpoch => "unknown_epoch",
            ResumeRefusal::TooOld => "too_old",
        }
    }
}

/// A boxed future, so that a backfill can be a trait object.
pub(crate) type BackfillFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, BackfillError>> + Send + 'a>>;

/// Why a [`Backfill`] cannot be read now; the source's own error, shown
/// as it is (the broker only logs it and tells the client to come back).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BackfillError(Box<dyn std::error::Error + Send + Sync>);

impl BackfillError {
    /// Wraps the source's error.
    pub(crate) fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(e.into())
    }
}

/// Where a resume finds the events the hub no longer holds: a cluster's
/// stream, which holds far more than a node's window.
pub(crate) trait Backfill: Send + Sync + 'static {
    /// The oldest seq a resume can start from (last known).
    fn oldest(&self) -> u64;

    /// Waits until this node has applied everything stored before the
    /// call (a client may resume after a seq another node has seen first).
    fn catch_up(&self) -> BackfillFuture<'_, ()>;

    /// The events with seq in `from ..= to` that `keep` accepts, in order,
    /// within the source's own bounds on one resume. `Err` when the source
    /// cannot be read now: nothing is lost, the client may come back.
    fn fetch<'a>(
        &'a self,
        from: u64,
        to: u64,
        keep: Box<dyn Fn(&Event) -> bool + Send + Sync + 'a>,
    ) -> BackfillFuture<'a, Backfilled>;
}

/// What a [`Backfill`] gave a resume.
#[derive(Debug)]
pub(crate) enum Backfilled {
    /// The events asked for, in order.
    Events(Vec<Arc<Event>>),
    /// The source no longer holds the start of the range.
    NotHeld,
    /// More than the source gives one resume: the resume is too old for
    /// this node to replay.
    TooLarge,
}

/// Events per chunk of the window.
const CHUNK: usize = 1024;

/// A run of consecutive events of the window. Shared: a snapshot holds the
/// chunks, not the events one by one.
type Chunk = Arc<Vec<Arc<Event>>>;

/// The recent events, oldest first, with increasing seqs, in chunks of
/// [`CHUNK`]: a snapshot clones one `Arc` per chunk (about 100 for a full
/// default window), so the hub's lock is held for microseconds however far
/// back a client resumes. Only the newest chunk grows; it is copied if a
/// snapshot still shares it (at most `CHUNK` reference counts).
#[derive(Debug)]
pub(crate) struct ReplayWindow {
    chunks: VecDeque<Chunk>,
    /// Every event with a seq above it is held (seqs may have gaps: in a
    /// cluster, stream messages that are not events).
    floor: u64,
    /// Events of the front chunk already evicted (kept until the whole
    /// chunk goes: at most `CHUNK - 1` events beyond the bounds).
    skip: usize,
    len: usize,
    bytes: usize,
    config: ReplayConfig,
}

impl ReplayWindow {
    pub fn new(config: ReplayConfig) -> Self {
        Self {
            chunks: VecDeque::new(),
            floor: 0,
            skip: 0,
            len: 0,
            bytes: 0,
            config,
        }
    }

    /// Adds the newest event and evicts what falls out of the bounds.
    pub fn push(&mut self, event: &Arc<Event>) {
        if self.config.max_events == 0 {
            self.floor = event.seq();
            return;
        }
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(event.clone()),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(event.clone());
                self.chunks.push_back(Arc::new(chunk));
            }
        }
        self.len += 1;
        self.bytes += event.size();
        while self.len > self.config.max_events || self.bytes > self.config.max_bytes {
            self.evict_one();
        }
        self.evict_expired(event.accepted_instant());
    }

    fn front(&self) -> Option<&Arc<Event>> {
        self.chunks.front().map(|c| &c[self.skip])
    }

    fn evict_one(&mut self) {
        let Some(e) = self.front() else {
            return;
        };
        let (seq, size) = (e.seq(), e.size());
        self.floor = seq;
        self.bytes -= size;
        self.len -= 1;
        self.skip += 1;
        if self.skip == self.chunks[0].len() {
            self.chunks.pop_front();
            self.skip = 0;
        }
    }

    /// Evicts the events older than `max_age` at `now`.
    pub fn evict_expired(&mut self, now: Instant) {
        while self.front().is_some_and(|e| {
            now.saturating_duration_since(e.accepted_instant()) > self.config.max_age
        }) {
            self.evict_one();
        }
    }

    /// The oldest seq a resume can start from: `floor + 1` (`last + 1`
    /// when nothing is held).
    pub fn oldest(&self, last: u64) -> u64 {
        if self.len == 0 {
            last + 1
        } else {
            self.floor + 1
        }
    }

    /// Every event with a seq above the floor is held.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Forgets everything: the stream continues after `seq`, and nothing
    /// before it is held (a cluster node starting, or finding that the
    /// stream lost messages it had not consumed).
    pub fn restart_at(&mut self, seq: u64) {
        self.chunks.clear();
        self.skip = 0;
        self.len = 0;
        self.bytes = 0;
        self.floor = seq;
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The events with seq in `after + 1 ..= last`, when the window holds
    /// all of them (`last` is the stream's last seq); `None` when it does
    /// not reach back that far, or resume is off.
    pub fn since(&self, after: u64, last: u64) -> Option<Snapshot> {
        if after < self.floor && after < last {
            return None;
        }
        self.held_after(after, last)
    }

    /// The events held with seq in `after + 1 ..= last` (all of them when
    /// `after` is below the floor); `None` when resume is off.
    pub fn held_after(&self, after: u64, last: u64) -> Option<Snapshot> {
        if self.config.max_events == 0 {
            return None;
        }
        if after >= last {
            return Some(Snapshot::default());
        }
        // The front chunk may still hold evicted events (at or below the
        // floor): never hand those out.
        let after = after.max(self.floor);
        // The first chunk holding a seq past `after`, and the place in it.
        let first = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|e| e.seq() <= after));
        let chunks: Vec<Chunk> = self.chunks.range(first..).cloned().collect();
        let skip = chunks
            .first()
            .map_or(0, |c| c.partition_point(|e| e.seq() <= after));
        Some(Snapshot { chunks, skip })
    }
}

/// Events of the window from some seq on, sharing its chunks.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    chunks: Vec<Chunk>,
    /// Events of the first chunk before the snapshot's start.
    skip: usize,
}

impl Snapshot {
    /// Puts `events` (older, in seq order) in front of the snapshot.
    pub fn prepend(&mut self, events: Vec<Arc<Event>>) {
        if events.is_empty() {
            return;
        }
        if self.skip > 0 {
            let first = self.chunks[0][self.skip..].to_vec();
            self.chunks[0] = Arc::new(first);
            self.skip = 0;
        }
        self.chunks.insert(0, Arc::new(events));
    }

    /// Events in the snapshot.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() - self.skip
    }

    /// The `i`-th event.
    #[cfg(test)]
    fn get(&self, i: usize) -> Option<&Arc<Event>> {
        let mut i = i + self.skip;
        for c in &self.chunks {
            if i < c.len() {
                return Some(&c[i]);
            }
            i -= c.len();
        }
        None
    }
}

/// One client's replay in progress: the events it missed, matched against
/// its subscription as they are written.
pub(crate) struct Replay {
    missed: Snapshot,
    /// Where the next event is: chunk, and index in it.
    at: (usize, usize),
    candidates: usize,
    filter: Filter,
    enforce_tiers: bool,
    /// Events written so far.
    pub replayed: u64,
}

impl Replay {
    pub fn new(missed: Snapshot, filter: Filter, enforce_tiers: bool) -> Self {
        Self {
            at: (0, missed.skip),
            candidates: missed.len(),
            missed,
            filter,
            enforce_tiers,
            replayed: 0,
        }
    }

    /// Events it was given to look at.
    pub fn candidates(&self) -> usize {
        self.candidates
    }

    /// Moves up to `max` matching events to `out`; returns `false` once
    /// nothing is left.
    pub fn fill(&mut self, out: &mut VecDeque<Outgoing>, max: usize) -> bool {
        let mut n = 0;
        while n < max && self.at.0 < self.missed.chunks.len() {
            let chunk = &self.missed.chunks[self.at.0];
            let e = &chunk[self.at.1];
            if self.filter.judge(e, self.enforce_tiers) != Verdict::Skip {
                out.push_back(Outgoing::event(e, self.filter.include_payload));
                n += 1;
            }
            self.at.1 += 1;
            if self.at.1 == chunk.len() {
                // Let go of each chunk once it is written.
                self.at = (self.at.0 + 1, 0);
            }
        }
        self.replayed += n as u64;
        let more = self.at.0 < self.missed.chunks.len();
        if !more {
            self.missed = Snapshot::default();
            self.at = (0, 0);
        }
        n > 0 || more
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParts;

    fn event(seq: u64, org: &str) -> Arc<Event> {
        let mut e = Event::new(EventParts {
            kind: "pull_request".into(),
            url: "https://github.com/o/r/pull/1".into(),
            org: Some(org.into()),
            ..EventParts::default()
        });
        e.set_seq(seq);
        Arc::new(e)
    }

    fn window(max_events: usize, max_bytes: usize) -> ReplayWindow {
        ReplayWindow::new(ReplayConfig {
            max_events,
            max_bytes,
            max_age: Duration::from_secs(3600),
        })
    }

    fn seqs(v: &Snapshot) -> Vec<u64> {
        (0..v.len()).map(|i| v.get(i).unwrap().seq()).collect()
    }

    #[test]
    fn bounded_by_count_and_answers_what_it_still_holds() {
        let mut w = window(3, usize::MAX);
        assert_eq!(w.oldest(0), 1);
        assert_eq!(w.since(0, 0).map(|v| seqs(&v)), Some(vec![]));
        for s in 1..=5 {
            w.push(&event(s, "a"));
        }
        assert_eq!((w.len(), w.oldest(5)), (3, 3));
        assert_eq!(seqs(&w.since(2, 5).unwrap()), [3, 4, 5]);
        assert_eq!(seqs(&w.since(4, 5).unwrap()), [5]);
        assert_eq!(w.since(5, 5).map(|v| seqs(&v)), Some(vec![]));
        assert!(w.since(1, 5).is_none(), "seq 2 is gone");
    }

    #[test]
    fn snapshots_share_chunks_and_cross_their_boundaries() {
        let n = CHUNK as u64 * 3 + 10;
        let mut w = window(CHUNK * 2 + 5, usize::MAX);
        for s in 1..=n {
            w.push(&event(s, "a"));
        }
        assert_eq!(w.len(), CHUNK * 2 + 5);
        let oldest = w.oldest(n);
        assert_eq!(oldest, n - (CHUNK as u64 * 2 + 5) + 1);
        assert!(w.since(oldest - 2, n).is_none());
        for after in [oldest - 1, oldest + 3, n - CHUNK as u64 - 1, n - 1] {
            let snap = w.since(after, n).unwrap();
            assert_eq!(
                seqs(&snap),
                (after + 1..=n).collect::<Vec<_>>(),
                "after {after}"
            );
        }
        // A snapshot taken, then more pushed: the snapshot does not change.
        let snap = w.since(n - 3, n).unwrap();
        w.push(&event(n + 1, "a"));
        assert_eq!(seqs(&snap), [n - 2, n - 1, n]);
        assert_eq!(seqs(&w.since(n - 1, n + 1).unwrap()), [n, n + 1]);
    }

    #[test]
    fn bounded_by_bytes() {
        let one = event(1, "a").size();
        let mut w = window(100, one * 2 + one / 2);
        for s in 1..=4 {
            w.push(&event(s, "a"));
        }
        assert_eq!(w.len(), 2);
        assert!(w.bytes() <= one * 2 + one / 2);
        assert_eq!(w.oldest(4), 3);
    }

    #[test]
    fn bounded_by_age() {
        let mut w = ReplayWindow::new(ReplayConfig {
            max_events: 100,
            max_bytes: usize::MAX,
            max_age: Duration::from_secs(60),
        });
        let e = event(1, "a");
        w.push(&e);
        w.evict_expired(e.accepted_instant() + Duration::from_secs(59));
        assert_eq!(w.len(), 1);
        w.evict_expired(e.accepted_instant() + Duration::from_secs(61));
        assert_eq!((w.len(), w.bytes(), w.oldest(1)), (0, 0, 2));
        assert!(w.since(0, 1).is_none());
    }

    #[test]
    fn gaps_in_seqs_and_a_restart() {
        let mut w = window(3, usize::MAX);
        w.restart_at(100);
        assert_eq!(w.oldest(100), 101);
        assert!(w.since(99, 100).is_none(), "100 itself was never held");
        assert_eq!(w.since(100, 100).map(|v| seqs(&v)), Some(vec![]));
        for s in [101, 103, 104, 107] {
            w.push(&event(s, "a"));
        }
        // 101 evicted: everything above 101 is held, gaps included.
        assert_eq!(w.oldest(107), 102);
        assert_eq!(seqs(&w.since(101, 107).unwrap()), [103, 104, 107]);
        assert_eq!(seqs(&w.since(105, 107).unwrap()), [107]);
        assert!(w.since(100, 107).is_none());
        // What is held, whatever the floor: a cluster fetches the rest.
        let mut held = w.held_after(50, 107).unwrap();
        assert_eq!(seqs(&held), [103, 104, 107]);
        held.prepend(vec![event(60, "a"), event(101, "a")]);
        assert_eq!(seqs(&held), [60, 101, 103, 104, 107]);
        // Evicted events still in the front chunk are not handed out.
        let mut w3 = window(2, usize::MAX);
        for s in 1..=5 {
            w3.push(&event(s, "a"));
        }
        assert_eq!(seqs(&w3.held_after(0, 5).unwrap()), [4, 5]);
        let mut part = w.held_after(103, 107).unwrap();
        part.prepend(vec![event(102, "a")]);
        assert_eq!(seqs(&part), [102, 104, 107]);
    }

    #[test]
    fn zero_events_turns_resume_off() {
        let mut w = window(0, usize::MAX);
        w.push(&event(1, "a"));
        assert_eq!(w.len(), 0);
        assert!(w.since(0, 1).is_none());
    }

    #[test]
    fn replay_writes_only_matching_events_in_batches() {
        let filter = Filter {
            login: "u".into(),
            orgs: crate::auth::OrgSet::new(["a"]),
            organization: "a".into(),
            can_see_private: true,
            ..Filter::default()
        }
        .normalized();
        let mut w = window(100, usize::MAX);
        for s in 1..=10 {
            w.push(&event(s, if s % 2 == 0 { "a" } else { "b" }));
        }
        let mut r = Replay::new(w.since(0, 10).unwrap(), filter, true);
        assert_eq!(r.candidates(), 10);
        let mut out = VecDeque::new();
        assert!(r.fill(&mut out, 2));
        assert_eq!(out.len(), 2);
        assert!(r.fill(&mut out, 10));
        assert!(!r.fill(&mut out, 10));
        let got: Vec<u64> = out
            .iter()
            .map(|o| o.as_event().map_or(0, |e| e.seq()))
            .collect();
        assert_eq!(got, [2, 4, 6, 8, 10]);
        assert_eq!(r.replayed, 5);
    }
}
