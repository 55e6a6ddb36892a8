//! Plain HTTP/1.1 requests on fresh connections.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;

/// A plain HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    request(addr, "POST", path, headers, body).await
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
    post(
        addr,
        "/webhook",
        &[
            ("x-github-event", kind),
            ("x-hub-signature-256", &sig),
            ("x-github-delivery", delivery),
        ],
        body.to_vec(),
    )
    .await
}
