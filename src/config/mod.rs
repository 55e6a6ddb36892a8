//! The daemon's configuration: one TOML file, every key optional with a safe
//! default, unknown keys refused, and every problem reported at once with the
//! key it concerns (`server.listen: ...`).
//!
//! Each module owns its section, with its defaults and its checks
//! (`auth/config.rs`, `tls/config.rs`, `cluster/config.rs`, ...); this
//! module reads the file (`lenient.rs` reports every bad key), resolves
//! relative paths, and holds the aggregate [`Config`], whose validation is
//! each section's. The daemon's own `[server]` and `[log]` are in
//! `daemon.rs`. The names are all re-exported here, where they have always
//! been.
//!
//! Secrets never live in the file itself: the webhook secret comes from
//! `webhook.secret_file` or the `GITHUB_WEBHOOK_SECRET` environment variable.
//! Relative paths in the file are resolved against the file's own directory,
//! made absolute, so a config works the same whatever the daemon's working
//! directory is, and the config `check-config` prints works from anywhere.

mod daemon;
mod lenient;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::HubConfig;
use crate::checks::Section;
use crate::webhook::WebhookOptions;
use crate::ws::WsOptions;

pub use crate::auth::{AuthConfig, AuthProviderKind};
pub use crate::broker::{BrokerConfig, ReplaySection as ReplayConfig, SlowClientPolicy};
pub use crate::checks::{ConfigError, ConfigErrors, is_event_type, is_login};
pub use crate::cluster::ClusterConfig;
pub use crate::github_app::GithubAppConfig;
pub use crate::limits::LimitsConfig;
pub use crate::payloads::PayloadsConfig;
pub use crate::redelivery::RedeliveryConfig;
pub use crate::tier::TiersConfig;
pub use crate::tls::{AcmeConfig, LETS_ENCRYPT_DIRECTORY, TlsConfig};
pub use crate::webhook::{AllowedSource, SECRET_ENV, SecretSource, WebhookConfig, WebhookSecret};
pub use daemon::{LogConfig, LogFormat, ServerConfig};

