//! The CI-sized load test: the daemon and the `hookfan-load` driver as
//! separate processes, a few hundred connections and a few dozen webhooks;
//! every delivery must arrive exactly once. No timing is asserted.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_few_hundred_clients_get_every_event_exactly_once() {
    let token = format!("ghp_loadsmoke{}", "0".repeat(27));
    let orgs: Vec<String> = (0..10).map(|i| format!("\"load{i}\"")).collect();
    let tokens = format!(
        "[[token]]\ntoken = \"{token}\"\nlogin = \"loadsmoke\"\norgs = [{}]\n",
        orgs.join(", ")
    );
    let mut daemon = spawn_daemon_with(
        "[limits]\nmax_conns_per_ip = 1000\n[log]\nlevel = \"warn\"\n",
        &tokens,
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, DAEMON_SECRET).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hookfan-load"))
        .args([
            "fanout",
            "--addr",
            &daemon.addr.to_string(),
            "--token",
            &token,
        ])
        .args(["--secret-file", secret.to_str().unwrap()])
        .args(["--daemon-pid", &daemon.child.id().to_string()])
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["connected"], 300, "{stdout}");
    assert_eq!(summary["connect_failures"], serde_json::json!({}));
    // 40 webhooks over 10 orgs, 30 clients per org: 4 x 30 each.
    assert_eq!(summary["expected"], 1200);
    assert_eq!(summary["received"], 1200);
    for key in ["missing", "duplicated", "unexpected"] {
        assert_eq!(summary[key], 0, "{key}: {stdout}");
    }
    daemon.sigterm();
    assert!(daemon.wait(std::time::Duration::from_secs(15)).0.success());
}
