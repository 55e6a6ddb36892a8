//! Connection limits: 429 at exactly the limit, per IP and in total, slots
//! given back on every path a connection can end by, X-Forwarded-For
//! honoured only from trusted proxies, IPv6 clients counted per /64 and
//! IPv4-mapped addresses as IPv4.

use std::net::{IpAddr, SocketAddr};

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;

/// Connects from `source` (a 127.0.0.0/8 address) with extra headers.
async fn connect_from(
    addr: SocketAddr,
    source: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("bob")).parse().unwrap(),
    );
    for (k, v) in headers {
        let name: hyper::header::HeaderName = k.parse().unwrap();
        req.headers_mut().append(name, v.parse().unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}

async fn subscribed_from(addr: SocketAddr, source: &str, headers: &[(&str, &str)]) -> Ws {
    let mut ws = connect_from(addr, source, headers).await.expect("upgrade");
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");
    ws
}

fn assert_429(r: Result<Ws, WsError>) {
    match r {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert_eq!(body, "429 Too Many Requests: Connection limit exceeded\n");
        }
        Err(e) => panic!("expected 429, got {e}"),
        Ok(_) => panic!("expected 429, got an upgrade"),
    }
}

async fn wait_slots(server: &TestServer, want: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.handle().connection_counts().total != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots: {:?}, want {want}",
            server.handle().connection_counts()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn per_ip_limit_is_exact_and_per_address() {
    let server = TestServer::start("[limits]\nmax_conns_per_ip = 3\n").await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(subscribed_from(addr, "127.0.0.1", &[]).await);
    }
    assert_429(connect_from(addr, "127.0.0.1", &[]).await);
    // Another address has its own allowance.
    held.push(subscribed_from(addr, "127.0.0.2", &[]).await);
    assert_eq!(server.handle().connection_counts().ips, 2);
    // A slot freed by a disconnect can be used again.
    drop(held.remove(0));
    wait_slots(&server, 3).await;
    held.push(subscribed_from(addr, "127.0.0.1", &[]).await);
    assert_429(connect_from(addr, "127.0.0.1", &[]).await);
    drop(held);
    wait_slots(&server, 0).await;
}

#[tokio::test]
async fn total_limit_is_exact() {
    let server = TestServer::start("[limits]\nmax_conns_per_ip = 100\nmax_conns_total = 4\n").await;
    let addr = server.addr;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(subscribed_from(addr, &format!("127.0.0.{}", i + 1), &[]).await);
    }
    assert_429(connect_from(addr, "127.0.0.9", &[]).await);
    // Those already in keep receiving.
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "api", 1, "x", false),
            "still",
        )
        .await;
    for ws in &mut held {
        assert_eq!(next_event(ws).await["delivery_id"], "still");
    }
}

