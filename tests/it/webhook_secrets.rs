//! Rolling webhook secrets (issue #30, part 3), on the real daemon:
//! `webhook.secret_file` holding several secrets (any verifies), re-read on
//! SIGHUP so that a rotation refuses nothing, a bad file at reload keeping
//! the running secrets, the secret that verified each delivery counted by
//! its line, and no secret ever in the log or `/metrics`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// A daemon (logging at trace) whose `webhook.secret_file` the test edits.
struct Setup {
    dir: tempfile::TempDir,
    daemon: Daemon,
    /// Deliveries posted, for unique delivery ids.
    posted: AtomicU64,
}

impl Setup {
    fn start(secrets: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.toml"), tokens_toml()).unwrap();
        std::fs::write(dir.path().join("webhook-secret"), secrets).unwrap();
        let config = dir.path().join("hookfan.toml");
        std::fs::write(
            &config,
            "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n\
             [webhook]\nsecret_file = \"webhook-secret\"\n[log]\nlevel = \"trace\"\n",
        )
        .unwrap();
        // GITHUB_WEBHOOK_SECRET is set too: the file wins.
        let daemon = spawn_daemon_at(&config);
        Setup {
            dir,
            daemon,
            posted: AtomicU64::new(0),
        }
    }

    fn secret_file(&self) -> PathBuf {
        self.dir.path().join("webhook-secret")
    }

    fn log(&self) -> String {
        self.daemon.stderr.lock().unwrap().clone()
    }

