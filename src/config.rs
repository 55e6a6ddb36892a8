//! The daemon's configuration: one TOML file, every key optional with a safe
//! default, unknown keys refused, and every problem reported at once with the
//! key it concerns (`server.listen: ...`).
//!
//! Secrets never live in the file itself: the webhook secret comes from
//! `webhook.secret_file` or the `GITHUB_WEBHOOK_SECRET` environment variable.
//! Relative paths in the file are resolved against the file's own directory,
//! so a config works the same whatever the daemon's working directory is.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::tier::Tier;

/// Environment variable holding the webhook secret when `webhook.secret_file`
/// is not set.
pub const SECRET_ENV: &str = "GITHUB_WEBHOOK_SECRET";

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Marks a development config: the daemon warns loudly at start.
    pub development: bool,
    /// Listener and connection timing.
    pub server: ServerConfig,
    /// Webhook intake.
    pub webhook: WebhookConfig,
    /// Shards and per-client queues.
    pub broker: BrokerConfig,
    /// Token checking.
    pub auth: AuthConfig,
    /// Connection limits.
    pub limits: LimitsConfig,
    /// Paid tiers.
    pub tiers: TiersConfig,
    /// Logging.
    pub log: LogConfig,
    /// The window of recent events clients resume from.
    pub replay: ReplayConfig,
    /// Several nodes sharing one event stream in NATS JetStream.
    pub cluster: ClusterConfig,
    /// Directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

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
    /// `[server.tls]`: serve `https`/`wss` on `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: a certificate from files, or from an ACME CA.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (reloaded on SIGHUP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate (reloaded on SIGHUP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// A plain-HTTP listener (e.g. `0.0.0.0:80`) that only redirects to https.
    #[serde(
        deserialize_with = "optional_socket_addr",
        skip_serializing_if = "Option::is_none"
    )]
    pub redirect_listen: Option<SocketAddr>,
    /// `[server.tls.acme]`: certificates obtained and renewed automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeConfig>,
}

/// Let's Encrypt's production directory, the default ACME CA.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[server.tls.acme]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// DNS names the certificate is for; each must reach this listener on
    /// port 443 (the `tls-alpn-01` challenge).
    pub domains: Vec<String>,
    /// Contacts for the account, e.g. `mailto:ops@example.com`.
    pub contact: Vec<String>,
    /// Where the account key and the certificate are kept across restarts.
    pub cache_dir: PathBuf,
    /// The CA's directory URL.
    pub directory_url: String,
    /// A PEM root to trust for the directory's own HTTPS (a private CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_ca_file: Option<PathBuf>,
    /// Renew when the certificate has fewer days than this left (or a third
    /// of its lifetime, for short-lived certificates).
    pub renew_before_days: u64,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            domains: Vec::new(),
            contact: Vec::new(),
            cache_dir: PathBuf::new(),
            directory_url: LETS_ENCRYPT_DIRECTORY.to_owned(),
            directory_ca_file: None,
            renew_before_days: 30,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: None,
            handshake_timeout_s: 5,
            ping_interval_s: 54,
            read_timeout_s: 90,
            write_timeout_s: 10,
            shutdown_timeout_s: 10,
            header_read_timeout_s: 30,
            tls: None,
        }
    }
}

/// `[webhook]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// File holding the webhook secret; else `GITHUB_WEBHOOK_SECRET`.
    pub secret_file: Option<PathBuf>,
    /// Largest accepted webhook body, in bytes.
    pub max_payload_bytes: u64,
    /// Event types accepted and subscribable; `["*"]` allows all.
    pub allowed_events: Vec<String>,
    /// Most commit SHAs remembered by the commit cache (0 disables it).
    pub commit_cache_entries: usize,
    /// Seconds a commit cache entry stays valid.
    pub commit_cache_ttl_s: u64,
    /// Seconds a webhook body may take, counted from the moment its request
    /// head has been received (longer: 408).
    pub body_timeout_s: u64,
    /// Most webhook requests in progress at once (more: 503).
    pub max_concurrent_requests: usize,
    /// Most bytes reserved at once for the bodies of webhooks in progress
    /// (more: 503).
    pub max_inflight_bytes: u64,
    /// Most delivery ids remembered to answer redeliveries `duplicate`
    /// (0 disables it).
    pub dedup_entries: usize,
    /// Seconds a delivery id is remembered.
    pub dedup_window_s: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret_file: None,
            max_payload_bytes: 1 << 20,
            allowed_events: vec!["*".to_owned()],
            commit_cache_entries: 100_000,
            commit_cache_ttl_s: 86_400,
            body_timeout_s: 10,
            max_concurrent_requests: 64,
            max_inflight_bytes: 256 << 20,
            dedup_entries: 100_000,
            dedup_window_s: 259_200,
        }
    }
}

/// Largest `webhook.max_inflight_bytes`: 16 GiB.
const MAX_INFLIGHT_BYTES: u64 = 16 << 30;

/// Longest `webhook.dedup_window_s`: 30 days (GitHub redelivers for 3).
const MAX_DEDUP_WINDOW_S: u64 = 30 * 86_400;

impl WebhookConfig {
    /// The allowed event types, or `None` when every type is allowed.
    pub fn allowed_list(&self) -> Option<Vec<String>> {
        if self.allowed_events.iter().any(|e| e == "*") {
            None
        } else {
            Some(self.allowed_events.clone())
        }
    }
}

/// What happens to a client whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowClientPolicy {
    /// Drop the newest event for that client and count it.
    Drop,
    /// Close the client with code 1008 so that it reconnects.
    Disconnect,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Shard threads; 0 means one per CPU.
    pub shards: usize,
    /// Frames queued per client before the slow-client policy applies.
    pub client_queue: usize,
    /// `drop` or `disconnect`.
    pub slow_client: SlowClientPolicy,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            shards: 0,
            client_queue: 256,
            slow_client: SlowClientPolicy::Drop,
        }
    }
}

impl BrokerConfig {
    /// The shard count after resolving `0` to the number of CPUs.
    pub fn effective_shards(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.shards
        }
    }
}

