//! `[tiers]`: who is on a paid tier, and whether tiers are enforced; its
//! defaults and its checks.

use serde::{Deserialize, Serialize};

use super::Tier;
use crate::checks::{ConfigError, Section, is_login, require};

/// `[tiers]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiersConfig {
    /// Withhold private-repository events from clients whose tier may not
    /// see them (on by default: a free client never receives them).
    pub enforce: bool,
    /// The tier of an account listed nowhere (a static token without a
    /// `tier`): `free`, or `pro` for an operator serving only their own
    /// organization, whose members may all see its private repositories.
    pub default_tier: Tier,
    /// Logins (users or organizations) of the pro tier.
    pub pro: Vec<String>,
    /// Logins (users or organizations) of the flock tier.
    pub flock: Vec<String>,
}

impl Default for TiersConfig {
    fn default() -> Self {
        Self {
            enforce: true,
            default_tier: Tier::Free,
            pro: Vec::new(),
            flock: Vec::new(),
        }
    }
}

impl Section for TiersConfig {
    fn validate(&self) -> Vec<ConfigError> {
        [("tiers.pro", &self.pro), ("tiers.flock", &self.flock)]
            .into_iter()
            .flat_map(|(key, logins)| {
                logins.iter().filter_map(move |login| {
                    require(is_login(login), key, || {
                        format!("{login:?} is not a GitHub login")
                    })
                })
            })
            .collect()
    }
}
