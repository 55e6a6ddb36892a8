//! `[webhook]`: intake limits, and the webhook secrets (from
//! `webhook.secret_file`, one per line, else the `GITHUB_WEBHOOK_SECRET`
//! environment variable; never the file itself). Its defaults are
//! [`WebhookOptions`]'; its checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{AllowedSource, WebhookOptions};
use crate::checks::{
    ConfigError, Section, at_most, is_event_type, range, read_secret_lines, require, resolve_path,
};

/// Environment variable holding the webhook secret when `webhook.secret_file`
/// is not set.
pub const SECRET_ENV: &str = "GITHUB_WEBHOOK_SECRET";

/// Largest `webhook.max_inflight_bytes`: 16 GiB.
const MAX_INFLIGHT_BYTES: u64 = 16 << 30;

/// Longest `webhook.dedup_window_s`: 30 days (GitHub redelivers for 3).
const MAX_DEDUP_WINDOW_S: u64 = 30 * 86_400;

/// `webhook.allowed_sources_refresh_s`: a minute (GitHub's limit for
/// unauthenticated requests is 60 an hour) to a day.
const REFRESH_S: std::ops::RangeInclusive<u64> = 60..=86_400;

/// `[webhook]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// File holding the webhook secrets, one per line (the first the
    /// current one; re-read on reload); else `GITHUB_WEBHOOK_SECRET`.
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
    /// Requests with a missing, malformed or wrong signature allowed per
    /// sender IP and minute before its POSTs are answered 429 unread; 0:
    /// no limit.
    pub max_bad_signatures_per_ip_per_minute: u32,
    /// The senders accepted: CIDRs (a single address is its /32 or /128)
    /// and/or `"github"`; empty accepts every sender.
    pub allowed_sources: Vec<AllowedSource>,
    /// Seconds between fetches of GitHub's ranges (with `"github"`).
    pub allowed_sources_refresh_s: u64,
}

impl Default for WebhookConfig {
    /// The endpoint's own defaults ([`WebhookOptions`]), every event type
    /// allowed, the secret from the environment.
    fn default() -> Self {
        let o = WebhookOptions::default();
        Self {
            secret_file: None,
            max_payload_bytes: o.max_payload_bytes,
            allowed_events: o.allowed_events.unwrap_or_else(|| vec!["*".to_owned()]),
            commit_cache_entries: o.commit_cache_entries,
            commit_cache_ttl_s: o.commit_cache_ttl.as_secs(),
            body_timeout_s: o.body_timeout.as_secs(),
            max_concurrent_requests: o.max_concurrent_requests,
            max_inflight_bytes: o.max_inflight_bytes,
            dedup_entries: o.dedup_entries,
            dedup_window_s: o.dedup_window.as_secs(),
            max_bad_signatures_per_ip_per_minute: o.max_bad_signatures_per_ip_per_minute,
            allowed_sources: o.allowed_sources,
            allowed_sources_refresh_s: o.allowed_sources_refresh.as_secs(),
        }
    }
}

impl WebhookConfig {
    /// The allowed event types, or `None` when every type is allowed.
    pub fn allowed_list(&self) -> Option<Vec<String>> {
        if self.allowed_events.iter().any(|e| e == "*") {
            None
        } else {
            Some(self.allowed_events.clone())
        }
    }

    /// The endpoint settings these keys describe (trusted proxies and the
    /// table size are `[limits]`', see `Config::webhook_options`).
    pub fn options(&self) -> WebhookOptions {
        WebhookOptions {
            max_payload_bytes: self.max_payload_bytes,
            allowed_events: self.allowed_list(),
            commit_cache_entries: self.commit_cache_entries,
            commit_cache_ttl: Duration::from_secs(self.commit_cache_ttl_s),
            body_timeout: Duration::from_secs(self.body_timeout_s),
            max_concurrent_requests: self.max_concurrent_requests,
            max_inflight_bytes: self.max_inflight_bytes,
            dedup_entries: self.dedup_entries,
            dedup_window: Duration::from_secs(self.dedup_window_s),
            max_bad_signatures_per_ip_per_minute: self.max_bad_signatures_per_ip_per_minute,
            allowed_sources: self.allowed_sources.clone(),
            allowed_sources_refresh: Duration::from_secs(self.allowed_sources_refresh_s),
            ..WebhookOptions::default()
        }
    }