    /// Sends SIGHUP and waits until the reload it starts has ended.
    async fn reload(&self) {
        let done = |log: &str| log.matches("configuration reloaded").count();
        let before = done(&self.log());
        let ok = Command::new("kill")
            .args(["-HUP", &self.daemon.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(10);
        while done(&self.log()) == before {
            assert!(Instant::now() < deadline, "no reload:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Posts a pull request webhook signed with `secret`; its status.
    async fn post(&self, secret: &str) -> u16 {
        let n = self.posted.fetch_add(1, Ordering::Relaxed) + 1;
        deliver(self.daemon.addr, secret, n).await
    }

    async fn metric(&self, name: &str) -> f64 {
        metric_of(self.daemon.addr, name).await
    }

    /// Neither the log nor `/metrics` holds any part (8 characters or
    /// more) of any of `secrets`.
    async fn assert_nothing_shows(&self, secrets: &[&str]) {
        let metrics = metrics_text(self.daemon.addr).await;
        let log = self.log();
        for secret in secrets {
            for part in secret.as_bytes().windows(8) {
                let part = std::str::from_utf8(part).unwrap();
                assert!(!log.contains(part), "{part:?} of a secret in the log");
                assert!(!metrics.contains(part), "{part:?} of a secret in /metrics");
            }
        }
    }
}

/// Posts delivery `n` (a pull request) to `addr`, signed with `secret`.
async fn deliver(addr: std::net::SocketAddr, secret: &str, n: u64) -> u16 {
    let body = pr_payload("acme", "widgets", n, "alice", false);
    let id = format!("secret-test-{n}");
    post_webhook(addr, secret.as_bytes(), "pull_request", &id, &body)
        .await
        .0
}

fn matches(line: usize) -> String {
    format!("hookfan_webhook_signature_matches_total{{secret_line=\"{line}\"}}")
}

const BAD_SIGNATURE: &str = "hookfan_webhook_outcomes_total{outcome=\"bad_signature\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_secrets_each_verify_a_third_is_refused_and_each_line_is_counted() {
    let (first, second, third) = ("Kq8vT1mZ4pR7wX2n", "Hc3Lj9Ys6Bd0Ue5F", "Wn2Gx7Pa4Rk1Tm8V");
    let setup = Setup::start(&format!("{first}\n{second}\n"));
    for (secret, want) in [(first, 200), (second, 200), (first, 200), (third, 401)] {
        assert_eq!(setup.post(secret).await, want, "{secret}");
    }
    assert_eq!(
        setup.post(DAEMON_SECRET).await,
        401,
        "the file wins over GITHUB_WEBHOOK_SECRET"
    );
    assert_eq!(setup.metric(&matches(1)).await, 2.0);
    assert_eq!(setup.metric(&matches(2)).await, 1.0);
    assert_eq!(
        metric_value(&metrics_text(setup.daemon.addr).await, &matches(3)),
        None,
        "no series for a line without a secret"
    );
    assert_eq!(setup.metric(BAD_SIGNATURE).await, 2.0);
    setup.assert_nothing_shows(&[first, second, third]).await;
}

/// The rotation of the README, step by step, while GitHub keeps
/// delivering: every delivery signed with the secret GitHub uses at that
/// moment is accepted, and the old secret's line stops counting once
/// GitHub has moved to the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_with_sighups_refuses_nothing_then_refuses_the_old_secret() {
    let (old, new) = ("Zt5Qm8Vb2Nx6Lk9C", "Py4Fs7Jd1Ga3Wr6E");
    let setup = Setup::start(&format!("{old}\n"));
    let addr = setup.daemon.addr;

    // GitHub: delivers continuously, signed with its secret of the moment.
    let github = Arc::new(Mutex::new(old));
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let task = {
        let (github, stop, delivered) = (github.clone(), stop.clone(), delivered.clone());
        tokio::spawn(async move {
            let mut refused = Vec::new();
            let mut n = 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let secret = *github.lock().unwrap();
                let status = deliver(addr, secret, n).await;
                if status != 200 {
                    refused.push((n, secret, status));
                }
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            refused
        })
    };
    // Lets GitHub deliver `k` more webhooks.
    let more = |k: u64| {
        let delivered = delivered.clone();
        async move {
            let target = delivered.load(Ordering::Relaxed) + k;
            while delivered.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    more(5).await;

    // 1. The new secret first, the old one kept; SIGHUP.
    std::fs::write(setup.secret_file(), format!("{new}\n{old}\n")).unwrap();
    setup.reload().await;
    more(5).await;
    // 2. The secret changes in GitHub.
    *github.lock().unwrap() = new;
    more(5).await;
    let old_line = setup.metric(&matches(2)).await;
    assert!(old_line >= 1.0, "the old secret was used after step 1");
    more(10).await;
    assert_eq!(
        setup.metric(&matches(2)).await,
        old_line,
        "the old secret's line stops counting once GitHub has moved"
    );
    // 3. The old line removed; SIGHUP.
    std::fs::write(setup.secret_file(), format!("{new}\n")).unwrap();
    setup.reload().await;
    more(5).await;

    stop.store(true, Ordering::Relaxed);
    let refused = task.await.unwrap();
    assert_eq!(
        refused,
        [],
        "GitHub's deliveries refused during the rotation"
    );
    assert_eq!(setup.metric(BAD_SIGNATURE).await, 0.0);
    let total = delivered.load(Ordering::Relaxed) as f64;
    let counted = setup.metric(&matches(1)).await + setup.metric(&matches(2)).await;
    assert_eq!(counted, total, "every delivery counted under one line");

    // After the last step the old secret is refused, the new accepted.
    assert_eq!(setup.post(old).await, 401);
    assert_eq!(setup.post(new).await, 200);
    assert_eq!(setup.metric(BAD_SIGNATURE).await, 1.0);
    assert_eq!(
        setup
            .metric("hookfan_config_reloads_total{result=\"ok\"}")
            .await,
        2.0
    );
    let log = setup.log();
    assert_eq!(
        log.matches("webhook secrets reloaded").count(),
        2,
        "one line per reload:\n{log}"
    );
    setup.assert_nothing_shows(&[old, new]).await;
}

/// A secret file that cannot be read, then one holding only blank lines:
/// each reload keeps the running secrets, says so in one line naming the
/// file, and is counted as failed; a good file is taken up again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_blank_secret_file_at_reload_keeps_the_running_secrets() {
    let (first, second, next) = ("Mb6Xr3Tq9Cz2Hv5J", "Fd1Ks8Wp4Ny7Eg0L", "Rj5Uc2Va8Ob6Qh3S");
    let setup = Setup::start(&format!("{first}\r\n{second}\r\n"));
    let path = setup.secret_file();
    let failed = "hookfan_config_reloads_total{result=\"failed\"}";
    let problems = [
        format!("webhook.secret_file: cannot read {}: ", path.display()),
        format!(
            "webhook.secret_file: {} holds no secret (it is empty or every line is blank)",
            path.display()
        ),
    ];

    std::fs::remove_file(&path).unwrap();
    setup.reload().await;
    std::fs::write(&path, "\n  \r\n\t\n\n").unwrap();
    setup.reload().await;
    let log = setup.log();
    for problem in &problems {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(problem)).collect();
        assert_eq!(lines.len(), 1, "{problem}:\n{log}");
        assert!(
            lines[0].contains("ERROR") && lines[0].contains("reload: keeping the previous value"),
            "{}",
            lines[0]
        );
    }
    assert_eq!(setup.metric(failed).await, 2.0);
    assert_eq!(log.matches("webhook secrets reloaded").count(), 0);
    for secret in [first, second] {
        assert_eq!(setup.post(secret).await, 200, "still in force");
    }
    assert_eq!(setup.post(next).await, 401);

    // A file that holds a secret again is taken up.
    std::fs::write(&path, format!("{next}\n")).unwrap();
    setup.reload().await;
    assert_eq!(setup.post(next).await, 200);
    assert_eq!(setup.post(first).await, 401);
    assert_eq!(
        setup
            .metric("hookfan_config_reloads_total{result=\"ok\"}")
            .await,
        1.0
    );
    assert_eq!(setup.metric(failed).await, 2.0);
    setup.assert_nothing_shows(&[first, second, next]).await;
}

/// Everything that handles a secret, at log level trace: start, accepted
/// and refused deliveries (each secret line, a wrong secret, a malformed
/// header), good and bad reloads. No secret, nor 8 characters of one, in
/// the log or `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_trace_log_or_metrics() {
    let secrets = [
        "Gy7Nw2Kd5Tb9Xs4A",
        "Le3Pz8Hq1Vm6Cj0R",
        "Ut4Ao9Bf2Wx7Ki5D",
        "Sn8Jr3Ex6Yc1Gl4P",
    ];
    let setup = Setup::start(&format!("{}\n\n{}\n", secrets[0], secrets[1]));
    for (secret, want) in [(secrets[0], 200), (secrets[1], 200), (secrets[2], 401)] {
        assert_eq!(setup.post(secret).await, want);
    }
    let headers = github_headers("pull_request", "sha256=not-hex", "malformed-1");
    let (status, _) = post(setup.daemon.addr, "/webhook", &headers, b"{}".to_vec()).await;
    assert_eq!(status, 401);
    std::fs::write(
        setup.secret_file(),
        format!("{}\n{}\n", secrets[3], secrets[0]),
    )
    .unwrap();
    setup.reload().await;
    assert_eq!(setup.post(secrets[3]).await, 200);
    std::fs::write(setup.secret_file(), " \n").unwrap();
    setup.reload().await;
    std::fs::remove_file(setup.secret_file()).unwrap();
    setup.reload().await;
    assert_eq!(setup.post(secrets[0]).await, 200);

    let log = setup.log();
    // hookfan writes nothing at trace itself: its debug lines show that
    // everything down to trace is written.
    assert!(
        log.contains("DEBUG hookfan::webhook: webhook accepted"),
        "logging below info:\n{log}"
    );
    assert!(log.contains("webhook secrets reloaded"), "{log}");
    assert_eq!(setup.metric(&matches(1)).await, 2.0);
    assert_eq!(
        setup.metric(&matches(2)).await,
        1.0,
        "line 2 after the reload"
    );
    assert_eq!(setup.metric(&matches(3)).await, 1.0, "line 3 at start");
    setup.assert_nothing_shows(&secrets).await;
}
