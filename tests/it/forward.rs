//! `hookfan subscribe --forward URL`: webhooks relayed to a local HTTP
//! server (a real one, [`Receiver`]) byte for byte, with GitHub's headers
//! and a signature made with the local secret; in order, once, across a
//! receiver that is down and a `hookfan subscribe` that is restarted.
//! First against a scripted server sending payload frames, then against
//! the real daemon with `[payloads] enabled = true`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Sub, ws_url};
use crate::common::*;

/// The local secret the forwarded webhooks are signed with.
const FORWARD_SECRET: &str = "local dev secret, not the server's";

/// A secret file holding [`FORWARD_SECRET`] (and a second line, unused).
fn secret_file(dir: &tempfile::TempDir) -> String {
    let p = dir.path().join("forward-secret");
    std::fs::write(&p, format!("{FORWARD_SECRET}\nolder-secret\n")).unwrap();
    p.to_str().unwrap().to_owned()
}

/// Whether `sig` is `sha256=` and the HMAC-SHA256 of `body` under
/// [`FORWARD_SECRET`], checked here with ring, not with hookfan's code.
fn verifies(sig: &str, body: &[u8]) -> bool {
    let Some(tag) = sig
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, FORWARD_SECRET.as_bytes());
    ring::hmac::verify(&key, body, &tag).is_ok()
}

/// The delivery ids of `got`, in the order received.
fn deliveries(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.header("x-github-delivery").to_owned())
        .collect()
}

/// Waits until `sub` has printed `n` lines on stdout; returns them.
async fn wait_lines(sub: &Sub, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = sub.out.lock().unwrap().clone();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{lines:?}; stderr: {}",
            sub.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hookfan-like server that confirms, then sends `frames` and keeps the
/// connection open; the subscriptions it got go into `seen`. A
/// subscription for the organization `refused` gets `payload_not_allowed`.
async fn scripted_server(frames: Vec<String>, seen: Arc<Mutex<Vec<Value>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            let mut ws = tokio_tungstenite::accept_async_with_config(s, Some(config))
                .await
                .unwrap();
            let Some(Ok(Message::Text(sub))) = ws.next().await else {
                continue;
            };
            let sub: Value = serde_json::from_str(&sub).unwrap();
            seen.lock().unwrap().push(sub.clone());
            if sub["organization"] == "refused" {
                let error = json!({"type": "error", "error": "payload_not_allowed",
                    "message": "webhook payloads are not available to the free tier"});
                ws.send(Message::text(error.to_string())).await.unwrap();
                continue;
            }
            let confirm = r#"{"type":"subscription_confirmed","organization":"acme","stream":{"epoch":"e1","seq":0,"oldest":1}}"#;
            ws.send(Message::text(confirm)).await.unwrap();
            for f in &frames {
                ws.send(Message::text(f.clone())).await.unwrap();
            }
            // Open until the client goes.
            while let Some(Ok(_)) = ws.next().await {}
        }
    });
    addr
}

