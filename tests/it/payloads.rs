//! Full webhook payloads (`[payloads]`, `"include_payload": true`, issue
//! #27): the body exactly as GitHub sent it and its headers, to the
//! clients allowed them, on a single node, after a resume, and across a
//! cluster's stream; everyone else gets the small event, unchanged.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

const ON: &str = "[payloads]\nenabled = true\n";

/// The headers GitHub sends besides the signature, as a test sends them.
fn github_like_headers(kind: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", kind.to_owned()),
        ("x-github-delivery", delivery.to_owned()),
        ("x-github-hook-id", "5123".to_owned()),
        (
            "x-github-hook-installation-target-id",
            "79929171".to_owned(),
        ),
        (
            "x-github-hook-installation-target-type",
            "integration".to_owned(),
        ),
        ("user-agent", "GitHub-Hookshot/9ad5d3a".to_owned()),
        ("content-type", "application/json".to_owned()),
    ]
}

/// Posts `body` signed with `secret` and GitHub's headers; the status.
async fn deliver(
    addr: std::net::SocketAddr,
    secret: &[u8],
    kind: &str,
    delivery: &str,
    body: &[u8],
) -> u16 {
    let sig = hookfan::sign(secret, body);
    let mut headers = github_like_headers(kind, delivery);
    headers.push(("x-hub-signature-256", sig));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, text) = post(addr, "/webhook", &headers, body.to_vec()).await;
    assert!(status == 200, "{delivery}: {status} {text}");
    status
}

/// A pull request payload as GitHub might format it, with whitespace and
/// `pad` bytes of text: re-encoding it would change its bytes.
fn pretty_pr(number: u64, pad: usize) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&pr_payload("acme", "api", number, "x", false)).unwrap();
    v["padding"] = json!("é\"\\\n".repeat(pad / 6));
    serde_json::to_vec_pretty(&v).unwrap()
}

/// The next event's text.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let text = next_message(ws).await.into_text().unwrap().to_string();
        let v: Value = serde_json::from_str(&text).unwrap();
        if v.get("url").is_some() {
            return text;
        }
    }
}

