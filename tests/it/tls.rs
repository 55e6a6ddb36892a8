//! TLS on the listener, with a CA and certificates made by each test: wss
//! and https, plain HTTP refused cleanly, bad certificates refused at
//! start, and live reloads (SIGHUP) of the certificate and the tokens that
//! drop no connection and lose no event.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::pki::TestCa;
use crate::common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::Message;

/// `[server.tls]` for the pair at `dir/cert.pem`, `dir/key.pem`.
fn tls_section(dir: &Path) -> String {
    format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.join("cert.pem"),
        dir.join("key.pem")
    )
}

async fn wss_subscribe(ca: &TestCa, addr: std::net::SocketAddr, login: &str) -> Ws {
    let mut ws = ca.wss(addr, &token(login)).await.expect("wss upgrade");
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "subscription_confirmed", "{first}");
    ws
}

/// Waits until the daemon's log holds `needle`.
fn wait_log(daemon: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.stderr.lock().unwrap().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            daemon.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sighup(daemon: &Daemon) {
    let ok = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn pr(n: u64) -> Vec<u8> {
    pr_payload("acme", "widgets", n, "alice", false)
}

// One TLS server for every way in (wss, https, plain http, TLS 1.2, the
// redirect listener, /metrics): a server with certificates per case would
// cost more than the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_work_and_plain_http_is_told_to_use_tls() {
    let ca = TestCa::new("hookfan test CA");
    let certs = tempfile::tempdir().unwrap();
    ca.leaf().write(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    );
    let server = TestServer::start_with(&tls_section(certs.path()), |c| {
        c.server.tls.as_mut().unwrap().redirect_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.addr;
    let mut ws = wss_subscribe(&ca, addr, "alice").await;

    // Plain WebSocket and plain HTTP to the TLS port: a 400 that says why.
    match ws_connect(addr, Some(&token("bob"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("this port speaks TLS"), "{body}");
        }
        other => panic!("plain ws to the TLS port: {other:?}"),
    }
    let (status, body) = request(addr, "GET", "/healthz", &[], Vec::new()).await;
    assert_eq!(
        (status, body.as_str()),
        (
            400,
            "400 Bad Request: this port speaks TLS; use https:// or wss://\n"
        )
    );

    // https webhook -> wss client, and the wss client keeps streaming.
    for n in 1..=3 {
        let status = ca
            .webhook(addr, SECRET, "pull_request", &pr(n), &format!("tls-{n}"))
            .await;
        assert_eq!(status, 200);
        let event = next_event(&mut ws).await;
        assert_eq!(event["delivery_id"], format!("tls-{n}"), "{event}");
    }
    let (status, body) = ca.request(addr, "GET", "/healthz", &[], Vec::new()).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // TLS 1.2 works too; ALPN settles on http/1.1 even when h2 is offered.
    let tls12 = ca.client_config_with(&[&rustls::version::TLS12], &[b"h2", b"http/1.1"]);
    let conn = ca.connect(addr, tls12).await.unwrap();
    let (_, session) = conn.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
    // A client that trusts another CA is refused by its own verifier.
    let stranger = TestCa::new("another CA");
    assert!(
        stranger
            .connect(addr, stranger.client_config())
            .await
            .is_err()
    );

    // The redirect listener sends everything to https, path and query kept.
    let redirect = server.handle().redirect_addr().unwrap();
    let mut sender = http1(tokio::net::TcpStream::connect(redirect).await.unwrap()).await;
    let req = hyper::Request::builder()
        .uri("/ws?x=1")
        .header("host", format!("hooks.example.com:{}", redirect.port()))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://hooks.example.com:{}/ws?x=1", addr.port()).as_str()
    );

    // /metrics over https shows when the certificate expires.
    let (_, text) = ca.request(addr, "GET", "/metrics", &[], Vec::new()).await;
    let not_after = metric(&text, "hookfan_tls_certificate_not_after_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now + 80_000.0..now + 90_000.0).contains(&not_after),
        "{not_after}"
    );
}

/// Runs the daemon binary on `config` expecting a refusal; returns stderr.
fn refused(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hookfan"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(args)
        .env("GITHUB_WEBHOOK_SECRET", DAEMON_SECRET)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn expired_mismatched_or_missing_certificates_are_refused_at_start() {
    let ca = TestCa::new("hookfan test CA");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tokens.toml"), tokens_toml()).unwrap();
    let config = d.join("hookfan.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n{}",
            tls_section(d)
        ),
    )
    .unwrap();
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    let now = time::OffsetDateTime::now_utc();
    ca.leaf_valid(
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    )
    .write(&cert, &key);
    let (code, stderr) = refused(&config, &[]);
    assert_eq!(code, 2, "{stderr}");
    let expected = format!(
        "server.tls.cert_file: {}: the certificate expired at ",
        cert.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // check-config says the same.
    let (code, stderr) = refused(&config, &["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");

    // The key of another certificate.
    let good = ca.leaf();
    let other = ca.leaf();
    std::fs::write(&cert, &good.cert_pem).unwrap();
    std::fs::write(&key, &other.key_pem).unwrap();
    let (code, stderr) = refused(&config, &[]);
    assert_eq!(code, 2, "{stderr}");
    let expected = format!(
        "server.tls.key_file: {} does not match the certificate in {}",
        key.display(),
        cert.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    // Not PEM, and missing.
    std::fs::write(&cert, "not a certificate").unwrap();
    let (_, stderr) = refused(&config, &[]);
    assert!(
        stderr.contains(&format!(
            "server.tls.cert_file: {}: holds no PEM certificate",
            cert.display()
        )),
        "{stderr}"
    );
    std::fs::remove_file(&cert).unwrap();
    let (_, stderr) = refused(&config, &[]);
    assert!(
        stderr.contains(&format!(
            "server.tls.cert_file: {}: cannot read",
            cert.display()
        )),
        "{stderr}"
    );
}

/// A daemon on config files in a directory the test owns.
struct Setup {
    dir: tempfile::TempDir,
    daemon: Daemon,
}

impl Setup {
    fn start(extra: &str, tokens: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.toml"), tokens).unwrap();
        let setup_config = |extra: &str| {
            format!("[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n{extra}")
        };
        std::fs::write(dir.path().join("hookfan.toml"), setup_config(extra)).unwrap();
        let daemon = spawn_daemon_at(&dir.path().join("hookfan.toml"));
        Setup { dir, daemon }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

// A timeline of one daemon across two SIGHUPs (a good certificate, then a
// bad one): the same clients and webhooks before, between and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_after_sighup_and_nothing_is_lost() {
    let ca = TestCa::new("hookfan test CA");
    let first = ca.leaf();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    first.write(&cert, &key);
    let setup = Setup::start(&tls_section(dir.path()), &tokens_toml());
    let addr = setup.daemon.addr;
    assert_eq!(ca.served(addr).await, first.der);

    let mut clients = Vec::new();
    for login in ["alice", "bob", "octocat"] {
        clients.push(wss_subscribe(&ca, addr, login).await);
    }
    // Webhooks keep coming over https while the certificate changes.
    let ca = std::sync::Arc::new(ca);
    let task = {
        let ca = ca.clone();
        tokio::spawn(async move {
            for n in 1..=60u64 {
                let id = format!("rot-{n}");
                let body = pr(n);
                let secret = DAEMON_SECRET.as_bytes();
                let status = ca.webhook(addr, secret, "pull_request", &body, &id).await;
                assert_eq!(status, 200, "webhook {n}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = ca.leaf();
    second.write(&cert, &key);
    sighup(&setup.daemon);
    wait_log(&setup.daemon, "TLS certificate reloaded");
    assert_eq!(
        ca.served(addr).await,
        second.der,
        "new handshakes get the new certificate"
    );
    // A client connected after the reload streams too.
    let mut late = wss_subscribe(&ca, addr, "alice").await;
    task.await.unwrap();
    for ws in &mut clients {
        let ids: Vec<String> = collect(ws, 60).await;
        let want: Vec<String> = (1..=60).map(|n| format!("rot-{n}")).collect();
        assert_eq!(ids, want, "existing connections keep every event, in order");
    }

    // A bad certificate file: the reload keeps the running one, says which
    // file and why, and counts it.
    std::fs::write(&cert, "garbage").unwrap();
    sighup(&setup.daemon);
    wait_log(&setup.daemon, "reload: keeping the previous value");
    let log = setup.daemon.stderr.lock().unwrap().clone();
    assert!(
        log.contains(&format!(
            "server.tls.cert_file: {}: holds no PEM certificate",
            cert.display()
        )),
        "{log}"
    );
    assert_eq!(ca.served(addr).await, second.der);
    let (_, text) = ca.request(addr, "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(
        metric(&text, "hookfan_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "hookfan_config_reloads_total{result=\"failed\"}"),
        1.0
    );
    // And the clients still stream.
    let status = ca
        .webhook(
            addr,
            DAEMON_SECRET.as_bytes(),
            "pull_request",
            &pr(61),
            "rot-61",
        )
        .await;
    assert_eq!(status, 200);
    for ws in &mut clients {
        assert_eq!(next_event(ws).await["delivery_id"], "rot-61");
    }
    // The client that came after the rotation: every event since it
    // subscribed, consecutive, up to the last.
    let mut late_ids = Vec::new();
    while late_ids.last().is_none_or(|id| id != "rot-61") {
        late_ids.push(collect(&mut late, 1).await.remove(0));
    }
    let numbers: Vec<u64> = late_ids
        .iter()
        .map(|id| id.trim_start_matches("rot-").parse().unwrap())
        .collect();
    let start = numbers[0];
    assert_eq!(numbers, (start..=61).collect::<Vec<_>>());
}

/// The delivery ids of the next `n` events.
async fn collect(ws: &mut Ws, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < n {
        let v: Value = next_event(ws).await;
        ids.push(v["delivery_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// A SIGHUP holds connected clients to the edited tokens file (issue #23,
/// part 3): a removed token closes its client with `authentication_failed`,
/// a membership lost with `access_denied`, both within 2 s, and a new tier
/// or a new organization changes what a client receives from then on.
// A timeline around one SIGHUP: the same live clients before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_holds_connected_clients_to_the_edited_tokens_file() {
    let setup = Setup::start("", &tokens_toml());
    let addr = setup.daemon.addr;
    let acme = json!({"organization": "acme"});
    let mut alice = subscribe(addr, "alice", acme.clone()).await; // free -> pro
    let mut octocat = subscribe(addr, "octocat", acme.clone()).await; // free, unchanged
    let mut bob = subscribe(addr, "bob", json!({"organization": "widgets"})).await; // removed
    let mut carol = subscribe(addr, "carol", json!({"organization": "*"})).await; // + acme
    let mut hubot = subscribe(addr, "hubot", json!({"organization": "zeta"})).await; // leaves zeta
    let post = |n: u64, private: bool, id: &'static str| {
        let body = pr_payload("acme", "api", n, "x", private);
        let daemon = &setup.daemon;
        async move { assert_eq!(daemon.webhook("pull_request", &body, id).await, 200) }
    };
    post(1, true, "private-before").await;
    post(2, false, "public-before").await;
    for ws in [&mut alice, &mut octocat] {
        assert_eq!(next_event(ws).await["delivery_id"], "public-before", "free");
    }

    let edited = [
        ("alice", &["acme"][..], "pro"),
        ("octocat", &["acme"][..], "free"),
        ("carol", &["widgets", "acme"][..], "flock"),
        ("hubot", &["acme"][..], "pro"),
    ];
    std::fs::write(setup.path("tokens.toml"), tokens_toml_for(&edited)).unwrap();
    let reloaded = Instant::now();
    sighup(&setup.daemon);
    let bob_error = next_json(&mut bob).await;
    assert_eq!(
        (bob_error["type"].as_str(), bob_error["error"].as_str()),
        (Some("error"), Some("authentication_failed")),
        "{bob_error}"
    );
    assert_eq!(
        expect_close(&mut bob).await,
        (1008, "authentication_failed".to_owned())
    );
    let hubot_error = next_json(&mut hubot).await;
    assert_eq!(hubot_error["error"], "access_denied", "{hubot_error}");
    assert_eq!(
        hubot_error["message"],
        "User 'hubot' is not a member of organization 'zeta'."
    );
    assert_eq!(
        expect_close(&mut hubot).await,
        (1008, "access_denied".to_owned())
    );
    assert!(
        reloaded.elapsed() < Duration::from_secs(2),
        "{:?}",
        reloaded.elapsed()
    );

    // alice's tier and carol's organizations changed.
    let updated = "hookfan_access_changes_total{change=\"updated\"}";
    while metric_of(addr, updated).await < 2.0 {
        assert!(reloaded.elapsed() < Duration::from_secs(10), "not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    post(3, true, "private-after").await;
    post(4, false, "public-after").await;
    assert_eq!(
        next_event(&mut alice).await["delivery_id"],
        "private-after",
        "pro now"
    );
    assert_eq!(
        next_event(&mut carol).await["delivery_id"],
        "private-after",
        "in acme now"
    );
    assert_eq!(
        next_event(&mut octocat).await["delivery_id"],
        "public-after",
        "still free"
    );
    for (change, n) in [("token_rejected", 1.0), ("not_member", 1.0)] {
        let name = format!("hookfan_access_changes_total{{change=\"{change}\"}}");
        assert_eq!(metric_of(addr, &name).await, n, "{change}");
    }
}

// A timeline of one daemon across three SIGHUPs (an edit, a broken tokens
// file, an invalid config), each checked against what the one before left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_tokens_file_and_log_level_are_taken_up_on_sighup() {
    let setup = Setup::start("[log]\nlevel = \"warn\"\n", &tokens_toml());
    let addr = setup.daemon.addr;
    let mut alice = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let mut bob = subscribe(addr, "bob", json!({"organization": "acme"})).await;

    // bob's token goes, dave's (new) comes; the log level goes to info.
    let dave = format!("ghp_{}", "d".repeat(36));
    let edited: String = tokens_toml()
        .split("[[token]]")
        .filter(|entry| !entry.contains("login = \"bob\""))
        .collect::<Vec<_>>()
        .join("[[token]]")
        + &format!("[[token]]\ntoken = \"{dave}\"\nlogin = \"dave\"\norgs = [\"acme\"]\n");
    std::fs::write(setup.path("tokens.toml"), &edited).unwrap();
    std::fs::write(
        setup.path("hookfan.toml"),
        "[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n[log]\nlevel = \"info\"\n",
    )
    .unwrap();
    sighup(&setup.daemon);
    // Logged at info, so once the new level is in force.
    wait_log(&setup.daemon, "log level changed");
    let log = setup.daemon.stderr.lock().unwrap().clone();
    assert!(
        !log.contains("next restart"),
        "only reloadable keys changed:\n{log}"
    );

    let (_, refused) = subscribe_as(addr, &token("bob"), json!({"organization": "acme"})).await;
    assert_eq!(refused["error"], "authentication_failed", "{refused}");
    let (_, ok) = subscribe_as(addr, &dave, json!({"organization": "acme"})).await;
    assert_eq!(ok["type"], "subscription_confirmed", "{ok}");
    // Already connected: bob's token is checked again at the reload and
    // refused; alice keeps streaming.
    assert_eq!(next_json(&mut bob).await["error"], "authentication_failed");
    assert_eq!(expect_close(&mut bob).await.0, 1008);
    assert_eq!(
        setup.daemon.webhook("pull_request", &pr(1), "tok-1").await,
        200
    );
    assert_eq!(next_event(&mut alice).await["delivery_id"], "tok-1");
    // info lines now reach the log.
    wait_log(&setup.daemon, "client subscribed");

    // A broken tokens file keeps the table that works.
    std::fs::write(setup.path("tokens.toml"), "[[token]]\nlogin = 3\n").unwrap();
    sighup(&setup.daemon);
    wait_log(&setup.daemon, "reload: keeping the previous value");
    let log = setup.daemon.stderr.lock().unwrap().clone();
    assert!(
        log.contains(&format!(
            "auth.tokens_file: {}",
            setup.path("tokens.toml").display()
        )),
        "{log}"
    );
    assert!(
        !log.contains(&dave) && !log.contains(&token("bob")),
        "no token in the log"
    );
    let (_, still) = subscribe_as(addr, &dave, json!({"organization": "acme"})).await;
    assert_eq!(still["type"], "subscription_confirmed", "{still}");

    // An invalid configuration file changes nothing and is counted.
    std::fs::write(setup.path("hookfan.toml"), "[server]\nlisten = 5\n").unwrap();
    sighup(&setup.daemon);
    wait_log(
        &setup.daemon,
        "reload refused: the configuration is invalid",
    );
    let (_, text) = request(addr, "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(
        metric(&text, "hookfan_config_reloads_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "hookfan_config_reloads_total{result=\"failed\"}"),
        2.0
    );
    assert_eq!(
        setup.daemon.webhook("pull_request", &pr(2), "tok-2").await,
        200
    );
    assert_eq!(next_event(&mut alice).await["delivery_id"], "tok-2");
}
