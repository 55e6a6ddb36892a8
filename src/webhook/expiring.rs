//! A map bounded in entries (oldest evicted first) and in age: what the
//! commit cache and the delivery-id table are made of.
//!
//! Insertion order is a queue of (key, generation); re-inserting a key gives
//! it a new generation and leaves its old listing behind as stale, which
//! eviction skips. So every operation is O(1) amortized, with no linked list.
//! Not synchronized: its owners wrap it in one mutex each.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::Hash;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// The bounded, expiring map.
pub(crate) struct ExpiringMap<K, V> {
    map: AHashMap<K, Entry<V>>,
    /// Insertion order, oldest first; may hold stale generations.
    order: VecDeque<(K, u64)>,
    next_generation: u64,
    /// Most entries held (0: nothing is ever held).
    max_entries: usize,
    /// How long an entry lives after its insertion.
    ttl: Duration,
}

struct Entry<V> {
    value: V,
    inserted: Instant,
    /// Distinguishes this entry from older ones for the same key still
    /// listed in `order`.
    generation: u64,
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    /// A map of at most `max_entries` entries, each living for `ttl`.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            map: AHashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            max_entries,
            ttl,
        }
    }

    /// Entries held (expired ones not yet evicted included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Inserts or replaces `key` (it becomes the newest), then evicts what
    /// expired and the oldest entries beyond the bound. Returns the new
    /// entry's generation, or `None` when the map holds nothing (bound 0).
    pub fn insert(&mut self, key: K, value: V, now: Instant) -> Option<u64> {
        if self.max_entries == 0 {
            return None;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let entry = Entry {
            value,
            inserted: now,
            generation,
        };
        self.map.insert(key.clone(), entry);
        self.order.push_back((key, generation));
        self.evict(now);
        Some(generation)
    }

    /// The value under `key` if it has not expired; an expired entry is
    /// removed.
    pub fn get<Q>(&mut self, key: &Q, now: Instant) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let live = self
            .map
            .get(key)
            .map(|e| now.duration_since(e.inserted) < self.ttl)?;
        if !live {
            self.map.remove(key);
            return None;
        }
        self.map.get(key).map(|e| &e.value)
    }

    /// Removes `key` if its entry is still the one of `generation` (not
    /// replaced since); returns whether it did.
    pub fn remove_generation<Q>(&mut self, key: &Q, generation: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let ours = self
            .map
            .get(key)
            .is_some_and(|e| e.generation == generation);
        if ours {
            self.map.remove(key);
        }
        ours
    }

    /// Drops expired entries and the oldest ones beyond `max_entries`.
    fn evict(&mut self, now: Instant) {
        while let Some((key, generation)) = self.order.front() {
            // None: a stale listing (the key was re-inserted, removed or expired).
            let fresh = self
                .map
                .get(key)
                .filter(|e| e.generation == *generation)
                .map(|e| now.duration_since(e.inserted) < self.ttl);
            match fresh {
                Some(true) if self.map.len() <= self.max_entries => break,
                Some(_) => {
                    let (key, _) = self.order.pop_front().expect("front exists");
                    self.map.remove(&key);
                }
                None => {
                    self.order.pop_front();
                }
            }
        }
        // Re-inserting the same keys leaves stale listings behind the front;
        // keep the list proportional to the map.
        if self.order.len() > 2 * self.map.len() + 64 {
            let Self { map, order, .. } = self;
            order.retain(|(k, g)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(max: usize) -> ExpiringMap<Box<str>, u32> {
        ExpiringMap::new(max, Duration::from_secs(60))
    }

    #[test]
    fn bounded_oldest_first_and_refreshed_by_reinsertion() {
        let mut m = map(2);
        let t = Instant::now();
        m.insert("a".into(), 1, t);
        m.insert("b".into(), 2, t);
        m.insert("a".into(), 3, t); // a is now the newest
        m.insert("c".into(), 4, t); // evicts b
        assert_eq!(m.get("a", t), Some(&3));
        assert_eq!(m.get("b", t), None);
        assert_eq!(m.get("c", t), Some(&4));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn entries_expire() {
        let mut m = map(10);
        let t = Instant::now();
        m.insert("a".into(), 1, t);
        assert_eq!(m.get("a", t + Duration::from_secs(59)), Some(&1));
        assert_eq!(m.get("a", t + Duration::from_secs(60)), None);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn removal_by_generation_spares_a_newer_entry() {
        let mut m = map(10);
        let t = Instant::now();
        let old = m.insert("a".into(), 1, t).unwrap();
        let new = m.insert("a".into(), 2, t).unwrap();
        assert!(!m.remove_generation("a", old));
        assert_eq!(m.get("a", t), Some(&2));
        assert!(m.remove_generation("a", new));
        assert_eq!(m.get("a", t), None);
    }

    #[test]
    fn stale_listings_stay_proportional() {
        let mut m = map(4);
        let t = Instant::now();
        for i in 0..10_000u32 {
            m.insert("same".into(), i, t);
        }
        assert_eq!(m.len(), 1);
        assert!(m.order.len() <= 2 * m.len() + 65, "{}", m.order.len());
    }

    #[test]
    fn zero_entries_holds_nothing() {
        let mut m = map(0);
        assert_eq!(m.insert("a".into(), 1, Instant::now()), None);
        assert_eq!(m.len(), 0);
    }
}
