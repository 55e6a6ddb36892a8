//! Shared test helpers: a real server on 127.0.0.1:0, a real HTTP client
//! for webhooks, and a real WebSocket client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hookfan::auth::AuthProvider;
use hookfan::auth::static_tokens::StaticTokens;
use hookfan::config::{Config, WebhookSecret};
use hookfan::server::ServerHandle;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod pki;

pub const SECRET: &[u8] = b"test-secret";

/// A token for `name`: `ghp_` + the name padded to 36 characters.
pub fn token(name: &str) -> String {
    format!("ghp_{name}{}", "0".repeat(36 - name.len()))
}

/// Logins, orgs and tiers of the test token table.
pub const USERS: &[(&str, &[&str], &str)] = &[
    ("alice", &["acme"], "free"),
    ("bob", &["acme", "widgets"], "pro"),
    ("carol", &["widgets"], "flock"),
    ("dave", &[], "free"),
    ("codertocat", &["acme"], "pro"),
    ("octocat", &["acme"], "free"),
    ("hubot", &["acme", "zeta"], "pro"),
    ("racer", &["org0", "org1", "org2", "org3"], "pro"),
    ("trudy", &["evilorg"], "pro"),
];

/// The app installation token (pinned to acme).
pub fn app_token() -> String {
    format!("ghs_acmeapp{}", "0".repeat(29))
}

/// The project's own webhook payloads (scripts/gen-fixtures.py).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks"
    ))
}

/// A directory of GitHub's own example payloads for the cross-check, when
/// `HOOKFAN_SHARED_FIXTURES` names one.
pub fn shared_fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HOOKFAN_SHARED_FIXTURES")?);
    assert!(
        dir.is_dir(),
        "HOOKFAN_SHARED_FIXTURES={} is not a directory",
        dir.display()
    );
    Some(dir)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn tokens_toml() -> String {
    tokens_toml_for(USERS)
}

