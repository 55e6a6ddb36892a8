//! The HTTP side of the GitHub provider: one GET with its retries, the
//! request cap and the timeout, and the answer read whole.

use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::stats::{Counters, Gauge, inc};
use super::tiers::TierLists;
use crate::auth::{AuthError, Token};
use crate::gh_api::{self, error_chain};

/// Attempts per request (the first and two retries).
const ATTEMPTS: u32 = 3;

/// Backoff before the first retry; doubled for each further one, with jitter.
pub(super) const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Largest answer body read.
const MAX_BODY: usize = 4 << 20;

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The API side: HTTP client, request cap, tiers, counters.
pub(super) struct Api {
    client: HttpClient,
    /// Base URL without a trailing slash.
    pub(super) base: String,
    base_uri: Uri,
    timeout: Duration,
    pub(super) backoff_base: Duration,
    slots: Semaphore,
    /// Replaced on reload; applied to every check, cached ones included.
    pub(super) tiers: RwLock<TierLists>,
    pub(super) counters: Counters,
}

impl Api {
    /// An API at `base` (`base_uri` parsed), with a connection pool over
    /// `tls`, `slots` requests at a time, each within `timeout`.
    pub(super) fn new(
        base: String,
        base_uri: Uri,
        tls: rustls::ClientConfig,
        timeout: Duration,
        slots: usize,
        tiers: TierLists,
    ) -> Self {
        Api {
            client: gh_api::client(tls, timeout, slots),
            base,
            base_uri,
            timeout,
            backoff_base: BACKOFF_BASE,
            slots: Semaphore::new(slots),
            tiers: RwLock::new(tiers),
            counters: Counters::default(),
        }
    }

    /// The tier lists of now.
    pub(super) fn tiers(&self) -> RwLockReadGuard<'_, TierLists> {
        self.tiers.read().expect("tier lists lock")
    }

    /// Whether `url` is on the API's scheme, host and port.
    pub(super) fn same_origin(&self, url: &str) -> bool {
        url.parse::<Uri>().is_ok_and(|u| {
            u.scheme() == self.base_uri.scheme() && u.authority() == self.base_uri.authority()
        })
    }

    /// GET `url`, retrying 5xx answers, timeouts and network errors.
    pub(super) async fn get(
        &self,
        url: &str,
        what: &str,
        token: &Token,
    ) -> Result<Reply, AuthError> {
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
    pub(super) fn backoff(&self, n: u32) -> Duration {
        let full = self.backoff_base.saturating_mul(1 << (n - 1).min(16));
        let ms = full.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(fastrand::u64(ms / 2..=ms))
    }

    /// One request, within the request cap and the timeout.
    async fn attempt(&self, url: &str, token: &Token) -> Result<Reply, AttemptError> {
        let c = &self.counters;
        let req = request(url, token)?;
        let permit = {
            let _queued = Gauge::up(&c.api_queued);
            self.slots.acquire().await.map_err(|_| {
                AttemptError::Fatal(AuthError::Unavailable("shutting down".to_owned()))
            })?
        };
        let _in_flight = Gauge::up(&c.api_in_flight);
        let out = match tokio::time::timeout(self.timeout, self.exchange(req)).await {
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

    /// Sends `req` and reads the answer, counted by status.
    async fn exchange(&self, req: Request<Empty<Bytes>>) -> Result<Reply, AttemptError> {
        let c = &self.counters;
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
    }
}

/// A GET of `url` with `token` in the `Authorization` header, marked
/// sensitive so that it is never logged.
fn request(url: &str, token: &Token) -> Result<Request<Empty<Bytes>>, AttemptError> {
    let uri: Uri = url.parse().map_err(|e| {
        AttemptError::Fatal(AuthError::Unavailable(format!("bad request URL: {e}")))
    })?;
    let mut auth = HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
        AttemptError::Fatal(AuthError::Unavailable(
            "the token cannot be sent in a header".to_owned(),
        ))
    })?;
    auth.set_sensitive(true);
    Request::get(uri)
        .header(header::AUTHORIZATION, auth)
        .header(header::ACCEPT, gh_api::ACCEPT)
        .header(header::USER_AGENT, gh_api::USER_AGENT)
        .header(gh_api::API_VERSION_HEADER, gh_api::API_VERSION)
        .body(Empty::new())
        .map_err(|e| AttemptError::Fatal(AuthError::Unavailable(format!("bad request: {e}"))))
}

/// An answer, read whole.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// GitHub's primary (`X-RateLimit-Remaining: 0`) or secondary
    /// (`Retry-After`) rate limit, on a 403 or 429.
    fn rate_limited(&self) -> bool {
        gh_api::rate_limited(self.status, &self.headers)
    }

    /// The error of a 401 / 403 / 429 answer.
    pub(super) fn auth_error(&self) -> Option<AuthError> {
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

    pub(super) fn json<T: for<'de> Deserialize<'de>>(&self, what: &str) -> Result<T, AuthError> {
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
