//! The `hookfan` binary as a child process.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{post_webhook, tokens_toml};

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

    /// The log once it holds `needle` (10 s at most): a line may reach the
    /// pipe just after what it reports became visible.
    pub async fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stderr.lock().unwrap().clone();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn webhook(&self, kind: &str, body: &[u8], id: &str) -> u16 {
        post_webhook(self.addr, DAEMON_SECRET.as_bytes(), kind, id, body)
            .await
            .0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
