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
//! Answers map to [`AuthError`]: 401 -> `InvalidToken`; 403 (or 429) with
//! `X-RateLimit-Remaining: 0` or a `Retry-After` header (GitHub's primary and
//! secondary rate limits) -> `RateLimited`; other 403 -> `Forbidden`. 5xx
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

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::OrgSet;
use super::cache::{CacheStats, TokenCache};
use super::static_tokens::APP_LOGIN;
use super::{
    AuthError, AuthFuture, AuthProvider, CounterFamily, Identity, IdentityKind, Tier, Token,
};
use crate::auth::AuthConfig;
use crate::tier::TiersConfig;

/// Attempts per request (the first and two retries).
const ATTEMPTS: u32 = 3;

/// Backoff before the first retry; doubled for each further one, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Largest answer body read.
const MAX_BODY: usize = 4 << 20;

/// Most `/user/orgs` pages followed (100 orgs each).
const MAX_ORG_PAGES: usize = 100;

const USER_AGENT: &str = concat!("hookfan/", env!("CARGO_PKG_VERSION"));

/// Counters of the GitHub provider, for metrics. Plain numbers: no token and
/// no login anywhere.
///
/// Every check is exactly one of a cache hit, a negative cache hit, a cache
/// miss (it started an API round) or a single-flight join (it waited for the
/// round another check had started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GithubStats {
    /// Checks answered from a cached accepted token.
    pub cache_hits: u64,
    /// Checks answered from a cached rejected token (invalid or forbidden).
    pub negative_cache_hits: u64,
    /// Checks that started an API round.
    pub cache_misses: u64,
    /// Checks that joined an API round already in flight for the same token.
    pub single_flight_joins: u64,
    /// Tokens cached now (accepted and rejected).
    pub cache_entries: u64,
    /// Cache entries evicted to stay within `auth.cache_entries`.
    pub cache_evictions: u64,
    /// API rounds in flight now.
    pub rounds_in_flight: u64,
    /// API rounds that ended with the token accepted.
    pub rounds_accepted: u64,
    /// API rounds that ended with the token invalid (401).
    pub rounds_invalid: u64,
    /// API rounds that ended with the token forbidden (403).
    pub rounds_forbidden: u64,
    /// API rounds that ended rate limited.
    pub rounds_rate_limited: u64,
    /// API rounds that could not be completed (GitHub unavailable).
    pub rounds_unavailable: u64,
    /// HTTP requests answered 2xx.
    pub api_2xx: u64,
    /// HTTP requests answered 401.
    pub api_401: u64,
    /// HTTP requests answered 403.
    pub api_403: u64,
    /// HTTP requests answered 404.
    pub api_404: u64,
    /// HTTP requests answered 5xx.
    pub api_5xx: u64,
    /// HTTP requests answered with any other status (3xx, 429, other 4xx).
    pub api_other_status: u64,
    /// HTTP requests that timed out (`auth.api_timeout_s`).
    pub api_timeouts: u64,
    /// HTTP requests that failed without an answer (connect, TLS, reset).
    pub api_network_errors: u64,
    /// HTTP requests retried after a 5xx, timeout or network error.
    pub api_retries: u64,
    /// HTTP requests in flight now (at most `auth.max_concurrent_api_requests`).
    pub api_in_flight: u64,
    /// HTTP requests waiting for a free slot now.
    pub api_queued: u64,
}

#[derive(Default)]
struct Counters {
    rounds_accepted: AtomicU64,
    rounds_invalid: AtomicU64,
    rounds_forbidden: AtomicU64,
    rounds_rate_limited: AtomicU64,
    rounds_unavailable: AtomicU64,
    api_2xx: AtomicU64,
    api_401: AtomicU64,
    api_403: AtomicU64,
    api_404: AtomicU64,
    api_5xx: AtomicU64,
    api_other_status: AtomicU64,
    api_timeouts: AtomicU64,
    api_network_errors: AtomicU64,
    api_retries: AtomicU64,
    api_in_flight: AtomicU64,
    api_queued: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Decrements a gauge when dropped.
struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Gauge(c)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

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

/// `tiers.pro` and `tiers.flock`, lowercased, and `tiers.default_tier`.
struct TierLists {
    pro: HashSet<String>,
    flock: HashSet<String>,
    default: Tier,
}

impl TierLists {
    fn new(tiers: &TiersConfig) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect();
        Self {
            pro: lower(&tiers.pro),
            flock: lower(&tiers.flock),
            default: tiers.default_tier,
        }
    }
}

