//! The tier of an account, which decides whether it may receive events of
//! private repositories. A leaf: the configuration (`tiers.default_tier`),
//! the auth providers and the broker all name it. `[tiers]` is in
//! `tier/config.rs`.

mod config;

pub use config::TiersConfig;

/// The tier of an account: only `pro` and `flock` may receive events of
/// private repositories.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The default.
    #[default]
    Free,
    /// Paid.
    Pro,
    /// Paid, for organizations.
    Flock,
}

impl Tier {
    /// Whether this tier may receive events of private repositories.
    pub fn can_see_private(self) -> bool {
        self >= Tier::Pro
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Flock => "flock",
        }
    }
}
