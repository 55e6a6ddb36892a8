//! The `hookfan` binary: flags, config validation, refusing to start
//! without a secret, and serving on the shipped config.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::common;
use crate::common::pki::TestCa;

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
    check_config_in(Path::new("."), path)
}

/// `hookfan check-config --config PATH` run in `cwd`, which a relative
/// PATH starts from.
fn check_config_in(cwd: &Path, path: &str) -> std::process::Output {
    hookfan()
        .args(["check-config", "--config", path])
        .current_dir(cwd)
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
fn check_config_names_a_bad_allowed_origin_and_prints_good_ones_as_read() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_config(
        &dir,
        "[server]\nallowed_origins = [\"https://dash.example\", \"https://x.example/\"]\n",
    );
    let out = check_config(&bad);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"server.allowed_origins: "https://x.example/" is not an origin (scheme://host[:port])"#
        ),
        "{err}"
    );
    let good = write_config(
        &dir,
        "[server]\nallowed_origins = [\"HTTPS://Dash.Example:443\"]\n[webhook]\nsecret_file = \"s\"\n",
    );
    std::fs::write(dir.path().join("s"), "secret\n").unwrap();
    let out = check_config(&good);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#"allowed_origins = ["https://dash.example"]"#),
        "{stdout}"
    );
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
fn check_config_refuses_redelivery_without_the_app_and_a_key_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    let base = "[webhook]\nsecret_file = \"secret\"\n[auth]\nprovider = \"static\"\n\
                tokens_file = \"tokens.toml\"\n";
    std::fs::write(dir.path().join("tokens.toml"), common::tokens_toml()).unwrap();
    let path = write_config(&dir, &format!("{base}[redelivery]\nenabled = true\n"));
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redelivery.enabled: needs [github_app] app_id and private_key_file"),
        "{err}"
    );
    // A certificate where the App's private key should be.
    std::fs::write(dir.path().join("app.pem"), TestCa::new("not a key").pem()).unwrap();
    let app = "[github_app]\napp_id = 7\nprivate_key_file = \"app.pem\"\n";
    let path = write_config(&dir, &format!("{base}{app}[redelivery]\nenabled = true\n"));
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("github_app.private_key_file: ")
            && err.contains("app.pem holds no PEM private key"),
        "{err}"
    );
    assert!(!err.contains("redelivery.enabled"), "{err}");
}

/// `webhook.allowed_sources` names its bad entry; good entries are printed
/// back as CIDRs.
#[test]
fn check_config_names_a_bad_allowed_source() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret").unwrap();
    std::fs::write(dir.path().join("tokens.toml"), common::tokens_toml()).unwrap();
    let base = "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n\
                [webhook]\nsecret_file = \"secret\"\n";
    let path = write_config(
        &dir,
        &format!(
            "{base}allowed_sources = [\"github\", \"10.0.0.0/33\", \"192.0.2.1\"]\n\
             allowed_sources_refresh_s = 30\n"
        ),
    );
    let out = check_config(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "webhook.allowed_sources: \"10.0.0.0/33\" is not a CIDR (like \"192.30.252.0/22\" \
             or \"2606:50c0::/32\"), an IP address or \"github\""
        ),
        "{err}"
    );
    assert!(
        err.contains("webhook.allowed_sources_refresh_s: must be 60..=86400 seconds, got 30"),
        "{err}"
    );
    let path = write_config(
        &dir,
        &format!("{base}allowed_sources = [\"github\", \"192.0.2.1\", \"2001:db8::/32\"]\n"),
    );
    let out = check_config(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#"allowed_sources = ["github", "192.0.2.1/32", "2001:db8::/32"]"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed_sources_refresh_s = 3600"),
        "{stdout}"
    );
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

/// What the config of [`write_relative_config`] points at, by key.
const RELATIVE_PATHS: &[(&str, &str)] = &[
    ("auth.tokens_file", "fan-tokens.toml"),
    ("server.tls.cert_file", "tls/cert.pem"),
    ("server.tls.key_file", "tls/key.pem"),
    ("webhook.secret_file", "fan-secret.txt"),
];

/// The webhook secret [`write_relative_config`] writes.
const FILE_SECRET: &str = "relative-config-secret-value";

/// `dir/hookfan.toml` naming every file by a path relative to `dir`: the
/// webhook secret, the token table, and a certificate and key made by `ca`;
/// `extra` adds sections.
fn write_relative_config(dir: &Path, ca: &TestCa, extra: &str) {
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    ca.leaf()
        .write(&dir.join("tls/cert.pem"), &dir.join("tls/key.pem"));
    std::fs::write(dir.join("fan-secret.txt"), format!("{FILE_SECRET}\n")).unwrap();
    std::fs::write(dir.join("fan-tokens.toml"), common::tokens_toml()).unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"tls/cert.pem\"\nkey_file = \"tls/key.pem\"\n\
         [webhook]\nsecret_file = \"fan-secret.txt\"\n\
         [auth]\nprovider = \"static\"\ntokens_file = \"fan-tokens.toml\"\n{extra}"
    );
    std::fs::write(dir.join("hookfan.toml"), text).unwrap();
}

