//! `[cluster]`: the NATS JetStream stream several nodes share, how to reach
//! and authenticate to it, and how far a resume may read back in it; its
//! defaults and its checks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, range, readable_file, require, resolve_path};

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

    /// The keys naming files, with their values.
    fn files(&self) -> [(&'static str, Option<&Path>); 6] {
        [
            ("cluster.creds_file", self.creds_file.as_deref()),
            ("cluster.password_file", self.password_file.as_deref()),
            ("cluster.token_file", self.token_file.as_deref()),
            ("cluster.tls_ca_file", self.tls_ca_file.as_deref()),
            ("cluster.tls_cert_file", self.tls_cert_file.as_deref()),
            ("cluster.tls_key_file", self.tls_key_file.as_deref()),
        ]
    }

    /// `nats_url`: a list of URLs, without credentials in it.
    fn url_problems(&self) -> Vec<ConfigError> {
        let Some(url) = &self.nats_url else {
            return Vec::new();
        };
        let shown = redact_userinfo(url);
        [
            require(
                !url.trim().is_empty()
                    && url.split(',').all(|u| {
                        let u = u.trim();
                        !u.is_empty() && !u.contains(char::is_whitespace)
                    }),
                "cluster.nats_url",
                || {
                    format!(
                        "{shown:?} is not a list of NATS URLs (nats://host:port, comma-separated)"
                    )
                },
            ),
            require(!url.contains('@'), "cluster.nats_url", || {
                format!(
                    "{shown:?} carries credentials, which would show in logs and check-config: \
                     put them in cluster.user and cluster.password_file, or cluster.token_file"
                )
            }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The stream, its subject and limits, the node's name.
    fn stream_problems(&self) -> Vec<ConfigError> {
        let subject = &self.subject;
        let mut errs: Vec<ConfigError> = [
            require(is_nats_name(&self.stream), "cluster.stream", || {
                format!(
                    "{:?} is not a stream name (1..=64 of A-Z a-z 0-9 _ -)",
                    self.stream
                )
            }),
            require(
                !subject.is_empty()
                    && subject.len() <= 256
                    && subject.split('.').all(|t| {
                        !t.is_empty() && t != "*" && t != ">" && !t.contains(char::is_whitespace)
                    }),
                "cluster.subject",
                || {
                    format!(
                        "{subject:?} is not a literal NATS subject (tokens separated by dots, no wildcards)"
                    )
                },
            ),
            range("cluster.replicas", self.replicas, 1..=5, ""),
            range("cluster.max_age_s", self.max_age_s, 60..=365 * 86_400, "seconds"),
            require(self.max_bytes >= 1 << 20, "cluster.max_bytes", || {
                format!("must be at least 1048576 bytes, got {}", self.max_bytes)
            }),
            require(
                (1..=86_400).contains(&self.duplicate_window_s)
                    && self.duplicate_window_s <= self.max_age_s,
                "cluster.duplicate_window_s",
                || {
                    format!(
                        "must be 1..=86400 seconds and at most cluster.max_age_s, got {}",
                        self.duplicate_window_s
                    )
                },
            ),
            range(
                "cluster.publish_timeout_s",
                self.publish_timeout_s,
                1..=60,
                "seconds",
            ),
            range(
                "cluster.backfill_max_events",
                self.backfill_max_events,
                1..=10_000_000,
                "",
            ),
            require(
                (1 << 16..=16 << 30).contains(&self.backfill_max_bytes),
                "cluster.backfill_max_bytes",
                || {
                    format!(
                        "must be 65536 ..= 17179869184 bytes, got {}",
                        self.backfill_max_bytes
                    )
                },
            ),
            range(
                "cluster.backfill_concurrency",
                self.backfill_concurrency,
                1..=256,
                "",
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(n) = &self.node_name {
            errs.extend(require(
                !n.is_empty() && n.len() <= 64 && n.chars().all(|ch| ch.is_ascii_graphic()),
                "cluster.node_name",
                || format!("{n:?} must be 1..=64 printable characters without spaces"),
            ));
        }
        errs
    }

    /// How the node authenticates: keys that go together, one method at
    /// most, and files that exist.
    fn auth_problems(&self) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        // Keys that go together: the missing one is named.
        for ((a, a_set), (b, b_set)) in [
            (
                ("cluster.user", self.user.is_some()),
                ("cluster.password_file", self.password_file.is_some()),
            ),
            (
                ("cluster.tls_cert_file", self.tls_cert_file.is_some()),
                ("cluster.tls_key_file", self.tls_key_file.is_some()),
            ),
        ] {
            errs.extend(require(a_set == b_set, if a_set { b } else { a }, || {
                format!("{a} and {b} go together")
            }));
        }
        if let Some(u) = &self.user {
            errs.extend(require(
                !u.is_empty() && !u.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
                "cluster.user",
                || format!("{u:?} must be non-empty, without spaces"),
            ));
        }
        let methods = [
            self.creds_file.is_some(),
            self.user.is_some(),
            self.token_file.is_some(),
        ];
        errs.extend(require(
            methods.iter().filter(|m| **m).count() <= 1,
            "cluster.token_file",
            "choose one way to authenticate to NATS: cluster.creds_file, cluster.user with \
             cluster.password_file, or cluster.token_file",
        ));
        errs.extend(
            self.files()
                .into_iter()
                .filter_map(|(key, file)| readable_file(key, file)),
        );
        errs
    }
}

impl Section for ClusterConfig {
    fn validate(&self) -> Vec<ConfigError> {
        let mut errs = self.url_problems();
        errs.extend(self.stream_problems());
        errs.extend(self.auth_problems());
        errs
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.creds_file,
            &mut self.password_file,
            &mut self.token_file,
            &mut self.tls_ca_file,
            &mut self.tls_cert_file,
            &mut self.tls_key_file,
        ]
        .into_iter()
        .flatten()
        {
            resolve_path(base, p);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{section_problem_keys, section_problems};

    fn errors(text: &str) -> Vec<ConfigError> {
        section_problems::<ClusterConfig>(text)
    }

    fn keys(text: &str) -> Vec<String> {
        section_problem_keys::<ClusterConfig>(text)
    }

    #[test]
    fn cluster_defaults_and_every_bad_cluster_value() {
        let c = ClusterConfig::default();
        assert!(c.nats_url.is_none(), "single node by default");
        assert_eq!(
            (c.stream.as_str(), c.subject.as_str()),
            ("HOOKFAN_EVENTS", "hookfan.events")
        );
        assert_eq!((c.replicas, c.max_age_s, c.max_bytes), (1, 86_400, 1 << 30));
        assert_eq!((c.duplicate_window_s, c.publish_timeout_s), (120, 5));
        assert_eq!(
            (
                c.backfill_max_events,
                c.backfill_max_bytes,
                c.backfill_concurrency
            ),
            (100_000, 64 << 20, 4)
        );
        let text = r#"
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
        let ok = "nats_url = \"nats://10.0.0.1:4222,nats://10.0.0.2:4222\"\nnode_name = \"n1\"\n";
        assert!(keys(ok).is_empty());
        assert_eq!(toml::from_str::<ClusterConfig>(ok).unwrap().node(), "n1");
    }

    #[test]
    fn nats_credentials_come_from_files_and_never_show() {
        let e =
            errors("nats_url = \"nats://hookfan:hunter2@10.0.0.1:4222,nats://10.0.0.2:4222\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].key, "cluster.nats_url");
        assert!(
            e[0].message
                .contains("nats://***@10.0.0.1:4222,nats://10.0.0.2:4222")
        );
        assert!(e[0].message.contains("cluster.password_file"));
        let e = errors("nats_url = \"tok@en@ bad\"\n");
        assert!(e.iter().all(|e| !e.message.contains("tok@en")), "{e:?}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "hunter2\n").unwrap();
        let f = dir.path().join("pw").display().to_string();
        let url = "nats_url = \"nats://127.0.0.1:4222\"\n";
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
        let mut ok: ClusterConfig = toml::from_str(&format!(
            "{url}user = \"hookfan\"\npassword_file = \"pw\"\n"
        ))
        .unwrap();
        ok.resolve_paths(dir.path());
        assert!(ok.validate().is_empty());
        assert_eq!(ok.password_file, Some(dir.path().join("pw")));
    }
}
