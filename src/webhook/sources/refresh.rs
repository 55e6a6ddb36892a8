//! Keeps GitHub's ranges fresh: a fetch at start, then one every
//! `webhook.allowed_sources_refresh_s`. A failed fetch keeps the ranges in
//! force and is retried soon (1 s, doubling up to a minute, never later
//! than the next refresh; as long as GitHub says when rate limited), so
//! that a start while GitHub is unreachable answers 503 for as short a
//! time as can be. A failure streak is logged once, and its end.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Sources;
use super::meta::{MetaApi, MetaError, RefresherError};

/// First retry after a failed fetch; doubled for each further one.
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// Longest wait between retries: about GitHub's unauthenticated rate
/// limit (60 requests an hour).
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Fetches GitHub's ranges into a [`Sources`].
pub(crate) struct Refresher {
    sources: Arc<Sources>,
    api: MetaApi,
    every: Duration,
    /// Failed fetches since the last that succeeded.
    streak: u32,
}

impl Refresher {
    /// A refresher of `sources`' GitHub ranges from the API at `api_url`
    /// (`auth.github_api_url`), each request within `timeout`, every
    /// `every`; `Ok(None)` when the list does not name `github`.
    pub(crate) fn new(
        sources: &Arc<Sources>,
        api_url: &str,
        timeout: Duration,
        every: Duration,
    ) -> Result<Option<Self>, RefresherError> {
        if !sources.names_github() {
            return Ok(None);
        }
        let tls = crate::tls::client_config("the GitHub API")?;
        Ok(Some(Self {
            sources: sources.clone(),
            api: MetaApi::new(api_url, tls, timeout)?,
            every,
            streak: 0,
        }))
    }

    /// Fetches now, then again as due, until `stop` resolves.
    pub(crate) async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = tokio::select! {
                wait = self.fetch_once() => wait,
                () = &mut stop => return,
            };
            self.sources.next_fetch_in(wait);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut stop => return,
            }
        }
    }

    /// One fetch, counted and logged; how long until the next.
    async fn fetch_once(&mut self) -> Duration {
        match self.api.hooks().await {
            Ok(nets) => {
                let ranges = nets.len();
                let changed = self.sources.install(nets);
                let s = &self.sources;
                s.refreshes_ok.fetch_add(1, Relaxed);
                s.last_refresh.store(super::unix_now(), Relaxed);
                if self.streak > 0 {
                    tracing::info!(
                        ranges,
                        failed_attempts = self.streak,
                        "GitHub's webhook address ranges fetched again (webhook.allowed_sources)"
                    );
                } else if changed {
                    tracing::info!(
                        ranges,
                        "GitHub's webhook address ranges in force (webhook.allowed_sources)"
                    );
                }
                self.streak = 0;
                self.every
            }
            Err(e) => {
                self.sources.refreshes_failed.fetch_add(1, Relaxed);
                let wait = retry_wait(self.streak, e.wait, self.every);
                if self.streak == 0 {
                    self.log_failure(&e, wait);
                }
                self.streak = self.streak.saturating_add(1);
                wait
            }
        }
    }

    /// The one line a failure streak logs.
    fn log_failure(&self, e: &MetaError, wait: Duration) {
        let (error, retry_s) = (&e.message, wait.as_secs());
        match self.sources.github().and_then(|g| g.as_ref().map(Vec::len)) {
            Some(ranges) => tracing::warn!(
                %error, retry_s, ranges,
                "cannot refresh GitHub's webhook address ranges (GET /meta); \
                 keeping the last good list; retrying"
            ),
            None => tracing::error!(
                %error, retry_s,
                "cannot fetch GitHub's webhook address ranges (GET /meta): webhooks \
                 from outside the CIDRs of webhook.allowed_sources are answered 503 \
                 until it answers; retrying"
            ),
        }
    }
}

/// The wait before retrying a failed fetch that follows `streak` failed
/// ones: GitHub's `asked` wait when rate limited, else 1 s doubling up to
/// [`RETRY_MAX`]; never longer than the refresh interval `every`.
fn retry_wait(streak: u32, asked: Option<Duration>, every: Duration) -> Duration {
    let wait = match asked {
        Some(w) => w.max(RETRY_FIRST),
        None => RETRY_FIRST
            .saturating_mul(1 << streak.min(16))
            .min(RETRY_MAX),
    };
    wait.min(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_a_minute_and_never_past_the_refresh() {
        let hour = Duration::from_secs(3600);
        let s = |n| Duration::from_secs(n);
        let waits: Vec<Duration> = (0..9).map(|n| retry_wait(n, None, hour)).collect();
        assert_eq!(
            waits,
            [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60), s(60)]
        );
        assert_eq!(retry_wait(u32::MAX, None, hour), s(60));
        // Rate limited: GitHub's wait, at least a second, at most `every`.
        assert_eq!(retry_wait(0, Some(s(900)), hour), s(900));
        assert_eq!(retry_wait(3, Some(Duration::ZERO), hour), s(1));
        assert_eq!(retry_wait(0, Some(s(7200)), hour), hour);
        assert_eq!(retry_wait(9, None, s(5)), s(5));
    }
}
