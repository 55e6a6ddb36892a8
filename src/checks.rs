//! What every configuration section is checked with: the keyed
//! [`ConfigError`], the small checks that produce it (`range`, `at_most`,
//! `readable_file`, ...), the shapes of GitHub names, addresses resolved
//! when the file is read, and secret files.
//!
//! A leaf: each module owns its section and validates it with these, and
//! [`crate::config`] (the file and the aggregate) sits above them all.

use std::fmt;
use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::Path;

use serde::Deserialize;

/// One problem in a configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
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

/// One `[section]` of the file: it resolves its own relative paths and
/// checks its own values; the aggregate only calls these.
pub(crate) trait Section {
    /// Every problem with the section's values.
    fn validate(&self) -> Vec<ConfigError>;

    /// Makes the section's relative paths relative to `base` (the config
    /// file's directory).
    fn resolve_paths(&mut self, _base: &Path) {}
}

/// `message` under `key` unless `ok`.
pub(crate) fn require(ok: bool, key: &str, message: impl Message) -> Option<ConfigError> {
    (!ok).then(|| ConfigError::new(key, message.text()))
}

/// `value` within `range`: "must be LO..=HI UNIT, got VALUE".
pub(crate) fn range<T: PartialOrd + Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
    unit: &str,
) -> Option<ConfigError> {
    require(range.contains(&value), key, || {
        format!(
            "must be {}..={}{}, got {value}",
            range.start(),
            range.end(),
            spaced(unit)
        )
    })
}

/// `value` at most `max`: "must be at most MAX UNIT, got VALUE".
pub(crate) fn at_most<T: PartialOrd + Display>(
    key: &str,
    value: T,
    max: T,
    unit: &str,
) -> Option<ConfigError> {
    require(value <= max, key, || {
        format!("must be at most {max}{}, got {value}", spaced(unit))
    })
}

/// A set path names a file: "PATH is not a readable file".
pub(crate) fn readable_file(key: &str, path: Option<&Path>) -> Option<ConfigError> {
    let path = path?;
    require(path.is_file(), key, || {
        format!("{} is not a readable file", path.display())
    })
}

/// `path` joined to `base` when it is relative.
pub(crate) fn resolve_path(base: &Path, path: &mut std::path::PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

fn spaced(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

/// The message of a failed check, formatted only when it failed.
pub(crate) trait Message {
    fn text(self) -> String;
}

impl Message for &str {
    fn text(self) -> String {
        self.to_owned()
    }
}

impl Message for String {
    fn text(self) -> String {
        self
    }
}

impl<F: FnOnce() -> String> Message for F {
    fn text(self) -> String {
        self()
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

/// Why a listen address in the file is not one.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// No `:PORT`.
    #[error(
        "{0:?} is not an address: expected IP:PORT or HOST:PORT (e.g. \"127.0.0.1:8080\" or \"localhost:8080\")"
    )]
    NoPort(String),
    /// A port that is not 0..=65535, or no host before it.
    #[error("{0:?} is not an address: expected IP:PORT or HOST:PORT with a port 0..=65535")]
    BadPort(String),
    /// The host name resolved, to nothing.
    #[error("host name {0:?} resolves to no address")]
    NoAddress(String),
    /// The host name could not be resolved.
    #[error(
        "cannot resolve host name {host:?} ({source}); use an IP address such as \"0.0.0.0:{port}\""
    )]
    Unresolved {
        /// The host name.
        host: String,
        /// The port, as written.
        port: String,
        /// What the resolver said.
        source: std::io::Error,
    },
}

/// `IP:PORT`, or `HOST:PORT` resolved now (the first address it resolves to).
pub(crate) fn resolve_socket_addr(s: &str) -> Result<SocketAddr, AddrError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(AddrError::NoPort(s.to_owned()));
    };
    if port.parse::<u16>().is_err() || host.is_empty() {
        return Err(AddrError::BadPort(s.to_owned()));
    }
    use std::net::ToSocketAddrs;
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| AddrError::NoAddress(host.to_owned())),
        Err(source) => Err(AddrError::Unresolved {
            host: host.to_owned(),
            port: port.to_owned(),
            source,
        }),
    }
}

/// Serde: an address key (`server.listen`).
pub(crate) fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve_socket_addr(&s).map_err(serde::de::Error::custom)
}

/// Serde: an optional address key (`server.metrics_listen`).
pub(crate) fn optional_socket_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(d).map(Some)
}

/// A secret file's bytes without the trailing newline (`\n`, `\r\n`): the
/// webhook secret. Unreadable or empty: an error under `key`, which names
/// the file and never its content.
pub(crate) fn read_secret_file(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let raw = std::fs::read(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let mut end = raw.len();
    while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
        end -= 1;
    }
    nonempty_secret(key, path, raw[..end].to_vec())
}

/// The first line of a secret file, trimmed: a password or token (the
/// cluster's NATS credentials). Errors as [`read_secret_file`]'s.
pub(crate) fn read_secret_line(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let line = text.lines().next().map_or("", str::trim).to_owned();
    nonempty_secret(key, path, line)
}

fn nonempty_secret<S: AsRef<[u8]>>(key: &str, path: &Path, secret: S) -> Result<S, ConfigError> {
    if secret.as_ref().is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(secret)
}

/// The problems `S::validate` finds in a section given as TOML text (its
/// keys, without the `[section]` line), its paths resolved against
/// `/etc/hookfan`: each section's tests check it with this.
#[cfg(test)]
pub(crate) fn section_problems<S: Section + serde::de::DeserializeOwned>(
    text: &str,
) -> Vec<ConfigError> {
    let mut section: S = toml::from_str(text).expect("the section parses");
    section.resolve_paths(Path::new("/etc/hookfan"));
    section.validate()
}

/// The keys of [`section_problems`], sorted.
#[cfg(test)]
pub(crate) fn section_problem_keys<S: Section + serde::de::DeserializeOwned>(
    text: &str,
) -> Vec<String> {
    let mut keys: Vec<String> = section_problems::<S>(text)
        .into_iter()
        .map(|e| e.key)
        .collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_word_their_messages() {
        let e = range("k", 0u64, 1..=300, "seconds").unwrap();
        assert_eq!(e.to_string(), "k: must be 1..=300 seconds, got 0");
        assert_eq!(
            range("k", 0usize, 1..=5, "").unwrap().message,
            "must be 1..=5, got 0"
        );
        assert!(range("k", 5usize, 1..=5, "").is_none());
        assert_eq!(
            at_most("k", 11u64, 10, "seconds").unwrap().message,
            "must be at most 10 seconds, got 11"
        );
        assert!(readable_file("k", None).is_none());
        assert_eq!(
            readable_file("k", Some(Path::new("/nonexistent/x")))
                .unwrap()
                .message,
            "/nonexistent/x is not a readable file"
        );
        assert_eq!(
            require(false, "k", || "lazy".to_owned()).unwrap().message,
            "lazy"
        );
    }

    #[test]
    fn secret_files_are_read_whole_or_by_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, " pw \nsecond\r\n").unwrap();
        assert_eq!(read_secret_file("k", &path).unwrap(), b" pw \nsecond");
        assert_eq!(read_secret_line("k", &path).unwrap(), "pw");
        std::fs::write(&path, "\n").unwrap();
        let e = read_secret_line("k", &path).unwrap_err();
        assert_eq!(e.message, format!("{} is empty", path.display()));
        assert_eq!(read_secret_file("k", &path).unwrap_err(), e);
        let e = read_secret_file("k", &dir.path().join("nope")).unwrap_err();
        assert!(e.message.starts_with("cannot read "), "{e}");
    }
}
