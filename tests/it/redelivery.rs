//! The redelivery sweeper against a GitHub-like App API started here
//! (tests/common/github_app.rs), which checks the App's JWT with the App's
//! public key and, when asked to redeliver, posts the original webhook to
//! hookfan with its delivery id and a valid signature.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const APP_ID: u64 = 4242;

fn key_path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/github-app/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn app_key() -> String {
    std::fs::read_to_string(key_path("app-key.pem")).unwrap()
}

/// `[github_app]` with `key` and `[redelivery]` with `extra` keys.
fn sweeper_config(key: &str, extra: &str) -> String {
    format!(
        "[github_app]\napp_id = {APP_ID}\nprivate_key_file = \"{}\"\n\
         [redelivery]\nenabled = true\n{extra}\n",
        key_path(key)
    )
}

/// A server sweeping `mock` every second.
async fn sweeping_server(mock: &GithubAppMock, key: &str, extra: &str) -> TestServer {
    let url = mock.url();
    let server = TestServer::start_with(&sweeper_config(key, extra), |c| {
        c.auth.github_api_url = url;
    })
    .await;
    mock.deliver_to(server.addr);
    server
}

fn lost(guid: &str, number: u64, age_s: u64) -> MockDelivery {
    MockDelivery {
        guid: guid.to_owned(),
        event: "pull_request".to_owned(),
        body: pr_payload("acme", "api", number, "bob", false),
        status_code: 0,
        age: Duration::from_secs(age_s),
        redelivery: false,
    }
}

