//! GitHub redelivers with the same `X-GitHub-Delivery`: a delivery id
//! already accepted is answered `duplicate` and not broadcast again, on a
//! single node (the cluster's side is in tests/it/cluster.rs).

use std::time::Duration;

use crate::common::*;
use serde_json::json;

const DUPLICATE: &str = "duplicate: delivery already accepted\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_is_answered_duplicate_and_not_broadcast_again() {
    let server = TestServer::start("").await;
    let mut ws = subscribe(server.addr, "alice", json!({"organization": "acme"})).await;
    let body = pr_payload("acme", "api", 7, "bob", false);

    let first = server.webhook_with_id("pull_request", &body, "d-1").await;
    assert_eq!(first, (200, "OK".to_owned()));
    let again = server.webhook_with_id("pull_request", &body, "d-1").await;
    assert_eq!(again, (200, DUPLICATE.to_owned()));
    // Another delivery of the same body is another event.
    let other = server.webhook_with_id("pull_request", &body, "d-2").await;
    assert_eq!(other, (200, "OK".to_owned()));

    let e = next_event(&mut ws).await;
    assert_eq!(
        (e["delivery_id"].as_str(), e["seq"].as_u64()),
        (Some("d-1"), Some(1))
    );
    let e = next_event(&mut ws).await;
    assert_eq!(
        (e["delivery_id"].as_str(), e["seq"].as_u64()),
        (Some("d-2"), Some(2))
    );
    assert_eq!(server.hub().stats().events_accepted, 2);

    // Visible in the metrics, by outcome; the ids themselves never are.
    let (_, text) = request(server.addr, "GET", "/metrics", &[], vec![]).await;
    assert!(
        text.contains("hookfan_webhook_outcomes_total{outcome=\"duplicate\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("hookfan_delivery_ids 2\n"), "{text}");
    assert!(!text.contains("d-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_accepted_deliveries_with_an_id_are_remembered() {
    let server = TestServer::start("").await;
    let tap = server.hub().tap();
    let body = pr_payload("acme", "api", 7, "bob", false);

    // No id: never a duplicate.
    for _ in 0..2 {
        let sig = hookfan::sign(SECRET, &body);
        let headers = [
            ("x-github-event", "pull_request"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        let answer = post(server.addr, "/webhook", &headers, body.clone()).await;
        assert_eq!(answer, (200, "OK".to_owned()));
    }
    // A forged delivery (wrong signature) does not take the id.
    let forged = [
        ("x-github-event", "pull_request"),
        ("x-github-delivery", "d-1"),
        (
            "x-hub-signature-256",
            "sha256=0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ];
    assert_eq!(
        post(server.addr, "/webhook", &forged, body.clone()).await.0,
        401
    );
    // Neither does one that is not broadcast (no URL)...
    let push = fixture("push.json");
    let (s, b) = server.webhook_with_id("push", &push, "d-1").await;
    assert_eq!(
        (s, b.as_str()),
        (200, "ignored: event carries no pull request URL\n")
    );
    // ...so the real one goes through.
    let (s, b) = server.webhook_with_id("pull_request", &body, "d-1").await;
    assert_eq!((s, b.as_str()), (200, "OK"));
    // Once accepted, any later delivery of that id is a duplicate, even one
    // that would not be broadcast.
    let (s, b) = server.webhook_with_id("push", &push, "d-1").await;
    assert_eq!((s, b.as_str()), (200, DUPLICATE));
    server.hub().sync().await;
    let ids: Vec<String> = std::iter::from_fn(|| tap.try_recv().ok())
        .map(|e| e.delivery_id().to_owned())
        .collect();
    assert_eq!(ids, ["", "", "d-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_is_bounded_oldest_first() {
    let server = TestServer::start("[webhook]\ndedup_entries = 2\n").await;
    let body = pr_payload("acme", "api", 7, "bob", false);
    for id in ["a", "b", "c"] {
        assert_eq!(
            server.webhook_with_id("pull_request", &body, id).await.1,
            "OK"
        );
    }
    // "a" was evicted by "c"; "b" and "c" are still known.
    assert_eq!(
        server.webhook_with_id("pull_request", &body, "c").await.1,
        DUPLICATE
    );
    assert_eq!(
        server.webhook_with_id("pull_request", &body, "a").await.1,
        "OK"
    );
    assert_eq!(
        server.webhook_with_id("pull_request", &body, "c").await.1,
        DUPLICATE
    );
    assert_eq!(server.hub().stats().events_accepted, 4);

    // 0 turns it off.
    let off = TestServer::start("[webhook]\ndedup_entries = 0\n").await;
    for _ in 0..2 {
        assert_eq!(
            off.webhook_with_id("pull_request", &body, "a").await.1,
            "OK"
        );
    }
}

/// Two identical deliveries racing on one node: each id is broadcast once,
/// the other answered `duplicate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_identical_deliveries_are_broadcast_once() {
    let server = std::sync::Arc::new(TestServer::start("").await);
    const IDS: usize = 50;
    let body = pr_payload("acme", "api", 7, "bob", false);
    let mut tasks = Vec::new();
    for i in 0..IDS {
        for _ in 0..2 {
            let (server, body) = (server.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let id = format!("race-{i}");
                (i, server.webhook_with_id("pull_request", &body, &id).await)
            }));
        }
    }
    let mut answers = vec![Vec::new(); IDS];
    for t in tasks {
        let (i, (status, body)) = t.await.unwrap();
        assert_eq!(status, 200);
        answers[i].push(body);
    }
    for (i, mut a) in answers.into_iter().enumerate() {
        a.sort();
        assert_eq!(a, ["OK", DUPLICATE], "race-{i}");
    }
    tokio::time::timeout(Duration::from_secs(10), server.hub().sync())
        .await
        .unwrap();
    assert_eq!(server.hub().stats().events_accepted, IDS as u64);
}