    /// `allowed_events`: `["*"]` alone, or event type names.
    fn allowed_events_problems(&self) -> Vec<ConfigError> {
        let events = &self.allowed_events;
        let has_star = events.iter().any(|e| e == "*");
        let mut errs: Vec<ConfigError> = [
            require(
                !events.is_empty(),
                "webhook.allowed_events",
                "must not be empty (use [\"*\"] to allow every event type)",
            ),
            require(
                !has_star || events.len() == 1,
                "webhook.allowed_events",
                "\"*\" cannot be combined with named event types",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        errs.extend(events.iter().filter(|e| *e != "*").filter_map(|e| {
            require(is_event_type(e), "webhook.allowed_events", || {
                format!("{e:?} is not an event type (1..50 chars of a-z, 0-9, _)")
            })
        }));
        errs
    }
}

impl Section for WebhookConfig {
    fn validate(&self) -> Vec<ConfigError> {
        let mut errs: Vec<ConfigError> = range(
            "webhook.max_payload_bytes",
            self.max_payload_bytes,
            1024..=(64 << 20),
            "bytes",
        )
        .into_iter()
        .collect();
        errs.extend(self.allowed_events_problems());
        errs.extend(
            [
                at_most(
                    "webhook.commit_cache_entries",
                    self.commit_cache_entries,
                    10_000_000,
                    "",
                ),
                require(
                    self.commit_cache_ttl_s >= 1,
                    "webhook.commit_cache_ttl_s",
                    "must be at least 1 second",
                ),
                range("webhook.body_timeout_s", self.body_timeout_s, 1..=300, "seconds"),
                range(
                    "webhook.max_concurrent_requests",
                    self.max_concurrent_requests,
                    1..=65_536,
                    "",
                ),
                require(
                    (self.max_payload_bytes..=MAX_INFLIGHT_BYTES).contains(&self.max_inflight_bytes),
                    "webhook.max_inflight_bytes",
                    || {
                        format!(
                            "must be at least webhook.max_payload_bytes ({}) and at most {MAX_INFLIGHT_BYTES}, got {}",
                            self.max_payload_bytes, self.max_inflight_bytes
                        )
                    },
                ),
                at_most("webhook.dedup_entries", self.dedup_entries, 10_000_000, ""),
                range(
                    "webhook.dedup_window_s",
                    self.dedup_window_s,
                    1..=MAX_DEDUP_WINDOW_S,
                    "seconds",
                ),
                at_most(
                    "webhook.max_bad_signatures_per_ip_per_minute",
                    self.max_bad_signatures_per_ip_per_minute,
                    10_000,
                    "",
                ),
                range(
                    "webhook.allowed_sources_refresh_s",
                    self.allowed_sources_refresh_s,
                    REFRESH_S,
                    "seconds",
                ),
            ]
            .into_iter()
            .flatten(),
        );
        errs
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.secret_file {
            resolve_path(base, p);
        }
    }
}

/// Where the webhook secrets came from (never the secrets themselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `webhook.secret_file`.
    File(PathBuf),
    /// The `GITHUB_WEBHOOK_SECRET` environment variable.
    Env,
}

/// The webhook secrets: one, or during a rotation several (one per line of
/// `webhook.secret_file`, the first the current one). A delivery signed
/// with any of them is accepted. Its `Debug` output is masked so that no
/// secret can reach a log line or a panic message by accident.
#[derive(Clone)]
pub struct WebhookSecret {
    /// Each secret with the 1-based line of the file holding it (1 for
    /// the environment's); never empty but for [`WebhookSecret::from_bytes`]
    /// with an empty secret.
    lines: Vec<(usize, Vec<u8>)>,
    source: SecretSource,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret(****, {})", self.summary())
    }
}

