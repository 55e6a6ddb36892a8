//! `POST /webhook` under attack: senders that declare bodies and stall, too
//! many at once, or too many bytes at once. Real servers (in process, or the
//! daemon as a process to measure its memory), raw TCP clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook head declaring `len` bytes of body, with `signature` (none
/// when `None`) and `extra` header lines.
fn head(len: u64, signature: Option<&str>, extra: &str) -> String {
    let sig = signature.map_or(String::new(), |s| format!("X-Hub-Signature-256: {s}\r\n"));
    format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\n\
         X-GitHub-Delivery: stalled\r\n{sig}{extra}Content-Length: {len}\r\n\r\n"
    )
}

/// A well-formed signature (of another body): what a sender that means to
/// stall would send.
fn well_formed(secret: &[u8]) -> String {
    hookfan::sign(secret, b"some other body")
}

/// A complete signed webhook request, as bytes.
fn signed_request(secret: &[u8], body: &[u8], delivery: &str) -> Vec<u8> {
    let mut r = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        hookfan::sign(secret, body),
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A metric's value from `/metrics` (`name` with its labels, as printed).
async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    metric_value(&metrics_text(addr).await, name)
}

/// Waits until `/metrics` shows `name` at `want`.
async fn wait_metric(addr: SocketAddr, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = metric(addr, name).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {got:?}, waited for {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const IN_PROGRESS: &str = "hookfan_webhook_requests_in_progress";
const RESERVED: &str = "hookfan_webhook_reserved_bytes";

fn outcomes(outcome: &str) -> String {
    format!("hookfan_webhook_outcomes_total{{outcome=\"{outcome}\"}}")
}

/// The daemon's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .expect("VmRSS")
}

/// Samples `pid`'s RSS every 20 ms until `stop`; returns the highest.
fn sample_peak_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = rss_kib(pid).max(peak);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss_kib(pid))
    })
}

/// 300 connections declare 1 MiB each and send nothing. The buffers grow
/// with what arrives, so they hold (almost) no memory; each is answered 408
/// and closed at its deadline; meanwhile other webhooks go through.
// One scenario: the memory is measured while all 300 stall, and the other
// webhooks must go through in that same window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_stalled_bodies_hold_no_memory_and_are_cut_off() {
    const STALLED: usize = 300;
    const TIMEOUT: Duration = Duration::from_secs(3);
    let daemon = spawn_daemon(
        "[webhook]\nbody_timeout_s = 3\nmax_concurrent_requests = 400\n\
         max_inflight_bytes = 536870912\n",
    );
    let (addr, pid) = (daemon.addr, daemon.child.id());
    let secret = DAEMON_SECRET.as_bytes();
    let mut ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    // One webhook first, so that the baseline includes serving one.
    let warm = pr_payload("acme", "api", 1, "bob", false);
    assert_eq!(daemon.webhook("pull_request", &warm, "warm").await, 200);
    assert_eq!(next_event(&mut ws).await["delivery_id"], "warm");
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak_rss(pid, stop.clone());

    let stalled_head = head(1 << 20, Some(&well_formed(secret)), "");
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut c = Raw::connect(addr).await;
        // Taken before the head goes out: the daemon's deadline starts when
        // it has the head, never earlier, even if this task is descheduled
        // between the write and reading the clock.
        let sending = Instant::now();
        c.send(stalled_head.as_bytes()).await;
        stalled.push((c, sending));
    }
    wait_metric(addr, IN_PROGRESS, STALLED as f64).await;
    assert_eq!(metric(addr, RESERVED).await, Some(300.0 * 1048576.0));

    // Other senders are served meanwhile, promptly.
    for n in 2..=6u64 {
        let id = format!("during-{n}");
        let started = Instant::now();
        let body = pr_payload("acme", "api", n, "bob", false);
        let status = daemon.webhook("pull_request", &body, &id).await;
        assert_eq!(status, 200, "{id}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{id} took {:?}",
            started.elapsed()
        );
        assert_eq!(next_event(&mut ws).await["delivery_id"], id.as_str());
    }

    // Every stalled request: 408 at its deadline, then the connection closed.
    let answers: Vec<_> = stalled
        .into_iter()
        .map(|(mut c, sent)| {
            tokio::spawn(async move {
                let a = c.answer(TIMEOUT + Duration::from_secs(5)).await;
                let after = sent.elapsed();
                let rest = c.rest_until_closed(Duration::from_secs(5)).await;
                (a, after, rest)
            })
        })
        .collect();
    for t in answers {
        let (a, after, rest) = t.await.unwrap();
        assert_eq!(a.status, 408, "{a:?}");
        assert_eq!(
            a.body,
            "request timeout: the body was not received in time\n"
        );
        assert_eq!(a.header("connection"), Some("close"), "{a:?}");
        assert!(
            after >= TIMEOUT,
            "answered after {after:?}, before the deadline"
        );
        assert!(
            after < TIMEOUT + Duration::from_secs(3),
            "answered after {after:?}"
        );
        assert_eq!(rest.as_deref(), Some(""), "the connection must be closed");
    }
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let growth = peak.saturating_sub(before);
    eprintln!(
        "RSS before {before} KiB, peak during {STALLED} stalled 1 MiB bodies {peak} KiB: +{growth} KiB"
    );
    assert!(growth <= 32 * 1024, "RSS grew by {growth} KiB");
    wait_metric(addr, IN_PROGRESS, 0.0).await;
    assert_eq!(metric(addr, RESERVED).await, Some(0.0));
    assert_eq!(metric(addr, &outcomes("timeout")).await, Some(300.0));
}

