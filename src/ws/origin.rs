//! Which web pages may open `/ws` and `/events` (`server.allowed_origins`).
//!
//! A browser names the page behind a request in its `Origin` header, which
//! the page cannot change. hookfan's credentials are bearer tokens that a
//! page must hold itself (no cookie is ever sent for it), so an unlisted
//! page cannot use a token it does not have: with no origins listed,
//! nothing is judged by `Origin`. Listing origins narrows who may try: a
//! request whose `Origin` is neither the server's own host nor listed is
//! refused before its token is looked at, and a listed origin may read
//! `/events` from a script (CORS). `*` is not offered: list each page.

use std::fmt;

use hyper::header::{self, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

/// A web origin as a browser sends it in `Origin`: `http` or `https`,
/// `://`, a host and an optional port; nothing after it. Kept lower-case
/// and without its scheme's default port, as browsers write it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    /// A DNS name, an IPv4 address, or an IPv6 address in brackets.
    host: String,
    /// `None`: the scheme's default (80, 443).
    port: Option<u16>,
}

/// Why a text is not an [`Origin`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// `*`: every origin, which a bearer token's server does not offer.
    #[error("\"*\" is not supported: list each origin (tokens are bearer credentials)")]
    Wildcard,
    /// Anything else that is not `scheme://host[:port]`.
    #[error("{0:?} is not an origin (scheme://host[:port])")]
    Invalid(String),
}

impl Origin {
    /// Reads `scheme://host[:port]` (`http` or `https`; no user, path, query
    /// or trailing slash), lower-cased, the default port dropped.
    pub fn parse(text: &str) -> Result<Origin, OriginError> {
        if text == "*" {
            return Err(OriginError::Wildcard);
        }
        Self::read(text).ok_or_else(|| OriginError::Invalid(text.to_owned()))
    }

    fn read(text: &str) -> Option<Origin> {
        let (scheme, authority) = text.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let (host, port) = split_authority(authority)?;
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p)?).filter(|&p| p != default_port(https)),
        };
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The port, the scheme's default when none is written.
    fn effective_port(&self) -> u16 {
        self.port.unwrap_or(default_port(self.https))
    }

    /// Whether this origin is the host a request was sent to (its `Host`
    /// header, whose missing port is this origin's scheme's default).
    /// Either scheme matches: behind a proxy that ends TLS the page is
    /// `https` while the server hears plain HTTP.
    fn is_host(&self, host: &[u8]) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let scheme = if self.https { "https" } else { "http" };
        Self::read(&format!("{scheme}://{host}"))
            .is_some_and(|h| h.host == self.host && h.effective_port() == self.effective_port())
    }
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// A port: 1 to 5 digits, 1..=65535.
fn parse_port(p: &str) -> Option<u16> {
    let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| p.parse().ok()).flatten().filter(|&p| p != 0)
}

