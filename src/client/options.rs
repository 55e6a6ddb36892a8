//! What a [`Subscriber`](super::Subscriber) is told: servers, token,
//! subscription, where to resume, and its timing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Token;

/// What to subscribe to (PROTOCOL.md, "Subscribing").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionRequest {
    /// An organization, or `*`; empty: none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub organization: String,
    /// Pull request URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pull_requests: Vec<String>,
    /// Only events that involve the token's user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub user_events_only: bool,
    /// Event types, `TYPE` or `TYPE.ACTION`; empty: the server's default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Repositories (`OWNER/REPO`): only their events; empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Each event with the webhook as GitHub sent it (its body and
    /// headers; see [`ReceivedEvent::payload`](super::ReceivedEvent::payload)).
    /// The server allows it only to some tiers, else it refuses with
    /// `payload_not_allowed`. Sent only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub include_payload: bool,
}

/// Where in a server's event history a client is: the last event seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The stream's epoch.
    pub epoch: String,
    /// The last seq seen (or the stream's seq when the client went live).
    pub seq: u64,
}

/// Reconnect delays: full jitter over `base * 2^attempt`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub base: Duration,
    /// The largest delay.
    pub cap: Duration,
    /// A connection that lived this long resets the attempts.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based): uniform in
    /// `0 ..= min(cap, base * 2^attempt)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let bound = self
            .base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.cap);
        bound.mul_f64(fastrand::f64())
    }
}

/// How a [`Subscriber`](super::Subscriber) connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server URLs (`ws://` or `wss://`, host and port; `/ws` is added when
    /// there is no path). Tried in order, then round-robin on failure.
    pub servers: Vec<String>,
    /// The bearer token.
    pub token: Token,
    /// What to subscribe to.
    pub subscription: SubscriptionRequest,
    /// Resume after this position (e.g. saved by an earlier run).
    pub position: Option<Position>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Silence from the server this long means a dead connection (the
    /// server pings every 54 s: default twice that).
    pub idle_timeout: Duration,
    /// Time to connect and be confirmed.
    pub connect_timeout: Duration,
    /// Send the token over `ws://` to hosts other than loopback
    /// (127.0.0.0/8, `::1`, `localhost`), unencrypted: anyone on the path
    /// can read it. Off by default.
    pub allow_insecure: bool,
}

impl ClientConfig {
    /// A config with the default timing.
    pub fn new(servers: Vec<String>, token: Token, subscription: SubscriptionRequest) -> Self {
        Self {
            servers,
            token,
            subscription,
            position: None,
            backoff: Backoff::default(),
            idle_timeout: Duration::from_secs(108),
            connect_timeout: Duration::from_secs(15),
            allow_insecure: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_not_sent() {
        let json = |r: &SubscriptionRequest| serde_json::to_string(r).unwrap();
        assert_eq!(json(&SubscriptionRequest::default()), "{}");
        let r = SubscriptionRequest {
            repositories: vec!["acme/api".into()],
            event_types: vec!["pull_request.closed".into()],
            ..SubscriptionRequest::default()
        };
        assert_eq!(
            json(&r),
            r#"{"event_types":["pull_request.closed"],"repositories":["acme/api"]}"#
        );
    }

    #[test]
    fn include_payload_is_sent_only_when_asked() {
        let mut sub = SubscriptionRequest {
            organization: "acme".into(),
            ..Default::default()
        };
        let text = |s: &SubscriptionRequest| serde_json::to_string(s).unwrap();
        assert_eq!(text(&sub), r#"{"organization":"acme"}"#);
        sub.include_payload = true;
        assert_eq!(
            text(&sub),
            r#"{"organization":"acme","include_payload":true}"#
        );
    }

    #[test]
    fn backoff_stays_under_its_growing_bound_and_the_cap() {
        let b = Backoff::default();
        for attempt in 0..30 {
            let bound = Duration::from_secs(1 << attempt.min(6)).min(b.cap);
            for _ in 0..50 {
                assert!(b.delay(attempt) <= bound, "attempt {attempt}");
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(spread.len() > 1, "jittered");
    }
}
