//! Fan-out at scale on a real server: exactly-once in-order delivery to
//! 1,000 clients over 1 and 8 shards, a client that never reads, and 5,000
//! connect/disconnect cycles that must leave nothing behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Notify;

const LIMITS: &str = "[limits]\nmax_conns_per_ip = 100000\n";

/// Client `i`'s subscription, and which of the webhooks `0..n` it must
/// receive (worked out here from the rules, not by the server's code).
fn subscription(i: usize) -> (serde_json::Value, Box<dyn Fn(usize) -> bool + Send>) {
    match i % 4 {
        0 => (json!({"organization": "acme"}), Box::new(|j| j % 2 == 0)),
        1 => (json!({"organization": "WIDGETS"}), Box::new(|j| j % 2 == 1)),
        2 => (json!({"organization": "*"}), Box::new(|_| true)),
        _ => {
            let n = i % 10 + 1;
            (
                json!({"pull_requests": [format!("https://github.com/acme/api/pull/{n}")]}),
                Box::new(move |j| j % 2 == 0 && j % 10 + 1 == n),
            )
        }
    }
}

/// Webhook `j`: even ones in acme, odd ones in widgets, PR number j%10+1.
fn webhook(j: usize) -> Vec<u8> {
    let org = if j.is_multiple_of(2) {
        "acme"
    } else {
        "widgets"
    };
    pr_payload(org, "api", (j % 10 + 1) as u64, "someone", false)
}

