//! `[redelivery]`: the sweeper that asks GitHub to redeliver the webhooks
//! it failed to deliver; its defaults and its checks.

use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, range, require};
use crate::github_app::GithubAppConfig;

/// How far back GitHub keeps an App's deliveries: 3 days.
pub const GITHUB_KEEPS_S: u64 = 3 * 24 * 3600;

/// `[redelivery]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedeliveryConfig {
    /// Sweep at all (needs `[github_app]`).
    pub enabled: bool,
    /// Seconds between sweeps; one also runs at start.
    pub interval_s: u64,
    /// How far back the first sweep after start looks, in seconds.
    pub lookback_s: u64,
    /// Most redeliveries asked for in one sweep.
    pub max_per_sweep: usize,
    /// In a cluster: seconds the sweep's lease outlives its holder.
    pub lease_ttl_s: u64,
}

impl Default for RedeliveryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_s: 300,
            lookback_s: GITHUB_KEEPS_S,
            max_per_sweep: 1000,
            lease_ttl_s: 30,
        }
    }
}

impl Section for RedeliveryConfig {
    fn validate(&self) -> Vec<ConfigError> {
        [
            range("redelivery.interval_s", self.interval_s, 1..=86_400, "s"),
            range(
                "redelivery.lookback_s",
                self.lookback_s,
                1..=GITHUB_KEEPS_S,
                "s",
            ),
            range(
                "redelivery.max_per_sweep",
                self.max_per_sweep,
                1..=10_000,
                "",
            ),
            range("redelivery.lease_ttl_s", self.lease_ttl_s, 2..=3_600, "s"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl RedeliveryConfig {
    /// What the section needs of the others: the App to call GitHub as.
    pub(crate) fn validate_with(&self, app: &GithubAppConfig) -> Option<ConfigError> {
        require(
            !self.enabled || app.is_set(),
            "redelivery.enabled",
            "needs [github_app] app_id and private_key_file: GitHub lists and redelivers \
             an App's webhook deliveries only to the App itself",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &RedeliveryConfig) -> Vec<String> {
        c.validate().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_are_off_and_valid() {
        let c = RedeliveryConfig::default();
        assert!(!c.enabled);
        assert_eq!((c.interval_s, c.lookback_s), (300, 259_200));
        assert_eq!((c.max_per_sweep, c.lease_ttl_s), (1000, 30));
        assert!(problems(&c).is_empty());
        assert!(c.validate_with(&GithubAppConfig::default()).is_none());
    }

    #[test]
    fn enabled_needs_the_app() {
        let on = RedeliveryConfig {
            enabled: true,
            ..RedeliveryConfig::default()
        };
        assert_eq!(
            on.validate_with(&GithubAppConfig::default())
                .unwrap()
                .to_string(),
            "redelivery.enabled: needs [github_app] app_id and private_key_file: GitHub \
             lists and redelivers an App's webhook deliveries only to the App itself"
        );
        let app = GithubAppConfig {
            app_id: Some(1),
            private_key_file: Some("k.pem".into()),
        };
        assert!(on.validate_with(&app).is_none());
    }

    #[test]
    fn bounds() {
        let c = RedeliveryConfig {
            enabled: false,
            interval_s: 0,
            lookback_s: 259_201,
            max_per_sweep: 0,
            lease_ttl_s: 1,
        };
        assert_eq!(
            problems(&c),
            [
                "redelivery.interval_s: must be 1..=86400 s, got 0",
                "redelivery.lookback_s: must be 1..=259200 s, got 259201",
                "redelivery.max_per_sweep: must be 1..=10000, got 0",
                "redelivery.lease_ttl_s: must be 2..=3600 s, got 1",
            ]
        );
    }
}
