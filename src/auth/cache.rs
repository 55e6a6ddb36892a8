//! A cache of token check results, keyed by the SHA-256 of the token (the
//! token itself is never stored), with single flight: concurrent checks of
//! one token share one lookup.
//!
//! - Accepted tokens are remembered for the positive TTL; tokens rejected as
//!   invalid or forbidden for the negative TTL. Rate limits and unavailable
//!   APIs are never remembered: the next check asks again.
//! - At most `capacity` results are kept; the oldest are evicted first, and
//!   expired ones are dropped as they are found.
//! - The lookup runs on its own task: a caller that goes away (a client that
//!   disconnects mid-handshake) does not cancel it for the others, and its
//!   result is still cached.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ahash::AHashMap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::AuthError;

/// Key of an entry: SHA-256 of the token.
pub(crate) type Key = [u8; 32];

/// What a lookup ends in.
pub(crate) type Outcome<V> = Result<V, AuthError>;

/// Counters of a [`TokenCache`]. Every check is exactly one of: a hit, a
/// negative hit, a miss (it started a lookup) or a join (it waited for a
/// lookup another check had started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Checks answered from an accepted entry.
    pub hits: u64,
    /// Checks answered from a rejected entry.
    pub negative_hits: u64,
    /// Checks that started a lookup.
    pub misses: u64,
    /// Checks that joined a lookup already in flight.
    pub joins: u64,
    /// Entries held now (some may have expired and not yet been dropped).
    pub entries: u64,
    /// Entries evicted to stay within the capacity.
    pub evictions: u64,
    /// Lookups in flight now.
    pub in_flight: u64,
}

struct Entry<V> {
    outcome: Outcome<V>,
    expires: Instant,
    /// Insertion number: matches the entry's slot in `State::order`.
    seq: u64,
}

/// A lookup in flight: its result is published once, to every waiter.
type Flight<V> = watch::Receiver<Option<Outcome<V>>>;

struct State<V> {
    entries: AHashMap<Key, Entry<V>>,
    /// Keys in insertion order, with their insertion number; a slot whose
    /// number no longer matches its entry is stale and skipped.
    order: VecDeque<(Key, u64)>,
    next_seq: u64,
    in_flight: AHashMap<Key, Flight<V>>,
}

/// Token check results by token hash, with single flight.
pub(crate) struct TokenCache<V> {
    state: Mutex<State<V>>,
    positive_ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    joins: AtomicU64,
    evictions: AtomicU64,
}

/// What a check found under the lock.
enum Found<V> {
    Cached(Outcome<V>),
    Join(Flight<V>),
    Lead(watch::Sender<Option<Outcome<V>>>, Flight<V>),
}

