//! The ceiling: what this machine can do without a broker. A minimal server
//! accepts the same WebSocket upgrades and subscriptions as hookfan, then
//! writes each event's frame straight to the sockets of its org's clients,
//! from one writer task per CPU. Fan-out figures are reported as a fraction
//! of this, measured in the same sitting.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A running ceiling server.
pub struct Ceiling {
    pub addr: SocketAddr,
    /// One sender per writer task; each gets every event.
    writers: Vec<mpsc::UnboundedSender<(usize, Bytes)>>,
}

/// A subscribed socket, handed to a writer.
struct Sub {
    org: usize,
    stream: TcpStream,
}

impl Ceiling {
    /// Starts the server with `writers` writer tasks; clients subscribe to
    /// `{"organization":"load<N>"}`.
    pub async fn start(writers: usize) -> std::io::Result<Ceiling> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut senders = Vec::new();
        let mut adders = Vec::new();
        for _ in 0..writers.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let (add_tx, add_rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(rx, add_rx));
            senders.push(tx);
            adders.push(add_tx);
        }
        let adders = Arc::new(adders);
        tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((stream, _)) = listener.accept().await {
                let add = adders[next % adders.len()].clone();
                next += 1;
                tokio::spawn(async move {
                    if let Some(sub) = handshake(stream).await {
                        let _ = add.send(sub);
                    }
                });
            }
        });
        Ok(Ceiling {
            addr,
            writers: senders,
        })
    }

    /// Writes `frame` to every client of org `org`.
    pub fn broadcast(&self, org: usize, frame: Bytes) {
        for w in &self.writers {
            let _ = w.send((org, frame.clone()));
        }
    }
}

/// One writer: owns its sockets and writes each event to those of its org.
async fn writer(
    mut events: mpsc::UnboundedReceiver<(usize, Bytes)>,
    mut adds: mpsc::UnboundedReceiver<Sub>,
) {
    let mut subs: Vec<Sub> = Vec::new();
    loop {
        tokio::select! {
            Some(sub) = adds.recv() => subs.push(sub),
            Some((org, frame)) = events.recv() => {
                while let Ok(sub) = adds.try_recv() {
                    subs.push(sub);
                }
                for s in subs.iter_mut().filter(|s| s.org == org) {
                    match s.stream.try_write(&frame) {
                        Ok(n) if n == frame.len() => {}
                        Ok(n) => { let _ = s.stream.write_all(&frame[n..]).await; }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            let _ = s.stream.write_all(&frame).await;
                        }
                        Err(_) => {}
                    }
                }
            }
            else => return,
        }
    }
}

/// The upgrade (through hyper and fastwebsockets, as hookfan does), then the
/// subscription frame, then a confirmation.
async fn handshake(stream: TcpStream) -> Option<Sub> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let service = service_fn(move |mut req: Request<Incoming>| {
        let sent = tx.lock().unwrap().take();
        async move {
            let (resp, fut) = fastwebsockets::upgrade::upgrade(&mut req)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(sent) = sent {
                let _ = sent.send(fut);
            }
            Ok::<Response<Empty<Bytes>>, std::io::Error>(resp)
        }
    });
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::spawn(conn);
    let ws = rx.await.ok()?.await.ok()?;
    let parts = ws
        .into_inner()
        .into_inner()
        .downcast::<TokioIo<TcpStream>>()
        .ok()?;
    let mut stream = parts.io.into_inner();
    let _ = stream.set_nodelay(true);
    let mut buf = parts.read_buf.to_vec();
    // One masked client frame: 2 bytes, extended length, 4 mask bytes.
    let payload = loop {
        if let Some(p) = masked_frame(&buf) {
            break p;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&payload);
    let at = text.find("\"organization\":\"load")? + "\"organization\":\"load".len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let org = digits.parse().ok()?;
    let confirm = br#"{"type":"subscription_confirmed"}"#;
    let mut frame = vec![0x81, confirm.len() as u8];
    frame.extend_from_slice(confirm);
    stream.write_all(&frame).await.ok()?;
    Some(Sub { org, stream })
}

fn masked_frame(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() < 2 {
        return None;
    }
    let (len, at) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => return None,
        n => (n as usize, 2),
    };
    let mask: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    let payload = b.get(at + 4..at + 4 + len)?;
    Some(
        payload
            .iter()
            .enumerate()
            .map(|(i, c)| c ^ mask[i & 3])
            .collect(),
    )
}
