//! What webhook intake reports to `/metrics`: its commit cache, its caps
//! in use, the delivery ids it remembers and the senders it accepts.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{Capacity, CommitCache, DeliveryIds, Sources};
use crate::metrics::{Place, Report, Source};

impl Source for CommitCache {
    fn place(&self) -> Place {
        Place::CommitCache
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        let c = self.stats();
        out.gauge(
            "commit_cache_entries",
            "Commit SHAs in the commit cache",
            c.entries as i64,
        )?;
        out.counters_by(
            "commit_cache_lookups",
            "Commit cache lookups by result",
            "result",
            [("hit", c.hits), ("miss", c.misses)],
        )
    }
}

/// Webhook intake's caps, its table of delivery ids and its senders.
pub(super) struct IntakeFigures {
    pub(super) capacity: Arc<Capacity>,
    pub(super) deliveries: Arc<DeliveryIds>,
    /// `None`: every sender accepted (nothing reported).
    pub(super) sources: Option<Arc<Sources>>,
}

impl Source for IntakeFigures {
    fn place(&self) -> Place {
        Place::Intake
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        out.gauge(
            "webhook_requests_in_progress",
            "Webhook requests admitted (webhook.max_concurrent_requests) and not yet answered",
            self.capacity.requests() as i64,
        )?;
        out.gauge(
            "webhook_reserved_bytes",
            "Bytes reserved for the bodies of webhook requests in progress (webhook.max_inflight_bytes)",
            self.capacity.bytes() as i64,
        )?;
        out.gauge(
            "delivery_ids",
            "Delivery ids remembered to answer redeliveries duplicate",
            self.deliveries.len() as i64,
        )?;
        match &self.sources {
            Some(s) => report_sources(s, out),
            None => Ok(()),
        }
    }
}

/// The ranges in force; with `github` in the list, how its fetches went.
fn report_sources(s: &Sources, out: &mut Report<'_, '_>) -> std::fmt::Result {
    out.gauge(
        "webhook_allowed_sources",
        "Address ranges webhooks are accepted from (webhook.allowed_sources; GitHub's once fetched)",
        s.ranges() as i64,
    )?;
    if !s.names_github() {
        return Ok(());
    }
    out.counters_by(
        "webhook_allowed_sources_refreshes",
        "Fetches of GitHub's webhook ranges (GET /meta) by result; a failed one kept the ranges in force",
        "result",
        [
            ("ok", s.refreshes_ok.load(Relaxed)),
            ("failed", s.refreshes_failed.load(Relaxed)),
        ],
    )?;
    out.gauge(
        "webhook_allowed_sources_last_refresh_timestamp_seconds",
        "Unix time of the last fetch of GitHub's webhook ranges that succeeded (0: none yet)",
        s.last_refresh.load(Relaxed) as i64,
    )
}
