//! Cluster mode: several nodes share one event stream in NATS JetStream.
//!
//! Intake on any node publishes an event's routing facts ([`facts`]) with
//! `Nats-Msg-Id` = the delivery id, and the webhook is answered 200 only
//! once JetStream has stored it. Every node consumes the stream in order
//! and feeds its own hub: the seq a client sees is the stream sequence
//! (the same on every node), the epoch names the stream, and a resume that
//! reaches back past a node's window is served from the stream.
//!
//! ```text
//! intake (any node) -> JetStream stream -> each node's consumer -> its hub
//! ```
//!
//! A node that loses NATS keeps its clients, answers webhooks 503, and
//! continues from the last seq it applied once NATS is back.

mod config;
pub mod facts;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use async_nats::ConnectErrorKind;
use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, message::PublishMessage, stream};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::broker::{Backfill, BackfillError, BackfillFuture, Backfilled, Hub};
use crate::event::Event;
use crate::event::EventParts;
use crate::metrics::LatencyHistogram;
use crate::webhook::{CommitCache, DeliveryIds, EventSink, PrInfo, SinkError, SinkFuture, Stored};
pub use config::ClusterConfig;
use config::redact_userinfo;
use facts::DecodeError;

/// Why a node could not join its cluster at start.
#[derive(Debug)]
pub struct ClusterError {
    /// The config key to look at.
    pub key: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ClusterError {}

fn fail(key: &'static str, message: impl Into<String>) -> ClusterError {
    ClusterError {
        key,
        message: message.into(),
    }
}

/// What `/metrics` reports of the cluster link.
#[derive(Default)]
pub(crate) struct ClusterStats {
    /// The node's name.
    pub node: String,
    /// Connected to NATS now.
    pub connected: AtomicBool,
    /// Events published and acknowledged.
    pub published: AtomicU64,
    /// Publishes that got no acknowledgement (answered 503).
    pub publish_failures: AtomicU64,
    /// From publish to JetStream's acknowledgement.
    pub publish_latency: LatencyHistogram,
    /// The stream's last seq, as last seen.
    pub stream_last: AtomicU64,
    /// The last seq this node applied.
    pub applied: AtomicU64,
    /// Messages skipped: of an unknown encoding version, malformed.
    pub skipped_unknown_version: AtomicU64,
    pub skipped_malformed: AtomicU64,
    /// Messages the stream dropped (by its limits) before this node read
    /// them: the node's clients missed them.
    pub lost: AtomicU64,
    /// Times the consumer was (re)started.
    pub consumer_starts: AtomicU64,
}

/// What intake remembers and learns from every event applied, wherever
/// its webhook arrived.
pub(crate) struct Learners {
    /// Pull request heads, to resolve check events.
    pub commits: Arc<CommitCache>,
    /// Delivery ids accepted, so that a redelivery to any node is answered
    /// `duplicate`, also past JetStream's duplicate window.
    pub deliveries: Arc<DeliveryIds>,
}

/// A node's link to the cluster's stream.
#[derive(Clone)]
pub(crate) struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    subject: String,
    publish_timeout: Duration,
    epoch: String,
    /// The seq the stream had when this node joined.
    joined_at: u64,
    /// The oldest seq the stream holds (last seen).
    stream_first: AtomicU64,
    /// The last seq applied to the hub.
    applied: watch::Sender<u64>,
    stats: Arc<ClusterStats>,
    hub: OnceLock<Hub>,
    /// Resumes reading the stream at once on this node
    /// (`cluster.backfill_concurrency`); more wait their turn, within the
    /// read's time limit.
    backfills: tokio::sync::Semaphore,
    /// What one resume may read from the stream.
    backfill_bounds: BackfillBounds,
}

/// How much one resume may take from the stream: `cluster.backfill_max_events`
/// seqs, `cluster.backfill_max_bytes` of the events it keeps.
#[derive(Debug, Clone, Copy)]
struct BackfillBounds {
    max_seqs: u64,
    max_bytes: usize,
}