/// The API side: HTTP client, request cap, tiers, counters.
struct Api {
    client: HttpClient,
    /// Base URL without a trailing slash.
    base: String,
    base_uri: Uri,
    timeout: Duration,
    backoff_base: Duration,
    slots: Semaphore,
    /// Replaced on reload; applied to every check, cached ones included.
    tiers: RwLock<TierLists>,
    counters: Counters,
}

impl GithubProvider {
    /// A provider for `auth.github_api_url`, with the cache, timeout and
    /// request cap of `auth` and the tier lists of `tiers`. Building needs no
    /// runtime; checks must run within a Tokio runtime. The error says what
    /// is wrong with the URL or the trust roots, and never holds a token.
    pub fn new(auth: &AuthConfig, tiers: &TiersConfig) -> Result<Self, String> {
        let base = auth.github_api_url.trim_end_matches('/').to_owned();
        let base_uri: Uri = base
            .parse()
            .map_err(|e| format!("{:?} is not a URL: {e}", auth.github_api_url))?;
        let https = match base_uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{:?} must start with https:// or http://",
                    auth.github_api_url
                ));
            }
        };
        if base_uri.authority().is_none() {
            return Err(format!("{:?} has no host", auth.github_api_url));
        }
        if base_uri.query().is_some() {
            return Err(format!(
                "{:?} must not have a query string",
                auth.github_api_url
            ));
        }
        let tls = if https {
            crate::tls::client_config(&base)?
        } else {
            crate::tls::with_roots(rustls::RootCertStore::empty())?
        };
        let timeout = Duration::from_secs(auth.api_timeout_s.max(1));
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let slots = auth.max_concurrent_api_requests.max(1);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(slots)
            .build(connector);
        let api = Api {
            client,
            base,
            base_uri,
            timeout,
            backoff_base: BACKOFF_BASE,
            slots: Semaphore::new(slots),
            tiers: RwLock::new(TierLists::new(tiers)),
            counters: Counters::default(),
        };
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
        let CacheStats {
            hits,
            negative_hits,
            misses,
            joins,
            entries,
            evictions,
            in_flight,
        } = self.cache.stats();
        let c = &self.api.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GithubStats {
            cache_hits: hits,
            negative_cache_hits: negative_hits,
            cache_misses: misses,
            single_flight_joins: joins,
            cache_entries: entries,
            cache_evictions: evictions,
            rounds_in_flight: in_flight,
            rounds_accepted: get(&c.rounds_accepted),
            rounds_invalid: get(&c.rounds_invalid),
            rounds_forbidden: get(&c.rounds_forbidden),
            rounds_rate_limited: get(&c.rounds_rate_limited),
            rounds_unavailable: get(&c.rounds_unavailable),
            api_2xx: get(&c.api_2xx),
            api_401: get(&c.api_401),
            api_403: get(&c.api_403),
            api_404: get(&c.api_404),
            api_5xx: get(&c.api_5xx),
            api_other_status: get(&c.api_other_status),
            api_timeouts: get(&c.api_timeouts),
            api_network_errors: get(&c.api_network_errors),
            api_retries: get(&c.api_retries),
            api_in_flight: get(&c.api_in_flight),
            api_queued: get(&c.api_queued),
        }
    }

    #[cfg(test)]
    fn set_backoff_base(&mut self, base: Duration) {
        Arc::get_mut(&mut self.api)
            .expect("not shared yet")
            .backoff_base = base;
    }
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
                    id.tier = self.api.tier_of(&id);
                    id
                })
        })
    }

    /// Takes the tier lists and default tier of `tiers` (the rest of `auth`
    /// needs a restart).
    fn reload(&self, _auth: &AuthConfig, tiers: &TiersConfig) -> Result<(), String> {
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
        let s = self.stats();
        vec![
            CounterFamily {
                name: "auth_cache_lookups",
                help: "Token checks by how the cache answered them",
                samples: vec![
                    (vec![("result", "hit")], s.cache_hits),
                    (vec![("result", "negative_hit")], s.negative_cache_hits),
                    (vec![("result", "miss")], s.cache_misses),
                    (vec![("result", "joined")], s.single_flight_joins),
                ],
            },
            CounterFamily {
                name: "github_api_requests",
                help: "GitHub API requests by answer",
                samples: vec![
                    (vec![("status", "2xx")], s.api_2xx),
                    (vec![("status", "401")], s.api_401),
                    (vec![("status", "403")], s.api_403),
                    (vec![("status", "404")], s.api_404),
                    (vec![("status", "5xx")], s.api_5xx),
                    (vec![("status", "other")], s.api_other_status),
                    (vec![("status", "timeout")], s.api_timeouts),
                    (vec![("status", "network_error")], s.api_network_errors),
                ],
            },
            CounterFamily {
                name: "github_api_retries",
                help: "GitHub API requests retried after a 5xx, timeout or network error",
                samples: vec![(vec![], s.api_retries)],
            },
        ]
    }
}

