//! What the broker counts: a snapshot of its counters, and the resumes'.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::Hub;
use super::replay::ResumeRefusal;

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

impl Hub {
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
}
