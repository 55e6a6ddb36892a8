//! The figures read when `/metrics` is scraped: the hub's, the runtime's,
//! the registered [`Source`]s', the auth provider's and the delivery
//! latency, in this order.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::LatencyHistogram;
use super::source::{Place, Report, Source};
use crate::auth::AuthProvider;
use crate::broker::{Hub, HubStats};

/// The sources registered, by place.
pub(super) type Sources = [OnceLock<Arc<dyn Source>>; Place::COUNT];

/// Reads the hub's, the sources' and the auth provider's own counters at
/// scrape time.
pub(super) struct StateCollector {
    pub(super) hub: Hub,
    pub(super) auth: Arc<dyn AuthProvider>,
    pub(super) latency: Arc<LatencyHistogram>,
    pub(super) sources: Arc<Sources>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let out = &mut Report(&mut e);
        let s = self.hub.stats();
        self.clients(out, &s)?;
        runtime(out)?;
        broadcast(out, &s)?;
        replay(out, &s)?;
        for place in Place::AFTER_HUB {
            self.source(out, place)?;
        }
        for family in self.auth.metrics() {
            out.counters(family.name, family.help, family.samples)?;
        }
        out.histogram(
            "delivery_latency_seconds",
            "From webhook accepted to event frame written to the client's socket",
            &self.latency,
        )
    }
}

impl StateCollector {
    /// The source registered at `place`, if any, reports.
    fn source(&self, out: &mut Report<'_, '_>, place: Place) -> std::fmt::Result {
        match self.sources[place as usize].get() {
            Some(source) => source.report(out),
            None => Ok(()),
        }
    }

    /// Clients and sessions, and the connection slots they hold.
    fn clients(&self, out: &mut Report<'_, '_>, s: &HubStats) -> std::fmt::Result {
        out.gauge(
            "connected_clients",
            "Subscribed WebSocket clients",
            s.clients as i64,
        )?;
        out.gauges(
            "shard_connected_clients",
            "Subscribed WebSocket clients per shard",
            s.clients_per_shard
                .iter()
                .enumerate()
                .map(|(shard, n)| ([("shard", shard.to_string())], *n as i64)),
        )?;
        out.gauge(
            "websocket_sessions",
            "WebSocket connections open (handshaking or subscribed)",
            s.live_sessions as i64,
        )?;
        if self.sources[Place::Connections as usize].get().is_some() {
            self.source(out, Place::Connections)?;
        } else {
            out.connection_slots(0)?;
        }
        out.gauge(
            "index_keys",
            "Keys in the shards' subscription indexes",
            s.index_keys as i64,
        )?;
        out.gauge(
            "shard_queue_depth",
            "Messages waiting for the shard threads (events, registrations)",
            s.shard_queue as i64,
        )
    }
}

/// The tokio runtime's figures. Scraped from inside the runtime; they are
/// the whole runtime's (connection tasks, webhook handlers, timers).
fn runtime(out: &mut Report<'_, '_>) -> std::fmt::Result {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Ok(());
    };
    let m = rt.metrics();
    out.gauge(
        "runtime_alive_tasks",
        "Tokio tasks alive (one per connection, plus the daemon's own)",
        m.num_alive_tasks() as i64,
    )?;
    out.gauge(
        "runtime_global_queue_depth",
        "Tokio tasks waiting in the runtime's global queue",
        m.global_queue_depth() as i64,
    )
}

/// Events broadcast and what became of their frames.
fn broadcast(out: &mut Report<'_, '_>, s: &HubStats) -> std::fmt::Result {
    out.counter(
        "events_broadcast",
        "Events accepted for broadcast",
        s.events_accepted,
    )?;
    out.counter("deliveries", "Event frames queued to clients", s.deliveries)?;
    out.counter(
        "drops",
        "Event frames dropped because a client's queue was full",
        s.drops,
    )?;
    out.counter(
        "slow_client_closes",
        "Clients closed because their queue was full",
        s.slow_closes,
    )?;
    out.counter(
        "unentitled_deliveries",
        "Private-repository events delivered to clients whose tier may not see them (tiers.enforce = false)",
        s.unentitled_deliveries,
    )
}

/// The replay window and the resumes it served.
fn replay(out: &mut Report<'_, '_>, s: &HubStats) -> std::fmt::Result {
    out.gauge(
        "replay_window_events",
        "Events held for resuming clients",
        s.window_events as i64,
    )?;
    out.gauge(
        "replay_window_bytes",
        "Bytes held by the replay window",
        s.window_bytes as i64,
    )?;
    out.gauge(
        "replay_oldest_seq",
        "Oldest seq held for replay (the last seq + 1 when none is)",
        s.window_oldest as i64,
    )?;
    out.counters_by(
        "resumes",
        "Resume requests by outcome",
        "outcome",
        [
            ("resumed", s.resumes_resumed),
            ("unknown_epoch", s.resumes_unknown_epoch),
            ("too_old", s.resumes_too_old),
        ],
    )?;
    out.counter(
        "events_replayed",
        "Events written to resuming clients from the replay window",
        s.events_replayed,
    )
}
