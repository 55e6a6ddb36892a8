//! `[server.tls]` and `[server.tls.acme]`: a certificate from files, or
//! from an ACME CA; their defaults and their checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, optional_socket_addr, range, readable_file, require};

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

impl TlsConfig {
    /// Every problem with the section; `listen` is `server.listen`, which
    /// the redirect listener must not take.
    pub(crate) fn validate(&self, listen: SocketAddr) -> Vec<ConfigError> {
        let mut errs: Vec<ConfigError> = self.source_problem().into_iter().collect();
        if let Some(r) = self.redirect_listen {
            errs.extend(require(
                r != listen || r.port() == 0,
                "server.tls.redirect_listen",
                || format!("must differ from server.listen ({r})"),
            ));
        }
        if let Some(a) = &self.acme {
            errs.extend(a.validate());
        }
        errs
    }

    /// The certificate comes from exactly one place: files, or ACME.
    fn source_problem(&self) -> Option<ConfigError> {
        let (key, message) = match (&self.cert_file, &self.key_file, &self.acme) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => return None,
            (Some(_), None, None) => (
                "server.tls.key_file",
                "is required with server.tls.cert_file",
            ),
            (None, Some(_), None) => (
                "server.tls.cert_file",
                "is required with server.tls.key_file",
            ),
            (None, None, None) => (
                "server.tls",
                "needs cert_file and key_file, or a [server.tls.acme] section",
            ),
            (_, _, Some(_)) => (
                "server.tls.acme",
                "cannot be combined with server.tls.cert_file / key_file: choose one",
            ),
        };
        Some(ConfigError::new(key, message))
    }

    /// Joins the section's relative paths to `base`; an empty path (a key
    /// left out) stays empty, for validation to name.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        let (cache, ca) = match self.acme.as_mut() {
            Some(a) => (Some(&mut a.cache_dir), a.directory_ca_file.as_mut()),
            None => (None, None),
        };
        for p in [self.cert_file.as_mut(), self.key_file.as_mut(), cache, ca]
            .into_iter()
            .flatten()
        {
            if !p.as_os_str().is_empty() {
                crate::checks::resolve_path(base, p);
            }
        }
    }
}

impl AcmeConfig {
    fn validate(&self) -> Vec<ConfigError> {
        let mut errs: Vec<ConfigError> = Vec::new();
        errs.extend(require(
            !self.domains.is_empty(),
            "server.tls.acme.domains",
            "must name at least one domain",
        ));
        errs.extend(self.domains.iter().filter_map(|d| {
            require(is_dns_name(d), "server.tls.acme.domains", || {
                format!(
                    "{d:?} is not a DNS name (no wildcards: the tls-alpn-01 challenge cannot prove them)"
                )
            })
        }));
        errs.extend(self.contact.iter().filter_map(|c| {
            require(
                c.len() > "mailto:".len()
                    && c.starts_with("mailto:")
                    && !c.contains(char::is_whitespace),
                "server.tls.acme.contact",
                || format!("{c:?} must be a mailto: URL, e.g. \"mailto:ops@example.com\""),
            )
        }));
        let url = &self.directory_url;
        errs.extend(
            [
                require(
                    !self.cache_dir.as_os_str().is_empty(),
                    "server.tls.acme.cache_dir",
                    "is required: the account key and certificate are kept there across restarts",
                ),
                require(
                    url.len() > "https://".len() && url.starts_with("https://"),
                    "server.tls.acme.directory_url",
                    || format!("{url:?} must be an https:// URL"),
                ),
                range(
                    "server.tls.acme.renew_before_days",
                    self.renew_before_days,
                    1..=365,
                    "days",
                ),
                readable_file(
                    "server.tls.acme.directory_ca_file",
                    self.directory_ca_file.as_deref(),
                ),
            ]
            .into_iter()
            .flatten(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<ConfigError> {
        let tls: TlsConfig = toml::from_str(text).unwrap();
        tls.validate("0.0.0.0:443".parse().unwrap())
    }

    fn keys(text: &str) -> Vec<String> {
        let mut keys: Vec<String> = problems(text).into_iter().map(|e| e.key).collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_certificate_comes_from_files_or_from_acme() {
        assert!(keys("cert_file = \"c\"\nkey_file = \"k\"\n").is_empty());
        assert_eq!(keys("cert_file = \"c\"\n"), ["server.tls.key_file"]);
        assert_eq!(keys("key_file = \"k\"\n"), ["server.tls.cert_file"]);
        assert_eq!(keys(""), ["server.tls"]);
        assert_eq!(
            keys("cert_file = \"c\"\n[acme]\ndomains = [\"a.example\"]\ncache_dir = \"d\"\n"),
            ["server.tls.acme"]
        );
        assert_eq!(
            problems("cert_file = \"c\"\nkey_file = \"k\"\nredirect_listen = \"0.0.0.0:443\"\n")[0]
                .to_string(),
            "server.tls.redirect_listen: must differ from server.listen (0.0.0.0:443)"
        );
    }

    #[test]
    fn acme_values_are_checked_by_key() {
        let ok = "[acme]\ndomains = [\"hooks.example.com\"]\ncontact = [\"mailto:ops@example.com\"]\ncache_dir = \"/var/lib/hookfan\"\n";
        assert!(keys(ok).is_empty());
        assert_eq!(
            keys(
                "[acme]\ndomains = [\"*.example.com\"]\ncontact = [\"ops@example.com\"]\n\
                 directory_url = \"http://ca\"\nrenew_before_days = 0\n\
                 directory_ca_file = \"/nonexistent/ca.pem\"\n"
            ),
            [
                "server.tls.acme.cache_dir",
                "server.tls.acme.contact",
                "server.tls.acme.directory_ca_file",
                "server.tls.acme.directory_url",
                "server.tls.acme.domains",
                "server.tls.acme.renew_before_days",
            ]
        );
        let e = problems("[acme]\ncache_dir = \"d\"\nrenew_before_days = 366\n");
        assert_eq!(
            e.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "server.tls.acme.domains: must name at least one domain",
                "server.tls.acme.renew_before_days: must be 1..=365 days, got 366",
            ]
        );
    }

    #[test]
    fn relative_paths_join_the_base_and_a_missing_one_stays_missing() {
        let mut tls: TlsConfig = toml::from_str("cert_file = \"c.pem\"\n[acme]\n").unwrap();
        tls.resolve_paths(Path::new("/etc/hookfan"));
        assert_eq!(tls.cert_file, Some(PathBuf::from("/etc/hookfan/c.pem")));
        assert_eq!(tls.acme.unwrap().cache_dir, PathBuf::new());
    }
}