/// An answer, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// GitHub's primary (`X-RateLimit-Remaining: 0`) or secondary
    /// (`Retry-After`) rate limit, on a 403 or 429.
    fn rate_limited(&self) -> bool {
        let spent = self
            .headers
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"0");
        let retry_after = self.headers.contains_key(header::RETRY_AFTER);
        match self.status {
            StatusCode::TOO_MANY_REQUESTS => true,
            StatusCode::FORBIDDEN => spent || retry_after,
            _ => false,
        }
    }

    /// The error of a 401 / 403 / 429 answer.
    fn auth_error(&self) -> Option<AuthError> {
        if self.rate_limited() {
            Some(AuthError::RateLimited)
        } else if self.status == StatusCode::UNAUTHORIZED {
            Some(AuthError::InvalidToken)
        } else if self.status == StatusCode::FORBIDDEN {
            Some(AuthError::Forbidden)
        } else {
            None
        }
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T, AuthError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            AuthError::Unavailable(format!("GitHub API {what}: unexpected answer: {e}"))
        })
    }
}

/// Why one attempt failed.
enum AttemptError {
    /// Worth another attempt (timeout, network error).
    Retry(String),
    /// Not worth another attempt.
    Fatal(AuthError),
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct Repository {
    owner: Login,
}

#[derive(Deserialize)]
struct InstallationRepositories {
    #[serde(default)]
    repositories: Vec<Repository>,
}

impl Api {
    /// One API round for `token`, with its outcome counted and logged.
    async fn round(&self, token: Token) -> Result<Identity, AuthError> {
        let out = self.identify(&token).await;
        let c = &self.counters;
        let fp = token.fingerprint();
        match &out {
            Ok(id) => {
                inc(&c.rounds_accepted);
                tracing::debug!(token = %fp, login = %id.login, kind = ?id.kind, orgs = id.orgs.len(), tier = id.tier.as_str(), "GitHub token accepted");
            }
            Err(AuthError::InvalidToken) => {
                inc(&c.rounds_invalid);
                tracing::debug!(token = %fp, "GitHub token rejected (401)");
            }
            Err(AuthError::Forbidden) => {
                inc(&c.rounds_forbidden);
                tracing::debug!(token = %fp, "GitHub token forbidden (403)");
            }
            Err(AuthError::RateLimited) => {
                inc(&c.rounds_rate_limited);
                tracing::warn!(token = %fp, "GitHub API rate limit exceeded for this token");
            }
            Err(AuthError::Unavailable(why)) => {
                inc(&c.rounds_unavailable);
                tracing::warn!(token = %fp, error = %why, "GitHub token check failed");
            }
        }
        out
    }

