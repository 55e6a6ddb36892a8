//! `/metrics`: Prometheus text exposition, encoded by `prometheus-client`.
//!
//! Two kinds of sources. Low-rate events (webhooks, handshakes, refused
//! connections) are counted in the crate's metric families when they
//! happen. Hot-path counts are never touched per delivery here: the shards
//! keep their own counters and the sessions write delivery latencies into a
//! per-thread-sharded histogram, and a collector reads and sums them only
//! when `/metrics` is scraped, so counting adds no contention between shards
//! or runtime threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::AuthProvider;
use crate::broker::Hub;
use crate::cluster::ClusterStats;
use crate::limits::ConnLimiter;
use crate::tls::acme::AcmeStats;
use crate::tls::server::CertStore;
use crate::webhook::{Capacity, CommitCache, DeliveryIds};

/// Latency bucket bounds, in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    /// A known GitHub event type or `other`.
    r#type: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabel {
    change: &'static str,
}

/// Everything `/metrics` shows: the endpoints count into it, and it reads
/// the hub's and the auth provider's own counters when encoded. Share one
/// between a hub's [`WsEndpoint`](crate::WsEndpoint) and
/// [`WebhookEndpoint`](crate::WebhookEndpoint); safe to use from any thread.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    webhook_outcomes: Family<OutcomeLabel, Counter>,
    webhook_seconds: Histogram,
    handshakes: Family<OutcomeLabel, Counter>,
    auth_results: Family<ResultLabel, Counter>,
    access_rechecks: Family<ResultLabel, Counter>,
    access_changes: Family<ChangeLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    /// Written by every session; read at scrape time.
    pub(crate) delivery_latency: Arc<LatencyHistogram>,
    limiter: Arc<OnceLock<Arc<ConnLimiter>>>,
    commit_cache: Arc<OnceLock<Arc<CommitCache>>>,
    intake: Arc<OnceLock<IntakeWatch>>,
    cluster: Arc<OnceLock<Arc<ClusterStats>>>,
    tls: Arc<OnceLock<TlsWatch>>,
}

/// Webhook intake's caps and its table of delivery ids.
struct IntakeWatch {
    capacity: Arc<Capacity>,
    deliveries: Arc<DeliveryIds>,
}

/// The listener's certificate, and the ACME client's counters.
struct TlsWatch {
    store: Arc<CertStore>,
    acme: Option<Arc<AcmeStats>>,
}

