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
//! invalid subscription, event type not allowed) end the stream with
//! [`ClientError::Refused`].
//!
//! The token is sent over `ws://` only to this machine (a loopback
//! address, or `localhost`): elsewhere it would cross the network
//! unencrypted. [`Subscriber::new`] refuses other `ws://` servers with
//! [`ClientError::InsecureServer`] unless [`ClientConfig::allow_insecure`]
//! is set.
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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::auth::Token;

/// Error codes after which retrying cannot help.
pub const FATAL_ERRORS: [&str; 4] = [
    "authentication_failed",
    "access_denied",
    "invalid_subscription",
    "event_type_not_allowed",
];

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
    /// Event types; empty: the server's default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
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

/// How a [`Subscriber`] connects.
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

/// An event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The message exactly as the server sent it.
    pub json: String,
    /// `url`.
    pub url: String,
    /// `type`.
    pub kind: String,
    /// `delivery_id` (may be empty).
    pub delivery_id: String,
    /// `timestamp`.
    pub timestamp: String,
    /// `seq` (absent from webhook-sprinkler).
    pub seq: Option<u64>,
}

/// Events may have been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The last position seen before the gap.
    pub after: Option<Position>,
    /// The last event's `timestamp` before the gap.
    pub last_event_at: Option<String>,
    /// The server's `resume_error` (`unknown_epoch`, `too_old`), or
    /// `no_resume` when the server does not resume (webhook-sprinkler).
    pub reason: String,
}

impl Gap {
    /// One line for people.
    pub fn describe(&self) -> String {
        let from = match &self.after {
            Some(p) => format!("after seq {} (epoch {})", p.seq, p.epoch),
            None => "since the previous connection".to_owned(),
        };
        let at = self
            .last_event_at
            .as_deref()
            .map(|t| format!(", last event received at {t}"))
            .unwrap_or_default();
        format!(
            "events {from}{at} may have been missed: the server could not replay them ({})",
            self.reason
        )
    }
}

