//! The stream's message encoding: an event's routing facts, not the raw
//! webhook. Versioned, so that nodes of different releases can share a
//! stream: a node counts and skips a message of a version it does not know.
//!
//! Version 1 is a JSON object: `{"v":1,"kind":..,"delivery_id":..,
//! "at_ns":..,"url":..,"org":..,"repo":..,"private":..,"commit_sha":..,
//! "users":[..],"action":..}`. Unknown fields are ignored (additions within
//! a version: `action` is one; a node that predates it ignores it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::event::{EventParts, MAX_FIELD, MAX_USERS, is_action};

/// The version this node writes and reads.
pub const VERSION: u64 = 1;

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
    action: Option<&'a str>,
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
    action: Option<String>,
}

/// The message for `event`.
pub fn encode(event: &EventParts) -> Vec<u8> {
    let at = event.accepted_at.unwrap_or_else(SystemTime::now);
    let at_ns = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    serde_json::to_vec(&Encode {
        v: VERSION,
        kind: &event.kind,
        delivery_id: &event.delivery_id,
        at_ns,
        url: &event.url,
        org: event.org.as_deref(),
        repo: event.repo.as_deref(),
        private: event.private,
        commit_sha: event.commit_sha.as_deref(),
        users: &event.users,
        action: event.action.as_deref().filter(|a| !a.is_empty()),
    })
    .expect("serializing strings cannot fail")
}

/// The event a message carries.
pub fn decode(message: &[u8]) -> Result<EventParts, DecodeError> {
    let malformed = |e: serde_json::Error| DecodeError::Malformed(e.to_string());
    let Version { v } = serde_json::from_slice(message).map_err(malformed)?;
    if v != VERSION {
        return Err(DecodeError::UnknownVersion(v));
    }
    let m: V1 = serde_json::from_slice(message).map_err(malformed)?;
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
    if let Some(a) = &m.action
        && !is_action(a)
    {
        return Err(DecodeError::Malformed(format!(
            "an action of {} bytes, not 1..{MAX_FIELD} printable",
            a.len()
        )));
    }
    Ok(EventParts {
        kind: m.kind,
        delivery_id: m.delivery_id,
        accepted_at: Some(UNIX_EPOCH + Duration::from_nanos(m.at_ns)),
        url: m.url,
        org: m.org,
        repo: m.repo,
        private: m.private,
        commit_sha: m.commit_sha,
        action: m.action,
        users: m.users,
    })
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
            action: Some("synchronize".into()),
            users: vec!["Alice".into(), "bob".into()],
        }
    }

    #[test]
    fn round_trips_to_the_same_frame() {
        let p = parts();
        let back = decode(&encode(&p)).unwrap();
        let (mut a, mut b) = (Event::new(p), Event::new(back));
        a.set_seq(9);
        b.set_seq(9);
        // Every node builds the same bytes from the message.
        assert_eq!(a.frame(), b.frame());
        assert_eq!(a.users(), b.users());
        assert_eq!(
            (b.org(), b.repo(), b.is_private(), b.action()),
            (Some("acme"), Some("acme/api"), true, Some("synchronize"))
        );
    }

    #[test]
    fn minimal_message_and_unknown_fields() {
        let p = decode(
            br#"{"v":1,"kind":"push","at_ns":5,"url":"https://github.com/o/r","later":[1]}"#,
        )
        .unwrap();
        assert_eq!(
            (p.kind.as_str(), p.url.as_str()),
            ("push", "https://github.com/o/r")
        );
        assert!(p.org.is_none() && p.users.is_empty() && !p.private && p.action.is_none());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            decode(br#"{"v":2,"anything":true}"#),
            Err(DecodeError::UnknownVersion(2))
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
            br#"{"v":1,"kind":"k","at_ns":1,"url":"u","action":7}"#,
            br#"{"v":1,"kind":"k","at_ns":1,"url":"u","action":""}"#,
            br#"{"v":1,"kind":"k","at_ns":1,"url":"u","action":"a\nb"}"#,
        ] {
            assert!(
                matches!(decode(bad), Err(DecodeError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many = format!(
            r#"{{"v":1,"kind":"k","at_ns":1,"url":"u","users":[{}]}}"#,
            vec!["\"x\""; MAX_USERS + 1].join(",")
        );
        assert!(matches!(
            decode(many.as_bytes()),
            Err(DecodeError::Malformed(_))
        ));
        for long in [
            format!(
                r#"{{"v":1,"kind":"k","at_ns":1,"url":"{}"}}"#,
                "u".repeat(MAX_FIELD + 1)
            ),
            format!(
                r#"{{"v":1,"kind":"k","at_ns":1,"url":"u","action":"{}"}}"#,
                "a".repeat(MAX_FIELD + 1)
            ),
        ] {
            assert!(matches!(
                decode(long.as_bytes()),
                Err(DecodeError::Malformed(_))
            ));
        }
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
        let back = decode(&encode(&p)).unwrap();
        assert_eq!(back.users, p.users);
    }
}
