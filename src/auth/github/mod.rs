//! The GitHub auth provider: checks a token against the GitHub REST API
//! (GitHub.com or GitHub Enterprise), with a token cache in front.
//!
//! A check is one *API round*:
//! 1. `GET /installation/repositories`. Success: an app installation token;
//!    the account is `app[installation]` and its org the owner of the first
//!    repository. 401: the token is invalid (stop). 403 with the rate limit
//!    spent: rate limited (stop). Any other answer (GitHub answers 403 or
//!    404 to a user token here): a user token, go on.
//! 2. `GET /user` for the login, then `GET /user/orgs?per_page=100`, every
//!    page (the `Link` header's `rel="next"`), for the orgs.
//!
//! Answers map to [`AuthError`](super::AuthError): 401 -> `InvalidToken`;
//! 403 (or 429) with `X-RateLimit-Remaining: 0` or a `Retry-After` header
//! (GitHub's primary and secondary rate limits) -> `RateLimited`; other 403
//! -> `Forbidden`. 5xx
//! answers, network errors and timeouts (`auth.api_timeout_s` per request)
//! are retried, 3 attempts in all with exponential backoff and jitter, then
//! give `Unavailable` with a message that names the request and the failure.
//!
//! At most `auth.max_concurrent_api_requests` requests are in flight at once;
//! more wait their turn. The token is sent only in the `Authorization`
//! header (marked sensitive), never logged (logs carry
//! [`Token::fingerprint`]) and never part of an error.
//!
//! Tiers come from `tiers.pro` / `tiers.flock`: a user is of the highest tier
//! among its login and its orgs; an app installation of its org's tier.
//!
//! Here: the provider and its setup. `api`: one request, with retries, the
//! request cap and the timeout; `identify`: the API round; `tiers`: tier
//! resolution; `stats`: counters, [`GithubStats`] and the metric families.

mod api;
mod identify;
mod stats;
mod tiers;

use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;

use self::api::Api;
pub use self::stats::GithubStats;
use self::tiers::TierLists;
use super::cache::TokenCache;
use super::{AuthFuture, AuthProvider, CounterFamily, Identity, ReloadError, Token};
use crate::auth::AuthConfig;
use crate::tier::TiersConfig;

/// Why a [`GithubProvider`] cannot be built: what is wrong with
/// `auth.github_api_url`, or with the trust roots. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL does not parse.
    #[error("{url:?} is not a URL: {source}")]
    NotAUrl {
        /// The URL as configured.
        url: String,
        /// Why it does not parse.
        source: hyper::http::uri::InvalidUri,
    },
    /// The scheme is neither `https` nor `http`.
    #[error("{url:?} must start with https:// or http://")]
    Scheme {
        /// The URL as configured.
        url: String,
    },
    /// The URL names no host.
    #[error("{url:?} has no host")]
    NoHost {
        /// The URL as configured.
        url: String,
    },
    /// The URL has a query string.
    #[error("{url:?} must not have a query string")]
    Query {
        /// The URL as configured.
        url: String,
    },
    /// No TLS client could be set up (e.g. no usable root certificate).
    #[error(transparent)]
    Tls(Box<dyn std::error::Error + Send + Sync>),
}

/// Checks tokens against the GitHub REST API, with a token cache.
pub struct GithubProvider {
    api: Arc<Api>,
    cache: Arc<TokenCache<Identity>>,
}

impl std::fmt::Debug for GithubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubProvider")
            .field("base", &self.api.base)
            .finish_non_exhaustive()
    }
}

