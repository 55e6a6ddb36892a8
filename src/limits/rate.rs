//! Requests per client and minute, as a token bucket
//! (`limits.upgrades_per_ip_per_minute`).
//!
//! Each client (a [`ClientKey`]) may make `per_minute` requests at once,
//! and gets them back evenly over the minute. A client whose bucket is
//! empty is refused until its next request is due, before anything else is
//! done for it: no token check, no GitHub API request.
//!
//! The table is fed by the network, so it is bounded: at most `capacity`
//! clients, the oldest entry evicted first. A bucket left alone for a
//! minute is full again, the same as no entry, so those are dropped as
//! they age. An evicted client starts again with a full bucket: an
//! attacker who can fill the table from that many addresses gets one more
//! minute's allowance per address, never unbounded memory.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ahash::AHashMap;

use super::ClientKey;
use super::failed_checks::{Clock, whole_seconds};

/// The time a bucket takes to fill up from empty.
const REFILL: Duration = Duration::from_secs(60);

/// A client whose bucket is empty: its next request is due in this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimited {
    /// Whole seconds until one request is allowed again, rounded up (at
    /// least 1): the `Retry-After` value.
    pub retry_after_s: u64,
}

/// Token buckets per client.
pub(crate) struct RequestRate {
    /// Requests allowed at once, and per minute; 0: no limit, nothing kept.
    per_minute: u32,
    /// Most clients in the table.
    capacity: usize,
    clock: Clock,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    buckets: AHashMap<ClientKey, Bucket>,
    /// Every bucket's creation, oldest first: ageing and eviction take from
    /// the front. An entry whose bucket was since replaced is stale.
    created: VecDeque<(ClientKey, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    created: Instant,
    /// When the bucket was last brought up to date.
    updated: Instant,
    /// Requests left, in fractions: refilled continuously.
    tokens: f64,
}

impl fmt::Debug for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestRate")
            .field("per_minute", &self.per_minute)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

impl RequestRate {
    /// Buckets of `per_minute` requests (0: off) for at most `capacity`
    /// clients.
    pub fn new(per_minute: u32, capacity: usize) -> Self {
        Self::with_clock(per_minute, capacity, Box::new(Instant::now))
    }

    fn with_clock(per_minute: u32, capacity: usize, clock: Clock) -> Self {
        Self {
            per_minute,
            capacity: capacity.max(1),
            clock,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request from `key`'s bucket, or says when the next is due.
    pub fn take(&self, key: ClientKey) -> Result<(), RateLimited> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let full = f64::from(self.per_minute);
        let mut table = self.lock();
        let now = (self.clock)();
        table.age(now);
        if !table.buckets.contains_key(&key) {
            table.insert(key, now, full, self.capacity);
        }
        let bucket = table.buckets.get_mut(&key).expect("inserted above");
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.tokens =
            (bucket.tokens + full * elapsed.as_secs_f64() / REFILL.as_secs_f64()).min(full);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = REFILL.mul_f64((1.0 - bucket.tokens) / full);
        Err(RateLimited {
            retry_after_s: whole_seconds(wait),
        })
    }

    /// Clients in the table now.
    pub fn tracked(&self) -> usize {
        self.lock().buckets.len()
    }
}

impl Table {
    /// A new full bucket for `key`, room made for it first.
    fn insert(&mut self, key: ClientKey, now: Instant, full: f64, capacity: usize) {
        while self.buckets.len() >= capacity && self.pop_oldest(None) {}
        self.created.push_back((key, now));
        self.buckets.insert(
            key,
            Bucket {
                created: now,
                updated: now,
                tokens: full,
            },
        );
    }

    /// Drops the buckets untouched for [`REFILL`] (full again, the same as
    /// none) from the front; a bucket at the front still in use goes to
    /// the back, so that the front stays the oldest.
    fn age(&mut self, now: Instant) {
        while let Some(&(_, created)) = self.created.front() {
            if now < created + REFILL {
                break;
            }
            self.pop_oldest(Some(now));
        }
    }

