//! `hookfan subscribe` and `hookfan::client` against real daemons on
//! 127.0.0.1: exact accounting across disconnects, restarts and failover;
//! refusals; back-off; `--exec`; the token kept secret.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use hookfan::Token;
use hookfan::client::{Backoff, ClientConfig, Subscriber, SubscriptionRequest, Update};
use serde_json::Value;

/// A running `hookfan subscribe` (or `hookfan wait`), its stdout lines and
/// stderr collected (also used by the `--forward` tests).
pub(crate) struct Sub {
    pub(crate) child: Child,
    pub(crate) out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

fn drain(pipe: impl std::io::Read + Send + 'static, into: impl Fn(String) + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            match line {
                Ok(l) => into(l),
                Err(_) => break,
            }
        }
    });
}

impl Sub {
    /// Runs `hookfan subscribe ARGS` with `GITHUB_TOKEN` = `token`.
    pub(crate) fn start(token: &str, args: &[&str]) -> Sub {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_hookfan")), token, args)
    }

    /// Runs `hookfan wait ARGS` with `GITHUB_TOKEN` = `token`.
    pub(crate) fn wait(token: &str, args: &[&str]) -> Sub {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookfan"));
        command.arg("wait");
        Self::run(command, token, args)
    }

    /// Like `start`, in a new user and network namespace (`unshare -rn`)
    /// that has no network: nothing it sends can leave the machine.
    fn start_offline(token: &str, args: &[&str]) -> Sub {
        let mut unshare = Command::new("unshare");
        unshare.args(["-rn", env!("CARGO_BIN_EXE_hookfan")]);
        Self::spawn(unshare, token, args)
    }

    fn spawn(mut command: Command, token: &str, args: &[&str]) -> Sub {
        command.arg("subscribe");
        Self::run(command, token, args)
    }

