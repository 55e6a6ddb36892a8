//! `webhook.allowed_sources`: webhooks only from the listed senders, and
//! from GitHub's `hooks` ranges as a GitHub-like `/meta` (started by each
//! test) publishes them: admitted, refused with 403 before the body, 503
//! until the ranges are known, a changed list at the next refresh, a failed
//! refresh keeping the last good list, the sender as `X-Forwarded-For`
//! through a trusted proxy says, and the other paths untouched.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

const FORBIDDEN: &str =
    "forbidden: webhooks are accepted only from the addresses in webhook.allowed_sources\n";
const UNKNOWN: &str = "service unavailable: the addresses webhooks are accepted from are not known yet, retry later\n";
const REFRESH_OK: &str = "hookfan_webhook_allowed_sources_refreshes_total{result=\"ok\"}";
const REFRESH_FAILED: &str = "hookfan_webhook_allowed_sources_refreshes_total{result=\"failed\"}";
const RANGES: &str = "hookfan_webhook_allowed_sources";
const LAST_REFRESH: &str = "hookfan_webhook_allowed_sources_last_refresh_timestamp_seconds";

/// GitHub's ranges, and the loopback the tests post from.
const WITH_LOOPBACK: &[&str] = &["192.30.252.0/22", "127.0.0.0/8", "2606:50c0::/32"];
const WITHOUT_LOOPBACK: &[&str] = &["192.30.252.0/22", "140.82.112.0/20", "2606:50c0::/32"];

/// A server accepting webhooks from `sources` (a TOML list), GitHub's API
/// at `api`, refreshing every second; `extra` adds whole sections.
async fn server(sources: &str, api: &str, extra: &str) -> TestServer {
    let api = api.to_owned();
    let config = format!("[webhook]\nallowed_sources = {sources}\n{extra}");
    TestServer::start_with(&config, move |c| {
        c.auth.github_api_url = api;
        // Below the file's minimum of 60: a test cannot wait a minute.
        c.webhook.allowed_sources_refresh_s = 1;
    })
    .await
}

fn payload() -> Vec<u8> {
    pr_payload("acme", "api", 1, "bob", false)
}

