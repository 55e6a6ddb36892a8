//! Forwarding webhooks to an HTTP server of one's own (`hookfan subscribe
//! --forward URL`), as a relay like smee would: each event's payload is
//! POSTed byte for byte with GitHub's headers, and signed again with a
//! local secret, since GitHub's signature was made with the server's.
//!
//! [`Forwarder::send`] makes one attempt and says how it went;
//! [`ForwardBackoff`] spaces the attempts after a failure. The caller
//! decides what to retry (see [`Attempt`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use super::ReceivedEvent;
// The headers the server keeps with a payload are the ones forwarded; any
// other is left out, so that a frame cannot set `Host`, a signature or
// anything else on the request.
use crate::payloads::FORWARDED_HEADERS;

/// The signature header, as GitHub names it.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Why forwarding cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Not an `http://` or `https://` URL with a host.
    #[error("--forward {url:?}: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The secret file cannot be read.
    #[error("cannot read the forward secret file {}: {source}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file holds no secret.
    #[error("the forward secret file {} holds no secret (it is empty or every line is blank)", path.display())]
    NoSecret {
        /// The file.
        path: PathBuf,
    },
    /// No TLS client config for an `https://` URL.
    #[error("{0}")]
    Tls(String),
}

/// The key the forwarded requests are signed with. Its `Debug` output is
/// masked: it stays out of logs.
#[derive(Clone)]
pub struct ForwardSecret(Vec<u8>);

impl std::fmt::Debug for ForwardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardSecret(****)")
    }
}

impl ForwardSecret {
    /// The first secret of the file at `path`, read as `webhook.secret_file`
    /// is (its first line that is not blank, byte for byte, without the
    /// line end): the same file can serve both. Errors name the file,
    /// never its content.
    pub fn from_file(path: &Path) -> Result<ForwardSecret, ForwardError> {
        let raw = std::fs::read(path).map_err(|source| ForwardError::SecretFile {
            path: path.to_path_buf(),
            source,
        })?;
        let lines = crate::checks::secret_lines(&raw);
        let (_, first) = lines.first().ok_or_else(|| ForwardError::NoSecret {
            path: path.to_path_buf(),
        })?;
        Ok(ForwardSecret(first.to_vec()))
    }

    /// `sha256=<hex HMAC-SHA256 of body>`, as GitHub signs.
    pub fn sign(&self, body: &[u8]) -> String {
        crate::webhook::sign(&self.0, body)
    }
}

/// `url` if it is `http://` or `https://` with a host.
pub fn forward_url(url: &str) -> Result<Uri, ForwardError> {
    let bad = |why: &str| ForwardError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(bad("only http:// and https:// URLs can be forwarded to"));
    }
    let uri: Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx: delivered.
    Delivered(u16),
    /// Any other answer but a 5xx (a 4xx, or a redirect, which is not
    /// followed): retrying would get the same answer.
    Rejected(u16),
    /// A 5xx, no connection, or no answer in time: worth retrying.
    Failed(String),
}

/// The delays between attempts: `base`, doubling with each failure, at
/// most `cap`; deterministic, so that a receiver back up is tried again
/// within `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardBackoff {
    /// The first delay.
    pub base: Duration,
    /// The largest.
    pub cap: Duration,
}

impl Default for ForwardBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl ForwardBackoff {
    /// The delay after failed attempt `failures` (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }
}

