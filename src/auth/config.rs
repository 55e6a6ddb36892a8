//! `[auth]`: which provider checks tokens, and how hard it may be asked;
//! its defaults and its checks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, at_most, range, require, resolve_path};

/// Default `auth.check_timeout_s`, also [`crate::WsOptions`]' `auth_timeout`.
pub(crate) const DEFAULT_CHECK_TIMEOUT_S: u64 = 30;
/// Default `auth.recheck_interval_s`, also [`crate::WsOptions`]'
/// `recheck_interval`: the token cache's lifetime.
pub(crate) const DEFAULT_RECHECK_INTERVAL_S: u64 = 300;
/// Default `auth.max_failed_checks_per_ip`, also [`crate::WsOptions`]'.
pub(crate) const DEFAULT_MAX_FAILED_CHECKS_PER_IP: u32 = 30;
/// Default `auth.max_concurrent_api_requests`; [`crate::WsOptions`]'
/// `recheck_concurrency` is half of it.
pub(crate) const DEFAULT_MAX_CONCURRENT_API_REQUESTS: usize = 32;

/// Which auth provider checks tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProviderKind {
    /// The GitHub REST API.
    Github,
    /// A local token table (`auth.tokens_file`).
    Static,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `github` or `static`.
    pub provider: AuthProviderKind,
    /// GitHub or GitHub Enterprise API base URL.
    pub github_api_url: String,
    /// The static provider's token table.
    pub tokens_file: Option<PathBuf>,
    /// Seconds an accepted token's identity is cached.
    pub cache_ttl_s: u64,
    /// Seconds a rejected token stays rejected without asking GitHub again.
    pub negative_cache_ttl_s: u64,
    /// Most tokens cached.
    pub cache_entries: usize,
    /// Most GitHub API requests in flight at once.
    pub max_concurrent_api_requests: usize,
    /// Seconds one GitHub API request may take.
    pub api_timeout_s: u64,
    /// Seconds a whole token check (every request and retry) may take
    /// before the client gets `internal_error`.
    pub check_timeout_s: u64,
    /// Seconds between checks of a connected client's token (through the
    /// cache): a revoked token, a lost membership or a changed tier takes
    /// effect on live connections within about this long.
    pub recheck_interval_s: u64,
    /// Rejected tokens allowed per client IP (IPv6: per /64) and minute;
    /// past them the client's upgrades are answered 429 without a check
    /// until the minute has passed. 0: no limit.
    pub max_failed_checks_per_ip: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            provider: AuthProviderKind::Github,
            github_api_url: "https://api.github.com".to_owned(),
            tokens_file: None,
            cache_ttl_s: 300,
            negative_cache_ttl_s: 30,
            cache_entries: 100_000,
            max_concurrent_api_requests: DEFAULT_MAX_CONCURRENT_API_REQUESTS,
            api_timeout_s: 10,
            check_timeout_s: DEFAULT_CHECK_TIMEOUT_S,
            recheck_interval_s: DEFAULT_RECHECK_INTERVAL_S,
            max_failed_checks_per_ip: DEFAULT_MAX_FAILED_CHECKS_PER_IP,
        }
    }
}

impl Section for AuthConfig {
    fn validate(&self) -> Vec<ConfigError> {
        let url = &self.github_api_url;
        [
            require(valid_api_url(url), "auth.github_api_url", || {
                format!("must be an http:// or https:// URL, got {url:?}")
            }),
            require(
                self.provider != AuthProviderKind::Static || self.tokens_file.is_some(),
                "auth.tokens_file",
                "is required when auth.provider = \"static\"",
            ),
            at_most("auth.cache_ttl_s", self.cache_ttl_s, 86_400, "seconds"),
            at_most(
                "auth.negative_cache_ttl_s",
                self.negative_cache_ttl_s,
                86_400,
                "seconds",
            ),
            require(
                self.cache_entries >= 1,
                "auth.cache_entries",
                "must be at least 1",
            ),
            range(
                "auth.max_concurrent_api_requests",
                self.max_concurrent_api_requests,
                1..=1024,
                "",
            ),
            range(
                "auth.check_timeout_s",
                self.check_timeout_s,
                1..=600,
                "seconds",
            ),
            range("auth.api_timeout_s", self.api_timeout_s, 1..=120, "seconds"),
            range(
                "auth.recheck_interval_s",
                self.recheck_interval_s,
                1..=86_400,
                "seconds",
            ),
            require(
                self.max_failed_checks_per_ip <= 10_000,
                "auth.max_failed_checks_per_ip",
                || {
                    format!(
                        "must be 0 (no limit) ..=10000 a minute, got {}",
                        self.max_failed_checks_per_ip
                    )
                },
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.tokens_file {
            resolve_path(base, p);
        }
    }
}

/// An `http://` or `https://` URL with a host.
fn valid_api_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split('/').next().unwrap_or("");
            !host.is_empty() && u.parse::<hyper::Uri>().is_ok()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::section_problem_keys;

    fn keys(text: &str) -> Vec<String> {
        section_problem_keys::<AuthConfig>(text)
    }

    #[test]
    fn static_provider_needs_a_tokens_file() {
        assert_eq!(keys("provider = \"static\"\n"), vec!["auth.tokens_file"]);
    }
}
