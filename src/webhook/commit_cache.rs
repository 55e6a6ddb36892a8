//! (Repository, head SHA) -> pull request, learned from `pull_request`
//! events.
//!
//! GitHub often sends `check_run` / `check_suite` events before it has linked
//! the commit to its pull request (their `pull_requests` array is empty);
//! this cache lets such events still carry the PR URL. It is keyed by the
//! repository as well as the SHA: the same commit can be pushed to any
//! repository, and an event must never carry another repository's pull
//! request (a private one, say) because its SHA is equal. It is bounded in
//! entries (oldest evicted first) and in age.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::expiring::ExpiringMap;
use crate::event::Event;

/// What the cache knows about a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrInfo {
    /// The pull request's HTML URL.
    pub url: String,
    /// The repository's HTML URL.
    pub repo_url: String,
    /// The pull request number.
    pub number: u64,
    /// When the entry was recorded.
    pub cached_at: SystemTime,
}

impl PrInfo {
    /// Pull request `number` at `url`, of the repository at `repo_url`,
    /// recorded at `cached_at`: the one way intake (from a payload) and a
    /// cluster node (from an event it applies) build one.
    pub(crate) fn new(url: &str, repo_url: &str, number: u64, cached_at: SystemTime) -> Self {
        Self {
            url: url.to_owned(),
            repo_url: repo_url.to_owned(),
            number,
            cached_at,
        }
    }
}

/// A bounded, expiring map from (repository, commit SHA) to pull request.
/// Repository names (`owner/name`) and SHAs are compared case-insensitively.
/// Safe to share between threads; every call takes one short lock.
pub struct CommitCache {
    inner: Mutex<Inner>,
}

struct Inner {
    map: ExpiringMap<Box<str>, PrInfo>,
    hits: u64,
    misses: u64,
}

/// Counters for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCacheStats {
    /// Entries held.
    pub entries: usize,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
}

impl CommitCache {
    /// A cache of at most `max_entries` SHAs (0 disables it), each valid for `ttl`.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: ExpiringMap::new(max_entries, ttl),
                hits: 0,
                misses: 0,
            }),
        }
    }

    /// Records that `sha` is the head of the pull request `info` of the
    /// repository `repo` (`owner/name`).
    pub fn record(&self, repo: &str, sha: &str, info: PrInfo) {
        self.record_at(repo, sha, info, Instant::now());
    }

    /// The pull request of `repo` whose head is `sha`, if recorded and not
    /// expired.
    pub fn get(&self, repo: &str, sha: &str) -> Option<PrInfo> {
        self.get_at(repo, sha, Instant::now())
    }

    /// Current counters.
    pub fn stats(&self) -> CommitCacheStats {
        let inner = self.lock();
        CommitCacheStats {
            entries: inner.map.len(),
            hits: inner.hits,
            misses: inner.misses,
        }
    }

    /// Records a `pull_request` event's head under its repository: what a
    /// cluster node learns from every event it applies, wherever its
    /// webhook arrived.
    pub(crate) fn learn(&self, event: &Event) {
        if event.kind() != "pull_request" {
            return;
        }
        let (Some(repo), Some(sha), Some(number)) =
            (event.repo(), event.commit_sha(), event.pr_number())
        else {
            return;
        };
        let url = event.url();
        let repo_url = url.rsplit_once("/pull/").map_or("", |(repo, _)| repo);
        let info = PrInfo::new(url, repo_url, number, event.accepted_at());
        self.record(repo, sha, info);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent
        // in a way that matters for a cache; keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record_at(&self, repo: &str, sha: &str, info: PrInfo, now: Instant) {
        if let Some(key) = key(repo, sha) {
            self.lock().map.insert(key, info, now);
        }
    }

    pub(crate) fn get_at(&self, repo: &str, sha: &str, now: Instant) -> Option<PrInfo> {
        let key = key(repo, sha);
        let mut inner = self.lock();
        let live = key.and_then(|k| inner.map.get(&*k, now).cloned());
        if live.is_some() {
            inner.hits += 1;
        } else {
            inner.misses += 1;
        }
        live
    }
}

