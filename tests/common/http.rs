//! HTTP/1.1 clients: a request on a fresh connection (plain here, TLS in
//! [`super::pki`]), a connection kept for several requests, and webhooks
//! posted as GitHub posts them.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The sending half of an HTTP/1.1 client connection.
pub type Sender = SendRequest<Full<Bytes>>;

/// An HTTP/1.1 client connection over `io` (TCP or TLS), its driver task
/// spawned.
pub async fn http1<S>(io: S) -> Sender
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request for `method` `path` at `host`, with `headers` and `body`.
pub fn build(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> hyper::Request<Full<Bytes>> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::new(Bytes::from(body))).unwrap()
}

/// An answer read whole.
#[derive(Debug)]
pub struct Whole {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Whole {
    /// Its `Retry-After`, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        let v = self.headers.get("retry-after")?;
        Some(v.to_str().unwrap().parse().unwrap())
    }
}

/// Sends `req` on `sender` and reads the answer whole.
pub async fn exchange(sender: &mut Sender, req: hyper::Request<Full<Bytes>>) -> Whole {
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Whole {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One request on `sender`: the status and the body as text.
pub async fn send(
    sender: &mut Sender,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let w = exchange(sender, build(host, method, path, headers, body)).await;
    (w.status, w.body)
}

/// One request on `sender`, its answer's status and headers only (the
/// body is left unread: it may be an event stream).
pub async fn send_head(
    sender: &mut Sender,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap) {
    let req = build(host, method, path, headers, Vec::new());
    let resp = sender.send_request(req).await.unwrap();
    (resp.status().as_u16(), resp.headers().clone())
}

/// [`send_head`] on a fresh plain connection.
pub async fn request_head(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, hyper::HeaderMap) {
    let mut sender = http1(TcpStream::connect(addr).await.unwrap()).await;
    send_head(&mut sender, &addr.to_string(), method, path, headers).await
}

/// A plain HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut sender = http1(TcpStream::connect(addr).await.unwrap()).await;
    send(&mut sender, &addr.to_string(), method, path, headers, body).await
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    request(addr, "POST", path, headers, body).await
}

/// The headers GitHub sends with a webhook: its event `kind`, the
/// signature `sig` and the delivery id.
pub fn github_headers<'a>(
    kind: &'a str,
    sig: &'a str,
    delivery: &'a str,
) -> [(&'a str, &'a str); 3] {
    [
        ("x-github-event", kind),
        ("x-hub-signature-256", sig),
        ("x-github-delivery", delivery),
    ]
}

/// Posts `body` to `/webhook` as GitHub does: event `kind`, delivery id
/// `delivery`, signed with `secret`.
pub async fn post_webhook(
    addr: SocketAddr,
    secret: &[u8],
    kind: &str,
    delivery: &str,
    body: &[u8],
) -> (u16, String) {
    let sig = hookfan::sign(secret, body);
    let headers = github_headers(kind, &sig, delivery);
    post(addr, "/webhook", &headers, body.to_vec()).await
}
