//! The two calls a sweep makes as the App: list the App's webhook
//! deliveries a page at a time, and ask for one to be redelivered; each
//! answer sorted into what the sweep does next.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use super::SweepError;
use crate::gh_api::{self, error_chain};
use crate::github_app::GithubApp;

/// Largest answer read (a page of 100 deliveries is about 50 KB).
const MAX_BODY: usize = 4 << 20;

/// Wait when GitHub says "rate limited" without saying how long.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);

/// One attempt at delivering a webhook, as GitHub lists it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Delivery {
    /// This attempt's id (what a redelivery names).
    pub id: u64,
    /// The webhook's delivery id (`X-GitHub-Delivery`), shared by its attempts.
    pub guid: String,
    /// When GitHub made the attempt, RFC 3339.
    pub delivered_at: String,
    /// The HTTP status hookfan answered (0: no answer).
    #[serde(default)]
    pub status_code: u16,
}

impl Delivery {
    /// Whether hookfan answered this attempt 2xx.
    pub(super) fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    /// When the attempt was made; `None` if GitHub's time does not parse.
    pub(super) fn at(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.delivered_at).ok()
    }
}

/// A page of deliveries (newest first) and the next page's URL.
pub(super) struct Page {
    pub deliveries: Vec<Delivery>,
    pub next: Option<String>,
}

/// The App's side of the API at `base` (no trailing slash).
pub(super) struct AppApi {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    base_uri: Uri,
    app: GithubApp,
    timeout: Duration,
}

impl AppApi {
    pub(super) fn new(
        app: GithubApp,
        base: &str,
        tls: rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Self, SweepError> {
        let base = base.trim_end_matches('/').to_owned();
        let base_uri = base
            .parse()
            .map_err(|e| SweepError::Failed(format!("bad API URL {base:?}: {e}")))?;
        Ok(AppApi {
            client: gh_api::client(tls, timeout, 2),
            base,
            base_uri,
            app,
            timeout,
        })
    }

    /// The first page's URL.
    pub(super) fn first_page(&self) -> String {
        format!("{}/app/hook/deliveries?per_page=100", self.base)
    }

    /// The page at `url`.
    pub(super) async fn list(&self, url: &str) -> Result<Page, SweepError> {
        let (headers, body) = self.call(Method::GET, url).await?;
        let deliveries = serde_json::from_slice(&body).map_err(|e| {
            SweepError::Failed(format!("GitHub's list of deliveries does not parse: {e}"))
        })?;
        let next = next_link(&headers);
        if let Some(n) = &next
            && !self.same_origin(n)
        {
            // The token goes nowhere but the configured API.
            return Err(SweepError::Failed(format!(
                "the next page is on another host: {n}"
            )));
        }
        Ok(Page { deliveries, next })
    }

    /// Asks GitHub to deliver attempt `id` again.
    pub(super) async fn redeliver(&self, id: u64) -> Result<(), SweepError> {
        let url = format!("{}/app/hook/deliveries/{id}/attempts", self.base);
        self.call(Method::POST, &url).await.map(drop)
    }

    fn same_origin(&self, url: &str) -> bool {
        url.parse::<Uri>().is_ok_and(|u| {
            u.scheme() == self.base_uri.scheme() && u.authority() == self.base_uri.authority()
        })
    }

    /// One request as the App, within the timeout; a 2xx answer's headers
    /// and body, or what the sweep should make of the answer.
    async fn call(&self, method: Method, url: &str) -> Result<(HeaderMap, Bytes), SweepError> {
        let req = Request::builder()
            .method(method)
            .uri(url)
            .header(
                header::AUTHORIZATION,
                self.app.jwt(SystemTime::now()).header(),
            )
            .header(header::ACCEPT, gh_api::ACCEPT)
            .header(header::USER_AGENT, gh_api::USER_AGENT)
            .header(gh_api::API_VERSION_HEADER, gh_api::API_VERSION)
            .body(Empty::new())
            .map_err(|e| SweepError::Failed(format!("bad request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SweepError::Failed(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| SweepError::Failed(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        let (status, headers, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                SweepError::Failed(format!("no answer within {} s", self.timeout.as_secs()))
            })??;
        classify(status, &headers, &body)?;
        Ok((headers, body))
    }
}

/// What a non-2xx answer means for the sweep.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), SweepError> {
    if status.is_success() {
        return Ok(());
    }
    if gh_api::rate_limited(status, headers) {
        let wait = gh_api::retry_after(headers, SystemTime::now()).unwrap_or(DEFAULT_BACKOFF);
        return Err(SweepError::RateLimited(wait));
    }
    match status.as_u16() {
        401 | 403 | 404 => Err(SweepError::Refused {
            status: status.as_u16(),
            message: github_message(body),
        }),
        _ => Err(SweepError::Failed(format!("GitHub answered {status}"))),
    }
}

/// GitHub's own `message` in an error answer, at most 200 characters of it.
fn github_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Answer {
        message: String,
    }
    serde_json::from_slice::<Answer>(body)
        .map(|a| a.message.chars().take(200).collect())
        .unwrap_or_default()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), r#"rel="next""# | "rel=next"));
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gh_api::tests::headers;

    #[test]
    fn next_link_among_others() {
        let h = headers(&[(
            "link",
            r#"<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_9>; rel="next", <https://api.github.com/x?page=1>; rel="prev""#,
        )]);
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_9")
        );
        let last = headers(&[("link", r#"<https://h/x?p=1>; rel="prev""#)]);
        assert_eq!(next_link(&last), None);
        assert_eq!(next_link(&headers(&[])), None);
    }

    #[test]
    fn answers_sorted() {
        let none = headers(&[]);
        assert!(classify(StatusCode::ACCEPTED, &none, b"").is_ok());
        let refused = classify(
            StatusCode::UNAUTHORIZED,
            &none,
            br#"{"message":"A JSON web token could not be decoded"}"#,
        );
        assert!(matches!(
            refused,
            Err(SweepError::Refused { status: 401, ref message })
                if message == "A JSON web token could not be decoded"
        ));
        let limited = classify(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "3")]),
            b"",
        );
        assert!(matches!(limited, Err(SweepError::RateLimited(d)) if d == Duration::from_secs(3)));
        let limited = classify(StatusCode::TOO_MANY_REQUESTS, &none, b"");
        assert!(matches!(limited, Err(SweepError::RateLimited(d)) if d == DEFAULT_BACKOFF));
        assert!(matches!(
            classify(StatusCode::BAD_GATEWAY, &none, b""),
            Err(SweepError::Failed(_))
        ));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, &none, b"not json"),
            Err(SweepError::Refused { status: 404, .. })
        ));
    }

    #[test]
    fn delivery_times_and_success() {
        let d: Delivery = serde_json::from_str(
            r#"{"id":1,"guid":"g","delivered_at":"2019-06-03T00:57:16Z","status_code":202,"redelivery":false}"#,
        )
        .unwrap();
        assert!(d.succeeded());
        let at = d.at().unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_559_523_436
        );
    }
}