/// Waits until `cond` holds of the metric `name` of `server`.
async fn wait_metric(addr: std::net::SocketAddr, name: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric_of(addr, name).await;
        if cond(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The delivery ids of the events `ws` receives until none comes for `quiet`.
async fn ids_until_quiet(ws: &mut Ws, quiet: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    while let Ok(e) = tokio::time::timeout(quiet, next_event(ws)).await {
        ids.push(e["delivery_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_github_failed_to_deliver_arrives_once() {
    let mock = GithubAppMock::start(APP_ID, &app_key(), SECRET).await;
    mock.set_page_size_cap(2);
    // Failed while hookfan was down: three lost, one lost twice (its
    // GitHub-side redelivery failed too); one delivered; one older than
    // GitHub keeps; one GitHub gave up on but hookfan accepted (below).
    for (i, (guid, age)) in [("lost-1", 7200), ("lost-2", 3600), ("lost-3", 600)]
        .into_iter()
        .enumerate()
    {
        mock.add(lost(guid, i as u64 + 1, age));
    }
    mock.add(lost("twice", 4, 900));
    mock.add(MockDelivery {
        redelivery: true,
        status_code: 503,
        ..lost("twice", 4, 800)
    });
    mock.add(MockDelivery {
        status_code: 200,
        ..lost("delivered", 5, 500)
    });
    mock.add(lost("ancient", 6, 4 * 24 * 3600));
    mock.add(lost("accepted", 7, 300));
    // The sweep at start waits on GitHub until the subscriber is there.
    mock.hold_list();
    let server = sweeping_server(&mock, "app-key.pem", "interval_s = 1").await;
    let mut ws = subscribe(server.addr, "bob", json!({"organization": "acme"})).await;
    let body = pr_payload("acme", "api", 7, "bob", false);
    let (status, _) = server
        .webhook_with_id("pull_request", &body, "accepted")
        .await;
    assert_eq!(status, 200);
    mock.release_list();

    let mut ids = ids_until_quiet(&mut ws, Duration::from_secs(4)).await;
    assert_eq!(ids.remove(0), "accepted");
    ids.sort();
    assert_eq!(ids, ["lost-1", "lost-2", "lost-3", "twice"]);
    // Later sweeps (one a second) leave them alone: each was asked once.
    let swept = metric_of(
        server.addr,
        "hookfan_redelivery_sweeps_total{outcome=\"ok\"}",
    )
    .await;
    assert!(swept >= 3.0, "{swept} sweeps");
    mock.settled().await;
    for guid in ["lost-1", "lost-2", "lost-3", "twice"] {
        assert_eq!(mock.attempts(guid), 1, "{guid}");
        assert_eq!(mock.attempt_statuses(guid), [200], "{guid}");
    }
    for guid in ["delivered", "ancient", "accepted"] {
        assert_eq!(mock.attempts(guid), 0, "{guid}");
    }
    assert_eq!(mock.bad_requests(), Vec::<String>::new());
    let text = metrics_text(server.addr).await;
    assert_eq!(
        metric(
            &text,
            "hookfan_redelivery_requests_total{outcome=\"accepted\"}"
        ),
        4.0
    );
    // The first sweep saw five undelivered (the accepted one among them).
    assert!(metric(&text, "hookfan_redelivery_failed_deliveries_seen_total") >= 5.0);
    assert!(metric(&text, "hookfan_redelivery_last_success_timestamp_seconds") > 1.7e9);
    assert_eq!(metric(&text, "hookfan_redelivery_sweeping"), 1.0);
    assert!(!text.contains("eyJ"), "a JWT in /metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_as_github_says() {
    let mock = GithubAppMock::start(APP_ID, &app_key(), SECRET).await;
    mock.add(lost("late", 1, 60));
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    // A secondary limit (Retry-After), then the primary one (reset time).
    mock.answer_next(1, 429, &[("retry-after", "2")]);
    mock.hold_list();
    let server = sweeping_server(&mock, "app-key.pem", "interval_s = 600").await;
    let mut ws = subscribe(server.addr, "bob", json!({"organization": "acme"})).await;
    mock.answer_next(
        1,
        403,
        &[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset.to_string()),
        ],
    );
    mock.release_list();
    let e = next_event(&mut ws).await;
    assert_eq!(e["delivery_id"], "late");
    let at = mock.list_requests();
    assert!(at.len() >= 3, "{} list requests", at.len());
    // The held first request answered 429 (wait 2 s), the second 403 with
    // the reset 3 s after it was set; neither waited the 600 s interval.
    let waited = [at[1] - at[0], at[2] - at[1]];
    assert!(waited[0] >= Duration::from_secs(2), "{waited:?}");
    assert!(waited[1] >= Duration::from_millis(500), "{waited:?}");
    assert!(at[2] - at[0] < Duration::from_secs(15), "{waited:?}");
    assert_eq!(
        metric_of(
            server.addr,
            "hookfan_redelivery_sweeps_total{outcome=\"rate_limited\"}"
        )
        .await,
        2.0
    );
    assert_eq!(mock.attempts("late"), 1);
}

/// `[auth] github_api_url` pointing at `mock` (the daemon's config opens
/// with `[auth]`, so these keys land there), then the sweeper's sections.
fn daemon_extra(mock: &GithubAppMock, key: &str, extra: &str) -> String {
    format!(
        "github_api_url = \"{}\"\n{}",
        mock.url(),
        sweeper_config(key, extra)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_app_stops_the_sweep_with_one_clear_line() {
    let mock = GithubAppMock::start(APP_ID, &app_key(), DAEMON_SECRET.as_bytes()).await;
    mock.add(lost("lost", 1, 60));
    // Signed with a key that is not the App's: GitHub answers 401.
    let daemon = spawn_daemon(&daemon_extra(&mock, "other-key.pem", "interval_s = 600"));
    mock.deliver_to(daemon.addr);
    let refused = "hookfan_redelivery_sweeps_total{outcome=\"refused\"}";
    wait_metric(daemon.addr, refused, |v| v == 1.0).await;
    assert_eq!(mock.attempts("lost"), 0);
    let why = mock.bad_requests();
    assert!(
        !why.is_empty() && why.iter().all(|w| !w.contains("eyJ")),
        "{why:?}"
    );
    let line = "redelivery sweep refused by GitHub";
    let log = daemon.log_with(line).await;
    assert_eq!(log.matches(line).count(), 1, "{log}");
    assert!(log.contains("GitHub answered 401"), "{log}");
    for secret in ["eyJ", "PRIVATE KEY", "Bearer"] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
}

/// Two daemons of one cluster sweeping the same App; returns them and
/// the index of the one that holds the lease.
async fn cluster_of_two(mock: &GithubAppMock, nats: &Nats) -> (Vec<Daemon>, usize) {
    let stream = format!("redeliver{}", fastrand::u32(..));
    let nodes: Vec<Daemon> = ["a", "b"]
        .iter()
        .map(|name| {
            let cluster = format!(
                "[cluster]\nnats_url = \"{}\"\nstream = \"{stream}\"\nnode_name = \"{name}\"\n",
                nats.url()
            );
            let sweeper = daemon_extra(mock, "app-key.pem", "interval_s = 1\nlease_ttl_s = 2");
            spawn_daemon(&format!("{sweeper}{cluster}"))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut held = Vec::new();
        for n in &nodes {
            held.push(metric_of(n.addr, "hookfan_redelivery_sweeping").await);
        }
        match held[..] {
            [1.0, 0.0] => return (nodes, 0),
            [0.0, 1.0] => return (nodes, 1),
            _ => assert!(Instant::now() < deadline, "lease held by {held:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_cluster_one_node_sweeps_and_another_takes_over() {
    let nats = Nats::start();
    let mock = GithubAppMock::start(APP_ID, &app_key(), DAEMON_SECRET.as_bytes()).await;
    mock.add(lost("lost", 1, 600));
    mock.add(lost("accepted-elsewhere", 2, 300));
    mock.hold_list();
    let (mut nodes, holder) = cluster_of_two(&mock, &nats).await;
    let other = 1 - holder;
    mock.deliver_to(nodes[holder].addr);
    let mut ws = subscribe(nodes[other].addr, "bob", json!({"organization": "acme"})).await;
    // Accepted by the other node: the holder knows it from the stream.
    let body = pr_payload("acme", "api", 2, "bob", false);
    assert_eq!(
        nodes[other]
            .webhook("pull_request", &body, "accepted-elsewhere")
            .await,
        200
    );
    wait_metric(nodes[holder].addr, "hookfan_cluster_applied_seq", |v| {
        v >= 1.0
    })
    .await;
    mock.release_list();
    let ids = ids_until_quiet(&mut ws, Duration::from_secs(3)).await;
    assert_eq!(ids, ["accepted-elsewhere", "lost"]);
    assert_eq!(mock.attempts("accepted-elsewhere"), 0);
    let ok = "hookfan_redelivery_sweeps_total{outcome=\"ok\"}";
    assert_eq!(metric_of(nodes[other].addr, ok).await, 0.0);
    assert!(metric_of(nodes[holder].addr, ok).await >= 2.0);

    // The holder dies without a word; the lease ages out, the other node
    // takes it and sweeps, and what GitHub lost meanwhile still arrives.
    nodes[holder].child.kill().unwrap();
    let died = Instant::now();
    mock.add(lost("while-taking-over", 3, 1));
    mock.deliver_to(nodes[other].addr);
    wait_metric(nodes[other].addr, "hookfan_redelivery_sweeping", |v| {
        v == 1.0
    })
    .await;
    let took = died.elapsed();
    assert!(took < Duration::from_secs(8), "taken over after {took:?}");
    let e = next_event(&mut ws).await;
    assert_eq!(e["delivery_id"], "while-taking-over");
    assert_eq!(mock.attempts("while-taking-over"), 1);
    assert_eq!(mock.attempts("lost"), 1);
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_github_fails_is_tried_again_at_the_next() {
    let mock = GithubAppMock::start(APP_ID, &app_key(), SECRET).await;
    mock.add(lost("late", 1, 60));
    mock.answer_next(1, 502, &[]);
    mock.hold_list();
    let server = sweeping_server(&mock, "app-key.pem", "interval_s = 1\nmax_per_sweep = 1").await;
    let mut ws = subscribe(server.addr, "bob", json!({"organization": "acme"})).await;
    mock.add(lost("later", 2, 30));
    mock.release_list();
    // One a sweep (max_per_sweep = 1), the older first.
    let ids = ids_until_quiet(&mut ws, Duration::from_secs(3)).await;
    assert_eq!(ids, ["late", "later"]);
    let text = metrics_text(server.addr).await;
    let sweeps = |outcome: &str| {
        metric(
            &text,
            &format!("hookfan_redelivery_sweeps_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(sweeps("failed"), 1.0);
    assert!(sweeps("ok") >= 3.0, "{text}");
    assert_eq!((mock.attempts("late"), mock.attempts("later")), (1, 1));
}
