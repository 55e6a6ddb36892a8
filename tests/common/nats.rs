//! nats-server for the cluster tests.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::installed_tool;

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
    match std::env::var_os("HOOKFAN_NATS_SERVER") {
        Some(p) => p.into(),
        None => installed_tool("nats-server", "install-nats.sh"),
    }
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
        self.start_again();
    }

    /// Restarts it the way an operator does: SIGTERM, wait until it has
    /// shut down (JetStream's store flushed), then, `down` later (a slow
    /// restart), start it again on the same port with the same store.
    pub fn restart_gracefully(&mut self, down: std::time::Duration) {
        if let Some(mut c) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill -TERM nats-server");
            c.wait().unwrap();
        }
        std::thread::sleep(down);
        self.start_again();
    }

    fn start_again(&mut self) {
        let (child, port) = Self::spawn(self.store.path(), self.port as i32, self.conf.as_deref());
        assert_eq!(port, self.port);
        self.child = Some(child);
    }
}

/// A cluster node's config: `nats`, `stream`, and room for many clients
/// from 127.0.0.1.
pub fn node_config(nats: &Nats, stream: &str, extra: &str) -> String {
    format!(
        "[limits]\nmax_conns_per_ip = 2000\n[cluster]\nnats_url = \"{}\"\nstream = \"{stream}\"\npublish_timeout_s = 2\n{extra}",
        nats.url()
    )
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