impl BackfillBounds {
    /// Whether `from ..= to` spans more seqs than one resume may read.
    fn refuse_range(&self, from: u64, to: u64) -> bool {
        to.saturating_sub(from).saturating_add(1) > self.max_seqs
    }
}

/// Back-off between attempts to reach NATS again: 100 ms doubling to 5 s,
/// with jitter so that the nodes of a cluster do not retry in step.
fn backoff(attempt: usize) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(6) as u32);
    let capped = base.min(Duration::from_secs(5));
    capped.mul_f64(0.5 + fastrand::f64() / 2.0)
}

impl Cluster {
    /// Connects to NATS, makes sure the stream exists with the configured
    /// limits, and reads where it stands. Fails, naming the config key,
    /// when NATS cannot be reached or an existing stream conflicts.
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let url = config
            .nats_url
            .as_deref()
            .ok_or_else(|| fail("cluster.nats_url", "not set"))?;
        let shown = redact_userinfo(url);
        let addrs = url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail("cluster.nats_url", format!("{shown:?}: {e}")))?;
        let stats = Arc::new(ClusterStats {
            node: config.node(),
            ..ClusterStats::default()
        });
        let options = async_nats::ConnectOptions::new()
            .name(format!("hookfan {}", stats.node))
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(backoff)
            .event_callback({
                let stats = stats.clone();
                move |event| {
                    let stats = stats.clone();
                    async move { on_event(&stats, event) }
                }
            });
        let (options, auth_key) = with_credentials(options, config).await?;
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| connect_failure(&e, config, auth_key, &shown))?;
        stats.connected.store(true, Relaxed);
        let mut js = jetstream::new(client.clone());
        let publish_timeout = Duration::from_secs(config.publish_timeout_s);
        js.set_timeout(publish_timeout);
        let info = ensure_stream(&js, config).await?;
        let epoch = epoch_of(&info);
        let last = info.state.last_sequence;
        stats.stream_last.store(last, Relaxed);
        stats.applied.store(last, Relaxed);
        tracing::info!(
            node = %stats.node, stream = %config.stream, %epoch, seq = last,
            oldest = info.state.first_sequence, "joined the cluster's stream"
        );
        Ok(Cluster {
            inner: Arc::new(Inner {
                client,
                js,
                stream: config.stream.clone(),
                subject: config.subject.clone(),
                publish_timeout,
                epoch,
                joined_at: last,
                stream_first: AtomicU64::new(info.state.first_sequence.max(1)),
                applied: watch::Sender::new(last),
                stats,
                hub: OnceLock::new(),
                backfills: tokio::sync::Semaphore::new(config.backfill_concurrency),
                backfill_bounds: BackfillBounds {
                    max_seqs: config.backfill_max_events,
                    max_bytes: config.backfill_max_bytes,
                },
            }),
        })
    }

    /// The stream's identity: the epoch every node gives its clients.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// What `/metrics` reports.
    pub fn stats(&self) -> Arc<ClusterStats> {
        self.inner.stats.clone()
    }

    /// Starts applying the stream to `hub`, teaching `learners` every pull
    /// request and delivery id seen, until the hub stops.
    pub fn start(&self, hub: Hub, learners: Learners) {
        hub.restart_at(self.inner.joined_at);
        let _ = self.inner.hub.set(hub.clone());
        let inner = self.inner.clone();
        tokio::spawn(async move { consume(inner, hub, learners).await });
        let inner = self.inner.clone();
        tokio::spawn(async move { watch_stream(inner).await });
    }
}