/// The request cap: with its slots held by stalled senders, the next
/// webhook gets 503 with Retry-After (and other endpoints are unaffected);
/// once those senders are gone, webhooks go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_cap_refuses_with_retry_after_until_slots_are_free() {
    let server =
        TestServer::start("[webhook]\nmax_concurrent_requests = 4\nbody_timeout_s = 60\n").await;
    let addr = server.addr;
    let mut ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut c = Raw::connect(addr).await;
        c.send(head(500, Some(&well_formed(SECRET)), "").as_bytes())
            .await;
        stalled.push(c);
    }
    wait_metric(addr, IN_PROGRESS, 4.0).await;

    let body = pr_payload("acme", "api", 1, "bob", false);
    let mut c = Raw::connect(addr).await;
    c.send(&signed_request(SECRET, &body, "refused")).await;
    let a = c.answer(Duration::from_secs(10)).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("60"), "body_timeout_s");
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(
        a.body,
        "service unavailable: too many webhooks in progress, retry later\n"
    );
    assert_eq!(
        c.rest_until_closed(Duration::from_secs(5)).await.as_deref(),
        Some("")
    );
    // Nothing else is affected.
    assert_eq!(request(addr, "GET", "/healthz", &[], vec![]).await.0, 200);
    subscribe(addr, "bob", json!({"organization": "acme"})).await;

    // The senders go away: their slots come back.
    drop(stalled);
    wait_metric(addr, IN_PROGRESS, 0.0).await;
    let (s, b) = server
        .webhook_with_id("pull_request", &body, "accepted")
        .await;
    assert_eq!((s, b.as_str()), (200, "OK"));
    assert_eq!(next_event(&mut ws).await["delivery_id"], "accepted");
    assert_eq!(metric(addr, &outcomes("busy_requests")).await, Some(1.0));
    assert_eq!(metric(addr, &outcomes("read_failed")).await, Some(4.0));
}

