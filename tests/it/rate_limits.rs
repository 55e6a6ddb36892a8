//! Per-client request rates: upgrades and `/events` requests a minute
//! (`limits.upgrades_per_ip_per_minute`), bad webhook signatures a minute
//! (`webhook.max_bad_signatures_per_ip_per_minute`), and the bound on the
//! tables that count them (`limits.rate_table_entries`). Each limited
//! client is refused alone: other addresses, and the connections already
//! held, carry on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;

const UPGRADES_429: &str =
    "429 Too Many Requests: too many connection attempts from this address\n";
const SIGNATURES_429: &str =
    "too many requests: too many bad signatures from this address; check the webhook secret\n";

/// A TCP connection to `addr` from `source` (a 127.0.0.0/8 address).
async fn tcp_from(addr: SocketAddr, source: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// A WebSocket upgrade to `/ws` from `source`, as `login`.
async fn upgrade_from(addr: SocketAddr, source: &str, login: &str) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(login)).parse().unwrap(),
    );
    let stream = tcp_from(addr, source).await;
    tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}

async fn subscribed_from(addr: SocketAddr, source: &str, login: &str) -> Ws {
    let mut ws = upgrade_from(addr, source, login).await.expect("upgrade");
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");
    ws
}

/// One GET on `sender`, its answer whole.
async fn get(sender: &mut http::Sender, path: &str, headers: &[(&str, &str)]) -> http::Whole {
    http::exchange(
        sender,
        http::build("hookfan.test", "GET", path, headers, Vec::new()),
    )
    .await
}

