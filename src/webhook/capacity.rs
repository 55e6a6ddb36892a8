//! Caps on webhook requests in progress and on the bytes their bodies may
//! hold, decided before a body is read (over either: 503 with
//! `Retry-After`), so that stalled or slow senders cannot exhaust memory.
//!
//! A request takes a slot and reserves its declared `Content-Length` from
//! the byte budget (without allocating it); a body of unknown length
//! reserves as its buffer grows. Both are given back by [`Admitted`]'s
//! `Drop`, however the request ends: answered, refused, timed out, or the
//! client gone (hyper then drops the handler's future).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The caps and what is held against them. Lock-free: two atomics.
#[derive(Debug)]
pub(crate) struct Capacity {
    /// Most requests admitted at once.
    max_requests: usize,
    /// Most bytes reserved at once.
    max_bytes: u64,
    /// Requests admitted and not yet answered.
    requests: AtomicUsize,
    /// Bytes reserved by them.
    bytes: AtomicU64,
}

/// Which cap refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// `webhook.max_concurrent_requests`.
    Requests,
    /// `webhook.max_inflight_bytes`.
    Bytes,
}

/// A request's slot and its byte reservation, both given back on drop.
#[derive(Debug)]
pub(crate) struct Admitted<'a> {
    capacity: &'a Capacity,
    reserved: u64,
}

impl Capacity {
    /// Caps of `max_requests` requests and `max_bytes` bytes.
    pub fn new(max_requests: usize, max_bytes: u64) -> Self {
        Self {
            max_requests,
            max_bytes,
            requests: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// A slot with `declared` bytes reserved, or which cap is full.
    pub fn admit(&self, declared: u64) -> Result<Admitted<'_>, Full> {
        self.requests
            .fetch_update(Relaxed, Relaxed, |n| {
                (n < self.max_requests).then_some(n + 1)
            })
            .map_err(|_| Full::Requests)?;
        let mut admitted = Admitted {
            capacity: self,
            reserved: 0,
        };
        // On refusal, dropping `admitted` gives the slot back.
        if admitted.cover(declared) {
            Ok(admitted)
        } else {
            Err(Full::Bytes)
        }
    }

    /// Requests admitted now.
    pub fn requests(&self) -> usize {
        self.requests.load(Relaxed)
    }

    /// Bytes reserved now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

impl Admitted<'_> {
    /// Grows the reservation to `total` bytes (no-op when it already
    /// covers them); `false` when the budget has no room for the rest.
    pub fn cover(&mut self, total: u64) -> bool {
        let more = total.saturating_sub(self.reserved);
        if more == 0 {
            return true;
        }
        let max = self.capacity.max_bytes;
        let taken = self.capacity.bytes.fetch_update(Relaxed, Relaxed, |b| {
            b.checked_add(more).filter(|t| *t <= max)
        });
        if taken.is_ok() {
            self.reserved = total;
        }
        taken.is_ok()
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.capacity.bytes.fetch_sub(self.reserved, Relaxed);
        self.capacity.requests.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_cap_refuses_and_a_drop_gives_the_slot_back() {
        let c = Capacity::new(2, 1000);
        let a = c.admit(10).unwrap();
        let b = c.admit(10).unwrap();
        assert_eq!(c.admit(0).unwrap_err(), Full::Requests);
        drop(a);
        let _c = c.admit(0).unwrap();
        drop(b);
        assert_eq!((c.requests(), c.bytes()), (1, 0));
    }

    #[test]
    fn the_byte_cap_refuses_up_front_and_while_growing() {
        let c = Capacity::new(10, 1000);
        let big = c.admit(900).unwrap();
        assert_eq!(c.admit(101).unwrap_err(), Full::Bytes);
        assert_eq!(c.requests(), 1, "a refusal holds no slot");
        let mut chunked = c.admit(0).unwrap();
        assert!(chunked.cover(60));
        assert!(chunked.cover(100));
        assert!(chunked.cover(50), "already covered");
        assert!(!chunked.cover(101));
        assert_eq!(c.bytes(), 1000);
        drop(big);
        assert!(chunked.cover(101));
        drop(chunked);
        assert_eq!((c.requests(), c.bytes()), (0, 0));
    }
}