/// Posts webhooks (each with a delivery id of its own) until one is
/// answered `want`, 20 s at most; that answer's body.
async fn answered(server: &TestServer, want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.webhook("pull_request", &payload()).await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} {body:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the metric `name` of `addr` is at least `want`.
async fn metric_reaches(addr: SocketAddr, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = metric_of(addr, name).await;
        if got >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A whole signed webhook request, with `extra` header lines.
fn signed(body: &[u8], delivery: &str, extra: &str) -> Vec<u8> {
    let mut r = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\n{extra}\
         Content-Length: {}\r\n\r\n",
        hookfan::sign(SECRET, body),
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A signed webhook posted from the local address `source`, with an
/// `X-Forwarded-For` when `xff` is given; the answer.
async fn post_from(addr: SocketAddr, source: &str, delivery: &str, xff: Option<&str>) -> Answer {
    let extra = xff.map_or(String::new(), |v| format!("X-Forwarded-For: {v}\r\n"));
    let mut c = Raw::connect_from(addr, source.parse::<IpAddr>().unwrap()).await;
    c.send(&signed(&payload(), delivery, &extra)).await;
    c.answer(Duration::from_secs(5)).await
}

/// An address where nothing listens: connections are refused.
async fn nothing_listens() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

#[tokio::test]
async fn a_github_list_holding_the_sender_admits_it() {
    let mock = MetaMock::start(meta_hooks(WITH_LOOPBACK)).await;
    let server = server(r#"["github"]"#, &mock.url(), "").await;
    let tap = server.hub().tap();
    // Once GET /meta has answered (503 before), broadcast.
    mock.served(1).await;
    assert_eq!(answered(&server, 200).await, "OK");
    server.hub().sync().await;
    assert!(tap.try_recv().is_ok(), "broadcast");
    let text = metrics_text(server.addr).await;
    assert!(metric(&text, REFRESH_OK) >= 1.0, "{text}");
    assert_eq!(metric_value(&text, REFRESH_FAILED), Some(0.0), "{text}");
    assert_eq!(metric_value(&text, RANGES), Some(3.0), "{text}");
    assert!(metric(&text, LAST_REFRESH) > 1.7e9, "{text}");
    // Asked as GitHub wants, and without a token.
    assert_eq!(mock.bad_requests(), Vec::<String>::new());
}

#[tokio::test]
async fn a_github_list_without_the_sender_refuses_it_with_403() {
    let mock = MetaMock::start(meta_hooks(WITHOUT_LOOPBACK)).await;
    let server = server(r#"["github"]"#, &mock.url(), "").await;
    let tap = server.hub().tap();
    assert_eq!(answered(&server, 403).await, FORBIDDEN);
    server.hub().sync().await;
    assert!(tap.try_recv().is_err(), "not broadcast");
    let text = metrics_text(server.addr).await;
    let outcome = "hookfan_webhook_outcomes_total{outcome=\"forbidden_source\"}";
    assert!(metric(&text, outcome) >= 1.0, "{text}");
    let by_status = "hookfan_webhooks_total{type=\"pull_request\",status=\"403\"}";
    assert!(metric(&text, by_status) >= 1.0, "{text}");
}

#[tokio::test]
async fn a_changed_list_takes_effect_at_the_next_refresh() {
    let mock = MetaMock::start(meta_hooks(WITH_LOOPBACK)).await;
    let server = server(r#"["github"]"#, &mock.url(), "").await;
    assert_eq!(answered(&server, 200).await, "OK");
    let before = mock.requests();
    mock.set(meta_hooks(WITHOUT_LOOPBACK));
    assert_eq!(answered(&server, 403).await, FORBIDDEN);
    assert!(mock.requests() > before, "refused after a refresh");
    let before = mock.requests();
    mock.set(meta_hooks(&["127.0.0.1/32"]));
    assert_eq!(answered(&server, 200).await, "OK");
    assert!(mock.requests() > before, "admitted after a refresh");
    assert_eq!(metric_of(server.addr, RANGES).await, 1.0);
}

/// GitHub answering 500 at start: 503 with `Retry-After` (never 200 and
/// never a silent drop) and the connection closed, the fetch retried
/// within seconds, and 200 once `/meta` answers.
#[tokio::test]
async fn meta_failing_at_start_gives_503_then_200_once_it_answers() {
    let mock = MetaMock::start(MetaAnswer::Status(500)).await;
    let server = server(r#"["github"]"#, &mock.url(), "").await;
    mock.served(1).await;
    let mut c = Raw::connect(server.addr).await;
    c.send(&signed(&payload(), "early", "")).await;
    let a = c.answer(Duration::from_secs(5)).await;
    assert_eq!((a.status, a.body.as_str()), (503, UNKNOWN), "{a:?}");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{a:?}");
    assert_eq!(a.header("connection"), Some("close"));
    let text = metrics_text(server.addr).await;
    let outcome = "hookfan_webhook_outcomes_total{outcome=\"sources_unknown\"}";
    assert_eq!(metric_value(&text, outcome), Some(1.0), "{text}");
    assert!(metric(&text, REFRESH_FAILED) >= 1.0, "{text}");
    assert_eq!(metric_value(&text, RANGES), Some(0.0), "{text}");
    assert_eq!(metric_value(&text, LAST_REFRESH), Some(0.0), "{text}");
    // Retried within seconds, not at the next refresh.
    mock.served(2).await;
    mock.set(meta_hooks(WITH_LOOPBACK));
    assert_eq!(answered(&server, 200).await, "OK");
}

/// GitHub unreachable at start (connection refused): 503, the failure
/// counted; a sender within the list's own CIDRs is admitted meanwhile.
#[tokio::test]
async fn github_unreachable_at_start_gives_503_outside_the_cidrs() {
    let api = nothing_listens().await;
    let server = server(r#"["github", "127.0.0.2"]"#, &api, "").await;
    metric_reaches(server.addr, REFRESH_FAILED, 1.0).await;
    let a = post_from(server.addr, "127.0.0.1", "outside", None).await;
    assert_eq!((a.status, a.body.as_str()), (503, UNKNOWN), "{a:?}");
    assert!(a.header("retry-after").is_some(), "{a:?}");
    let a = post_from(server.addr, "127.0.0.2", "inside", None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK"), "{a:?}");
    assert_eq!(metric_of(server.addr, RANGES).await, 1.0);
}

/// An answer that fails (500, no ranges, an entry that is not a CIDR)
/// keeps the ranges in force, and is counted.
#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_list() {
    let mock = MetaMock::start(meta_hooks(WITH_LOOPBACK)).await;
    let server = server(r#"["github"]"#, &mock.url(), "").await;
    assert_eq!(answered(&server, 200).await, "OK");
    let failing = [
        MetaAnswer::Status(500),
        MetaAnswer::Body(json!({"hooks": []}).to_string()),
        MetaAnswer::Body(json!({"hooks": ["140.82.112.0/20", "140.82.112.0/99"]}).to_string()),
    ];
    for (n, answer) in failing.into_iter().enumerate() {
        mock.set(answer.clone());
        metric_reaches(server.addr, REFRESH_FAILED, n as f64 + 1.0).await;
        let (status, body) = server.webhook("pull_request", &payload()).await;
        assert_eq!((status, body.as_str()), (200, "OK"), "after {answer:?}");
        assert_eq!(
            metric_of(server.addr, RANGES).await,
            3.0,
            "after {answer:?}"
        );
    }
}

/// A failure streak is logged once (not at every retry), and its end.
#[tokio::test]
async fn a_failure_streak_is_logged_once_then_its_end() {
    let mock = MetaMock::start(MetaAnswer::Status(502)).await;
    // The daemon's config opens [auth]: the first line goes there.
    let daemon = spawn_daemon(&format!(
        "github_api_url = \"{}\"\n[webhook]\nallowed_sources = [\"github\"]\n",
        mock.url()
    ));
    mock.served(3).await;
    let failed = "cannot fetch GitHub's webhook address ranges (GET /meta)";
    let log = daemon.log_with(failed).await;
    assert_eq!(log.matches(failed).count(), 1, "{log}");
    assert!(log.contains("502 Bad Gateway"), "{log}");
    assert_eq!(daemon.webhook("pull_request", &payload(), "d1").await, 503);
    mock.set(meta_hooks(WITH_LOOPBACK));
    let log = daemon.log_with("fetched again").await;
    assert_eq!(log.matches(failed).count(), 1, "{log}");
    assert_eq!(daemon.webhook("pull_request", &payload(), "d2").await, 200);
}

/// Refused from the head alone: a sender outside the list declaring
/// 30 MB (over `webhook.max_payload_bytes`, 25 MiB, so the size check
/// comes after) is answered 403 at once, without sending its body, and the
/// connection closed. A list of CIDRs alone fetches nothing and never
/// answers 503.
#[tokio::test]
async fn a_refused_sender_gets_403_before_its_body_is_read() {
    let mock = MetaMock::start(meta_hooks(WITH_LOOPBACK)).await;
    let server = server(r#"["192.0.2.0/24", "127.0.0.2"]"#, &mock.url(), "").await;
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\n\
         X-GitHub-Delivery: big\r\nX-Hub-Signature-256: {}\r\nContent-Length: 30000000\r\n\r\n",
        hookfan::sign(SECRET, b"a body never sent")
    );
    let mut c = Raw::connect_from(server.addr, "127.0.0.1".parse().unwrap()).await;
    c.send(head.as_bytes()).await;
    let a = c.answer(Duration::from_secs(5)).await;
    assert_eq!((a.status, a.body.as_str()), (403, FORBIDDEN), "{a:?}");
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(
        c.rest_until_closed(Duration::from_secs(5)).await.as_deref(),
        Some(""),
        "closed"
    );
    let text = metrics_text(server.addr).await;
    assert_eq!(
        metric_value(&text, "hookfan_webhook_reserved_bytes"),
        Some(0.0)
    );
    // A listed single address: admitted at once, nothing fetched.
    let a = post_from(server.addr, "127.0.0.2", "listed", None).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK"), "{a:?}");
    let text = metrics_text(server.addr).await;
    assert_eq!(metric_value(&text, RANGES), Some(2.0), "{text}");
    assert!(!text.contains("allowed_sources_refreshes"), "{text}");
    assert_eq!(mock.requests(), 0);
}

/// The sender is the client IP of the connection limits: behind a trusted
/// proxy, the rightmost `X-Forwarded-For` hop that is not one (in IPv4
/// form); an untrusted peer's header is ignored.
#[tokio::test]
async fn x_forwarded_for_through_a_trusted_proxy_decides_the_source() {
    let server = server(
        r#"["203.0.113.0/24", "127.0.0.3"]"#,
        "http://127.0.0.1:9",
        "[limits]\ntrusted_proxies = [\"127.0.0.2/32\"]\n",
    )
    .await;
    let addr = server.addr;
    for (n, (peer, xff, want)) in [
        ("127.0.0.2", Some("203.0.113.9"), 200),
        ("127.0.0.2", Some("::ffff:203.0.113.10"), 200),
        ("127.0.0.2", Some("198.51.100.7"), 403),
        // A hop the client wrote itself, left of one it cannot forge.
        ("127.0.0.2", Some("203.0.113.9, 198.51.100.7"), 403),
        // The proxy itself, without a header, is not listed.
        ("127.0.0.2", None, 403),
        // Untrusted peers: the header is ignored, the peer decides.
        ("127.0.0.1", Some("203.0.113.9"), 403),
        ("127.0.0.3", Some("198.51.100.7"), 200),
    ]
    .into_iter()
    .enumerate()
    {
        let a = post_from(addr, peer, &format!("xff-{n}"), xff).await;
        assert_eq!(a.status, want, "{peer} {xff:?}: {a:?}");
    }
}

/// The list concerns `POST /webhook` only: with every sender refused, or
/// GitHub's ranges unknown, `/healthz`, `/`, `/metrics` and `/ws` answer
/// as usual.
#[tokio::test]
async fn other_paths_are_unaffected() {
    let mock = MetaMock::start(MetaAnswer::Status(500)).await;
    for (sources, webhook) in [(r#"["192.0.2.0/24"]"#, 403), (r#"["github"]"#, 503)] {
        let server = server(sources, &mock.url(), "").await;
        let addr = server.addr;
        assert_eq!(server.webhook("pull_request", &payload()).await.0, webhook);
        assert_eq!(
            request(addr, "GET", "/healthz", &[], vec![]).await,
            (200, "ok\n".into())
        );
        assert_eq!(request(addr, "GET", "/", &[], vec![]).await.0, 200);
        assert_eq!(request(addr, "GET", "/metrics", &[], vec![]).await.0, 200);
        let mut ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
        server.hub().broadcast(hub_event("acme", "direct", 0));
        assert_eq!(
            next_event(&mut ws).await["delivery_id"],
            "direct",
            "{sources}"
        );
    }
}
