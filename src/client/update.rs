//! What a [`Subscriber`](super::Subscriber) yields: events, and what
//! happened to the connection between them.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::Position;

/// An event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The message exactly as the server sent it.
    pub json: String,
    /// `url`.
    pub url: String,
    /// `type`.
    pub kind: String,
    /// `delivery_id` (may be empty).
    pub delivery_id: String,
    /// `timestamp`.
    pub timestamp: String,
    /// `seq` (absent from webhook-sprinkler).
    pub seq: Option<u64>,
    /// `headers`: the webhook's request headers the server kept with its
    /// payload (`X-GitHub-Event`, `X-GitHub-Delivery`, ...), in the
    /// server's order; empty without `include_payload`.
    pub headers: Vec<(String, String)>,
    /// Where `payload` is in `json`.
    payload: Option<Range<usize>>,
}

/// The fields of a frame that an event is made of; the rest is skipped.
/// Small fields are taken as any JSON value (a field of an unexpected
/// type is read as empty, as before); the payload is only delimited.
#[derive(Deserialize)]
struct Frame<'a> {
    url: Option<Value>,
    #[serde(rename = "type")]
    kind: Option<Value>,
    delivery_id: Option<Value>,
    timestamp: Option<Value>,
    seq: Option<Value>,
    #[serde(borrow)]
    headers: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

impl ReceivedEvent {
    /// The event in a message from the server (one with a `url`); `None`
    /// for anything else (a ping, an error, text that is not JSON).
    pub fn parse(frame: &str) -> Option<ReceivedEvent> {
        let f: Frame = serde_json::from_str(frame).ok()?;
        f.url.as_ref()?;
        let s = |v: &Option<Value>| {
            v.as_ref()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        // The payload's place in `frame`: RawValue borrows from it.
        let payload = f.payload.map(|raw| {
            let start = raw.get().as_ptr() as usize - frame.as_ptr() as usize;
            with_whitespace(frame.as_bytes(), start..start + raw.get().len())
        });
        Some(ReceivedEvent {
            url: s(&f.url),
            kind: s(&f.kind),
            delivery_id: s(&f.delivery_id),
            timestamp: s(&f.timestamp),
            seq: f.seq.as_ref().and_then(Value::as_u64),
            headers: (f.headers)
                .and_then(|raw| serde_json::from_str::<Pairs>(raw.get()).ok())
                .map(|p| p.0)
                .unwrap_or_default(),
            payload,
            json: frame.to_owned(),
        })
    }

    /// The webhook's body exactly as the server inserted it (GitHub's
    /// bytes, not re-encoded); `None` when the event carries no payload
    /// (not asked for, or accepted while the server kept none).
    pub fn payload(&self) -> Option<&str> {
        self.payload.clone().map(|r| &self.json[r])
    }

    /// Where [`ReceivedEvent::payload`] is in [`ReceivedEvent::json`], to
    /// slice it out of a buffer that owns the message without copying.
    pub fn payload_range(&self) -> Option<Range<usize>> {
        self.payload.clone()
    }
}

/// `value` widened over the JSON whitespace around it (RawValue leaves it
/// out): the server writes `"payload":` then GitHub's body verbatim, so
/// everything up to the next `,` or `}` is the body's, a trailing newline
/// included, and the signature covers it.
fn with_whitespace(frame: &[u8], value: Range<usize>) -> Range<usize> {
    let ws = |b: &u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    let before = frame[..value.start]
        .iter()
        .rev()
        .take_while(|b| ws(b))
        .count();
    let after = frame[value.end..].iter().take_while(|b| ws(b)).count();
    value.start - before..value.end + after
}

/// The string members of a JSON object, in the order written (a `Value`
/// object would sort them); other members are left out.
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if let Value::String(v) = v {
                        pairs.push((k, v));
                    }
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Events may have been missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The last position seen before the gap.
    pub after: Option<Position>,
    /// The last event's `timestamp` before the gap.
    pub last_event_at: Option<String>,
    /// The server's `resume_error` (`unknown_epoch`, `too_old`), or
    /// `no_resume` when the server does not resume (webhook-sprinkler).
    pub reason: String,
}

