//! `GET /events`: the WebSocket subscription as Server-Sent Events: the
//! same confirmation, events, resume (by `Last-Event-ID`), answers and
//! limits, and a reader that stops reading is let go without holding up
//! anyone else.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

fn pr(n: u64) -> Vec<u8> {
    pr_payload("acme", "api", n, "zed", false)
}

/// The confirmation of an open stream.
async fn confirmed(sse: &mut Sse) -> serde_json::Value {
    assert_eq!(sse.status, 200);
    let m = sse.next_message().await;
    assert_eq!(m.event.as_deref(), Some("subscription_confirmed"), "{m:?}");
    let v = m.json();
    assert_eq!(v["type"], "subscription_confirmed", "{v}");
    v
}

/// The one `error` event of a refused stream, which then ends.
async fn refused(mut sse: Sse) -> (String, String) {
    assert_eq!(sse.status, 200);
    let m = sse.next_message().await;
    assert_eq!(m.event.as_deref(), Some("error"), "{m:?}");
    let v = m.json();
    assert_eq!(v["type"], "error");
    assert_eq!(sse.next().await, None, "the stream ends after its error");
    (
        v["error"].as_str().unwrap().to_owned(),
        v["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_stream_carries_what_a_websocket_carries() {
    let server = TestServer::start("").await;
    let mut ws = subscribe(server.addr, "alice", json!({"organization": "acme"})).await;
    let mut sse = Sse::subscribe(server.addr, &token("alice"), "organization=acme").await;
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    assert_eq!(sse.headers["cache-control"], "no-cache");
    let confirmation = confirmed(&mut sse).await;
    assert_eq!(confirmation["username"], "alice");
    assert_eq!(confirmation["organization"], "acme");
    let epoch = confirmation["stream"]["epoch"].as_str().unwrap().to_owned();
    // Another organization's event reaches neither client.
    let widgets = pr_payload("widgets", "api", 9, "zed", false);
    assert_eq!(server.webhook("pull_request", &widgets).await.0, 200);
    for n in 1..=3 {
        assert_eq!(server.webhook("pull_request", &pr(n)).await.0, 200);
    }
    for _ in 1..=3 {
        let on_ws = next_event(&mut ws).await;
        let (on_sse, id) = sse.next_event().await;
        assert_eq!(on_sse, on_ws, "the same JSON as on /ws");
        assert_eq!(id, format!("{epoch}:{}", on_ws["seq"]));
        assert!(
            on_sse["url"].as_str().unwrap().contains("/acme/"),
            "{on_sse}"
        );
    }
}

#[tokio::test]
async fn last_event_id_resumes_exactly_as_resume_does() {
    let server = TestServer::start("").await;
    let alice = token("alice");
    let mut sse = Sse::subscribe(server.addr, &alice, "organization=acme").await;
    let epoch = confirmed(&mut sse).await["stream"]["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    server.webhook("pull_request", &pr(1)).await;
    server.webhook("pull_request", &pr(2)).await;
    sse.next_event().await;
    let (_, last) = sse.next_event().await;
    drop(sse);
    // Missed while away.
    let mut missed = Vec::new();
    for n in 3..=5 {
        server.webhook("pull_request", &pr(n)).await;
        missed.push(format!("https://github.com/acme/api/pull/{n}"));
    }
    let auth = format!("Bearer {alice}");
    let mut sse = Sse::open(
        server.addr,
        "organization=acme",
        &[("authorization", &auth), ("last-event-id", &last)],
    )
    .await;
    assert_eq!(confirmed(&mut sse).await["resumed"], true);
    for url in &missed {
        assert_eq!(&sse.next_event().await.0["url"], url);
    }
    server.webhook("pull_request", &pr(6)).await;
    let (live, id) = sse.next_event().await;
    assert_eq!(live["url"], "https://github.com/acme/api/pull/6");
    assert_eq!(
        id,
        format!("{epoch}:{}", live["seq"]),
        "no gap, no duplicate"
    );

    // Another stream's position: what a WebSocket resume is answered.
    let mut sse = Sse::open(
        server.addr,
        "organization=acme",
        &[("authorization", &auth), ("last-event-id", "elsewhere:5")],
    )
    .await;
    let c = confirmed(&mut sse).await;
    assert_eq!(
        (&c["resumed"], &c["resume_error"]),
        (&json!(false), &json!("unknown_epoch"))
    );
    // A position the stream has not reached.
    let ahead = format!("{epoch}:999");
    let sse = Sse::open(
        server.addr,
        "organization=acme",
        &[("authorization", &auth), ("last-event-id", &ahead)],
    )
    .await;
    let (code, message) = refused(sse).await;
    assert_eq!(code, "invalid_subscription");
    assert!(message.contains("resume.after 999 is beyond"), "{message}");
}

#[tokio::test]
async fn refusals_get_the_answers_of_the_websocket() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let (status, body) = request(addr, "GET", "/events", &[], vec![]).await;
    assert_eq!(
        (status, body.as_str()),
        (403, "403 Forbidden: missing Authorization header\n")
    );
    let (status, body) = request(
        addr,
        "GET",
        "/events",
        &[("authorization", "Bearer ghp_x")],
        vec![],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            "403 Forbidden: token does not look like a GitHub token\n"
        )
    );
    let (status, _) = request(addr, "POST", "/events", &[], vec![]).await;
    assert_eq!(status, 405);

    let stranger = format!("ghp_{}", "z".repeat(36));
    let cases = [
        (
            stranger.as_str(),
            "organization=acme",
            "authentication_failed",
            "Invalid GitHub token.",
        ),
        (
            &token("alice"),
            "organization=widgets",
            "access_denied",
            "User 'alice' is not a member of organization 'widgets'.",
        ),
        (
            &token("alice"),
            "organization=bad%20org",
            "invalid_subscription",
            "Invalid subscription: invalid organization name (use \"*\" or 1-39 letters, digits, '-' or '_')",
        ),
        (
            &token("alice"),
            "organization=acme&user_events_only=yes",
            "invalid_subscription",
            "Invalid subscription: user_events_only must be true or false, not \"yes\"",
        ),
        (
            &token("alice"),
            "organization=acme&organization=widgets",
            "invalid_subscription",
            "Invalid subscription: organization is given more than once",
        ),
    ];
    for (tok, query, code, message) in cases {
        let sse = Sse::subscribe(addr, tok, query).await;
        assert_eq!(
            refused(sse).await,
            (code.to_owned(), message.to_owned()),
            "{query}"
        );
    }
    let auth = format!("Bearer {}", token("alice"));
    let sse = Sse::open(
        addr,
        "",
        &[("authorization", &auth), ("last-event-id", "7")],
    )
    .await;
    let (code, message) = refused(sse).await;
    assert_eq!(code, "invalid_subscription");
    assert_eq!(
        message,
        "Invalid subscription: Last-Event-ID must be <epoch>:<seq>, as an event's id: line gives it"
    );
}

#[tokio::test]
async fn a_comment_keeps_an_idle_stream_alive() {
    let server = TestServer::start_with("", |c| c.server.ping_interval_s = 1).await;
    let mut sse = Sse::subscribe(server.addr, &token("alice"), "organization=acme").await;
    confirmed(&mut sse).await;
    let m = sse.next().await.unwrap();
    assert_eq!(m.comment.as_deref(), Some("keepalive"), "{m:?}");
}

#[tokio::test]
async fn streams_count_against_the_connection_and_failed_check_limits() {
    let server = TestServer::start_with("", |c| {
        c.limits.max_conns_per_ip = 2;
        c.auth.max_failed_checks_per_ip = 2;
    })
    .await;
    let addr = server.addr;
    let _ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let mut sse = Sse::subscribe(addr, &token("bob"), "organization=acme").await;
    confirmed(&mut sse).await;
    let auth = format!("Bearer {}", token("carol"));
    let (status, body) = request(addr, "GET", "/events", &[("authorization", &auth)], vec![]).await;
    assert_eq!(
        (status, body.as_str()),
        (429, "429 Too Many Requests: Connection limit exceeded\n")
    );
    // A stream that ends gives its slot back.
    drop(sse);
    server.webhook("pull_request", &pr(1)).await;
    wait_for("the stream's slot", || {
        server.handle().connection_counts().total == 1
    })
    .await;
    // Rejected tokens count as on /ws: the third is not even checked.
    let stranger = format!("ghp_{}", "z".repeat(36));
    for _ in 0..2 {
        let sse = Sse::subscribe(addr, &stranger, "organization=acme").await;
        assert_eq!(refused(sse).await.0, "authentication_failed");
    }
    let (status, body) = request(
        addr,
        "GET",
        "/events",
        &[("authorization", &format!("Bearer {stranger}"))],
        vec![],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            429,
            "429 Too Many Requests: too many failed token checks from this address\n"
        )
    );
}

/// A reader that stops reading: its writes stall, and after
/// `server.write_timeout_s` its connection is closed and its slot given
/// back, while a WebSocket client receives every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_reads_is_closed_at_the_write_timeout() {
    let server = TestServer::start_with("", |c| c.server.write_timeout_s = 1).await;
    let mut ws = subscribe(server.addr, "bob", json!({"organization": "acme"})).await;
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "GET /events?organization=acme HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\n\r\n",
        server.addr,
        token("alice")
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    wait_for("both clients", || server.hub().stats().clients == 2).await;
    let sent = flood_until(&server, std::slice::from_mut(&mut ws), |s| s.clients == 1).await;
    assert_eq!(server.handle().connection_counts().total, 1);
    assert!(sent > 4, "{sent}");
    drop(stalled);
}

/// Waits until `cond` holds (10 s at most).
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
