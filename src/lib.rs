//! hookfan: GitHub webhook fan-out over authenticated WebSockets.
//!
//! A GitHub App has one webhook URL; hookfan sits behind it, verifies each
//! delivery (HMAC-SHA256), parses it once into a compact [`Event`], and
//! pushes a small JSON message over WebSockets to every client whose
//! subscription matches. It speaks webhook-sprinkler's protocol, and is both
//! a daemon (`hookfan --config PATH`) and this library, which a Rust
//! service embeds the way Go services embed sprinkler's `srv` package:
//!
//! - [`Hub`]: the sharded broker. Start it, [`broadcast`](Hub::broadcast)
//!   events, read its [`clients`](Hub::clients),
//!   [`disconnect`](Hub::disconnect) one, [`stop`](Hub::stop) it.
//! - [`WsEndpoint`]: what to route `GET /ws` to, with the checks made
//!   before the upgrade usable on their own ([`WsEndpoint::check`]).
//! - [`WebhookEndpoint`]: what to route `POST /webhook` to; it verifies,
//!   [`parse`](WebhookEndpoint::parse)s once and hands the event to an
//!   [`EventSink`], normally the hub ([`WebhookVerifier`] alone checks
//!   signatures).
//! - [`AuthProvider`]: who a token belongs to; [`GithubProvider`] asks the
//!   GitHub API, [`StaticTokens`] reads a table, and an embedder can bring
//!   its own.
//! - [`client`]: the other side, for programs consuming events: a
//!   subscription that reconnects and resumes by itself (what
//!   `hookfan subscribe` is built on).
//! - [`Subscription`], [`Client`], [`Event`], [`CommitCache`] / [`PrInfo`],
//!   [`Metrics`].
//!
//! # Crate map
//!
//! A webhook's way from request to delivery, each step in its own module
//! (the `crate::` imports between them form no circle; lower modules never
//! import higher ones):
//!
//! 1. `server/`: the daemon's listeners (one accept loop for the main,
//!    metrics and redirect listeners), routing, TLS mode, reload and
//!    shutdown. Built from the public API below; the binary
//!    (`src/bin/hookfan/`) adds the command line, one file per command.
//! 2. `webhook/`: `POST /webhook` in the order of checks (body limits,
//!    signature, capacity, dedup), then `webhook/extract/` parses the body
//!    once into an `event::Event`, resolving commits through the
//!    repository-keyed commit cache.
//! 3. `cluster/` (optional): the event goes through NATS JetStream and every
//!    node applies it; `cluster/backfill.rs` serves resumes from the stream.
//! 4. `broker/`: the [`Hub`] routes the event to the shard threads whose
//!    inverted index (`broker/index.rs`, `broker/routes.rs`) holds a
//!    matching subscriber; each writes one pre-serialized frame into the
//!    client's outbox. `broker/join.rs` owns joining: replay from the window
//!    or the stream, then live.
//! 5. `ws/`: `GET /ws`: checks before the upgrade (`limits`; the token
//!    from the header or `ws/subprotocol.rs`), the upgrade, then
//!    `ws/session/` (handshake: subscription and token check through
//!    `auth/`; stream: writes the outbox and pings); `ws/access.rs`
//!    checks connected clients' tokens again. `ws/sse/` serves the same
//!    subscription as Server-Sent Events (`GET /events`), through the same
//!    checks and join; `ui/` serves the live events page.
//!
//! Beside the path: `config/` loads the TOML file and holds the aggregate,
//! while each module owns its section (`auth/config.rs`, `tls/config.rs`,
//! `broker/config.rs`, ...), all checked with the shared `checks`; leaves
//! with no crate imports: `codec` (WebSocket frames), `http_text`
//! (plain-text answers), `write_deadline` (a stalled response's end),
//! `tier`, `gh_api` (what the GitHub API's callers share); `metrics/`
//! reads each part through the `metrics::Source` trait they implement;
//! `client/` is the consumer side; `tls/` the certificates and outgoing
//! TLS; `redelivery/` asks GitHub, as the App (`github_app/`:
//! its key and JWT), to redeliver the webhooks it failed to deliver.
//!
//! # Guarantees
//!
//! Every accepted event gets the next sequence number (its `"seq"` on the
//! wire); each client receives the events that match its subscription
//! exactly once, in sequence order, unless its outbound queue overflows
//! ([`HubConfig::slow_client`]: the newest event is then dropped and
//! counted, or the client is closed). A client that reconnects with the
//! last (epoch, seq) it saw is replayed what it missed from a bounded window
//! of recent events ([`HubConfig::replay`], [`Hub::stream_state`]), then
//! continues live, with no gap and no duplicate at the boundary.
//! Broadcasting never waits on clients. All types are `Send + Sync`; the
//! endpoints must be called from a tokio runtime, on which each connection
//! runs as tasks, while the hub's shards are OS threads of their own.
//!
//! # Example
//!
//! A hub, `/ws` mounted in a plain hyper server, a client subscribing, an
//! event broadcast and received; then the client reconnects and resumes,
//! and gets the event it missed while away:
//!
//! ```
//! use std::sync::Arc;
//! use futures_util::{SinkExt, StreamExt};
//! use hookfan::{
//!     AuthProvider, Event, EventParts, Hub, HubConfig, Identity, IdentityKind, Metrics,
//!     OrgSet, StaticTokens, Tier, Token, WsEndpoint, WsOptions,
//! };
//! use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A hub, and a token table standing in for GitHub.
//! let hub = Hub::start(HubConfig::default())?;
//! let token = Token::new(format!("ghp_{}", "a".repeat(36)));
//! let mut tokens = StaticTokens::default();
//! tokens.insert(&token, Identity {
//!     login: "alice".into(),
//!     orgs: OrgSet::new(["acme"]),
//!     tier: Tier::Free,
//!     kind: IdentityKind::User,
//! });
//! let auth: Arc<dyn AuthProvider> = Arc::new(tokens);
//! let ws = WsEndpoint::new(hub.clone(), auth.clone(), WsOptions::default(), Metrics::new(&hub, auth));
//!
//! // Mount /ws in a plain hyper server.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((stream, peer)) = listener.accept().await {
//!         let ws = ws.clone();
//!         let service = hyper::service::service_fn(move |req| {
//!             let response = ws.handle(req, peer);
//!             async move { Ok::<_, std::convert::Infallible>(response) }
//!         });
//!         tokio::spawn(
//!             hyper::server::conn::http1::Builder::new()
//!                 .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
//!                 .with_upgrades(),
//!         );
//!     }
//! });
//!
//! // A client subscribes to acme...
//! let connect = || async {
//!     let mut request = format!("ws://{addr}/ws").into_client_request()?;
//!     request
//!         .headers_mut()
//!         .insert("authorization", format!("Bearer {}", token.expose()).parse()?);
//!     let (client, _) = tokio_tungstenite::connect_async(request).await?;
//!     Ok::<_, Box<dyn std::error::Error>>(client)
//! };
//! let mut client = connect().await?;
//! client.send(Message::text(r#"{"organization":"acme"}"#)).await?;
//! let confirmed: serde_json::Value =
//!     serde_json::from_str(client.next().await.expect("a message")?.to_text()?)?;
//! assert_eq!(confirmed["type"], "subscription_confirmed");
//! let epoch = confirmed["stream"]["epoch"].as_str().unwrap().to_owned();
//! assert_eq!(epoch, hub.epoch());
//!
//! // ...and receives what the hub broadcasts for acme, with its seq.
//! let pr = |n: u32| {
//!     Event::new(EventParts {
//!         kind: "pull_request".into(),
//!         url: format!("https://github.com/acme/api/pull/{n}"),
//!         org: Some("acme".into()),
//!         ..EventParts::default()
//!     })
//! };
//! hub.broadcast(pr(7));
//! let event: serde_json::Value =
//!     serde_json::from_str(client.next().await.expect("a message")?.to_text()?)?;
//! assert_eq!(event["url"], "https://github.com/acme/api/pull/7");
//! let last_seen = event["seq"].as_u64().unwrap();
//!
//! // The client goes away; an event arrives meanwhile.
//! drop(client);
//! hub.broadcast(pr(8));
//!
//! // It comes back with the last (epoch, seq) it saw: the missed event is
//! // replayed, then it is live again.
//! let mut client = connect().await?;
//! let resume = serde_json::json!({
//!     "organization": "acme",
//!     "resume": {"epoch": epoch, "after": last_seen},
//! });
//! client.send(Message::text(resume.to_string())).await?;
//! let confirmed: serde_json::Value =
//!     serde_json::from_str(client.next().await.expect("a message")?.to_text()?)?;
//! assert_eq!(confirmed["resumed"], true);
//! let missed: serde_json::Value =
//!     serde_json::from_str(client.next().await.expect("a message")?.to_text()?)?;
//! assert_eq!(missed["url"], "https://github.com/acme/api/pull/8");
//! assert_eq!(missed["seq"], last_seen + 1);
//!
//! hub.stop();
//! hub.stopped().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
mod broker;
mod checks;
pub mod client;
mod cluster;
mod codec;
pub mod config;
mod event;
mod gh_api;
mod github_app;
mod http_text;
// Crate-private parsers exposed to the cargo-fuzz targets in fuzz/.
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod metrics;
mod payloads;
mod redelivery;
pub mod server;
mod subscription;
mod tier;
mod tls;
mod ui;
mod webhook;
mod write_deadline;
mod ws;

