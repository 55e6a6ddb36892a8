//! What the cluster link counts, and reports to `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::metrics::{LatencyHistogram, Place, Report, Source};

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
    /// Times NATS was back after being lost.
    pub reconnects: AtomicU64,
}

impl Source for ClusterStats {
    fn place(&self) -> Place {
        Place::Cluster
    }

    fn report(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        out.gauges(
            "cluster_connected",
            "1 while this node is connected to NATS",
            [(
                [("node", self.node.as_str())],
                self.connected.load(Relaxed) as i64,
            )],
        )?;
        out.counter(
            "cluster_reconnects",
            "Times this node got NATS back after losing it",
            self.reconnects.load(Relaxed),
        )?;
        self.report_publishing(out)?;
        self.report_consuming(out)
    }
}

impl ClusterStats {
    /// How publishing to the stream went.
    fn report_publishing(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        out.counter(
            "cluster_published",
            "Events this node published and JetStream acknowledged",
            self.published.load(Relaxed),
        )?;
        out.counter(
            "cluster_publish_failures",
            "Events not acknowledged by JetStream in time (webhook answered 503)",
            self.publish_failures.load(Relaxed),
        )?;
        out.histogram(
            "cluster_publish_seconds",
            "From publishing an event to JetStream's acknowledgement",
            &self.publish_latency,
        )
    }

    /// Where this node's consumer of the stream stands.
    fn report_consuming(&self, out: &mut Report<'_, '_>) -> std::fmt::Result {
        let (last, applied) = (self.stream_last.load(Relaxed), self.applied.load(Relaxed));
        out.gauge(
            "cluster_stream_last_seq",
            "The stream's last seq, as last seen",
            last as i64,
        )?;
        out.gauge(
            "cluster_applied_seq",
            "The last stream seq this node applied to its hub",
            applied as i64,
        )?;
        out.gauge(
            "cluster_consumer_lag",
            "Stream messages not yet applied by this node",
            last.saturating_sub(applied) as i64,
        )?;
        out.counters_by(
            "cluster_skipped_messages",
            "Stream messages skipped, by reason",
            "reason",
            [
                (
                    "unknown_version",
                    self.skipped_unknown_version.load(Relaxed),
                ),
                ("malformed", self.skipped_malformed.load(Relaxed)),
            ],
        )?;
        out.counter(
            "cluster_lost_events",
            "Events the stream dropped (by its limits) before this node applied them",
            self.lost.load(Relaxed),
        )?;
        out.counter(
            "cluster_consumer_starts",
            "Times the stream consumer was started (1 + restarts after failures)",
            self.consumer_starts.load(Relaxed),
        )
    }
}