/// An event frame as the server writes it: `headers` and `payload` (raw
/// JSON) between the small event's fields and `seq`.
fn frame(seq: u64, delivery: &str, payload: Option<&str>) -> String {
    let headers = json!({
        "X-GitHub-Event": "pull_request",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "4711",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": "application/json",
    });
    let payload = payload
        .map(|p| format!(r#","payload":{p}"#))
        .unwrap_or_default();
    format!(
        r#"{{"url":"https://github.com/acme/api/pull/{seq}","timestamp":"2026-12-05T00:00:00Z","type":"pull_request","delivery_id":"{delivery}","action":"opened","headers":{headers}{payload},"seq":{seq}}}"#
    )
}

/// Against frames written by hand: the payload's bytes come out exactly
/// (spacing around and inside, escapes, key order, a 25 MiB one too), with the headers and a
/// signature that verifies; an event without payload is skipped with a
/// line, a 4xx answer is skipped and the next event forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_frames_are_forwarded_byte_for_byte_and_signed() {
    let odd = "\n{ \"zeta\" : 1,\n  \"a\":\"caf\\u00e9 \u{e9} \\\"q\\\"\", \"n\":1.50e3 ,\"payload\":{\"x\":[]}}\n";
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(25 << 20));
    let frames = vec![
        frame(1, "d-1", Some(odd)),
        frame(2, "d-2", None),
        frame(3, "d-3", Some("{\"refused\":true}")),
        frame(4, "d-4", Some(&big)),
        frame(5, "d-5", Some("{}")),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = scripted_server(frames, seen.clone()).await;
    let receiver = Receiver::answering(|h| {
        if h.get("x-github-delivery").is_some_and(|d| d == "d-3") {
            404
        } else {
            200
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir);
    let sub = Sub::start(
        &token("bob"),
        &[
            "--server",
            &ws_url(server),
            "--org",
            "acme",
            "--forward",
            &receiver.url(),
            "--forward-secret-file",
            &secret,
        ],
    );
    let got = receiver.wait_for(4).await;
    assert_eq!(deliveries(&got), ["d-1", "d-3", "d-4", "d-5"]);
    assert_eq!(got[0].body.as_ref(), odd.as_bytes(), "byte for byte");
    assert_eq!(got[2].body.len(), big.len());
    assert!(got[2].body.as_ref() == big.as_bytes(), "the 25 MiB payload");
    for r in &got {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/webhook"));
        assert!(verifies(r.header("x-hub-signature-256"), &r.body), "{r:?}");
        assert_eq!(r.header("x-github-event"), "pull_request");
        assert_eq!(r.header("x-github-hook-id"), "4711");
        assert_eq!(r.header("user-agent"), "GitHub-Hookshot/044aadd");
        assert_eq!(r.header("content-type"), "application/json");
    }
    let lines = wait_lines(&sub, 5).await;
    let starts: Vec<&str> = lines
        .iter()
        .map(|l| l.split(" ms=").next().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "forwarded delivery=d-1 type=pull_request seq=1 status=200",
            "skipped delivery=d-2 type=pull_request seq=2: no payload (accepted while the server kept none)",
            "skipped delivery=d-3 type=pull_request seq=3 status=404",
            "forwarded delivery=d-4 type=pull_request seq=4 status=200",
            "forwarded delivery=d-5 type=pull_request seq=5 status=200",
        ]
    );
    assert!(lines[2].ends_with("(refused; not retried)"), "{lines:?}");
    assert_eq!(seen.lock().unwrap()[0]["include_payload"], true);
    let err = sub.stderr();
    assert!(
        !err.contains(FORWARD_SECRET) && !err.contains("warning"),
        "{err}"
    );
}

/// `--forward` refuses what cannot work before connecting, with status 2;
/// `payload_not_allowed` is a refusal too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_secret_files_and_refused_payloads_exit_2() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = scripted_server(Vec::new(), seen.clone()).await;
    let url = ws_url(server);
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank");
    std::fs::write(&blank, "\n \n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--forward", "ftp://localhost/x"],
            r#"hookfan: --forward "ftp://localhost/x": only http:// and https:// URLs can be forwarded to"#,
        ),
        (
            &["--forward", "localhost:3000"],
            "only http:// and https:// URLs can be forwarded to",
        ),
        (
            &[
                "--forward",
                "http://127.0.0.1:1/",
                "--forward-secret-file",
                "/nonexistent/s",
            ],
            "hookfan: cannot read the forward secret file /nonexistent/s: ",
        ),
        (
            &[
                "--forward",
                "http://127.0.0.1:1/",
                "--forward-secret-file",
                blank.to_str().unwrap(),
            ],
            "holds no secret (it is empty or every line is blank)",
        ),
        (
            &["--forward", "http://127.0.0.1:1/", "--exec", "true"],
            "cannot be used with",
        ),
    ];
    for (extra, message) in cases {
        let mut args = vec!["--server", &url, "--org", "acme"];
        args.extend_from_slice(extra);
        let mut sub = Sub::start(&token("bob"), &args);
        assert_eq!(sub.exit_code().await, 2, "{extra:?}: {}", sub.stderr());
        assert!(
            sub.stderr().contains(message),
            "{extra:?}: {}",
            sub.stderr()
        );
    }
    assert!(seen.lock().unwrap().is_empty(), "refused before connecting");

    let receiver = Receiver::start().await;
    let mut sub = Sub::start(
        &token("alice"),
        &[
            "--server",
            &url,
            "--org",
            "refused",
            "--forward",
            &receiver.url(),
        ],
    );
    assert_eq!(sub.exit_code().await, 2, "{}", sub.stderr());
    assert!(
        sub.stderr().contains(
            "the server refused the subscription: webhook payloads are not available to the free tier (payload_not_allowed)"
        ),
        "{}",
        sub.stderr()
    );
}

// ---- Against the daemon -------------------------------------------------

/// A daemon that gives payloads to the pro and flock tiers (bob is pro,
/// alice free), taking webhooks up to 25 MiB.
fn payload_daemon() -> Daemon {
    spawn_daemon("[payloads]\nenabled = true\n[webhook]\nmax_payload_bytes = 26214400\n")
}

