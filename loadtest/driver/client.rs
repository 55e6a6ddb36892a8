//! A minimal WebSocket client, cheap enough to hold ~19,000 of them in one
//! process: a raw TCP upgrade, one masked subscription frame, then a loop
//! that reads unmasked server frames. The same code reads from hookfan and
//! from the no-broker ceiling writer, so both are measured alike.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How a connection attempt failed, as a short cause for the report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Failure(pub String);

fn fail(cause: impl Into<String>) -> Failure {
    Failure(cause.into())
}

/// What a client connects with.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub token: String,
    pub source: Option<IpAddr>,
}

/// A subscribed connection, with whatever arrived after the confirmation.
pub struct Connected {
    pub stream: TcpStream,
    pub reader: FrameReader,
    /// The `subscription_confirmed` message.
    pub confirmation: Vec<u8>,
}

/// Connects, upgrades and subscribes; returns once the subscription is
/// confirmed.
pub async fn connect(
    t: &Target,
    subscription: &str,
    timeout: Duration,
) -> Result<Connected, Failure> {
    tokio::time::timeout(timeout, connect_inner(t, subscription))
        .await
        .map_err(|_| fail("timeout"))?
}

async fn connect_inner(t: &Target, subscription: &str) -> Result<Connected, Failure> {
    let socket = TcpSocket::new_v4().map_err(|e| fail(format!("socket: {}", e.kind())))?;
    if let Some(ip) = t.source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| fail(format!("bind: {}", e.kind())))?;
    }
    let mut s = socket
        .connect(t.addr)
        .await
        .map_err(|e| fail(format!("connect: {}", e.kind())))?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {}\r\n\r\n",
        t.addr, t.token
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| fail(format!("write: {}", e.kind())))?;
    // The response head; the server sends nothing after it until we subscribe.
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) => return Err(fail("eof during upgrade")),
            Ok(_) => head.push(b[0]),
            Err(e) => return Err(fail(format!("read: {}", e.kind()))),
        }
        if head.len() > 8192 {
            return Err(fail("oversized response head"));
        }
    }
    let status = head
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or("???");
    if status != "101" {
        return Err(fail(format!("http {status}")));
    }
    write_text(&mut s, subscription.as_bytes())
        .await
        .map_err(|e| fail(format!("write: {}", e.kind())))?;
    let mut reader = FrameReader::default();
    match reader.next_text(&mut s).await {
        Ok(Some(first)) => {
            let text = String::from_utf8_lossy(&first);
            if text.contains("\"subscription_confirmed\"") {
                Ok(Connected {
                    stream: s,
                    reader,
                    confirmation: first,
                })
            } else if let Some(code) = error_code(&text) {
                Err(fail(format!("refused: {code}")))
            } else {
                Err(fail("unexpected first message"))
            }
        }
        Ok(None) => Err(fail("closed before confirmation")),
        Err(e) => Err(fail(format!("read: {}", e.kind()))),
    }
}

fn error_code(text: &str) -> Option<&str> {
    let at = text.find("\"error\":\"")? + 9;
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

/// Writes one masked text frame (clients must mask).
pub async fn write_text(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    const MASK: [u8; 4] = [0x1f, 0x2e, 0x3d, 0x4c];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    s.write_all(&frame).await
}

/// Reads server frames out of a growing buffer.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

/// What a frame was.
pub enum Frame<'a> {
    Text(&'a [u8]),
    Close,
    Other,
}

impl FrameReader {
    /// The next complete frame already buffered, if any.
    fn parse(&mut self) -> Option<(u8, usize, usize)> {
        let b = &self.buf[self.start..];
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let (len, header) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if b.len() < header + len {
            return None;
        }
        Some((opcode, self.start + header, len))
    }

    /// Calls `f` for each frame until the stream ends or `f` returns false.
    /// Answers the server's ping frames (a pong is activity: a client held
    /// longer than the server's read timeout stays connected).
    pub async fn run(
        &mut self,
        s: &mut TcpStream,
        mut f: impl FnMut(Frame<'_>) -> bool,
    ) -> std::io::Result<()> {
        loop {
            let mut pong = false;
            while let Some((opcode, at, len)) = self.parse() {
                self.start = at + len;
                pong |= opcode == 9;
                let frame = match opcode {
                    1 => Frame::Text(&self.buf[at..at + len]),
                    8 => Frame::Close,
                    _ => Frame::Other,
                };
                let closed = matches!(frame, Frame::Close);
                if !f(frame) || closed {
                    return Ok(());
                }
            }
            if pong {
                // An empty masked pong.
                s.write_all(&[0x8a, 0x80, 0x1f, 0x2e, 0x3d, 0x4c]).await?;
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + 16 * 1024, 0);
            let n = s.read(&mut self.buf[len..]).await?;
            self.buf.truncate(len + n);
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// The next text frame's payload; `None` at a close or end of stream.
    pub async fn next_text(&mut self, s: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
        let mut out = None;
        self.run(s, |f| match f {
            Frame::Text(t) => {
                out = Some(t.to_vec());
                false
            }
            Frame::Close => false,
            Frame::Other => true,
        })
        .await?;
        Ok(out)
    }
}

/// The number in `"delivery_id":"ld-<n>"`, if the payload has one.
pub fn delivery_seq(payload: &[u8]) -> Option<u64> {
    number_after(payload, b"\"delivery_id\":\"ld-", false)
}

/// The number in `"seq":<n>` (the server's sequence number, the event's
/// last field), if any.
pub fn event_seq(payload: &[u8]) -> Option<u64> {
    number_after(payload, b"\"seq\":", true)
}

/// The digits right after the first (or last) occurrence of `key`.
fn number_after(payload: &[u8], key: &[u8], last: bool) -> Option<u64> {
    let mut hits = payload.windows(key.len());
    let at = if last {
        hits.rposition(|w| w == key)?
    } else {
        hits.position(|w| w == key)?
    } + key.len();
    let digits = payload[at..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Microseconds since the event's `"timestamp"` (the server's accept time),
/// by the wall clock; for a driver that did not send the webhook itself.
pub fn age_us(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"timestamp\":\"";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = payload[at..].iter().position(|&c| c == b'"')?;
    let ts = std::str::from_utf8(&payload[at..at + len]).ok()?;
    let accepted = humantime::parse_rfc3339(ts).ok()?;
    Some(
        std::time::SystemTime::now()
            .duration_since(accepted)
            .ok()?
            .as_micros() as u64,
    )
}
