//! The stream's message encoding: an event's routing facts, not the raw
//! webhook. Versioned, so that nodes of different releases can share a
//! stream: a node counts and skips a message of a version it does not know.
//!
//! Version 1 is a JSON object: `{"v":1,"kind":..,"delivery_id":..,
//! "at_ns":..,"url":..,"org":..,"repo":..,"private":..,"commit_sha":..,
//! "users":[..]}`. Unknown fields are ignored (additions within a version).
//!
//! Version 2 is an event with its webhook payload (`[payloads]` enabled on
//! the node that took it): the same object with `"v":2`,
//! `"headers":{NAME:VALUE,..}` and `"payload_len":N`, followed directly by
//! the N bytes of the body as GitHub sent it, so that the body is carried
//! without being re-encoded. Events without a payload stay version 1,
//! readable by nodes that know no payloads.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::event::{EventParts, MAX_FIELD, MAX_USERS};
use crate::payloads::WebhookPayload;

/// The version of an event without a payload.
pub const VERSION: u64 = 1;
/// The version of an event followed by its payload.
pub const VERSION_WITH_PAYLOAD: u64 = 2;

/// Room for a message's facts beside its payload: its fields are bounded
/// (`MAX_FIELD`, `MAX_USERS`, the kept headers) well below this.
pub const MAX_FACTS: usize = 64 << 10;

/// Largest payload a message may carry: the largest
/// `webhook.max_payload_bytes`.
const MAX_PAYLOAD: usize = 64 << 20;

/// Why a stream message could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a node of another release: skipped.
    UnknownVersion(u64),
    /// Not a message of this encoding.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownVersion(v) => write!(f, "unknown encoding version {v}"),
            DecodeError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

#[derive(Serialize)]
struct Encode<'a> {
    v: u64,
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    delivery_id: &'a str,
    at_ns: u64,
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    private: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit_sha: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    users: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<&'a str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_len: Option<usize>,
}

#[derive(Deserialize)]
struct Version {
    v: u64,
}

#[derive(Deserialize)]
struct V1 {
    kind: String,
    #[serde(default)]
    delivery_id: String,
    at_ns: u64,
    url: String,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    repo: Option<String>,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    commit_sha: Option<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    payload_len: Option<usize>,
}

/// The message for `event`: version 1, or version 2 followed by its
/// payload's body.
pub fn encode(event: &EventParts) -> Vec<u8> {
    let at = event.accepted_at.unwrap_or_else(SystemTime::now);
    let at_ns = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let payload = event.payload.as_ref();
    let mut out = serde_json::to_vec(&Encode {
        v: payload.map_or(VERSION, |_| VERSION_WITH_PAYLOAD),
        kind: &event.kind,
        delivery_id: &event.delivery_id,
        at_ns,
        url: &event.url,
        org: event.org.as_deref(),
        repo: event.repo.as_deref(),
        private: event.private,
        commit_sha: event.commit_sha.as_deref(),
        users: &event.users,
        headers: payload.map(|p| p.headers().iter().map(|(n, v)| (*n, &**v)).collect()),
        payload_len: payload.map(|p| p.body().len()),
    })
    .expect("serializing strings cannot fail");
    if let Some(p) = payload {
        out.extend_from_slice(p.body());
    }
    out
}

/// The event a message carries (a version 2 message's payload is a slice
/// of `message`, not a copy).
pub fn decode(message: &Bytes) -> Result<EventParts, DecodeError> {
    let malformed = |e: serde_json::Error| DecodeError::Malformed(e.to_string());
    let (Version { v }, _) = first_value(message).map_err(malformed)?;
    if v != VERSION && v != VERSION_WITH_PAYLOAD {
        return Err(DecodeError::UnknownVersion(v));
    }
    let (m, end): (V1, usize) = first_value(message).map_err(malformed)?;
    let payload = match (v, m.payload_len) {
        (VERSION_WITH_PAYLOAD, Some(len)) => Some(payload(message, end, len, &m.headers)?),
        (VERSION, None) if message[end..].iter().all(u8::is_ascii_whitespace) => None,
        _ => {
            return Err(DecodeError::Malformed(
                "a payload that does not agree with the version".into(),
            ));
        }
    };
    check_bounds(&m)?;
    Ok(EventParts {
        kind: m.kind,
        delivery_id: m.delivery_id,
        accepted_at: Some(UNIX_EPOCH + Duration::from_nanos(m.at_ns)),
        url: m.url,
        org: m.org,
        repo: m.repo,
        private: m.private,
        commit_sha: m.commit_sha,
        users: m.users,
        payload,
    })
}

