//! A running server: its addresses, parts, reload and shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Phase;
use super::tls::{TlsMode, cert_problem};
use crate::checks::ConfigErrors;
use crate::config::Config;
use crate::tls::server::{CertStore, Certificate};
use crate::webhook::WebhookSecret;
use crate::{AuthProvider, CommitCache, ConnCounts, Hub, Metrics, WebhookKeys, WsEndpoint};

/// Why [`ServerHandle::reload`] applied nothing: the file is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Every problem of the file, as `Config::load` reports them.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

/// A running server.
pub struct ServerHandle {
    pub(super) local_addr: SocketAddr,
    pub(super) hub: Hub,
    pub(super) ws: WsEndpoint,
    pub(super) commit_cache: Arc<CommitCache>,
    /// The webhook secrets in force, re-read from `webhook.secret_file`.
    pub(super) webhook_keys: Arc<WebhookKeys>,
    pub(super) phase: watch::Sender<Phase>,
    pub(super) accept_tasks: Vec<JoinHandle<()>>,
    pub(super) metrics_addr: Option<SocketAddr>,
    pub(super) redirect_addr: Option<SocketAddr>,
    pub(super) shutdown_timeout: Duration,
    pub(super) auth: Arc<dyn AuthProvider>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tls: Option<Arc<CertStore>>,
    /// The configuration as last (re)loaded.
    pub(super) config: Mutex<Config>,
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address of the plain-HTTP redirect listener, when
    /// `server.tls.redirect_listen` is set.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// Reloads the configuration file at `path` without dropping a
    /// connection: the TLS certificate and key, the webhook secrets of
    /// `webhook.secret_file`, the static tokens file and the tier lists
    /// (the caller applies `log.level` from the returned config). Each part that fails keeps its old value; every failure is
    /// logged with the file and the problem and counted in
    /// `hookfan_config_reloads_total{result="failed"}`. Changes to other
    /// keys are reported as needing a restart. `Err` when the file itself is
    /// invalid (nothing is applied then). `adjust` applies what the command
    /// line overrode at start (`--listen`), so that it is not taken for a
    /// change.
    pub fn reload(
        &self,
        path: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ReloadError> {
        let new = match Config::load(path) {
            Ok(mut c) => {
                adjust(&mut c);
                c
            }
            Err(errors) => {
                let problem = errors.to_string();
                tracing::error!(file = %path.display(), problem = %problem.trim_end(), "reload refused: the configuration is invalid; keeping the running one");
                self.metrics.reload("failed");
                return Err(errors.into());
            }
        };
        let mut running = self.config.lock().expect("config lock");
        let failures = self.apply(&new);
        let restart = needs_restart(&running, &new);
        if !restart.is_empty() {
            tracing::warn!(sections = ?restart, "these changes take effect only at the next restart");
        }
        for f in &failures {
            tracing::error!(file = %path.display(), problem = %f, "reload: keeping the previous value");
        }
        self.metrics
            .reload(if failures.is_empty() { "ok" } else { "failed" });
        tracing::info!(file = %path.display(), failures = failures.len(), "configuration reloaded");
        *running = new.clone();
        Ok(new)
    }

    /// Applies what a reload changes in place (the certificate, the
    /// webhook secrets, the tokens, the tiers); returns the problems of the
    /// parts that kept their old value.
    fn apply(&self, new: &Config) -> Vec<String> {
        let mut failures = Vec::new();
        // The environment's secret cannot change under a running process:
        // only a file is read again.
        if let Some(path) = &new.webhook.secret_file {
            match WebhookSecret::read_file(path) {
                Ok(s) => {
                    self.webhook_keys.set(&s);
                    tracing::info!(file = %path.display(), lines = ?self.webhook_keys.lines(), "webhook secrets reloaded");
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if let (Some(store), Some((cert, key))) = (&self.tls, TlsMode::of(new).cert_files()) {
            match Certificate::load(cert, key) {
                Ok(c) => {
                    store.set(&c);
                    tracing::info!(cert = %cert.display(), not_after = %crate::tls::server::rfc3339(c.not_after), "TLS certificate reloaded");
                }
                Err(e) => failures.push(cert_problem(&e).to_string()),
            }
        }
        // `to_string` takes the provider's error whatever its type.
        if let Err(e) = self.auth.reload(&new.auth, &new.tiers) {
            failures.push(e.to_string());
        }
        // Connected clients are held to the tokens and tiers of now.
        self.ws.recheck_access();
        failures
    }

    /// The broker.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The commit cache.
    pub fn commit_cache(&self) -> &CommitCache {
        &self.commit_cache
    }

    /// WebSocket connection slots held (see `limits.*`).
    pub fn connection_counts(&self) -> ConnCounts {
        self.ws.connection_counts()
    }

    /// Drains and stops: `/healthz` turns 503, webhooks and upgrades get 503,
    /// clients get their queued frames then a close frame 1001. Returns once
    /// every client is gone, or when the shutdown timeout is reached
    /// (whichever is first); the listener is closed on return.
    pub async fn shutdown(&self) {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let _ = self.phase.send(Phase::Draining);
        self.hub.stop();
        let hub = self.hub.clone();
        let drained = tokio::time::timeout_at(deadline, async move {
            while hub.stats().live_sessions > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.hub.stats().live_sessions,
                "shutdown timeout reached with clients still connected"
            );
        }
        let _ = tokio::time::timeout_at(deadline, self.hub.stopped()).await;
        for t in &self.accept_tasks {
            t.abort();
        }
        let _ = self.phase.send(Phase::Stopped);
    }
}

/// The sections of `new` that differ from `old` in what a reload does not
/// apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    // Copy what a reload applies, then compare the rest section by section.
    let mut new = new.clone();
    let files = |c: &Config| matches!(TlsMode::of(c), TlsMode::Files { .. });
    if files(old)
        && files(&new)
        && let (Some(o), Some(n)) = (&old.server.tls, &mut new.server.tls)
    {
        n.cert_file.clone_from(&o.cert_file);
        n.key_file.clone_from(&o.key_file);
    }
    // A secret file named is read at every reload; going back to the
    // environment's secret takes a restart.
    if new.webhook.secret_file.is_some() {
        new.webhook.secret_file.clone_from(&old.webhook.secret_file);
    }
    new.auth.tokens_file.clone_from(&old.auth.tokens_file);
    new.tiers.pro.clone_from(&old.tiers.pro);
    new.tiers.flock.clone_from(&old.tiers.flock);
    new.log.level.clone_from(&old.log.level);
    fn differ<T: serde::Serialize>(a: &T, b: &T) -> bool {
        toml::to_string(a).ok() != toml::to_string(b).ok()
    }
    [
        ("server", differ(&old.server, &new.server)),
        ("webhook", differ(&old.webhook, &new.webhook)),
        ("broker", differ(&old.broker, &new.broker)),
        ("auth", differ(&old.auth, &new.auth)),
        ("limits", differ(&old.limits, &new.limits)),
        ("tiers", differ(&old.tiers, &new.tiers)),
        ("log", differ(&old.log, &new.log)),
        ("replay", differ(&old.replay, &new.replay)),
        ("cluster", differ(&old.cluster, &new.cluster)),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsConfig;

    #[test]
    fn a_reload_applies_certificate_files_secrets_tokens_tiers_and_log_level() {
        let files = |cert: &str| TlsConfig {
            cert_file: Some(cert.into()),
            key_file: Some(format!("{cert}.key").into()),
            ..TlsConfig::default()
        };
        let mut old = Config::default();
        old.server.tls = Some(files("a.pem"));
        let mut new = old.clone();
        new.server.tls = Some(files("b.pem"));
        new.log.level = "debug".into();
        new.auth.tokens_file = Some("other.toml".into());
        new.webhook.secret_file = Some("secret".into());
        assert!(needs_restart(&old, &new).is_empty(), "a secret file named");
        old.webhook.secret_file = Some("secret".into());
        new.webhook.secret_file = None;
        assert_eq!(
            needs_restart(&old, &new),
            ["webhook"],
            "back to the environment"
        );
        new.webhook.secret_file = Some("other-secret".into());
        new.server.shutdown_timeout_s += 1;
        new.replay.max_events += 1;
        assert_eq!(needs_restart(&old, &new), ["server", "replay"]);
    }

    #[test]
    fn reload_error_reads_as_the_config_errors() {
        let errors = ConfigErrors(vec![crate::checks::ConfigError::new(
            "server.listen",
            "bad",
        )]);
        assert_eq!(
            ReloadError::from(errors.clone()).to_string(),
            errors.to_string()
        );
    }
}
