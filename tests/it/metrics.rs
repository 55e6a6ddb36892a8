//! `/metrics` after a known sequence of connections, webhooks and a slow
//! client: exact counter values, parsed as Prometheus text by a crate.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use serde_json::json;

/// Samples by `name{label=value,...}` (labels sorted).
fn scrape(text: &str) -> HashMap<String, f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text");
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => {
                // Cumulative buckets: never decreasing.
                assert!(
                    h.windows(2).all(|w| w[0].count <= w[1].count),
                    "{}: {h:?}",
                    s.metric
                );
                let inf = h
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map(|b| b.count)
                    .unwrap_or(f64::NAN);
                out.insert(
                    format!("{}_inf_bucket{{{}}}", s.metric, labels.join(",")),
                    inf,
                );
                continue;
            }
            _ => continue,
        };
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    out
}

async fn get_metrics(server: &TestServer) -> (String, HashMap<String, f64>) {
    let (status, text) = request(server.addr, "GET", "/metrics", &[], vec![]).await;
    assert_eq!(status, 200);
    let parsed = scrape(&text);
    (text, parsed)
}

fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no sample {key}"))
}

/// Webhooks of known types and outcomes: 3 pull requests, 2 check runs
/// (a commit cache hit and a miss), a push (no URL), an unknown type, and
/// one with a bad signature; 5 of them broadcast.
async fn post_webhooks_of_every_outcome(server: &TestServer) {
    for n in 1..=3 {
        assert_eq!(
            server
                .webhook("pull_request", &pr_payload("acme", "api", n, "x", false))
                .await
                .0,
            200
        );
    }
    let check = serde_json::to_vec(&json!({
    "check_run": {"head_sha": format!("{:040x}", 1), "pull_requests": []},
    "repository": {"html_url": "https://github.com/acme/api", "full_name": "acme/api", "owner": {"login": "acme"}}
}))
.unwrap();
    assert_eq!(server.webhook("check_run", &check).await.0, 200); // cache hit: PR 1's head
    let miss = String::from_utf8(check.clone())
        .unwrap()
        .replace(&format!("{:040x}", 1), &format!("{:040x}", 99));
    assert_eq!(server.webhook("check_run", miss.as_bytes()).await.0, 200); // cache miss: repo URL
    assert_eq!(
        server.webhook("push", &fixture("push.json")).await.1,
        "ignored: event carries no pull request URL\n"
    );
    assert_eq!(server.webhook("not_a_github_event", b"{}").await.0, 200);
    let (s, _) = post(
        server.addr,
        "/webhook",
        &[
            ("x-github-event", "pull_request"),
            ("x-hub-signature-256", "sha256=00"),
        ],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 401);
}

/// The slow client reads what was not dropped for it; "end" itself may
/// have been dropped, so it counts until the server has nothing left for
/// it (the hub's deliveries reach `others` plus what it read).
async fn read_what_was_not_dropped(server: &TestServer, slow: &mut Ws, others: u64) -> u64 {
    let mut slow_received = 0u64;
    loop {
        server.hub().sync().await;
        if server.hub().stats().deliveries == others + slow_received {
            return slow_received;
        }
        next_event(slow).await;
        slow_received += 1;
    }
}

