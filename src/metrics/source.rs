//! What the other parts of the daemon report to `/metrics`: each keeps its
//! own figures and implements [`Source`] to write them when `/metrics` is
//! scraped, registering itself once at start. Metrics so knows none of them
//! (they import it), and a part that is not running reports nothing.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::LatencyHistogram;

/// A part of the daemon whose figures `/metrics` reads when scraped.
pub(crate) trait Source: Send + Sync {
    /// Where its figures go in the exposition.
    fn place(&self) -> Place;

    /// Writes its figures.
    fn report(&self, out: &mut Report<'_, '_>) -> fmt::Result;
}

/// The places of the exposition that registered sources fill, one source
/// each (the first registered). Fixed, so that `/metrics` reads the same
/// whichever part started first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// The connection limiter's slots, among the hub's client figures.
    Connections,
    /// The commit cache; it and the places below come after the hub's
    /// figures, in this order.
    CommitCache,
    /// Webhook intake's caps and delivery ids.
    Intake,
    /// The cluster link.
    Cluster,
    /// The listener's certificate and its ACME client.
    Tls,
    /// The redelivery sweeper.
    Redelivery,
}

impl Place {
    /// How many places there are: `Connections`, then those after the hub.
    pub(super) const COUNT: usize = Self::AFTER_HUB.len() + 1;

    /// The places after the hub's figures, in order of output.
    pub(super) const AFTER_HUB: [Place; 5] = [
        Place::CommitCache,
        Place::Intake,
        Place::Cluster,
        Place::Tls,
        Place::Redelivery,
    ];
}

/// Writes metric families of values read at scrape time.
pub(crate) struct Report<'a, 'e>(pub(super) &'a mut DescriptorEncoder<'e>);

impl Report<'_, '_> {
    /// A gauge without labels.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, v: i64) -> fmt::Result {
        ConstGauge::new(v).encode(
            self.0
                .encode_descriptor(name, help, None, MetricType::Gauge)?,
        )
    }

    /// A counter without labels.
    pub(crate) fn counter(&mut self, name: &str, help: &str, v: u64) -> fmt::Result {
        ConstCounter::new(v).encode(self.0.encode_descriptor(
            name,
            help,
            None,
            MetricType::Counter,
        )?)
    }

    /// A family of gauges, one per label set.
    pub(crate) fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, i64)>,
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in samples {
            ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A family of counters, one per label set.
    pub(crate) fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut m = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in samples {
            ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A family of counters, one per value of the single label `label`.
    pub(crate) fn counters_by<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: [(&str, u64); N],
    ) -> fmt::Result {
        self.counters(name, help, samples.map(|(value, v)| ([(label, value)], v)))
    }

    /// A latency histogram.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        h: &LatencyHistogram,
    ) -> fmt::Result {
        h.encode(
            self.0
                .encode_descriptor(name, help, None, MetricType::Histogram)?,
        )
    }

    /// The connection limit slots held. Reported with or without a
    /// limiter (0 without a WebSocket endpoint), hence defined here.
    pub(crate) fn connection_slots(&mut self, held: usize) -> fmt::Result {
        self.gauge(
            "connection_slots",
            "Connection limit slots held",
            held as i64,
        )
    }
}