/// POSTs payloads to one URL, over a kept-alive connection.
pub struct Forwarder {
    url: Uri,
    secret: Option<ForwardSecret>,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("url", &self.url)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl Forwarder {
    /// A forwarder to `url` (see [`forward_url`]), signing with `secret`
    /// when there is one, each attempt given `timeout` for the whole
    /// exchange.
    pub fn new(
        url: &str,
        secret: Option<ForwardSecret>,
        timeout: Duration,
    ) -> Result<Forwarder, ForwardError> {
        let url = forward_url(url)?;
        let tls = if url.scheme_str() == Some("https") {
            crate::tls::client_config("the --forward server")
        } else {
            crate::tls::with_roots(rustls::RootCertStore::empty())
        }
        .map_err(|e| ForwardError::Tls(e.to_string()))?;
        Ok(Forwarder {
            client: crate::gh_api::client(tls, timeout, 1),
            url,
            secret,
            timeout,
        })
    }

    /// The URL forwarded to.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// One POST of `body` (an event's payload) with the event's
    /// [`FORWARDED_HEADERS`](crate::FORWARDED_HEADERS) and, with a secret, [`SIGNATURE_HEADER`]; the
    /// answer's body is read and dropped, so that the connection is kept.
    pub async fn send(&self, e: &ReceivedEvent, body: Bytes) -> Attempt {
        let req = self.request(e, body);
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            Ok::<u16, Box<dyn std::error::Error + Send + Sync>>(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Attempt::Failed(format!("no answer within {} s", self.timeout.as_secs_f64())),
            Ok(Err(err)) => Attempt::Failed(crate::gh_api::error_chain(err.as_ref())),
            Ok(Ok(s)) if (200..300).contains(&s) => Attempt::Delivered(s),
            Ok(Ok(s)) if s >= 500 => Attempt::Failed(format!("answered {s}")),
            Ok(Ok(s)) => Attempt::Rejected(s),
        }
    }

    /// The request for `e`: its headers that are forwarded and valid,
    /// `Content-Type: application/json` when it has none, and the
    /// signature.
    fn request(&self, e: &ReceivedEvent, body: Bytes) -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::post(self.url.clone());
        let headers = req.headers_mut().expect("a valid builder");
        for (name, value) in &e.headers {
            let Some(known) = FORWARDED_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
                headers.insert(*known, v);
            }
        }
        if !headers.contains_key(hyper::header::CONTENT_TYPE) {
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
        }
        if let Some(secret) = &self.secret {
            let sig = secret.sign(&body);
            headers.insert(
                SIGNATURE_HEADER,
                sig.parse().expect("hex is a header value"),
            );
        }
        req.body(Full::new(body)).expect("a valid request")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_with_a_host() {
        for good in [
            "http://localhost:3000/webhook",
            "https://dev.example/hooks?x=1",
            "http://127.0.0.1:8080",
            "http://[::1]:3000/",
        ] {
            assert!(forward_url(good).is_ok(), "{good}");
        }
        let why = |u: &str| forward_url(u).unwrap_err().to_string();
        assert_eq!(
            why("ftp://h/x"),
            r#"--forward "ftp://h/x": only http:// and https:// URLs can be forwarded to"#
        );
        assert_eq!(
            why("ws://localhost:3000"),
            r#"--forward "ws://localhost:3000": only http:// and https:// URLs can be forwarded to"#
        );
        assert_eq!(
            why("localhost:3000/webhook"),
            r#"--forward "localhost:3000/webhook": only http:// and https:// URLs can be forwarded to"#
        );
        assert!(why("/webhook").contains("only http:// and https://"));
        assert!(why("http://").starts_with(r#"--forward "http://": not a URL"#));
        assert!(
            why("http://exa mple").contains("not a URL"),
            "{}",
            why("http://exa mple")
        );
    }

    #[test]
    fn the_backoff_doubles_from_half_a_second_to_30_s() {
        let b = ForwardBackoff::default();
        let ms: Vec<u128> = (1..=9).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30), "no overflow");
        assert_eq!(b.delay(0), Duration::from_millis(500));
    }

    #[test]
    fn the_secret_is_the_files_first_line_and_never_shown() {
        let dir = std::env::temp_dir().join(format!("hookfan-fwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "\n  \nIt's a Secret to Everybody\r\nold\n").unwrap();
        let s = ForwardSecret::from_file(&path).unwrap();
        // GitHub's documented test vector.
        assert_eq!(
            s.sign(b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(format!("{s:?}"), "ForwardSecret(****)");
        std::fs::write(&path, " \n").unwrap();
        let e = ForwardSecret::from_file(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("holds no secret (it is empty or every line is blank)"),
            "{e}"
        );
        let missing = dir.join("missing");
        let e = ForwardSecret::from_file(&missing).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the forward secret file "), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn requests_carry_only_the_forwarded_headers_and_the_signature() {
        let dir = std::env::temp_dir().join(format!("hookfan-fwd-h-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s"), "k\n").unwrap();
        let secret = ForwardSecret::from_file(&dir.join("s")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let f =
            Forwarder::new("http://127.0.0.1:9/w", Some(secret), Duration::from_secs(1)).unwrap();
        let frame = r#"{"url":"u","headers":{"x-github-event":"push","Host":"evil","X-Hub-Signature-256":"sha256=00","User-Agent":"GitHub-Hookshot/1"},"payload":{"a":1}}"#;
        let e = ReceivedEvent::parse(frame).unwrap();
        let body = Bytes::copy_from_slice(e.payload().unwrap().as_bytes());
        let req = f.request(&e, body.clone());
        let h = req.headers();
        assert_eq!(h["x-github-event"], "push");
        assert_eq!(h["user-agent"], "GitHub-Hookshot/1");
        assert_eq!(h["content-type"], "application/json");
        assert!(h.get("host").is_none());
        assert_eq!(
            h[SIGNATURE_HEADER],
            crate::webhook::sign(b"k", br#"{"a":1}"#)
        );
        assert_eq!(h.len(), 4, "{h:?}");
        assert_eq!(req.method(), hyper::Method::POST);
        assert_eq!(req.uri(), "http://127.0.0.1:9/w");
        // Nothing listens on port 9 (discard): a connection failure is
        // worth retrying.
        match f.send(&e, body).await {
            Attempt::Failed(why) => assert!(!why.is_empty()),
            other => panic!("{other:?}"),
        }
        let unsigned =
            Forwarder::new("http://127.0.0.1:9/w", None, Duration::from_secs(1)).unwrap();
        let req = unsigned.request(&e, Bytes::new());
        assert!(req.headers().get(SIGNATURE_HEADER).is_none());
    }
}