/// Declares [`Config`] from the list of its sections, the one place they
/// are listed: the same list names the known `[section]`s (in the file's
/// order, for the unknown-section message) and is what path resolution and
/// validation go through.
macro_rules! config_sections {
    ($($(#[doc = $doc:literal])* $name:ident: $ty:ty,)*) => {
        /// The whole configuration file.
        #[derive(Debug, Clone, Default, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Config {
            /// Marks a development config: the daemon warns loudly at start.
            pub development: bool,
            $($(#[doc = $doc])* pub $name: $ty,)*
            /// Directory relative paths are resolved against (the config
            /// file's), absolute.
            #[serde(skip)]
            pub base_dir: PathBuf,
        }

        /// The `[section]` names, in the file's order.
        const SECTIONS: &[&str] = &[$(stringify!($name)),*];

        impl Config {
            fn sections(&self) -> Vec<&dyn Section> {
                vec![$(&self.$name),*]
            }

            fn sections_mut(&mut self) -> Vec<&mut dyn Section> {
                vec![$(&mut self.$name),*]
            }
        }
    };
}

config_sections! {
    /// Listener and connection timing.
    server: ServerConfig,
    /// Webhook intake.
    webhook: WebhookConfig,
    /// Shards and per-client queues.
    broker: BrokerConfig,
    /// Token checking.
    auth: AuthConfig,
    /// Connection limits.
    limits: LimitsConfig,
    /// Paid tiers.
    tiers: TiersConfig,
    /// Full webhook payloads for the clients that ask.
    payloads: PayloadsConfig,
    /// Logging.
    log: LogConfig,
    /// The window of recent events clients resume from.
    replay: ReplayConfig,
    /// Several nodes sharing one event stream in NATS JetStream.
    cluster: ClusterConfig,
    /// hookfan as the GitHub App, to call the API as the App.
    github_app: GithubAppConfig,
    /// Asking GitHub to redeliver what it failed to deliver.
    redelivery: RedeliveryConfig,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        strict(Self::load_lenient(path))
    }

    /// Parses and validates config text; relative paths resolve against
    /// `base_dir` (itself made absolute against the working directory).
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        strict(Self::parse_lenient(text, base_dir))
    }

    /// Like [`Config::parse`], but also returns the config built from the
    /// keys that were valid (defaults elsewhere), so that a caller can go on
    /// checking what the config points at and report everything at once.
    pub fn parse_lenient(text: &str, base_dir: &Path) -> (Config, Vec<ConfigError>) {
        let table = match lenient::parse_table(text) {
            Ok(t) => t,
            Err(e) => return (Config::default(), vec![e]),
        };
        let (mut config, mut errors) = lenient::deserialize_collecting(table);
        config.base_dir = absolute_dir(base_dir);
        config.resolve_paths();
        errors.extend(config.validate());
        (config, errors)
    }

    /// Reads a file for [`Config::parse_lenient`].
    pub fn load_lenient(path: &Path) -> (Config, Vec<ConfigError>) {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_lenient(&text, path.parent().unwrap_or(Path::new("."))),
            Err(e) => (
                Config::default(),
                vec![ConfigError::new(
                    "config",
                    format!("cannot read {}: {e}", path.display()),
                )],
            ),
        }
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        for section in self.sections_mut() {
            section.resolve_paths(&base);
        }
    }

    /// Checks the values that parsed, then what a section needs of
    /// another; returns every problem found.
    fn validate(&self) -> Vec<ConfigError> {
        let mut errors: Vec<ConfigError> =
            self.sections().iter().flat_map(|s| s.validate()).collect();
        errors.extend(self.redelivery.validate_with(&self.github_app));
        errors
    }

    /// The WebSocket endpoint's settings, drawn from `[server]`, `[auth]`,
    /// `[limits]` and `[webhook]`.
    pub fn ws_options(&self) -> WsOptions {
        let (s, a, l) = (&self.server, &self.auth, &self.limits);
        WsOptions {
            handshake_timeout: Duration::from_secs(s.handshake_timeout_s),
            ping_interval: Duration::from_secs(s.ping_interval_s),
            read_timeout: Duration::from_secs(s.read_timeout_s),
            write_timeout: Duration::from_secs(s.write_timeout_s),
            auth_timeout: Duration::from_secs(a.check_timeout_s),
            allowed_events: self.webhook.allowed_list(),
            max_conns_per_ip: l.max_conns_per_ip,
            max_conns_total: l.max_conns_total,
            trusted_proxies: l.trusted_proxies.clone(),
            recheck_interval: Duration::from_secs(a.recheck_interval_s),
            // Half the API requests at most, the rest for handshakes.
            recheck_concurrency: (a.max_concurrent_api_requests / 2).max(1),
            max_failed_checks_per_ip: a.max_failed_checks_per_ip,
            upgrades_per_ip_per_minute: l.upgrades_per_minute(),
            rate_table_entries: l.rate_table_entries,
            allowed_origins: s.allowed_origins.clone(),
            payloads: self.payloads.clone(),
        }
    }

    /// The webhook endpoint's settings, drawn from `[webhook]` and
    /// `[limits]` (whose proxies are believed for senders too).
    pub fn webhook_options(&self) -> WebhookOptions {
        WebhookOptions {
            trusted_proxies: self.limits.trusted_proxies.clone(),
            rate_table_entries: self.limits.rate_table_entries,
            keep_payloads: self.payloads.enabled,
            ..self.webhook.options()
        }
    }

    /// The hub's settings, drawn from `[broker]`, `[tiers]` and `[replay]`;
    /// the epoch is left to the hub (a cluster's stream names its own).
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            shards: self.broker.effective_shards(),
            client_queue: self.broker.client_queue,
            slow_client: self.broker.slow_client,
            enforce_tiers: self.tiers.enforce,
            replay: self.replay.window(),
            epoch: None,
        }
    }
}

/// `dir` joined to the working directory when relative, so that every path
/// resolved against it is absolute: the paths `check-config` prints then
/// hold wherever its output is used. An empty `dir` (the parent of a bare
/// file name) is the working directory; `..` is kept, for the kernel to
/// follow as it would have.
fn absolute_dir(dir: &Path) -> PathBuf {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // Only a vanished working directory fails: then the path as given.
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The config, or every problem with it.
fn strict((config, errors): (Config, Vec<ConfigError>)) -> Result<Config, ConfigErrors> {
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

// Written here because it reads the aggregate; the secret itself is the
// webhook module's (`WebhookSecret::load_from` takes its section alone).
impl WebhookSecret {
    /// Loads the secret from `webhook.secret_file`, else from `env_value`
    /// (the value of `GITHUB_WEBHOOK_SECRET`). A trailing newline in the file
    /// is not part of the secret. An empty secret is refused.
    pub fn load(config: &Config, env_value: Option<&str>) -> Result<Self, ConfigError> {
        Self::load_from(&config.webhook, env_value)
    }
}
