//! Failed checks per client and minute: rejected tokens
//! (`auth.max_failed_checks_per_ip`), bad webhook signatures
//! (`webhook.max_bad_signatures_per_ip_per_minute`).
//!
//! Every new bad token is a cache miss and a GitHub API request, so a client
//! sending made-up tokens could spend the server's API allowance; every bad
//! signature costs an HMAC over a body read in full. Once a client (a
//! [`ClientKey`]) has failed `limit` checks within a minute, its requests
//! are refused before any check until that minute has passed.
//!
//! The table is fed by the network, so it is bounded: at most
//! `limits.rate_table_entries` clients, the oldest window evicted first
//! when it is full of live ones. An evicted client starts again from zero: an attacker who
//! can fill the table from that many clients gets one more minute's
//! allowance each time, never unbounded memory.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ahash::AHashMap;

use super::ClientKey;

/// The window failures are counted in; it starts at a client's first
/// failure.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// A client that has reached the limit: refused for this much longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyFailures {
    /// Whole seconds until the client's window ends, rounded up (at least 1):
    /// the `Retry-After` value.
    pub retry_after_s: u64,
}

/// Where a table reads the time; a test clock in unit tests.
pub(super) type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// `d` in whole seconds, rounded up: a `Retry-After` value.
pub(super) fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Failed token checks per client within its current window.
pub(crate) struct FailedChecks {
    /// Failures allowed per window; 0: never refuse, remember nothing.
    limit: u32,
    /// Most clients in the table.
    capacity: usize,
    /// Logged once per client and window when it reaches the limit.
    reached: &'static str,
    /// Read while the table is locked, so that windows start in order.
    clock: Clock,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    windows: AHashMap<ClientKey, Window>,
    /// Every window's start, oldest first: expiry and eviction take from
    /// the front. An entry whose window was since replaced is stale and
    /// skipped.
    starts: VecDeque<(ClientKey, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl fmt::Debug for FailedChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailedChecks")
            .field("limit", &self.limit)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl FailedChecks {
    /// A table of at most `capacity` clients, refusing a client after
    /// `limit` failures a minute (0: off), logging `reached` when it does.
    pub fn new(limit: u32, capacity: usize, reached: &'static str) -> Self {
        Self::with_clock(limit, capacity, reached, Box::new(Instant::now))
    }

    fn with_clock(limit: u32, capacity: usize, reached: &'static str, clock: Clock) -> Self {
        Self {
            limit,
            capacity,
            reached,
            clock,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` may have a token checked now.
    pub fn check(&self, key: ClientKey) -> Result<(), TooManyFailures> {
        if self.limit == 0 {
            return Ok(());
        }
        let table = self.lock();
        let now = (self.clock)();
        let Some(w) = table.windows.get(&key).filter(|w| w.failures >= self.limit) else {
            return Ok(());
        };
        let left = (w.start + WINDOW).saturating_duration_since(now);
        if left.is_zero() {
            return Ok(());
        }
        Err(TooManyFailures {
            retry_after_s: whole_seconds(left),
        })
    }

    /// Counts a rejected token for `key`.
    pub fn record(&self, key: ClientKey) {
        if self.limit == 0 {
            return;
        }
        let mut table = self.lock();
        let now = (self.clock)();
        table.expire(now);
        let failures = match table.windows.get_mut(&key) {
            Some(w) if now < w.start + WINDOW => {
                w.failures = w.failures.saturating_add(1);
                w.failures
            }
            _ => {
                table.make_room(self.capacity, key);
                table.windows.insert(
                    key,
                    Window {
                        start: now,
                        failures: 1,
                    },
                );
                table.starts.push_back((key, now));
                1
            }
        };
        if failures == self.limit {
            // Once per client and window: the refusals themselves are not
            // logged above debug, so that a flood does not flood the log.
            tracing::info!(client = %key, limit = self.limit, "{}", self.reached);
        }
    }

    /// Clients in the table now.
    pub fn tracked(&self) -> usize {
        self.lock().windows.len()
    }
}

impl Table {
    /// Drops the windows that ended by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(_, start)) = self.starts.front() {
            if now < start + WINDOW {
                break;
            }
            self.pop_oldest();
        }
    }

    /// Evicts the oldest windows until a new client fits (`key` itself
    /// needs no room when it is there).
    fn make_room(&mut self, capacity: usize, key: ClientKey) {
        while self.windows.len() >= capacity.max(1) && !self.windows.contains_key(&key) {
            if !self.pop_oldest() {
                break;
            }
        }
    }

    /// Removes the front of `starts` and its window, unless that window was
    /// replaced since. Returns false when `starts` is empty.
    fn pop_oldest(&mut self) -> bool {
        let Some((key, start)) = self.starts.pop_front() else {
            return false;
        };
        if self.windows.get(&key).is_some_and(|w| w.start == start) {
            self.windows.remove(&key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::client_key;

    /// A table on a clock the test moves.
    fn table(limit: u32, capacity: usize) -> (FailedChecks, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = now.clone();
        let t = FailedChecks::with_clock(
            limit,
            capacity,
            "limit reached",
            Box::new(move || *clock.lock().unwrap()),
        );
        (t, now)
    }

    fn advance(now: &Mutex<Instant>, by: Duration) {
        *now.lock().unwrap() += by;
    }

    fn key(s: &str) -> ClientKey {
        client_key(s.parse().unwrap())
    }

    fn retry_after(t: &FailedChecks, k: ClientKey) -> Option<u64> {
        t.check(k).err().map(|e| e.retry_after_s)
    }

    #[test]
    fn refused_from_the_limit_until_the_minute_has_passed() {
        let (t, now) = table(3, 100);
        let a = key("203.0.113.1");
        for _ in 0..2 {
            t.record(a);
            advance(&now, Duration::from_secs(10));
        }
        assert_eq!(retry_after(&t, a), None, "2 of 3");
        t.record(a);
        // The window began at the first failure, 20 s ago.
        assert_eq!(retry_after(&t, a), Some(40));
        advance(&now, Duration::from_millis(39_500));
        assert_eq!(retry_after(&t, a), Some(1), "rounded up");
        advance(&now, Duration::from_millis(499));
        assert_eq!(retry_after(&t, a), Some(1));
        advance(&now, Duration::from_millis(1));
        assert_eq!(retry_after(&t, a), None, "the minute has passed");
        // A new window starts from zero.
        t.record(a);
        t.record(a);
        assert_eq!(retry_after(&t, a), None);
        t.record(a);
        assert_eq!(retry_after(&t, a), Some(60));
    }

    #[test]
    fn clients_are_counted_apart_by_their_key() {
        let (t, _now) = table(2, 100);
        t.record(key("2001:db8:1:2::1"));
        t.record(key("2001:db8:1:2::ffff"));
        assert_eq!(
            retry_after(&t, key("2001:db8:1:2::77")),
            Some(60),
            "one /64"
        );
        assert_eq!(retry_after(&t, key("2001:db8:1:3::1")), None);
        t.record(key("::ffff:198.51.100.4"));
        t.record(key("198.51.100.4"));
        assert_eq!(retry_after(&t, key("198.51.100.4")), Some(60));
        assert_eq!(retry_after(&t, key("198.51.100.5")), None);
    }

    #[test]
    fn zero_turns_it_off_and_remembers_nothing() {
        let (t, _now) = table(0, 100);
        for _ in 0..1000 {
            t.record(key("203.0.113.1"));
        }
        assert_eq!(retry_after(&t, key("203.0.113.1")), None);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_oldest_first() {
        let (t, now) = table(1, 4);
        for i in 1..=4 {
            t.record(key(&format!("203.0.113.{i}")));
            advance(&now, Duration::from_secs(1));
        }
        assert_eq!(t.tracked(), 4);
        t.record(key("203.0.113.5"));
        assert_eq!(t.tracked(), 4);
        assert_eq!(retry_after(&t, key("203.0.113.1")), None, "the oldest went");
        for i in 2..=5 {
            assert!(retry_after(&t, key(&format!("203.0.113.{i}"))).is_some());
        }
        // A flood of new clients never grows it, nor its queue of starts.
        for i in 0..10_000u32 {
            t.record(client_key(std::net::Ipv4Addr::from(i).into()));
            advance(&now, Duration::from_millis(7));
            let table = t.lock();
            assert!(table.windows.len() <= 4 && table.starts.len() <= 4);
        }
    }

    #[test]
    fn ended_windows_are_dropped_as_time_passes() {
        let (t, now) = table(5, 100);
        for i in 0..50 {
            t.record(key(&format!("10.0.0.{i}")));
        }
        assert_eq!(t.tracked(), 50);
        advance(&now, WINDOW);
        t.record(key("10.0.1.1"));
        assert_eq!(t.tracked(), 1);
    }
}