/// Adds the configured credentials and TLS settings; also returns the key
/// holding the credentials, to name should NATS refuse them.
async fn with_credentials(
    mut options: async_nats::ConnectOptions,
    config: &ClusterConfig,
) -> Result<(async_nats::ConnectOptions, Option<&'static str>), ClusterError> {
    let mut auth_key = None;
    if let Some(path) = &config.creds_file {
        auth_key = Some("cluster.creds_file");
        options = options.credentials_file(path).await.map_err(|e| {
            fail(
                "cluster.creds_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    }
    if let (Some(user), Some(path)) = (&config.user, &config.password_file) {
        auth_key = Some("cluster.password_file");
        let password = read_secret("cluster.password_file", path)?;
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(path) = &config.token_file {
        auth_key = Some("cluster.token_file");
        options = options.token(read_secret("cluster.token_file", path)?);
    }
    if let Some(path) = &config.tls_ca_file {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok((options, auth_key))
}

/// Names the key to fix when the first connection to NATS (at `shown`, the
/// redacted URL) failed; `auth_key` holds the credentials, if any.
fn connect_failure(
    e: &async_nats::ConnectError,
    config: &ClusterConfig,
    auth_key: Option<&'static str>,
    shown: &str,
) -> ClusterError {
    if matches!(
        e.kind(),
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
    ) {
        return match auth_key {
            Some(key) => fail(
                key,
                format!("NATS at {shown} refused this node's credentials: {e}"),
            ),
            None => fail(
                "cluster.nats_url",
                format!(
                    "NATS at {shown} wants credentials ({e}): set cluster.user and \
                     cluster.password_file, cluster.token_file or cluster.creds_file"
                ),
            ),
        };
    }
    // An alert from the server refuses this node's certificate; any other
    // TLS error is about the server's.
    let tls_key = match tls_failure(e) {
        Some(rustls::Error::AlertReceived(_)) => Some("cluster.tls_cert_file"),
        Some(_) => Some("cluster.tls_ca_file"),
        None if e.kind() != ConnectErrorKind::Tls => None,
        None if config.tls_cert_file.is_some() => Some("cluster.tls_cert_file"),
        None => Some("cluster.tls_ca_file"),
    };
    match tls_key {
        Some(key) => fail(key, format!("no TLS connection to NATS at {shown}: {e}")),
        None => fail(
            "cluster.nats_url",
            format!("cannot reach NATS at {shown}: {e}"),
        ),
    }
}

/// The TLS error a failed connection ended with, if any. async-nats
/// reports a handshake failure as an IO error wrapping rustls's.
fn tls_failure<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(tls);
        }
        cause = err.source();
    }
    None
}

/// The first line of a secret file; its content never reaches a message.
fn read_secret(key: &'static str, path: &std::path::Path) -> Result<String, ClusterError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(key, format!("cannot read {}: {e}", path.display())))?;
    match text.lines().next().map(str::trim) {
        Some(line) if !line.is_empty() => Ok(line.to_owned()),
        _ => Err(fail(key, format!("{} is empty", path.display()))),
    }
}

fn on_event(stats: &ClusterStats, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            stats.connected.store(true, Relaxed);
            tracing::info!(node = %stats.node, "connected to NATS");
        }
        async_nats::Event::Disconnected => {
            stats.connected.store(false, Relaxed);
            tracing::warn!(node = %stats.node, "lost NATS: webhooks are answered 503 until it is back");
        }
        async_nats::Event::Closed => {
            stats.connected.store(false, Relaxed);
        }
        other => tracing::info!(node = %stats.node, event = %other, "NATS"),
    }
}

/// Finds the stream, or creates it with the configured limits; an existing
/// stream must match them.
async fn ensure_stream(
    js: &jetstream::Context,
    c: &ClusterConfig,
) -> Result<stream::Info, ClusterError> {
    let wanted = stream::Config {
        name: c.stream.clone(),
        subjects: vec![c.subject.clone()],
        max_age: Duration::from_secs(c.max_age_s),
        max_bytes: c.max_bytes as i64,
        num_replicas: c.replicas,
        duplicate_window: Duration::from_secs(c.duplicate_window_s),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    let mut s = match js.get_stream(&c.stream).await {
        Ok(s) => s,
        Err(e) if is_not_found(&e) => {
            tracing::info!(stream = %c.stream, subject = %c.subject, "creating the stream");
            js.create_stream(wanted.clone()).await.map_err(|e| {
                fail(
                    "cluster.stream",
                    format!("cannot create stream {}: {e}", c.stream),
                )
            })?
        }
        Err(e) => {
            return Err(fail(
                "cluster.stream",
                format!("cannot read stream {}: {e}", c.stream),
            ));
        }
    };
    let info = s
        .info()
        .await
        .map_err(|e| {
            fail(
                "cluster.stream",
                format!("cannot read stream {}: {e}", c.stream),
            )
        })?
        .clone();
    let have = &info.config;
    let conflict = |key: &'static str, have: String, want: String| {
        fail(
            key,
            format!(
                "the existing stream {} has {have}, this node is configured for {want}; \
                 make them agree (edit the stream, or this node's config)",
                c.stream
            ),
        )
    };
    let secs = |d: Duration| format!("{} s", d.as_secs());
    // (key, differs, what the stream has, what this node wants)
    let checks = [
        (
            "cluster.subject",
            have.subjects != wanted.subjects,
            format!("subjects {:?}", have.subjects),
            format!("[{:?}]", c.subject),
        ),
        (
            "cluster.duplicate_window_s",
            have.duplicate_window != wanted.duplicate_window,
            format!("duplicate_window {}", secs(have.duplicate_window)),
            secs(wanted.duplicate_window),
        ),
        (
            "cluster.max_age_s",
            have.max_age != wanted.max_age,
            format!("max_age {}", secs(have.max_age)),
            secs(wanted.max_age),
        ),
        (
            "cluster.max_bytes",
            have.max_bytes != wanted.max_bytes,
            format!("max_bytes {}", have.max_bytes),
            c.max_bytes.to_string(),
        ),
        (
            "cluster.replicas",
            have.num_replicas != wanted.num_replicas,
            format!("{} replicas", have.num_replicas),
            c.replicas.to_string(),
        ),
        (
            "cluster.stream",
            have.retention != wanted.retention,
            format!("retention {:?}", have.retention),
            "limits retention".to_owned(),
        ),
    ];
    if let Some((key, _, has, wants)) = checks.into_iter().find(|c| c.1) {
        return Err(conflict(key, has, wants));
    }
    Ok(info)
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The epoch: 64 bits of a hash of the stream's name and creation time, so
/// that a re-created stream (whose seqs start again) has another.
fn epoch_of(info: &stream::Info) -> String {
    let created = info.created.unix_timestamp_nanos();
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}\n{created}", info.config.name).as_bytes(),
    );
    hex::encode(&d.as_ref()[..8])
}