impl<V: Clone + Send + Sync + 'static> TokenCache<V> {
    /// A cache keeping accepted results for `positive_ttl`, rejected ones
    /// for `negative_ttl` (a zero TTL: not kept), at most `capacity` of them.
    pub(crate) fn new(positive_ttl: Duration, negative_ttl: Duration, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                entries: AHashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
                in_flight: AHashMap::new(),
            }),
            positive_ttl,
            negative_ttl,
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            negative_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            joins: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<V>> {
        // A panic while holding the lock leaves consistent state behind
        // (every mutation is a single map or queue operation).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached outcome for `key`, else the outcome of the lookup already
    /// in flight for it, else of a new lookup made by `lookup()` on a task
    /// of its own. Must be called within a Tokio runtime.
    pub(crate) async fn get_or_lookup<F, Fut>(self: &Arc<Self>, key: Key, lookup: F) -> Outcome<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome<V>> + Send + 'static,
    {
        let found = {
            let mut st = self.lock();
            let now = Instant::now();
            match st.entries.get(&key) {
                Some(e) if e.expires > now => {
                    let counter = if e.outcome.is_ok() {
                        &self.hits
                    } else {
                        &self.negative_hits
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    Found::Cached(e.outcome.clone())
                }
                expired => {
                    if expired.is_some() {
                        st.entries.remove(&key);
                    }
                    if let Some(flight) = st.in_flight.get(&key) {
                        self.joins.fetch_add(1, Ordering::Relaxed);
                        Found::Join(flight.clone())
                    } else {
                        self.misses.fetch_add(1, Ordering::Relaxed);
                        let (tx, rx) = watch::channel(None);
                        st.in_flight.insert(key, rx.clone());
                        Found::Lead(tx, rx)
                    }
                }
            }
        };
        let mut flight = match found {
            Found::Cached(outcome) => return outcome,
            Found::Join(rx) => rx,
            Found::Lead(tx, rx) => {
                let fut = lookup();
                let cache = Arc::clone(self);
                tokio::spawn(async move {
                    let mut guard = FlightGuard {
                        cache: &cache,
                        key,
                        done: false,
                    };
                    let outcome = fut.await;
                    guard.cache.complete(key, &outcome);
                    guard.done = true;
                    // Nobody waiting any more is fine: the result is cached.
                    let _ = tx.send(Some(outcome));
                });
                rx
            }
        };
        match flight.wait_for(Option::is_some).await {
            Ok(v) => v.clone().expect("waited for Some"),
            Err(_) => Err(AuthError::Unavailable(
                "the token check ended unexpectedly".to_owned(),
            )),
        }
    }

    /// Records a finished lookup and ends its flight, under one lock, so that
    /// a check never misses both.
    fn complete(&self, key: Key, outcome: &Outcome<V>) {
        let ttl = match outcome {
            Ok(_) => self.positive_ttl,
            Err(AuthError::InvalidToken | AuthError::Forbidden) => self.negative_ttl,
            Err(AuthError::RateLimited | AuthError::Unavailable(_)) => Duration::ZERO,
        };
        let mut st = self.lock();
        st.in_flight.remove(&key);
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.entries.insert(
            key,
            Entry {
                outcome: outcome.clone(),
                expires: now + ttl,
                seq,
            },
        );
        st.order.push_back((key, seq));
        self.trim(&mut st, now);
    }

    /// Drops stale and expired slots at the front, evicts the oldest entries
    /// past the capacity, and compacts the order queue when stale slots
    /// pile up behind live ones.
    fn trim(&self, st: &mut State<V>, now: Instant) {
        while let Some(&(key, seq)) = st.order.front() {
            let evict = match st.entries.get(&key) {
                Some(e) if e.seq == seq => {
                    if e.expires <= now {
                        true
                    } else if st.entries.len() > self.capacity {
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                        true
                    } else {
                        break;
                    }
                }
                _ => false,
            };
            st.order.pop_front();
            if evict {
                st.entries.remove(&key);
            }
        }
        if st.order.len() > 2 * self.capacity + 64 {
            let State { entries, order, .. } = st;
            order.retain(|(k, s)| entries.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> CacheStats {
        let (entries, in_flight) = {
            let st = self.lock();
            (st.entries.len() as u64, st.in_flight.len() as u64)
        };
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            negative_hits: self.negative_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            joins: self.joins.load(Ordering::Relaxed),
            entries,
            evictions: self.evictions.load(Ordering::Relaxed),
            in_flight,
        }
    }
}

/// Ends a flight whose lookup task panicked, so that later checks start a
/// new lookup instead of joining a dead one.
struct FlightGuard<'a, V: Clone + Send + Sync + 'static> {
    cache: &'a TokenCache<V>,
    key: Key,
    done: bool,
}

impl<V: Clone + Send + Sync + 'static> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        if !self.done {
            self.cache.lock().in_flight.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    fn cache(pos_ms: u64, neg_ms: u64, cap: usize) -> Arc<TokenCache<u32>> {
        Arc::new(TokenCache::new(
            Duration::from_millis(pos_ms),
            Duration::from_millis(neg_ms),
            cap,
        ))
    }

    async fn check(
        c: &Arc<TokenCache<u32>>,
        k: u8,
        calls: &Arc<AtomicUsize>,
        out: Outcome<u32>,
    ) -> Outcome<u32> {
        let calls = calls.clone();
        c.get_or_lookup(key(k), move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            out
        })
        .await
    }

    #[tokio::test]
    async fn positive_and_negative_results_are_cached_for_their_ttl() {
        let c = cache(200, 100, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(check(&c, 1, &calls, Ok(7)).await, Ok(7));
        assert_eq!(check(&c, 1, &calls, Ok(8)).await, Ok(7));
        assert_eq!(
            check(&c, 2, &calls, Err(AuthError::InvalidToken)).await,
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            check(&c, 2, &calls, Ok(1)).await,
            Err(AuthError::InvalidToken)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let s = c.stats();
        assert_eq!((s.hits, s.negative_hits, s.misses, s.joins), (1, 1, 2, 0));
        tokio::time::sleep(Duration::from_millis(120)).await;
        // The negative entry has expired, the positive one has not.
        assert_eq!(check(&c, 2, &calls, Ok(1)).await, Ok(1));
        assert_eq!(check(&c, 1, &calls, Ok(9)).await, Ok(7));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(check(&c, 1, &calls, Ok(9)).await, Ok(9));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn rate_limits_and_outages_are_not_cached() {
        let c = cache(1000, 1000, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        for out in [
            Err(AuthError::RateLimited),
            Err(AuthError::Unavailable("down".into())),
        ] {
            assert_eq!(check(&c, 1, &calls, out.clone()).await, out);
        }
        assert_eq!(check(&c, 1, &calls, Ok(1)).await, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Forbidden is cached like an invalid token.
        assert_eq!(
            check(&c, 2, &calls, Err(AuthError::Forbidden)).await,
            Err(AuthError::Forbidden)
        );
        assert_eq!(check(&c, 2, &calls, Ok(1)).await, Err(AuthError::Forbidden));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn zero_ttl_caches_nothing() {
        let c = cache(0, 0, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        check(&c, 1, &calls, Ok(1)).await.unwrap();
        check(&c, 1, &calls, Ok(1)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.stats().entries, 0);
    }

    #[tokio::test]
    async fn capacity_evicts_the_oldest() {
        let c = cache(10_000, 10_000, 3);
        let calls = Arc::new(AtomicUsize::new(0));
        for k in 0..5 {
            check(&c, k, &calls, Ok(u32::from(k))).await.unwrap();
        }
        let s = c.stats();
        assert_eq!((s.entries, s.evictions), (3, 2));
        // 2, 3, 4 are kept; 0 is looked up again.
        check(&c, 4, &calls, Ok(99)).await.unwrap();
        check(&c, 2, &calls, Ok(99)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(check(&c, 0, &calls, Ok(100)).await, Ok(100));
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        // The order queue stays bounded under re-insertions.
        for _ in 0..1000 {
            let st = c.lock();
            assert!(st.order.len() <= 2 * 3 + 64 + 1);
            drop(st);
            c.complete(key(9), &Ok(1));
        }
        assert_eq!(c.stats().entries, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_share_one_lookup() {
        let c = cache(10_000, 10_000, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = c.clone();
            let calls = calls.clone();
            let mut release = release_rx.clone();
            tasks.push(tokio::spawn(async move {
                c.get_or_lookup(key(1), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = release.wait_for(|r| *r).await;
                    Ok(5)
                })
                .await
            }));
        }
        // Every check has either started or joined the flight before it ends.
        while {
            let s = c.stats();
            s.misses + s.joins < 50
        } {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release_tx.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(5));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let s = c.stats();
        assert_eq!((s.misses, s.joins, s.in_flight), (1, 49, 0));
    }

    #[tokio::test]
    async fn a_lookup_outlives_a_caller_that_gives_up() {
        let c = cache(10_000, 10_000, 10);
        let calls = Arc::new(AtomicUsize::new(0));
        let calls2 = calls.clone();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            c.get_or_lookup(key(1), move || async move {
                calls2.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(3)
            }),
        )
        .await;
        assert!(gave_up.is_err());
        // A later check joins the same lookup, or finds its cached result.
        assert_eq!(check(&c, 1, &calls, Ok(4)).await, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panicking_lookup_fails_its_waiters_and_is_not_joined_again() {
        let c = cache(10_000, 10_000, 10);
        let out = c
            .get_or_lookup(key(1), || async { panic!("lookup bug") })
            .await;
        assert!(matches!(out, Err(AuthError::Unavailable(_))), "{out:?}");
        assert_eq!(c.stats().in_flight, 0);
        let calls = Arc::new(AtomicUsize::new(0));
        assert_eq!(check(&c, 1, &calls, Ok(2)).await, Ok(2));
    }
}
