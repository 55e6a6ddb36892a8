//! Webhook intake: `POST /webhook`, with PROTOCOL.md's order of checks.
//!
//! Verify (HMAC, constant time), parse once, build the event, hand it to
//! the hub and answer; the handler never waits on subscribers.

mod body;
pub mod commit_cache;
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
use commit_cache::CommitCache;
pub use parser::{ParseError, WebhookParser};
pub use signature::sign;

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
    /// 503: the server is shutting down.
    Draining,
}

impl Outcome {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::ReadFailed | Self::InvalidJson => StatusCode::BAD_REQUEST,
            Self::TypeNotAllowed | Self::NoUrl | Self::Broadcast => StatusCode::OK,
            Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
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
            Self::Draining => "shutting down\n",
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
            Self::Draining => "draining",
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

/// The webhook endpoint's state.
pub(crate) struct Intake {
    parser: WebhookParser,
    max_payload: u64,
    /// `None` allows every event type.
    allowed: Option<AHashSet<String>>,
    hub: Hub,
    metrics: Arc<Metrics>,
}

/// Longest delivery id kept; GitHub's are 36-character UUIDs.
const MAX_DELIVERY_ID: usize = 128;

impl Intake {
    pub fn new(
        secret: &[u8],
        max_payload: u64,
        allowed: Option<Vec<String>>,
        cache: Arc<CommitCache>,
        hub: Hub,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            parser: WebhookParser::new(secret, cache),
            max_payload,
            allowed: allowed.map(|a| a.into_iter().collect()),
            hub,
            metrics,
        }
    }

    /// Handles one request to `/webhook`. A broadcast webhook's log line is
    /// written once the shards have routed it (with the clients it matched);
    /// every other outcome is logged here.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
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
        outcome.response()
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
        match self
            .parser
            .parse(kind, delivery, signature.as_deref(), &mut body)
        {
            Err(ParseError::BadSignature) => (Outcome::BadSignature, None),
            Err(e) => {
                tracing::debug!(?e, "webhook body is not a JSON object");
                (Outcome::InvalidJson, None)
            }
            Ok(None) => (Outcome::NoUrl, None),
            Ok(Some(event)) => (Outcome::Broadcast, Some(self.hub.broadcast(event))),
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
