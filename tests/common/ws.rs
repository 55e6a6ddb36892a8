//! WebSocket clients: tungstenite's, and a bare one that does only what a
//! test tells it.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::token;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects with `token` (no Authorization header when `None`).
pub async fn ws_connect(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    ws_connect_with(addr, token, &[]).await
}

/// [`ws_connect`] with more request headers (an `Origin`, say).
pub async fn ws_connect_with(
    addr: SocketAddr,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    for (k, v) in headers {
        req.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// Connects as `login` and sends `subscription`; returns the socket and the
/// server's first answer.
pub async fn subscribe_as(addr: SocketAddr, tok: &str, subscription: Value) -> (Ws, Value) {
    let mut ws = ws_connect(addr, Some(tok)).await.expect("upgrade");
    ws.send(Message::text(subscription.to_string()))
        .await
        .unwrap();
    let first = next_json(&mut ws).await;
    (ws, first)
}

/// Subscribes and asserts the subscription is confirmed.
pub async fn subscribe(addr: SocketAddr, login: &str, subscription: Value) -> Ws {
    let (ws, first) = subscribe_as(addr, &token(login), subscription).await;
    assert_eq!(first["type"], "subscription_confirmed", "{first}");
    ws
}

/// The next message other than a ping or pong (10 s at most).
pub async fn next_message(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// The next text message as JSON (10 s at most).
pub async fn next_json(ws: &mut Ws) -> Value {
    match next_message(ws).await {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("unexpected message {other:?}"),
    }
}

/// The next event, skipping keepalive pings.
pub async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] != "ping" || v.get("url").is_some() {
            return v;
        }
    }
}

/// Reads until the close frame, answers it (completing the close handshake,
/// so the server need not wait for the answer), and returns its code and
/// reason.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("timed out waiting for close");
        let close = match msg {
            Some(Ok(Message::Close(Some(f)))) => (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close: {e}"),
            None => panic!("stream ended without close frame"),
        };
        answer_close(ws).await;
        return close;
    }
}

/// Answers a close frame already read, completing the close handshake so
/// that the server need not wait for the answer: tungstenite sends it when
/// polled again.
pub async fn answer_close(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
}

/// A client that subscribes and then never reads: a tiny receive buffer, so
/// the server's writes to it stall soon.
pub async fn slow_client(addr: SocketAddr, login: &str, subscription: Value) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(login)).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    ws.send(Message::text(subscription.to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");
    ws
}

/// A bare WebSocket client that does only what a test tells it: it never
/// answers pings by itself (unlike tungstenite).
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades with `token` and sends `subscription` as a masked text frame.
    pub async fn subscribe(addr: SocketAddr, token: &str, subscription: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "eof during upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        buf.drain(..head_end);
        let mut ws = RawWs { stream, buf };
        ws.send(0x1, subscription.as_bytes()).await;
        ws
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await.unwrap();
    }

    /// The next frame from the server (opcode, payload); `None` at EOF.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    l => (l as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(15), self.stream.read(&mut chunk))
                .await
                .expect("timed out waiting for a frame")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next text frame as JSON, skipping control frames.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let (op, p) = self.next_frame().await.expect("connection ended");
            if op == 0x1 {
                return serde_json::from_slice(&p).unwrap();
            }
        }
    }
}
