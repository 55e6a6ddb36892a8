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

mod backfill;
mod config;
mod connect;
mod consume;
pub mod facts;
mod lease;
mod publish;
mod stats;
mod stream;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::watch;

use crate::broker::Hub;
use crate::checks::ConfigError;
use crate::webhook::{CommitCache, DeliveryIds};
use backfill::BackfillBounds;
pub use config::ClusterConfig;
pub(crate) use lease::Lease;
pub(crate) use stats::ClusterStats;

/// Why a node could not join its cluster, or read or write its stream.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Could not join at start: the config key to look at, and what went
    /// wrong, for people.
    #[error(transparent)]
    Join(#[from] ConfigError),
    /// The link to NATS is down.
    #[error("NATS is not connected")]
    NotConnected,
    /// JetStream did not tell the stream's last seq in time.
    #[error("no answer from JetStream in time")]
    NoAnswer,
    /// This node did not apply the stream up to this seq in time.
    #[error("this node has not applied the stream up to {0} in time")]
    NotApplied(u64),
    /// The consumer's messages ended.
    #[error("the stream of messages ended")]
    MessagesEnded,
    /// A resume's read of the stream took longer than allowed.
    #[error("reading seqs {from}..={to} (waiting for other resumes included) took over {secs} s")]
    SlowRead {
        /// The first seq asked for.
        from: u64,
        /// The last seq asked for.
        to: u64,
        /// The time limit, in seconds.
        secs: u64,
    },
    /// The turns of resumes reading the stream were closed.
    #[error("closed")]
    Closed,
    /// A call to NATS, or the wait for its result, failed.
    #[error(transparent)]
    Nats(async_nats::Error),
}

/// A failed call to NATS (or wait for its result), shown as it is.
fn nats(e: impl Into<async_nats::Error>) -> ClusterError {
    ClusterError::Nats(e.into())
}

/// A failure to join the cluster, naming the config key to look at.
fn fail(key: &'static str, message: impl Into<String>) -> ClusterError {
    ClusterError::Join(ConfigError::new(key, message))
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
    /// Bumped each time NATS is back after being lost.
    reconnected: watch::Sender<u64>,
    stats: Arc<ClusterStats>,
    hub: OnceLock<Hub>,
    /// Resumes reading the stream at once on this node
    /// (`cluster.backfill_concurrency`); more wait their turn, within the
    /// read's time limit.
    backfills: tokio::sync::Semaphore,
    /// What one resume may read from the stream.
    backfill_bounds: BackfillBounds,
}

impl Cluster {
    /// The stream's identity: the epoch every node gives its clients.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// Whether stream messages can carry payloads of up to `max_payload`
    /// bytes (with their facts): NATS refuses a message over its server's
    /// `max_payload` (1 MB unless configured).
    pub fn check_payload_room(&self, max_payload: u64) -> Result<(), ClusterError> {
        let room = self.inner.client.server_info().max_payload as u64;
        let needed = max_payload + facts::MAX_FACTS as u64;
        if room >= needed {
            return Ok(());
        }
        Err(fail(
            "payloads.enabled",
            format!(
                "a stream message carries a payload of up to webhook.max_payload_bytes ({max_payload}) plus {} bytes, but NATS accepts messages of at most {room} bytes: raise max_payload in nats-server's configuration to at least {needed} (NATS allows up to 64 MB), or lower webhook.max_payload_bytes",
                facts::MAX_FACTS
            ),
        ))
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
        tokio::spawn(async move { consume::consume(inner, hub, learners).await });
        let inner = self.inner.clone();
        tokio::spawn(async move { stream::watch_stream(inner).await });
    }
}
