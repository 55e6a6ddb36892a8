//! The sharded event broker.
//!
//! Clients are hashed by id to N shard threads; each shard owns its clients,
//! their outboxes and an inverted index (org / PR key / user -> clients). The
//! [`Hub`] keeps, per index key, which shards hold subscribers, and sends an
//! event (over a crossbeam channel) only to those shards. Every event gets a
//! sequence number under the same lock that sends it, so every shard sees
//! events in acceptance order, and a client receives its events in order and
//! once. The hub also keeps a registry of its clients (what an embedder can
//! read or disconnect) and the replay window that lets a reconnecting client
//! resume (`replay`). It knows nothing of webhooks: intake hands it built
//! [`Event`](crate::Event)s.
//!
//! Layout: `hub` (sequence numbers, routing to shards, the shard threads'
//! life), `join` (a client registers and, resuming, gets its replay: then
//! live), `clients` (the registry and access updates), `routes` (the
//! routing table), `stats`; per shard `shard`, `index`, `filter` and each
//! client's `outbox`; `replay` (the window and one client's replay).

#[doc(hidden)]
pub mod bench;
mod clients;
mod config;
pub(crate) mod filter;
mod hub;
mod index;
mod join;
#[cfg(test)]
mod model_tests;
pub(crate) mod outbox;
pub(crate) mod replay;
mod routes;
mod shard;
mod stats;

pub use clients::Client;
pub(crate) use clients::{AccessUpdate, ClientProfile};
pub use config::{BrokerConfig, ReplayConfig as ReplaySection, SlowClientPolicy};
pub(crate) use filter::Filter;
pub use hub::{BroadcastReceipt, Hub};
pub(crate) use join::{JoinError, Live, Registration};
pub(crate) use outbox::{Drained, Outbox, Outgoing, Revocation};
pub(crate) use replay::{Backfill, BackfillError, BackfillFuture, Backfilled, Replay};
pub use replay::{ReplayConfig, ResumeRefusal, StreamState};
pub use stats::HubStats;

/// A connected client's id, unique for the life of a hub.
pub type ClientId = u64;

/// How a hub is built.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Shard threads (at least 1, at most 256).
    pub shards: usize,
    /// Frames queued per client.
    pub client_queue: usize,
    /// What happens to a client whose queue is full.
    pub slow_client: SlowClientPolicy,
    /// Withhold private-repository events from clients whose tier may not
    /// see them (the default); `false` delivers them and counts each.
    pub enforce_tiers: bool,
    /// The window of recent events clients resume from.
    pub replay: ReplayConfig,
    /// The stream's epoch; `None`: a random one (a new history per start).
    pub epoch: Option<String>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            shards: 1,
            client_queue: 256,
            slow_client: SlowClientPolicy::Drop,
            enforce_tiers: true,
            replay: ReplayConfig::default(),
            epoch: None,
        }
    }
}

/// Most shards a hub can have.
pub const MAX_SHARDS: usize = 256;