#[tokio::test]
async fn every_failure_path_gives_the_slot_back() {
    let server = TestServer::start(
        // Every path in turn from one address, faster than its default rate
        // (six upgrades a minute for one connection): no rate.
        "[server]\nhandshake_timeout_s = 1\n[limits]\nmax_conns_per_ip = 1\nupgrades_per_ip_per_minute = 0\n[webhook]\nallowed_events = [\"pull_request\"]\n",
    )
    .await;
    let addr = server.addr;
    let bob = token("bob");

    // Upgrade refused after the slot was taken (no Sec-WebSocket-Key).
    let (s, _) = request(
        addr,
        "GET",
        "/ws",
        &[
            ("authorization", &format!("Bearer {bob}")),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ],
        vec![],
    )
    .await;
    assert_eq!(s, 400);
    wait_slots(&server, 0).await;

    // Handshake timeout.
    let mut ws = connect_from(addr, "127.0.0.1", &[]).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"], "invalid_subscription");
    drop(ws);
    wait_slots(&server, 0).await;

    // Bad subscription, event type not allowed, unknown token, not a member.
    for (tok, sub, code) in [
        (
            bob.clone(),
            "{\"organization\":\"bad org\"}",
            "invalid_subscription",
        ),
        (
            bob.clone(),
            "{\"event_types\":[\"push\"]}",
            "event_type_not_allowed",
        ),
        (token("nobody"), "{}", "authentication_failed"),
        (
            bob.clone(),
            "{\"organization\":\"elsewhere\"}",
            "access_denied",
        ),
    ] {
        let (mut ws, first) = subscribe_as(addr, &tok, serde_json::from_str(sub).unwrap()).await;
        assert_eq!(first["error"], code);
        let _ = expect_close(&mut ws).await;
        wait_slots(&server, 0).await;
    }

    // Client disconnect after subscribing; client close.
    drop(subscribed_from(addr, "127.0.0.1", &[]).await);
    wait_slots(&server, 0).await;
    let mut ws = subscribed_from(addr, "127.0.0.1", &[]).await;
    ws.close(None).await.unwrap();
    wait_slots(&server, 0).await;
    assert_eq!(server.handle().connection_counts().ips, 0);

    // Shutdown.
    let mut ws = subscribed_from(addr, "127.0.0.1", &[]).await;
    assert_eq!(server.handle().connection_counts().total, 1);
    let (closed, ()) = tokio::join!(
        async {
            let close = expect_close(&mut ws).await;
            drop(ws);
            close
        },
        server.handle().shutdown()
    );
    assert_eq!(closed.0, 1001);
    assert_eq!(server.handle().connection_counts().total, 0);
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_trusted_proxies() {
    // Trusted: each forwarded client has its own allowance.
    let server =
        TestServer::start("[limits]\nmax_conns_per_ip = 1\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
            .await;
    let addr = server.addr;
    let _a = subscribed_from(addr, "127.0.0.1", &[("x-forwarded-for", "203.0.113.1")]).await;
    let _b = subscribed_from(addr, "127.0.0.1", &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_429(connect_from(addr, "127.0.0.1", &[("x-forwarded-for", "203.0.113.1")]).await);
    // A forged leftmost entry does not help: the proxy appended the real one.
    assert_429(
        connect_from(
            addr,
            "127.0.0.1",
            &[("x-forwarded-for", "198.51.100.7, 203.0.113.1")],
        )
        .await,
    );
    assert_eq!(server.handle().connection_counts().ips, 2);

    // Not trusted: the header is ignored and the peer address counts.
    let plain = TestServer::start("[limits]\nmax_conns_per_ip = 1\n").await;
    let _c = subscribed_from(
        plain.addr,
        "127.0.0.1",
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await;
    assert_429(
        connect_from(
            plain.addr,
            "127.0.0.1",
            &[("x-forwarded-for", "203.0.113.2")],
        )
        .await,
    );
}

#[tokio::test]
async fn ipv6_clients_count_per_64_and_v4_mapped_as_ipv4() {
    let server =
        TestServer::start("[limits]\nmax_conns_per_ip = 1\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
            .await;
    let addr = server.addr;
    let from = |client: &'static str| [("x-forwarded-for", client)];
    let _a = subscribed_from(addr, "127.0.0.1", &from("2001:db8:1:2::1")).await;
    // Another address of the same /64 is the same client.
    assert_429(connect_from(addr, "127.0.0.1", &from("2001:db8:1:2:abcd:ef01:2345:6789")).await);
    // The next /64 is another client.
    let _b = subscribed_from(addr, "127.0.0.1", &from("2001:db8:1:3::1")).await;
    // An IPv4 client counts the same in its IPv4-mapped form.
    let _c = subscribed_from(addr, "127.0.0.1", &from("203.0.113.9")).await;
    assert_429(connect_from(addr, "127.0.0.1", &from("::ffff:203.0.113.9")).await);
    assert_eq!(server.handle().connection_counts().ips, 3);
}

#[tokio::test]
async fn a_v4_mapped_peer_is_recognised_as_a_trusted_proxy() {
    // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("no IPv6 on this machine: the dual-stack listener test did not run");
        return;
    }
    let server = TestServer::start_with(
        "[limits]\nmax_conns_per_ip = 1\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        |c| c.server.listen = "[::]:0".parse().unwrap(),
    )
    .await;
    assert!(server.addr.is_ipv6(), "{}", server.addr);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let _a = subscribed_from(addr, "127.0.0.1", &[("x-forwarded-for", "203.0.113.1")]).await;
    let _b = subscribed_from(addr, "127.0.0.1", &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_429(connect_from(addr, "127.0.0.1", &[("x-forwarded-for", "203.0.113.1")]).await);
    assert_eq!(server.handle().connection_counts().ips, 2);
}
