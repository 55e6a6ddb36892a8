//! Webhook intake: `POST /webhook`, with PROTOCOL.md's order of checks.
//!
//! Verify (HMAC, constant time), parse once, build the event, hand it to
//! the hub and answer; the handler never waits on subscribers.

mod body;
mod commit_cache;
mod extract;
mod parser;
mod signature;

use std::sync::Arc;
use std::time::Instant;

use ahash::AHashSet;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};

use crate::broker::{BroadcastReceipt, Hub};
use crate::metrics::Metrics;
use body::{BodyError, read_limited};
pub use commit_cache::{CommitCache, CommitCacheStats, PrInfo};
pub use parser::ParseError;
pub(crate) use parser::parse;
pub use signature::{WebhookVerifier, sign};

/// How intake answered a request: one variant per outcome of PROTOCOL.md's
/// order of checks, mapped to a status code in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 405: not a POST.
    MethodNotAllowed,
    /// 200, not broadcast: the event type is not in the allowed list.
    TypeNotAllowed,
    /// 413: declared or actual body over the limit.
    TooLarge,
    /// 401: signature missing, malformed or wrong (or no secret).
    BadSignature,
    /// 400: the body could not be read.
    ReadFailed,
    /// 400: the body is not JSON, or not a JSON object.
    InvalidJson,
    /// 200, not broadcast: the event carries no URL.
    NoUrl,
    /// 200 `OK`: broadcast.
    Broadcast,
}

impl Outcome {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::ReadFailed | Self::InvalidJson => StatusCode::BAD_REQUEST,
            Self::TypeNotAllowed | Self::NoUrl | Self::Broadcast => StatusCode::OK,
        }
    }

    fn body(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method not allowed\n",
            Self::TooLarge => "payload too large\n",
            Self::BadSignature => "unauthorized\n",
            Self::ReadFailed | Self::InvalidJson => "bad request\n",
            Self::TypeNotAllowed => "ignored: event type not allowed\n",
            Self::NoUrl => "ignored: event carries no pull request URL\n",
            Self::Broadcast => "OK",
        }
    }

    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::TooLarge => "too_large",
            Self::BadSignature => "bad_signature",
            Self::ReadFailed => "read_failed",
            Self::InvalidJson => "invalid_json",
            Self::NoUrl => "no_url",
            Self::Broadcast => "broadcast",
        }
    }

    pub fn response(self) -> Response<Full<Bytes>> {
        let mut r = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        if self == Self::MethodNotAllowed {
            r = r.header(header::ALLOW, "POST");
        }
        r.body(Full::new(Bytes::from_static(self.body().as_bytes())))
            .expect("valid response")
    }
}

/// Settings of a [`WebhookEndpoint`].
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Largest accepted body, in bytes (larger: 413).
    pub max_payload_bytes: u64,
    /// Event types accepted; `None` accepts every type. Others are answered
    /// 200 and dropped.
    pub allowed_events: Option<Vec<String>>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1 << 20,
            allowed_events: None,
        }
    }
}

/// `POST /webhook`: what an embedder routes GitHub's deliveries to.
///
/// Checks in PROTOCOL.md's order (method 405, allowed type, size 413 read
/// under the limit, signature 401, JSON 400), parses the body once and
/// broadcasts the event on its hub, then answers; it never waits on
/// clients. Safe to share between connections (`Send + Sync`); call
/// [`WebhookEndpoint::handle`] from a tokio runtime.
pub struct WebhookEndpoint {
    verifier: WebhookVerifier,
    max_payload: u64,
    /// `None` allows every event type.
    allowed: Option<AHashSet<String>>,
    hub: Hub,
    metrics: Arc<Metrics>,
}

/// Longest delivery id kept; GitHub's are 36-character UUIDs.
const MAX_DELIVERY_ID: usize = 128;

impl WebhookEndpoint {
    /// An endpoint broadcasting on `hub` the webhooks signed with `secret`
    /// (an empty secret refuses every webhook with 401), counting them in
    /// `metrics`.
    pub fn new(hub: Hub, secret: &[u8], options: WebhookOptions, metrics: Arc<Metrics>) -> Self {
        Self {
            verifier: WebhookVerifier::new(secret),
            max_payload: options.max_payload_bytes,
            allowed: options.allowed_events.map(|a| a.into_iter().collect()),
            hub,
            metrics,
        }
    }

    /// Handles one request to `/webhook`. A broadcast webhook's log line is
    /// written once the shards have routed it (with the clients it matched);
    /// every other outcome is logged here.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.answer(req).await.response()
    }

    /// [`WebhookEndpoint::handle`], returning the outcome (for the daemon's
    /// drain handling and tests).
    async fn answer(&self, req: Request<Incoming>) -> Outcome {
        let started = Instant::now();
        let kind = header_str(&req, "x-github-event").to_owned();
        let delivery = sanitize_delivery_id(header_str(&req, "x-github-delivery"));
        let (outcome, receipt) = self.process(req, &kind, &delivery).await;
        let took = started.elapsed();
        self.metrics.webhook(&kind, outcome.status().as_u16(), took);
        let elapsed_us = took.as_micros() as u64;
        match receipt {
            Some(r) => tracing::debug!(
                kind = %kind, delivery = %delivery, seq = r.seq, shards = r.shards, elapsed_us,
                "webhook accepted"
            ),
            None => tracing::info!(
                kind = %kind, delivery = %delivery, outcome = outcome.as_str(),
                status = outcome.status().as_u16(), elapsed_us,
                "webhook not broadcast"
            ),
        }
        outcome
    }

    async fn process(
        &self,
        req: Request<Incoming>,
        kind: &str,
        delivery: &str,
    ) -> (Outcome, Option<BroadcastReceipt>) {
        if req.method() != Method::POST {
            return (Outcome::MethodNotAllowed, None);
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(kind)
        {
            return (Outcome::TypeNotAllowed, None);
        }
        let signature = req
            .headers()
            .get("x-hub-signature-256")
            .map(|v| v.as_bytes().to_vec());
        let declared = req.body().size_hint().exact().or_else(|| {
            req.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        });
        let mut body = match read_limited(req.into_body(), declared, self.max_payload).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => return (Outcome::TooLarge, None),
            Err(BodyError::Read(e)) => {
                tracing::debug!(error = %e, "webhook body read failed");
                return (Outcome::ReadFailed, None);
            }
        };
        if !self.verifier.verify(signature.as_deref(), &body) {
            return (Outcome::BadSignature, None);
        }
        match self.hub.broadcast_webhook(kind, delivery, &mut body) {
            Err(e) => {
                tracing::debug!(error = %e, "webhook refused");
                (Outcome::InvalidJson, None)
            }
            Ok(None) => (Outcome::NoUrl, None),
            Ok(Some(receipt)) => (Outcome::Broadcast, Some(receipt)),
        }
    }
}

fn header_str<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Keeps a delivery id printable and short: it is echoed to clients and logs.
fn sanitize_delivery_id(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_DELIVERY_ID)
        .collect()
}