/// Applies the stream to the hub, in order, from the seq after the last
/// applied; starts over (with back-off) whenever the consumer fails.
async fn consume(inner: Arc<Inner>, hub: Hub, learners: Learners) {
    let mut attempt = 0usize;
    while !hub.is_stopped() {
        let from = *inner.applied.borrow() + 1;
        inner.stats.consumer_starts.fetch_add(1, Relaxed);
        match consume_from(&inner, &hub, &learners, from).await {
            Ok(()) => return,
            Err(e) => {
                // It got somewhere: the next failure starts the backoff over.
                if *inner.applied.borrow() >= from {
                    attempt = 0;
                }
                if !hub.is_stopped() {
                    tracing::warn!(
                        node = %inner.stats.node, error = %e, after = *inner.applied.borrow(),
                        "stream consumer interrupted; starting again"
                    );
                }
            }
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

async fn consume_from(
    inner: &Inner,
    hub: &Hub,
    learners: &Learners,
    from: u64,
) -> Result<(), String> {
    let stream = inner
        .js
        .get_stream(&inner.stream)
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = read_from(&stream, from).await?;
    let mut stopped = Box::pin(hub.stopped());
    loop {
        let m = tokio::select! {
            m = messages.next() => m,
            () = &mut stopped => return Ok(()),
        };
        let m = match m {
            None => return Err("the stream of messages ended".into()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(m)) => m,
        };
        let info = m.info().map_err(|e| e.to_string())?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        inner.stats.stream_last.fetch_max(seq + pending, Relaxed);
        apply(inner, hub, learners, seq, &m.payload);
    }
}

/// The stream's messages in order from seq `from`, through an ordered
/// consumer (ephemeral, no acknowledgements, recreated by the library when
/// it notices a gap).
async fn read_from(stream: &stream::Stream, from: u64) -> Result<consumer::pull::Ordered, String> {
    stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// Applies one stream message to the hub.
fn apply(inner: &Inner, hub: &Hub, learners: &Learners, seq: u64, payload: &[u8]) {
    let last = *inner.applied.borrow();
    if seq <= last {
        return;
    }
    if seq > last + 1 {
        // The stream dropped these (by its limits) before this node read
        // them: this node's clients missed them, and no resume can give
        // them back.
        let lost = seq - last - 1;
        inner.stats.lost.fetch_add(lost, Relaxed);
        tracing::error!(
            node = %inner.stats.node, after = last, next = seq, lost,
            "the stream dropped events before this node applied them"
        );
        hub.restart_at(seq - 1);
    }
    match facts::decode(payload) {
        Ok(parts) => {
            let event = Event::new(parts);
            learn(&learners.commits, &event);
            learners.deliveries.learn(event.delivery_id());
            hub.broadcast_at(event, seq);
        }
        Err(e) => {
            let counter = match e {
                DecodeError::UnknownVersion(_) => &inner.stats.skipped_unknown_version,
                DecodeError::Malformed(_) => &inner.stats.skipped_malformed,
            };
            counter.fetch_add(1, Relaxed);
            tracing::warn!(node = %inner.stats.node, seq, error = %e, "stream message skipped");
            hub.skip_to(seq);
        }
    }
    inner.stats.applied.store(seq, Relaxed);
    inner.applied.send_replace(seq);
}

/// Records a pull request's head under its repository, wherever the
/// webhook arrived.
fn learn(cache: &CommitCache, event: &Event) {
    if event.kind() != "pull_request" {
        return;
    }
    let (Some(repo), Some(sha), Some(number)) =
        (event.repo(), event.commit_sha(), event.pr_number())
    else {
        return;
    };
    let url = event.url();
    let repo_url = url.rsplit_once("/pull/").map_or("", |(repo, _)| repo);
    cache.record(
        repo,
        sha,
        PrInfo {
            url: url.to_owned(),
            repo_url: repo_url.to_owned(),
            number,
            cached_at: event.accepted_at(),
        },
    );
}

/// Keeps the stream's bounds fresh for confirmations and the lag metric.
async fn watch_stream(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if inner.hub.get().is_some_and(Hub::is_stopped) {
            return;
        }
        if let Ok(Ok(s)) =
            tokio::time::timeout(inner.publish_timeout, inner.js.get_stream(&inner.stream)).await
        {
            let state = &s.cached_info().state;
            inner
                .stream_first
                .store(state.first_sequence.max(1), Relaxed);
            inner
                .stats
                .stream_last
                .fetch_max(state.last_sequence, Relaxed);
        }
    }
}

impl Inner {
    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Waits until this node has applied everything the stream holds now.
    async fn catch_up(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.publish_timeout;
        if !self.connected() {
            return Err("NATS is not connected".into());
        }
        let last = tokio::time::timeout(self.publish_timeout, async {
            let s = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(s.cached_info().state.last_sequence)
        })
        .await
        .map_err(|_| "no answer from JetStream in time".to_string())??;
        self.stats.stream_last.fetch_max(last, Relaxed);
        let mut applied = self.applied.subscribe();
        tokio::time::timeout_at(deadline.into(), applied.wait_for(|a| *a >= last))
            .await
            .map_err(|_| format!("this node has not applied the stream up to {last} in time"))?
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl EventSink for Cluster {
    fn submit(&self, event: EventParts) -> SinkFuture<'_, Stored> {
        Box::pin(async move {
            let inner = &self.inner;
            if !inner.connected() {
                inner.stats.publish_failures.fetch_add(1, Relaxed);
                return Err(SinkError("NATS is not connected".into()));
            }
            let mut publish = PublishMessage::build().payload(facts::encode(&event).into());
            if !event.delivery_id.is_empty() {
                publish = publish.message_id(&event.delivery_id);
            }
            let started = Instant::now();
            let acked = tokio::time::timeout(inner.publish_timeout, async {
                inner
                    .js
                    .send_publish(inner.subject.clone(), publish)
                    .await?
                    .await
            })
            .await;
            match acked {
                Ok(Ok(ack)) => {
                    inner.stats.publish_latency.observe(started.elapsed());
                    inner.stats.published.fetch_add(1, Relaxed);
                    inner.stats.stream_last.fetch_max(ack.sequence, Relaxed);
                    // A duplicate: the stream already held this delivery id
                    // (within cluster.duplicate_window_s) and kept the first.
                    Ok(Stored {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Ok(Err(e)) => {
                    inner.stats.publish_failures.fetch_add(1, Relaxed);
                    Err(SinkError(format!("JetStream did not store the event: {e}")))
                }
                Err(_) => {
                    inner.stats.publish_failures.fetch_add(1, Relaxed);
                    Err(SinkError(format!(
                        "no acknowledgement from JetStream within {} s",
                        inner.publish_timeout.as_secs()
                    )))
                }
            }
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn sync(&self) -> SinkFuture<'_, ()> {
        Box::pin(async move { self.inner.catch_up().await.map_err(SinkError) })
    }
}

impl Backfill for Cluster {
    fn oldest(&self) -> u64 {
        self.inner.stream_first.load(Relaxed)
    }

    fn catch_up(&self) -> BackfillFuture<'_, ()> {
        Box::pin(async move { self.inner.catch_up().await.map_err(BackfillError::new) })
    }

    fn fetch<'a>(
        &'a self,
        from: u64,
        to: u64,
        keep: Box<dyn Fn(&Event) -> bool + Send + Sync + 'a>,
    ) -> BackfillFuture<'a, Backfilled> {
        Box::pin(async move {
            let read = async {
                let inner = &self.inner;
                let bounds = inner.backfill_bounds;
                if bounds.refuse_range(from, to) {
                    return Ok(Backfilled::TooLarge);
                }
                if !inner.connected() {
                    return Err("NATS is not connected".into());
                }
                let limit = inner.publish_timeout * 6;
                let bounded = async {
                    let _turn = inner
                        .backfills
                        .acquire()
                        .await
                        .map_err(|_| "closed".to_owned())?;
                    fetch_range(inner, from, to, bounds, &*keep).await
                };
                tokio::time::timeout(limit, bounded).await.map_err(|_| {
                format!(
                    "reading seqs {from}..={to} (waiting for other resumes included) took over {} s",
                    limit.as_secs()
                )
            })?
            };
            read.await.map_err(BackfillError::new)
        })
    }
}

/// The events with seq in `from ..= to` that `keep` accepts, at most
/// `bounds.max_bytes` of them.
async fn fetch_range(
    inner: &Inner,
    from: u64,
    to: u64,
    bounds: BackfillBounds,
    keep: &(dyn Fn(&Event) -> bool + Send + Sync),
) -> Result<Backfilled, String> {
    let mut s = inner
        .js
        .get_stream(&inner.stream)
        .await
        .map_err(|e| e.to_string())?;
    let first = s
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .first_sequence;
    inner.stream_first.store(first.max(1), Relaxed);
    if first > from {
        return Ok(Backfilled::NotHeld);
    }
    let mut messages = read_from(&s, from).await?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(m) = messages.next().await {
        // An ordered consumer recovers from errors by itself (from the seq
        // after the last it delivered): keep reading, within the caller's
        // time limit.
        let Ok(m) = m else { continue };
        let Ok(seq) = m.info().map(|i| i.stream_sequence) else {
            continue;
        };
        // A consumer recreated before its first message may start over
        // from the beginning of the stream.
        if seq < from {
            continue;
        }
        if seq > to {
            break;
        }
        if let Ok(parts) = facts::decode(&m.payload) {
            let mut event = Event::new(parts);
            event.set_seq(seq);
            if keep(&event) {
                bytes += event.size();
                if bytes > bounds.max_bytes {
                    return Ok(Backfilled::TooLarge);
                }
                out.push(Arc::new(event));
            }
        }
        if seq == to {
            break;
        }
    }
    Ok(Backfilled::Events(out))
}
