//! What the GitHub provider counts, and how the counts become
//! [`GithubStats`] and `/metrics` families.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::CounterFamily;
use crate::auth::cache::CacheStats;

/// Counters of the GitHub provider, for metrics. Plain numbers: no token and
/// no login anywhere.
///
/// Every check is exactly one of a cache hit, a negative cache hit, a cache
/// miss (it started an API round) or a single-flight join (it waited for the
/// round another check had started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GithubStats {
    /// Checks answered from a cached accepted token.
    pub cache_hits: u64,
    /// Checks answered from a cached rejected token (invalid or forbidden).
    pub negative_cache_hits: u64,
    /// Checks that started an API round.
    pub cache_misses: u64,
    /// Checks that joined an API round already in flight for the same token.
    pub single_flight_joins: u64,
    /// Tokens cached now (accepted and rejected).
    pub cache_entries: u64,
    /// Cache entries evicted to stay within `auth.cache_entries`.
    pub cache_evictions: u64,
    /// API rounds in flight now.
    pub rounds_in_flight: u64,
    /// API rounds that ended with the token accepted.
    pub rounds_accepted: u64,
    /// API rounds that ended with the token invalid (401).
    pub rounds_invalid: u64,
    /// API rounds that ended with the token forbidden (403).
    pub rounds_forbidden: u64,
    /// API rounds that ended rate limited.
    pub rounds_rate_limited: u64,
    /// API rounds that could not be completed (GitHub unavailable).
    pub rounds_unavailable: u64,
    /// HTTP requests answered 2xx.
    pub api_2xx: u64,
    /// HTTP requests answered 401.
    pub api_401: u64,
    /// HTTP requests answered 403.
    pub api_403: u64,
    /// HTTP requests answered 404.
    pub api_404: u64,
    /// HTTP requests answered 5xx.
    pub api_5xx: u64,
    /// HTTP requests answered with any other status (3xx, 429, other 4xx).
    pub api_other_status: u64,
    /// HTTP requests that timed out (`auth.api_timeout_s`).
    pub api_timeouts: u64,
    /// HTTP requests that failed without an answer (connect, TLS, reset).
    pub api_network_errors: u64,
    /// HTTP requests retried after a 5xx, timeout or network error.
    pub api_retries: u64,
    /// HTTP requests in flight now (at most `auth.max_concurrent_api_requests`).
    pub api_in_flight: u64,
    /// HTTP requests waiting for a free slot now.
    pub api_queued: u64,
}

/// The cache's part of the stats; the API counters are added by
/// [`Counters::copy_into`].
impl From<CacheStats> for GithubStats {
    fn from(c: CacheStats) -> Self {
        GithubStats {
            cache_hits: c.hits,
            negative_cache_hits: c.negative_hits,
            cache_misses: c.misses,
            single_flight_joins: c.joins,
            cache_entries: c.entries,
            cache_evictions: c.evictions,
            rounds_in_flight: c.in_flight,
            ..GithubStats::default()
        }
    }
}

/// Declares [`Counters`], one atomic per name, and the copy of each into
/// the [`GithubStats`] field of the same name, so that a counter is listed
/// once.
macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// The API side's counters and gauges, each kept under the name of
        /// its [`GithubStats`] field.
        #[derive(Default)]
        pub(super) struct Counters {
            $(pub(super) $name: AtomicU64,)*
        }

        impl Counters {
            /// Sets each field of `stats` that is a counter here.
            pub(super) fn copy_into(&self, stats: &mut GithubStats) {
                $(stats.$name = self.$name.load(Ordering::Relaxed);)*
            }
        }
    };
}

counters!(
    rounds_accepted,
    rounds_invalid,
    rounds_forbidden,
    rounds_rate_limited,
    rounds_unavailable,
    api_2xx,
    api_401,
    api_403,
    api_404,
    api_5xx,
    api_other_status,
    api_timeouts,
    api_network_errors,
    api_retries,
    api_in_flight,
    api_queued,
);

pub(super) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Decrements a gauge when dropped.
pub(super) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub(super) fn up(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Gauge(c)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GithubStats {
    /// The counter families reported on `/metrics`.
    pub(super) fn families(&self) -> Vec<CounterFamily> {
        let s = self;
        vec![
            family(
                "auth_cache_lookups",
                "Token checks by how the cache answered them",
                "result",
                &[
                    ("hit", s.cache_hits),
                    ("negative_hit", s.negative_cache_hits),
                    ("miss", s.cache_misses),
                    ("joined", s.single_flight_joins),
                ],
            ),
            family(
                "github_api_requests",
                "GitHub API requests by answer",
                "status",
                &[
                    ("2xx", s.api_2xx),
                    ("401", s.api_401),
                    ("403", s.api_403),
                    ("404", s.api_404),
                    ("5xx", s.api_5xx),
                    ("other", s.api_other_status),
                    ("timeout", s.api_timeouts),
                    ("network_error", s.api_network_errors),
                ],
            ),
            CounterFamily {
                name: "github_api_retries",
                help: "GitHub API requests retried after a 5xx, timeout or network error",
                samples: vec![(vec![], s.api_retries)],
            },
        ]
    }
}

/// A family with one label, `label`, taking each of `values`.
fn family(
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> CounterFamily {
    CounterFamily {
        name,
        help,
        samples: values
            .iter()
            .map(|&(value, n)| (vec![(label, value)], n))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_lands_in_its_field() {
        let c = Counters::default();
        inc(&c.rounds_invalid);
        inc(&c.api_404);
        inc(&c.api_404);
        let _queued = Gauge::up(&c.api_queued);
        let mut s = GithubStats::from(CacheStats {
            hits: 1,
            negative_hits: 2,
            misses: 3,
            joins: 4,
            entries: 5,
            evictions: 6,
            in_flight: 7,
        });
        c.copy_into(&mut s);
        assert_eq!(
            s,
            GithubStats {
                cache_hits: 1,
                negative_cache_hits: 2,
                cache_misses: 3,
                single_flight_joins: 4,
                cache_entries: 5,
                cache_evictions: 6,
                rounds_in_flight: 7,
                rounds_invalid: 1,
                api_404: 2,
                api_queued: 1,
                ..GithubStats::default()
            }
        );
    }

    #[test]
    fn families_label_each_value() {
        let s = GithubStats {
            cache_hits: 3,
            api_5xx: 2,
            api_retries: 1,
            ..GithubStats::default()
        };
        let f = s.families();
        let names: Vec<_> = f.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "auth_cache_lookups",
                "github_api_requests",
                "github_api_retries"
            ]
        );
        assert_eq!(f[0].samples[0], (vec![("result", "hit")], 3));
        assert_eq!(f[1].samples[4], (vec![("status", "5xx")], 2));
        assert_eq!(f[2].samples, [(vec![], 1)]);
    }
}
