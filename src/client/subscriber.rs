//! The subscription itself: reads events, and reconnects (with backoff,
//! round-robin over the servers) and resumes when a connection ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::connection::{Ws, handshake};
use super::error::Failure;
use super::servers::{normalize_url, refuse_insecure};
use super::{ClientConfig, ClientError, Gap, Position, ReceivedEvent, Update};

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
            .collect::<Result<Vec<_>, _>>()?;
        if !config.allow_insecure {
            for (server, url) in config.servers.iter().zip(&urls) {
                refuse_insecure(server, url)?;
            }
        }
        let tls = if urls.iter().any(|u| u.starts_with("wss://")) {
            Some(Arc::new(
                crate::tls::client_config("the server")
                    .map_err(|e| ClientError::Config(e.to_string()))?,
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
            // An event is read once, its payload (up to 25 MiB) only
            // delimited; other messages are small.
            if let Some(e) = ReceivedEvent::parse(&text) {
                return Ok(Update::Event(self.received(e)));
            }
            let v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["type"] == "ping" {
                let pong = serde_json::json!({"type": "pong", "seq": v["seq"]}).to_string();
                if let Err(e) = ws.send(Message::text(pong)).await {
                    return Ok(self.failed(e.to_string()));
                }
            }
        }
    }

    /// Notes an event: it is the new position.
    fn received(&mut self, e: ReceivedEvent) -> ReceivedEvent {
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
        let tls = self.tls.clone();
        let confirmed = handshake(&url, &self.config, tls, self.position.as_ref());
        let (ws, confirmation) = tokio::time::timeout(limit, confirmed).await.map_err(|_| {
            Failure::Retry(format!("not subscribed within {} s", limit.as_secs()))
        })??;
        let asked = self.position.clone();
        let resumed = confirmation["resumed"].as_bool();
        let stream = confirmation["stream"]
            .as_object()
            .and_then(|s| Some((s.get("epoch")?.as_str()?, s.get("seq")?.as_u64()?)));
        if let Some(reason) = gap_reason(&confirmation, asked.is_some(), self.connected_before) {
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
        self.pending.push_back(Update::Connected {
            server: url,
            resumed: asked.is_some().then_some(resumed == Some(true)),
            warnings: warnings(&confirmation),
        });
        self.connected_before = true;
        self.ws = Some((ws, Instant::now()));
        Ok(())
    }
}

/// Why the confirmation means events may have been missed, if it does: a
/// resume was asked (`asked`) and refused or not understood, or none could
/// be asked after an earlier connection.
fn gap_reason(confirmation: &Value, asked: bool, connected_before: bool) -> Option<String> {
    match (asked, confirmation["resumed"].as_bool()) {
        (true, Some(false)) => Some(
            confirmation["resume_error"]
                .as_str()
                .unwrap_or("refused")
                .to_owned(),
        ),
        (true, None) => Some("no_resume".to_owned()),
        (false, _) if connected_before => Some("no_resume".to_owned()),
        _ => None,
    }
}

/// The confirmation's `warnings`.
fn warnings(confirmation: &Value) -> Vec<String> {
    confirmation["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;
    use crate::client::SubscriptionRequest;

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
    fn gaps_follow_what_the_confirmation_says() {
        let c = |v: Value| gap_reason(&v, true, true);
        let refused = serde_json::json!({"resumed": false, "resume_error": "too_old"});
        assert_eq!(c(refused).as_deref(), Some("too_old"));
        assert_eq!(
            c(serde_json::json!({"resumed": false})).as_deref(),
            Some("refused")
        );
        assert_eq!(c(serde_json::json!({})).as_deref(), Some("no_resume"));
        assert_eq!(c(serde_json::json!({"resumed": true})), None);
        let first = serde_json::json!({});
        assert_eq!(gap_reason(&first, false, false), None);
        assert_eq!(
            gap_reason(&first, false, true).as_deref(),
            Some("no_resume")
        );
        let w = serde_json::json!({"warnings": ["a", 1, "b"]});
        assert_eq!(warnings(&w), ["a", "b"]);
        assert!(warnings(&first).is_empty());
    }
}