    fn run(mut command: Command, token: &str, args: &[&str]) -> Sub {
        let mut child = command
            .args(args)
            .env("GITHUB_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let o = out.clone();
        drain(child.stdout.take().unwrap(), move |l| {
            o.lock().unwrap().push(l)
        });
        let e = err.clone();
        drain(child.stderr.take().unwrap(), move |l| {
            let mut e = e.lock().unwrap();
            e.push_str(&l);
            e.push('\n');
        });
        Sub { child, out, err }
    }

    /// The stdout lines so far, as printed.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until stderr contains `what`.
    pub(crate) async fn wait_stderr(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.stderr().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} on stderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` events were printed; returns them.
    pub(crate) async fn wait_events(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.out.lock().unwrap().clone();
            if lines.len() >= n {
                return lines
                    .iter()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} events; stderr: {}",
                lines.len(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for the exit (10 s at most).
    pub(crate) async fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Let the pipes drain.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return s.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running; stderr: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

/// The delivery ids of `events`, asserting their seqs increase.
fn ids_in_order(events: &[Value]) -> Vec<String> {
    for w in events.windows(2) {
        assert!(
            w[0]["seq"].as_u64() < w[1]["seq"].as_u64(),
            "seqs not increasing: {events:?}"
        );
    }
    events
        .iter()
        .map(|e| e["delivery_id"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(prefix: &str, n: std::ops::RangeInclusive<u64>) -> Vec<String> {
    n.map(|i| format!("{prefix}{i}")).collect()
}

/// Posts pull requests 1.. of acme/api with delivery ids `{prefix}{i}` to
/// the server at `addr` (an in-process [`TestServer`] signs with
/// [`SECRET`], a [`Daemon`] with [`DAEMON_SECRET`]).
async fn post_prs(addr: SocketAddr, secret: &[u8], prefix: &str, n: std::ops::RangeInclusive<u64>) {
    for i in n {
        let body = pr_payload("acme", "api", i, "someone", false);
        let id = format!("{prefix}{i}");
        let (status, _) = post_webhook(addr, secret, "pull_request", &id, &body).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_disconnect_resumes_with_nothing_missed() {
    let server = TestServer::start("").await;
    let sub = Sub::start(
        &token("alice"),
        &["--server", &ws_url(server.addr), "--org", "acme", "-v"],
    );
    sub.wait_stderr("subscribed on").await;
    post_prs(server.addr, SECRET, "a-", 1..=5).await;
    sub.wait_events(5).await;
    for c in server.hub().clients() {
        server.hub().disconnect(c.id());
    }
    // Sent while the client is away (it waits up to 1 s before returning).
    post_prs(server.addr, SECRET, "b-", 1..=5).await;
    let events = sub.wait_events(10).await;
    let mut want = ids("a-", 1..=5);
    want.extend(ids("b-", 1..=5));
    assert_eq!(ids_in_order(&events), want);
    sub.wait_stderr(", resumed").await;
    assert!(!sub.stderr().contains("missed"), "{}", sub.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restart_is_reported_as_a_gap() {
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
    let sub = Sub::start(&token("alice"), &["--server", &url, "--org", "acme", "-v"]);
    let mut strict = Sub::start(
        &token("alice"),
        &["--server", &url, "--org", "acme", "--on-gap", "exit"],
    );
    sub.wait_stderr("subscribed on").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    post_prs(first.addr, DAEMON_SECRET.as_bytes(), "one-", 1..=3).await;
    sub.wait_events(3).await;
    strict.wait_events(3).await;

    first.sigterm();
    first.wait(Duration::from_secs(15));
    let second = spawn_daemon_listening(&config, &listen);
    sub.wait_stderr("may have been missed").await;
    assert!(sub.stderr().contains("after seq 3"), "{}", sub.stderr());
    assert!(sub.stderr().contains("(unknown_epoch)"), "{}", sub.stderr());
    assert_eq!(strict.exit_code().await, 3, "{}", strict.stderr());
    assert!(strict.stderr().contains("may have been missed"));

    sub.wait_stderr("subscribed on ws").await;
    // Subscribed again (the gap line comes just before it).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sub.stderr().matches("subscribed on").count() < 2 {
        assert!(Instant::now() < deadline, "{}", sub.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post_prs(second.addr, DAEMON_SECRET.as_bytes(), "two-", 1..=3).await;
    let events = sub.wait_events(6).await;
    let got: Vec<String> = events
        .iter()
        .map(|e| e["delivery_id"].as_str().unwrap().to_owned())
        .collect();
    let mut want = ids("one-", 1..=3);
    want.extend(ids("two-", 1..=3));
    assert_eq!(
        got, want,
        "every event once; the new epoch starts again at 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_another_cluster_node_misses_nothing() {
    let nats = Nats::start();
    let config = format!(
        "[cluster]\nnats_url = \"{}\"\nstream = \"C1\"\n",
        nats.url()
    );
    let mut a = spawn_daemon(&config);
    let b = spawn_daemon(&config);
    let sub = Sub::start(
        &token("alice"),
        &[
            "--server",
            &ws_url(a.addr),
            "--server",
            &ws_url(b.addr),
            "--org",
            "acme",
            "-v",
        ],
    );
    sub.wait_stderr(&format!("subscribed on ws://{}", a.addr))
        .await;
    post_prs(b.addr, DAEMON_SECRET.as_bytes(), "f-", 1..=5).await;
    sub.wait_events(5).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    post_prs(b.addr, DAEMON_SECRET.as_bytes(), "f-", 6..=10).await;
    let events = sub.wait_events(10).await;
    assert_eq!(ids_in_order(&events), ids("f-", 1..=10));
    sub.wait_stderr(&format!("subscribed on ws://{}/ws, resumed", b.addr))
        .await;
    assert!(!sub.stderr().contains("missed"), "{}", sub.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_client_resumes_from_its_state_file() {
    let server = TestServer::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let args = [
        "--server",
        &ws_url(server.addr),
        "--org",
        "acme",
        "--state-file",
        state.to_str().unwrap(),
        "-v",
    ];
    let mut first = Sub::start(&token("alice"), &args);
    first.wait_stderr("subscribed on").await;
    post_prs(server.addr, SECRET, "s-", 1..=3).await;
    let before = first.wait_events(3).await;
    // The seq is committed after the event is written out (at-least-once),
    // so wait for the commit before killing the client.
    let saved_seq = || -> Option<Value> {
        let saved: Value = serde_json::from_slice(&std::fs::read(&state).ok()?).ok()?;
        Some(saved["seq"].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while saved_seq().as_ref() != Some(&before[2]["seq"]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the state file never reached seq {}: {:?}",
            before[2]["seq"],
            saved_seq()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    post_prs(server.addr, SECRET, "s-", 4..=6).await;
    let second = Sub::start(&token("alice"), &args);
    let after = second.wait_events(3).await;
    let mut all = before;
    all.extend(after);
    assert_eq!(ids_in_order(&all), ids("s-", 1..=6));
    second.wait_stderr(", resumed").await;
    assert!(!second.stderr().contains("missed"), "{}", second.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_retrying_cannot_fix_exit_2_with_the_message() {
    let server = TestServer::start("[webhook]\nallowed_events = [\"pull_request\"]\n").await;
    let url = ws_url(server.addr);
    for (who, extra, code, message) in [
        ("nobody", vec!["--org", "acme"], "authentication_failed", ""),
        (
            "alice",
            vec!["--org", "widgets"],
            "access_denied",
            "widgets",
        ),
        (
            "alice",
            vec!["--pr", "not-a-url"],
            "invalid_subscription",
            "not-a-url",
        ),
        (
            "alice",
            vec!["--org", "acme", "--event-types", "push"],
            "event_type_not_allowed",
            "push",
        ),
    ] {
        let mut args = vec!["--server", url.as_str()];
        args.extend(extra);
        let mut sub = Sub::start(&token(who), &args);
        assert_eq!(sub.exit_code().await, 2, "{code}: {}", sub.stderr());
        let err = sub.stderr();
        assert!(err.contains("the server refused the subscription"), "{err}");
        assert!(err.contains(&format!("({code})")), "{err}");
        assert!(err.contains(message), "{err}");
    }
}

/// Attempts against a server that accepts and hangs up at once: the delays
/// are jittered, under a bound that doubles, and never over the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_back_off_with_full_jitter_under_the_cap() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seen = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            seen.lock().unwrap().push(Instant::now());
            drop(s);
        }
    });
    let base = Duration::from_millis(20);
    let cap = Duration::from_millis(200);
    let mut config = ClientConfig::new(
        vec![ws_url(addr)],
        Token::new(token("alice")),
        SubscriptionRequest::default(),
    );
    config.backoff = Backoff {
        base,
        cap,
        reset_after: Duration::from_secs(60),
    };
    let mut sub = Subscriber::new(config).unwrap();
    let mut delays = Vec::new();
    while delays.len() < 14 {
        match sub.next().await.unwrap() {
            Update::Disconnected { retry_in, .. } => delays.push(retry_in),
            other => panic!("{other:?}"),
        }
    }
    for (i, d) in delays.iter().enumerate() {
        let bound = (base * (1 << i)).min(cap);
        assert!(*d <= bound, "attempt {i}: {d:?} over {bound:?}");
    }
    // Full jitter: not one fixed delay; and the later ones, allowed up to
    // the cap, are on average well above the first bounds.
    let distinct: std::collections::HashSet<_> = delays.iter().collect();
    assert!(distinct.len() > 10, "{delays:?}");
    let late = delays[4..].iter().sum::<Duration>() / 10;
    assert!(late > base * 2, "{delays:?}");
    // The attempts really were that far apart.
    let at = accepted.lock().unwrap().clone();
    assert!(at.len() >= 14, "{} attempts", at.len());
    for (i, w) in at.windows(2).enumerate().take(13) {
        assert!(
            w[1] - w[0] + Duration::from_millis(5) >= delays[i],
            "attempt {} came {:?} after the previous, delay {:?}",
            i + 1,
            w[1] - w[0],
            delays[i]
        );
    }
}

/// The next update that is not an event, within `limit`.
async fn next_status(sub: &mut Subscriber, limit: Duration) -> Option<Update> {
    tokio::time::timeout(limit, async {
        loop {
            match sub.next().await.unwrap() {
                Update::Event(_) => {}
                other => return other,
            }
        }
    })
    .await
    .ok()
}

/// Keepalive both ways. A daemon that pings every second and drops a
/// client silent for 3 s keeps this one for 8 s: the client answers. A
/// daemon that does not ping within the client's idle timeout is taken for
/// dead: the client reconnects and resumes, missing nothing.
// Three timelines that share the client's config: a daemon that pings, a
// silent one, and the command's option against the silent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered_and_silence_means_a_dead_connection() {
    let subscription = SubscriptionRequest {
        organization: "acme".into(),
        ..SubscriptionRequest::default()
    };
    let config = |addr, idle_timeout| {
        let mut c = ClientConfig::new(
            vec![ws_url(addr)],
            Token::new(token("alice")),
            subscription.clone(),
        );
        c.idle_timeout = idle_timeout;
        c
    };

    let pinging = TestServer::start("[server]\nping_interval_s = 1\nread_timeout_s = 3\n").await;
    let mut sub = Subscriber::new(config(pinging.addr, Duration::from_secs(3))).unwrap();
    assert!(matches!(
        sub.next().await.unwrap(),
        Update::Connected { .. }
    ));
    let extra = next_status(&mut sub, Duration::from_secs(8)).await;
    assert_eq!(extra, None, "the connection lived 8 s");
    post_prs(pinging.addr, SECRET, "k-", 1..=1).await;
    match sub.next().await.unwrap() {
        Update::Event(e) => assert_eq!(e.delivery_id, "k-1"),
        other => panic!("{other:?}"),
    }

    let quiet = TestServer::start("[server]\nping_interval_s = 60\nread_timeout_s = 120\n").await;
    let mut sub = Subscriber::new(config(quiet.addr, Duration::from_secs(1))).unwrap();
    assert!(matches!(
        sub.next().await.unwrap(),
        Update::Connected { .. }
    ));
    post_prs(quiet.addr, SECRET, "q-", 1..=1).await;
    let started = Instant::now();
    let mut got = Vec::new();
    let error = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sub.next().await.unwrap() {
                Update::Event(e) => got.push(e.delivery_id),
                Update::Disconnected { error, .. } => break error,
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .expect("the silent connection is given up");
    assert_eq!(error, "no message from the server in 1 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    post_prs(quiet.addr, SECRET, "q-", 2..=2).await;
    match next_status(&mut sub, Duration::from_secs(5)).await {
        Some(Update::Connected { resumed, .. }) => assert_eq!(resumed, Some(true)),
        other => panic!("{other:?}"),
    }
    match sub.next().await.unwrap() {
        Update::Event(e) => got.push(e.delivery_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(got, ["q-1", "q-2"]);

    // The command's option.
    let cli = Sub::start(
        &token("alice"),
        &[
            "--server",
            &ws_url(quiet.addr),
            "--org",
            "acme",
            "--idle-timeout",
            "1",
            "-v",
        ],
    );
    cli.wait_stderr("no message from the server in 1 s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_order_and_commits_the_seq_after_the_command() {
    let server = TestServer::start("").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let log = dir.path().join("log");
    let events = dir.path().join("events");
    // Logs its environment and the state file as it finds it, takes its
    // time, and fails for x-2.
    let script = format!(
        "read -r line; echo \"$line\" >> {events}; \
         printf '%s %s %s %s\\n' \"$HOOKFAN_SEQ\" \"$HOOKFAN_TYPE\" \"$HOOKFAN_DELIVERY_ID\" \"$(cat {state} 2>/dev/null)\" >> {log}; \
         sleep 0.2; [ \"$HOOKFAN_DELIVERY_ID\" != x-2 ] || exit 7",
        events = events.display(),
        state = state.display(),
        log = log.display(),
    );
    let sub = Sub::start(
        &token("alice"),
        &[
            "--server",
            &ws_url(server.addr),
            "--org",
            "acme",
            "--state-file",
            state.to_str().unwrap(),
            "--exec",
            &script,
            "-v",
        ],
    );
    sub.wait_stderr("subscribed on").await;
    post_prs(server.addr, SECRET, "x-", 1..=4).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    while read(&log).lines().count() < 4 || !read(&state).contains("\"seq\":4") {
        assert!(
            Instant::now() < deadline,
            "log: {}\n{}",
            read(&log),
            sub.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<String> = read(&log).lines().map(str::to_owned).collect();
    let epoch = server.hub().epoch().to_owned();
    for (i, line) in lines.iter().enumerate() {
        let seq = i + 1;
        let committed = if seq == 1 {
            String::new()
        } else {
            format!("{{\"epoch\":\"{epoch}\",\"seq\":{}}}", seq - 1)
        };
        // In order, one at a time, and the state file still at the
        // previous event while the command runs.
        assert_eq!(
            line.trim_end(),
            format!("{seq} pull_request x-{seq} {committed}").trim_end()
        );
    }
    let bodies: Vec<Value> = read(&events)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ids_in_order(&bodies), ids("x-", 1..=4));
    assert!(
        sub.stderr()
            .contains("--exec failed (exit status: 7) for seq 2, delivery x-2; going on"),
        "{}",
        sub.stderr()
    );
    assert!(
        sub.out.lock().unwrap().is_empty(),
        "nothing printed with --exec"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_shows_in_output_or_arguments() {
    let server = TestServer::start("").await;
    let secret = token("alice");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let url = ws_url(server.addr);
    let cmd = format!("cat {}", file.display());
    let runs: [&[&str]; 3] = [
        &["--server", &url, "--org", "acme", "-vv"],
        &[
            "--server",
            &url,
            "--org",
            "acme",
            "-vv",
            "--token-file",
            file.to_str().unwrap(),
        ],
        &[
            "--server",
            &url,
            "--org",
            "acme",
            "-vv",
            "--token-cmd",
            &cmd,
        ],
    ];
    for (i, args) in runs.iter().enumerate() {
        // Only the first run has it in its environment.
        let env_token = if i == 0 { secret.as_str() } else { "" };
        let sub = Sub::start(env_token, args);
        sub.wait_stderr("subscribed on").await;
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", sub.child.id())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&secret));
        post_prs(server.addr, SECRET, &format!("t{i}-"), 1..=1).await;
        sub.wait_events(1).await;
        for c in server.hub().clients() {
            server.hub().disconnect(c.id());
        }
        sub.wait_stderr(", resumed").await;
        let out = sub.out.lock().unwrap().join("\n");
        assert!(!out.contains(&secret) && !sub.stderr().contains(&secret));
    }
    // A refused token is not echoed either.
    let bad = token("nobody");
    let mut sub = Sub::start(&bad, &["--server", &url, "--org", "acme", "-vv"]);
    assert_eq!(sub.exit_code().await, 2);
    assert!(!sub.stderr().contains(&bad), "{}", sub.stderr());
}

#[tokio::test]
async fn the_token_goes_over_ws_only_to_this_machine() {
    let secret = token("alice");
    let remote = "ws://example.com/ws";
    // Refused before connecting: status 2, naming both ways out.
    let mut sub = Sub::start_offline(&secret, &["--server", remote, "--org", "acme", "-v"]);
    assert_eq!(sub.exit_code().await, 2, "{}", sub.stderr());
    let err = sub.stderr();
    assert!(
        err.contains(remote) && err.contains("wss://") && err.contains("--allow-insecure"),
        "{err}"
    );
    assert!(!err.contains(&secret[4..]), "{err}");
    assert!(sub.out.lock().unwrap().is_empty());

    // Opted in, or over wss://: past the check, trying to connect (and
    // failing: there is no network in the namespace).
    for args in [
        &["--server", remote, "--allow-insecure", "-v"][..],
        &["--server", "wss://example.com", "-v"][..],
    ] {
        let mut sub = Sub::start_offline(&secret, args);
        sub.wait_stderr("trying again in").await;
        assert!(sub.child.try_wait().unwrap().is_none(), "still retrying");
        let err = sub.stderr();
        assert!(
            !err.contains("refusing") && !err.contains(&secret[4..]),
            "{err}"
        );
    }
}

/// A webhook-sprinkler-like server: it confirms without a stream, sends one
/// event without a seq and hangs up, on every connection; the
/// subscriptions it got go into `seen`.
async fn seqless_server(seen: Arc<Mutex<Vec<Value>>>) -> SocketAddr {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = listener.accept().await {
            n += 1;
            let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
            let Some(Ok(Message::Text(sub))) = ws.next().await else {
                continue;
            };
            seen.lock()
                .unwrap()
                .push(serde_json::from_str(&sub).unwrap());
            let confirm = r#"{"type":"subscription_confirmed","organization":"acme","username":"alice","event_types":null}"#;
            ws.send(Message::text(confirm)).await.unwrap();
            let event = format!(
                r#"{{"url":"https://github.com/acme/api/pull/{n}","timestamp":"2026-11-27T00:00:0{n}Z","type":"pull_request","delivery_id":"old-{n}"}}"#
            );
            ws.send(Message::text(event)).await.unwrap();
            let _ = ws.close(None).await;
        }
    });
    addr
}

/// A webhook-sprinkler-like server: confirmations without a stream, events
/// without seq; it hangs up after each event. The client simply reconnects
/// (nothing to resume) and says that events between may have been missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_server_without_seqs_it_reconnects_and_reports_no_resume() {
    let subscriptions = Arc::new(Mutex::new(Vec::<Value>::new()));
    let addr = seqless_server(subscriptions.clone()).await;
    let mut config = ClientConfig::new(
        vec![ws_url(addr)],
        Token::new(token("alice")),
        SubscriptionRequest {
            organization: "acme".into(),
            ..Default::default()
        },
    );
    config.backoff.base = Duration::from_millis(10);
    let mut sub = Subscriber::new(config).unwrap();
    let mut updates = Vec::new();
    while updates
        .iter()
        .filter(|u| matches!(u, Update::Event(_)))
        .count()
        < 2
    {
        updates.push(sub.next().await.unwrap());
    }
    let kinds: Vec<&str> = updates
        .iter()
        .map(|u| match u {
            Update::Event(_) => "event",
            Update::Connected { .. } => "connected",
            Update::Gap(_) => "gap",
            Update::Disconnected { .. } => "disconnected",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "connected",
            "event",
            "disconnected",
            "gap",
            "connected",
            "event"
        ]
    );
    let Update::Gap(g) = &updates[3] else {
        unreachable!()
    };
    assert_eq!(g.reason, "no_resume");
    assert_eq!(g.after, None);
    assert_eq!(g.last_event_at.as_deref(), Some("2026-11-27T00:00:01Z"));
    let Update::Event(e) = &updates[5] else {
        unreachable!()
    };
    assert_eq!((e.seq, e.delivery_id.as_str()), (None, "old-2"));
    // Never a resume field to a server that has no seqs.
    for s in subscriptions.lock().unwrap().iter() {
        assert_eq!(s, &serde_json::json!({"organization": "acme"}));
    }
}
