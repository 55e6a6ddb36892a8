//! The ceiling: what this machine can do without a broker. A minimal server,
//! run as its own process like hookfan (`hookfan-load ceiling-serve`), takes
//! the same WebSocket upgrades and subscriptions, and for each `POST
//! /webhook` writes an event frame of the same shape straight to the sockets
//! of the org's clients, from one writer task per CPU. No signature, no
//! parsing, no index, no queues: fan-out figures are stated as a fraction of
//! this, measured in the same sitting.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Header naming the org of a webhook (the ceiling does not parse bodies).
pub const ORG_HEADER: &str = "x-ceiling-org";

/// A subscribed socket, owned by one writer.
struct Sub {
    org: usize,
    stream: TcpStream,
}

struct Writers {
    events: Vec<mpsc::UnboundedSender<(usize, Bytes)>>,
    adds: Vec<mpsc::UnboundedSender<Sub>>,
}

/// Serves on 127.0.0.1:0 until killed; prints `listening on ADDR` first.
pub async fn serve() -> std::io::Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse().expect("address"))?;
    let listener: TcpListener = socket.listen(4096)?;
    println!("listening on {}", listener.local_addr()?);
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut writers = Writers {
        events: Vec::new(),
        adds: Vec::new(),
    };
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        let (add_tx, add_rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(rx, add_rx));
        writers.events.push(tx);
        writers.adds.push(add_tx);
    }
    let writers = Arc::new(writers);
    let mut next = 0usize;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let writers = writers.clone();
        let slot = next % writers.adds.len();
        next += 1;
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let writers = writers.clone();
                async move { Ok::<_, Infallible>(handle(req, &writers, slot).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    mut req: Request<Incoming>,
    w: &Arc<Writers>,
    slot: usize,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/ws" {
        let Ok((resp, fut)) = fastwebsockets::upgrade::upgrade(&mut req) else {
            return Response::builder()
                .status(400)
                .body(Full::default())
                .expect("response");
        };
        let add = w.adds[slot].clone();
        tokio::spawn(async move {
            if let Some(sub) = subscribe(fut).await {
                let _ = add.send(sub);
            }
        });
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Full::default());
    }
    let org: usize = req
        .headers()
        .get(ORG_HEADER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let delivery = req
        .headers()
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let _ = req.into_body().collect().await;
    // The same JSON shape and size as hookfan's frames (the action is the
    // default payload's, pull_request.opened).
    let body = serde_json::json!({
        "url": format!("https://github.com/load{org}/Hello-World/pull/2"),
        "timestamp": humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        "type": "pull_request",
        "delivery_id": delivery,
        "commit_sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
        "action": "opened",
    })
    .to_string();
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.push(0x81);
    if body.len() < 126 {
        frame.push(body.len() as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(body.as_bytes());
    let frame = Bytes::from(frame);
    for e in &w.events {
        let _ = e.send((org, frame.clone()));
    }
    Response::new(Full::new(Bytes::from_static(b"OK")))
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

/// After the upgrade: the subscription frame, then a confirmation.
async fn subscribe(fut: fastwebsockets::upgrade::UpgradeFut) -> Option<Sub> {
    let ws = fut.await.ok()?;
    let parts = ws
        .into_inner()
        .into_inner()
        .downcast::<TokioIo<TcpStream>>()
        .ok()?;
    let mut stream = parts.io.into_inner();
    let mut buf = parts.read_buf.to_vec();
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

/// One masked client frame: 2 bytes, extended length, 4 mask bytes.
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

/// Starts `hookfan-load ceiling-serve` as a child process (its own fd
/// budget, like hookfan's) and returns it with its address.
pub fn spawn_server() -> std::io::Result<(std::process::Child, SocketAddr)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("ceiling-serve")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("ceiling server said {line:?}")))?;
    Ok((child, addr))
}
