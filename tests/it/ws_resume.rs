//! Sequence numbers and resume: every event carries its seq, every
//! confirmation the stream's state, and a client that reconnects with the
//! last (epoch, seq) it saw gets exactly what it missed, then live events.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// Posts a `pull_request` webhook for `org` (PR `n`) with delivery id `id`.
async fn post_pr(server: &TestServer, org: &str, n: u64, id: &str) {
    let (status, body) = server
        .webhook_with_id("pull_request", &pr_payload(org, "api", n, "zed", false), id)
        .await;
    assert_eq!((status, body.as_str()), (200, "OK"), "{id}");
}

/// Subscribes and returns the socket and the confirmation.
async fn confirmed(server: &TestServer, login: &str, sub: Value) -> (Ws, Value) {
    let (ws, c) = subscribe_as(server.addr, &token(login), sub).await;
    assert_eq!(c["type"], "subscription_confirmed", "{c}");
    (ws, c)
}

#[tokio::test]
async fn every_event_carries_its_seq_and_every_confirmation_the_stream() {
    let server = TestServer::start("").await;
    let (mut ws, c) = confirmed(&server, "bob", json!({"organization": "acme"})).await;
    let epoch = c["stream"]["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 16, "{c}");
    assert_eq!(c["stream"], json!({"epoch": epoch, "seq": 0, "oldest": 1}));
    assert!(c.get("resumed").is_none(), "no resume asked: {c}");
    post_pr(&server, "widgets", 1, "w1").await;
    post_pr(&server, "acme", 1, "a1").await;
    let e = next_event(&mut ws).await;
    assert_eq!((e["delivery_id"].as_str(), seq(&e)), (Some("a1"), 2));
    // The fields webhook-sprinkler's clients know are unchanged; `action`
    // is hookfan's addition (ignored by clients that do not know it).
    let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "action",
            "commit_sha",
            "delivery_id",
            "seq",
            "timestamp",
            "type",
            "url"
        ])
    );
    let (_ws2, c2) = confirmed(&server, "alice", json!({"organization": "acme"})).await;
    assert_eq!(c2["stream"], json!({"epoch": epoch, "seq": 2, "oldest": 1}));
    assert_eq!(server.hub().stream_state().seq, 2);
    assert_eq!(server.hub().epoch(), epoch);
    // Another process, another history.
    let other = TestServer::start("").await;
    assert_ne!(other.hub().epoch(), epoch);
}

#[tokio::test]
async fn a_resume_gets_exactly_the_missed_matching_events_then_live_ones() {
    let server = TestServer::start("").await;
    let (mut ws, c) = confirmed(&server, "bob", json!({"organization": "acme"})).await;
    let epoch = c["stream"]["epoch"].clone();
    for i in 0..3 {
        post_pr(&server, "acme", i, &format!("seen{i}")).await;
    }
    let mut last = 0;
    for i in 0..3 {
        let e = next_event(&mut ws).await;
        assert_eq!(e["delivery_id"], format!("seen{i}").as_str());
        last = seq(&e);
    }
    drop(ws);
    server.wait_stats("client gone", |s| s.clients == 0).await;
    // While it is away: three for acme, two for widgets (not its org).
    let mut missed = Vec::new();
    for i in 0..5 {
        let org = if i % 2 == 0 { "acme" } else { "widgets" };
        post_pr(&server, org, 10 + i, &format!("away{i}")).await;
        if org == "acme" {
            missed.push(format!("away{i}"));
        }
    }
    let (mut ws, c) = confirmed(
        &server,
        "bob",
        json!({"organization": "acme", "resume": {"epoch": epoch, "after": last}}),
    )
    .await;
    assert_eq!(c["resumed"], true, "{c}");
    assert!(c.get("resume_error").is_none());
    assert_eq!(c["stream"]["seq"], last + 5);
    let mut prev = last;
    for id in &missed {
        let e = next_event(&mut ws).await;
        assert_eq!(e["delivery_id"], id.as_str());
        assert!(seq(&e) > prev, "in order");
        prev = seq(&e);
    }
    // Then live: the next event is the new one, nothing replayed twice.
    post_pr(&server, "acme", 99, "live").await;
    let e = next_event(&mut ws).await;
    assert_eq!(
        (e["delivery_id"].as_str(), seq(&e)),
        (Some("live"), last + 6)
    );
    server.hub().sync().await;
    let s = server.hub().stats();
    assert_eq!((s.resumes_resumed, s.events_replayed), (1, 3));
}

