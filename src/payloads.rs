//! Full webhook payloads for the clients that ask for them
//! (`"include_payload": true`): `[payloads]`, which says whether and to
//! which tiers they are given, and [`WebhookPayload`], a webhook kept as
//! GitHub sent it (its body untouched, the headers a receiver needs).
//!
//! A payload is carried whole, never re-encoded: the body's bytes go into
//! the event's payload frame as a JSON value (GitHub's body is a JSON
//! object, and intake has parsed it as one before it is kept), so a
//! receiver can take them out and verify or re-sign them byte for byte.
//! A leaf: it knows tiers and headers, not events or the broker.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::checks::{ConfigError, Section, require};
use crate::tier::Tier;

/// The request headers kept with a payload, in the order they are written:
/// what a receiver of GitHub's webhooks reads besides the body.
pub const FORWARDED_HEADERS: [&str; 7] = [
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
    "User-Agent",
    "Content-Type",
];

/// Longest header value kept; a longer one (or one that is not printable
/// ASCII) is left out. GitHub's are short ids and names.
pub const MAX_HEADER_VALUE: usize = 256;

/// `[payloads]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayloadsConfig {
    /// Whether clients may ask for payloads at all (intake keeps a copy of
    /// each body only then).
    pub enabled: bool,
    /// The tiers whose clients may.
    pub tiers: Vec<Tier>,
}

impl Default for PayloadsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            tiers: vec![Tier::Pro, Tier::Flock],
        }
    }
}

impl Section for PayloadsConfig {
    fn validate(&self) -> Vec<ConfigError> {
        require(
            !self.enabled || !self.tiers.is_empty(),
            "payloads.tiers",
            "is empty while payloads.enabled is true: no client could receive payloads (list tiers, e.g. [\"pro\", \"flock\"], or set enabled = false)",
        )
        .into_iter()
        .collect()
    }
}

/// Why a client may not have payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadRefusal {
    /// `payloads.enabled` is false.
    Disabled,
    /// The client's tier is not in `payloads.tiers`.
    Tier(Tier),
}

impl fmt::Display for PayloadRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("this server does not send webhook payloads"),
            Self::Tier(t) => write!(
                f,
                "webhook payloads are not available to the {} tier",
                t.as_str()
            ),
        }
    }
}

impl PayloadsConfig {
    /// Whether a client of `tier` may ask for payloads.
    pub fn allows(&self, tier: Tier) -> Result<(), PayloadRefusal> {
        if !self.enabled {
            Err(PayloadRefusal::Disabled)
        } else if !self.tiers.contains(&tier) {
            Err(PayloadRefusal::Tier(tier))
        } else {
            Ok(())
        }
    }
}

/// A webhook as GitHub sent it: the body's bytes and the
/// [`FORWARDED_HEADERS`] that were present.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookPayload {
    headers: Box<[(&'static str, Box<str>)]>,
    body: Bytes,
}

impl fmt::Debug for WebhookPayload {
    /// The length, not the body: payloads are large, and logs are no place
    /// for them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPayload")
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl WebhookPayload {
    /// A payload of `body` with the headers named `(name, value)` that are
    /// among [`FORWARDED_HEADERS`] (matched case-insensitively, kept in
    /// that list's spelling and order, the first of a repeated name), and
    /// whose value is 1..=[`MAX_HEADER_VALUE`] bytes of printable ASCII.
    /// `body` must be a JSON value (intake has parsed it).
    pub fn new<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>, body: Bytes) -> Self {
        let mut kept: Vec<(&'static str, Box<str>)> = Vec::new();
        for (name, value) in headers {
            let Some(known) = FORWARDED_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if kept.iter().any(|(k, _)| k == known) || !printable(value) {
                continue;
            }
            let value = std::str::from_utf8(value).expect("printable ASCII is UTF-8");
            kept.push((known, value.into()));
        }
        kept.sort_by_key(|(k, _)| FORWARDED_HEADERS.iter().position(|h| h == k));
        Self {
            headers: kept.into_boxed_slice(),
            body,
        }
    }

    /// The payload of a request with `headers` and `body`.
    pub fn from_request(headers: &hyper::HeaderMap, body: Bytes) -> Self {
        Self::new(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            body,
        )
    }

    /// The same headers with another body.
    pub(crate) fn with_body(self, body: Bytes) -> Self {
        Self { body, ..self }
    }

    /// The headers kept, in [`FORWARDED_HEADERS`] order.
    pub fn headers(&self) -> &[(&'static str, Box<str>)] {
        &self.headers
    }

    /// The body, as GitHub sent it.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Appends `"headers":{...},"payload":BODY` (the body verbatim).
    pub(crate) fn write_fields(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\"headers\":{");
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, name).expect("writing to a Vec cannot fail");
            out.push(b':');
            serde_json::to_writer(&mut *out, &**value).expect("writing to a Vec cannot fail");
        }
        out.extend_from_slice(b"},\"payload\":");
        out.extend_from_slice(&self.body);
    }

    /// An upper bound of what [`WebhookPayload::write_fields`] appends.
    pub(crate) fn fields_len(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            // Quotes, colon, comma, and escapes (at most one per byte).
            .map(|(n, v)| n.len() + 2 * v.len() + 6)
            .sum();
        32 + headers + self.body.len()
    }
}

