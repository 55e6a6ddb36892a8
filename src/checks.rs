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

/// `TYPE.ACTION` of a subscription's `event_types`: a GitHub event type,
/// a dot, and an action of the same shape (`pull_request.closed`).
pub fn is_event_type_with_action(s: &str) -> bool {
    s.split_once('.')
        .is_some_and(|(t, a)| is_event_type(t) && is_event_type(a))
}

/// A repository's full name, `OWNER/REPO`: OWNER a login ([`is_login`]),
/// REPO 1..100 of `[A-Za-z0-9_.-]`, but not `.` or `..`.
pub fn is_repository(s: &str) -> bool {
    let Some((owner, repo)) = s.split_once('/') else {
        return false;
    };
    is_login(owner)
        && (1..=100).contains(&repo.len())
        && repo != "."
        && repo != ".."
        && repo
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
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

/// The secrets of a secret file that may hold several, one per line
/// (`\n` or `\r\n`), each with its 1-based line number. Blank lines
/// (nothing, or only whitespace) are skipped; the others are kept byte for
/// byte, spaces included, so that a secret reads as it did when the file
/// held one.
pub(crate) fn secret_lines(raw: &[u8]) -> Vec<(usize, &[u8])> {
    raw.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// [`secret_lines`] of the file at `path`. Unreadable, or holding no
/// secret: an error under `key`, which names the file and never its
/// content.
pub(crate) fn read_secret_lines(
    key: &str,
    path: &Path,
) -> Result<Vec<(usize, Vec<u8>)>, ConfigError> {
    let raw = std::fs::read(path).map_err(|e| cannot_read(key, path, &e))?;
    let lines: Vec<(usize, Vec<u8>)> = secret_lines(&raw)
        .into_iter()
        .map(|(n, line)| (n, line.to_vec()))
        .collect();
    if lines.is_empty() {
        return Err(ConfigError::new(
            key,
            format!(
                "{} holds no secret (it is empty or every line is blank)",
                path.display()
            ),
        ));
    }
    Ok(lines)
}

fn cannot_read(key: &str, path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError::new(key, format!("cannot read {}: {e}", path.display()))
}

/// The first line of a secret file, trimmed: a password or token (the
/// cluster's NATS credentials). Unreadable or empty: an error under `key`,
/// which names the file and never its content.
pub(crate) fn read_secret_line(key: &str, path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| cannot_read(key, path, &e))?;
    let line = text.lines().next().map_or("", str::trim).to_owned();
    if line.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(line)
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
    fn the_first_line_of_a_secret_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, " pw \nsecond\r\n").unwrap();
        assert_eq!(read_secret_line("k", &path).unwrap(), "pw");
        std::fs::write(&path, "\n").unwrap();
        let e = read_secret_line("k", &path).unwrap_err();
        assert_eq!(e.message, format!("{} is empty", path.display()));
        let e = read_secret_line("k", &dir.path().join("nope")).unwrap_err();
        assert!(e.message.starts_with("cannot read "), "{e}");
    }

    /// The lines of `raw` that hold a secret, as text.
    fn lines(raw: &str) -> Vec<(usize, &str)> {
        secret_lines(raw.as_bytes())
            .into_iter()
            .map(|(n, l)| (n, std::str::from_utf8(l).unwrap()))
            .collect()
    }

    #[test]
    fn one_secret_per_line_blank_lines_skipped() {
        assert_eq!(lines("s3cret"), [(1, "s3cret")]);
        assert_eq!(lines("s3cret\n"), [(1, "s3cret")], "trailing newline");
        assert_eq!(lines("new\nold\n"), [(1, "new"), (2, "old")]);
        assert_eq!(lines("new\r\nold\r\n"), [(1, "new"), (2, "old")], "CRLF");
        assert_eq!(
            lines("\nnew\n\n  \n\t\r\nold"),
            [(2, "new"), (6, "old")],
            "blank and whitespace-only lines skipped, numbers kept"
        );
        assert_eq!(
            lines(" pw \na\rb\r\r\n"),
            [(1, " pw "), (2, "a\rb\r")],
            "a line is kept byte for byte but for its line end"
        );
        for blank in ["", "\n", "\r\n", "\n\n\n", "  \n\t\n \r\n", " "] {
            assert_eq!(lines(blank), [], "{blank:?}");
        }
    }

    #[test]
    fn a_secret_file_must_be_readable_and_hold_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "new\r\n\r\nold\r\n").unwrap();
        assert_eq!(
            read_secret_lines("k", &path).unwrap(),
            [(1, b"new".to_vec()), (3, b"old".to_vec())]
        );
        for blank in ["", "\n", " \r\n\t\n"] {
            std::fs::write(&path, blank).unwrap();
            let e = read_secret_lines("k", &path).unwrap_err();
            assert_eq!(e.key, "k");
            assert_eq!(
                e.message,
                format!(
                    "{} holds no secret (it is empty or every line is blank)",
                    path.display()
                )
            );
        }
        let missing = dir.path().join("nope");
        let e = read_secret_lines("k", &missing).unwrap_err();
        assert!(
            e.message
                .starts_with(&format!("cannot read {}: ", missing.display())),
            "{e}"
        );
        let e = read_secret_lines("k", dir.path()).unwrap_err();
        assert!(e.message.starts_with("cannot read "), "a directory: {e}");
    }
}