/// Posts `body` as GitHub does, with every header it sends.
async fn post_as_github(daemon: &Daemon, delivery: &str, body: &[u8]) {
    let sig = hookfan::sign(DAEMON_SECRET.as_bytes(), body);
    let headers = [
        ("X-GitHub-Event", "pull_request"),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", sig.as_str()),
        ("X-GitHub-Hook-ID", "292430182"),
        ("X-GitHub-Hook-Installation-Target-ID", "79929171"),
        ("X-GitHub-Hook-Installation-Target-Type", "organization"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
        ("Content-Type", "application/json"),
    ];
    let (status, text) = post(daemon.addr, "/webhook", &headers, body.to_vec()).await;
    assert_eq!(status, 200, "{delivery}: {text}");
}

/// Pull request `n` of acme/api.
fn pr(n: u64) -> Vec<u8> {
    pr_payload("acme", "api", n, "someone", false)
}

/// `hookfan subscribe --org acme --forward URL` as bob, with `extra`.
fn forwarding(daemon: &Daemon, url: &str, extra: &[&str]) -> Sub {
    let server = ws_url(daemon.addr);
    let mut args = vec!["--server", &server, "--org", "acme", "--forward", url, "-v"];
    args.extend_from_slice(extra);
    Sub::start(&token("bob"), &args)
}

/// A fixture as GitHub formats it (pretty-printed), a 5 MB payload
/// (escapes and non-ASCII in it) and a 25 MiB one arrive with the same
/// bytes, GitHub's headers and a signature that verifies with the local
/// secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_gets_githubs_bytes_headers_and_a_signature_that_verifies() {
    let daemon = payload_daemon();
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir);
    let sub = forwarding(
        &daemon,
        &receiver.url(),
        &["--forward-secret-file", &secret],
    );
    sub.wait_stderr("subscribed on").await;
    let fixture = common_fixture();
    let mut big: Value = serde_json::from_slice(&pr(2)).unwrap();
    big["pull_request"]["body"] = json!("l\u{e9}ger \"quoted\"\n\t".repeat(5 << 20 >> 4));
    let big = serde_json::to_vec_pretty(&big).unwrap();
    assert!(big.len() > 5_000_000);
    // And one of GitHub's largest: 25 MiB to the byte (the daemon's
    // default webhook.max_payload_bytes).
    let mut largest: Value = serde_json::from_slice(&pr(3)).unwrap();
    largest["pull_request"]["body"] = json!("");
    let room = (25 << 20) - serde_json::to_vec(&largest).unwrap().len();
    largest["pull_request"]["body"] = json!("x".repeat(room));
    let largest = serde_json::to_vec(&largest).unwrap();
    assert_eq!(largest.len(), 25 << 20);
    post_as_github(&daemon, "fx-1", &fixture).await;
    post_as_github(&daemon, "big-2", &big).await;
    post_as_github(&daemon, "largest-3", &largest).await;
    let got = receiver.wait_for(3).await;
    assert_eq!(deliveries(&got), ["fx-1", "big-2", "largest-3"]);
    assert!(
        got[2].body.as_ref() == largest.as_slice(),
        "the 25 MiB payload's bytes"
    );
    assert!(
        got[0].body.as_ref() == fixture.as_slice(),
        "the fixture's bytes"
    );
    assert!(
        got[1].body.as_ref() == big.as_slice(),
        "the 5 MB payload's bytes"
    );
    for r in &got {
        assert!(verifies(r.header("x-hub-signature-256"), &r.body), "{r:?}");
        assert!(
            !verifies(r.header("x-hub-signature-256"), b"{}"),
            "a signature of this body"
        );
        for (name, value) in [
            ("x-github-event", "pull_request"),
            ("x-github-hook-id", "292430182"),
            ("x-github-hook-installation-target-id", "79929171"),
            ("x-github-hook-installation-target-type", "organization"),
            ("user-agent", "GitHub-Hookshot/044aadd"),
            ("content-type", "application/json"),
        ] {
            assert_eq!(r.header(name), value, "{name}");
        }
    }
    let lines = wait_lines(&sub, 3).await;
    assert!(
        lines[2].starts_with("forwarded delivery=largest-3"),
        "{lines:?}"
    );
    assert!(
        lines[0].starts_with("forwarded delivery=fx-1 type=pull_request seq=1 status=200 ms="),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("forwarded delivery=big-2"),
        "{lines:?}"
    );
    assert!(!sub.stderr().contains(FORWARD_SECRET));
}

/// `pull_request.opened.json`, as stored (pretty-printed, as GitHub
/// sends it).
fn common_fixture() -> Vec<u8> {
    fixture("pull_request.opened.json")
}