    async fn identify(&self, token: &Token) -> Result<Identity, AuthError> {
        let what = "/installation/repositories";
        let r = self
            .get(&format!("{}{what}?per_page=1", self.base), what, token)
            .await?;
        if r.status.is_success() {
            let repos: InstallationRepositories = r.json(what)?;
            let orgs: Vec<String> = repos
                .repositories
                .into_iter()
                .take(1)
                .map(|r| r.owner.login)
                .collect();
            let tier = self.tier(orgs.iter().map(String::as_str));
            return Ok(Identity {
                login: APP_LOGIN.to_owned(),
                orgs: OrgSet::new(orgs),
                tier,
                kind: IdentityKind::AppInstallation,
            });
        }
        // 403 (GitHub's answer to a user token here), 404 and anything else:
        // not an installation token, so a user token.
        if let Some(e @ (AuthError::InvalidToken | AuthError::RateLimited)) = r.auth_error() {
            return Err(e);
        }

        let what = "/user";
        let r = self
            .get(&format!("{}{what}", self.base), what, token)
            .await?;
        self.expect_success(&r, what)?;
        let login = r.json::<Login>(what)?.login;
        if login.is_empty() {
            return Err(AuthError::Unavailable(format!(
                "GitHub API {what}: answer without a login"
            )));
        }

        let what = "/user/orgs";
        let mut orgs = Vec::new();
        let mut url = format!("{}{what}?per_page=100", self.base);
        for page in 1.. {
            let r = self.get(&url, what, token).await?;
            self.expect_success(&r, what)?;
            orgs.extend(r.json::<Vec<Login>>(what)?.into_iter().map(|o| o.login));
            let Some(next) = r
                .headers
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
            else {
                break;
            };
            if page >= MAX_ORG_PAGES {
                return Err(AuthError::Unavailable(format!(
                    "GitHub API {what}: more than {MAX_ORG_PAGES} pages"
                )));
            }
            if !self.same_origin(next) {
                return Err(AuthError::Unavailable(format!(
                    "GitHub API {what}: the next page is on another server ({}); not following it",
                    next.parse::<Uri>()
                        .ok()
                        .and_then(|u| u.authority().map(|a| a.to_string()))
                        .unwrap_or_else(|| "not a URL".to_owned())
                )));
            }
            url = next.to_owned();
        }
        let tier =
            self.tier(std::iter::once(login.as_str()).chain(orgs.iter().map(String::as_str)));
        Ok(Identity {
            login,
            orgs: OrgSet::new(orgs),
            tier,
            kind: IdentityKind::User,
        })
    }

    /// The error of a non-2xx answer to `/user` or `/user/orgs`.
    fn expect_success(&self, r: &Reply, what: &str) -> Result<(), AuthError> {
        if r.status.is_success() {
            return Ok(());
        }
        Err(r.auth_error().unwrap_or_else(|| {
            AuthError::Unavailable(format!(
                "GitHub API {what}: unexpected answer {}{}",
                r.status,
                if r.status == StatusCode::NOT_FOUND {
                    " (is auth.github_api_url the API's base URL?)"
                } else {
                    ""
                }
            ))
        }))
    }

    /// The highest tier among `logins` and `tiers.default_tier`.
    fn tier<'a>(&self, logins: impl Iterator<Item = &'a str>) -> Tier {
        let lists = self.tiers.read().expect("tier lists lock");
        let mut tier = lists.default;
        for l in logins {
            let l = l.to_ascii_lowercase();
            if lists.flock.contains(&l) {
                return Tier::Flock;
            }
            if lists.pro.contains(&l) {
                tier = tier.max(Tier::Pro);
            }
        }
        tier
    }

    /// The tier of `id` under the current lists: of its login (users) and
    /// its organizations.
    fn tier_of(&self, id: &Identity) -> Tier {
        let login = (id.kind == IdentityKind::User).then_some(id.login.as_str());
        self.tier(login.into_iter().chain(id.orgs.names()))
    }

    fn same_origin(&self, url: &str) -> bool {
        url.parse::<Uri>().is_ok_and(|u| {
            u.scheme() == self.base_uri.scheme() && u.authority() == self.base_uri.authority()
        })
    }

