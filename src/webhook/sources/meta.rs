//! `GET {auth.github_api_url}/meta`, unauthenticated: GitHub's (or GitHub
//! Enterprise's) `hooks` ranges, the addresses its webhooks come from.
//! One request within `auth.api_timeout_s`, its answer read up to a bound;
//! an answer without ranges, or with an entry that is not a CIDR, is a
//! failure (the ranges in force stay).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use ipnet::IpNet;
use serde::Deserialize;

use crate::gh_api::{self, error_chain};

/// Largest answer read (GitHub's is a few hundred KB, most of it ranges
/// of other services).
const MAX_BODY: usize = 4 << 20;

/// Why the refresh of GitHub's ranges cannot start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RefresherError {
    /// No trusted roots to reach the API with.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// `auth.github_api_url` does not make a `/meta` URL.
    #[error("bad API URL {url:?}: {reason}")]
    ApiUrl {
        /// The URL as configured.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// Why a fetch failed, and how long GitHub asked to wait (rate limited).
#[derive(Debug)]
pub(super) struct MetaError {
    pub message: String,
    pub wait: Option<Duration>,
}

impl MetaError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            wait: None,
        }
    }
}

/// The `/meta` endpoint of one API.
pub(super) struct MetaApi {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    url: Uri,
    timeout: Duration,
}

impl MetaApi {
    /// `/meta` of the API at `base` (`auth.github_api_url`), over `tls`,
    /// each request within `timeout`.
    pub(super) fn new(
        base: &str,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Self, RefresherError> {
        let url = format!("{}/meta", base.trim_end_matches('/'));
        let url =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| RefresherError::ApiUrl {
                    url: base.to_owned(),
                    reason: e.to_string(),
                })?;
        Ok(Self {
            client: gh_api::client(tls, timeout, 1),
            url,
            timeout,
        })
    }

    /// The `hooks` ranges GitHub publishes now.
    pub(super) async fn hooks(&self) -> Result<Vec<IpNet>, MetaError> {
        let req = Request::get(self.url.clone())
            .header(header::ACCEPT, gh_api::ACCEPT)
            .header(header::USER_AGENT, gh_api::USER_AGENT)
            .header(gh_api::API_VERSION_HEADER, gh_api::API_VERSION)
            .body(Empty::new())
            .map_err(|e| MetaError::new(format!("bad request: {e}")))?;
        let (status, headers, body) = tokio::time::timeout(self.timeout, self.exchange(req))
            .await
            .map_err(|_| {
                MetaError::new(format!("no answer within {} s", self.timeout.as_secs()))
            })??;
        if gh_api::rate_limited(status, &headers) {
            return Err(MetaError {
                message: format!("rate limited (GitHub answered {status})"),
                wait: gh_api::retry_after(&headers, SystemTime::now()),
            });
        }
        if !status.is_success() {
            return Err(MetaError::new(format!("GitHub answered {status}")));
        }
        hooks_of(&body).map_err(MetaError::new)
    }

    async fn exchange(
        &self,
        req: Request<Empty<Bytes>>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), MetaError> {
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| MetaError::new(error_chain(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| MetaError::new(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

/// The `hooks` ranges of a `/meta` answer (its other keys ignored): at
/// least one, every one a CIDR.
fn hooks_of(body: &[u8]) -> Result<Vec<IpNet>, String> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        hooks: Option<Vec<String>>,
    }
    let meta: Meta =
        serde_json::from_slice(body).map_err(|e| format!("the answer does not parse: {e}"))?;
    let hooks = meta.hooks.unwrap_or_default();
    if hooks.is_empty() {
        return Err("the answer lists no \"hooks\" ranges".to_owned());
    }
    hooks
        .iter()
        .map(|h| {
            h.parse()
                .map_err(|_| format!("\"hooks\" entry {h:?} is not a CIDR"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_read_and_the_rest_ignored() {
        let body = br#"{"verifiable_password_authentication":false,
            "hooks":["192.30.252.0/22","185.199.108.0/22","140.82.112.0/20",
                     "143.55.64.0/20","2a0a:a440::/29","2606:50c0::/32"],
            "web":["1.2.3.0/24"],"domains":{"website":["*.github.com"]}}"#;
        let hooks = hooks_of(body).unwrap();
        assert_eq!(hooks.len(), 6);
        assert_eq!(hooks[0].to_string(), "192.30.252.0/22");
        assert_eq!(hooks[5].to_string(), "2606:50c0::/32");
    }

    #[test]
    fn no_ranges_or_a_bad_one_is_a_failure() {
        for (body, want) in [
            (&br#"{"hooks":[]}"#[..], "lists no \"hooks\" ranges"),
            (br#"{"web":["1.2.3.0/24"]}"#, "lists no \"hooks\" ranges"),
            (br#"{"hooks":null}"#, "lists no \"hooks\" ranges"),
            (
                br#"{"hooks":["192.30.252.0/22","192.30.252.0/33"]}"#,
                "\"hooks\" entry \"192.30.252.0/33\" is not a CIDR",
            ),
            (br#"{"hooks":[7]}"#, "does not parse"),
            (b"<html>", "does not parse"),
        ] {
            let e = hooks_of(body).unwrap_err();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