/// One client of [`resume_race`]: subscribes to `org`, then reads for a
/// random while, drops the connection and resumes, until `stop`; after its
/// last resume it counts itself in `back` and reads up to the "end"
/// marker. Returns its org, the seq it started after, the seqs it got and
/// how many times it resumed.
async fn racing_client(
    server: Arc<TestServer>,
    org: String,
    stop: Arc<AtomicBool>,
    back: Arc<AtomicUsize>,
) -> (String, u64, Vec<u64>, u32) {
    let tok = token("racer");
    let (mut ws, conf) = subscribe_as(server.addr, &tok, json!({"organization": org})).await;
    let epoch = conf["stream"]["epoch"].as_str().unwrap().to_owned();
    let start = conf["stream"]["seq"].as_u64().unwrap();
    let mut got: Vec<u64> = Vec::new();
    let mut resumes = 0u32;
    loop {
        // Read for a while, then drop the connection abruptly.
        let until = Instant::now() + Duration::from_millis(fastrand::u64(20..300));
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout_at(until.into(), futures_util::StreamExt::next(&mut ws)).await
        {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v.get("url").is_some() {
                    got.push(seq(&v));
                }
            }
        }
        drop(ws);
        let last_round = stop.load(Ordering::SeqCst);
        let after = got.last().copied().unwrap_or(start);
        let (w, conf) = subscribe_as(
            server.addr,
            &tok,
            json!({"organization": org, "resume": {"epoch": epoch, "after": after}}),
        )
        .await;
        assert_eq!(conf["resumed"], true, "{conf}");
        ws = w;
        resumes += 1;
        if last_round {
            back.fetch_add(1, Ordering::SeqCst);
            // Everything up to the confirmation's seq is replayed;
            // then the end marker of this org arrives live.
            loop {
                let v = next_event(&mut ws).await;
                if v["delivery_id"] == "end" {
                    return (org, start, got, resumes);
                }
                got.push(seq(&v));
            }
        }
    }
}

