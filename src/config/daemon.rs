//! The daemon's own sections: `[server]` (its listeners and the timing of
//! its connections) and `[log]`. They live here, with the aggregate, rather
//! than in `server`: the server is started from the whole [`super::Config`],
//! so its section under it would make the two modules import each other.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, optional_socket_addr, range, require, socket_addr};
use crate::tls::TlsConfig;
use crate::ws::{Origin, WsOptions};

/// `[server]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; `--listen` overrides it. A host name
    /// (`localhost:8080`) is resolved when the config is read.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// A separate address for `/metrics` (e.g. `127.0.0.1:9090`); when set,
    /// the public listener no longer serves `/metrics`.
    #[serde(
        deserialize_with = "optional_socket_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a client has to send its subscription after the upgrade.
    pub handshake_timeout_s: u64,
    /// Seconds between the server's `{"type":"ping"}` messages.
    pub ping_interval_s: u64,
    /// Seconds of client silence after which the connection is closed.
    pub read_timeout_s: u64,
    /// Seconds a write to a client may stall before the client is dropped.
    pub write_timeout_s: u64,
    /// Upper bound, in seconds, on a graceful shutdown.
    pub shutdown_timeout_s: u64,
    /// Seconds a client may take to send a complete HTTP request head.
    pub header_read_timeout_s: u64,
    /// Serve the live events page at `/ui/` (and the JavaScript client at
    /// `/ui/hookfan.js`).
    pub ui: bool,
    /// Pages (`scheme://host[:port]`) besides the server's own host that
    /// may open `/ws` and `/events`, and read `/events` from a script
    /// (CORS). Empty: `Origin` is not judged. Read lower-case, without the
    /// scheme's default port.
    pub allowed_origins: Vec<Origin>,
    /// `[server.tls]`: serve `https`/`wss` on `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    /// Port 8080 on every interface; the connection timings are the
    /// WebSocket endpoint's own ([`WsOptions`]).
    fn default() -> Self {
        let ws = WsOptions::default();
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: None,
            handshake_timeout_s: ws.handshake_timeout.as_secs(),
            ping_interval_s: ws.ping_interval.as_secs(),
            read_timeout_s: ws.read_timeout.as_secs(),
            write_timeout_s: ws.write_timeout.as_secs(),
            shutdown_timeout_s: 10,
            header_read_timeout_s: 30,
            ui: true,
            allowed_origins: Vec::new(),
            tls: None,
        }
    }
}

impl Section for ServerConfig {
    fn validate(&self) -> Vec<ConfigError> {
        let mut errs: Vec<ConfigError> = [
            range(
                "server.handshake_timeout_s",
                self.handshake_timeout_s,
                1..=300,
                "seconds",
            ),
            range(
                "server.ping_interval_s",
                self.ping_interval_s,
                1..=3600,
                "seconds",
            ),
            require(
                self.read_timeout_s > self.ping_interval_s && self.read_timeout_s <= 7200,
                "server.read_timeout_s",
                || {
                    format!(
                        "must be greater than server.ping_interval_s ({}) and at most 7200, got {}",
                        self.ping_interval_s, self.read_timeout_s
                    )
                },
            ),
            range(
                "server.write_timeout_s",
                self.write_timeout_s,
                1..=600,
                "seconds",
            ),
            range(
                "server.shutdown_timeout_s",
                self.shutdown_timeout_s,
                1..=3600,
                "seconds",
            ),
            range(
                "server.header_read_timeout_s",
                self.header_read_timeout_s,
                1..=600,
                "seconds",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(m) = self.metrics_listen {
            errs.extend(require(
                m != self.listen || m.port() == 0,
                "server.metrics_listen",
                || format!("must differ from server.listen ({m})"),
            ));
        }
        if let Some(tls) = &self.tls {
            errs.extend(tls.validate(self.listen));
        }
        errs
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            tls.resolve_paths(base);
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`info`) or a `tracing` filter directive (`info,hookfan=debug`).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl Section for LogConfig {
    fn validate(&self) -> Vec<ConfigError> {
        require(valid_log_filter(&self.level), "log.level", || {
            format!(
                "{:?} is neither a level (error, warn, info, debug, trace) nor a filter directive",
                self.level
            )
        })
        .into_iter()
        .collect()
    }
}

/// A level, or comma-separated `level` / `target=level` directives. Stricter
/// than `EnvFilter`, which would read a mistyped level as a target name.
fn valid_log_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level_ok = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    !s.trim().is_empty()
        && s.split(',').all(|part| match part.rsplit_once('=') {
            Some((target, level)) => !target.trim().is_empty() && level_ok(level),
            None => level_ok(part),
        })
        && tracing_subscriber::EnvFilter::try_new(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters() {
        for ok in ["info", "DEBUG", "warn,hookfan=trace", "hookfan::ws=debug"] {
            assert!(valid_log_filter(ok), "{ok}");
        }
        for bad in ["loud", "", "info,", "hookfan=loud", "=info"] {
            assert!(!valid_log_filter(bad), "{bad}");
        }
    }
}
