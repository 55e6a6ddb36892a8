//! A client that does not miss events: subscribes to a hookfan (or a
//! webhook-sprinkler) server, and reconnects and resumes on its own.
//!
//! [`Subscriber::next`] yields the events in order, and tells what happened
//! between them: connected, disconnected (and when it tries again), or a
//! gap (the server could not replay what was missed). It keeps the last
//! (epoch, seq) seen and resumes from it after any disconnect, on any of
//! the configured servers; a restarted program resumes too if it saves
//! [`Subscriber::position`] and passes it back in [`ClientConfig::position`].
//!
//! Reconnects back off exponentially with full jitter (a random delay up to
//! `base * 2^attempt`, at most `cap`), reset once a connection has lived
//! `reset_after`. Refusals that retrying cannot fix (bad token, no access,
//! invalid subscription, event type not allowed, payloads not allowed) end
//! the stream with [`ClientError::Refused`].
//!
//! The token is sent over `ws://` only to this machine (a loopback
//! address, or `localhost`): elsewhere it would cross the network
//! unencrypted. [`Subscriber::new`] refuses other `ws://` servers with
//! [`ClientError::InsecureServer`] unless [`ClientConfig::allow_insecure`]
//! is set.
//!
//! Inside: `options` (what a subscriber is told), `update` (what it
//! yields), `error`, `subscriber` (the reconnect and resume loop),
//! `connection` (one connection's upgrade, subscription and confirmation),
//! `servers` (URL checks) and `forward` (POSTing payloads to a server of
//! one's own, for `hookfan subscribe --forward`).
//!
//! ```no_run
//! use hookfan::client::{ClientConfig, SubscriptionRequest, Subscriber, Update};
//! use hookfan::Token;
//!
//! # async fn run() -> Result<(), hookfan::client::ClientError> {
//! let mut sub = Subscriber::new(ClientConfig::new(
//!     vec!["wss://hooks.example.com".into()],
//!     Token::new(std::env::var("GITHUB_TOKEN").unwrap_or_default()),
//!     SubscriptionRequest {
//!         organization: "acme".into(),
//!         ..Default::default()
//!     },
//! ))?;
//! loop {
//!     match sub.next().await? {
//!         Update::Event(e) => println!("{} {}", e.kind, e.url),
//!         Update::Gap(g) => eprintln!("may have missed events: {}", g.describe()),
//!         _ => {}
//!     }
//! }
//! # }
//! ```

mod connection;
mod error;
mod forward;
mod options;
mod servers;
mod subscriber;
mod update;

pub use connection::MAX_PAYLOAD_MESSAGE;
pub use error::ClientError;
pub use forward::{
    Attempt, ForwardBackoff, ForwardError, ForwardSecret, Forwarder, SIGNATURE_HEADER, forward_url,
};
pub use options::{Backoff, ClientConfig, Position, SubscriptionRequest};
pub use subscriber::Subscriber;
pub use update::{Gap, ReceivedEvent, Update};

/// Error codes after which retrying cannot help.
pub const FATAL_ERRORS: [&str; 5] = [
    "authentication_failed",
    "access_denied",
    "invalid_subscription",
    "event_type_not_allowed",
    "payload_not_allowed",
];