/// 200 clients drop and resume in a loop while webhooks arrive at 200/s for
/// 10 s; each must end with every matching seq once, in order.
async fn resume_race(shards: usize) {
    const CLIENTS: usize = 200;
    const ORGS: usize = 4;
    const RATE: u64 = 200;
    const SECONDS: u64 = 10;
    let server = Arc::new(
        TestServer::start(&format!(
            // 200 clients reconnecting in a loop from one address: no rate.
            "[broker]\nshards = {shards}\n[limits]\nmax_conns_per_ip = 1000\nupgrades_per_ip_per_minute = 0\n"
        ))
        .await,
    );
    let tap = server.hub().tap();
    let stop = Arc::new(AtomicBool::new(false));
    let back = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let server = server.clone();
        let stop = stop.clone();
        let back = back.clone();
        let org = format!("org{}", c % ORGS);
        clients.push(tokio::spawn(racing_client(server, org, stop, back)));
    }
    // Webhooks at RATE/s over ORGS orgs, through real HTTP intake.
    let begin = Instant::now();
    for i in 0..RATE * SECONDS {
        let at = begin + Duration::from_micros(i * 1_000_000 / RATE);
        tokio::time::sleep_until(at.into()).await;
        let org = format!("org{}", i as usize % ORGS);
        post_pr(&server, &org, i + 1, &format!("w{i}")).await;
    }
    stop.store(true, Ordering::SeqCst);
    // Once every client has made its last resume, one end marker per org.
    let deadline = Instant::now() + Duration::from_secs(30);
    while back.load(Ordering::SeqCst) < CLIENTS {
        assert!(Instant::now() < deadline, "clients did not come back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_end = server.hub().stats().events_accepted;
    for k in 0..ORGS {
        server
            .hub()
            .broadcast(hub_event(&format!("org{k}"), "end", 0));
    }
    // What the hub accepted: seq -> org.
    let mut org_of: HashMap<u64, String> = HashMap::new();
    let mut total_resumes = 0u32;
    let mut results = Vec::new();
    for c in clients {
        results.push(c.await.unwrap());
    }
    while let Ok(e) = tap.try_recv() {
        org_of.insert(e.seq(), e.org().unwrap().to_owned());
    }
    for (org, start, got, resumes) in results {
        total_resumes += resumes;
        let want: Vec<u64> = (start + 1..=before_end)
            .filter(|s| org_of[s] == org)
            .collect();
        assert_eq!(got, want, "{org} from {start}: gap, duplicate or disorder");
    }
    let s = server.hub().stats();
    assert_eq!(s.drops, 0);
    assert_eq!(s.resumes_too_old + s.resumes_unknown_epoch, 0);
    eprintln!(
        "shards {shards}: {} webhooks, {total_resumes} resumes, {} events replayed",
        RATE * SECONDS,
        s.events_replayed
    );
    assert!(
        total_resumes as usize >= CLIENTS * 10,
        "{total_resumes} resumes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_race_at_the_boundary_one_shard() {
    resume_race(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_race_at_the_boundary_four_shards() {
    resume_race(4).await;
}

#[tokio::test]
async fn unknown_epoch_and_too_old_go_live_and_say_so() {
    let server = TestServer::start("[replay]\nmax_events = 50\n").await;
    let other = TestServer::start("").await;
    for i in 0..100 {
        post_pr(&server, "acme", i, &format!("d{i}")).await;
    }
    let foreign = other.hub().epoch().to_owned();
    let (mut ws, c) = confirmed(
        &server,
        "bob",
        json!({"organization": "acme", "resume": {"epoch": foreign, "after": 10}}),
    )
    .await;
    assert_eq!(
        (c["resumed"].clone(), c["resume_error"].clone()),
        (json!(false), json!("unknown_epoch"))
    );
    assert_eq!(c["stream"]["seq"], 100);
    assert_eq!(c["stream"]["oldest"], 51, "a window of 50");
    let epoch = server.hub().epoch().to_owned();
    let (mut old, c) = confirmed(
        &server,
        "bob",
        json!({"organization": "acme", "resume": {"epoch": epoch, "after": 10}}),
    )
    .await;
    assert_eq!(
        (c["resumed"].clone(), c["resume_error"].clone()),
        (json!(false), json!("too_old"))
    );
    // From the oldest held on, it still works.
    let (mut ok, c) = confirmed(
        &server,
        "bob",
        json!({"organization": "acme", "resume": {"epoch": epoch, "after": 50}}),
    )
    .await;
    assert_eq!(c["resumed"], true, "{c}");
    for s in 51..=100 {
        assert_eq!(seq(&next_event(&mut ok).await), s);
    }
    // The refused ones are live from now: their next event is the new one.
    post_pr(&server, "acme", 1, "new").await;
    for ws in [&mut ws, &mut old, &mut ok] {
        let e = next_event(ws).await;
        assert_eq!((e["delivery_id"].as_str(), seq(&e)), (Some("new"), 101));
    }
    let s = server.hub().stats();
    assert_eq!(
        (
            s.resumes_resumed,
            s.resumes_unknown_epoch,
            s.resumes_too_old,
            s.events_replayed
        ),
        (1, 1, 1, 50)
    );
    assert_eq!((s.window_events, s.window_oldest), (50, 52));
    let (_, body) = request(server.addr, "GET", "/metrics", &[], vec![]).await;
    for line in [
        "hookfan_resumes_total{outcome=\"too_old\"} 1",
        "hookfan_resumes_total{outcome=\"unknown_epoch\"} 1",
        "hookfan_resumes_total{outcome=\"resumed\"} 1",
        "hookfan_events_replayed_total 50",
        "hookfan_replay_window_events 50",
        "hookfan_replay_oldest_seq 52",
    ] {
        assert!(body.contains(line), "{line} not in\n{body}");
    }
}

#[tokio::test]
async fn resume_off_answers_too_old() {
    let server = TestServer::start("[replay]\nmax_events = 0\n").await;
    post_pr(&server, "acme", 1, "d").await;
    let epoch = server.hub().epoch().to_owned();
    for after in [0, 1] {
        let (_ws, c) = confirmed(
            &server,
            "bob",
            json!({"organization": "acme", "resume": {"epoch": epoch, "after": after}}),
        )
        .await;
        assert_eq!(c["resume_error"], "too_old", "after {after}: {c}");
        assert_eq!(c["stream"], json!({"epoch": epoch, "seq": 1, "oldest": 2}));
    }
}

#[tokio::test]
async fn after_beyond_the_stream_is_an_invalid_subscription() {
    let server = TestServer::start("").await;
    post_pr(&server, "acme", 1, "d").await;
    let epoch = server.hub().epoch().to_owned();
    let (mut ws, first) = subscribe_as(
        server.addr,
        &token("bob"),
        json!({"organization": "acme", "resume": {"epoch": epoch, "after": 2}}),
    )
    .await;
    assert_eq!(
        first,
        json!({"type": "error", "error": "invalid_subscription",
               "message": "Invalid subscription: resume.after 2 is beyond the last event of this stream (1)"})
    );
    assert_eq!(expect_close(&mut ws).await.0, 1008);
    // A malformed resume is refused the same way.
    let (_ws, first) = subscribe_as(
        server.addr,
        &token("bob"),
        json!({"organization": "acme", "resume": {"epoch": epoch, "after": -1}}),
    )
    .await;
    assert_eq!(first["error"], "invalid_subscription");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("after is not an integer >= 0")
    );
    server
        .wait_stats("none registered", |s| {
            s.clients == 0 && s.live_sessions == 0
        })
        .await;
}

#[tokio::test]
async fn a_resume_replays_by_the_new_subscription() {
    let server = TestServer::start("").await;
    let (ws, c) = confirmed(&server, "bob", json!({"organization": "acme"})).await;
    let epoch = c["stream"]["epoch"].clone();
    drop(ws);
    post_pr(&server, "acme", 1, "acme1").await;
    post_pr(&server, "widgets", 1, "widgets1").await;
    post_pr(&server, "acme", 2, "acme2").await;
    post_pr(&server, "widgets", 2, "widgets2").await;
    // Back with another subscription: the replay follows it.
    let (mut ws, c) = confirmed(
        &server,
        "bob",
        json!({"pull_requests": ["https://github.com/widgets/api/pull/2"],
               "resume": {"epoch": epoch, "after": 0}}),
    )
    .await;
    assert_eq!(c["resumed"], true);
    let e = next_event(&mut ws).await;
    assert_eq!((e["delivery_id"].as_str(), seq(&e)), (Some("widgets2"), 4));
    post_pr(&server, "widgets", 2, "live").await;
    assert_eq!(next_event(&mut ws).await["delivery_id"], "live");
}

#[tokio::test]
async fn replay_is_gated_by_tier_like_live_delivery() {
    let server = TestServer::start("[tiers]\nenforce = true\n").await;
    let epoch = server.hub().epoch().to_owned();
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "secret", 1, "x", true),
            "private",
        )
        .await;
    post_pr(&server, "acme", 2, "public").await;
    let sub = json!({"organization": "acme", "resume": {"epoch": epoch, "after": 0}});
    let (mut free, _) = confirmed(&server, "alice", sub.clone()).await;
    let (mut pro, _) = confirmed(&server, "bob", sub).await;
    assert_eq!(next_event(&mut pro).await["delivery_id"], "private");
    assert_eq!(next_event(&mut pro).await["delivery_id"], "public");
    let e = next_event(&mut free).await;
    assert_eq!(
        (e["delivery_id"].as_str(), seq(&e)),
        (Some("public"), 2),
        "free tier: no private event in the replay"
    );
}

/// A resuming client that does not read: the replay waits on its socket,
/// live events pile up in its queue, and the slow-client policy applies.
async fn overflow_run(policy: &str) -> (TestServer, Ws) {
    let server = TestServer::start(&format!(
        "[broker]\nclient_queue = 4\nslow_client = \"{policy}\"\n"
    ))
    .await;
    let epoch = server.hub().epoch().to_owned();
    // 100 missed events of 64 KiB: more than the socket buffers hold.
    for i in 0..100 {
        server
            .hub()
            .broadcast(hub_event("acme", &format!("m{i:03}-"), 64 * 1024));
    }
    let ws = slow_client(
        server.addr,
        "bob",
        json!({"organization": "acme", "resume": {"epoch": epoch, "after": 0}}),
    )
    .await;
    for i in 0..20 {
        server
            .hub()
            .broadcast(hub_event("acme", &format!("live{i}"), 0));
    }
    (server, ws)
}

#[tokio::test]
async fn a_replay_that_overflows_the_queue_drops_under_the_drop_policy() {
    let (server, mut ws) = overflow_run("drop").await;
    server.wait_stats("drops counted", |s| s.drops == 16).await;
    // The replay itself is complete, then the 4 live events that fit.
    for i in 0..100 {
        let e = next_event(&mut ws).await;
        assert!(
            e["delivery_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("m{i:03}-"))
        );
    }
    for i in 0..4 {
        assert_eq!(
            next_event(&mut ws).await["delivery_id"],
            format!("live{i}").as_str()
        );
    }
    assert_eq!(server.hub().stats().slow_closes, 0);
}

#[tokio::test]
async fn a_replay_that_overflows_the_queue_disconnects_under_the_disconnect_policy() {
    let (server, mut ws) = overflow_run("disconnect").await;
    server
        .wait_stats("closed as slow", |s| s.slow_closes == 1)
        .await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (1008, "client too slow: outbound queue full")
    );
    server.wait_stats("gone", |s| s.clients == 0).await;
}