impl Gap {
    /// One line for people.
    pub fn describe(&self) -> String {
        let from = match &self.after {
            Some(p) => format!("after seq {} (epoch {})", p.seq, p.epoch),
            None => "since the previous connection".to_owned(),
        };
        let at = self
            .last_event_at
            .as_deref()
            .map(|t| format!(", last event received at {t}"))
            .unwrap_or_default();
        format!(
            "events {from}{at} may have been missed: the server could not replay them ({})",
            self.reason
        )
    }
}

/// What a [`Subscriber`](super::Subscriber) has to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An event.
    Event(ReceivedEvent),
    /// Subscribed, on `server`; `resumed` when a resume was asked.
    Connected {
        /// The server's URL.
        server: String,
        /// Whether the server replayed what was missed (`None`: nothing to
        /// resume).
        resumed: Option<bool>,
        /// The server's `warnings`.
        warnings: Vec<String>,
    },
    /// Events may have been missed (then [`Update::Connected`] follows).
    Gap(Gap),
    /// The connection ended or could not be made; the next attempt is in
    /// `retry_in`.
    Disconnected {
        /// The server's URL.
        server: String,
        /// What happened.
        error: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_frame_yields_its_fields_headers_and_payload_bytes() {
        // Odd spacing, escapes and key order inside the payload: it comes
        // out exactly as written, not re-encoded.
        let body = "\n {\"zeta\":1,  \"a\" : \"caf\\u00e9 \u{e9}\",\n\"n\":1.50e3}\r\n";
        let frame = format!(
            r#"{{"url":"https://github.com/acme/api/pull/1","timestamp":"t","type":"pull_request","delivery_id":"d-1","seq":12,"headers":{{"X-GitHub-Event":"pull_request","X-GitHub-Delivery":"d-1","Odd":7}},"payload":{body}}}"#
        );
        let e = ReceivedEvent::parse(&frame).unwrap();
        assert_eq!(e.payload(), Some(body));
        assert_eq!(&frame[e.payload_range().unwrap()], body);
        assert_eq!(
            (
                e.url.as_str(),
                e.kind.as_str(),
                e.delivery_id.as_str(),
                e.seq
            ),
            (
                "https://github.com/acme/api/pull/1",
                "pull_request",
                "d-1",
                Some(12)
            )
        );
        assert_eq!(
            e.headers,
            [
                ("X-GitHub-Event".to_owned(), "pull_request".to_owned()),
                ("X-GitHub-Delivery".to_owned(), "d-1".to_owned())
            ],
            "string values only, in order"
        );
        assert_eq!(e.json, frame);
    }

    #[test]
    fn the_payload_need_not_be_last() {
        // The server may write `seq` after the payload; a "seq" inside the
        // payload is the payload's.
        let frame = r#"{"url":"u","type":"push","payload":{"seq":99, "x":[1,2]},"seq":7}"#;
        let e = ReceivedEvent::parse(frame).unwrap();
        assert_eq!(e.payload(), Some(r#"{"seq":99, "x":[1,2]}"#));
        assert_eq!(e.seq, Some(7));
    }

    #[test]
    fn frames_without_payload_or_url() {
        let e = ReceivedEvent::parse(r#"{"url":"u","type":"push","seq":1}"#).unwrap();
        assert_eq!((e.payload(), e.headers.len()), (None, 0));
        let e = ReceivedEvent::parse(r#"{"url":"u","payload":null}"#).unwrap();
        assert_eq!(e.payload(), None);
        // Not events: these are read as before (a ping is answered).
        for other in [r#"{"type":"ping","seq":3}"#, "[1]", "nope", r#"{"url":"u""#] {
            assert!(ReceivedEvent::parse(other).is_none(), "{other}");
        }
        // A field of an unexpected type reads as empty.
        let e = ReceivedEvent::parse(r#"{"url":"u","type":5,"seq":"x","headers":"h"}"#).unwrap();
        assert_eq!((e.kind.as_str(), e.seq, e.headers.len()), ("", None, 0));
    }

    #[test]
    fn gaps_say_what_may_be_missing() {
        let g = Gap {
            after: Some(Position {
                epoch: "e1".into(),
                seq: 41,
            }),
            last_event_at: Some("2026-11-27T00:00:00Z".into()),
            reason: "unknown_epoch".into(),
        };
        assert_eq!(
            g.describe(),
            "events after seq 41 (epoch e1), last event received at 2026-11-27T00:00:00Z may have been missed: the server could not replay them (unknown_epoch)"
        );
    }
}