/// Which auth provider checks tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthProviderKind {
    /// The GitHub REST API.
    Github,
    /// A local token table (`auth.tokens_file`).
    Static,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `github` or `static`.
    pub provider: AuthProviderKind,
    /// GitHub or GitHub Enterprise API base URL.
    pub github_api_url: String,
    /// The static provider's token table.
    pub tokens_file: Option<PathBuf>,
    /// Seconds an accepted token's identity is cached.
    pub cache_ttl_s: u64,
    /// Seconds a rejected token stays rejected without asking GitHub again.
    pub negative_cache_ttl_s: u64,
    /// Most tokens cached.
    pub cache_entries: usize,
    /// Most GitHub API requests in flight at once.
    pub max_concurrent_api_requests: usize,
    /// Seconds one GitHub API request may take.
    pub api_timeout_s: u64,
    /// Seconds a whole token check (every request and retry) may take
    /// before the client gets `internal_error`.
    pub check_timeout_s: u64,
    /// Seconds between checks of a connected client's token (through the
    /// cache): a revoked token, a lost membership or a changed tier takes
    /// effect on live connections within about this long.
    pub recheck_interval_s: u64,
    /// Rejected tokens allowed per client IP (IPv6: per /64) and minute;
    /// past them the client's upgrades are answered 429 without a check
    /// until the minute has passed. 0: no limit.
    pub max_failed_checks_per_ip: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            provider: AuthProviderKind::Github,
            github_api_url: "https://api.github.com".to_owned(),
            tokens_file: None,
            cache_ttl_s: 300,
            negative_cache_ttl_s: 30,
            cache_entries: 100_000,
            max_concurrent_api_requests: 32,
            api_timeout_s: 10,
            check_timeout_s: 30,
            recheck_interval_s: 300,
            max_failed_checks_per_ip: 30,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// WebSocket connections allowed from one client IP.
    pub max_conns_per_ip: usize,
    /// WebSocket connections allowed in total.
    pub max_conns_total: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` header is trusted.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_conns_per_ip: 10,
            max_conns_total: 100_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[tiers]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TiersConfig {
    /// Withhold private-repository events from clients whose tier may not
    /// see them (on by default: a free client never receives them).
    pub enforce: bool,
    /// The tier of an account listed nowhere (a static token without a
    /// `tier`): `free`, or `pro` for an operator serving only their own
    /// organization, whose members may all see its private repositories.
    pub default_tier: Tier,
    /// Logins (users or organizations) of the pro tier.
    pub pro: Vec<String>,
    /// Logins (users or organizations) of the flock tier.
    pub flock: Vec<String>,
}

impl Default for TiersConfig {
    fn default() -> Self {
        Self {
            enforce: true,
            default_tier: Tier::Free,
            pro: Vec::new(),
            flock: Vec::new(),
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

/// `[replay]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Most events held for resuming clients; 0 turns resume off.
    pub max_events: usize,
    /// Most bytes the window holds (frames and event data).
    pub max_bytes: usize,
    /// Seconds an event is held at most.
    pub max_age_s: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_events: 100_000,
            max_bytes: 64 << 20,
            max_age_s: 3600,
        }
    }
}

/// `[cluster]`: without `nats_url`, a single node.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URL(s), comma-separated (`nats://127.0.0.1:4222`);
    /// absent: a single node.
    pub nats_url: Option<String>,
    /// The JetStream stream the nodes share.
    pub stream: String,
    /// The subject events are published on (the stream captures it).
    pub subject: String,
    /// Stream replicas, when a node creates the stream.
    pub replicas: usize,
    /// Oldest event the stream keeps, when a node creates the stream.
    pub max_age_s: u64,
    /// Most bytes the stream keeps, when a node creates the stream.
    pub max_bytes: u64,
    /// JetStream de-duplication window (by delivery id).
    pub duplicate_window_s: u64,
    /// No acknowledgement from JetStream within it: the webhook gets 503.
    pub publish_timeout_s: u64,
    /// This node's name in logs and metrics; default: the host name.
    pub node_name: Option<String>,
    /// NATS credentials file (JWT and NKey seed).
    pub creds_file: Option<PathBuf>,
    /// NATS user name, with [`Self::password_file`].
    pub user: Option<String>,
    /// File holding the NATS password of [`Self::user`] (first line).
    pub password_file: Option<PathBuf>,
    /// File holding a NATS authentication token (first line).
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) for a NATS server with TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a NATS server that verifies clients.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of [`Self::tls_cert_file`].
    pub tls_key_file: Option<PathBuf>,
    /// Most seqs one resume may read back in the stream (beyond this
    /// node's own window): an older resume is answered `too_old`.
    pub backfill_max_events: u64,
    /// Most bytes of events one resume may take from the stream.
    pub backfill_max_bytes: usize,
    /// Resumes reading the stream at once on this node; more wait.
    pub backfill_concurrency: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            stream: "HOOKFAN_EVENTS".to_owned(),
            subject: "hookfan.events".to_owned(),
            replicas: 1,
            max_age_s: 86_400,
            max_bytes: 1 << 30,
            duplicate_window_s: 120,
            publish_timeout_s: 5,
            node_name: None,
            creds_file: None,
            user: None,
            password_file: None,
            token_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            backfill_max_events: 100_000,
            backfill_max_bytes: 64 << 20,
            backfill_concurrency: 4,
        }
    }
}

impl ClusterConfig {
    /// The node's name: `node_name`, else the host name.
    pub fn node(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "hookfan".to_owned())
        })
    }
}