/// The map key of a (repository, SHA) pair: both lowercased, joined by a
/// character neither can hold. `None` when either is empty: an event that
/// does not name its repository is never resolved through the cache.
fn key(repo: &str, sha: &str) -> Option<Box<str>> {
    if repo.is_empty() || sha.is_empty() {
        return None;
    }
    let mut k = String::with_capacity(repo.len() + 1 + sha.len());
    k.push_str(repo);
    k.push('@');
    k.push_str(sha);
    k.make_ascii_lowercase();
    Some(k.into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: u64) -> PrInfo {
        PrInfo::new(
            &format!("https://github.com/o/r/pull/{n}"),
            "https://github.com/o/r",
            n,
            SystemTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn records_and_finds() {
        let c = CommitCache::new(10, Duration::from_secs(60));
        c.record("o/r", "abc", info(1));
        assert_eq!(c.get("o/r", "abc"), Some(info(1)));
        assert_eq!(c.get("o/r", "def"), None);
        assert_eq!(
            c.stats(),
            CommitCacheStats {
                entries: 1,
                hits: 1,
                misses: 1
            }
        );
    }

    #[test]
    fn evicts_oldest_beyond_the_entry_bound() {
        let c = CommitCache::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for n in 1..=5 {
            c.record_at("o/r", &format!("sha{n}"), info(n), t);
        }
        assert_eq!(c.stats().entries, 3);
        assert_eq!(c.get_at("o/r", "sha1", t), None);
        assert_eq!(c.get_at("o/r", "sha2", t), None);
        for n in 3..=5 {
            assert_eq!(c.get_at("o/r", &format!("sha{n}"), t), Some(info(n)));
        }
    }

    #[test]
    fn re_recording_refreshes_position_and_value() {
        let c = CommitCache::new(2, Duration::from_secs(60));
        let t = Instant::now();
        c.record_at("o/r", "a", info(1), t);
        c.record_at("o/r", "b", info(2), t);
        c.record_at("o/r", "a", info(3), t); // a is now the newest
        c.record_at("o/r", "c", info(4), t); // evicts b, not a
        assert_eq!(c.get_at("o/r", "a", t), Some(info(3)));
        assert_eq!(c.get_at("o/r", "b", t), None);
        assert_eq!(c.get_at("o/r", "c", t), Some(info(4)));
        assert_eq!(c.stats().entries, 2);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c = CommitCache::new(10, Duration::from_secs(60));
        let t = Instant::now();
        c.record_at("o/r", "old", info(1), t);
        c.record_at("o/r", "new", info(2), t + Duration::from_secs(30));
        assert_eq!(
            c.get_at("o/r", "old", t + Duration::from_secs(59)),
            Some(info(1))
        );
        assert_eq!(c.get_at("o/r", "old", t + Duration::from_secs(60)), None);
        // Recording later also prunes what expired meanwhile.
        c.record_at("o/r", "newer", info(3), t + Duration::from_secs(95));
        assert_eq!(c.stats().entries, 1);
        assert_eq!(
            c.get_at("o/r", "newer", t + Duration::from_secs(95)),
            Some(info(3))
        );
    }

    #[test]
    fn a_sha_resolves_only_within_its_repository() {
        let c = CommitCache::new(10, Duration::from_secs(60));
        c.record("Acme/Secret", "ABC123", info(5));
        assert_eq!(c.get("acme/secret", "abc123"), Some(info(5)));
        assert_eq!(c.get("ACME/SECRET", "Abc123"), Some(info(5)));
        for (repo, sha) in [
            ("evilorg/pub", "abc123"),
            ("acme/secret2", "abc123"),
            ("acme", "secret@abc123"),
            ("", "abc123"),
            ("acme/secret", ""),
        ] {
            assert_eq!(c.get(repo, sha), None, "{repo:?} {sha:?}");
        }
        // The same SHA in two repositories: two entries, each its own PR.
        c.record("evilorg/pub", "abc123", info(9));
        assert_eq!(c.get("acme/secret", "abc123"), Some(info(5)));
        assert_eq!(c.get("evilorg/pub", "abc123"), Some(info(9)));
        // Nothing is recorded without a repository.
        c.record("", "def", info(1));
        assert_eq!(c.stats().entries, 2);
    }

    #[test]
    fn zero_entries_disables_the_cache() {
        let c = CommitCache::new(0, Duration::from_secs(60));
        c.record("o/r", "a", info(1));
        assert_eq!(c.get("o/r", "a"), None);
        assert_eq!(c.stats().entries, 0);
    }
}