pub use auth::github::{GithubProvider, GithubStats};
pub use auth::static_tokens::StaticTokens;
pub use auth::{
    AuthError, AuthFuture, AuthProvider, CounterFamily, Identity, IdentityKind, OrgSet, Tier,
    Token, TokenRejection,
};
pub use broker::SlowClientPolicy;
pub use broker::{
    BroadcastReceipt, Client, ClientId, Hub, HubConfig, HubStats, MAX_SHARDS, ReplayConfig,
    ResumeRefusal, StreamState,
};
pub use event::{EXPLICIT_ONLY_TYPES, Event, EventParts, KNOWN_EVENT_TYPES};
pub use limits::ConnCounts;
pub use metrics::Metrics;
pub use payloads::{
    FORWARDED_HEADERS, MAX_HEADER_VALUE, PayloadRefusal, PayloadsConfig, WebhookPayload,
};
pub use subscription::{ResumeFrom, Subscription, SubscriptionError};
pub use webhook::{
    AllowedSource, CommitCache, CommitCacheStats, EventSink, ParseError, PrInfo, Signature,
    SignatureError, SinkError, SinkFuture, Stored, WebhookEndpoint, WebhookKeys, WebhookOptions,
    WebhookVerifier, sign,
};
pub use ws::{Admission, Origin, OriginError, Refusal, SUBPROTOCOL, WsEndpoint, WsOptions};

/// Hooks for the criterion benchmarks; not a stable API.
#[doc(hidden)]
pub use broker::bench;

/// A single node: intake broadcasts straight on the hub, and an event is
/// ordered (and answered 200) as soon as the hub has it.
impl EventSink for Hub {
    fn submit(&self, event: EventParts) -> SinkFuture<'_, Stored> {
        let seq = self.broadcast(Event::new(event)).seq;
        Box::pin(std::future::ready(Ok(Stored {
            seq,
            duplicate: false,
        })))
    }
}