impl TlsConfig {
    fn validate(&self, listen: SocketAddr) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut check = |ok: bool, key: &str, msg: String| {
            if !ok {
                errs.push(ConfigError::new(key, msg));
            }
        };
        match (&self.cert_file, &self.key_file, &self.acme) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            (Some(_), None, None) => check(
                false,
                "server.tls.key_file",
                "is required with server.tls.cert_file".into(),
            ),
            (None, Some(_), None) => check(
                false,
                "server.tls.cert_file",
                "is required with server.tls.key_file".into(),
            ),
            (None, None, None) => check(
                false,
                "server.tls",
                "needs cert_file and key_file, or a [server.tls.acme] section".into(),
            ),
            (_, _, Some(_)) => check(
                false,
                "server.tls.acme",
                "cannot be combined with server.tls.cert_file / key_file: choose one".into(),
            ),
        }
        if let Some(r) = self.redirect_listen {
            check(
                r != listen || r.port() == 0,
                "server.tls.redirect_listen",
                format!("must differ from server.listen ({r})"),
            );
        }
        let Some(a) = &self.acme else {
            return errs;
        };
        check(
            !a.domains.is_empty(),
            "server.tls.acme.domains",
            "must name at least one domain".into(),
        );
        for d in &a.domains {
            check(
                is_dns_name(d),
                "server.tls.acme.domains",
                format!(
                    "{d:?} is not a DNS name (no wildcards: the tls-alpn-01 challenge cannot prove them)"
                ),
            );
        }
        for c in &a.contact {
            check(
                c.len() > "mailto:".len()
                    && c.starts_with("mailto:")
                    && !c.contains(char::is_whitespace),
                "server.tls.acme.contact",
                format!("{c:?} must be a mailto: URL, e.g. \"mailto:ops@example.com\""),
            );
        }
        check(
            !a.cache_dir.as_os_str().is_empty(),
            "server.tls.acme.cache_dir",
            "is required: the account key and certificate are kept there across restarts".into(),
        );
        check(
            a.directory_url.len() > "https://".len() && a.directory_url.starts_with("https://"),
            "server.tls.acme.directory_url",
            format!("{:?} must be an https:// URL", a.directory_url),
        );
        check(
            (1..=365).contains(&a.renew_before_days),
            "server.tls.acme.renew_before_days",
            format!("must be 1..=365 days, got {}", a.renew_before_days),
        );
        if let Some(f) = &a.directory_ca_file {
            check(
                f.is_file(),
                "server.tls.acme.directory_ca_file",
                format!("{} is not a readable file", f.display()),
            );
        }
        errs
    }
}