    /// GET `url`, retrying 5xx answers, timeouts and network errors.
    async fn get(&self, url: &str, what: &str, token: &Token) -> Result<Reply, AuthError> {
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                inc(&self.counters.api_retries);
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            match self.attempt(url, token).await {
                Ok(r) if r.status.is_server_error() => last = format!("answered {}", r.status),
                Ok(r) => return Ok(r),
                Err(AttemptError::Retry(why)) => last = why,
                Err(AttemptError::Fatal(e)) => return Err(e),
            }
            tracing::debug!(token = %token.fingerprint(), request = what, attempt, error = %last, "GitHub API request failed");
        }
        Err(AuthError::Unavailable(format!(
            "GitHub API {what}: {last} ({ATTEMPTS} attempts)"
        )))
    }

    /// Delay before retry `n` (1-based): base * 2^(n-1), less up to half.
    fn backoff(&self, n: u32) -> Duration {
        let full = self.backoff_base.saturating_mul(1 << (n - 1).min(16));
        let ms = full.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(fastrand::u64(ms / 2..=ms))
    }

    /// One request, within the request cap and the timeout.
    async fn attempt(&self, url: &str, token: &Token) -> Result<Reply, AttemptError> {
        let c = &self.counters;
        let uri: Uri = url.parse().map_err(|e| {
            AttemptError::Fatal(AuthError::Unavailable(format!("bad request URL: {e}")))
        })?;
        let mut auth =
            HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                AttemptError::Fatal(AuthError::Unavailable(
                    "the token cannot be sent in a header".to_owned(),
                ))
            })?;
        auth.set_sensitive(true);
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, auth)
            .header(header::ACCEPT, "application/vnd.github+json")
            .header(header::USER_AGENT, USER_AGENT)
            .header("x-github-api-version", "2022-11-28")
            .body(Empty::new())
            .map_err(|e| {
                AttemptError::Fatal(AuthError::Unavailable(format!("bad request: {e}")))
            })?;

        let permit = {
            let _queued = Gauge::up(&c.api_queued);
            self.slots.acquire().await.map_err(|_| {
                AttemptError::Fatal(AuthError::Unavailable("shutting down".to_owned()))
            })?
        };
        let _in_flight = Gauge::up(&c.api_in_flight);
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| AttemptError::Retry(error_chain(&e)))?;
            let status = resp.status();
            inc(match status.as_u16() {
                200..=299 => &c.api_2xx,
                401 => &c.api_401,
                403 => &c.api_403,
                404 => &c.api_404,
                500..=599 => &c.api_5xx,
                _ => &c.api_other_status,
            });
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        AttemptError::Fatal(AuthError::Unavailable(format!(
                            "answer larger than {MAX_BODY} bytes"
                        )))
                    } else {
                        AttemptError::Retry(format!("reading the answer: {}", error_chain(&*e)))
                    }
                })?
                .to_bytes();
            Ok(Reply {
                status,
                headers: parts.headers,
                body,
            })
        };
        let out = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => {
                inc(&c.api_timeouts);
                return Err(AttemptError::Retry(format!(
                    "no answer within {} s",
                    self.timeout.as_secs()
                )));
            }
        };
        drop(permit);
        if let Err(AttemptError::Retry(_)) = &out {
            inc(&c.api_network_errors);
        }
        out
    }
}

/// An error with its sources, `outer: inner: ...`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<&str> {
    for part in header.split(',') {
        let Some((url, params)) = part
            .trim()
            .strip_prefix('<')
            .and_then(|p| p.split_once('>'))
        else {
            continue;
        };
        let next = params.split(';').any(|p| {
            let p = p.trim();
            p.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("rel="))
                && p[4..]
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if next {
            return Some(url.trim());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn link_header() {
        let h = r#"<https://api.github.com/user/orgs?per_page=100&page=2>; rel="next", <https://api.github.com/user/orgs?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            next_link(h),
            Some("https://api.github.com/user/orgs?per_page=100&page=2")
        );
        let h = r#"<https://x/?page=1>; rel="prev", <https://x/?page=1>; rel="first""#;
        assert_eq!(next_link(h), None);
        assert_eq!(
            next_link(r#"<https://x/?page=4>;rel=next"#),
            Some("https://x/?page=4")
        );
        assert_eq!(
            next_link(r#"<https://x/?page=4>; type="a"; REL="last next""#),
            Some("https://x/?page=4")
        );
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("garbage; rel=\"next\""), None);
    }

    #[test]
    fn tiers_take_the_highest_of_login_and_orgs() {
        let p = provider("http://127.0.0.1:1", &["Acme", "alice"], &["BigCorp"]);
        let t = |names: &[&str]| p.api.tier(names.iter().copied());
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
        let t = |names: &[&str]| p.api.tier(names.iter().copied());
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
        for bad in ["ftp://x", "x", "http://", "https://h/?q=1"] {
            assert!(
                GithubProvider::new(&auth(bad), &TiersConfig::default()).is_err(),
                "{bad}"
            );
        }
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