/// A token table for `users` (login, orgs, tier), plus the app
/// installation token.
pub fn tokens_toml_for(users: &[(&str, &[&str], &str)]) -> String {
    let mut s = String::new();
    for (login, orgs, tier) in users {
        let orgs: Vec<String> = orgs.iter().map(|o| format!("\"{o}\"")).collect();
        s += &format!(
            "[[token]]\ntoken = \"{}\"\nlogin = \"{login}\"\norgs = [{}]\ntier = \"{tier}\"\n",
            token(login),
            orgs.join(", ")
        );
    }
    s += &format!(
        "[[token]]\ntoken = \"{}\"\norgs = [\"acme\"]\napp_installation = true\n",
        app_token()
    );
    s
}

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with the base test config plus `extra` TOML (whole
    /// sections; they replace nothing, so do not repeat a base section).
    pub async fn start(extra: &str) -> TestServer {
        Self::start_with(extra, |_| {}).await
    }

    /// Like `start`, with a chance to adjust the parsed config.
    pub async fn start_with(extra: &str, adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_auth(extra, adjust, |config| {
            Arc::new(StaticTokens::load(config.auth.tokens_file.as_ref().unwrap()).unwrap())
        })
        .await
    }

    /// Like `start_with`, with the auth provider made by `auth` from the
    /// adjusted config (the base config's `[auth]` section is the static
    /// test token table).
    pub async fn start_with_auth(
        extra: &str,
        adjust: impl FnOnce(&mut Config),
        auth: impl FnOnce(&Config) -> Arc<dyn AuthProvider>,
    ) -> TestServer {
        Self::try_start_with_auth(extra, adjust, auth)
            .await
            .unwrap()
    }

    /// Like `start`, returning the server's refusal to start.
    pub async fn try_start(extra: &str) -> std::io::Result<TestServer> {
        Self::try_start_with_auth(
            extra,
            |_| {},
            |config| {
                Arc::new(StaticTokens::load(config.auth.tokens_file.as_ref().unwrap()).unwrap())
            },
        )
        .await
    }

    async fn try_start_with_auth(
        extra: &str,
        adjust: impl FnOnce(&mut Config),
        auth: impl FnOnce(&Config) -> Arc<dyn AuthProvider>,
    ) -> std::io::Result<TestServer> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.toml"), tokens_toml()).unwrap();
        let text =
            format!("[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n{extra}\n");
        let mut config = Config::parse(&text, dir.path()).unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let auth = auth(&config);
        let handle =
            hookfan::server::start(&config, &WebhookSecret::from_bytes(SECRET), auth).await?;
        let addr = handle.local_addr();
        Ok(TestServer {
            handle: Some(handle),
            addr,
            dir,
        })
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn hub(&self) -> &hookfan::Hub {
        self.handle().hub()
    }

    /// Posts a webhook signed with the test secret, with a delivery id of
    /// its own (a delivery id already accepted is not broadcast again).
    pub async fn webhook(&self, kind: &str, body: &[u8]) -> (u16, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.webhook_with_id(kind, body, &format!("test-delivery-{n}"))
            .await
    }

    /// Posts a webhook with a given delivery id.
    pub async fn webhook_with_id(&self, kind: &str, body: &[u8], delivery: &str) -> (u16, String) {
        let sig = hookfan::sign(SECRET, body);
        post(
            self.addr,
            "/webhook",
            &[
                ("x-github-event", kind),
                ("x-hub-signature-256", &sig),
                ("x-github-delivery", delivery),
            ],
            body.to_vec(),
        )
        .await
    }

    /// Waits until `cond` holds for the hub's stats (shards synced first).
    pub async fn wait_stats(&self, what: &str, cond: impl Fn(&hookfan::HubStats) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.hub().sync().await;
            let s = self.hub().stats();
            if cond(&s) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}: {s:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A plain HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    request(addr, "POST", path, headers, body).await
}

/// A fixture of `acme/api` moved to the repository `org/repo`: its names,
/// URLs and owner, with `repository.private` set to `private`. Commit SHAs
/// are kept, so that the same commit appears in both repositories.
pub fn rehomed(name: &str, org: &str, repo: &str, private: bool) -> Vec<u8> {
    let text = String::from_utf8(fixture(name))
        .unwrap()
        .replace("acme/api", &format!("{org}/{repo}"))
        .replace("\"login\": \"acme\"", &format!("\"login\": \"{org}\""))
        .replace("\"name\": \"api\"", &format!("\"name\": \"{repo}\""));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["repository"]["private"] = json!(private);
    serde_json::to_vec(&v).unwrap()
}

/// The value of `name` (with its labels) in a metrics text, if it is there.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of `name` in a metrics text; 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    metric_value(text, name).unwrap_or(0.0)
}

/// The metrics text of the server at `addr` (its public `/metrics`).
pub async fn metrics_text(addr: SocketAddr) -> String {
    request(addr, "GET", "/metrics", &[], Vec::new()).await.1
}

/// The value of a metric of the server at `addr`; 0 when absent.
pub async fn metric_of(addr: SocketAddr, name: &str) -> f64 {
    metric(&metrics_text(addr).await, name)
}

/// A minimal `pull_request` payload.
pub fn pr_payload(org: &str, repo: &str, number: u64, author: &str, private: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "html_url": format!("https://github.com/{org}/{repo}/pull/{number}"),
            "number": number,
            "user": {"login": author},
            "head": {"sha": format!("{:040x}", number)},
            "assignees": [],
            "requested_reviewers": [],
        },
        "repository": {
            "html_url": format!("https://github.com/{org}/{repo}"),
            "full_name": format!("{org}/{repo}"),
            "private": private,
            "owner": {"login": org},
        },
        "sender": {"login": author},
    }))
    .unwrap()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects with `token` (no Authorization header when `None`).