/// The byte cap: declared lengths reserve it up front; with it held by
/// stalled senders the next webhook gets 503; once their deadline has cut
/// them off (408, connection closed), webhooks go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_cap_refuses_until_the_deadline_frees_it() {
    let server = TestServer::start(
        "[webhook]\nmax_payload_bytes = 65536\nmax_inflight_bytes = 100000\nbody_timeout_s = 2\n",
    )
    .await;
    let addr = server.addr;
    let mut ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let mut stalled = Vec::new();
    for len in [60_000, 39_900] {
        let mut c = Raw::connect(addr).await;
        c.send(head(len, Some(&well_formed(SECRET)), "").as_bytes())
            .await;
        stalled.push(c);
    }
    wait_metric(addr, RESERVED, 99_900.0).await;

    let body = pr_payload("acme", "api", 1, "bob", false);
    assert!(body.len() > 100, "more than the 100 bytes left");
    let mut c = Raw::connect(addr).await;
    c.send(&signed_request(SECRET, &body, "refused")).await;
    let a = c.answer(Duration::from_secs(10)).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.header("retry-after"), Some("2"));
    assert_eq!(a.header("connection"), Some("close"));
    assert_eq!(request(addr, "GET", "/healthz", &[], vec![]).await.0, 200);

    for mut c in stalled {
        let a = c.answer(Duration::from_secs(10)).await;
        assert_eq!(a.status, 408, "{a:?}");
        assert_eq!(a.header("connection"), Some("close"));
        assert_eq!(
            c.rest_until_closed(Duration::from_secs(5)).await.as_deref(),
            Some("")
        );
    }
    wait_metric(addr, RESERVED, 0.0).await;
    let (s, b) = server
        .webhook_with_id("pull_request", &body, "accepted")
        .await;
    assert_eq!((s, b.as_str()), (200, "OK"));
    assert_eq!(next_event(&mut ws).await["delivery_id"], "accepted");
    assert_eq!(metric(addr, &outcomes("busy_bytes")).await, Some(1.0));
    assert_eq!(metric(addr, &outcomes("timeout")).await, Some(2.0));
}

/// A body without a Content-Length reserves as its buffer grows: crossing
/// the byte budget midway is answered 503 without waiting for its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_crossing_the_byte_budget_is_refused_midway() {
    let server = TestServer::start(
        "[webhook]\nmax_payload_bytes = 65536\nmax_inflight_bytes = 100000\nbody_timeout_s = 60\n",
    )
    .await;
    let addr = server.addr;
    let mut ws = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let mut holder = Raw::connect(addr).await;
    holder
        .send(head(60_000, Some(&well_formed(SECRET)), "").as_bytes())
        .await;
    wait_metric(addr, RESERVED, 60_000.0).await;

    // 40,000 bytes are left: the chunked body's buffer cannot grow to
    // 64 KiB. Sent without its last chunk: the answer cannot wait for it.
    let mut c = Raw::connect(addr).await;
    let mut req = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\n\
         X-Hub-Signature-256: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        well_formed(SECRET)
    )
    .into_bytes();
    for _ in 0..9 {
        req.extend_from_slice(b"1000\r\n");
        req.extend_from_slice(&[b' '; 4096]);
        req.extend_from_slice(b"\r\n");
    }
    let (mut read, mut write) = c.into_stream().into_split();
    // The server stops reading midway: the rest may not all be taken.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&req).await;
        write
    });
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let text = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut chunk))
            .await
            .expect("no answer")
            .unwrap_or(0);
        raw.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if n == 0 || text.contains("retry later\n") {
            break text;
        }
    };
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 60"),
        "{text}"
    );
    let _ = writer.await;
    assert_eq!(metric(addr, &outcomes("busy_bytes")).await, Some(1.0));
    wait_metric(addr, RESERVED, 60_000.0).await;

    // The holder gone, a chunked body within the budget goes through.
    drop(holder);
    wait_metric(addr, IN_PROGRESS, 0.0).await;
    let body = pr_payload("acme", "api", 1, "bob", false);
    let mut req = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\n\
         X-GitHub-Delivery: chunked\r\nX-Hub-Signature-256: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        hookfan::sign(SECRET, &body)
    )
    .into_bytes();
    for part in body.chunks(100) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c = Raw::connect(addr).await;
    c.send(&req).await;
    let a = c.answer(Duration::from_secs(10)).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK"));
    assert_eq!(next_event(&mut ws).await["delivery_id"], "chunked");
}

