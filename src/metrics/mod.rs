//! `/metrics`: Prometheus text exposition, encoded by `prometheus-client`.
//!
//! Two kinds of sources. Low-rate events (webhooks, handshakes, refused
//! connections) are counted in the crate's metric families when they
//! happen. Hot-path counts are never touched per delivery here: the shards
//! keep their own counters and the sessions write delivery latencies into a
//! per-thread-sharded histogram, and a collector reads and sums them only
//! when `/metrics` is scraped, so counting adds no contention between shards
//! or runtime threads. The other parts of the daemon (connection limiter,
//! webhook intake, cluster link, TLS) are read the same way, through the
//! [`Source`] each implements and registers at start: metrics imports none
//! of them.

mod latency;
mod source;
mod state;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::auth::AuthProvider;
use crate::broker::Hub;
use latency::LATENCY_BUCKETS;
pub(crate) use latency::LatencyHistogram;
pub(crate) use source::{Place, Report, Source};
use state::{Sources, StateCollector};

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
    /// The other parts' figures, registered at start.
    sources: Arc<Sources>,
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
            "Connected clients whose access a recheck changed: updated (organizations or tier), or closed (token_rejected, token_forbidden, not_member, payload_not_allowed)",
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
        let sources: Arc<Sources> = Arc::new(std::array::from_fn(|_| OnceLock::new()));
        registry.register_collector(Box::new(StateCollector {
            hub: hub.clone(),
            auth,
            latency: delivery_latency.clone(),
            sources: sources.clone(),
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
            sources,
        })
    }

    /// Has `/metrics` report `source`'s figures from now on, at its
    /// place; a place already taken keeps its first source.
    pub(crate) fn register(&self, source: Arc<dyn Source>) {
        let _ = self.sources[source.place() as usize].set(source);
    }

    /// Counts a configuration reload: `ok` or `failed`.
    pub(crate) fn reload(&self, result: &'static str) {
        inc(&self.reloads, ResultLabel { result });
    }

    /// Counts a webhook request, by type and status and by outcome (a
    /// fixed set of values).
    pub(crate) fn webhook(&self, kind: &str, status: u16, outcome: &'static str, took: Duration) {
        let r#type = crate::event::type_label(kind);
        inc(&self.webhooks, WebhookLabels { r#type, status });
        inc(&self.webhook_outcomes, OutcomeLabel { outcome });
        self.webhook_seconds.observe(took.as_secs_f64());
    }

    /// Counts a handshake outcome (a fixed set of values).
    pub(crate) fn handshake(&self, outcome: &'static str) {
        inc(&self.handshakes, OutcomeLabel { outcome });
    }

    /// Counts a token check result (a fixed set of values).
    pub(crate) fn auth_result(&self, result: &'static str) {
        inc(&self.auth_results, ResultLabel { result });
    }

    /// Counts a recheck of a connected client's token: `ok`, `rejected`,
    /// `forbidden` or `unavailable`.
    pub(crate) fn access_recheck(&self, result: &'static str) {
        inc(&self.access_rechecks, ResultLabel { result });
    }

    /// Counts a connected client whose access a recheck changed.
    pub(crate) fn access_change(&self, change: &'static str) {
        inc(&self.access_changes, ChangeLabel { change });
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

/// Counts one in `family`, under `labels`.
fn inc<L>(family: &Family<L, Counter>, labels: L)
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq,
{
    family.get_or_create(&labels).inc();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HubConfig, StaticTokens};

    /// Reports one gauge, at a place.
    struct Fake(Place, &'static str);

    impl Source for Fake {
        fn place(&self) -> Place {
            self.0
        }

        fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
            out.gauge(self.1, "A fake source", 1)
        }
    }

    fn at(text: &str, name: &str) -> usize {
        text.find(&format!("# HELP hookfan_{name} "))
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    /// Sources report at their place whatever the order they registered
    /// in, the first at a place wins, and the connection slots are reported
    /// (0) without a limiter.
    #[test]
    fn sources_report_at_their_place() {
        let hub = Hub::start(HubConfig::default()).unwrap();
        let metrics = Metrics::new(&hub, Arc::new(StaticTokens::default()));
        let text = metrics.encode();
        assert!(text.contains("\nhookfan_connection_slots 0\n"), "{text}");
        metrics.register(Arc::new(Fake(Place::Tls, "fake_tls")));
        metrics.register(Arc::new(Fake(Place::Tls, "fake_tls_again")));
        metrics.register(Arc::new(Fake(Place::Intake, "fake_intake")));
        metrics.register(Arc::new(Fake(Place::Connections, "fake_slots")));
        let text = metrics.encode();
        assert!(!text.contains("fake_tls_again"), "{text}");
        assert!(!text.contains("connection_slots"), "{text}");
        let order = [
            "websocket_sessions",
            "fake_slots",
            "index_keys",
            "events_replayed_total",
            "fake_intake",
            "fake_tls",
            "delivery_latency_seconds",
        ];
        let places: Vec<usize> = order.iter().map(|n| at(&text, n)).collect();
        assert!(places.is_sorted(), "{order:?} at {places:?} in {text}");
        hub.stop();
    }
}