pub async fn ws_connect(
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// Connects as `login` and sends `subscription`; returns the socket and the
/// server's first answer.
pub async fn subscribe_as(addr: SocketAddr, tok: &str, subscription: Value) -> (Ws, Value) {
    let mut ws = ws_connect(addr, Some(tok)).await.expect("upgrade");
    ws.send(Message::text(subscription.to_string()))
        .await
        .unwrap();
    let first = next_json(&mut ws).await;
    (ws, first)
}

/// Subscribes and asserts the subscription is confirmed.
pub async fn subscribe(addr: SocketAddr, login: &str, subscription: Value) -> Ws {
    let (ws, first) = subscribe_as(addr, &token(login), subscription).await;
    assert_eq!(first["type"], "subscription_confirmed", "{first}");
    ws
}

/// The next text message as JSON (10 s at most).
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// The next event, skipping keepalive pings.
pub async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] != "ping" || v.get("url").is_some() {
            return v;
        }
    }
}

/// Reads until the close frame, answers it (completing the close handshake,
/// so the server need not wait for the answer), and returns its code and
/// reason.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("timed out waiting for close");
        let close = match msg {
            Some(Ok(Message::Close(Some(f)))) => (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close: {e}"),
            None => panic!("stream ended without close frame"),
        };
        // tungstenite sends its answer when polled again.
        let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        return close;
    }
}

/// A client that subscribes and then never reads: a tiny receive buffer, so
/// the server's writes to it stall soon.
pub async fn slow_client(addr: SocketAddr, login: &str, subscription: Value) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token(login)).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    ws.send(Message::text(subscription.to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");
    ws
}

/// An event for `org` broadcast through the hub directly, with a delivery
/// id of `pad` extra bytes (large frames fill a stalled socket sooner).
pub fn hub_event(org: &str, id: &str, pad: usize) -> hookfan::Event {
    hookfan::Event::new(hookfan::EventParts {
        kind: "pull_request".into(),
        delivery_id: format!("{id}{}", "x".repeat(pad)),
        url: format!("https://github.com/{org}/api/pull/1"),
        org: Some(org.into()),
        ..Default::default()
    })
}

/// The daemon as a child process on 127.0.0.1:0, its stderr collected.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

pub const DAEMON_SECRET: &str = "operations-test-secret-value";

/// The daemon with the test token table and `extra` config sections.
pub fn spawn_daemon(extra: &str) -> Daemon {
    spawn_daemon_with(extra, &tokens_toml())
}

/// The daemon with a token table of its own.
pub fn spawn_daemon_with(extra: &str, tokens: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens.toml"), tokens).unwrap();
    let config = dir.path().join("hookfan.toml");
    std::fs::write(
        &config,
        format!("[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n{extra}"),
    )
    .unwrap();
    let mut daemon = spawn_daemon_at(&config);
    daemon._dir = Some(dir);
    daemon
}

/// The daemon on the config file at `config`, listening on 127.0.0.1:0
/// (with `GITHUB_WEBHOOK_SECRET` set to [`DAEMON_SECRET`]).
pub fn spawn_daemon_at(config: &std::path::Path) -> Daemon {
    spawn_daemon_listening(config, "127.0.0.1:0")
}

/// The daemon on the config file at `config`, listening on `listen`.
pub fn spawn_daemon_listening(config: &std::path::Path, listen: &str) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookfan"))
        .args(["--config", config.to_str().unwrap(), "--listen", listen])
        .env("GITHUB_WEBHOOK_SECRET", DAEMON_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .parse()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let mut pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Daemon {
        child,
        addr,
        stderr,
        _dir: None,
    }
}

impl Daemon {
    pub fn sigterm(&self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Waits for the exit; returns its status and how long it took.
    pub fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, start.elapsed());
            }
            assert!(start.elapsed() < limit, "still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn webhook(&self, kind: &str, body: &[u8], id: &str) -> u16 {
        let sig = hookfan::sign(DAEMON_SECRET.as_bytes(), body);
        post(
            self.addr,
            "/webhook",
            &[
                ("x-github-event", kind),
                ("x-hub-signature-256", &sig),
                ("x-github-delivery", id),
            ],
            body.to_vec(),
        )
        .await
        .0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Floods acme through the hub with large events (64 KiB delivery ids), in
/// bursts that `readers` read in full, until the hub's stats say `done`;
/// returns how many were sent.
pub async fn flood_until(
    server: &TestServer,
    readers: &mut [Ws],
    done: impl Fn(&hookfan::HubStats) -> bool,
) -> u64 {
    let mut sent = 0u64;
    loop {
        for _ in 0..4 {
            server
                .hub()
                .broadcast(hub_event("acme", &format!("f{sent:05}-"), 64 * 1024));
            sent += 1;
        }
        for ws in readers.iter_mut() {
            for _ in 0..4 {
                next_event(ws).await;
            }
        }
        server.hub().sync().await;
        if done(&server.hub().stats()) {
            return sent;
        }
        assert!(sent < 20_000, "never happened");
    }
}

/// A bare WebSocket client that does only what a test tells it: it never
/// answers pings by itself (unlike tungstenite).
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades with `token` and sends `subscription` as a masked text frame.
    pub async fn subscribe(addr: SocketAddr, token: &str, subscription: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "eof during upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        buf.drain(..head_end);
        let mut ws = RawWs { stream, buf };
        ws.send(0x1, subscription.as_bytes()).await;
        ws
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x80 | opcode];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).await.unwrap();
    }

    /// The next frame from the server (opcode, payload); `None` at EOF.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    l => (l as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(15), self.stream.read(&mut chunk))
                .await
                .expect("timed out waiting for a frame")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next text frame as JSON, skipping control frames.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let (op, p) = self.next_frame().await.expect("connection ended");
            if op == 0x1 {
                return serde_json::from_slice(&p).unwrap();
            }
        }
    }
}