async fn exactly_once_in_order(shards: usize) {
    const CLIENTS: usize = 1000;
    const WEBHOOKS: usize = 100;
    let server = TestServer::start(&format!("[broker]\nshards = {shards}\n{LIMITS}")).await;
    let addr = server.addr;

    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let (sub, wants) = subscription(i);
        // bob is in acme and widgets.
        let mut ws = subscribe(addr, "bob", sub).await;
        let expected: Vec<String> = (0..WEBHOOKS)
            .filter(|j| wants(*j))
            .map(|j| format!("d{j}"))
            .collect();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(expected.len());
            while got.len() < expected.len() {
                got.push(
                    next_event(&mut ws).await["delivery_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            assert_eq!(
                got, expected,
                "client {i}: every matching event once, in acceptance order"
            );
            (ws, expected.len() as u64)
        }));
    }
    server
        .wait_stats("all registered", |s| s.clients == CLIENTS)
        .await;
    let stats = server.hub().stats();
    assert_eq!(stats.clients_per_shard.len(), shards);
    if shards > 1 {
        assert!(
            stats.clients_per_shard.iter().all(|&c| c > 0),
            "clients spread over shards: {:?}",
            stats.clients_per_shard
        );
    }

    for j in 0..WEBHOOKS {
        let (s, _) = server
            .webhook_with_id("pull_request", &webhook(j), &format!("d{j}"))
            .await;
        assert_eq!(s, 200);
    }
    let mut total = 0;
    let mut sockets = Vec::new();
    for r in readers {
        let (ws, n) = r.await.unwrap();
        total += n;
        sockets.push(ws);
    }
    // Nothing beyond what each client read was delivered: no duplicates.
    server.hub().sync().await;
    let stats = server.hub().stats();
    assert_eq!(stats.deliveries, total);
    assert_eq!(stats.drops, 0);
    drop(sockets);
    server
        .wait_stats("all gone", |s| s.clients == 0 && s.live_sessions == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_order_one_shard() {
    exactly_once_in_order(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_order_eight_shards() {
    exactly_once_in_order(8).await;
}

/// How many events the readers of a test have received, with a wake-up
/// for whoever waits for them.
#[derive(Default)]
struct Progress {
    received: AtomicUsize,
    changed: Notify,
}

/// The number an event's delivery id starts with (six digits); `None` for
/// the end marker.
fn event_number(event: &Value) -> Option<usize> {
    let id = event["delivery_id"].as_str().unwrap();
    (id != "end").then(|| id[..6].parse().unwrap())
}

/// Reads until the "end" event, counting each event in `progress`;
/// returns the numbers received.
async fn read_until_end(mut ws: Ws, progress: Arc<Progress>) -> Vec<usize> {
    let mut numbers = Vec::new();
    while let Some(n) = event_number(&next_event(&mut ws).await) {
        numbers.push(n);
        progress.received.fetch_add(1, Ordering::Relaxed);
        progress.changed.notify_one();
    }
    numbers
}

/// Broadcasts events (1 KB delivery ids, through the hub directly: a
/// stalled socket's buffers take thousands to fill) until the hub has
/// dropped one; returns how many were sent. They go out in bursts smaller
/// than the queue, each once the `readers` have read the previous one: the
/// readers can never overflow, only a client that does not read.
async fn broadcast_until_a_drop(server: &TestServer, progress: &Progress, readers: usize) -> usize {
    const BURST: usize = 16;
    let mut sent = 0;
    while sent < 100_000 {
        for _ in 0..BURST {
            server
                .hub()
                .broadcast(hub_event("acme", &format!("{sent:06}-"), 1000));
            sent += 1;
        }
        while progress.received.load(Ordering::Relaxed) < sent * readers {
            tokio::time::timeout(Duration::from_secs(20), progress.changed.notified())
                .await
                .unwrap_or_else(|_| panic!("the others are stuck at {sent}"));
        }
        server.hub().sync().await;
        if server.hub().stats().drops > 0 {
            break;
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_delays_nobody_and_its_drops_are_counted() {
    const OTHERS: usize = 100;
    let server = TestServer::start(&format!(
        "[broker]\nshards = 2\nclient_queue = 32\n{LIMITS}"
    ))
    .await;
    let addr = server.addr;

    // The slow client: a tiny receive buffer, and it never reads after the
    // confirmation.
    let mut slow = slow_client(addr, "alice", json!({"organization": "acme"})).await;

    // The others read all the time, until the "end" event, counting what
    // they received in `progress`.
    let progress = Arc::new(Progress::default());
    let mut readers = Vec::new();
    for _ in 0..OTHERS {
        let ws = subscribe(addr, "bob", json!({"organization": "acme"})).await;
        readers.push(tokio::spawn(read_until_end(ws, progress.clone())));
    }
    server
        .wait_stats("all registered", |s| s.clients == OTHERS + 1)
        .await;

    let sent = broadcast_until_a_drop(&server, &progress, OTHERS).await;
    // Some more through the HTTP path, then the end marker.
    for k in 0..20 {
        let id = format!("{:06}", sent + k);
        assert_eq!(
            server
                .webhook_with_id(
                    "pull_request",
                    &pr_payload("acme", "api", 1, "z", false),
                    &id
                )
                .await
                .0,
            200
        );
    }
    let sent = sent + 20;
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "api", 1, "z", false),
            "end",
        )
        .await;
    server.hub().sync().await;
    let drops = server.hub().stats().drops;
    assert!(drops > 0, "the slow client overflowed after {sent} events");
    eprintln!("the slow client overflowed after about {sent} events, {drops} dropped");

    // Every other client got every event, in order, while the slow client
    // sat on its full queue.
    for r in readers {
        assert_eq!(r.await.unwrap(), (0..sent).collect::<Vec<_>>());
    }
    // Only the slow client dropped anything (the end marker included).
    let stats = server.hub().stats();
    assert_eq!(
        stats.deliveries + stats.drops,
        ((sent + 1) * (OTHERS + 1)) as u64
    );

    // What the slow client finally reads is in order, without duplicates,
    // and is exactly what was not dropped.
    let mut last = None;
    let mut received = 0u64;
    while received + drops < (sent + 1) as u64 {
        let n = match event_number(&next_event(&mut slow).await) {
            None => sent,
            Some(n) => n,
        };
        assert!(last.is_none_or(|l| n > l), "in order: {n} after {last:?}");
        last = Some(n);
        received += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_subscribe_disconnect_cycles_leave_nothing_behind() {
    const CYCLES: usize = 5000;
    const CONCURRENCY: usize = 50;
    let server = TestServer::start(&format!("[broker]\nshards = 4\n{LIMITS}")).await;
    let addr = server.addr;
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        tasks.push(tokio::spawn(async move {
            for c in 0..CYCLES / CONCURRENCY {
                let i = t * (CYCLES / CONCURRENCY) + c;
                match i % 5 {
                    0 => {
                        let mut ws = subscribe(addr, "bob", json!({"organization": "acme"})).await;
                        ws.close(None).await.unwrap();
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                    1 => drop(subscribe(addr, "bob", json!({"organization": "*"})).await),
                    2 => drop(subscribe(addr, "bob", json!({"pull_requests": [format!("https://github.com/acme/api/pull/{}", i % 7 + 1)]})).await),
                    3 => drop(subscribe(addr, "alice", json!({"user_events_only": true, "event_types": ["pull_request"]})).await),
                    _ => drop(ws_connect(addr, Some(&token("alice"))).await.unwrap()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server
        .wait_stats("every trace of 5,000 clients gone", |s| {
            s.clients == 0
                && s.index_keys == 0
                && s.index_entries == 0
                && s.routes == 0
                && s.live_sessions == 0
        })
        .await;
    // And the server still serves.
    let mut ws = subscribe(addr, "bob", json!({"organization": "acme"})).await;
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "api", 1, "z", false),
            "after",
        )
        .await;
    assert_eq!(next_event(&mut ws).await["delivery_id"], "after");
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}
