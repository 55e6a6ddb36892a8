//! What the sweeper counts, and reports to `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::metrics::{Place, Report, Source};

/// The sweeper's figures.
#[derive(Default)]
pub(crate) struct RedeliveryStats {
    pub sweeps_ok: AtomicU64,
    pub sweeps_refused: AtomicU64,
    pub sweeps_rate_limited: AtomicU64,
    pub sweeps_failed: AtomicU64,
    pub requests_accepted: AtomicU64,
    pub requests_refused: AtomicU64,
    pub requests_rate_limited: AtomicU64,
    pub requests_failed: AtomicU64,
    /// Webhooks a sweep found undelivered (counted by every sweep that does).
    pub failed_seen: AtomicU64,
    /// Unix time of the last sweep that completed; 0 before the first.
    pub last_success: AtomicU64,
    /// This node sweeps (holds the lease, in a cluster).
    pub sweeping: AtomicBool,
}

impl Source for RedeliveryStats {
    fn place(&self) -> Place {
        Place::Redelivery
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        let get = |a: &AtomicU64| a.load(Relaxed);
        out.counters_by(
            "redelivery_sweeps",
            "Redelivery sweeps, by how they ended (refused: GitHub answered 401/403/404)",
            "outcome",
            [
                ("ok", get(&self.sweeps_ok)),
                ("refused", get(&self.sweeps_refused)),
                ("rate_limited", get(&self.sweeps_rate_limited)),
                ("failed", get(&self.sweeps_failed)),
            ],
        )?;
        out.counters_by(
            "redelivery_requests",
            "Redeliveries asked of GitHub, by its answer",
            "outcome",
            [
                ("accepted", get(&self.requests_accepted)),
                ("refused", get(&self.requests_refused)),
                ("rate_limited", get(&self.requests_rate_limited)),
                ("failed", get(&self.requests_failed)),
            ],
        )?;
        out.counter(
            "redelivery_failed_deliveries_seen",
            "Webhooks a sweep found that no attempt of GitHub's delivered",
            get(&self.failed_seen),
        )?;
        out.gauge(
            "redelivery_last_success_timestamp_seconds",
            "Unix time of the last redelivery sweep that completed (0: none yet)",
            get(&self.last_success) as i64,
        )?;
        out.gauge(
            "redelivery_sweeping",
            "1 on the node that sweeps (holds the sweep's lease, in a cluster)",
            self.sweeping.load(Relaxed) as i64,
        )
    }
}