/// What a [`Subscriber`] has to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An event.
    Event(ReceivedEvent),
    /// Subscribed, on `server`; `resumed` when a resume was asked.
    Connected {
        /// The server's URL.
        server: String,
        /// Whether the server replayed what was missed (`None`: nothing to
        /// resume).
        resumed: Option<bool>,
        /// The server's `warnings`.
        warnings: Vec<String>,
    },
    /// Events may have been missed (then [`Update::Connected`] follows).
    Gap(Gap),
    /// The connection ended or could not be made; the next attempt is in
    /// `retry_in`.
    Disconnected {
        /// The server's URL.
        server: String,
        /// What happened.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

/// Why a subscriber stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server refused in a way that retrying cannot fix.
    Refused {
        /// The error code (or the HTTP status, as `http_401` ...).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The configuration cannot work.
    Config(String),
    /// A `ws://` server that is not on this machine: the token would cross
    /// the network unencrypted. Use `wss://`, or set
    /// [`ClientConfig::allow_insecure`].
    InsecureServer {
        /// The server URL, as given.
        server: String,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Refused { code, message } => write!(f, "{message} ({code})"),
            ClientError::Config(m) => f.write_str(m),
            ClientError::InsecureServer { server } => write!(
                f,
                "{server}: refusing to send the token unencrypted over ws:// to a host that is not loopback; use wss://"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A subscription that reconnects and resumes by itself.
pub struct Subscriber {
    config: ClientConfig,
    urls: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    position: Option<Position>,
    last_event_at: Option<String>,
    /// Which server is next, and the attempts since a connection lived.
    server: usize,
    attempt: u32,
    ws: Option<(Ws, Instant)>,
    /// Delay before the next connection attempt.
    wait: Option<Duration>,
    /// A connection has been confirmed before (a later one without resume
    /// is a gap).
    connected_before: bool,
    pending: VecDeque<Update>,
}

enum Failure {
    Fatal(ClientError),
    Retry(String),
}

impl Subscriber {
    /// A subscriber; it connects on the first [`Subscriber::next`].
    pub fn new(config: ClientConfig) -> Result<Subscriber, ClientError> {
        if config.servers.is_empty() {
            return Err(ClientError::Config("no server given".into()));
        }
        let urls = config
            .servers
            .iter()
            .map(|s| normalize_url(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ClientError::Config)?;
        if !config.allow_insecure {
            for (server, url) in config.servers.iter().zip(&urls) {
                refuse_insecure(server, url)?;
            }
        }
        let tls = if urls.iter().any(|u| u.starts_with("wss://")) {
            Some(Arc::new(
                crate::tls::client_config("the server").map_err(|e| ClientError::Config(e.to_string()))?,
            ))
        } else {
            None
        };
        Ok(Subscriber {
            position: config.position.clone(),
            config,
            urls,
            tls,
            last_event_at: None,
            server: 0,
            attempt: 0,
            ws: None,
            wait: None,
            connected_before: false,
            pending: VecDeque::new(),
        })
    }

    /// The last position seen: save it to resume from it in a later run.
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// The stream of updates, for use with stream combinators.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Update, ClientError>> {
        futures_util::stream::unfold(Some(self), |s| async move {
            let mut s = s?;
            match s.next().await {
                Ok(u) => Some((Ok(u), Some(s))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }

    /// The next update; waits (reconnecting as needed) until there is one.
    /// An error ends the subscription.
    pub async fn next(&mut self) -> Result<Update, ClientError> {
        loop {
            if let Some(u) = self.pending.pop_front() {
                return Ok(u);
            }
            let Some((ws, _)) = &mut self.ws else {
                if let Some(d) = self.wait.take() {
                    tokio::time::sleep(d).await;
                }
                match self.open().await {
                    Ok(()) => continue,
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Retry(e)) => return Ok(self.failed(e)),
                }
            };
            let msg = tokio::time::timeout(self.config.idle_timeout, ws.next()).await;
            let text = match msg {
                Err(_) => {
                    let s = self.config.idle_timeout.as_secs();
                    return Ok(self.failed(format!("no message from the server in {s} s")));
                }
                Ok(None) => return Ok(self.failed("connection closed".into())),
                Ok(Some(Err(e))) => return Ok(self.failed(e.to_string())),
                Ok(Some(Ok(Message::Close(f)))) => {
                    let why = f.map_or("closed".to_owned(), |f| {
                        format!("closed by the server: {} {}", u16::from(f.code), f.reason)
                    });
                    return Ok(self.failed(why));
                }
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
            };
            let v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v.get("url").is_some() {
                return Ok(Update::Event(self.received(text.to_string(), &v)));
            }
            if v["type"] == "ping" {
                let pong = serde_json::json!({"type": "pong", "seq": v["seq"]}).to_string();
                if let Err(e) = ws.send(Message::text(pong)).await {
                    return Ok(self.failed(e.to_string()));
                }
            }
        }
    }

    /// Notes an event: it is the new position.
    fn received(&mut self, json: String, v: &Value) -> ReceivedEvent {
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let e = ReceivedEvent {
            url: s("url"),
            kind: s("type"),
            delivery_id: s("delivery_id"),
            timestamp: s("timestamp"),
            seq: v["seq"].as_u64(),
            json,
        };
        if let (Some(seq), Some(p)) = (e.seq, &mut self.position) {
            p.seq = seq;
        }
        self.last_event_at = Some(e.timestamp.clone());
        e
    }

    /// The connection is gone: schedule the next attempt on the next
    /// server.
    fn failed(&mut self, error: String) -> Update {
        let server = self.urls[self.server].clone();
        if let Some((_, since)) = self.ws.take()
            && since.elapsed() >= self.config.backoff.reset_after
        {
            self.attempt = 0;
        }
        let retry_in = self.config.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.server = (self.server + 1) % self.urls.len();
        self.wait = Some(retry_in);
        Update::Disconnected {
            server,
            error,
            retry_in,
        }
    }

    /// Connects to the current server and subscribes (resuming when there
    /// is a position).
    async fn open(&mut self) -> Result<(), Failure> {
        let url = self.urls[self.server].clone();
        let limit = self.config.connect_timeout;
        let (ws, confirmation) = tokio::time::timeout(limit, self.handshake(&url))
            .await
            .map_err(|_| {
                Failure::Retry(format!("not subscribed within {} s", limit.as_secs()))
            })??;
        let asked = self.position.clone();
        let resumed = confirmation["resumed"].as_bool();
        let stream = confirmation["stream"]
            .as_object()
            .and_then(|s| Some((s.get("epoch")?.as_str()?, s.get("seq")?.as_u64()?)));
        let gap_reason = match (&asked, resumed, stream) {
            (Some(_), Some(false), _) => Some(
                confirmation["resume_error"]
                    .as_str()
                    .unwrap_or("refused")
                    .to_owned(),
            ),
            (Some(_), None, _) => Some("no_resume".to_owned()),
            (None, _, _) if self.connected_before => Some("no_resume".to_owned()),
            _ => None,
        };
        if let Some(reason) = gap_reason {
            self.pending.push_back(Update::Gap(Gap {
                after: asked.clone(),
                last_event_at: self.last_event_at.clone(),
                reason,
            }));
        }
        // Resumed: the position stands. Otherwise the client is live from
        // the stream's seq: a later disconnect resumes from there.
        if resumed != Some(true) {
            self.position = stream.map(|(epoch, seq)| Position {
                epoch: epoch.to_owned(),
                seq,
            });
        }
        let warnings = confirmation["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        self.pending.push_back(Update::Connected {
            server: url,
            resumed: asked.is_some().then_some(resumed == Some(true)),
            warnings,
        });
        self.connected_before = true;
        self.ws = Some((ws, Instant::now()));
        Ok(())
    }

    async fn handshake(&self, url: &str) -> Result<(Ws, Value), Failure> {
        let mut req = url
            .into_client_request()
            .map_err(|e| Failure::Fatal(ClientError::Config(format!("{url}: {e}"))))?;
        let bearer = format!("Bearer {}", self.config.token.expose());
        req.headers_mut().insert(
            "authorization",
            bearer.parse().map_err(|_| {
                Failure::Fatal(ClientError::Config(
                    "the token is not a valid header value".into(),
                ))
            })?,
        );
        let connector = self.tls.clone().map(Connector::Rustls);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(req, None, true, connector)
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(r)
                        if matches!(r.status().as_u16(), 400 | 401 | 403 | 404) =>
                    {
                        let body = r
                            .body()
                            .as_deref()
                            .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                            .unwrap_or_default();
                        Failure::Fatal(ClientError::Refused {
                            code: format!("http_{}", r.status().as_u16()),
                            message: if body.is_empty() {
                                format!("the server answered {}", r.status())
                            } else {
                                body
                            },
                        })
                    }
                    other => Failure::Retry(other.to_string()),
                })?;
        let mut sub = serde_json::to_value(&self.config.subscription).expect("serializable");
        if let Some(p) = &self.position {
            sub["resume"] = serde_json::json!({"epoch": p.epoch, "after": p.seq});
        }
        ws.send(Message::text(sub.to_string()))
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        loop {
            let text = match ws.next().await {
                None => return Err(Failure::Retry("closed before confirming".into())),
                Some(Err(e)) => return Err(Failure::Retry(e.to_string())),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => {
                    let why = f.map_or(String::new(), |f| f.reason.to_string());
                    return Err(Failure::Retry(format!("closed before confirming: {why}")));
                }
                Some(Ok(_)) => continue,
            };
            let v: Value = serde_json::from_str(&text)
                .map_err(|_| Failure::Retry(format!("unexpected answer: {text}")))?;
            match v["type"].as_str() {
                Some("subscription_confirmed") => return Ok((ws, v)),
                Some("error") => {
                    let code = v["error"].as_str().unwrap_or("error").to_owned();
                    let message = v["message"].as_str().unwrap_or_default().to_owned();
                    return Err(if FATAL_ERRORS.contains(&code.as_str()) {
                        Failure::Fatal(ClientError::Refused { code, message })
                    } else {
                        Failure::Retry(format!("{message} ({code})"))
                    });
                }
                _ => continue,
            }
        }
    }
}

/// `ws://host:port` or `wss://...`, with `/ws` when there is no path.
fn normalize_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("ws://")
        .or_else(|| s.strip_prefix("wss://"))
        .ok_or_else(|| format!("{s:?}: the server URL must start with ws:// or wss://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{s:?}: no host"));
    }
    Ok(if rest.contains('/') {
        s.to_owned()
    } else {
        format!("{s}/ws")
    })
}

/// Refuses `url` (normalized from `server`) when it is `ws://` to a host
/// that is not loopback: the token would leave the machine unencrypted.
/// The host is read as the connection will read it (`http::Uri`); a name
/// other than `localhost` is not resolved, so it counts as remote.
fn refuse_insecure(server: &str, url: &str) -> Result<(), ClientError> {
    if !url.starts_with("ws://") {
        return Ok(());
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ClientError::Config(format!("{server}: {e}")))?;
    if uri.host().is_some_and(is_loopback_host) {
        Ok(())
    } else {
        Err(ClientError::InsecureServer {
            server: server.to_owned(),
        })
    }
}

/// `localhost`, or an address in 127.0.0.0/8 or `::1` (in brackets, as in
/// a URL; `::ffff:127.x.y.z` too).
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    literal
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(server: &str) -> bool {
        let url = normalize_url(server).unwrap();
        match refuse_insecure(server, &url) {
            Ok(()) => false,
            Err(ClientError::InsecureServer { server: s }) => {
                assert_eq!(s, server);
                true
            }
            Err(e) => panic!("{server}: {e}"),
        }
    }

    #[test]
    fn ws_only_to_loopback_hosts() {
        for ok in [
            "ws://127.0.0.1:8080",
            "ws://127.1.2.3/ws",
            "ws://[::1]:8080",
            "ws://[::ffff:127.0.0.1]:8080",
            "ws://localhost:8080",
            "ws://LocalHost",
            "wss://example.com",
            "wss://203.0.113.1:443/ws",
        ] {
            assert!(!refused(ok), "{ok}");
        }
        for remote in [
            "ws://example.com/ws",
            "ws://203.0.113.1:8080",
            "ws://10.0.0.1",
            "ws://[::2]:8080",
            "ws://[fe80::1]",
            "ws://0.0.0.0:8080",
            // Names are not resolved, however they look.
            "ws://localhost.example.com",
            "ws://127.0.0.1.nip.io",
            "ws://localhost.",
            // The host is what follows the user info.
            "ws://127.0.0.1@example.com/ws",
        ] {
            assert!(refused(remote), "{remote}");
        }
    }

    #[test]
    fn the_refusal_is_made_by_new_unless_allowed() {
        let config = |servers: &[&str], allow_insecure| ClientConfig {
            allow_insecure,
            ..ClientConfig::new(
                servers.iter().map(|s| s.to_string()).collect(),
                Token::new("ghp_secret000000000000000000000000000000"),
                SubscriptionRequest::default(),
            )
        };
        // One remote ws:// among the servers is enough to refuse.
        let err = Subscriber::new(config(&["ws://127.0.0.1:1", "ws://example.com"], false))
            .err()
            .expect("refused");
        assert_eq!(
            err,
            ClientError::InsecureServer {
                server: "ws://example.com".into()
            }
        );
        let text = err.to_string();
        assert!(
            text.contains("wss://") && !text.contains("secret"),
            "{text}"
        );
        assert!(Subscriber::new(config(&["ws://example.com"], true)).is_ok());
        assert!(Subscriber::new(config(&["ws://127.0.0.1:1"], false)).is_ok());
    }

    #[test]
    fn urls_get_their_path() {
        assert_eq!(normalize_url("ws://h:1").unwrap(), "ws://h:1/ws");
        assert_eq!(normalize_url("wss://h").unwrap(), "wss://h/ws");
        assert_eq!(normalize_url("ws://h:1/x/ws").unwrap(), "ws://h:1/x/ws");
        assert!(normalize_url("http://h").is_err());
        assert!(normalize_url("ws://").is_err());
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

    #[test]
    fn gaps_say_what_may_be_missing() {
        let g = Gap {
            after: Some(Position {
                epoch: "e1".into(),
                seq: 41,
            }),
            last_event_at: Some("2026-11-27T00:00:00Z".into()),
            reason: "unknown_epoch".into(),
        };
        assert_eq!(
            g.describe(),
            "events after seq 41 (epoch e1), last event received at 2026-11-27T00:00:00Z may have been missed: the server could not replay them (unknown_epoch)"
        );
    }
}
