//! What every caller of GitHub's REST API shares: the HTTP client over
//! rustls, the headers GitHub asks for, how it says "rate limited" and
//! for how long, and errors spelt with their causes. Used by the token
//! checks (`auth/github/`) and the redelivery sweeper (`redelivery/`).
//!
//! A leaf: no crate imports.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use hyper::header::{self, HeaderMap};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// hookfan's `User-Agent` (GitHub refuses requests without one).
pub(crate) const USER_AGENT: &str = concat!("hookfan/", env!("CARGO_PKG_VERSION"));

/// The media type GitHub recommends in `Accept`.
pub(crate) const ACCEPT: &str = "application/vnd.github+json";

/// The REST API version hookfan is written against.
pub(crate) const API_VERSION: &str = "2022-11-28";

/// The header naming [`API_VERSION`].
pub(crate) const API_VERSION_HEADER: &str = "x-github-api-version";

/// An HTTP/1.1 client for `https://` (over `tls`) and `http://` URLs,
/// connecting within `connect_timeout` and keeping up to `idle_per_host`
/// connections for reuse.
pub(crate) fn client<B>(
    tls: rustls::ClientConfig,
    connect_timeout: std::time::Duration,
    idle_per_host: usize,
) -> Client<HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(idle_per_host)
        .build(connector)
}

/// GitHub's primary (`X-RateLimit-Remaining: 0`) or secondary
/// (`Retry-After`) rate limit, on a 403 or 429.
pub(crate) fn rate_limited(status: StatusCode, headers: &HeaderMap) -> bool {
    let spent = headers
        .get("x-ratelimit-remaining")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"0");
    let retry_after = headers.contains_key(header::RETRY_AFTER);
    match status {
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::FORBIDDEN => spent || retry_after,
        _ => false,
    }
}

/// How long a rate-limited caller should wait, as GitHub says it:
/// `Retry-After` (seconds) first, else the primary limit's reset time
/// (`X-RateLimit-Reset`, Unix seconds) as of `now`; `None` when neither
/// is given.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let number = |name| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if let Some(s) = number(header::RETRY_AFTER.as_str()) {
        return Some(Duration::from_secs(s));
    }
    let reset = UNIX_EPOCH + Duration::from_secs(number("x-ratelimit-reset")?);
    Some(reset.duration_since(now).unwrap_or_default())
}

/// An error with its sources, `outer: inner: ...`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header map of `pairs`, for the tests of the API's callers too.
    pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limits_primary_and_secondary() {
        let none = headers(&[]);
        assert!(rate_limited(StatusCode::TOO_MANY_REQUESTS, &none));
        assert!(!rate_limited(StatusCode::FORBIDDEN, &none));
        let spent = headers(&[("x-ratelimit-remaining", "0")]);
        assert!(rate_limited(StatusCode::FORBIDDEN, &spent));
        let secondary = headers(&[("retry-after", "60")]);
        assert!(rate_limited(StatusCode::FORBIDDEN, &secondary));
        assert!(!rate_limited(StatusCode::UNAUTHORIZED, &secondary));
    }

    #[test]
    fn retry_after_then_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let both = headers(&[("retry-after", "7"), ("x-ratelimit-reset", "1100")]);
        assert_eq!(retry_after(&both, now), Some(Duration::from_secs(7)));
        let reset = headers(&[("x-ratelimit-reset", "1100")]);
        assert_eq!(retry_after(&reset, now), Some(Duration::from_secs(100)));
        let past = headers(&[("x-ratelimit-reset", "900")]);
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers(&[("retry-after", "x")]), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }
}
