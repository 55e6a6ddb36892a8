//! The CI-sized load test: the daemon and the `hookfan-load` driver as
//! separate processes, a few hundred connections and a few dozen webhooks;
//! every delivery must arrive exactly once. No timing is asserted.

use std::process::Command;

use crate::common::*;

/// A daemon whose one static token is a member of orgs load0..load9, and
/// the webhook secret in a file for the driver.
struct LoadRun {
    daemon: Daemon,
    token: String,
    dir: tempfile::TempDir,
}

impl LoadRun {
    fn start(extra: &str) -> Self {
        let token = format!("ghp_loadsmoke{}", "0".repeat(27));
        let orgs: Vec<String> = (0..10).map(|i| format!("\"load{i}\"")).collect();
        let tokens = format!(
            "[[token]]\ntoken = \"{token}\"\nlogin = \"loadsmoke\"\norgs = [{}]\n",
            orgs.join(", ")
        );
        let daemon = spawn_daemon_with(
            &format!("[limits]\nmax_conns_per_ip = 1000\n[log]\nlevel = \"warn\"\n{extra}"),
            &tokens,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), DAEMON_SECRET).unwrap();
        LoadRun { daemon, token, dir }
    }

    /// `hookfan-load MODE` pointed at the daemon.
    fn driver(&self, mode: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hookfan-load"));
        c.args([mode, "--addr", &self.daemon.addr.to_string()])
            .args(["--token", &self.token])
            .arg("--secret-file")
            .arg(self.dir.path().join("secret"))
            .args(["--daemon-pid", &self.daemon.child.id().to_string()]);
        c
    }

    fn stop(mut self) {
        self.daemon.sigterm();
        assert!(
            self.daemon
                .wait(std::time::Duration::from_secs(15))
                .0
                .success()
        );
    }
}

/// The driver's JSON summary (its last line) and its whole output, once
/// it has exited successfully.
fn summary(out: &std::process::Output) -> (serde_json::Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    (serde_json::from_str(last).unwrap(), stdout)
}

#[test]
fn a_few_hundred_clients_get_every_event_exactly_once() {
    let run = LoadRun::start("");
    let out = run
        .driver("fanout")
        .args([
            "--clients",
            "300",
            "--orgs",
            "10",
            "--webhooks",
            "40",
            "--rate",
            "200",
        ])
        .args(["--hold-s", "0.1", "--json"])
        .output()
        .unwrap();
    let (summary, stdout) = summary(&out);
    assert_eq!(summary["connected"], 300, "{stdout}");
    assert_eq!(summary["connect_failures"], serde_json::json!({}));
    // 40 webhooks over 10 orgs, 30 clients per org: 4 x 30 each.
    assert_eq!(summary["expected"], 1200);
    assert_eq!(summary["received"], 1200);
    for key in ["missing", "duplicated", "unexpected"] {
        assert_eq!(summary[key], 0, "{key}: {stdout}");
    }
    run.stop();
}

/// `scripts/soak.sh` in small: clients that keep dropping and resuming (or
/// subscribing afresh) under steady webhooks must still get every event
/// owed to them exactly once, and the driver's samples must be written.
#[test]
fn churning_clients_that_resume_lose_nothing() {
    let run = LoadRun::start("[replay]\nmax_events = 1000\n");
    let dir = run.dir.path();
    let out = run
        .driver("soak")
        .args(["--clients", "200", "--orgs", "10", "--rate", "25"])
        .args(["--duration-s", "16", "--warmup-s", "4", "--sample-s", "2"])
        .args(["--life-min-s", "1", "--life-max-s", "4"])
        .args(["--away-min-s", "0.1", "--away-max-s", "0.6"])
        .args(["--fresh", "0.2", "--drain-timeout-s", "30", "--seed", "7"])
        .arg("--out")
        .arg(dir)
        .arg("--json")
        .output()
        .unwrap();
    let (s, stdout) = summary(&out);
    assert_eq!(s["events_posted"], 400, "{stdout}");
    for key in ["missing", "duplicated", "unexpected", "refused_unexplained"] {
        assert_eq!(s[key], 0, "{key}: {stdout}");
    }
    assert_eq!(s["received"], s["expected"], "{stdout}");
    // 20 clients per org and 40 events per org: at most 8,000, fewer only
    // by what fresh subscriptions skipped while away.
    let received = s["received"].as_u64().unwrap();
    assert!((6_000..=8_000).contains(&received), "{stdout}");
    // The clients really churned: 200 clients living 1-4 s over 16 s.
    let num = |k: &str| s[k].as_u64().unwrap();
    assert!(num("churn_cycles") >= 400, "{stdout}");
    assert!(num("resumes_ok") >= 200, "{stdout}");
    assert!(num("fresh") >= 20, "{stdout}");
    assert!(num("replayed") > 0, "{stdout}");
    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("t_s,phase,rss_kb,fds,threads"), "{csv}");
    assert!(
        rows.iter().filter(|r| r.contains(",steady,")).count() >= 4,
        "{csv}"
    );
    run.stop();
}
