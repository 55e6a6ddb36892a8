//! The WebSocket endpoint before and during the handshake: every refusal,
//! with its exact answer, and that other clients keep receiving meanwhile.

use std::time::Duration;

use crate::common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::Message;

/// The HTTP status of a refused upgrade.
async fn refused_status(addr: std::net::SocketAddr, token: Option<&str>) -> (u16, String) {
    match ws_connect(addr, token).await {
        Err(WsError::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade should have been refused"),
    }
}

#[tokio::test]
async fn bad_tokens_get_403_before_the_upgrade() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let (s, body) = refused_status(addr, None).await;
    assert_eq!(
        (s, body.as_str()),
        (403, "403 Forbidden: missing Authorization header\n")
    );
    let (s, body) = refused_status(addr, Some("ghp_short")).await;
    assert_eq!(
        (s, body.as_str()),
        (
            403,
            "403 Forbidden: token does not look like a GitHub token\n"
        )
    );
    // Not the Bearer scheme.
    let (s, body) = request(
        addr,
        "GET",
        "/ws",
        &[
            ("authorization", &format!("token {}", token("alice"))),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ],
        vec![],
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (
            403,
            "403 Forbidden: Authorization header must be 'Bearer <token>'\n"
        )
    );
    // A well-formed token but no upgrade headers.
    let (s, body) = request(
        addr,
        "GET",
        "/ws",
        &[("authorization", &format!("Bearer {}", token("alice")))],
        vec![],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = request(addr, "POST", "/ws", &[], vec![]).await;
    assert_eq!(s, 405);
}

/// Sends `first` as the first message and returns the error message and the
/// close code.
async fn refused(addr: std::net::SocketAddr, tok: &str, first: Message) -> (Value, (u16, String)) {
    let mut ws = ws_connect(addr, Some(tok)).await.expect("upgrade");
    ws.send(first).await.unwrap();
    let err = next_json(&mut ws).await;
    let close = expect_close(&mut ws).await;
    (err, close)
}

fn error_of(v: &Value) -> (&str, &str) {
    assert_eq!(v["type"], "error", "{v}");
    (v["error"].as_str().unwrap(), v["message"].as_str().unwrap())
}

/// Every handshake refusal: the token, the first message, the error code,
/// the start of its message and the close code.
fn handshake_error_cases() -> Vec<(String, Message, &'static str, &'static str, u16)> {
    let alice = token("alice");
    vec![
        (
            alice.clone(),
            Message::text("{not json"),
            "invalid_subscription",
            "Invalid subscription: subscription is not valid JSON",
            1008,
        ),
        (
            alice.clone(),
            Message::text("[1]"),
            "invalid_subscription",
            "Invalid subscription: subscription is not valid JSON: expected a JSON object",
            1008,
        ),
        (
            alice.clone(),
            Message::text(r#"{"organization":"bad org"}"#),
            "invalid_subscription",
            "Invalid subscription: invalid organization name",
            1008,
        ),
        (
            alice.clone(),
            Message::text(r#"{"event_types":["Push"]}"#),
            "invalid_subscription",
            "Invalid subscription: invalid event type \"Push\"",
            1008,
        ),
        (
            alice.clone(),
            Message::text(r#"{"pull_requests":["https://gitlab.com/a/b/pull/1"]}"#),
            "invalid_subscription",
            "Invalid subscription: invalid PR URL",
            1008,
        ),
        (
            alice.clone(),
            Message::binary(b"{}".to_vec()),
            "invalid_subscription",
            "Invalid subscription: subscription must be a JSON text message",
            1003,
        ),
        (
            alice.clone(),
            Message::text(r#"{"organization":"acme","event_types":["push"]}"#),
            "event_type_not_allowed",
            "Event type 'push' is not allowed",
            1008,
        ),
        (
            token("zed"),
            Message::text(r#"{"organization":"acme"}"#),
            "authentication_failed",
            "Invalid GitHub token.",
            1008,
        ),
        (
            alice.clone(),
            Message::text(r#"{"organization":"widgets"}"#),
            "access_denied",
            "User 'alice' is not a member of organization 'widgets'.",
            1008,
        ),
    ]
}

#[tokio::test]
async fn every_handshake_error_code_with_its_message() {
    let server =
        TestServer::start("[webhook]\nallowed_events = [\"pull_request\", \"check_run\"]\n").await;
    let addr = server.addr;
    // A bystander that must keep getting events through all of this.
    let mut bystander = subscribe(addr, "bob", json!({"organization": "acme"})).await;

    for (tok, first, code, message_start, close) in handshake_error_cases() {
        let (err, (close_code, _)) = refused(addr, &tok, first.clone()).await;
        let (got_code, got_message) = error_of(&err);
        assert_eq!(got_code, code, "{first:?}");
        assert!(
            got_message.starts_with(message_start),
            "{first:?}: {got_message}"
        );
        assert!(
            !got_message.contains(&tok),
            "a message never contains the token"
        );
        assert_eq!(close_code, close, "{first:?}");
    }

    // Still streaming to the bystander.
    server
        .webhook("pull_request", &pr_payload("acme", "api", 1, "x", false))
        .await;
    assert_eq!(
        next_event(&mut bystander).await["url"],
        "https://github.com/acme/api/pull/1"
    );
    server
        .wait_stats("refused clients gone", |s| {
            s.clients == 1 && s.live_sessions == 1
        })
        .await;
}

#[tokio::test]
async fn a_subscription_over_8_kib_is_refused() {
    let server = TestServer::start("").await;
    let big = json!({"organization": "acme", "pad": "x".repeat(8200)}).to_string();
    assert!(big.len() > 8192);
    let (err, (close, _)) = refused(server.addr, &token("alice"), Message::text(big)).await;
    assert_eq!(
        error_of(&err),
        (
            "invalid_subscription",
            "Invalid subscription: subscription message exceeds 8192 bytes"
        )
    );
    assert_eq!(close, 1009);
    // Exactly 8 KiB is fine (unknown fields are ignored).
    let mut exact = json!({"organization": "acme", "pad": ""}).to_string();
    let pad = 8192 - exact.len();
    exact = json!({"organization": "acme", "pad": "x".repeat(pad)}).to_string();
    assert_eq!(exact.len(), 8192);
    let (_ws, first) = subscribe_as(
        server.addr,
        &token("alice"),
        serde_json::from_str(&exact).unwrap(),
    )
    .await;
    assert_eq!(first["type"], "subscription_confirmed");
}

#[tokio::test]
async fn no_subscription_within_the_handshake_timeout() {
    let server = TestServer::start("[server]\nhandshake_timeout_s = 1\n").await;
    let mut ws = ws_connect(server.addr, Some(&token("alice")))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = next_json(&mut ws).await;
    assert_eq!(
        error_of(&err),
        (
            "invalid_subscription",
            "Invalid subscription: no subscription received within 1 s"
        )
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(expect_close(&mut ws).await.0, 1008);
    server
        .wait_stats("timed-out session gone", |s| s.live_sessions == 0)
        .await;
}

/// The confirmation without its `stream` (checked apart: its epoch is random).
fn without_stream(mut c: Value) -> Value {
    let stream = c.as_object_mut().unwrap().remove("stream").expect("stream");
    assert!(stream["epoch"].is_string() && stream["seq"].is_u64() && stream["oldest"].is_u64());
    c
}

#[tokio::test]
async fn confirmation_shapes() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let (_a, c) = subscribe_as(
        addr,
        &token("alice"),
        json!({"organization": "ACME", "event_types": ["pull_request"], "client": "x"}),
    )
    .await;
    assert_eq!(
        without_stream(c),
        json!({"type": "subscription_confirmed", "organization": "ACME", "username": "alice", "event_types": ["pull_request"],
               "warnings": ["unknown field \"client\" ignored"]})
    );
    // No event types and no server list: the field is left out.
    let (_b, c) = subscribe_as(addr, &token("bob"), json!({"organization": "*"})).await;
    assert_eq!(
        without_stream(c),
        json!({"type": "subscription_confirmed", "organization": "*", "username": "bob"})
    );
    // An app installation with no org is pinned to its installation org.
    let (_c, c) = subscribe_as(addr, &app_token(), json!({})).await;
    assert_eq!(
        without_stream(c),
        json!({"type": "subscription_confirmed", "organization": "acme", "username": "app[installation]"})
    );

    // With a server list, an empty event_types lists the allowed types.
    let listed =
        TestServer::start("[webhook]\nallowed_events = [\"pull_request\", \"check_run\"]\n").await;
    let (_d, c) = subscribe_as(
        listed.addr,
        &token("alice"),
        json!({"organization": "acme"}),
    )
    .await;
    assert_eq!(c["event_types"], json!(["pull_request", "check_run"]));
}

#[tokio::test]
async fn keepalive_pings_and_client_pings() {
    let server = TestServer::start("[server]\nping_interval_s = 1\nread_timeout_s = 3\n").await;
    let mut ws = subscribe(server.addr, "alice", json!({"organization": "acme"})).await;
    // The client's own ping gets a pong with the same seq; WebSocket pings
    // are answered by the client library.
    ws.send(Message::text(r#"{"type":"ping","seq":41}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong", "seq": 41}));
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));
    for kind in ["pong", "keepalive", "heartbeat", "something_else"] {
        ws.send(Message::text(format!(r#"{{"type":"{kind}"}}"#)))
            .await
            .unwrap();
    }
    // The server's keepalive ping, with increasing seq.
    assert_eq!(next_json(&mut ws).await, json!({"type": "ping", "seq": 1}));
    assert_eq!(next_json(&mut ws).await, json!({"type": "ping", "seq": 2}));
}

#[tokio::test]
async fn websocket_ping_frames_get_pong_frames() {
    use futures_util::StreamExt;
    let server = TestServer::start("").await;
    let mut ws = subscribe(server.addr, "alice", json!({"organization": "acme"})).await;
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg, Message::Pong(b"hi".to_vec().into()));
}

#[tokio::test]
async fn silence_past_the_read_timeout_closes_with_1001() {
    let server = TestServer::start("[server]\nping_interval_s = 1\nread_timeout_s = 2\n").await;
    // A bare client that answers nothing, not even WebSocket pings.
    let mut ws = RawWs::subscribe(server.addr, &token("alice"), r#"{"organization":"acme"}"#).await;
    assert_eq!(ws.next_json().await["type"], "subscription_confirmed");
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    let close = loop {
        let (op, payload) = ws.next_frame().await.expect("close frame before EOF");
        match op {
            0x8 => break payload,
            0x9 => seen.push("ping frame"),
            0x1 => {
                let v: Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(v["type"], "ping", "{v}");
                seen.push("json ping");
            }
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(
        seen,
        ["json ping", "ping frame"],
        "one keepalive of each kind before the timeout"
    );
    let code = u16::from_be_bytes([close[0], close[1]]);
    let reason = std::str::from_utf8(&close[2..]).unwrap();
    assert_eq!(
        (code, reason),
        (1001, "read timeout: no message from the client within 2 s")
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    server
        .wait_stats("closed client gone", |s| {
            s.clients == 0 && s.live_sessions == 0
        })
        .await;
}

#[tokio::test]
async fn a_client_that_only_answers_websocket_pings_stays_connected() {
    let server = TestServer::start("[server]\nping_interval_s = 1\nread_timeout_s = 2\n").await;
    // Like wscat or a browser: it never sends a JSON message, and only
    // answers the server's ping frames with pong frames.
    let mut ws = RawWs::subscribe(server.addr, &token("alice"), r#"{"organization":"acme"}"#).await;
    assert_eq!(ws.next_json().await["type"], "subscription_confirmed");
    let until = std::time::Instant::now() + Duration::from_millis(5500);
    let mut pongs = 0;
    while std::time::Instant::now() < until {
        let (op, payload) = ws.next_frame().await.expect("still connected");
        assert_ne!(op, 0x8, "closed: {:?}", String::from_utf8_lossy(&payload));
        if op == 0x9 {
            ws.send(0xA, &payload).await;
            pongs += 1;
        }
    }
    assert!(pongs >= 4, "{pongs} pongs in 5.5 s");
    // Still subscribed: an event arrives.
    server
        .hub()
        .broadcast(hub_event("acme", "after-timeout", 0));
    loop {
        let v = ws.next_json().await;
        if v["type"] == "pull_request" {
            assert_eq!(v["delivery_id"], "after-timeout");
            break;
        }
    }
}

#[tokio::test]
async fn warnings_for_unknown_fields_and_subscriptions_that_match_nothing() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    // A typo: accepted (sprinkler's clients send extra fields), but named.
    let (_a, c) = subscribe_as(
        addr,
        &token("alice"),
        json!({"org": "acme", "event_type": ["push"]}),
    )
    .await;
    assert_eq!(c["type"], "subscription_confirmed");
    assert_eq!(
        c["warnings"],
        json!([
            "unknown field \"event_type\" ignored (did you mean \"event_types\"?)",
            "unknown field \"org\" ignored (did you mean \"organization\"?)",
            "this subscription matches no event: it names no organization, no pull_requests and no repositories, and user_events_only is false"
        ])
    );
    // An unknown field on an otherwise useful subscription.
    let (_b, c) = subscribe_as(
        addr,
        &token("alice"),
        json!({"organization": "acme", "colour": 1}),
    )
    .await;
    assert_eq!(c["warnings"], json!(["unknown field \"colour\" ignored"]));
    // Matches nothing, no unknown field.
    let (_c, c) = subscribe_as(
        addr,
        &token("alice"),
        json!({"event_types": ["pull_request"]}),
    )
    .await;
    assert_eq!(
        c["warnings"],
        json!([
            "this subscription matches no event: it names no organization, no pull_requests and no repositories, and user_events_only is false"
        ])
    );
    // Nothing to warn about: no field at all (sprinkler's shape).
    let (_d, c) = subscribe_as(addr, &token("alice"), json!({"user_events_only": true})).await;
    assert!(c.get("warnings").is_none(), "{c}");
    // An app installation pinned to its org matches its org's events.
    let (_e, c) = subscribe_as(addr, &app_token(), json!({})).await;
    assert!(c.get("warnings").is_none(), "{c}");
}

#[tokio::test]
async fn client_close_is_answered_and_cleans_up() {
    let server = TestServer::start("").await;
    let mut ws = subscribe(server.addr, "alice", json!({"organization": "acme"})).await;
    server.wait_stats("registered", |s| s.clients == 1).await;
    ws.close(None).await.unwrap();
    let (code, _) = expect_close(&mut ws).await;
    assert_eq!(code, 1000);
    server
        .wait_stats("gone", |s| {
            s.clients == 0 && s.index_entries == 0 && s.live_sessions == 0
        })
        .await;
}

/// A provider that never answers.
struct Hangs;

impl hookfan::auth::AuthProvider for Hangs {
    fn authenticate<'a>(&'a self, _: &'a hookfan::auth::Token) -> hookfan::auth::AuthFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_token_check_that_never_ends_is_cut_at_check_timeout() {
    let server = TestServer::start_with_auth(
        "",
        |c| c.auth.check_timeout_s = 1,
        |_| std::sync::Arc::new(Hangs),
    )
    .await;
    let started = std::time::Instant::now();
    let (mut ws, first) = subscribe_as(
        server.addr,
        &token("alice"),
        json!({"organization": "acme"}),
    )
    .await;
    assert_eq!(
        error_of(&first),
        (
            "internal_error",
            "Could not verify the token with GitHub. Try again later."
        )
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(expect_close(&mut ws).await.0, 1011);
}
