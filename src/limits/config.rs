//! `[limits]`: how many WebSocket connections are allowed, and whose
//! `X-Forwarded-For` is believed; its defaults and its checks.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, require};

/// Default `limits.max_conns_per_ip`, also [`crate::WsOptions`]'.
pub(crate) const DEFAULT_MAX_CONNS_PER_IP: usize = 10;
/// Default `limits.max_conns_total`, also [`crate::WsOptions`]'.
pub(crate) const DEFAULT_MAX_CONNS_TOTAL: usize = 100_000;

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
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_conns_per_ip: DEFAULT_MAX_CONNS_PER_IP,
            max_conns_total: DEFAULT_MAX_CONNS_TOTAL,
            trusted_proxies: Vec::new(),
        }
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
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
