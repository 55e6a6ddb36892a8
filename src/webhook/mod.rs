//! Webhook intake: `POST /webhook`, with PROTOCOL.md's order of checks.
//!
//! Verify (HMAC, constant time), parse once, hand the event to its
//! [`EventSink`] (the local hub, or a cluster's shared stream) and answer;
//! the handler never waits on subscribers. Intake knows nothing of the
//! broker: the sink is all it sees.
//!
//! A request is refused from its head alone when it can be (sender's
//! address, size, signature header, capacity), so that senders who declare
//! much and send little hold no memory; its body is read under a deadline,
//! into a buffer that grows with what arrives, within a shared byte budget.
//! A delivery id already accepted is answered `duplicate` and not broadcast
//! again.

mod body;
mod capacity;
mod commit_cache;
mod config;
mod dedup;
mod expiring;
mod extract;
mod keys;
mod metrics;
mod outcome;
mod parser;
mod signature;
mod sources;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashSet;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, header};
use ipnet::IpNet;

use crate::event::EventParts;
use crate::limits::{FailedChecks, client_ip, client_key};
use crate::metrics::Metrics;
use crate::payloads::WebhookPayload;
use body::{BodyError, check_declared, read_limited};
pub(crate) use capacity::Capacity;
use capacity::{Admitted, Full as CapacityFull};
pub use commit_cache::{CommitCache, CommitCacheStats, PrInfo};
pub use config::{SECRET_ENV, SecretSource, WebhookConfig, WebhookSecret};
use dedup::Claimed;
pub(crate) use dedup::DeliveryIds;
pub use extract::ParseError;
pub use keys::WebhookKeys;
use metrics::IntakeFigures;
use outcome::Outcome;
pub(crate) use parser::parse;
pub use signature::{Signature, SignatureError, WebhookVerifier, sign};
pub use sources::AllowedSource;
pub(crate) use sources::Refresher;
pub(crate) use sources::RefresherError;
use sources::{Refused, Sources};

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

/// What a sink did with an event it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The event's sequence number (for a duplicate, the original's).
    pub seq: u64,
    /// The sink already held an event of the same delivery id (a cluster's
    /// stream, within its duplicate window): it is not broadcast again.
    pub duplicate: bool,
}

/// Where intake hands the events it builds: the [`Hub`](crate::Hub) itself
/// on a single node, or the stream a cluster's nodes share.
pub trait EventSink: Send + Sync + 'static {
    /// Takes an event; resolves once it is stored and ordered (the webhook
    /// is answered 200 only then), saying whether it was a duplicate.
    fn submit(&self, event: EventParts) -> SinkFuture<'_, Stored>;

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
    /// How long a body may take, counted from the moment the request head
    /// has been received (longer: 408, connection closed). Also the
    /// `Retry-After` of a 503 for capacity: by then every body being read
    /// has been completed or cut off.
    pub body_timeout: Duration,
    /// Most webhook requests in progress at once, from the capacity check
    /// to the answer (more: 503).
    pub max_concurrent_requests: usize,
    /// Most bytes reserved at once for the bodies of those requests: a
    /// declared length whole, a body of unknown length as its buffer grows
    /// (more: 503).
    pub max_inflight_bytes: u64,
    /// Most delivery ids remembered to refuse redeliveries (0 disables it).
    pub dedup_entries: usize,
    /// How long a delivery id is remembered.
    pub dedup_window: Duration,
    /// Proxies whose `X-Forwarded-For` gives the sender's IP (none), as
    /// for WebSocket clients (`limits.trusted_proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// Requests with a missing, malformed or wrong signature allowed per
    /// sender IP and minute before its requests are answered 429 unread
    /// (30); 0: no limit. Valid deliveries are never counted.
    pub max_bad_signatures_per_ip_per_minute: u32,
    /// Most senders the bad-signature table remembers (100,000).
    pub rate_table_entries: usize,
    /// The senders accepted (others: 403); empty accepts every sender.
    /// [`AllowedSource::Github`]'s ranges are fetched by the daemon's
    /// server, which runs the refresh; until they are known, a sender
    /// outside the CIDRs is answered 503.
    pub allowed_sources: Vec<AllowedSource>,
    /// How often GitHub's ranges are fetched again.
    pub allowed_sources_refresh: Duration,
    /// Keep each webhook's body and headers with its event, for the
    /// clients that receive payloads (`[payloads] enabled`).
    pub keep_payloads: bool,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            allowed_events: None,
            commit_cache_entries: 100_000,
            commit_cache_ttl: Duration::from_secs(86_400),
            body_timeout: Duration::from_secs(10),
            max_concurrent_requests: 64,
            max_inflight_bytes: 256 << 20,
            dedup_entries: 100_000,
            dedup_window: Duration::from_secs(259_200),
            trusted_proxies: Vec::new(),
            max_bad_signatures_per_ip_per_minute: DEFAULT_MAX_BAD_SIGNATURES_PER_IP,
            rate_table_entries: crate::limits::config::DEFAULT_RATE_TABLE_ENTRIES,
            allowed_sources: Vec::new(),
            allowed_sources_refresh: Duration::from_secs(3600),
            keep_payloads: false,
        }
    }
}