/// The metrics once `written` frames have their latency sample (10 s at
/// most: the sample is taken after the write).
async fn metrics_with_latencies(
    server: &TestServer,
    written: u64,
) -> (String, HashMap<String, f64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (text, m) = get_metrics(server).await;
        if value(&m, "hookfan_delivery_latency_seconds_count{}") as u64 == written
            || tokio::time::Instant::now() > deadline
        {
            return (text, m);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The samples after the sequence: `readers` plus the slow client
/// confirmed, `total_events` broadcast, `written` frames written, `dropped`
/// dropped for the slow client.
fn expected_samples(
    readers: f64,
    total_events: u64,
    written: u64,
    dropped: u64,
) -> Vec<(&'static str, f64)> {
    vec![
        ("hookfan_webhooks_total{status=200,type=pull_request}", 3.0),
        ("hookfan_webhooks_total{status=200,type=check_run}", 2.0),
        ("hookfan_webhooks_total{status=200,type=push}", 1.0),
        ("hookfan_webhooks_total{status=200,type=other}", 1.0),
        ("hookfan_webhooks_total{status=401,type=pull_request}", 1.0),
        ("hookfan_webhook_handling_seconds_count{}", 8.0),
        ("hookfan_handshakes_total{outcome=confirmed}", readers + 1.0),
        (
            "hookfan_handshakes_total{outcome=authentication_failed}",
            1.0,
        ),
        ("hookfan_handshakes_total{outcome=forbidden}", 1.0),
        ("hookfan_auth_results_total{result=ok}", readers + 1.0),
        ("hookfan_auth_results_total{result=invalid_token}", 1.0),
        ("hookfan_connected_clients{}", readers + 1.0),
        ("hookfan_events_broadcast_total{}", total_events as f64),
        ("hookfan_deliveries_total{}", written as f64),
        ("hookfan_drops_total{}", dropped as f64),
        ("hookfan_slow_client_closes_total{}", 0.0),
        ("hookfan_delivery_latency_seconds_count{}", written as f64),
        (
            "hookfan_delivery_latency_seconds_inf_bucket{}",
            written as f64,
        ),
        ("hookfan_webhook_handling_seconds_inf_bucket{}", 8.0),
        ("hookfan_commit_cache_entries{}", 3.0),
        ("hookfan_commit_cache_lookups_total{result=hit}", 1.0),
        ("hookfan_commit_cache_lookups_total{result=miss}", 1.0),
        // Every event has been handled: nothing waits for a shard.
        ("hookfan_shard_queue_depth{}", 0.0),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_after_a_known_sequence() {
    const READERS: usize = 3;
    let server = TestServer::start(
        "[broker]\nshards = 2\nclient_queue = 64\n[limits]\nmax_conns_per_ip = 100\n",
    )
    .await;
    let addr = server.addr;

    // Connections: 3 readers and a slow client confirmed, one unknown token,
    // one malformed token (403 before the upgrade).
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(subscribe(addr, "bob", json!({"organization": "acme"})).await);
    }
    let mut slow = slow_client(addr, "alice", json!({"organization": "acme"})).await;
    let (_refused, first) = subscribe_as(addr, &token("nobody"), json!({})).await;
    assert_eq!(first["error"], "authentication_failed");
    assert!(ws_connect(addr, Some("ghp_tooshort")).await.is_err());

    post_webhooks_of_every_outcome(&server).await;
    const BROADCAST_WEBHOOKS: u64 = 5;

    // Everyone reads the 5 broadcast events.
    for ws in readers.iter_mut() {
        for _ in 0..BROADCAST_WEBHOOKS {
            next_event(ws).await;
        }
    }
    // Flood through the hub with large frames until the slow client's
    // queue overflows; then an end marker.
    let flood = flood_until(&server, &mut readers, |s| s.drops > 0).await;
    server.hub().broadcast(hub_event("acme", "end", 0));
    let total_events = BROADCAST_WEBHOOKS + flood + 1;
    for ws in readers.iter_mut() {
        assert_eq!(next_event(ws).await["delivery_id"], "end");
    }
    let slow_received =
        read_what_was_not_dropped(&server, &mut slow, READERS as u64 * total_events).await;
    let dropped = total_events - slow_received;
    assert!(dropped > 0);

    // Every frame read was written, so every one has a latency sample.
    let written = READERS as u64 * total_events + slow_received;
    let (text, m) = metrics_with_latencies(&server, written).await;

    let expect = expected_samples(READERS as f64, total_events, written, dropped);
    if std::env::var("SHOW_METRICS").is_ok() {
        eprintln!("{text}");
    }
    for (key, want) in expect {
        assert_eq!(value(&m, key), want, "{key}\n{text}");
    }
    let per_shard: f64 = (0..2)
        .map(|s| value(&m, &format!("hookfan_shard_connected_clients{{shard={s}}}")))
        .sum();
    assert_eq!(per_shard, (READERS + 1) as f64);
    // At least one task per open WebSocket connection.
    let tasks = value(&m, "hookfan_runtime_alive_tasks{}");
    assert!(tasks >= (READERS + 1) as f64, "{tasks} tasks\n{text}");
    // Label values are bounded: no login, token or delivery id anywhere.
    for secret in [token("bob"), token("nobody"), "bob".into(), "f1-".into()] {
        assert!(!text.contains(&secret), "{secret} in /metrics");
    }
}