/// Every `*_file` and `*_dir` key of a printed config, dotted, with its value.
fn path_keys(table: &toml::Table, prefix: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (key, value) in table {
        let dotted = format!("{prefix}{key}");
        match value {
            toml::Value::Table(t) => found.extend(path_keys(t, &format!("{dotted}."))),
            toml::Value::String(s) if key.ends_with("_file") || key.ends_with("_dir") => {
                found.push((dotted, s.clone()))
            }
            _ => {}
        }
    }
    found
}

#[test]
fn check_config_prints_every_path_absolute() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("conf");
    let ca = TestCa::new("hookfan test CA");
    let cluster = "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\nuser = \"hookfan\"\n\
                   password_file = \"nats-password.txt\"\ntls_ca_file = \"tls/ca.pem\"\n\
                   [github_app]\napp_id = 1\nprivate_key_file = \"app-key.pem\"\n";
    write_relative_config(&conf, &ca, cluster);
    std::fs::write(conf.join("nats-password.txt"), "nats-password-value\n").unwrap();
    std::fs::write(conf.join("tls/ca.pem"), ca.pem()).unwrap();
    let app_key = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app/app-key.pem"),
    )
    .unwrap();
    std::fs::write(conf.join("app-key.pem"), &app_key).unwrap();
    let mut expected = RELATIVE_PATHS.to_vec();
    expected.extend([
        ("cluster.password_file", "nats-password.txt"),
        ("cluster.tls_ca_file", "tls/ca.pem"),
        ("github_app.private_key_file", "app-key.pem"),
    ]);
    expected.sort();
    let base = std::fs::canonicalize(&conf).unwrap();

    // `--config` relative to the working directory, with and without a directory part.
    for (cwd, config) in [(root.path(), "conf/hookfan.toml"), (&conf, "hookfan.toml")] {
        let out = check_config_in(cwd, config);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{config}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut printed = path_keys(&stdout.parse().unwrap(), "");
        printed.sort();
        let printed_keys: Vec<&str> = printed.iter().map(|(k, _)| k.as_str()).collect();
        let expected_keys: Vec<&str> = expected.iter().map(|(k, _)| *k).collect();
        assert_eq!(printed_keys, expected_keys, "{stdout}");
        for ((key, path), (_, relative)) in printed.iter().zip(&expected) {
            assert!(Path::new(path).is_absolute(), "{config}: {key} = {path:?}");
            assert_eq!(
                std::fs::canonicalize(path).unwrap(),
                base.join(relative),
                "{config}: {key}"
            );
        }
        assert!(
            stdout.contains(&format!(
                "# {config}: valid; relative paths resolved against {}\n",
                conf.display()
            )),
            "{config}: {stdout}"
        );
        let key_body = app_key.lines().nth(1).unwrap();
        for secret in [
            FILE_SECRET,
            "nats-password-value",
            &common::token("alice"),
            key_body,
        ] {
            assert!(
                !stdout.contains(secret),
                "{config}: a secret is printed:\n{stdout}"
            );
        }
    }
}

// The issue's case: a config with relative paths, checked from the
// directory above it, its output saved in an unrelated directory and the
// daemon started on that copy from yet another working directory (this
// test's): every file the copy names is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_output_saved_elsewhere_serves_from_another_directory() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("project/conf");
    let ca = TestCa::new("hookfan test CA");
    write_relative_config(&conf, &ca, "");
    let out = check_config_in(root.path(), "project/conf/hookfan.toml");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("hookfan.toml");
    std::fs::write(&copy, &out.stdout).unwrap();

    let again = check_config_in(elsewhere.path(), "hookfan.toml");
    assert!(
        again.status.success(),
        "the copy has a problem: {}",
        String::from_utf8_lossy(&again.stderr)
    );

    let daemon = common::spawn_daemon_at(&copy);
    assert_ne!(std::env::current_dir().unwrap(), elsewhere.path());
    // The certificate and key files: the daemon serves TLS with them.
    let mut ws = ca
        .wss(daemon.addr, &common::token("alice"))
        .await
        .expect("wss upgrade");
    // The tokens file: alice's token authenticates.
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    let first = common::next_json(&mut ws).await;
    assert_eq!(first["type"], "subscription_confirmed", "{first}");
    // The secret file: its secret (not the environment's) signs webhooks.
    let body = common::pr_payload("acme", "widgets", 7, "bob", false);
    let status = (ca.webhook(
        daemon.addr,
        FILE_SECRET.as_bytes(),
        "pull_request",
        &body,
        "d-7",
    ))
    .await;
    assert_eq!(status, 200);
    let event = common::next_event(&mut ws).await;
    assert_eq!(
        event["url"], "https://github.com/acme/widgets/pull/7",
        "{event}"
    );
}

#[test]
fn check_config_read_by_a_reader_that_stops_early_exits_0() {
    // `hookfan check-config | head -1`: the reader goes away before the
    // output is written (its end of the pipe closed at once here).
    let mut child = hookfan()
        .args(["check-config", "--config", &shipped_config()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