impl Metrics {
    /// Metrics of `hub` and of the token checks of `auth`.
    pub fn new(hub: &Hub, auth: Arc<dyn AuthProvider>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("hookfan");
        let mut counters = Counters(&mut registry);
        let webhooks: Family<WebhookLabels, Counter> =
            counters.family("webhooks", "Webhook requests by event type and HTTP status");
        let webhook_outcomes: Family<OutcomeLabel, Counter> = counters.family(
            "webhook_outcomes",
            "Webhook requests by outcome (a row of the protocol's order of checks)",
        );
        let handshakes: Family<OutcomeLabel, Counter> = counters.family(
            "handshakes",
            "WebSocket handshakes by outcome (confirmed, an error code, or a refusal before the upgrade)",
        );
        let auth_results: Family<ResultLabel, Counter> =
            counters.family("auth_results", "Token checks by result");
        let access_rechecks: Family<ResultLabel, Counter> = counters.family(
            "access_rechecks",
            "Checks of connected clients' tokens (auth.recheck_interval_s, reloads) by result",
        );
        let access_changes: Family<ChangeLabel, Counter> = counters.family(
            "access_changes",
            "Connected clients whose access a recheck changed: updated (organizations or tier), or closed (token_rejected, token_forbidden, not_member)",
        );
        let reloads: Family<ResultLabel, Counter> = counters.family(
            "config_reloads",
            "Configuration reloads (SIGHUP) by result; a failed one kept the previous values",
        );
        let webhook_seconds = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "webhook_handling_seconds",
            "Time to answer a webhook request, body read included",
            webhook_seconds.clone(),
        );
        let delivery_latency = Arc::new(LatencyHistogram::default());
        let tls = Arc::new(OnceLock::new());
        let limiter = Arc::new(OnceLock::new());
        let commit_cache = Arc::new(OnceLock::new());
        let intake = Arc::new(OnceLock::new());
        let cluster = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(StateCollector {
            cluster: cluster.clone(),
            hub: hub.clone(),
            auth,
            latency: delivery_latency.clone(),
            limiter: limiter.clone(),
            commit_cache: commit_cache.clone(),
            intake: intake.clone(),
            tls: tls.clone(),
        }));
        Arc::new(Self {
            registry,
            webhooks,
            webhook_outcomes,
            webhook_seconds,
            handshakes,
            auth_results,
            access_rechecks,
            access_changes,
            reloads,
            delivery_latency,
            limiter,
            commit_cache,
            intake,
            cluster,
            tls,
        })
    }

    /// The listener's certificate (and its ACME client) `/metrics` reports.
    pub(crate) fn watch_tls(&self, store: Arc<CertStore>, acme: Option<Arc<AcmeStats>>) {
        let _ = self.tls.set(TlsWatch { store, acme });
    }

    /// Counts a configuration reload: `ok` or `failed`.
    pub(crate) fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The cluster link `/metrics` reports.
    pub(crate) fn watch_cluster(&self, stats: Arc<ClusterStats>) {
        let _ = self.cluster.set(stats);
    }

    /// The commit cache whose size and lookups `/metrics` reports.
    pub(crate) fn watch_commit_cache(&self, cache: Arc<CommitCache>) {
        let _ = self.commit_cache.set(cache);
    }

    /// Webhook intake's caps and delivery ids, whose use `/metrics` reports.
    pub(crate) fn watch_intake(&self, capacity: Arc<Capacity>, deliveries: Arc<DeliveryIds>) {
        let _ = self.intake.set(IntakeWatch {
            capacity,
            deliveries,
        });
    }

    /// The connection limiter whose slots `/metrics` reports.
    pub(crate) fn watch_limiter(&self, limiter: Arc<ConnLimiter>) {
        let _ = self.limiter.set(limiter);
    }

    /// Counts a webhook request, by type and status and by outcome (a
    /// fixed set of values).
    pub(crate) fn webhook(&self, kind: &str, status: u16, outcome: &'static str, took: Duration) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                r#type: crate::event::type_label(kind),
                status,
            })
            .inc();
        self.webhook_outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.webhook_seconds.observe(took.as_secs_f64());
    }

    /// Counts a handshake outcome (a fixed set of values).
    pub(crate) fn handshake(&self, outcome: &'static str) {
        self.handshakes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a token check result (a fixed set of values).
    pub(crate) fn auth_result(&self, result: &'static str) {
        self.auth_results
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a recheck of a connected client's token: `ok`, `rejected`,
    /// `forbidden` or `unavailable`.
    pub(crate) fn access_recheck(&self, result: &'static str) {
        self.access_rechecks
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a connected client whose access a recheck changed.
    pub(crate) fn access_change(&self, change: &'static str) {
        self.access_changes
            .get_or_create(&ChangeLabel { change })
            .inc();
    }

    /// The Prometheus text exposition (content type
    /// `text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Reads the broker's (and its commit cache's) and the auth provider's own
/// counters at scrape time.
struct StateCollector {
    hub: Hub,
    auth: Arc<dyn AuthProvider>,
    latency: Arc<LatencyHistogram>,
    /// Set by the WebSocket endpoint that owns the limiter.
    limiter: Arc<OnceLock<Arc<ConnLimiter>>>,
    /// Set by the webhook endpoint that owns the cache.
    commit_cache: Arc<OnceLock<Arc<CommitCache>>>,
    /// Set by the webhook endpoint that owns them.
    intake: Arc<OnceLock<IntakeWatch>>,
    /// Set in cluster mode.
    cluster: Arc<OnceLock<Arc<ClusterStats>>>,
    /// Set when the listener speaks TLS.
    tls: Arc<OnceLock<TlsWatch>>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

fn encode_cluster(e: &mut DescriptorEncoder, c: &ClusterStats) -> std::fmt::Result {
    {
        let mut m = e.encode_descriptor(
            "cluster_connected",
            "1 while this node is connected to NATS",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(c.connected.load(Relaxed) as i64)
            .encode(m.encode_family(&[("node", c.node.as_str())])?)?;
    }
    counter(
        e,
        "cluster_published",
        "Events this node published and JetStream acknowledged",
        c.published.load(Relaxed),
    )?;
    counter(
        e,
        "cluster_publish_failures",
        "Events not acknowledged by JetStream in time (webhook answered 503)",
        c.publish_failures.load(Relaxed),
    )?;
    c.publish_latency.encode(e.encode_descriptor(
        "cluster_publish_seconds",
        "From publishing an event to JetStream's acknowledgement",
        None,
        MetricType::Histogram,
    )?)?;
    let (last, applied) = (c.stream_last.load(Relaxed), c.applied.load(Relaxed));
    gauge(
        e,
        "cluster_stream_last_seq",
        "The stream's last seq, as last seen",
        last as i64,
    )?;
    gauge(
        e,
        "cluster_applied_seq",
        "The last stream seq this node applied to its hub",
        applied as i64,
    )?;
    gauge(
        e,
        "cluster_consumer_lag",
        "Stream messages not yet applied by this node",
        last.saturating_sub(applied) as i64,
    )?;
    {
        let mut m = e.encode_descriptor(
            "cluster_skipped_messages",
            "Stream messages skipped, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, v) in [
            ("unknown_version", &c.skipped_unknown_version),
            ("malformed", &c.skipped_malformed),
        ] {
            ConstCounter::new(v.load(Relaxed)).encode(m.encode_family(&[("reason", reason)])?)?;
        }
    }
    counter(
        e,
        "cluster_lost_events",
        "Events the stream dropped (by its limits) before this node applied them",
        c.lost.load(Relaxed),
    )?;
    counter(
        e,
        "cluster_consumer_starts",
        "Times the stream consumer was started (1 + restarts after failures)",
        c.consumer_starts.load(Relaxed),
    )
}

fn encode_intake(e: &mut DescriptorEncoder, i: &IntakeWatch) -> std::fmt::Result {
    gauge(
        e,
        "webhook_requests_in_progress",
        "Webhook requests admitted (webhook.max_concurrent_requests) and not yet answered",
        i.capacity.requests() as i64,
    )?;
    gauge(
        e,
        "webhook_reserved_bytes",
        "Bytes reserved for the bodies of webhook requests in progress (webhook.max_inflight_bytes)",
        i.capacity.bytes() as i64,
    )?;
    gauge(
        e,
        "delivery_ids",
        "Delivery ids remembered to answer redeliveries duplicate",
        i.deliveries.len() as i64,
    )
}

/// Registers counter families, each with its own label set.
struct Counters<'r>(&'r mut Registry);

impl Counters<'_> {
    fn family<L>(&mut self, name: &str, help: &str) -> Family<L, Counter>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        let family = Family::default();
        self.0.register(name, help, family.clone());
        family
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.hub.stats();
        gauge(
            &mut e,
            "connected_clients",
            "Subscribed WebSocket clients",
            s.clients as i64,
        )?;
        {
            let mut m = e.encode_descriptor(
                "shard_connected_clients",
                "Subscribed WebSocket clients per shard",
                None,
                MetricType::Gauge,
            )?;
            for (shard, n) in s.clients_per_shard.iter().enumerate() {
                let labels = [("shard", shard.to_string())];
                ConstGauge::new(*n as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut e,
            "websocket_sessions",
            "WebSocket connections open (handshaking or subscribed)",
            s.live_sessions as i64,
        )?;
        gauge(
            &mut e,
            "connection_slots",
            "Connection limit slots held",
            self.limiter.get().map_or(0, |l| l.counts().total) as i64,
        )?;
        gauge(
            &mut e,
            "index_keys",
            "Keys in the shards' subscription indexes",
            s.index_keys as i64,
        )?;
        gauge(
            &mut e,
            "shard_queue_depth",
            "Messages waiting for the shard threads (events, registrations)",
            s.shard_queue as i64,
        )?;
        // Scraped from inside the runtime; the figures are the whole
        // runtime's (connection tasks, webhook handlers, timers).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let m = rt.metrics();
            gauge(
                &mut e,
                "runtime_alive_tasks",
                "Tokio tasks alive (one per connection, plus the daemon's own)",
                m.num_alive_tasks() as i64,
            )?;
            gauge(
                &mut e,
                "runtime_global_queue_depth",
                "Tokio tasks waiting in the runtime's global queue",
                m.global_queue_depth() as i64,
            )?;
        }
        counter(
            &mut e,
            "events_broadcast",
            "Events accepted for broadcast",
            s.events_accepted,
        )?;
        counter(
            &mut e,
            "deliveries",
            "Event frames queued to clients",
            s.deliveries,
        )?;
        counter(
            &mut e,
            "drops",
            "Event frames dropped because a client's queue was full",
            s.drops,
        )?;
        counter(
            &mut e,
            "slow_client_closes",
            "Clients closed because their queue was full",
            s.slow_closes,
        )?;
        counter(
            &mut e,
            "unentitled_deliveries",
            "Private-repository events delivered to clients whose tier may not see them (tiers.enforce = false)",
            s.unentitled_deliveries,
        )?;
        gauge(
            &mut e,
            "replay_window_events",
            "Events held for resuming clients",
            s.window_events as i64,
        )?;
        gauge(
            &mut e,
            "replay_window_bytes",
            "Bytes held by the replay window",
            s.window_bytes as i64,
        )?;
        gauge(
            &mut e,
            "replay_oldest_seq",
            "Oldest seq held for replay (the last seq + 1 when none is)",
            s.window_oldest as i64,
        )?;
        {
            let mut m = e.encode_descriptor(
                "resumes",
                "Resume requests by outcome",
                None,
                MetricType::Counter,
            )?;
            for (outcome, v) in [
                ("resumed", s.resumes_resumed),
                ("unknown_epoch", s.resumes_unknown_epoch),
                ("too_old", s.resumes_too_old),
            ] {
                ConstCounter::new(v).encode(m.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        counter(
            &mut e,
            "events_replayed",
            "Events written to resuming clients from the replay window",
            s.events_replayed,
        )?;
        if let Some(cache) = self.commit_cache.get() {
            let c = cache.stats();
            gauge(
                &mut e,
                "commit_cache_entries",
                "Commit SHAs in the commit cache",
                c.entries as i64,
            )?;
            let mut m = e.encode_descriptor(
                "commit_cache_lookups",
                "Commit cache lookups by result",
                None,
                MetricType::Counter,
            )?;
            for (result, v) in [("hit", c.hits), ("miss", c.misses)] {
                ConstCounter::new(v).encode(m.encode_family(&[("result", result)])?)?;
            }
        }
        if let Some(i) = self.intake.get() {
            encode_intake(&mut e, i)?;
        }
        if let Some(c) = self.cluster.get() {
            encode_cluster(&mut e, c)?;
        }
        if let Some(t) = self.tls.get() {
            gauge(
                &mut e,
                "tls_certificate_not_after_timestamp_seconds",
                "When the certificate the listener presents expires (0: none yet)",
                t.store.not_after().unwrap_or(0),
            )?;
            if let Some(a) = &t.acme {
                let mut m = e.encode_descriptor(
                    "acme_orders",
                    "ACME certificate orders by result",
                    None,
                    MetricType::Counter,
                )?;
                for (result, v) in [
                    ("issued", a.issued.load(Relaxed)),
                    ("failed", a.failed.load(Relaxed)),
                ] {
                    ConstCounter::new(v).encode(m.encode_family(&[("result", result)])?)?;
                }
            }
        }
        for family in self.auth.metrics() {
            let mut m = e.encode_descriptor(family.name, family.help, None, MetricType::Counter)?;
            for (labels, v) in &family.samples {
                ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
            }
        }
        self.latency.encode(e.encode_descriptor(
            "delivery_latency_seconds",
            "From webhook accepted to event frame written to the client's socket",
            None,
            MetricType::Histogram,
        )?)
    }
}

/// Shards of the latency histogram; each runtime thread writes to its own.
const HISTOGRAM_SHARDS: usize = 16;

/// A histogram written from many threads without contention: each thread
/// has its own set of atomic counters, summed when scraped.
#[derive(Default)]
pub(crate) struct LatencyHistogram {
    shards: [Padded; HISTOGRAM_SHARDS],
}

/// One thread's counters, on its own cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Padded {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % HISTOGRAM_SHARDS;
    }
    SHARD.with(|s| *s)
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn observe(&self, d: Duration) {
        let shard = &self.shards[thread_shard()];
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            shard.buckets[i].fetch_add(1, Relaxed);
        }
        shard.count.fetch_add(1, Relaxed);
        shard.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.count.load(Relaxed)).sum()
    }

    fn encode(&self, mut m: prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result {
        // Per-bucket counts; the encoder makes them cumulative.
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self
                .shards
                .iter()
                .map(|s| s.buckets[i].load(Relaxed))
                .sum::<u64>();
            buckets.push((*bound, n));
        }
        // Read after the buckets: a concurrent observation may land in
        // `count` but not yet in a bucket, never the other way round.
        let count = self.count();
        let in_buckets: u64 = buckets.iter().map(|b| b.1).sum();
        buckets.push((f64::INFINITY, count.saturating_sub(in_buckets)));
        let sum: u64 = self.shards.iter().map(|s| s.sum_ns.load(Relaxed)).sum();
        m.encode_histogram::<Vec<(String, String)>>(sum as f64 / 1e9, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_histogram_sums_every_thread() {
        let h = Arc::new(LatencyHistogram::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe(Duration::from_micros(300));
                    }
                    h.observe(Duration::from_secs(60));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 4004);
        let total: u64 = h.shards.iter().map(|s| s.buckets[2].load(Relaxed)).sum();
        assert_eq!(total, 4000, "300 µs falls in the 0.5 ms bucket");
    }
}