/// Default `webhook.max_payload_bytes`: 25 MiB, GitHub's own limit.
pub(crate) const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 25 << 20;

/// Default `webhook.max_bad_signatures_per_ip_per_minute`.
pub(crate) const DEFAULT_MAX_BAD_SIGNATURES_PER_IP: u32 = 30;

/// `POST /webhook`: what an embedder routes GitHub's deliveries to.
///
/// Checks in PROTOCOL.md's order: before the body is read, method 405,
/// sender's address 403 (503 while GitHub's ranges are unknown), allowed
/// type, declared size 413, signature header 401 and capacity 503;
/// then the body, read under a deadline (408) and the size limit (413);
/// then signature 401, JSON 400 and the delivery id (`duplicate`). It
/// parses the body once and submits the event to its sink, then answers
/// (503 when the sink could not store it); it never waits on clients. Safe
/// to share between connections (`Send + Sync`); call
/// [`WebhookEndpoint::handle`] from a tokio runtime. Its secrets can be
/// changed while it serves, through [`WebhookEndpoint::keys`].
pub struct WebhookEndpoint {
    /// The secrets in force; each request takes them once.
    keys: Arc<WebhookKeys>,
    max_payload: u64,
    /// `None` allows every event type.
    allowed: Option<AHashSet<String>>,
    sink: Arc<dyn EventSink>,
    cache: Arc<CommitCache>,
    /// Delivery ids accepted, to answer redeliveries `duplicate`.
    deliveries: Arc<DeliveryIds>,
    /// Requests in progress and the bytes reserved for their bodies.
    capacity: Arc<Capacity>,
    body_timeout: Duration,
    /// `Retry-After` of a 503 for capacity: `body_timeout`, in seconds.
    retry_after: HeaderValue,
    trusted_proxies: Vec<IpNet>,
    /// Bad signatures per sender and minute.
    bad_signatures: Arc<FailedChecks>,
    /// The senders accepted; `None` accepts every sender.
    sources: Option<Arc<Sources>>,
    /// How often GitHub's ranges are fetched again.
    sources_refresh: Duration,
    /// Keep each body and its headers for the clients receiving payloads.
    keep_payloads: bool,
    metrics: Arc<Metrics>,
}

/// Event types whose URL may come from the commit cache.
const RESOLVED_THROUGH_CACHE: [&str; 4] = ["check_run", "check_suite", "status", "workflow_run"];

/// Longest delivery id kept; GitHub's are 36-character UUIDs.
const MAX_DELIVERY_ID: usize = 128;