/// A DNS name of letters, digits and hyphens, with at least one dot.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// One problem in a configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`server.listen`), or `config` for the file as a whole.
    pub key: String,
    /// What is wrong, for people.
    pub message: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let (config, errors) = Self::load_lenient(path);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses and validates config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
        let (config, errors) = Self::parse_lenient(text, base_dir);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Like [`Config::parse`], but also returns the config built from the
    /// keys that were valid (defaults elsewhere), so that a caller can go on
    /// checking what the config points at and report everything at once.
    pub fn parse_lenient(text: &str, base_dir: &Path) -> (Config, Vec<ConfigError>) {
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                return (
                    Config::default(),
                    vec![ConfigError::new("config", syntax_message(text, &e))],
                );
            }
        };
        let (mut config, mut errors) = deserialize_collecting(table);
        config.base_dir = base_dir.to_path_buf();
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
        for p in [
            &mut self.webhook.secret_file,
            &mut self.auth.tokens_file,
            &mut self.cluster.creds_file,
            &mut self.cluster.password_file,
            &mut self.cluster.token_file,
            &mut self.cluster.tls_ca_file,
            &mut self.cluster.tls_cert_file,
            &mut self.cluster.tls_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(tls) = &mut self.server.tls {
            let (cache, ca) = match tls.acme.as_mut() {
                Some(a) => (Some(&mut a.cache_dir), a.directory_ca_file.as_mut()),
                None => (None, None),
            };
            for p in [tls.cert_file.as_mut(), tls.key_file.as_mut(), cache, ca]
                .into_iter()
                .flatten()
            {
                if p.is_relative() && !p.as_os_str().is_empty() {
                    *p = base.join(&*p);
                }
            }
        }
    }

    /// Checks the values that parsed; returns every problem found.
    fn validate(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut check = |ok: bool, key: &str, msg: String| {
            if !ok {
                errs.push(ConfigError::new(key, msg));
            }
        };
        let s = &self.server;
        check(
            (1..=300).contains(&s.handshake_timeout_s),
            "server.handshake_timeout_s",
            format!("must be 1..=300 seconds, got {}", s.handshake_timeout_s),
        );
        check(
            (1..=3600).contains(&s.ping_interval_s),
            "server.ping_interval_s",
            format!("must be 1..=3600 seconds, got {}", s.ping_interval_s),
        );
        check(
            s.read_timeout_s > s.ping_interval_s && s.read_timeout_s <= 7200,
            "server.read_timeout_s",
            format!(
                "must be greater than server.ping_interval_s ({}) and at most 7200, got {}",
                s.ping_interval_s, s.read_timeout_s
            ),
        );
        check(
            (1..=600).contains(&s.write_timeout_s),
            "server.write_timeout_s",
            format!("must be 1..=600 seconds, got {}", s.write_timeout_s),
        );
        check(
            (1..=3600).contains(&s.shutdown_timeout_s),
            "server.shutdown_timeout_s",
            format!("must be 1..=3600 seconds, got {}", s.shutdown_timeout_s),
        );
        check(
            (1..=600).contains(&s.header_read_timeout_s),
            "server.header_read_timeout_s",
            format!("must be 1..=600 seconds, got {}", s.header_read_timeout_s),
        );

        if let Some(m) = s.metrics_listen {
            check(
                m != s.listen || m.port() == 0,
                "server.metrics_listen",
                format!("must differ from server.listen ({m})"),
            );
        }

        let w = &self.webhook;
        check(
            (1024..=(64 << 20)).contains(&w.max_payload_bytes),
            "webhook.max_payload_bytes",
            format!("must be 1024..=67108864 bytes, got {}", w.max_payload_bytes),
        );
        check(
            !w.allowed_events.is_empty(),
            "webhook.allowed_events",
            "must not be empty (use [\"*\"] to allow every event type)".to_owned(),
        );
        let has_star = w.allowed_events.iter().any(|e| e == "*");
        check(
            !has_star || w.allowed_events.len() == 1,
            "webhook.allowed_events",
            "\"*\" cannot be combined with named event types".to_owned(),
        );
        for e in w.allowed_events.iter().filter(|e| *e != "*") {
            check(
                is_event_type(e),
                "webhook.allowed_events",
                format!("{e:?} is not an event type (1..50 chars of a-z, 0-9, _)"),
            );
        }
        check(
            w.commit_cache_entries <= 10_000_000,
            "webhook.commit_cache_entries",
            format!("must be at most 10000000, got {}", w.commit_cache_entries),
        );
        check(
            w.commit_cache_ttl_s >= 1,
            "webhook.commit_cache_ttl_s",
            "must be at least 1 second".to_owned(),
        );
        check(
            (1..=300).contains(&w.body_timeout_s),
            "webhook.body_timeout_s",
            format!("must be 1..=300 seconds, got {}", w.body_timeout_s),
        );
        check(
            (1..=65_536).contains(&w.max_concurrent_requests),
            "webhook.max_concurrent_requests",
            format!("must be 1..=65536, got {}", w.max_concurrent_requests),
        );
        check(
            (w.max_payload_bytes..=MAX_INFLIGHT_BYTES).contains(&w.max_inflight_bytes),
            "webhook.max_inflight_bytes",
            format!(
                "must be at least webhook.max_payload_bytes ({}) and at most {MAX_INFLIGHT_BYTES}, got {}",
                w.max_payload_bytes, w.max_inflight_bytes
            ),
        );
        check(
            w.dedup_entries <= 10_000_000,
            "webhook.dedup_entries",
            format!("must be at most 10000000, got {}", w.dedup_entries),
        );
        check(
            (1..=MAX_DEDUP_WINDOW_S).contains(&w.dedup_window_s),
            "webhook.dedup_window_s",
            format!(
                "must be 1..={MAX_DEDUP_WINDOW_S} seconds, got {}",
                w.dedup_window_s
            ),
        );

        let b = &self.broker;
        check(
            b.shards <= 256,
            "broker.shards",
            format!("must be 0 (one per CPU) ..=256, got {}", b.shards),
        );
        check(
            (1..=65_536).contains(&b.client_queue),
            "broker.client_queue",
            format!("must be 1..=65536 frames, got {}", b.client_queue),
        );

        let a = &self.auth;
        check(
            valid_api_url(&a.github_api_url),
            "auth.github_api_url",
            format!(
                "must be an http:// or https:// URL, got {:?}",
                a.github_api_url
            ),
        );
        if a.provider == AuthProviderKind::Static {
            check(
                a.tokens_file.is_some(),
                "auth.tokens_file",
                "is required when auth.provider = \"static\"".to_owned(),
            );
        }
        check(
            a.cache_ttl_s <= 86_400,
            "auth.cache_ttl_s",
            format!("must be at most 86400 seconds, got {}", a.cache_ttl_s),
        );
        check(
            a.negative_cache_ttl_s <= 86_400,
            "auth.negative_cache_ttl_s",
            format!(
                "must be at most 86400 seconds, got {}",
                a.negative_cache_ttl_s
            ),
        );
        check(
            a.cache_entries >= 1,
            "auth.cache_entries",
            "must be at least 1".to_owned(),
        );
        check(
            (1..=1024).contains(&a.max_concurrent_api_requests),
            "auth.max_concurrent_api_requests",
            format!("must be 1..=1024, got {}", a.max_concurrent_api_requests),
        );
        check(
            (1..=600).contains(&a.check_timeout_s),
            "auth.check_timeout_s",
            format!("must be 1..=600 seconds, got {}", a.check_timeout_s),
        );
        check(
            (1..=120).contains(&a.api_timeout_s),
            "auth.api_timeout_s",
            format!("must be 1..=120 seconds, got {}", a.api_timeout_s),
        );
        check(
            (1..=86_400).contains(&a.recheck_interval_s),
            "auth.recheck_interval_s",
            format!("must be 1..=86400 seconds, got {}", a.recheck_interval_s),
        );
        check(
            a.max_failed_checks_per_ip <= 10_000,
            "auth.max_failed_checks_per_ip",
            format!(
                "must be 0 (no limit) ..=10000 a minute, got {}",
                a.max_failed_checks_per_ip
            ),
        );

        let l = &self.limits;
        check(
            l.max_conns_per_ip >= 1,
            "limits.max_conns_per_ip",
            "must be at least 1".to_owned(),
        );
        check(
            l.max_conns_total >= 1,
            "limits.max_conns_total",
            "must be at least 1".to_owned(),
        );

        for (key, logins) in [
            ("tiers.pro", &self.tiers.pro),
            ("tiers.flock", &self.tiers.flock),
        ] {
            for login in logins {
                check(
                    is_login(login),
                    key,
                    format!("{login:?} is not a GitHub login"),
                );
            }
        }

        let r = &self.replay;
        check(
            r.max_events <= 10_000_000,
            "replay.max_events",
            format!("must be 0 (resume off) ..=10000000, got {}", r.max_events),
        );
        check(
            (1 << 20..=16 << 30).contains(&r.max_bytes),
            "replay.max_bytes",
            format!("must be 1048576 ..= 17179869184 bytes, got {}", r.max_bytes),
        );
        check(
            (1..=7 * 86_400).contains(&r.max_age_s),
            "replay.max_age_s",
            format!("must be 1..=604800 seconds, got {}", r.max_age_s),
        );

        let c = &self.cluster;
        if let Some(url) = &c.nats_url {
            check(
                !url.trim().is_empty()
                    && url.split(',').all(|u| {
                        let u = u.trim();
                        !u.is_empty() && !u.contains(char::is_whitespace)
                    }),
                "cluster.nats_url",
                format!(
                    "{:?} is not a list of NATS URLs (nats://host:port, comma-separated)",
                    redact_userinfo(url)
                ),
            );
            check(
                !url.contains('@'),
                "cluster.nats_url",
                format!(
                    "{:?} carries credentials, which would show in logs and check-config: \
                     put them in cluster.user and cluster.password_file, or cluster.token_file",
                    redact_userinfo(url)
                ),
            );
        }
        check(
            is_nats_name(&c.stream),
            "cluster.stream",
            format!(
                "{:?} is not a stream name (1..=64 of A-Z a-z 0-9 _ -)",
                c.stream
            ),
        );
        check(
            !c.subject.is_empty()
                && c.subject.len() <= 256
                && c.subject.split('.').all(|t| {
                    !t.is_empty() && t != "*" && t != ">" && !t.contains(char::is_whitespace)
                }),
            "cluster.subject",
            format!(
                "{:?} is not a literal NATS subject (tokens separated by dots, no wildcards)",
                c.subject
            ),
        );
        check(
            (1..=5).contains(&c.replicas),
            "cluster.replicas",
            format!("must be 1..=5, got {}", c.replicas),
        );
        check(
            (60..=365 * 86_400).contains(&c.max_age_s),
            "cluster.max_age_s",
            format!("must be 60..=31536000 seconds, got {}", c.max_age_s),
        );
        check(
            c.max_bytes >= 1 << 20,
            "cluster.max_bytes",
            format!("must be at least 1048576 bytes, got {}", c.max_bytes),
        );
        check(
            (1..=86_400).contains(&c.duplicate_window_s) && c.duplicate_window_s <= c.max_age_s,
            "cluster.duplicate_window_s",
            format!(
                "must be 1..=86400 seconds and at most cluster.max_age_s, got {}",
                c.duplicate_window_s
            ),
        );
        check(
            (1..=60).contains(&c.publish_timeout_s),
            "cluster.publish_timeout_s",
            format!("must be 1..=60 seconds, got {}", c.publish_timeout_s),
        );
        check(
            (1..=10_000_000).contains(&c.backfill_max_events),
            "cluster.backfill_max_events",
            format!("must be 1..=10000000, got {}", c.backfill_max_events),
        );
        check(
            (1 << 16..=16 << 30).contains(&c.backfill_max_bytes),
            "cluster.backfill_max_bytes",
            format!(
                "must be 65536 ..= 17179869184 bytes, got {}",
                c.backfill_max_bytes
            ),
        );
        check(
            (1..=256).contains(&c.backfill_concurrency),
            "cluster.backfill_concurrency",
            format!("must be 1..=256, got {}", c.backfill_concurrency),
        );
        if let Some(n) = &c.node_name {
            check(
                !n.is_empty() && n.len() <= 64 && n.chars().all(|ch| ch.is_ascii_graphic()),
                "cluster.node_name",
                format!("{n:?} must be 1..=64 printable characters without spaces"),
            );
        }
        // Keys that go together: the missing one is named.
        for ((a, a_set), (b, b_set)) in [
            (
                ("cluster.user", c.user.is_some()),
                ("cluster.password_file", c.password_file.is_some()),
            ),
            (
                ("cluster.tls_cert_file", c.tls_cert_file.is_some()),
                ("cluster.tls_key_file", c.tls_key_file.is_some()),
            ),
        ] {
            check(
                a_set == b_set,
                if a_set { b } else { a },
                format!("{a} and {b} go together"),
            );
        }
        if let Some(u) = &c.user {
            check(
                !u.is_empty() && !u.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
                "cluster.user",
                format!("{u:?} must be non-empty, without spaces"),
            );
        }
        let methods = [
            c.creds_file.is_some(),
            c.user.is_some(),
            c.token_file.is_some(),
        ];
        check(
            methods.iter().filter(|m| **m).count() <= 1,
            "cluster.token_file",
            "choose one way to authenticate to NATS: cluster.creds_file, cluster.user with \
             cluster.password_file, or cluster.token_file"
                .to_owned(),
        );
        for (key, file) in [
            ("cluster.creds_file", &c.creds_file),
            ("cluster.password_file", &c.password_file),
            ("cluster.token_file", &c.token_file),
            ("cluster.tls_ca_file", &c.tls_ca_file),
            ("cluster.tls_cert_file", &c.tls_cert_file),
            ("cluster.tls_key_file", &c.tls_key_file),
        ] {
            if let Some(f) = file {
                check(
                    f.is_file(),
                    key,
                    format!("{} is not a readable file", f.display()),
                );
            }
        }

        check(
            valid_log_filter(&self.log.level),
            "log.level",
            format!(
                "{:?} is neither a level (error, warn, info, debug, trace) nor a filter directive",
                self.log.level
            ),
        );
        if let Some(tls) = &self.server.tls {
            errs.extend(tls.validate(self.server.listen));
        }
        errs
    }
}

