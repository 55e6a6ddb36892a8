//! `hookfan wait` (the real binary, a child process) against the real
//! daemon: the first matching event printed exactly as sent, `--commit`,
//! the timeout, refusals, and a daemon restart while waiting.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Sub, ws_url};
use crate::common::*;
use crate::filters::{check_suite, pr};

const SHA: &str = "5f3c8e1a9b0c1d2e3f405162738495a6b7c8d9e0";
const OTHER_SHA: &str = "5f3c8e2a9b0c1d2e3f405162738495a6b7c8d9e0";

/// The next text message, as sent.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m {
            return t.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_the_first_matching_event_as_sent_and_exits_0() {
    let d = spawn_daemon("");
    let url = ws_url(d.addr);
    let mut wait = Sub::wait(
        &token("alice"),
        &[
            "--server",
            &url,
            "--repository",
            "acme/api",
            "--event-types",
            "check_suite.completed,pull_request.closed",
            "-v",
        ],
    );
    // A WebSocket client of the same subscription sees the same frames.
    let mut ws = subscribe(
        d.addr,
        "alice",
        json!({"repositories": ["acme/api"], "event_types": ["check_suite.completed", "pull_request.closed"]}),
    )
    .await;
    wait.wait_stderr("subscribed on").await;
    let post = |kind: &'static str, body: Vec<u8>, id: &'static str| {
        let d = &d;
        async move { assert_eq!(d.webhook(kind, &body, id).await, 200) }
    };
    post("pull_request", pr("acme", "api", 3, "opened"), "opened").await;
    post(
        "check_suite",
        check_suite("acme", "web", SHA, "completed"),
        "other-repo",
    )
    .await;
    post(
        "check_suite",
        check_suite("acme", "api", SHA, "requested"),
        "requested",
    )
    .await;
    post(
        "check_suite",
        check_suite("acme", "api", SHA, "completed"),
        "completed",
    )
    .await;
    assert_eq!(wait.exit_code().await, 0, "{}", wait.stderr());
    let sent = next_text(&mut ws).await;
    assert_eq!(
        wait.lines(),
        std::slice::from_ref(&sent),
        "exactly the JSON the server sent"
    );
    let e: serde_json::Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(
        (&e["delivery_id"], &e["action"], &e["commit_sha"]),
        (&json!("completed"), &json!("completed"), &json!(SHA))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_picks_the_event_of_that_commit() {
    let d = spawn_daemon("");
    let url = ws_url(d.addr);
    // A prefix, in capitals: compared case-insensitively.
    let prefix = SHA[..7].to_ascii_uppercase();
    let mut wait = Sub::wait(
        &token("alice"),
        &[
            "--server",
            &url,
            "--org",
            "acme",
            "--event-types",
            "check_suite.completed",
            "--commit",
            &prefix,
            "-v",
        ],
    );
    wait.wait_stderr("subscribed on").await;
    for (sha, id) in [(OTHER_SHA, "other"), (SHA, "this")] {
        let body = check_suite("acme", "api", sha, "completed");
        assert_eq!(d.webhook("check_suite", &body, id).await, 200);
    }
    assert_eq!(wait.exit_code().await, 0, "{}", wait.stderr());
    let lines = wait.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let e: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(e["delivery_id"], "this");
    // The full SHA too; a non-hex one is a usage error.
    let mut bad = Sub::wait(
        &token("alice"),
        &["--server", &url, "--org", "acme", "--commit", "xyz1234"],
    );
    assert_eq!(bad.exit_code().await, 2);
    assert!(
        bad.stderr()
            .contains("expected a commit SHA or a prefix of it: 7 to 64 hex digits"),
        "{}",
        bad.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_within_the_timeout_exits_1() {
    let d = spawn_daemon("");
    let url = ws_url(d.addr);
    let started = std::time::Instant::now();
    let mut wait = Sub::wait(
        &token("alice"),
        &["--server", &url, "--org", "acme", "--timeout", "1"],
    );
    assert_eq!(wait.exit_code().await, 1, "{}", wait.stderr());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        wait.stderr()
            .contains("hookfan: no matching event within 1 s (--timeout)"),
        "{}",
        wait.stderr()
    );
    assert!(wait.lines().is_empty());
    let mut zero = Sub::wait(&token("alice"), &["--server", &url, "--timeout", "0"]);
    assert_eq!(
        zero.exit_code().await,
        2,
        "a usage error: {}",
        zero.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_exit_2_with_the_message() {
    let d = spawn_daemon("");
    let url = ws_url(d.addr);
    for (who, extra, code, message) in [
        ("nobody", vec!["--org", "acme"], "authentication_failed", ""),
        (
            "alice",
            vec!["--repository", "acme"],
            "invalid_subscription",
            "invalid repository \"acme\"",
        ),
        (
            "alice",
            vec!["--org", "acme", "--event-types", "pull_request.Closed"],
            "invalid_subscription",
            "invalid action in event type \"pull_request.Closed\"",
        ),
    ] {
        let mut args = vec!["--server", url.as_str()];
        args.extend(extra);
        let mut wait = Sub::wait(&token(who), &args);
        assert_eq!(wait.exit_code().await, 2, "{code}: {}", wait.stderr());
        let err = wait.stderr();
        assert!(err.contains("the server refused the subscription"), "{err}");
        assert!(err.contains(&format!("({code})")), "{err}");
        assert!(err.contains(message), "{err}");
        assert!(wait.lines().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restart_while_waiting_is_a_warning_and_the_wait_goes_on() {
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens.toml"), tokens_toml()).unwrap();
    let config = dir.path().join("hookfan.toml");
    std::fs::write(
        &config,
        "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n",
    )
    .unwrap();
    let mut first = spawn_daemon_listening(&config, &listen);
    let url = format!("ws://{listen}");
    let mut wait = Sub::wait(
        &token("alice"),
        &[
            "--server",
            &url,
            "--org",
            "acme",
            "--event-types",
            "pull_request.closed",
            "--timeout",
            "60",
            "-v",
        ],
    );
    wait.wait_stderr("subscribed on").await;
    let opened = pr("acme", "api", 1, "opened");
    assert_eq!(first.webhook("pull_request", &opened, "before").await, 200);
    first.sigterm();
    first.wait(Duration::from_secs(15));
    let second = spawn_daemon_listening(&config, &listen);
    // A new stream: what happened meanwhile cannot be replayed.
    wait.wait_stderr("may have been missed").await;
    wait.wait_stderr("still waiting").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while wait.stderr().matches("subscribed on").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", wait.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = pr("acme", "api", 1, "closed");
    assert_eq!(second.webhook("pull_request", &closed, "after").await, 200);
    assert_eq!(wait.exit_code().await, 0, "{}", wait.stderr());
    let lines = wait.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let e: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (&e["delivery_id"], &e["action"]),
        (&json!("after"), &json!("closed"))
    );
    assert!(
        wait.stderr().contains("hookfan: warning: events after"),
        "{}",
        wait.stderr()
    );
}