/// A result of the checks: carry on with `T`, or answer with the outcome.
type Step<T> = Result<T, Outcome>;

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
        Self::with_secret(sink, &WebhookSecret::from_bytes(secret), options, metrics)
    }

    /// [`WebhookEndpoint::new`] for the webhooks signed with any of the
    /// secrets of `secret` (e.g. the lines of `webhook.secret_file`).
    pub fn with_secret(
        sink: Arc<dyn EventSink>,
        secret: &WebhookSecret,
        options: WebhookOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let keys = Arc::new(WebhookKeys::new(secret));
        let cache = Arc::new(CommitCache::new(
            options.commit_cache_entries,
            options.commit_cache_ttl,
        ));
        let deliveries = Arc::new(DeliveryIds::new(
            options.dedup_entries,
            options.dedup_window,
        ));
        let capacity = Arc::new(Capacity::new(
            options.max_concurrent_requests,
            options.max_inflight_bytes,
        ));
        let sources = Sources::new(&options.allowed_sources).map(Arc::new);
        metrics.register(cache.clone());
        let bad_signatures = Arc::new(FailedChecks::new(
            options.max_bad_signatures_per_ip_per_minute,
            options.rate_table_entries,
            "too many bad webhook signatures: POST /webhook refused until the minute has passed",
        ));
        metrics.register(Arc::new(IntakeFigures {
            capacity: capacity.clone(),
            deliveries: deliveries.clone(),
            bad_signatures: bad_signatures.clone(),
            keys: keys.clone(),
            sources: sources.clone(),
        }));
        Self {
            keys,
            max_payload: options.max_payload_bytes,
            allowed: options.allowed_events.map(|a| a.into_iter().collect()),
            sink,
            cache,
            deliveries,
            capacity,
            body_timeout: options.body_timeout,
            retry_after: HeaderValue::from(options.body_timeout.as_secs().max(1)),
            trusted_proxies: options.trusted_proxies,
            bad_signatures,
            sources,
            sources_refresh: options.allowed_sources_refresh,
            keep_payloads: options.keep_payloads,
            metrics,
        }
    }

    /// The secrets in force: [`WebhookKeys::set`] changes them for the
    /// requests that come after (what a reload of `webhook.secret_file`
    /// does).
    pub fn keys(&self) -> &Arc<WebhookKeys> {
        &self.keys
    }

    /// What keeps GitHub's ranges of `webhook.allowed_sources` fresh, from
    /// the API at `api_url` (requests within `timeout`); `None` when the
    /// list does not name `github`. Its `run` is to be spawned.
    pub(crate) fn sources_refresher(
        &self,
        api_url: &str,
        timeout: Duration,
    ) -> Result<Option<Refresher>, RefresherError> {
        match &self.sources {
            Some(s) => Refresher::new(s, api_url, timeout, self.sources_refresh),
            None => Ok(None),
        }
    }

    /// The commit cache: head SHA -> pull request, learned from
    /// `pull_request` events and used to resolve check events.
    pub fn commit_cache(&self) -> &Arc<CommitCache> {
        &self.cache
    }

    /// The delivery ids accepted (a cluster node also teaches it the ids
    /// of the events it applies from the stream).
    pub(crate) fn delivery_ids(&self) -> &Arc<DeliveryIds> {
        &self.deliveries
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

    /// Handles one request to `/webhook` from the TCP peer `peer`. A
    /// broadcast webhook's log line is written once the shards have routed
    /// it (with the clients it matched); every other outcome is logged here.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        self.answer(req, peer).await.response(&self.retry_after)
    }

    /// [`WebhookEndpoint::handle`], returning the outcome.
    async fn answer(&self, req: Request<Incoming>, peer: SocketAddr) -> Outcome {
        let started = Instant::now();
        let ip = client_ip(peer.ip(), req.headers(), &self.trusted_proxies);
        // The head has been received: the body's deadline counts from now.
        let deadline = tokio::time::Instant::now() + self.body_timeout;
        let kind = header_str(&req, "x-github-event").to_owned();
        let delivery = sanitize_delivery_id(header_str(&req, "x-github-delivery"));
        let (outcome, seq) = match self.process(req, ip, &kind, &delivery, deadline).await {
            Ok(seq) => (Outcome::Broadcast, Some(seq)),
            Err(outcome) => (outcome, None),
        };
        if matches!(outcome, Outcome::BadSignatureHeader | Outcome::BadSignature) {
            self.bad_signatures.record(client_key(ip));
        }
        let took = started.elapsed();
        self.metrics
            .webhook(&kind, outcome.status().as_u16(), outcome.as_str(), took);
        let elapsed_us = took.as_micros() as u64;
        match seq {
            Some(seq) => tracing::debug!(
                kind = %kind, delivery = %delivery, seq, elapsed_us,
                "webhook accepted"
            ),
            None => tracing::info!(
                kind = %kind, delivery = %delivery, client = %ip, outcome = outcome.as_str(),
                status = outcome.status().as_u16(), elapsed_us,
                "webhook not broadcast"
            ),
        }
        outcome
    }

    /// The checks in order; the broadcast event's seq, or the outcome that
    /// stopped it.
    async fn process(
        &self,
        req: Request<Incoming>,
        ip: IpAddr,
        kind: &str,
        delivery: &str,
        deadline: tokio::time::Instant,
    ) -> Step<u64> {
        // The secrets in force now are the ones this request is checked with.
        let keys = self.keys.current();
        let (signature, declared) = self.check_head(&req, ip, kind, &keys.verifier)?;
        let headers = self
            .keep_payloads
            .then(|| WebhookPayload::from_request(req.headers(), Bytes::new()));
        // Held until the answer: the slot, and the bytes the body may use.
        let mut admitted =
            self.capacity
                .admit(declared.unwrap_or(0))
                .map_err(|full| match full {
                    CapacityFull::Requests => Outcome::BusyRequests,
                    CapacityFull::Bytes => Outcome::BusyBytes,
                })?;
        let body = self
            .read_body(req.into_body(), declared, &mut admitted, deadline)
            .await?;
        keys.check(&signature, &body)
            .map_err(|_| Outcome::BadSignature)?;
        self.accept(kind, delivery, body, headers).await
    }

    /// What is decided from the head alone, before a byte of the body is
    /// read (`ip` is the sender's): the signature it names and the
    /// declared length.
    fn check_head(
        &self,
        req: &Request<Incoming>,
        ip: IpAddr,
        kind: &str,
        verifier: &WebhookVerifier,
    ) -> Step<(Signature, Option<u64>)> {
        if req.method() != Method::POST {
            return Err(Outcome::MethodNotAllowed);
        }
        self.check_sender(ip)?;
        if let Some(allowed) = &self.allowed
            && !allowed.contains(kind)
        {
            return Err(Outcome::TypeNotAllowed);
        }
        let declared = req.body().size_hint().exact().or_else(|| {
            req.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        });
        check_declared(declared, self.max_payload).map_err(|_| Outcome::TooLarge)?;
        let header = req.headers().get("x-hub-signature-256");
        let signature = verifier
            .parse_header(header.map(HeaderValue::as_bytes))
            .map_err(|e| {
                tracing::debug!(error = %e, "webhook signature refused before its body");
                Outcome::BadSignatureHeader
            })?;
        Ok((signature, declared))
    }

    /// The checks on the sender at `ip`: among `webhook.allowed_sources`
    /// (403, or 503 until GitHub's ranges are known), and not limited for
    /// bad signatures (429).
    fn check_sender(&self, ip: IpAddr) -> Step<()> {
        if let Some(sources) = &self.sources {
            sources.check(ip).map_err(|refused| match refused {
                Refused::Forbidden => Outcome::ForbiddenSource,
                Refused::Unknown { retry_after_s } => Outcome::SourcesUnknown { retry_after_s },
            })?;
        }
        self.bad_signatures
            .check(client_key(ip))
            .map_err(|too_many| Outcome::TooManyBadSignatures {
                retry_after_s: too_many.retry_after_s,
            })
    }

    /// Reads the body by `deadline`, its buffer growing within the byte
    /// budget of `admitted`.
    async fn read_body(
        &self,
        body: Incoming,
        declared: Option<u64>,
        admitted: &mut Admitted<'_>,
        deadline: tokio::time::Instant,
    ) -> Step<Vec<u8>> {
        let read = read_limited(body, declared, self.max_payload, |c| admitted.cover(c));
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(BodyError::TooLarge)) => Err(Outcome::TooLarge),
            Ok(Err(BodyError::OverBudget)) => Err(Outcome::BusyBytes),
            Ok(Err(BodyError::Read(e))) => {
                tracing::debug!(error = %e, "webhook body read failed");
                Err(Outcome::ReadFailed)
            }
            Err(_) => Err(Outcome::Timeout),
        }
    }

    /// A verified body: parsed, checked against the delivery ids accepted,
    /// and submitted, with the body as sent and `headers` when payloads are
    /// kept. The id is claimed before the submit, so that two identical
    /// deliveries racing here broadcast once, and given back if the sink
    /// fails, so that GitHub's redelivery goes through.
    async fn accept(
        &self,
        kind: &str,
        delivery: &str,
        mut body: Vec<u8>,
        headers: Option<WebhookPayload>,
    ) -> Step<u64> {
        // Parsing works in place: the payload is the body before it.
        let payload = headers.map(|h| h.with_body(Bytes::copy_from_slice(&body)));
        let Some(mut event) = self.parse_event(kind, delivery, &mut body).await? else {
            return Err(if self.deliveries.contains(delivery) {
                Outcome::Duplicate
            } else {
                Outcome::NoUrl
            });
        };
        let claim = match self.deliveries.claim(delivery) {
            Claimed::Duplicate => return Err(Outcome::Duplicate),
            Claimed::New(claim) => Some(claim),
            Claimed::Untracked => None,
        };
        event.payload = payload;
        match self.sink.submit(event).await {
            Ok(Stored {
                duplicate: true, ..
            }) => Err(Outcome::Duplicate),
            Ok(stored) => Ok(stored.seq),
            Err(e) => {
                if let Some(claim) = claim {
                    self.deliveries.release(delivery, claim);
                }
                tracing::warn!(error = %e, kind, delivery, "webhook not stored: the stream is unavailable");
                Err(Outcome::Unavailable)
            }
        }
    }

    /// Parses a verified body (in place) into its event, `None` when it
    /// carries no URL.
    async fn parse_event(
        &self,
        kind: &str,
        delivery: &str,
        body: &mut [u8],
    ) -> Step<Option<EventParts>> {
        // When other nodes feed the same stream, a check event's pull
        // request may have been stored elsewhere a moment ago: on a cache
        // miss, wait until this node has applied everything stored so far,
        // then parse again (from a copy: parsing works in place).
        let retry = (self.sink.is_shared() && RESOLVED_THROUGH_CACHE.contains(&kind))
            .then(|| body.to_vec());
        let parsed = parse(kind, delivery, body, &self.cache).map_err(|e| {
            tracing::debug!(error = %e, "webhook refused");
            Outcome::InvalidJson
        })?;
        let (true, Some(mut copy)) = (parsed.cache_missed, retry) else {
            return Ok(parsed.event);
        };
        if let Err(e) = self.sink.sync().await {
            tracing::warn!(error = %e, kind, delivery, "webhook not stored: the stream is unavailable");
            return Err(Outcome::Unavailable);
        }
        // The same body parsed a moment ago: it cannot fail now.
        Ok(match parse(kind, delivery, &mut copy, &self.cache) {
            Ok(p) => p.event,
            Err(_) => parsed.event,
        })
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