/// `host[:port]`: a bracketed IPv6 address, or a name or IPv4 address of
/// letters, digits, `-` and `.`.
fn split_authority(a: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if a.starts_with('[') {
        let end = a.find(']')?;
        let inner = &a[1..end];
        let ipv6 = inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ipv6 {
            return None;
        }
        match &a[end + 1..] {
            "" => (&a[..=end], None),
            rest => (&a[..=end], Some(rest.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        };
        let name = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !name || host.starts_with('.') || host.ends_with('.') {
            return None;
        }
        (host, port)
    };
    (!host.is_empty() && host.len() <= 253).then_some((host, port))
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = OriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::parse(s)
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Origin::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What a request's `Origin` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not judged: no origins are listed, or the request names none (not a
    /// browser's, or a same-origin GET from an older browser).
    Unjudged,
    /// The page is served by this host: allowed, and needs no CORS.
    OwnHost,
    /// A listed origin: allowed, and answered with CORS on `/events`. The
    /// request's own `Origin` value, to echo.
    Listed(HeaderValue),
    /// Neither: refused (403) before anything else is looked at.
    Refused,
}

/// `server.allowed_origins`, as the endpoints judge requests by it.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedOrigins(Vec<Origin>);

impl AllowedOrigins {
    pub(crate) fn new(origins: &[Origin]) -> Self {
        Self(origins.to_vec())
    }

    /// Whether requests are judged at all (some origin is listed).
    pub(crate) fn judging(&self) -> bool {
        !self.0.is_empty()
    }

    /// The verdict on a request with `headers`. `Origin: null` (a sandboxed
    /// page, a local file) and a malformed `Origin` are neither listed nor
    /// this host; so is a request with several `Origin` headers.
    pub(crate) fn judge(&self, headers: &HeaderMap) -> Verdict {
        if !self.judging() {
            return Verdict::Unjudged;
        }
        let mut given = headers.get_all(header::ORIGIN).iter();
        let (value, None) = (given.next(), given.next()) else {
            return Verdict::Refused;
        };
        let Some(value) = value else {
            return Verdict::Unjudged;
        };
        let Some(origin) = value.to_str().ok().and_then(|v| Origin::parse(v).ok()) else {
            return Verdict::Refused;
        };
        if self.0.contains(&origin) {
            return Verdict::Listed(value.clone());
        }
        let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
        match host {
            Some(h) if origin.is_host(h) => Verdict::OwnHost,
            _ => Verdict::Refused,
        }
    }
}

/// A refused request's `Origin` for the log: printable ASCII, at most 100
/// characters (it is the client's text).
pub(crate) fn shown(headers: &HeaderMap) -> String {
    let raw = headers
        .get(header::ORIGIN)
        .map_or(&b""[..], HeaderValue::as_bytes);
    raw.iter()
        .take(100)
        .map(|&b| match b {
            0x20..=0x7e => b as char,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_browsers_write_them() {
        for (text, read) in [
            ("https://dash.example", "https://dash.example"),
            ("HTTPS://Dash.Example", "https://dash.example"),
            ("https://dash.example:443", "https://dash.example"),
            ("http://dash.example:80", "http://dash.example"),
            ("http://dash.example:443", "http://dash.example:443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[2001:db8::1]", "https://[2001:db8::1]"),
            ("http://localhost", "http://localhost"),
        ] {
            assert_eq!(Origin::parse(text).unwrap().to_string(), read, "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        for bad in [
            "https://x.example/",
            "https://x.example/app",
            "https://x.example?q",
            "https://x.example#f",
            "https://user@x.example",
            "ftp://x.example",
            "x.example",
            "//x.example",
            "https://",
            "https://:8080",
            "https://x.example:",
            "https://x.example:0",
            "https://x.example:65536",
            "https://x.example:+80",
            "https://x.example:8080:1",
            "https://.x.example",
            "https://x.example.",
            "https://x_y.example",
            "https://[nothex]",
            "https://[::1",
            "https://[::1]x",
            "null",
            "",
        ] {
            assert_eq!(
                Origin::parse(bad),
                Err(OriginError::Invalid(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            OriginError::Invalid("https://x.example/".into()).to_string(),
            "\"https://x.example/\" is not an origin (scheme://host[:port])"
        );
        assert_eq!(Origin::parse("*"), Err(OriginError::Wildcard));
    }

    fn request(origin: &[&str], host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for o in origin {
            h.append(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        h
    }

    #[test]
    fn requests_are_judged_by_their_origin_only_when_origins_are_listed() {
        let none = AllowedOrigins::default();
        let evil = request(&["https://evil.example"], Some("hooks.example"));
        assert_eq!(none.judge(&evil), Verdict::Unjudged);

        let listed = AllowedOrigins::new(&[Origin::parse("https://dash.example").unwrap()]);
        assert_eq!(listed.judge(&evil), Verdict::Refused);
        assert_eq!(
            listed.judge(&request(&[], Some("hooks.example"))),
            Verdict::Unjudged
        );
        // Echoed as sent, compared as read.
        for sent in ["https://dash.example", "https://DASH.example:443"] {
            assert_eq!(
                listed.judge(&request(&[sent], None)),
                Verdict::Listed(HeaderValue::from_str(sent).unwrap()),
            );
        }
        for refused in [
            &["null"][..],
            &["https://dash.example/"],
            &["http://dash.example"],
            &["https://dash.example", "https://dash.example"],
        ] {
            assert_eq!(
                listed.judge(&request(refused, Some("hooks.example"))),
                Verdict::Refused,
                "{refused:?}"
            );
        }
    }

    #[test]
    fn the_servers_own_host_needs_no_listing() {
        let listed = AllowedOrigins::new(&[Origin::parse("https://dash.example").unwrap()]);
        for (origin, host) in [
            ("https://hooks.example", "hooks.example"),
            ("https://hooks.example", "Hooks.Example:443"),
            ("http://hooks.example", "hooks.example"),
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://[::1]:8080", "[::1]:8080"),
        ] {
            assert_eq!(
                listed.judge(&request(&[origin], Some(host))),
                Verdict::OwnHost,
                "{origin} to {host}"
            );
        }
        for (origin, host) in [
            ("https://hooks.example", "hooks.example:8443"),
            ("http://hooks.example", "hooks.example:443"),
            ("http://127.0.0.1:8080", "127.0.0.1:8081"),
            ("http://hooks.example.evil", "hooks.example"),
            ("http://hooks.example", "hooks.example/x"),
        ] {
            assert_eq!(
                listed.judge(&request(&[origin], Some(host))),
                Verdict::Refused,
                "{origin} to {host}"
            );
        }
        assert_eq!(
            listed.judge(&request(&["https://hooks.example"], None)),
            Verdict::Refused
        );
    }

    #[test]
    fn a_refused_origin_is_logged_bounded_and_printable() {
        let mut h = HeaderMap::new();
        let long = format!("https://{}", "a".repeat(200));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(long.as_bytes()).unwrap(),
        );
        let s = shown(&h);
        assert_eq!(s.len(), 100);
        assert!(s.starts_with("https://aaa"));
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_bytes(b"x\xffy\tz").unwrap(),
        );
        assert_eq!(shown(&h), "x?y?z");
    }
}