/// A missing or malformed signature header is refused from the head alone:
/// 401 at once, without the body being sent, and the connection closed so
/// that the unread body is never taken for a request.
// One server for every case: each must leave it serving the next (the
// last case counts the refusals of all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_header_is_refused_before_the_body() {
    // A long deadline: an answer within seconds is not a timeout.
    let server = TestServer::start("[webhook]\nbody_timeout_s = 60\n").await;
    let addr = server.addr;
    let tap = server.hub().tap();
    let good = well_formed(SECRET);
    let not_hex = format!("sha256={}", "z".repeat(64));
    let short = &good[..good.len() - 1];
    let long = format!("{good}0");
    let sha1 = good.replace("sha256=", "sha1=");
    let upper = good.replace("sha256=", "SHA256=");
    let headers: [(&str, Option<&str>); 7] = [
        ("missing", None),
        ("empty digest", Some("sha256=")),
        ("not hex", Some(&not_hex)),
        ("63 digits", Some(short)),
        ("65 digits", Some(&long)),
        ("other algorithm", Some(&sha1)),
        ("uppercase prefix", Some(&upper)),
    ];
    for (what, sig) in headers {
        let mut c = Raw::connect(addr).await;
        c.send(head(1_000_000, sig, "").as_bytes()).await;
        let a = c.answer(Duration::from_secs(5)).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (401, "unauthorized\n"),
            "{what}"
        );
        assert_eq!(a.header("connection"), Some("close"), "{what}");
        assert_eq!(
            c.rest_until_closed(Duration::from_secs(5)).await.as_deref(),
            Some(""),
            "{what}: closed"
        );
    }

    // Expect: 100-continue is not answered 100: the body is never asked for.
    let mut c = Raw::connect(addr).await;
    c.send(head(1_000_000, None, "Expect: 100-continue\r\n").as_bytes())
        .await;
    let a = c.answer(Duration::from_secs(5)).await;
    assert_eq!(a.status, 401, "{a:?}");

    // A body that is a whole signed request: answered once, never read as
    // a second request on the same connection.
    let inner = signed_request(SECRET, &pr_payload("acme", "api", 1, "bob", false), "inner");
    let mut c = Raw::connect(addr).await;
    let mut req = head(inner.len() as u64, None, "").into_bytes();
    req.extend_from_slice(&inner);
    c.send(&req).await;
    assert_eq!(c.answer(Duration::from_secs(5)).await.status, 401);
    assert_eq!(
        c.rest_until_closed(Duration::from_secs(5)).await.as_deref(),
        Some(""),
        "one answer, then closed"
    );
    server.hub().sync().await;
    assert!(
        tap.try_recv().is_err(),
        "the smuggled request was not served"
    );

    // The declared-size check still comes first (past the default
    // webhook.max_payload_bytes, 25 MiB).
    let mut c = Raw::connect(addr).await;
    c.send(head((25 << 20) + 1, None, "").as_bytes()).await;
    assert_eq!(c.answer(Duration::from_secs(5)).await.status, 413);

    // A well-formed but wrong signature needs the body: 401 once it is
    // read, and the connection (read to its end) stays usable.
    let body = pr_payload("acme", "api", 2, "bob", false);
    let mut wrong = signed_request(SECRET, &body, "wrong");
    let at = wrong.windows(7).position(|w| w == b"sha256=").unwrap() + 7;
    wrong[at] = if wrong[at] == b'0' { b'1' } else { b'0' };
    let mut c = Raw::connect(addr).await;
    c.send(&wrong).await;
    let a = c.answer(Duration::from_secs(5)).await;
    assert_eq!((a.status, a.header("connection")), (401, None), "{a:?}");
    c.send(&signed_request(SECRET, &body, "right")).await;
    let a = c.answer(Duration::from_secs(5)).await;
    assert_eq!((a.status, a.body.as_str()), (200, "OK"));
    assert_eq!(tap.try_recv().unwrap().delivery_id(), "right");
    assert_eq!(
        metric(addr, &outcomes("bad_signature_header")).await,
        Some(9.0)
    );
    assert_eq!(metric(addr, &outcomes("bad_signature")).await, Some(1.0));
}
