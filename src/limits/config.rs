//! `[limits]`: how many WebSocket connections and upgrades are allowed per
//! client, how many clients the per-client tables remember, and whose
//! `X-Forwarded-For` is believed; its defaults and its checks.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, at_most, range, require};

/// Default `limits.max_conns_per_ip`, also [`crate::WsOptions`]'.
pub(crate) const DEFAULT_MAX_CONNS_PER_IP: usize = 10;
/// Default `limits.max_conns_total`, also [`crate::WsOptions`]'.
pub(crate) const DEFAULT_MAX_CONNS_TOTAL: usize = 100_000;
/// `limits.upgrades_per_ip_per_minute` when unset, per allowed connection:
/// a client may open all its connections six times a minute.
const UPGRADES_PER_CONN: usize = 6;
/// Default `limits.rate_table_entries`, also [`crate::WsOptions`]' and
/// [`crate::WebhookOptions`]'.
pub(crate) const DEFAULT_RATE_TABLE_ENTRIES: usize = 100_000;
/// Largest `limits.upgrades_per_ip_per_minute`.
const MAX_UPGRADES_PER_MINUTE: u32 = 1_000_000;

/// `limits.upgrades_per_ip_per_minute` for a `max_conns_per_ip`, when unset.
pub(crate) fn default_upgrades_per_minute(max_conns_per_ip: usize) -> u32 {
    u32::try_from(max_conns_per_ip.saturating_mul(UPGRADES_PER_CONN))
        .unwrap_or(MAX_UPGRADES_PER_MINUTE)
        .min(MAX_UPGRADES_PER_MINUTE)
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// WebSocket connections allowed from one client IP.
    pub max_conns_per_ip: usize,
    /// WebSocket connections allowed in total.
    pub max_conns_total: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` header is trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// WebSocket upgrades and `/events` requests allowed per client IP and
    /// minute (a burst of that many, refilled over the minute); 0: no
    /// limit. Unset: six times `max_conns_per_ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrades_per_ip_per_minute: Option<u32>,
    /// Most clients each per-client table remembers (upgrade rates, failed
    /// token checks, bad webhook signatures); the oldest is evicted.
    pub rate_table_entries: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_conns_per_ip: DEFAULT_MAX_CONNS_PER_IP,
            max_conns_total: DEFAULT_MAX_CONNS_TOTAL,
            trusted_proxies: Vec::new(),
            upgrades_per_ip_per_minute: None,
            rate_table_entries: DEFAULT_RATE_TABLE_ENTRIES,
        }
    }
}

impl LimitsConfig {
    /// `upgrades_per_ip_per_minute`, its default applied.
    pub fn upgrades_per_minute(&self) -> u32 {
        self.upgrades_per_ip_per_minute
            .unwrap_or_else(|| default_upgrades_per_minute(self.max_conns_per_ip))
    }
}

impl Section for LimitsConfig {
    fn validate(&self) -> Vec<ConfigError> {
        [
            require(
                self.max_conns_per_ip >= 1,
                "limits.max_conns_per_ip",
                "must be at least 1",
            ),
            require(
                self.max_conns_total >= 1,
                "limits.max_conns_total",
                "must be at least 1",
            ),
            at_most(
                "limits.upgrades_per_ip_per_minute",
                self.upgrades_per_ip_per_minute.unwrap_or(0),
                MAX_UPGRADES_PER_MINUTE,
                "",
            ),
            range(
                "limits.rate_table_entries",
                self.rate_table_entries,
                100..=10_000_000,
                "",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
