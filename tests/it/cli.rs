//! The `hookfan` binary: flags, config validation, refusing to start
//! without a secret, and serving on the shipped config.

use std::process::Command;
use std::time::Duration;

use crate::common;

fn hookfan() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hookfan"));
    c.env_remove("GITHUB_WEBHOOK_SECRET");
    c
}

fn shipped_config() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config/hookfan.toml").to_owned()
}

/// `hookfan check-config --config PATH`.
fn check_config(path: &str) -> std::process::Output {
    hookfan()
        .args(["check-config", "--config", path])
        .output()
        .unwrap()
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("hookfan.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn version_and_help() {
    let out = hookfan().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("hookfan {}", env!("CARGO_PKG_VERSION"))
    );
    let out = hookfan().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--config", "--listen", "check-config", "--version"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn config_is_required() {
    let out = hookfan().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config PATH is required"));
}

#[test]
fn check_config_prints_the_effective_config_with_the_secret_masked() {
    let out = check_config(&shipped_config());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-webhook-secret.txt"
    ))
    .unwrap();
    assert!(
        !stdout.contains(secret.trim()),
        "the secret must not be printed"
    );
    assert!(stdout.contains("# webhook secret: ****"), "{stdout}");
    assert!(
        stdout.contains("[broker]") && stdout.contains("client_queue = 256"),
        "{stdout}"
    );
    assert!(stdout.contains("static, 4 tokens"), "{stdout}");
    assert!(!stdout.contains("ghp_dev"), "tokens must not be printed");
}

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[server]\nlisten = \"nowhere\"\nping_interval_s = 0\n[broker]\nslow_client = \"maybe\"\nshards = 999\n[typo]\nx = 1\n[auth]\nprovider = \"static\"\ntokens_file = \"missing.toml\"\n",
    );
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen",
        "server.ping_interval_s",
        "broker.slow_client",
        "broker.shards",
        "typo:",
        "webhook.secret_file",
        "auth.tokens_file",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
}

#[test]
fn unknown_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[server]\nlisten_addr = \"127.0.0.1:0\"\n");
    let out = hookfan().args(["--config", &path]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen_addr: unknown field"), "{err}");
}

#[test]
fn no_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens.toml"), "").unwrap();
    let path = write_config(
        &dir,
        "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n",
    );
    let out = hookfan()
        .args(["--config", &path, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("webhook.secret_file") && err.contains("GITHUB_WEBHOOK_SECRET"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "must not start listening");

    // The environment variable is enough.
    let out = hookfan()
        .args(["check-config", "--config", &path])
        .env("GITHUB_WEBHOOK_SECRET", "from-env-value")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("from GITHUB_WEBHOOK_SECRET") && !stdout.contains("from-env-value"),
        "{stdout}"
    );
}

#[tokio::test]
async fn serves_the_shipped_config_and_stops_on_sigterm() {
    let mut daemon = common::spawn_daemon_at(std::path::Path::new(&shipped_config()));
    assert!(daemon.addr.ip().is_loopback() && daemon.addr.port() != 0);
    let (status, body) = common::request(daemon.addr, "GET", "/", &[], vec![]).await;
    assert_eq!((status, body.as_str()), (200, "hookfan is running\n"));

    daemon.sigterm();
    let stderr = daemon.stderr.clone();
    let (status, _) = tokio::task::spawn_blocking(move || daemon.wait(Duration::from_secs(15)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let stderr = stderr.lock().unwrap().clone();
    assert!(stderr.contains("DEVELOPMENT CONFIG"), "{stderr}");
}

#[test]
fn check_config_output_is_itself_a_valid_config() {
    let first = check_config(&shipped_config());
    assert!(first.status.success());
    let printed = String::from_utf8(first.stdout).unwrap();
    // Fed back from another directory: paths were printed absolute.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &printed);
    let second = check_config(&path);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let reprinted = String::from_utf8(second.stdout).unwrap();
    let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(
        body(&printed),
        body(&reprinted),
        "the round trip changes nothing"
    );
}

#[test]
fn toml_syntax_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        &dir,
        "[server]\nlisten = \"127.0.0.1:1\"\nread_timeout_s = 9O\n",
    );
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config: TOML syntax error at line 3, column 18:"),
        "{err}"
    );
}

/// Each token of config/dev-tokens.toml, its login and what it may see.
fn dev_tokens() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-tokens.toml"
    ))
    .unwrap();
    let table: toml::Table = text.parse().unwrap();
    table["token"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let login = t
                .get("login")
                .and_then(|l| l.as_str())
                .unwrap_or("app[installation]");
            (t["token"].as_str().unwrap().to_owned(), login.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dev_token_receives_a_shipped_fixture() {
    let daemon = common::spawn_daemon_at(std::path::Path::new(&shipped_config()));
    let secret = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/dev-webhook-secret.txt"
    ))
    .unwrap();
    let tokens = dev_tokens();
    assert!(tokens.len() >= 4);
    let mut clients = Vec::new();
    for (tok, login) in &tokens {
        let (ws, first) =
            common::subscribe_as(daemon.addr, tok, serde_json::json!({"organization": "*"})).await;
        assert_eq!(first["type"], "subscription_confirmed", "{login}: {first}");
        clients.push((login.clone(), ws));
    }
    let fixtures = [
        ("pull_request", "pull_request.opened.json"),
        ("pull_request", "pull_request.opened.private-repo.json"),
    ];
    for (kind, file) in fixtures {
        let body = common::fixture(file);
        let secret = secret.trim_end().as_bytes();
        let (status, text) = common::post_webhook(daemon.addr, secret, kind, file, &body).await;
        assert_eq!((status, text.as_str()), (200, "OK"), "{file}");
    }
    for (login, mut ws) in clients {
        let e = common::next_event(&mut ws).await;
        assert!(
            e["url"].as_str().unwrap().contains("/pull/"),
            "{login}: {e}"
        );
    }
}
