//! Operating the daemon: the slow-client policies, graceful shutdown on
//! SIGTERM, and what a full session leaves in the logs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_policy_closes_only_the_slow_client_with_1008() {
    let server =
        TestServer::start("[broker]\nclient_queue = 16\nslow_client = \"disconnect\"\n").await;
    let addr = server.addr;
    let mut readers = Vec::new();
    for _ in 0..5 {
        readers.push(subscribe(addr, "bob", json!({"organization": "acme"})).await);
    }
    let mut slow = slow_client(addr, "alice", json!({"organization": "acme"})).await;
    flood_until(&server, &mut readers, |s| s.slow_closes > 0).await;
    assert_eq!(server.hub().stats().slow_closes, 1);

    // The slow client, reading at last, gets what was in flight, then 1008.
    let (code, reason) = expect_close(&mut slow).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "client too slow: outbound queue full")
    );
    server
        .wait_stats("slow client gone", |s| s.clients == 5)
        .await;

    // Everyone else is still subscribed and receiving.
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "api", 1, "x", false),
            "after",
        )
        .await;
    for ws in readers.iter_mut() {
        assert_eq!(next_event(ws).await["delivery_id"], "after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_keeps_the_slow_client_and_counts() {
    let server = TestServer::start("[broker]\nclient_queue = 16\n").await;
    let addr = server.addr;
    let mut readers = vec![subscribe(addr, "bob", json!({"organization": "acme"})).await];
    let mut slow = slow_client(addr, "alice", json!({"organization": "acme"})).await;
    let sent = flood_until(&server, &mut readers, |s| s.drops > 0).await;
    let stats = server.hub().stats();
    assert_eq!((stats.slow_closes, stats.clients), (0, 2));
    assert_eq!(
        stats.drops + stats.deliveries,
        2 * sent,
        "every event reached or was dropped for each"
    );
    // It is still subscribed: after reading its backlog (what was not
    // dropped) it gets new events.
    let backlog = stats.deliveries - sent;
    for _ in 0..backlog {
        next_event(&mut slow).await;
    }
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "api", 1, "x", false),
            "after",
        )
        .await;
    assert_eq!(next_event(&mut readers[0]).await["delivery_id"], "after");
    assert_eq!(next_event(&mut slow).await["delivery_id"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_queued_frames_closes_1001_and_exits_0() {
    const CLIENTS: usize = 200;
    const EVENTS: usize = 20;
    let mut daemon =
        spawn_daemon("[server]\nshutdown_timeout_s = 5\n[limits]\nmax_conns_per_ip = 1000\n");
    let addr = daemon.addr;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(subscribe(addr, "bob", json!({"organization": "acme"})).await);
    }
    // Events the clients do not read before the signal: their frames are
    // queued (in the server or in the sockets) when it arrives.
    for j in 0..EVENTS {
        assert_eq!(
            daemon
                .webhook(
                    "pull_request",
                    &pr_payload("acme", "api", 1, "x", false),
                    &format!("q{j}")
                )
                .await,
            200
        );
    }
    daemon.sigterm();
    // /healthz turns 503 once the signal is handled (or the listener is
    // already gone, when the drain was quicker than us).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match request_opt(addr, "/healthz").await {
            Some(200) => assert!(
                Instant::now() < deadline,
                "/healthz still 200 after SIGTERM"
            ),
            Some(503) | None => break,
            Some(other) => panic!("/healthz answered {other}"),
        }
        tokio::task::yield_now().await;
    }

    let mut tasks = Vec::new();
    for mut ws in clients {
        tasks.push(tokio::spawn(async move {
            for j in 0..EVENTS {
                assert_eq!(
                    next_event(&mut ws).await["delivery_id"],
                    format!("q{j}").as_str()
                );
            }
            expect_close(&mut ws).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), (1001, "server shutting down".to_owned()));
    }
    let (status, took) = tokio::task::spawn_blocking(move || daemon.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
}

/// GET on a fresh connection; `None` if the server no longer accepts.
async fn request_opt(addr: SocketAddr, path: &str) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "x")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    Some(sender.send_request(req).await.ok()?.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_does_not_hold_shutdown_past_the_timeout() {
    let mut daemon = spawn_daemon("[server]\nshutdown_timeout_s = 2\n[broker]\nclient_queue = 8\n");
    let addr = daemon.addr;
    let mut ok = subscribe(addr, "bob", json!({"organization": "acme"})).await;
    // Never reads: its socket fills with large events and stays full, so its
    // close frame can never be written.
    let _stuck = slow_client(addr, "alice", json!({"organization": "acme"})).await;
    let big = serde_json::to_vec(&json!({
        "pull_request": {"html_url": "https://github.com/acme/api/pull/1", "number": 1, "user": {"login": "x"}},
        "repository": {"html_url": "https://github.com/acme/api", "owner": {"login": "acme"}},
        "sender": {"login": "x"},
    }))
    .unwrap();
    for j in 0..200 {
        daemon
            .webhook("pull_request", &big, &format!("{j:03}{}", "z".repeat(120)))
            .await;
        next_event(&mut ok).await;
    }
    let started = Instant::now();
    daemon.sigterm();
    assert_eq!(expect_close(&mut ok).await.0, 1001);
    let (status, _) = tokio::task::spawn_blocking(move || daemon.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "exit after {took:?}, timeout 2 s"
    );
}

// One scenario: the log must hold a whole session, start to stop, and the
// secrets must be absent from all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_in_the_json_log_without_tokens_or_secret() {
    let mut daemon = spawn_daemon("[log]\nformat = \"json\"\n");
    let addr = daemon.addr;
    let mut ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let (_bad, first) =
        subscribe_as(addr, &token("mallory"), json!({"organization": "acme"})).await;
    assert_eq!(first["error"], "authentication_failed");
    assert_eq!(
        daemon
            .webhook(
                "pull_request",
                &pr_payload("acme", "api", 3, "x", false),
                "d-routed"
            )
            .await,
        200
    );
    assert_eq!(next_event(&mut ws).await["delivery_id"], "d-routed");
    assert_eq!(
        daemon
            .webhook("push", &fixture("push.json"), "d-ignored")
            .await,
        200
    );
    ws.send(Message::Close(None)).await.unwrap();
    let _ = expect_close(&mut ws).await;
    // Give the server a moment to log the disconnect, then stop it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon
        .stderr
        .lock()
        .unwrap()
        .contains("client disconnected")
    {
        assert!(Instant::now() < deadline, "no disconnect line");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.sigterm();
    let stderr = daemon.stderr.clone();
    let (status, _) = tokio::task::spawn_blocking(move || daemon.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success());
    let log = stderr.lock().unwrap().clone();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let find = |msg: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == msg)
            .collect()
    };
    let subscribed = find("client subscribed");
    assert_eq!(subscribed.len(), 1, "{log}");
    assert_eq!(subscribed[0]["fields"]["login"], "alice");
    assert_eq!(subscribed[0]["fields"]["org"], "acme");
    let refused = find("subscription refused");
    assert_eq!(refused.len(), 1, "{log}");
    assert_eq!(refused[0]["fields"]["error"], "authentication_failed");
    assert!(
        refused[0]["fields"]["token"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let routed = find("event routed");
    assert_eq!(routed.len(), 1, "{log}");
    assert_eq!(routed[0]["fields"]["delivery"], "d-routed");
    assert_eq!(routed[0]["fields"]["matched"], 1);
    let ignored = find("webhook not broadcast");
    assert_eq!(ignored.len(), 1, "{log}");
    assert_eq!(ignored[0]["fields"]["outcome"], "no_url");
    let gone = find("client disconnected");
    assert_eq!(gone.len(), 1, "{log}");
    assert_eq!(gone[0]["fields"]["events"], 1);
    assert_eq!(gone[0]["fields"]["login"], "alice");
    assert!(gone[0]["fields"]["duration_ms"].is_u64());
    assert_eq!(find("shutting down").len(), 1);
    // Nothing per delivery at info, and no secret anywhere.
    for secret in [token("alice"), token("mallory"), DAEMON_SECRET.to_owned()] {
        assert!(!log.contains(&secret), "{secret} leaked into the log");
    }
}

/// An HTTP/1.1 keep-alive connection for several requests.
async fn keep_alive(addr: SocketAddr) -> Sender {
    http1(tokio::net::TcpStream::connect(addr).await.unwrap()).await
}

async fn send_on(sender: &mut Sender, method: &str, path: &str) -> (u16, Option<String>) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    // hyper's client takes a request only once the connection is ready
    // again (its task has finished with the previous answer); an error here
    // means the server closed the connection.
    sender
        .ready()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: the connection is gone: {e}"));
    let resp = sender.send_request(req).await.unwrap();
    let connection = resp
        .headers()
        .get("connection")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_answers_503_on_connections_opened_before_and_after_the_signal() {
    let server = TestServer::start("[server]\nshutdown_timeout_s = 5\n").await;
    let addr = server.addr;
    // Keep-alive connections opened before the shutdown, each used once.
    let mut old = Vec::new();
    for _ in 0..3 {
        let mut c = keep_alive(addr).await;
        assert_eq!(send_on(&mut c, "GET", "/healthz").await.0, 200);
        old.push(c);
    }
    // A client that never answers the close frame keeps the drain going
    // for the close grace period.
    let mut stuck = RawWs::subscribe(addr, &token("alice"), r#"{"organization":"acme"}"#).await;
    assert_eq!(stuck.next_json().await["type"], "subscription_confirmed");
    let server = std::sync::Arc::new(server);
    let stopping = {
        let server = server.clone();
        tokio::spawn(async move { server.handle().shutdown().await })
    };
    // The close frame reaches the client: the server is draining.
    loop {
        let (op, _) = stuck.next_frame().await.expect("close frame");
        if op == 0x8 {
            break;
        }
    }
    for ((method, path), conn) in [("GET", "/healthz"), ("GET", "/"), ("POST", "/webhook")]
        .into_iter()
        .zip(old.iter_mut())
    {
        assert_eq!(
            send_on(conn, method, path).await,
            (503, Some("close".to_owned())),
            "{method} {path} on an old connection"
        );
        let mut new = keep_alive(addr).await;
        assert_eq!(
            send_on(&mut new, method, path).await,
            (503, Some("close".to_owned())),
            "{method} {path} on a new connection"
        );
    }
    let (status, body) = request(addr, "GET", "/ws", &[], Vec::new()).await;
    assert_eq!(status, 503, "{body}");
    // Metrics stay readable while draining.
    assert_eq!(
        request(addr, "GET", "/metrics", &[], Vec::new()).await.0,
        200
    );
    stopping.await.unwrap();
}

#[tokio::test]
async fn metrics_on_their_own_listener_and_not_on_the_public_one() {
    let server = TestServer::start("[server]\nmetrics_listen = \"127.0.0.1:0\"\n").await;
    let metrics = server.handle().metrics_addr().expect("a metrics listener");
    assert_ne!(metrics, server.addr);
    let (status, body) = request(metrics, "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(status, 200);
    assert!(body.contains("hookfan_connected_clients 0"), "{body}");
    assert_eq!(request(metrics, "GET", "/ws", &[], Vec::new()).await.0, 404);
    assert_eq!(
        request(metrics, "POST", "/webhook", &[], Vec::new())
            .await
            .0,
        404
    );
    let (status, body) = request(server.addr, "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
    // Without the key, /metrics is on the public listener.
    let plain = TestServer::start("").await;
    assert!(plain.handle().metrics_addr().is_none());
    assert_eq!(
        request(plain.addr, "GET", "/metrics", &[], Vec::new())
            .await
            .0,
        200
    );
}
