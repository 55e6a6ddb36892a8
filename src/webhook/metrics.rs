//! What webhook intake reports to `/metrics`: its commit cache, its caps
//! in use, the delivery ids and the senders of bad signatures it
//! remembers, and which secrets verify.

use std::sync::Arc;

use super::{Capacity, CommitCache, DeliveryIds, WebhookKeys};
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

/// Webhook intake's caps, its table of delivery ids and its secrets.
pub(super) struct IntakeFigures {
    pub(super) capacity: Arc<Capacity>,
    pub(super) deliveries: Arc<DeliveryIds>,
    pub(super) bad_signatures: Arc<FailedChecks>,
    pub(super) keys: Arc<WebhookKeys>,
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
        )
    }
}
