//! What the per-client limits report to `/metrics`: the connection slots
//! held, and how many clients each per-client table remembers (each bounded
//! by `limits.rate_table_entries`).

use std::sync::Arc;

use crate::metrics::{Place, Report, Source};

use super::{ConnLimiter, FailedChecks, RequestRate};

/// The WebSocket endpoint's per-client tables.
pub(crate) struct ClientTables {
    pub limiter: Arc<ConnLimiter>,
    pub failed_checks: Arc<FailedChecks>,
    pub upgrades: Arc<RequestRate>,
}

impl Source for ClientTables {
    fn place(&self) -> Place {
        Place::Connections
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        out.connection_slots(self.limiter.counts().total)?;
        out.gauge(
            "upgrade_rate_clients",
            "Clients whose upgrades a minute are counted (limits.upgrades_per_ip_per_minute)",
            self.upgrades.tracked() as i64,
        )?;
        out.gauge(
            "failed_token_check_clients",
            "Clients whose failed token checks are counted (auth.max_failed_checks_per_ip)",
            self.failed_checks.tracked() as i64,
        )
    }
}
