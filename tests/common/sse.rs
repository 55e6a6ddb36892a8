//! A Server-Sent Events client for `GET /events`: the response head, then
//! the stream cut into its messages.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use super::{build, http1};

/// One message of the stream: its `event:`, `id:` and `data:` lines, or a
/// comment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    /// The text of a comment line (`: ...`), the keepalive.
    pub comment: Option<String>,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {:?}", self.data))
    }
}

/// An open `/events` response.
pub struct Sse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    body: Incoming,
    buf: String,
}

impl Sse {
    /// `GET /events?<query>` with `headers`.
    pub async fn open(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Sse {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        Self::open_on(stream, addr, query, headers).await
    }

    /// [`Sse::open`] on a connection of the caller's (from another source
    /// address, say).
    pub async fn open_on(
        stream: tokio::net::TcpStream,
        addr: SocketAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Sse {
        let mut sender = http1(stream).await;
        let path = format!("/events?{query}");
        let req = build(&addr.to_string(), "GET", &path, headers, Vec::new());
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        Sse {
            status,
            headers: parts.headers,
            body,
            buf: String::new(),
        }
    }

    /// `token`'s stream of `query`.
    pub async fn subscribe(addr: SocketAddr, token: &str, query: &str) -> Sse {
        let auth = format!("Bearer {token}");
        Sse::open(addr, query, &[("authorization", &auth)]).await
    }

    /// The next message (comments included), `None` at the end of the
    /// stream (10 s at most).
    pub async fn next(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                return Some(parse(&block));
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("timed out waiting for an event");
            match frame {
                None => return None,
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
                Some(Err(e)) => panic!("stream failed: {e}"),
            }
        }
    }

    /// The next message that is not a comment.
    pub async fn next_message(&mut self) -> SseMessage {
        loop {
            let m = self.next().await.expect("the stream ended");
            if m.comment.is_none() {
                return m;
            }
        }
    }

    /// The next event (no `event:` line), its JSON and `id:`.
    pub async fn next_event(&mut self) -> (Value, String) {
        let m = self.next_message().await;
        assert_eq!(m.event, None, "{m:?}");
        (m.json(), m.id.expect("an event has an id"))
    }
}

fn parse(block: &str) -> SseMessage {
    let mut m = SseMessage::default();
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            m.comment = Some(c.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("event: ") {
            m.event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("id: ") {
            m.id = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            m.data.push_str(v);
        } else if !line.is_empty() {
            panic!("not a line of an event stream: {line:?}");
        }
    }
    m
}