/// A nats-server with JetStream on 127.0.0.1, its store in a temp dir; the
/// binary from `HOOKFAN_NATS_SERVER`, else `.tools/bin/nats-server`, which
/// `scripts/install-nats.sh` installs (run here when it is missing, so that
/// `cargo test` alone is enough).
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    store: tempfile::TempDir,
    conf: Option<PathBuf>,
}

fn nats_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HOOKFAN_NATS_SERVER") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tools = root.join(".tools/bin/nats-server");
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if !tools.exists() {
            let status = Command::new("bash")
                .arg(root.join("scripts/install-nats.sh"))
                .stdout(Stdio::null())
                .status()
                .expect("run scripts/install-nats.sh");
            assert!(status.success(), "scripts/install-nats.sh failed");
        }
    });
    tools
}

impl Nats {
    /// Starts a server on a free port.
    pub fn start() -> Nats {
        Self::start_inner(None)
    }

    /// Starts a server on a free port with `conf` (nats-server's config
    /// syntax: `tls { ... }`, `authorization { ... }`) as its config file.
    pub fn start_with(conf: &str) -> Nats {
        Self::start_inner(Some(conf))
    }

    fn start_inner(conf: Option<&str>) -> Nats {
        let store = tempfile::tempdir().unwrap();
        let conf = conf.map(|text| {
            let path = store.path().join("nats.conf");
            std::fs::write(&path, text).unwrap();
            path
        });
        let (child, port) = Self::spawn(store.path(), -1, conf.as_deref());
        Nats {
            child: Some(child),
            port,
            store,
            conf,
        }
    }

    fn spawn(store: &std::path::Path, port: i32, conf: Option<&std::path::Path>) -> (Child, u16) {
        let bin = nats_binary();
        let mut cmd = Command::new(&bin);
        if let Some(conf) = conf {
            cmd.arg("-c").arg(conf);
        }
        let mut child = cmd
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.join("js"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; run scripts/install-nats.sh (or set HOOKFAN_NATS_SERVER)",
                    bin.display()
                )
            });
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let port = loop {
            line.clear();
            assert!(
                lines.read_line(&mut line).unwrap() > 0,
                "nats-server exited before listening"
            );
            if let Some(at) = line.find("Listening for client connections on ") {
                let addr = line[at..].rsplit(' ').next().unwrap().trim();
                break addr.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        (child, port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): what a crash looks like to the nodes.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        let (child, port) = Self::spawn(self.store.path(), self.port as i32, self.conf.as_deref());
        assert_eq!(port, self.port);
        self.child = Some(child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