impl GithubProvider {
    /// A provider for `auth.github_api_url`, with the cache, timeout and
    /// request cap of `auth` and the tier lists of `tiers`. Building needs no
    /// runtime; checks must run within a Tokio runtime. The error says what
    /// is wrong with the URL or the trust roots, and never holds a token.
    pub fn new(auth: &AuthConfig, tiers: &TiersConfig) -> Result<Self, SetupError> {
        let (base, base_uri, https) = parse_base(&auth.github_api_url)?;
        let tls = if https {
            crate::tls::client_config(&base)
        } else {
            crate::tls::with_roots(rustls::RootCertStore::empty())
        }
        .map_err(|e| SetupError::Tls(Box::new(e)))?;
        let api = Api::new(
            base,
            base_uri,
            tls,
            Duration::from_secs(auth.api_timeout_s.max(1)),
            auth.max_concurrent_api_requests.max(1),
            TierLists::new(tiers),
        );
        Ok(Self {
            api: Arc::new(api),
            cache: Arc::new(TokenCache::new(
                Duration::from_secs(auth.cache_ttl_s),
                Duration::from_secs(auth.negative_cache_ttl_s),
                auth.cache_entries,
            )),
        })
    }

    /// The base URL requests go to (without a trailing slash).
    pub fn base_url(&self) -> &str {
        &self.api.base
    }

    /// Current counters.
    pub fn stats(&self) -> GithubStats {
        let mut stats = GithubStats::from(self.cache.stats());
        self.api.counters.copy_into(&mut stats);
        stats
    }

    #[cfg(test)]
    fn set_backoff_base(&mut self, base: Duration) {
        Arc::get_mut(&mut self.api)
            .expect("not shared yet")
            .backoff_base = base;
    }
}

/// `auth.github_api_url` without its trailing slash, parsed, and whether it
/// is `https`.
fn parse_base(url: &str) -> Result<(String, Uri, bool), SetupError> {
    let base = url.trim_end_matches('/').to_owned();
    let base_uri: Uri = base.parse().map_err(|source| SetupError::NotAUrl {
        url: url.to_owned(),
        source,
    })?;
    let https = match base_uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(SetupError::Scheme {
                url: url.to_owned(),
            });
        }
    };
    if base_uri.authority().is_none() {
        return Err(SetupError::NoHost {
            url: url.to_owned(),
        });
    }
    if base_uri.query().is_some() {
        return Err(SetupError::Query {
            url: url.to_owned(),
        });
    }
    Ok((base, base_uri, https))
}

impl AuthProvider for GithubProvider {
    fn authenticate<'a>(&'a self, token: &'a Token) -> AuthFuture<'a> {
        Box::pin(async move {
            self.cache
                .get_or_lookup(token.sha256(), || {
                    let api = Arc::clone(&self.api);
                    let token = token.clone();
                    async move { api.round(token).await }
                })
                .await
                .map(|mut id| {
                    // Cached identities follow reloaded tier lists too.
                    id.tier = self.api.tiers().tier_of(&id);
                    id
                })
        })
    }

    /// Takes the tier lists and default tier of `tiers` (the rest of `auth`
    /// needs a restart).
    fn reload(&self, _auth: &AuthConfig, tiers: &TiersConfig) -> Result<(), ReloadError> {
        *self.api.tiers.write().expect("tier lists lock") = TierLists::new(tiers);
        tracing::info!(
            pro = tiers.pro.len(),
            flock = tiers.flock.len(),
            default_tier = tiers.default_tier.as_str(),
            "tier lists reloaded"
        );
        Ok(())
    }

    fn metrics(&self) -> Vec<CounterFamily> {
        self.stats().families()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthError, Tier};

    fn provider(url: &str, pro: &[&str], flock: &[&str]) -> GithubProvider {
        let auth = AuthConfig {
            github_api_url: url.to_owned(),
            ..AuthConfig::default()
        };
        let tiers = TiersConfig {
            pro: pro.iter().map(|s| s.to_string()).collect(),
            flock: flock.iter().map(|s| s.to_string()).collect(),
            ..TiersConfig::default()
        };
        GithubProvider::new(&auth, &tiers).unwrap()
    }