/// The JSON value a message starts with, and where it ends.
fn first_value<T: serde::de::DeserializeOwned>(
    message: &[u8],
) -> Result<(T, usize), serde_json::Error> {
    let mut values = serde_json::Deserializer::from_slice(message).into_iter::<T>();
    let value = values
        .next()
        .unwrap_or_else(|| Err(serde::de::Error::custom("empty message")))?;
    Ok((value, values.byte_offset()))
}

/// The `len` bytes after the object (ending at `end`): a JSON object, as
/// only a body intake parsed as one is ever written.
fn payload(
    message: &Bytes,
    end: usize,
    len: usize,
    headers: &BTreeMap<String, String>,
) -> Result<WebhookPayload, DecodeError> {
    let body = message.slice(end..);
    if body.len() != len || len > MAX_PAYLOAD {
        return Err(DecodeError::Malformed(format!(
            "payload of {} bytes, announced {len} (at most {MAX_PAYLOAD})",
            body.len()
        )));
    }
    if body.first() != Some(&b'{') || body.last() != Some(&b'}') {
        return Err(DecodeError::Malformed(
            "payload is not a JSON object".into(),
        ));
    }
    Ok(WebhookPayload::new(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        body,
    ))
}

/// What every node refuses, so that each builds the same event.
fn check_bounds(m: &V1) -> Result<(), DecodeError> {
    if m.kind.is_empty() || m.url.is_empty() {
        return Err(DecodeError::Malformed("empty kind or url".into()));
    }
    if m.users.len() > MAX_USERS {
        return Err(DecodeError::Malformed(format!(
            "{} users, at most {MAX_USERS}",
            m.users.len()
        )));
    }
    let fields = [&m.kind, &m.delivery_id, &m.url]
        .into_iter()
        .chain(m.org.iter())
        .chain(m.repo.iter())
        .chain(m.commit_sha.iter())
        .chain(m.users.iter());
    for f in fields {
        if f.len() > MAX_FIELD {
            return Err(DecodeError::Malformed(format!(
                "a field of {} bytes, at most {MAX_FIELD}",
                f.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn parts() -> EventParts {
        EventParts {
            kind: "pull_request".into(),
            delivery_id: "d-1".into(),
            accepted_at: Some(UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789)),
            url: "https://github.com/acme/api/pull/7".into(),
            org: Some("acme".into()),
            repo: Some("acme/api".into()),
            private: true,
            commit_sha: Some("0b1e2c6f".into()),
            users: vec!["Alice".into(), "bob".into()],
            payload: None,
        }
    }

    #[test]
    fn a_payload_follows_its_facts_verbatim_and_builds_the_same_frames() {
        let body = Bytes::from_static(b"{\"action\":\"opened\",\n  \"n\": 1}");
        let mut p = parts();
        p.payload = Some(WebhookPayload::new(
            [
                ("X-GitHub-Event", b"pull_request".as_slice()),
                ("Content-Type", b"application/json"),
            ],
            body.clone(),
        ));
        let message = encode(&p);
        assert!(message.starts_with(b"{\"v\":2,"));
        assert!(message.ends_with(&body));
        let back = decode(&Bytes::from(message.clone())).unwrap();
        assert_eq!(back.payload, p.payload);
        let (mut a, mut b) = (Event::new(p), Event::new(back));
        a.set_seq(3);
        b.set_seq(3);
        assert_eq!(a.full_frame(), b.full_frame());
        assert_eq!(a.frame(), b.frame());

        // A body cut short, one longer than announced, or a version 1
        // message with a body are refused.
        let cut = Bytes::from(message[..message.len() - 1].to_vec());
        let long = Bytes::from([&message[..], b" "].concat());
        let v1 = Bytes::from(encode(&parts())).slice(..);
        let v1_with_tail = Bytes::from([&v1[..], &body[..]].concat());
        for bad in [cut, long, v1_with_tail] {
            assert!(matches!(decode(&bad), Err(DecodeError::Malformed(_))));
        }
    }

    #[test]
    fn round_trips_to_the_same_frame() {
        let p = parts();
        let back = decode(&Bytes::from(encode(&p))).unwrap();
        let (mut a, mut b) = (Event::new(p), Event::new(back));
        a.set_seq(9);
        b.set_seq(9);
        // Every node builds the same bytes from the message.
        assert_eq!(a.frame(), b.frame());
        assert_eq!(a.users(), b.users());
        assert_eq!(
            (b.org(), b.repo(), b.is_private()),
            (Some("acme"), Some("acme/api"), true)
        );
    }

    #[test]
    fn minimal_message_and_unknown_fields() {
        let p = decode(&Bytes::from_static(
            br#"{"v":1,"kind":"push","at_ns":5,"url":"https://github.com/o/r","later":[1]}"#,
        ))
        .unwrap();
        assert_eq!(
            (p.kind.as_str(), p.url.as_str()),
            ("push", "https://github.com/o/r")
        );
        assert!(p.org.is_none() && p.users.is_empty() && !p.private);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            decode(&Bytes::from_static(br#"{"v":3,"anything":true}"#)),
            Err(DecodeError::UnknownVersion(3))
        ));
        for bad in [
            &b""[..],
            b"null",
            b"[1]",
            b"{}",
            br#"{"v":"1"}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"kind":"","at_ns":1,"url":"u"}"#,
            br#"{"v":1,"kind":"k","at_ns":-1,"url":"u"}"#,
            br#"{"v":1,"kind":"k","at_ns":1,"url":"u","users":"alice"}"#,
        ] {
            assert!(
                matches!(
                    decode(&Bytes::from_static(bad)),
                    Err(DecodeError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"v":1,"kind":"k","at_ns":1,"url":"u","users":[{}]}}"#,
            vec!["\"x\""; MAX_USERS + 1].join(",")
        );
        assert!(matches!(
            decode(&Bytes::from(many)),
            Err(DecodeError::Malformed(_))
        ));
        let long = format!(
            r#"{{"v":1,"kind":"k","at_ns":1,"url":"{}"}}"#,
            "u".repeat(MAX_FIELD + 1)
        );
        assert!(matches!(
            decode(&Bytes::from(long)),
            Err(DecodeError::Malformed(_))
        ));
    }

    /// An event capped at intake (users past the most an event names are
    /// dropped there) is the one a cluster node decodes.
    #[test]
    fn an_event_capped_at_intake_decodes_the_same() {
        let reviewers: Vec<_> = (0..500)
            .map(|i| serde_json::json!({"login": format!("r{i}")}))
            .collect();
        let payload = serde_json::json!({
            "pull_request": {
                "html_url": "https://github.com/o/r/pull/1",
                "user": {"login": "Author"},
                "requested_reviewers": reviewers,
            },
            "sender": {"login": "sender"},
        });
        let mut body = payload.to_string().into_bytes();
        let cache = crate::webhook::CommitCache::new(0, Duration::from_secs(1));
        let p = crate::webhook::parse("pull_request", "d", &mut body, &cache)
            .unwrap()
            .event
            .unwrap();
        assert_eq!(p.users.len(), crate::event::MAX_USERS);
        let back = decode(&Bytes::from(encode(&p))).unwrap();
        assert_eq!(back.users, p.users);
    }
}
