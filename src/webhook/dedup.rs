//! Delivery ids already accepted, so that GitHub's redelivery of one (same
//! `X-GitHub-Delivery`) is answered `duplicate` instead of broadcast again.
//!
//! Intake claims an id atomically before submitting its event, so that two
//! identical deliveries racing on one node broadcast once, and gives the
//! claim back when the event could not be stored (503), so that the
//! redelivery GitHub then makes goes through. In cluster mode every node
//! also learns the ids of the events it applies from the stream, so that a
//! redelivery to any node is caught. Bounded in entries and in age.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::expiring::ExpiringMap;

/// The table. Safe to share between threads; every call takes one short
/// lock (a std mutex: nothing is awaited while it is held).
pub(crate) struct DeliveryIds {
    map: Mutex<ExpiringMap<Arc<str>, ()>>,
}

/// What [`DeliveryIds::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// The id is new and now held for this request.
    New(Claim),
    /// The id was already accepted (or is being accepted right now).
    Duplicate,
    /// Not tracked: an empty id, or the table is disabled.
    Untracked,
}

/// A claim on an id, to give back with [`DeliveryIds::release`] when its
/// event could not be stored.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) struct Claim {
    /// The entry's generation: a release only removes this very entry, not
    /// one learnt from the stream since.
    generation: u64,
}

impl DeliveryIds {
    /// A table of at most `max_entries` ids (0 disables it), each
    /// remembered for `window`.
    pub fn new(max_entries: usize, window: Duration) -> Self {
        Self {
            map: Mutex::new(ExpiringMap::new(max_entries, window)),
        }
    }

    /// Claims `id` unless it is already held.
    pub fn claim(&self, id: &str) -> Claimed {
        self.claim_at(id, Instant::now())
    }

    /// Whether `id` is held (accepted, or claimed right now).
    pub fn contains(&self, id: &str) -> bool {
        !id.is_empty() && self.lock().get(id, Instant::now()).is_some()
    }

    /// Gives back a claim whose event was not stored.
    pub fn release(&self, id: &str, claim: Claim) {
        self.lock().remove_generation(id, claim.generation);
    }

    /// Records `id` as accepted (an event applied from the cluster's
    /// stream); a claim pending on it is then kept even if its own submit
    /// fails, since the event was stored.
    pub fn learn(&self, id: &str) {
        if !id.is_empty() {
            self.lock().insert(id.into(), (), Instant::now());
        }
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn claim_at(&self, id: &str, now: Instant) -> Claimed {
        if id.is_empty() {
            return Claimed::Untracked;
        }
        let mut map = self.lock();
        if map.get(id, now).is_some() {
            return Claimed::Duplicate;
        }
        match map.insert(id.into(), (), now) {
            Some(generation) => Claimed::New(Claim { generation }),
            None => Claimed::Untracked,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ExpiringMap<Arc<str>, ()>> {
        // Every operation leaves the map consistent before it can panic.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> DeliveryIds {
        DeliveryIds::new(max, Duration::from_secs(60))
    }

    #[test]
    fn a_claimed_id_is_a_duplicate_until_released() {
        let t = table(10);
        let Claimed::New(claim) = t.claim("d1") else {
            panic!("first claim")
        };
        assert_eq!(t.claim("d1"), Claimed::Duplicate);
        assert!(t.contains("d1"));
        t.release("d1", claim);
        assert!(!t.contains("d1"));
        assert!(matches!(t.claim("d1"), Claimed::New(_)));
    }

    #[test]
    fn a_release_keeps_an_id_learnt_from_the_stream_meanwhile() {
        let t = table(10);
        let Claimed::New(claim) = t.claim("d1") else {
            panic!("first claim")
        };
        t.learn("d1");
        t.release("d1", claim);
        assert_eq!(t.claim("d1"), Claimed::Duplicate);
    }

    #[test]
    fn empty_ids_and_a_disabled_table_track_nothing() {
        let t = table(10);
        assert_eq!(t.claim(""), Claimed::Untracked);
        assert_eq!(t.claim(""), Claimed::Untracked);
        t.learn("");
        assert_eq!(t.len(), 0);
        let off = table(0);
        assert_eq!(off.claim("d1"), Claimed::Untracked);
        assert_eq!(off.claim("d1"), Claimed::Untracked);
        assert!(!off.contains("d1"));
    }

    #[test]
    fn bounded_and_forgotten_after_the_window() {
        let t = table(2);
        let now = Instant::now();
        for id in ["a", "b", "c"] {
            assert!(matches!(t.claim_at(id, now), Claimed::New(_)));
        }
        assert_eq!(t.len(), 2);
        assert!(matches!(t.claim_at("a", now), Claimed::New(_)), "evicted");
        assert_eq!(t.claim_at("c", now), Claimed::Duplicate);
        let later = now + Duration::from_secs(60);
        assert!(matches!(t.claim_at("c", later), Claimed::New(_)), "expired");
    }
}