/// Deserializes `table`; on failure, retries key by key so that every bad
/// key is reported, and returns the config built from the keys that parsed.
fn deserialize_collecting(table: toml::Table) -> (Config, Vec<ConfigError>) {
    if let Ok(c) = Config::deserialize(toml::Value::Table(table.clone())) {
        return (c, Vec::new());
    }
    let mut errors = Vec::new();
    let mut good = toml::Table::new();
    for (section, value) in table {
        let toml::Value::Table(keys) = value else {
            // A top-level key (`development`), or a section given as a value.
            let mut probe = toml::Table::new();
            probe.insert(section.clone(), value.clone());
            match probe_error(probe) {
                None => {
                    good.insert(section, value);
                }
                Some(msg) => errors.push(ConfigError::new(section.clone(), msg)),
            }
            continue;
        };
        if !is_known_section(&section) {
            errors.push(ConfigError::new(
                section,
                "unknown section (expected server, webhook, broker, auth, limits, tiers, log, replay or cluster)",
            ));
            continue;
        }
        let mut good_keys = toml::Table::new();
        for (key, v) in keys {
            let mut inner = toml::Table::new();
            inner.insert(key.clone(), v.clone());
            let mut probe = toml::Table::new();
            probe.insert(section.clone(), toml::Value::Table(inner));
            match probe_error(probe) {
                None => {
                    good_keys.insert(key, v);
                }
                Some(msg) => errors.push(ConfigError::new(format!("{section}.{key}"), msg)),
            }
        }
        good.insert(section, toml::Value::Table(good_keys));
    }
    let config = Config::deserialize(toml::Value::Table(good)).unwrap_or_default();
    (config, errors)
}

fn is_known_section(s: &str) -> bool {
    matches!(
        s,
        "server"
            | "webhook"
            | "broker"
            | "auth"
            | "limits"
            | "tiers"
            | "log"
            | "replay"
            | "cluster"
    )
}

/// `url` (a comma-separated list) with any `user:password@` replaced by
/// `***@`, for messages.
pub(crate) fn redact_userinfo(url: &str) -> String {
    url.split(',')
        .map(|u| match u.rfind('@') {
            Some(at) => {
                let start = u.find("://").map_or(0, |i| i + 3);
                format!("{}***{}", &u[..start.min(at)], &u[at..])
            }
            None => u.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A JetStream stream name.
fn is_nats_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn probe_error(probe: toml::Table) -> Option<String> {
    Config::deserialize(toml::Value::Table(probe))
        .err()
        .map(|e| e.message().trim().to_owned())
}

fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!(
                "TOML syntax error at line {line}, column {column}: {}",
                e.message().trim()
            )
        }
        None => format!("TOML syntax error: {}", e.message().trim()),
    }
}