    /// Removes the front of `created` and its bucket (unless replaced since).
    /// With `Some(now)`, a bucket used within the last [`REFILL`] is kept
    /// and moved to the back instead. False when `created` is empty.
    fn pop_oldest(&mut self, keep_active_at: Option<Instant>) -> bool {
        let Some((key, created)) = self.created.pop_front() else {
            return false;
        };
        let Some(bucket) = self.buckets.get_mut(&key).filter(|b| b.created == created) else {
            return true;
        };
        match keep_active_at {
            Some(now) if now < bucket.updated + REFILL => {
                bucket.created = now;
                self.created.push_back((key, now));
            }
            _ => {
                self.buckets.remove(&key);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::client_key;

    fn rate(per_minute: u32, capacity: usize) -> (RequestRate, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = now.clone();
        let r = RequestRate::with_clock(
            per_minute,
            capacity,
            Box::new(move || *clock.lock().unwrap()),
        );
        (r, now)
    }

    fn advance(now: &Mutex<Instant>, by: Duration) {
        *now.lock().unwrap() += by;
    }

    fn key(s: &str) -> ClientKey {
        client_key(s.parse().unwrap())
    }

    fn retry_after(r: &RequestRate, k: ClientKey) -> Option<u64> {
        r.take(k).err().map(|e| e.retry_after_s)
    }

    #[test]
    fn a_burst_of_the_limit_then_one_per_refill_step() {
        let (r, now) = rate(6, 100);
        let a = key("203.0.113.1");
        for i in 0..6 {
            assert_eq!(retry_after(&r, a), None, "request {i} of the burst");
        }
        // Empty: one request comes back every 10 s.
        assert_eq!(retry_after(&r, a), Some(10));
        advance(&now, Duration::from_secs(4));
        assert_eq!(
            retry_after(&r, a),
            Some(6),
            "rounded up, counted from the refill"
        );
        advance(&now, Duration::from_secs(6));
        assert_eq!(retry_after(&r, a), None);
        assert_eq!(retry_after(&r, a), Some(10));
        // Another client is untouched.
        assert_eq!(retry_after(&r, key("203.0.113.2")), None);
        // After a whole minute the bucket is full again.
        advance(&now, REFILL);
        for _ in 0..6 {
            assert_eq!(retry_after(&r, a), None);
        }
        assert!(retry_after(&r, a).is_some());
    }

    #[test]
    fn zero_is_no_limit_and_keeps_nothing() {
        let (r, _) = rate(0, 100);
        for _ in 0..1000 {
            assert_eq!(retry_after(&r, key("203.0.113.1")), None);
        }
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn the_table_is_bounded_and_the_oldest_goes_first() {
        let (r, now) = rate(2, 3);
        let (a, b, c, d) = (
            key("10.0.0.1"),
            key("10.0.0.2"),
            key("10.0.0.3"),
            key("10.0.0.4"),
        );
        for k in [a, a] {
            r.take(k).unwrap();
        }
        assert!(retry_after(&r, a).is_some(), "a is empty");
        advance(&now, Duration::from_millis(1));
        r.take(b).unwrap();
        r.take(c).unwrap();
        assert_eq!(r.tracked(), 3);
        // d evicts a, the oldest: a starts again full.
        r.take(d).unwrap();
        assert_eq!(r.tracked(), 3);
        assert_eq!(retry_after(&r, a), None, "evicted, so full again");
        assert_eq!(r.tracked(), 3, "a took b's place");
        // Far more clients than room: the table never grows past it.
        for i in 0..10_000u32 {
            let k = client_key(std::net::IpAddr::from(i.to_be_bytes()));
            r.take(k).unwrap();
            assert!(r.tracked() <= 3);
        }
    }

    #[test]
    fn idle_buckets_age_out_and_busy_ones_stay() {
        let (r, now) = rate(2, 100);
        let (idle, busy) = (key("10.0.0.1"), key("10.0.0.2"));
        r.take(idle).unwrap();
        r.take(busy).unwrap();
        r.take(busy).unwrap();
        for _ in 0..5 {
            advance(&now, Duration::from_secs(20));
            // busy keeps using its bucket: 2 per minute, one every 30 s.
            let _ = r.take(busy);
        }
        // 100 s on: the idle one is gone, the busy one kept (and limited).
        assert_eq!(r.tracked(), 1);
        let _ = r.take(busy);
        assert!(retry_after(&r, busy).is_some(), "busy is still counted");
    }
}
