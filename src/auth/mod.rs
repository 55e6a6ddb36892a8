//! Who a token belongs to: the provider interface, identities, tiers, and
//! the errors a check can end in.
//!
//! A provider turns a token into an [`Identity`] (login, organizations,
//! tier). Org membership for a subscription is decided by the session from
//! that identity, the same way for every provider.

pub(crate) mod cache;
pub(crate) mod config;
pub mod github;
mod orgs;
pub mod static_tokens;
pub mod token;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use orgs::OrgSet;

use crate::checks::ConfigError;
pub use crate::tier::Tier;
use crate::tier::TiersConfig;
pub use config::{AuthConfig, AuthProviderKind};
pub use token::{Token, TokenRejection};

/// What kind of account a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// A user (personal access or OAuth token).
    User,
    /// A GitHub App installation; pinned to its installation org when the
    /// subscription names none.
    AppInstallation,
}

/// The account behind a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The login (`app[installation]` for app installations).
    pub login: String,
    /// Organizations the account belongs to (shared by its connections).
    pub orgs: OrgSet,
    /// Its tier.
    pub tier: Tier,
    /// User or app installation.
    pub kind: IdentityKind,
}

impl Identity {
    /// Whether the account belongs to `org` (case-insensitive).
    pub fn is_member_of(&self, org: &str) -> bool {
        self.orgs.contains(org)
    }
}

/// Why a token check failed. Each variant maps to one error code of
/// PROTOCOL.md (see `ws::messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The token was rejected (`authentication_failed`).
    InvalidToken,
    /// The token may not be used (`access_denied`).
    Forbidden,
    /// GitHub's API rate limit (`rate_limit_exceeded`).
    RateLimited,
    /// The check could not be made (`internal_error`); the text says why,
    /// for logs, and never contains the token.
    Unavailable(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::InvalidToken => f.write_str("token rejected"),
            AuthError::Forbidden => f.write_str("token forbidden"),
            AuthError::RateLimited => f.write_str("GitHub API rate limit exceeded"),
            AuthError::Unavailable(why) => write!(f, "token check unavailable: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Why [`AuthProvider::reload`] kept what the provider had. The text names
/// the file or key, and never holds a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The static provider was reloaded without `auth.tokens_file`.
    #[error("auth.tokens_file: not set; keeping the loaded tokens")]
    TokensFileNotSet,
    /// The tokens file has problems (each names `auth.tokens_file`); shown
    /// joined by `; `.
    #[error("{}", join_problems(.0))]
    TokensFile(Vec<ConfigError>),
    /// A provider of an embedder's own (`"text".into()` makes one from a
    /// message).
    #[error(transparent)]
    Other(#[from] Box<dyn std::error::Error + Send + Sync>),
}

fn join_problems(problems: &[ConfigError]) -> String {
    let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// A boxed future, so that providers can be used as trait objects.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Identity, AuthError>> + Send + 'a>>;

/// Checks tokens. Called from connection tasks on any runtime thread, many
/// at once; implementations do their own caching and rate limiting.
pub trait AuthProvider: Send + Sync + 'static {
    /// The account behind `token`.
    fn authenticate<'a>(&'a self, token: &'a Token) -> AuthFuture<'a>;

    /// Counters the provider keeps (cache hits, API requests, ...), read
    /// when `/metrics` is scraped. Label values must come from a fixed set:
    /// never a token, a login or anything a client chose.
    fn metrics(&self) -> Vec<CounterFamily> {
        Vec::new()
    }

    /// Takes up what the provider read from the configuration again (on
    /// SIGHUP): a tokens file, tier lists. On error it keeps what it had and
    /// says why, naming the file; the message never holds a token.
    fn reload(&self, auth: &AuthConfig, tiers: &TiersConfig) -> Result<(), ReloadError> {
        let _ = (auth, tiers);
        Ok(())
    }
}

/// One counter metric with its labelled values, reported by a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterFamily {
    /// Metric name, without the `hookfan_` prefix and `_total` suffix.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Label sets and their values.
    pub samples: Vec<(Vec<(&'static str, &'static str)>, u64)>,
}