    #[test]
    fn tiers_take_the_highest_of_login_and_orgs() {
        let p = provider("http://127.0.0.1:1", &["Acme", "alice"], &["BigCorp"]);
        let t = |names: &[&str]| p.api.tiers().tier(names.iter().copied());
        assert_eq!(t(&["dave"]), Tier::Free);
        assert_eq!(t(&["ALICE"]), Tier::Pro);
        assert_eq!(t(&["bob", "acme"]), Tier::Pro);
        assert_eq!(t(&["alice", "bigcorp", "acme"]), Tier::Flock);
        assert_eq!(t(&[]), Tier::Free);
    }

    #[test]
    fn the_default_tier_is_a_floor() {
        let p = provider("http://127.0.0.1:1", &[], &["BigCorp"]);
        p.reload(
            &AuthConfig::default(),
            &TiersConfig {
                default_tier: Tier::Pro,
                flock: vec!["BigCorp".into()],
                ..TiersConfig::default()
            },
        )
        .unwrap();
        let t = |names: &[&str]| p.api.tiers().tier(names.iter().copied());
        assert_eq!(t(&["dave"]), Tier::Pro);
        assert_eq!(t(&[]), Tier::Pro);
        assert_eq!(t(&["dave", "bigcorp"]), Tier::Flock);
    }

    #[test]
    fn urls() {
        let p = provider("http://127.0.0.1:8/api/v3/", &[], &[]);
        assert_eq!(p.base_url(), "http://127.0.0.1:8/api/v3");
        assert!(
            p.api
                .same_origin("http://127.0.0.1:8/api/v3/user/orgs?page=2")
        );
        assert!(
            !p.api
                .same_origin("https://127.0.0.1:8/api/v3/user/orgs?page=2")
        );
        assert!(!p.api.same_origin("http://evil.example/user/orgs?page=2"));
        let auth = |u: &str| AuthConfig {
            github_api_url: u.to_owned(),
            ..AuthConfig::default()
        };
        let problem = |bad: &str| {
            GithubProvider::new(&auth(bad), &TiersConfig::default())
                .expect_err(bad)
                .to_string()
        };
        for bad in ["ftp://x", "x", "http://", "https://h/?q=1"] {
            let text = problem(bad);
            assert!(text.starts_with(&format!("{bad:?} ")), "{text}");
        }
        assert_eq!(
            problem("ftp://x"),
            r#""ftp://x" must start with https:// or http://"#
        );
        assert_eq!(
            problem("https://h/?q=1"),
            r#""https://h/?q=1" must not have a query string"#
        );
    }

    #[test]
    fn https_uses_the_system_roots() {
        // Only meaningful where the system has CA certificates.
        if rustls_native_certs::load_native_certs().certs.is_empty() {
            return;
        }
        let p = provider("https://api.github.com", &[], &[]);
        assert_eq!(p.base_url(), "https://api.github.com");
    }

    #[test]
    fn backoff_grows_with_jitter() {
        let mut p = provider("http://127.0.0.1:1", &[], &[]);
        p.set_backoff_base(Duration::from_millis(100));
        for _ in 0..100 {
            let d1 = p.api.backoff(1).as_millis();
            let d2 = p.api.backoff(2).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            assert!((100..=200).contains(&d2), "{d2}");
        }
    }

    #[tokio::test]
    async fn unreachable_api_is_unavailable_without_the_token() {
        // A port nobody listens on: connection refused, three times.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut p = provider(&format!("http://127.0.0.1:{port}"), &[], &[]);
        p.set_backoff_base(Duration::from_millis(1));
        let token = Token::new(format!("ghp_{}", "q".repeat(36)));
        let err = p.authenticate(&token).await.unwrap_err();
        let AuthError::Unavailable(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("/installation/repositories"), "{msg}");
        assert!(msg.contains("3 attempts"), "{msg}");
        assert!(!msg.contains("qqqq"), "{msg}");
        let s = p.stats();
        assert_eq!((s.api_network_errors, s.api_retries), (3, 2), "{s:?}");
        assert_eq!((s.rounds_unavailable, s.cache_entries), (1, 0), "{s:?}");
        assert_eq!((s.api_in_flight, s.api_queued), (0, 0), "{s:?}");
    }
}