/// The receiver is down for 10 s while 4 webhooks arrive: each attempt
/// fails (a line each), and once it is back it gets every one, in order,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_10_s_gets_every_event_once_in_order() {
    let daemon = payload_daemon();
    let mut receiver = Receiver::start().await;
    let sub = forwarding(&daemon, &receiver.url(), &[]);
    sub.wait_stderr("subscribed on").await;
    post_as_github(&daemon, "r-1", &pr(1)).await;
    receiver.wait_for(1).await;
    receiver.stop().await;
    for n in 2..=5 {
        post_as_github(&daemon, &format!("r-{n}"), &pr(n)).await;
    }
    sub.wait_stderr("delivery=r-2 type=pull_request seq=2 attempt 1 failed after")
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(receiver.received().len(), 1);
    receiver.restart().await;
    let got = receiver.wait_for(5).await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_later = receiver.received();
    assert_eq!(got_later.len(), got.len());
    assert_eq!(deliveries(&got_later), ["r-1", "r-2", "r-3", "r-4", "r-5"]);
    let err = sub.stderr();
    assert!(err.contains("attempt 2 failed"), "{err}");
    assert!(err.contains("trying again in 0.5 s"), "{err}");
    let lines = wait_lines(&sub, 5).await;
    assert_eq!(lines.len(), 5, "{lines:?}");
}

/// `hookfan subscribe` is killed while the receiver is down and started
/// again with the same state file: the receiver, back, gets every event
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_subscribe_resumes_from_its_state_file_without_loss_or_repeat() {
    let daemon = payload_daemon();
    let mut receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_arg = ["--state-file", state.to_str().unwrap()];
    let mut first = forwarding(&daemon, &receiver.url(), &state_arg);
    first.wait_stderr("subscribed on").await;
    post_as_github(&daemon, "k-1", &pr(1)).await;
    post_as_github(&daemon, "k-2", &pr(2)).await;
    receiver.wait_for(2).await;
    wait_lines(&first, 2).await;
    receiver.stop().await;
    for n in 3..=5 {
        post_as_github(&daemon, &format!("k-{n}"), &pr(n)).await;
    }
    first
        .wait_stderr("delivery=k-3 type=pull_request seq=3 attempt 2 failed")
        .await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["seq"], 2, "advanced only past what was delivered");
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = forwarding(&daemon, &receiver.url(), &state_arg);
    second.wait_stderr(", resumed").await;
    second
        .wait_stderr("delivery=k-3 type=pull_request seq=3 attempt 1 failed")
        .await;
    receiver.restart().await;
    receiver.wait_for(5).await;
    wait_lines(&second, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deliveries(&receiver.received()),
        ["k-1", "k-2", "k-3", "k-4", "k-5"]
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["seq"], 5);
}

/// Without a secret file: one warning at start, and no signature header.
/// A 4xx is logged and skipped; the next event is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_skipped_and_without_a_secret_nothing_is_signed() {
    let daemon = payload_daemon();
    let receiver = Receiver::answering(|h| {
        if h.get("x-github-delivery").is_some_and(|d| d == "u-1") {
            422
        } else {
            202
        }
    })
    .await;
    let sub = forwarding(&daemon, &receiver.url(), &[]);
    sub.wait_stderr("subscribed on").await;
    for n in 1..=3 {
        post_as_github(&daemon, &format!("u-{n}"), &pr(n)).await;
    }
    let got = receiver.wait_for(3).await;
    assert_eq!(deliveries(&got), ["u-1", "u-2", "u-3"]);
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [422, 202, 202], "each asked once");
    assert!(
        got.iter()
            .all(|r| r.headers.get("x-hub-signature-256").is_none())
    );
    let lines = wait_lines(&sub, 3).await;
    assert!(
        lines[0].starts_with("skipped delivery=u-1 type=pull_request seq=1 status=422 ms=")
            && lines[0].ends_with("(refused; not retried)"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("forwarded delivery=u-2 type=pull_request seq=2 status=202"));
    let err = sub.stderr();
    assert_eq!(
        err.matches("warning: no --forward-secret-file").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("failed"), "no retry for a 4xx: {err}");
}

/// A client whose tier may not have payloads (alice is free) is refused
/// with `payload_not_allowed`: status 2 and the server's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_without_payloads_is_refused_with_status_2() {
    let daemon = payload_daemon();
    let receiver = Receiver::start().await;
    let server = ws_url(daemon.addr);
    let mut sub = Sub::start(
        &token("alice"),
        &[
            "--server",
            &server,
            "--org",
            "acme",
            "--forward",
            &receiver.url(),
        ],
    );
    assert_eq!(sub.exit_code().await, 2, "{}", sub.stderr());
    assert!(
        sub.stderr().contains("(payload_not_allowed)"),
        "{}",
        sub.stderr()
    );
}