impl WebhookSecret {
    /// A secret given directly (tests and embedders); an empty one refuses
    /// every webhook.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            lines: vec![(1, bytes.into())],
            source: SecretSource::Env,
        }
    }

    /// The current secret's bytes (the first line's).
    pub fn expose(&self) -> &[u8] {
        self.lines.first().map_or(&[], |(_, s)| s.as_slice())
    }

    /// Every secret, with the 1-based line holding it, current first.
    pub fn secrets(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.lines.iter().map(|(n, s)| (*n, s.as_slice()))
    }

    /// How many secrets there are.
    pub fn count(&self) -> usize {
        self.lines.len()
    }

    /// Where they came from.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// What can be said of them without showing one: the line and length
    /// of each (`line 1: 32 bytes, line 2: 20 bytes`).
    pub fn summary(&self) -> String {
        let lines: Vec<String> = (self.lines.iter())
            .map(|(n, s)| format!("line {n}: {} bytes", s.len()))
            .collect();
        lines.join(", ")
    }

    /// Reads the secrets from `path` (`webhook.secret_file`): one per
    /// line, blank lines skipped. Unreadable or without a secret: refused,
    /// the error naming the file and never its content.
    pub fn read_file(path: &Path) -> Result<Self, ConfigError> {
        Ok(Self {
            lines: read_secret_lines("webhook.secret_file", path)?,
            source: SecretSource::File(path.to_path_buf()),
        })
    }

    /// Loads the secrets from `webhook.secret_file`, else the one secret
    /// of `env_value` (the value of `GITHUB_WEBHOOK_SECRET`). An empty
    /// secret is refused.
    pub fn load_from(
        webhook: &WebhookConfig,
        env_value: Option<&str>,
    ) -> Result<Self, ConfigError> {
        if let Some(path) = &webhook.secret_file {
            return Self::read_file(path);
        }
        match env_value {
            Some(v) if !v.is_empty() => Ok(Self {
                lines: vec![(1, v.as_bytes().to_vec())],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{section_problem_keys, section_problems};

    fn errors(text: &str) -> Vec<ConfigError> {
        section_problems::<WebhookConfig>(text)
    }

    fn keys(text: &str) -> Vec<String> {
        section_problem_keys::<WebhookConfig>(text)
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
            (
                "allowed_sources_refresh_s = 59",
                "webhook.allowed_sources_refresh_s",
            ),
            (
                "allowed_sources_refresh_s = 86401",
                "webhook.allowed_sources_refresh_s",
            ),
        ] {
            assert_eq!(keys(&format!("{text}\n")), [key], "{text}");
        }
        // The byte budget must hold at least one largest body.
        let e = errors("max_payload_bytes = 2097152\nmax_inflight_bytes = 1048576\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "webhook.max_inflight_bytes");
        assert!(
            e[0].message.contains("webhook.max_payload_bytes (2097152)"),
            "{}",
            e[0].message
        );
        let ok = "body_timeout_s = 300\nmax_concurrent_requests = 1\nmax_payload_bytes = 1048576\nmax_inflight_bytes = 1048576\ndedup_entries = 0\ndedup_window_s = 1\n";
        assert!(keys(ok).is_empty());
        assert_eq!(
            toml::from_str::<WebhookConfig>(ok)
                .unwrap()
                .max_inflight_bytes,
            1 << 20
        );
    }

    #[test]
    fn star_cannot_mix_with_named_events() {
        assert_eq!(
            keys("allowed_events = [\"*\", \"push\"]\n"),
            vec!["webhook.allowed_events"]
        );
        assert_eq!(
            keys("allowed_events = []\n"),
            vec!["webhook.allowed_events"]
        );
    }

    /// Each bad entry is named; good ones are CIDRs, single addresses and
    /// the word "github", printed back as CIDRs.
    #[test]
    fn allowed_sources_name_their_bad_entry() {
        let text = "[webhook]\nallowed_sources = [\"github\", \"10.0.0.0/33\"]\n";
        let (_, errs) = crate::config::Config::parse_lenient(text, Path::new("."));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            errs[0].to_string(),
            "webhook.allowed_sources: \"10.0.0.0/33\" is not a CIDR (like \"192.30.252.0/22\" \
             or \"2606:50c0::/32\"), an IP address or \"github\""
        );
        let c: WebhookConfig = toml::from_str(
            "allowed_sources = [\"github\", \"192.0.2.1\", \"2001:db8::/32\"]\n\
             allowed_sources_refresh_s = 60\n",
        )
        .unwrap();
        assert!(c.validate().is_empty());
        let printed = toml::to_string(&c).unwrap();
        assert!(
            printed.contains(r#"allowed_sources = ["github", "192.0.2.1/32", "2001:db8::/32"]"#),
            "{printed}"
        );
        assert_eq!(WebhookConfig::default().allowed_sources, []);
        assert_eq!(WebhookConfig::default().allowed_sources_refresh_s, 3600);
    }

    #[test]
    fn secret_comes_from_the_file_before_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = WebhookConfig {
            secret_file: Some(path.clone()),
            ..WebhookConfig::default()
        };
        let s = WebhookSecret::load_from(&c, Some("from-env")).unwrap();
        assert_eq!(s.expose(), b"s3cret");
        assert_eq!(s.count(), 1);
        assert_eq!(s.source(), &SecretSource::File(path));
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn a_file_holds_several_secrets_the_first_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "\r\nnew-secret\r\n  \r\nold-secret\r\n\r\n").unwrap();
        let s = WebhookSecret::read_file(&path).unwrap();
        assert_eq!(s.expose(), b"new-secret");
        let lines: Vec<(usize, &[u8])> = s.secrets().collect();
        assert_eq!(lines, [(2, &b"new-secret"[..]), (4, &b"old-secret"[..])]);
        assert_eq!(s.summary(), "line 2: 10 bytes, line 4: 10 bytes");
        let shown = format!("{s:?}");
        assert_eq!(
            shown,
            "WebhookSecret(****, line 2: 10 bytes, line 4: 10 bytes)"
        );
    }

    #[test]
    fn secret_from_environment_and_refusal_without_one() {
        let c = WebhookConfig::default();
        let s = WebhookSecret::load_from(&c, Some("e")).unwrap();
        assert_eq!((s.expose(), s.count()), (&b"e"[..], 1));
        assert_eq!(s.source(), &SecretSource::Env);
        let err = WebhookSecret::load_from(&c, None).unwrap_err();
        assert_eq!(err.key, "webhook.secret_file");
        assert!(err.message.contains(SECRET_ENV));
        assert!(WebhookSecret::load_from(&c, Some("")).is_err());
    }

    #[test]
    fn a_secret_file_without_a_secret_or_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let mut c = WebhookConfig {
            secret_file: Some(path.clone()),
            ..WebhookConfig::default()
        };
        for blank in ["", "\n", "\r\n \n\t\n"] {
            std::fs::write(&path, blank).unwrap();
            let e = WebhookSecret::load_from(&c, Some("env")).unwrap_err();
            assert_eq!(e.key, "webhook.secret_file");
            assert!(e.message.contains("holds no secret"), "{blank:?}: {e}");
        }
        c.secret_file = Some(dir.path().join("nope"));
        assert!(
            WebhookSecret::load_from(&c, Some("env"))
                .unwrap_err()
                .message
                .contains("cannot read")
        );
    }

    #[test]
    fn the_section_describes_the_endpoint_defaults() {
        let section = WebhookConfig::default();
        assert_eq!(section.allowed_events, ["*"]);
        assert_eq!(
            format!("{:?}", section.options()),
            format!("{:?}", WebhookOptions::default())
        );
    }
}