/// `text` carries `body` verbatim as its payload, then its seq, and the
/// headers GitHub sent.
fn assert_carries(text: &str, body: &[u8], delivery: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap();
    let body = std::str::from_utf8(body).unwrap();
    let tail = format!(",\"payload\":{body},\"seq\":{}}}", v["seq"]);
    assert!(text.ends_with(&tail), "the body is not verbatim at the end");
    let want: serde_json::Map<String, Value> = [
        ("X-GitHub-Event", "pull_request"),
        ("X-GitHub-Delivery", delivery),
        ("X-GitHub-Hook-ID", "5123"),
        ("X-GitHub-Hook-Installation-Target-ID", "79929171"),
        ("X-GitHub-Hook-Installation-Target-Type", "integration"),
        ("User-Agent", "GitHub-Hookshot/9ad5d3a"),
        ("Content-Type", "application/json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect();
    assert_eq!(v["headers"], Value::Object(want));
    assert_eq!(v["delivery_id"], delivery);
    v
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_clients_get_the_body_verbatim_and_the_others_the_small_event() {
    let daemon = spawn_daemon(ON);
    let acme = json!({"organization": "acme"});
    let mut full = subscribe(
        daemon.addr,
        "bob",
        json!({"organization": "acme", "include_payload": true}),
    )
    .await;
    let mut small = subscribe(daemon.addr, "codertocat", acme).await;

    for (n, pad) in [(7, 0), (8, 5 << 20)] {
        let body = pretty_pr(n, pad);
        let id = format!("payload-{n}");
        deliver(
            daemon.addr,
            DAEMON_SECRET.as_bytes(),
            "pull_request",
            &id,
            &body,
        )
        .await;
        let text = next_text(&mut full).await;
        let with = assert_carries(&text, &body, &id);
        let without: Value = serde_json::from_str(&next_text(&mut small).await).unwrap();
        assert_eq!(
            keys(&without),
            [
                "commit_sha",
                "delivery_id",
                "seq",
                "timestamp",
                "type",
                "url"
            ]
        );
        for field in keys(&without) {
            assert_eq!(with[field], without[field], "{field}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_payload_needs_payloads_enabled_and_an_allowed_tier() {
    let asks = json!({"organization": "acme", "include_payload": true});
    let refused = |message: &str| json!({"type": "error", "error": "payload_not_allowed", "message": message});

    let off = spawn_daemon("");
    let (mut ws, first) = subscribe_as(off.addr, &token("bob"), asks.clone()).await;
    assert_eq!(
        first,
        refused("include_payload refused: this server does not send webhook payloads.")
    );
    assert_eq!(
        expect_close(&mut ws).await,
        (1008, "payload_not_allowed".into())
    );

    let flock_only = spawn_daemon("[payloads]\nenabled = true\ntiers = [\"flock\"]\n");
    let (mut ws, first) = subscribe_as(flock_only.addr, &token("bob"), asks.clone()).await;
    assert_eq!(
        first,
        refused("include_payload refused: webhook payloads are not available to the pro tier.")
    );
    assert_eq!(
        expect_close(&mut ws).await,
        (1008, "payload_not_allowed".into())
    );
    let (mut ws, first) = subscribe_as(flock_only.addr, &token("alice"), asks).await;
    assert_eq!(first["error"], "payload_not_allowed", "free: {first}");
    assert_eq!(expect_close(&mut ws).await.0, 1008);
    let carol = subscribe(
        flock_only.addr,
        "carol",
        json!({"organization": "widgets", "include_payload": true}),
    )
    .await;
    drop(carol);

    // The same subscription without include_payload is fine; a wrong type
    // is an invalid subscription.
    subscribe(
        flock_only.addr,
        "bob",
        json!({"organization": "acme", "include_payload": false}),
    )
    .await;
    let (_ws, first) = subscribe_as(
        flock_only.addr,
        &token("bob"),
        json!({"organization": "acme", "include_payload": "yes"}),
    )
    .await;
    assert_eq!(first["error"], "invalid_subscription", "{first}");
    let metrics = metrics_text(flock_only.addr).await;
    assert!(
        metrics.contains("hookfan_handshakes_total{outcome=\"payload_not_allowed\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_payload_client_is_replayed_the_payloads_it_missed() {
    let daemon = spawn_daemon(ON);
    let sub = json!({"organization": "acme", "include_payload": true});
    let (mut ws, confirmed) = subscribe_as(daemon.addr, &token("bob"), sub.clone()).await;
    let epoch = confirmed["stream"]["epoch"].clone();
    let body = pretty_pr(1, 100);
    deliver(
        daemon.addr,
        DAEMON_SECRET.as_bytes(),
        "pull_request",
        "r-1",
        &body,
    )
    .await;
    let seen: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    drop(ws);

    let missed: Vec<Vec<u8>> = (2..=3).map(|n| pretty_pr(n, 1000)).collect();
    for (i, body) in missed.iter().enumerate() {
        let id = format!("r-{}", i + 2);
        deliver(
            daemon.addr,
            DAEMON_SECRET.as_bytes(),
            "pull_request",
            &id,
            body,
        )
        .await;
    }
    let mut resume = sub;
    resume["resume"] = json!({"epoch": epoch, "after": seen["seq"]});
    let (mut ws, first) = subscribe_as(daemon.addr, &token("bob"), resume).await;
    assert_eq!(first["resumed"], true, "{first}");
    for (i, body) in missed.iter().enumerate() {
        let text = next_text(&mut ws).await;
        assert_carries(&text, body, &format!("r-{}", i + 2));
    }
}

/// A tier lowered in the tokens file (SIGHUP) closes the client that asked
/// for payloads with `payload_not_allowed`; the same account's other
/// client stays, and keeps receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_lowered_at_reload_closes_payload_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, tokens_toml()).unwrap();
    let config = dir.path().join("hookfan.toml");
    std::fs::write(
        &config,
        format!("[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n{ON}"),
    )
    .unwrap();
    let daemon = spawn_daemon_at(&config);
    let mut full = subscribe(
        daemon.addr,
        "bob",
        json!({"organization": "acme", "include_payload": true}),
    )
    .await;
    let mut small = subscribe(daemon.addr, "bob", json!({"organization": "acme"})).await;

    let demoted = [("bob", &["acme", "widgets"][..], "free")];
    std::fs::write(&tokens, tokens_toml_for(&demoted)).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    let error = next_json(&mut full).await;
    assert_eq!(
        error,
        json!({"type": "error", "error": "payload_not_allowed",
               "message": "include_payload refused: webhook payloads are not available to the free tier."})
    );
    assert_eq!(
        expect_close(&mut full).await,
        (1008, "payload_not_allowed".into())
    );
    let body = pretty_pr(5, 0);
    deliver(
        daemon.addr,
        DAEMON_SECRET.as_bytes(),
        "pull_request",
        "after",
        &body,
    )
    .await;
    assert_eq!(next_event(&mut small).await["delivery_id"], "after");
    let closed = "hookfan_access_changes_total{change=\"payload_not_allowed\"}";
    assert_eq!(metric_of(daemon.addr, closed).await, 1.0);
}

/// Two nodes on one stream, with NATS taking messages of 32 MiB: a payload
/// taken by one node reaches a payload client of the other byte for byte
/// (5 MB included), and the small event its other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_cross_the_cluster_stream_verbatim() {
    let nats = Nats::start_with("max_payload: 33554432\n");
    let a = TestServer::start(&node_config(&nats, "P1", ON)).await;
    let b = TestServer::start(&node_config(&nats, "P1", ON)).await;
    let mut full = subscribe(
        b.addr,
        "bob",
        json!({"organization": "acme", "include_payload": true}),
    )
    .await;
    let mut small = subscribe(b.addr, "codertocat", json!({"organization": "acme"})).await;
    for (n, pad) in [(1, 0), (2, 5 << 20)] {
        let body = pretty_pr(n, pad);
        let id = format!("c-{n}");
        deliver(a.addr, SECRET, "pull_request", &id, &body).await;
        assert_carries(&next_text(&mut full).await, &body, &id);
        let other: Value = serde_json::from_str(&next_text(&mut small).await).unwrap();
        assert_eq!(
            (other["delivery_id"].as_str(), other.get("payload")),
            (Some(id.as_str()), None)
        );
    }
}

/// NATS's default message limit (1 MB) cannot carry the default largest
/// payload (25 MiB): a node with payloads on refuses to start, and says
/// what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_when_nats_cannot_carry_its_payloads() {
    let nats = Nats::start();
    let refused = TestServer::try_start(&node_config(&nats, "P2", ON))
        .await
        .err()
        .expect("refused");
    let text = refused.to_string();
    assert!(
        text.contains("cannot join the cluster: payloads.enabled: a stream message carries a payload of up to webhook.max_payload_bytes (26214400) plus 65536 bytes, but NATS accepts messages of at most 1048576 bytes: raise max_payload in nats-server's configuration to at least 26279936"),
        "{text}"
    );
    // A largest payload that fits is fine.
    let fits = format!(
        "{}[webhook]\nmax_payload_bytes = 900000\n",
        node_config(&nats, "P2", ON)
    );
    TestServer::start(&fits).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