#[tokio::test]
async fn upgrades_and_event_streams_share_one_rate_per_address() {
    let server = TestServer::start("[limits]\nupgrades_per_ip_per_minute = 3\n").await;
    let addr = server.addr;
    let bearer = format!("Bearer {}", token("bob"));
    // From 127.0.0.2: a subscription, then two requests that fail their
    // checks (no token; no upgrade): every request counts, whatever it was.
    let mut held = subscribed_from(addr, "127.0.0.2", "bob").await;
    let mut c = http::http1(tcp_from(addr, "127.0.0.2").await).await;
    assert_eq!(
        get(&mut c, "/events?organization=acme", &[]).await.status,
        403
    );
    let not_upgrade = get(&mut c, "/ws", &[("authorization", &bearer)]).await;
    assert_eq!(not_upgrade.status, 400, "{not_upgrade:?}");

    // The fourth: refused before its token is looked at, on either path.
    let limited = get(
        &mut c,
        "/events?organization=acme",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!((limited.status, limited.body.as_str()), (429, UPGRADES_429));
    // An empty bucket of 3 a minute: the next request is due in 20 s.
    assert!(
        matches!(limited.retry_after(), Some(19..=20)),
        "{limited:?}"
    );
    match upgrade_from(addr, "127.0.0.2", "bob").await {
        Err(WsError::Http(r)) => {
            assert_eq!(r.status(), 429);
            assert_eq!(r.body().as_deref(), Some(UPGRADES_429.as_bytes()));
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }

    // Another address is not limited; the held connection still delivers.
    let mut other = subscribed_from(addr, "127.0.0.3", "alice").await;
    let body = pr_payload("acme", "api", 7, "bob", false);
    assert_eq!(
        post_webhook(addr, SECRET, "pull_request", "rate-1", &body)
            .await
            .0,
        200
    );
    for ws in [&mut held, &mut other] {
        assert_eq!(next_event(ws).await["delivery_id"], "rate-1");
    }
    let text = metrics_text(addr).await;
    assert_eq!(
        metric(&text, "hookfan_handshakes_total{outcome=\"limited_rate\"}"),
        2.0
    );
    assert_eq!(metric(&text, "hookfan_upgrade_rate_clients"), 2.0);
}

/// The head of a POST /webhook declaring a 10 MB body, from `client`
/// (through the trusted proxy), with a well-formed signature.
fn big_post_head(client: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nhost: hookfan.test\r\nx-forwarded-for: {client}\r\n\
         x-github-event: pull_request\r\nx-github-delivery: big\r\n\
         x-hub-signature-256: sha256={}\r\ncontent-length: 10000000\r\n\r\n",
        "0".repeat(64)
    )
}

/// Posts `body` to `/webhook` on `sender` as from `client`, signed `sig`.
async fn post_as(
    sender: &mut http::Sender,
    client: &str,
    sig: Option<&str>,
    delivery: &str,
    body: &[u8],
) -> http::Whole {
    let mut headers = vec![
        ("x-forwarded-for", client),
        ("x-github-event", "pull_request"),
        ("x-github-delivery", delivery),
    ];
    headers.extend(sig.map(|sig| ("x-hub-signature-256", sig)));
    let req = http::build("hookfan.test", "POST", "/webhook", &headers, body.to_vec());
    http::exchange(sender, req).await
}

async fn connection(addr: SocketAddr) -> http::Sender {
    http::http1(tokio::net::TcpStream::connect(addr).await.unwrap()).await
}

#[tokio::test]
async fn bad_signatures_limit_their_sender_alone_and_valid_deliveries_never_count() {
    const GITHUB: &str = "192.0.2.10";
    const PROBER: &str = "198.51.100.9";
    let server = TestServer::start(
        "[limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
         [webhook]\nmax_bad_signatures_per_ip_per_minute = 3\n",
    )
    .await;
    let addr = server.addr;
    let mut ws = subscribe(addr, "bob", json!({"organization": "acme"})).await;
    let body = pr_payload("acme", "api", 7, "bob", false);
    let good = hookfan::sign(SECRET, &body);

    // Far more valid deliveries than the limit: none is counted.
    let mut github = connection(addr).await;
    for i in 0..20 {
        let a = post_as(&mut github, GITHUB, Some(&good), &format!("ok-{i}"), &body).await;
        assert_eq!(a.status, 200, "{i}: {a:?}");
    }
    // Missing, malformed, wrong: 401 each, then the sender is refused,
    // even with a good signature.
    let wrong = hookfan::sign(b"not-the-secret", &body);
    for sig in [None, Some("sha256=abc"), Some(wrong.as_str())] {
        let a = post_as(&mut connection(addr).await, PROBER, sig, "bad", &body).await;
        assert_eq!(a.status, 401, "{sig:?}: {a:?}");
    }
    let a = post_as(
        &mut connection(addr).await,
        PROBER,
        Some(&good),
        "p-1",
        &body,
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (429, SIGNATURES_429));
    assert!(matches!(a.retry_after(), Some(59..=60)), "{a:?}");

    // Refused from the head: a declared 10 MB body is never waited for.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(big_post_head(PROBER).as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 429 "), "{head}");
    assert!(head.contains("retry-after: "), "{head}");

    // GitHub's deliveries go on, and reach the subscriber.
    let a = post_as(&mut github, GITHUB, Some(&good), "after", &body).await;
    assert_eq!(a.status, 200, "{a:?}");
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("after") {
        seen.push(
            next_event(&mut ws).await["delivery_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 21, "{seen:?}");
    let text = metrics_text(addr).await;
    assert_eq!(
        metric(
            &text,
            "hookfan_webhook_outcomes_total{outcome=\"limited_bad_signatures\"}"
        ),
        2.0
    );
    assert_eq!(metric(&text, "hookfan_bad_signature_clients"), 1.0);
}

#[tokio::test]
async fn the_rate_tables_stay_bounded_by_rate_table_entries_and_keep_limiting() {
    const MANY: u32 = 3_000;
    let server = TestServer::start(
        "[limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\nrate_table_entries = 100\n\
         upgrades_per_ip_per_minute = 2\n\
         [webhook]\nmax_bad_signatures_per_ip_per_minute = 2\n",
    )
    .await;
    let addr = server.addr;
    let body = pr_payload("acme", "api", 7, "bob", false);
    let wrong = hookfan::sign(b"not-the-secret", &body);
    let client = |i: u32| format!("10.{}.{}.1", i >> 8, i & 255);

    // 30 times the table's room in distinct addresses, through the proxy.
    let mut c = connection(addr).await;
    for i in 0..MANY {
        let xff = client(i);
        let a = get(&mut c, "/ws", &[("x-forwarded-for", &xff)]).await;
        assert_eq!(a.status, 403, "{xff}: {a:?}");
        let a = post_as(&mut c, &xff, Some(&wrong), "bad", &body).await;
        assert_eq!(a.status, 401, "{xff}: {a:?}");
    }
    let text = metrics_text(addr).await;
    assert_eq!(metric(&text, "hookfan_upgrade_rate_clients"), 100.0);
    assert_eq!(metric(&text, "hookfan_bad_signature_clients"), 100.0);

    // The limits still hold for the next client, and only for it.
    let xff = [("x-forwarded-for", "203.0.113.5")];
    for _ in 0..2 {
        assert_eq!(get(&mut c, "/ws", &xff).await.status, 403);
    }
    let limited = get(&mut c, "/ws", &xff).await;
    assert_eq!((limited.status, limited.body.as_str()), (429, UPGRADES_429));
    for _ in 0..2 {
        let a = post_as(&mut c, "203.0.113.5", Some(&wrong), "bad", &body).await;
        assert_eq!(a.status, 401);
    }
    let good = hookfan::sign(SECRET, &body);
    let a = post_as(
        &mut connection(addr).await,
        "203.0.113.5",
        Some(&good),
        "x",
        &body,
    )
    .await;
    assert_eq!(a.status, 429, "{a:?}");
    let a = post_as(
        &mut connection(addr).await,
        "203.0.113.6",
        Some(&good),
        "y",
        &body,
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    let text = metrics_text(addr).await;
    assert_eq!(metric(&text, "hookfan_upgrade_rate_clients"), 100.0);
    assert_eq!(metric(&text, "hookfan_bad_signature_clients"), 100.0);
}