/// 1-based line and column (in characters) of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// `IP:PORT`, or `HOST:PORT` resolved now (the first address it resolves to).
fn resolve_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "{s:?} is not an address: expected IP:PORT or HOST:PORT (e.g. \"127.0.0.1:8080\" or \"localhost:8080\")"
        ));
    };
    if port.parse::<u16>().is_err() || host.is_empty() {
        return Err(format!(
            "{s:?} is not an address: expected IP:PORT or HOST:PORT with a port 0..=65535"
        ));
    }
    use std::net::ToSocketAddrs;
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("host name {host:?} resolves to no address")),
        Err(e) => Err(format!(
            "cannot resolve host name {host:?} ({e}); use an IP address such as \"0.0.0.0:{port}\""
        )),
    }
}

fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve_socket_addr(&s).map_err(serde::de::Error::custom)
}

fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    resolve_socket_addr(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
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

fn valid_api_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    match rest {
        Some(r) => {
            let host = r.split('/').next().unwrap_or("");
            !host.is_empty() && u.parse::<hyper::Uri>().is_ok()
        }
        None => false,
    }
}

/// `[a-z0-9_]{1,50}`: the shape of a GitHub event type.
pub fn is_event_type(s: &str) -> bool {
    (1..=50).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// The shape of a GitHub login (user or organization): 1..39 of `[A-Za-z0-9_-]`.
pub fn is_login(s: &str) -> bool {
    (1..=39).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Where the webhook secret came from (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `webhook.secret_file`.
    File(PathBuf),
    /// The `GITHUB_WEBHOOK_SECRET` environment variable.
    Env,
}

/// The webhook secret. Its `Debug` output is masked so that it cannot reach
/// a log line or a panic message by accident.
#[derive(Clone)]
pub struct WebhookSecret {
    bytes: Vec<u8>,
    source: SecretSource,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret(****, {} bytes)", self.bytes.len())
    }
}

impl WebhookSecret {
    /// A secret given directly (tests and embedders).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            source: SecretSource::Env,
        }
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// Where it came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Loads the secret from `webhook.secret_file`, else from `env_value`
    /// (the value of `GITHUB_WEBHOOK_SECRET`). A trailing newline in the file
    /// is not part of the secret. An empty secret is refused.
    pub fn load(config: &Config, env_value: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(path) = &config.webhook.secret_file {
            let raw = std::fs::read(path).map_err(|e| {
                ConfigError::new(
                    "webhook.secret_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let trimmed = trim_line_end(&raw);
            if trimmed.is_empty() {
                return Err(ConfigError::new(
                    "webhook.secret_file",
                    format!("{} is empty", path.display()),
                ));
            }
            return Ok(Self {
                bytes: trimmed.to_vec(),
                source: SecretSource::File(path.clone()),
            });
        }
        match env_value {
            Some(v) if !v.is_empty() => Ok(Self {
                bytes: v.as_bytes().to_vec(),
                source: SecretSource::Env,
            }),
            _ => Err(ConfigError::new(
                "webhook.secret_file",
                format!(
                    "no webhook secret: set webhook.secret_file or the {SECRET_ENV} environment variable (hookfan refuses to accept unsigned webhooks)"
                ),
            )),
        }
    }
}

fn trim_line_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && (b[end - 1] == b'\n' || b[end - 1] == b'\r') {
        end -= 1;
    }
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        Config::parse(text, Path::new("/etc/hookfan"))
            .unwrap_err()
            .0
    }

    fn keys(text: &str) -> Vec<String> {
        errors(text).into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = Config::parse("", Path::new("/x")).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.server.handshake_timeout_s, 5);
        assert_eq!(c.server.ping_interval_s, 54);
        assert_eq!(c.server.read_timeout_s, 90);
        assert_eq!(c.server.shutdown_timeout_s, 10);
        assert_eq!(c.webhook.max_payload_bytes, 1_048_576);
        assert_eq!(c.webhook.allowed_events, vec!["*"]);
        assert_eq!(c.webhook.commit_cache_entries, 100_000);
        assert_eq!(c.webhook.commit_cache_ttl_s, 86_400);
        assert_eq!(c.webhook.body_timeout_s, 10);
        assert_eq!(c.webhook.max_concurrent_requests, 64);
        assert_eq!(c.webhook.max_inflight_bytes, 268_435_456);
        assert_eq!(c.webhook.dedup_entries, 100_000);
        assert_eq!(c.webhook.dedup_window_s, 259_200);
        assert_eq!(c.broker.shards, 0);
        assert_eq!(c.broker.client_queue, 256);
        assert_eq!(c.broker.slow_client, SlowClientPolicy::Drop);
        assert_eq!(c.auth.provider, AuthProviderKind::Github);
        assert_eq!(c.auth.github_api_url, "https://api.github.com");
        assert_eq!(c.auth.cache_ttl_s, 300);
        assert_eq!(c.auth.negative_cache_ttl_s, 30);
        assert_eq!(c.auth.max_concurrent_api_requests, 32);
        assert_eq!(c.auth.recheck_interval_s, 300);
        assert_eq!(c.auth.max_failed_checks_per_ip, 30);
        assert_eq!(c.limits.max_conns_per_ip, 10);
        assert_eq!(c.limits.max_conns_total, 100_000);
        assert!(c.limits.trusted_proxies.is_empty());
        assert!(c.tiers.enforce, "private events are withheld by default");
        assert_eq!(c.tiers.default_tier, Tier::Free);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.replay.max_events, 100_000);
        assert_eq!(c.replay.max_bytes, 67_108_864);
        assert_eq!(c.replay.max_age_s, 3600);
    }

    #[test]
    fn max_failed_checks_per_ip_is_range_checked_by_its_key() {
        for ok in ["0", "1", "10000"] {
            let c = Config::parse(
                &format!("[auth]\nmax_failed_checks_per_ip = {ok}\n"),
                Path::new("/x"),
            )
            .unwrap();
            assert_eq!(c.auth.max_failed_checks_per_ip.to_string(), ok);
        }
        for bad in ["10001", "-1", "\"30\""] {
            let e = errors(&format!("[auth]\nmax_failed_checks_per_ip = {bad}\n"));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert_eq!(e[0].key, "auth.max_failed_checks_per_ip", "{bad}");
        }
        let e = errors("[auth]\nmax_failed_checks_per_ip = 20000\n");
        assert!(
            e[0].message.contains("0 (no limit) ..=10000"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = errors("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 9\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, "server.listen_port");
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
    }

    #[test]
    fn unknown_section_is_named() {
        assert_eq!(keys("[sever]\nlisten = \"x\"\n"), vec!["sever"]);
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let text = r#"
[server]
listen = "not an address"
handshake_timeout_s = 0
ping_interval_s = 60
read_timeout_s = 30
[webhook]
max_payload_bytes = 10
allowed_events = ["pull_request", "Push!"]
commit_cache_ttl_s = 0
[broker]
shards = 1000
client_queue = 0
slow_client = "explode"
[auth]
provider = "ldap"
github_api_url = "ftp://example"
max_concurrent_api_requests = 0
recheck_interval_s = 0
[limits]
max_conns_per_ip = 0
max_conns_total = -1
trusted_proxies = ["10.0.0.0/33"]
[tiers]
enforce = "yes"
default_tier = "gold"
pro = ["bad login!"]
[log]
level = "loud"
format = "xml"
[replay]
max_events = -1
max_bytes = 10
max_age_s = 0
"#;
        let mut got = keys(text);
        got.sort();
        let mut want = vec![
            "server.listen",
            "server.handshake_timeout_s",
            "server.read_timeout_s",
            "webhook.max_payload_bytes",
            "webhook.allowed_events",
            "webhook.commit_cache_ttl_s",
            "broker.shards",
            "broker.client_queue",
            "broker.slow_client",
            "auth.provider",
            "auth.github_api_url",
            "auth.max_concurrent_api_requests",
            "auth.recheck_interval_s",
            "limits.max_conns_per_ip",
            "limits.max_conns_total",
            "limits.trusted_proxies",
            "tiers.enforce",
            "tiers.default_tier",
            "tiers.pro",
            "log.level",
            "log.format",
            "replay.max_events",
            "replay.max_bytes",
            "replay.max_age_s",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn cluster_defaults_and_every_bad_cluster_value() {
        let c = Config::parse("", Path::new("/")).unwrap();
        assert!(c.cluster.nats_url.is_none(), "single node by default");
        assert_eq!(
            (c.cluster.stream.as_str(), c.cluster.subject.as_str()),
            ("HOOKFAN_EVENTS", "hookfan.events")
        );
        assert_eq!(
            (c.cluster.replicas, c.cluster.max_age_s, c.cluster.max_bytes),
            (1, 86_400, 1 << 30)
        );
        assert_eq!(
            (c.cluster.duplicate_window_s, c.cluster.publish_timeout_s),
            (120, 5)
        );
        assert_eq!(
            (
                c.cluster.backfill_max_events,
                c.cluster.backfill_max_bytes,
                c.cluster.backfill_concurrency
            ),
            (100_000, 64 << 20, 4)
        );
        let text = r#"
[cluster]
nats_url = "nats://a:4222, "
stream = "has.dot"
subject = "hookfan.>"
replicas = 0
max_age_s = 10
max_bytes = 1000
duplicate_window_s = 0
publish_timeout_s = 0
node_name = "two words"
creds_file = "/nonexistent/creds"
tls_ca_file = "/nonexistent/ca.pem"
backfill_max_events = 0
backfill_max_bytes = 10
backfill_concurrency = 0
"#;
        let mut got = keys(text);
        got.sort();
        let mut want = vec![
            "cluster.nats_url",
            "cluster.stream",
            "cluster.subject",
            "cluster.replicas",
            "cluster.max_age_s",
            "cluster.max_bytes",
            "cluster.duplicate_window_s",
            "cluster.publish_timeout_s",
            "cluster.node_name",
            "cluster.creds_file",
            "cluster.tls_ca_file",
            "cluster.backfill_max_events",
            "cluster.backfill_max_bytes",
            "cluster.backfill_concurrency",
        ];
        want.sort();
        assert_eq!(got, want);
        let ok = Config::parse(
            "[cluster]\nnats_url = \"nats://10.0.0.1:4222,nats://10.0.0.2:4222\"\nnode_name = \"n1\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(ok.cluster.node(), "n1");
    }

    #[test]
    fn nats_credentials_come_from_files_and_never_show() {
        let e = errors(
            "[cluster]\nnats_url = \"nats://hookfan:hunter2@10.0.0.1:4222,nats://10.0.0.2:4222\"\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "cluster.nats_url");
        assert!(
            e[0].message
                .contains("nats://***@10.0.0.1:4222,nats://10.0.0.2:4222")
        );
        assert!(e[0].message.contains("cluster.password_file"));
        let e = errors("[cluster]\nnats_url = \"tok@en@ bad\"\n");
        assert!(e.iter().all(|e| !e.message.contains("tok@en")), "{e:?}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let f = dir.path().join("pw").display().to_string();
        let url = "[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\n";
        assert_eq!(
            keys(&format!("{url}user = \"hookfan\"\n")),
            ["cluster.password_file"]
        );
        assert_eq!(
            keys(&format!("{url}password_file = \"{f}\"\n")),
            ["cluster.user"]
        );
        assert_eq!(
            keys(&format!(
                "{url}user = \"two words\"\npassword_file = \"{f}\"\n"
            )),
            ["cluster.user"]
        );
        assert_eq!(
            keys(&format!(
                "{url}user = \"u\"\npassword_file = \"{f}\"\ntoken_file = \"{f}\"\n"
            )),
            ["cluster.token_file"]
        );
        assert_eq!(
            keys(&format!("{url}tls_cert_file = \"{f}\"\n")),
            ["cluster.tls_key_file"]
        );
        let mut got = keys(&format!(
            "{url}token_file = \"/nonexistent/t\"\ntls_cert_file = \"/nonexistent/c\"\ntls_key_file = \"k\"\n"
        ));
        got.sort();
        assert_eq!(
            got,
            [
                "cluster.tls_cert_file",
                "cluster.tls_key_file",
                "cluster.token_file"
            ]
        );
        // Relative paths are resolved against the config's directory.
        let ok = Config::parse(
            &format!("{url}user = \"hookfan\"\npassword_file = \"pw\"\n"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(ok.cluster.password_file, Some(dir.path().join("pw")));
    }

    #[test]
    fn type_errors_say_what_was_expected() {
        let e = errors("[broker]\nslow_client = \"explode\"\n");
        assert_eq!(e[0].key, "broker.slow_client");
        assert!(e[0].message.contains("drop") && e[0].message.contains("disconnect"));
        let e = errors("[server]\nlisten = 8080\n");
        assert_eq!(e[0].key, "server.listen");
    }

    #[test]
    fn static_provider_needs_a_tokens_file() {
        assert_eq!(
            keys("[auth]\nprovider = \"static\"\n"),
            vec!["auth.tokens_file"]
        );
    }

    #[test]
    fn webhook_limits_are_checked_by_key() {
        for (text, key) in [
            ("body_timeout_s = 0", "webhook.body_timeout_s"),
            ("body_timeout_s = 301", "webhook.body_timeout_s"),
            (
                "max_concurrent_requests = 0",
                "webhook.max_concurrent_requests",
            ),
            (
                "max_concurrent_requests = 65537",
                "webhook.max_concurrent_requests",
            ),
            ("max_inflight_bytes = 1000", "webhook.max_inflight_bytes"),
            (
                "max_inflight_bytes = 17179869185",
                "webhook.max_inflight_bytes",
            ),
            ("dedup_entries = 10000001", "webhook.dedup_entries"),
            ("dedup_window_s = 0", "webhook.dedup_window_s"),
            ("dedup_window_s = 2592001", "webhook.dedup_window_s"),
        ] {
            assert_eq!(keys(&format!("[webhook]\n{text}\n")), [key], "{text}");
        }
        // The byte budget must hold at least one largest body.
        let e = errors("[webhook]\nmax_payload_bytes = 2097152\nmax_inflight_bytes = 1048576\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "webhook.max_inflight_bytes");
        assert!(
            e[0].message.contains("webhook.max_payload_bytes (2097152)"),
            "{}",
            e[0].message
        );
        let ok = Config::parse(
            "[webhook]\nbody_timeout_s = 300\nmax_concurrent_requests = 1\nmax_inflight_bytes = 1048576\ndedup_entries = 0\ndedup_window_s = 1\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(ok.webhook.max_inflight_bytes, 1 << 20);
    }

    #[test]
    fn star_cannot_mix_with_named_events() {
        assert_eq!(
            keys("[webhook]\nallowed_events = [\"*\", \"push\"]\n"),
            vec!["webhook.allowed_events"]
        );
        assert_eq!(
            keys("[webhook]\nallowed_events = []\n"),
            vec!["webhook.allowed_events"]
        );
    }

    #[test]
    fn log_filters() {
        for ok in ["info", "DEBUG", "warn,hookfan=trace", "hookfan::ws=debug"] {
            assert!(valid_log_filter(ok), "{ok}");
        }
        for bad in ["loud", "", "info,", "hookfan=loud", "=info"] {
            assert!(!valid_log_filter(bad), "{bad}");
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = errors("[server\n");
        assert_eq!(e[0].key, "config");
        assert!(
            e[0].message
                .starts_with("TOML syntax error at line 1, column 8:"),
            "{}",
            e[0].message
        );
        let e = errors("[server]\nlisten = \"127.0.0.1:80\"\nping_interval_s = = 5\n");
        assert!(
            e[0].message
                .starts_with("TOML syntax error at line 3, column 19:"),
            "{}",
            e[0].message
        );
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
    }

    #[test]
    fn listen_takes_an_ip_or_a_host_name() {
        let c = Config::parse("[server]\nlisten = \"localhost:8081\"\n", Path::new("/x")).unwrap();
        assert!(c.server.listen.ip().is_loopback(), "{}", c.server.listen);
        assert_eq!(c.server.listen.port(), 8081);
        let c = Config::parse("[server]\nlisten = \"[::1]:9\"\n", Path::new("/x")).unwrap();
        assert_eq!(c.server.listen.to_string(), "[::1]:9");
        let e = errors("[server]\nlisten = \"localhost\"\n");
        assert_eq!(e[0].key, "server.listen");
        assert!(
            e[0].message.contains("IP:PORT or HOST:PORT"),
            "{}",
            e[0].message
        );
        let e = errors("[server]\nlisten = \"no-such-host.invalid:80\"\n");
        assert_eq!(e[0].key, "server.listen");
        assert!(e[0].message.contains("cannot resolve"), "{}", e[0].message);
        let e = errors("[server]\nmetrics_listen = \"127.0.0.1:99999\"\n");
        assert_eq!(e[0].key, "server.metrics_listen");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c = Config::parse(
            "[webhook]\nsecret_file = \"s.txt\"\n[auth]\nprovider = \"static\"\ntokens_file = \"/abs/t.toml\"\n",
            Path::new("/etc/hookfan"),
        )
        .unwrap();
        assert_eq!(
            c.webhook.secret_file.as_deref(),
            Some(Path::new("/etc/hookfan/s.txt"))
        );
        assert_eq!(
            c.auth.tokens_file.as_deref(),
            Some(Path::new("/abs/t.toml"))
        );
    }

    #[test]
    fn secret_comes_from_the_file_before_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let mut c = Config::default();
        c.webhook.secret_file = Some(path.clone());
        let s = WebhookSecret::load(&c, Some("from-env")).unwrap();
        assert_eq!(s.expose(), b"s3cret");
        assert_eq!(s.source(), &SecretSource::File(path));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn secret_from_environment_and_refusal_without_one() {
        let c = Config::default();
        assert_eq!(WebhookSecret::load(&c, Some("e")).unwrap().expose(), b"e");
        let err = WebhookSecret::load(&c, None).unwrap_err();
        assert_eq!(err.key, "webhook.secret_file");
        assert!(err.message.contains(SECRET_ENV));
        assert!(WebhookSecret::load(&c, Some("")).is_err());
    }

    #[test]
    fn empty_or_missing_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "\n").unwrap();
        let mut c = Config::default();
        c.webhook.secret_file = Some(path);
        assert!(
            WebhookSecret::load(&c, Some("env"))
                .unwrap_err()
                .message
                .contains("empty")
        );
        c.webhook.secret_file = Some(dir.path().join("nope"));
        assert!(
            WebhookSecret::load(&c, Some("env"))
                .unwrap_err()
                .message
                .contains("cannot read")
        );
    }
}
