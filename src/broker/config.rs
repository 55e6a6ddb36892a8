//! `[broker]` (shards, per-client queues, the slow-client policy) and
//! `[replay]` (the window clients resume from): their defaults, which are
//! the hub's own, and their checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HubConfig;
use super::replay::ReplayConfig as ReplayBounds;
use crate::checks::{ConfigError, Section, range, require};

/// What happens to a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowClientPolicy {
    /// Drop the newest event for that client and count it.
    Drop,
    /// Close the client with code 1008 so that it reconnects.
    Disconnect,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Shard threads; 0 means one per CPU.
    pub shards: usize,
    /// Frames queued per client before the slow-client policy applies.
    pub client_queue: usize,
    /// `drop` or `disconnect`.
    pub slow_client: SlowClientPolicy,
}

impl Default for BrokerConfig {
    /// The hub's defaults, with one shard per CPU.
    fn default() -> Self {
        let hub = HubConfig::default();
        Self {
            shards: 0,
            client_queue: hub.client_queue,
            slow_client: hub.slow_client,
        }
    }
}

impl BrokerConfig {
    /// The shard count after resolving `0` to the number of CPUs.
    pub fn effective_shards(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.shards
        }
    }
}

impl Section for BrokerConfig {
    fn validate(&self) -> Vec<ConfigError> {
        [
            require(self.shards <= 256, "broker.shards", || {
                format!("must be 0 (one per CPU) ..=256, got {}", self.shards)
            }),
            range(
                "broker.client_queue",
                self.client_queue,
                1..=65_536,
                "frames",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// `[replay]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Most events held for resuming clients; 0 turns resume off.
    pub max_events: usize,
    /// Most bytes the window holds (frames and event data).
    pub max_bytes: usize,
    /// Seconds an event is held at most.
    pub max_age_s: u64,
}

impl Default for ReplayConfig {
    /// The hub's own window.
    fn default() -> Self {
        let window = ReplayBounds::default();
        Self {
            max_events: window.max_events,
            max_bytes: window.max_bytes,
            max_age_s: window.max_age.as_secs(),
        }
    }
}

impl ReplayConfig {
    /// The hub's window these keys describe ([`crate::HubConfig::replay`]).
    pub fn window(&self) -> ReplayBounds {
        ReplayBounds {
            max_events: self.max_events,
            max_bytes: self.max_bytes,
            max_age: Duration::from_secs(self.max_age_s),
        }
    }
}

impl Section for ReplayConfig {
    fn validate(&self) -> Vec<ConfigError> {
        [
            require(self.max_events <= 10_000_000, "replay.max_events", || {
                format!(
                    "must be 0 (resume off) ..=10000000, got {}",
                    self.max_events
                )
            }),
            require(
                (1 << 20..=16 << 30).contains(&self.max_bytes),
                "replay.max_bytes",
                || {
                    format!(
                        "must be 1048576 ..= 17179869184 bytes, got {}",
                        self.max_bytes
                    )
                },
            ),
            range(
                "replay.max_age_s",
                self.max_age_s,
                1..=7 * 86_400,
                "seconds",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
