//! Webhook intake: `POST /webhook`, with PROTOCOL.md's order of checks.
//!
//! Verify (HMAC, constant time), parse once, hand the event to its
//! [`EventSink`] (the local hub, or a cluster's shared stream) and answer;
//! the handler never waits on subscribers. Intake knows nothing of the
//! broker: the sink is all it sees.

mod body;
mod commit_cache;
mod expiring;
mod extract;
mod parser;
mod signature;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashSet;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};

use crate::event::EventParts;
use crate::metrics::Metrics;
use body::{BodyError, read_limited};
pub use commit_cache::{CommitCache, CommitCacheStats, PrInfo};
pub use parser::ParseError;
pub(crate) use parser::parse;
pub use signature::{WebhookVerifier, sign};

/// A boxed future, so that sinks can be trait objects.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SinkError>> + Send + 'a>>;

/// Why a sink could not take an event. The webhook is answered 503, which
/// GitHub records as a failed delivery that can be redelivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError(pub String);

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SinkError {}

/// Where intake hands the events it builds: the [`Hub`](crate::Hub) itself
/// on a single node, or the stream a cluster's nodes share.
pub trait EventSink: Send + Sync + 'static {
    /// Takes an event; resolves to its sequence number once it is stored
    /// and ordered (the webhook is answered 200 only then).
    fn submit(&self, event: EventParts) -> SinkFuture<'_, u64>;

    /// Whether other nodes submit to the same stream, so that this node's
    /// commit cache may not yet know of a pull request just submitted
    /// elsewhere (see [`EventSink::sync`]).
    fn is_shared(&self) -> bool {
        false
    }

    /// Resolves once every event stored before the call has been applied
    /// on this node (its commit cache has learnt from it).
    fn sync(&self) -> SinkFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

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
    /// 503: the sink could not store the event.
    Unavailable,
}

impl Outcome {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::ReadFailed | Self::InvalidJson => StatusCode::BAD_REQUEST,
            Self::TypeNotAllowed | Self::NoUrl | Self::Broadcast => StatusCode::OK,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
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
            Self::Unavailable => "service unavailable: the event could not be stored\n",
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
            Self::Unavailable => "unavailable",
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
    /// Most commit SHAs the commit cache remembers (0 disables it).
    pub commit_cache_entries: usize,
    /// How long a commit cache entry stays valid.
    pub commit_cache_ttl: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1 << 20,
            allowed_events: None,
            commit_cache_entries: 100_000,
            commit_cache_ttl: Duration::from_secs(86_400),
        }
    }
}

/// `POST /webhook`: what an embedder routes GitHub's deliveries to.
///
/// Checks in PROTOCOL.md's order (method 405, allowed type, size 413 read
/// under the limit, signature 401, JSON 400), parses the body once and
/// submits the event to its sink, then answers (503 when the sink could not
/// store it); it never waits on clients. Safe to share between connections (`Send + Sync`); call
/// [`WebhookEndpoint::handle`] from a tokio runtime.
pub struct WebhookEndpoint {
    verifier: WebhookVerifier,
    max_payload: u64,
    /// `None` allows every event type.
    allowed: Option<AHashSet<String>>,
    sink: Arc<dyn EventSink>,
    cache: Arc<CommitCache>,
    metrics: Arc<Metrics>,
}

/// Event types whose URL may come from the commit cache.
const RESOLVED_THROUGH_CACHE: [&str; 4] = ["check_run", "check_suite", "status", "workflow_run"];

/// Longest delivery id kept; GitHub's are 36-character UUIDs.
const MAX_DELIVERY_ID: usize = 128;

impl WebhookEndpoint {
    /// An endpoint submitting to `sink` (e.g. a [`Hub`](crate::Hub)) the
    /// webhooks signed with `secret` (an empty secret refuses every webhook
    /// with 401), counting them in `metrics`.
    pub fn new(
        sink: Arc<dyn EventSink>,
        secret: &[u8],
        options: WebhookOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = Arc::new(CommitCache::new(
            options.commit_cache_entries,
            options.commit_cache_ttl,
        ));
        metrics.watch_commit_cache(cache.clone());
        Self {
            verifier: WebhookVerifier::new(secret),
            max_payload: options.max_payload_bytes,
            allowed: options.allowed_events.map(|a| a.into_iter().collect()),
            sink,
            cache,
            metrics,
        }
    }

    /// The commit cache: head SHA -> pull request, learned from
    /// `pull_request` events and used to resolve check events.
    pub fn commit_cache(&self) -> &Arc<CommitCache> {
        &self.cache
    }

    /// Parses a verified webhook body once (in place) into the parts of an
    /// event, recording a pull request's head in the commit cache and
    /// resolving a check event through it. `Ok(None)`: a valid webhook whose
    /// event carries no URL.
    pub fn parse(
        &self,
        kind: &str,
        delivery_id: &str,
        body: &mut [u8],
    ) -> Result<Option<EventParts>, ParseError> {
        parse(kind, delivery_id, body, &self.cache).map(|p| p.event)
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
        let (outcome, seq) = self.process(req, &kind, &delivery).await;
        let took = started.elapsed();
        self.metrics.webhook(&kind, outcome.status().as_u16(), took);
        let elapsed_us = took.as_micros() as u64;
        match seq {
            Some(seq) => tracing::debug!(
                kind = %kind, delivery = %delivery, seq, elapsed_us,
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
    ) -> (Outcome, Option<u64>) {
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
        // When other nodes feed the same stream, a check event's pull
        // request may have been stored elsewhere a moment ago: on a cache
        // miss, wait until this node has applied everything stored so far,
        // then parse again (from a copy: parsing works in place).
        let retry = (self.sink.is_shared() && RESOLVED_THROUGH_CACHE.contains(&kind))
            .then(|| body.to_vec());
        let mut parsed = match parse(kind, delivery, &mut body, &self.cache) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "webhook refused");
                return (Outcome::InvalidJson, None);
            }
        };
        if parsed.cache_missed
            && let Some(mut copy) = retry
        {
            if let Err(e) = self.sink.sync().await {
                tracing::warn!(error = %e, kind, delivery, "webhook not stored: the stream is unavailable");
                return (Outcome::Unavailable, None);
            }
            // The same body parsed a moment ago: it cannot fail now.
            if let Ok(p) = parse(kind, delivery, &mut copy, &self.cache) {
                parsed = p;
            }
        }
        let Some(event) = parsed.event else {
            return (Outcome::NoUrl, None);
        };
        match self.sink.submit(event).await {
            Ok(seq) => (Outcome::Broadcast, Some(seq)),
            Err(e) => {
                tracing::warn!(error = %e, kind, delivery, "webhook not stored: the stream is unavailable");
                (Outcome::Unavailable, None)
            }
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
pub(crate) fn sanitize_delivery_id(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_DELIVERY_ID)
        .collect()
}
