//! What webhook intake reports to `/metrics`: its commit cache, its caps
//! in use, the delivery ids and the senders of bad signatures it
//! remembers, which secrets verify and the senders it accepts.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{Capacity, CommitCache, DeliveryIds, Sources, WebhookKeys};
use crate::limits::FailedChecks;
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

/// Webhook intake's caps, its tables of delivery ids and bad signatures,
/// its secrets and its senders.
pub(super) struct IntakeFigures {
    pub(super) capacity: Arc<Capacity>,
    pub(super) deliveries: Arc<DeliveryIds>,
    pub(super) bad_signatures: Arc<FailedChecks>,
    pub(super) keys: Arc<WebhookKeys>,
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
        out.gauge(
            "bad_signature_clients",
            "Senders whose bad webhook signatures are counted (webhook.max_bad_signatures_per_ip_per_minute)",
            self.bad_signatures.tracked() as i64,
        )?;
        // Labelled by line number only: nothing of a secret.
        out.counters(
            "webhook_signature_matches",
            "Webhook signatures verified, by the line of webhook.secret_file holding the secret that verified them (1: the only secret, or the current one)",
            (self.keys.matches().into_iter())
                .map(|(line, n)| ([("secret_line", line.to_string())], n)),
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