/// 1..=MAX_HEADER_VALUE bytes of printable ASCII (space included).
fn printable(v: &[u8]) -> bool {
    (1..=MAX_HEADER_VALUE).contains(&v.len()) && v.iter().all(|c| (0x20..0x7f).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_forwarded_headers_in_order_and_drops_the_rest() {
        let long = "x".repeat(MAX_HEADER_VALUE + 1);
        let p = WebhookPayload::new(
            [
                ("content-type", b"application/json".as_slice()),
                ("x-github-event", b"push"),
                ("x-hub-signature-256", b"sha256=00"),
                ("X-GitHub-Delivery", b"d-1"),
                ("x-github-delivery", b"d-2"),
                ("user-agent", long.as_bytes()),
                ("x-github-hook-id", b"tab\there"),
                ("x-github-hook-installation-target-id", b""),
            ],
            Bytes::from_static(b"{}"),
        );
        assert_eq!(
            p.headers()
                .iter()
                .map(|(n, v)| (*n, &**v))
                .collect::<Vec<_>>(),
            [
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "d-1"),
                ("Content-Type", "application/json"),
            ]
        );
        assert!(!format!("{p:?}").contains("{}"), "no body in Debug");
    }

    #[test]
    fn fields_are_json_with_the_body_verbatim() {
        let body = Bytes::from_static(b"{\"a\" : [1,2],\n \"q\":\"\\\"\"}");
        let p = WebhookPayload::new([("user-agent", b"Hook \"shot\"".as_slice())], body.clone());
        let mut out = b"{".to_vec();
        p.write_fields(&mut out);
        out.push(b'}');
        assert!(out.len() <= p.fields_len() + 2);
        assert!(out.windows(body.len()).any(|w| w == &body[..]));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["headers"]["User-Agent"], "Hook \"shot\"");
        assert_eq!(v["payload"]["a"][1], 2);
    }

    #[test]
    fn tiers_and_the_switch_decide() {
        let mut c = PayloadsConfig::default();
        assert_eq!(c.allows(Tier::Pro), Err(PayloadRefusal::Disabled));
        c.enabled = true;
        assert_eq!(c.allows(Tier::Pro), Ok(()));
        assert_eq!(c.allows(Tier::Flock), Ok(()));
        assert_eq!(c.allows(Tier::Free), Err(PayloadRefusal::Tier(Tier::Free)));
        assert_eq!(
            PayloadRefusal::Tier(Tier::Free).to_string(),
            "webhook payloads are not available to the free tier"
        );
        assert!(c.validate().is_empty());
        c.tiers.clear();
        assert_eq!(c.validate()[0].key, "payloads.tiers");
        c.enabled = false;
        assert!(c.validate().is_empty());
    }
}
