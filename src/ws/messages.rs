//! The JSON messages of the WebSocket protocol, and the one mapping from a
//! failed handshake to its error code, message and close code.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec;
use crate::auth::AuthError;
use crate::broker::{JoinError, ResumeRefusal, Revocation, StreamState};
use crate::payloads::PayloadRefusal;
use crate::subscription::SubscriptionError;

/// Error codes of PROTOCOL.md; programs match on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    AuthenticationFailed,
    AccessDenied,
    RateLimitExceeded,
    InvalidSubscription,
    EventTypeNotAllowed,
    PayloadNotAllowed,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthenticationFailed => "authentication_failed",
            Self::AccessDenied => "access_denied",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::InvalidSubscription => "invalid_subscription",
            Self::EventTypeNotAllowed => "event_type_not_allowed",
            Self::PayloadNotAllowed => "payload_not_allowed",
            Self::InternalError => "internal_error",
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// No subscription within the handshake timeout.
    Timeout(Duration),
    /// The first message was larger than allowed.
    TooLarge(usize),
    /// The first message was binary.
    Binary,
    /// The query of `/events` (or its `Last-Event-ID`) does not make a
    /// subscription.
    InvalidQuery(String),
    /// The subscription is invalid.
    Invalid(SubscriptionError),
    /// An event type outside the server's allowed list.
    EventTypeNotAllowed(String),
    /// The token check failed.
    Auth(AuthError),
    /// The user is not a member of the subscribed organization.
    NotMember { login: String, org: String },
    /// `include_payload` asked of a server or by a tier without payloads.
    PayloadNotAllowed(PayloadRefusal),
    /// The server is shutting down.
    ShuttingDown,
    /// A resume needs the cluster's stream, which cannot be reached now.
    StreamUnavailable,
}

impl HandshakeError {
    /// The outcome label for metrics: the error code, but `timeout` for a
    /// subscription that never came.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            other => other.answer().0.as_str(),
        }
    }

    /// Whether the client's token was rejected: `authentication_failed`,
    /// or `access_denied` because of the token. What
    /// `auth.max_failed_checks_per_ip` counts. A user who is not a member
    /// of the organization does not count: the token was accepted (and is
    /// cached, so asking again costs no API request). Neither do rate
    /// limits and outages: they are GitHub's state, not the token's.
    pub fn rejects_token(&self) -> bool {
        matches!(
            self,
            Self::Auth(AuthError::InvalidToken | AuthError::Forbidden)
        )
    }

    /// The error code, the message for people, and the close code.
    pub fn answer(&self) -> (ErrorCode, String, u16) {
        use ErrorCode::*;
        match self {
            Self::Timeout(t) => (
                InvalidSubscription,
                format!(
                    "Invalid subscription: no subscription received within {} s",
                    t.as_secs()
                ),
                1008,
            ),
            Self::TooLarge(max) => (
                InvalidSubscription,
                format!("Invalid subscription: subscription message exceeds {max} bytes"),
                1009,
            ),
            Self::Binary => (
                InvalidSubscription,
                "Invalid subscription: subscription must be a JSON text message, not binary".into(),
                1003,
            ),
            Self::Invalid(e) => (
                InvalidSubscription,
                format!("Invalid subscription: {e}"),
                1008,
            ),
            Self::InvalidQuery(why) => (
                InvalidSubscription,
                format!("Invalid subscription: {why}"),
                1008,
            ),
            Self::EventTypeNotAllowed(t) => (
                EventTypeNotAllowed,
                format!("Event type '{t}' is not allowed"),
                1008,
            ),
            Self::Auth(AuthError::InvalidToken) => {
                (AuthenticationFailed, "Invalid GitHub token.".into(), 1008)
            }
            Self::Auth(AuthError::Forbidden) => (
                AccessDenied,
                "Access forbidden. Check token permissions.".into(),
                1008,
            ),
            Self::Auth(AuthError::RateLimited) => (
                RateLimitExceeded,
                "GitHub API rate limit exceeded. Try again later.".into(),
                1013,
            ),
            Self::Auth(AuthError::Unavailable(_)) => (
                InternalError,
                "Could not verify the token with GitHub. Try again later.".into(),
                1011,
            ),
            Self::NotMember { login, org } => (
                AccessDenied,
                format!("User '{login}' is not a member of organization '{org}'."),
                1008,
            ),
            Self::PayloadNotAllowed(why) => (
                PayloadNotAllowed,
                format!("include_payload refused: {why}."),
                1008,
            ),
            Self::ShuttingDown => (InternalError, "Server is shutting down.".into(), 1001),
            Self::StreamUnavailable => (
                InternalError,
                "The event stream cannot be reached to replay missed events; reconnect and resume later.".into(),
                1013,
            ),
        }
    }
}

/// A client the hub would not take is answered like a failed handshake.
impl From<JoinError> for HandshakeError {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Stopped => Self::ShuttingDown,
            JoinError::ResumeAfterFuture { after, last } => {
                Self::Invalid(SubscriptionError::ResumeAfterFuture { after, last })
            }
            JoinError::StreamUnavailable => Self::StreamUnavailable,
        }
    }
}

/// The error message of a client whose access a recheck revoked: the one
/// its handshake would get now.
pub(crate) fn revocation_frame(why: Revocation, login: &str, org: &str) -> Bytes {
    let refusal = match why {
        Revocation::TokenRejected => HandshakeError::Auth(AuthError::InvalidToken),
        Revocation::TokenForbidden => HandshakeError::Auth(AuthError::Forbidden),
        Revocation::NotMember => HandshakeError::NotMember {
            login: login.to_owned(),
            org: org.to_owned(),
        },
        Revocation::PayloadNotAllowed(why) => HandshakeError::PayloadNotAllowed(why),
    };
    let (code, message, _) = refusal.answer();
    error_frame(code, &message)
}

#[derive(Serialize)]
struct ErrorMsg<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: &'static str,
    message: &'a str,
}

/// `{"type":"error","error":CODE,"message":...}` as a text frame.
pub(crate) fn error_frame(code: ErrorCode, message: &str) -> Bytes {
    codec::text_frame(&error_json(code, message)).0
}

/// `{"type":"error","error":CODE,"message":...}`.
pub(crate) fn error_json(code: ErrorCode, message: &str) -> Vec<u8> {
    json(&ErrorMsg {
        kind: "error",
        error: code.as_str(),
        message,
    })
}

#[derive(Serialize)]
struct Confirmation<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    organization: &'a str,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_types: Option<&'a [String]>,
    stream: Stream<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resumed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume_error: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct Stream<'a> {
    epoch: &'a str,
    seq: u64,
    oldest: u64,
}

/// What a `subscription_confirmed` message says.
pub(crate) struct Confirmed<'a> {
    pub organization: &'a str,
    pub username: &'a str,
    /// Omitted (`None`) when the client receives every type.
    pub event_types: Option<&'a [String]>,
    pub stream: &'a StreamState,
    /// With a resume request: whether it was honoured, or why not.
    pub resume: Option<Result<(), ResumeRefusal>>,
    pub warnings: &'a [String],
}

/// The `subscription_confirmed` message.
pub(crate) fn confirmation_json(c: &Confirmed<'_>) -> Vec<u8> {
    json(&Confirmation {
        kind: "subscription_confirmed",
        organization: c.organization,
        username: c.username,
        event_types: c.event_types,
        stream: Stream {
            epoch: &c.stream.epoch,
            seq: c.stream.seq,
            oldest: c.stream.oldest,
        },
        resumed: c.resume.map(|r| r.is_ok()),
        resume_error: c.resume.and_then(|r| r.err()).map(ResumeRefusal::as_str),
        warnings: c.warnings,
    })
}

#[derive(Serialize)]
struct Keepalive<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<&'a serde_json::Value>,
}

/// The server's keepalive `{"type":"ping","seq":N}` as a text frame.
pub(crate) fn ping_frame(seq: u64) -> Bytes {
    let seq = serde_json::Value::from(seq);
    json_frame(&Keepalive {
        kind: "ping",
        seq: Some(&seq),
    })
}

/// `{"type":"pong","seq":...}` echoing the client's seq (omitted if it sent none).
pub(crate) fn pong_frame(seq: Option<&serde_json::Value>) -> Bytes {
    json_frame(&Keepalive { kind: "pong", seq })
}

fn json_frame(v: &impl Serialize) -> Bytes {
    codec::text_frame(&json(v)).0
}

fn json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializing plain structs cannot fail")
}

/// A message a subscribed client may send.
#[derive(Deserialize)]
pub(crate) struct ClientMessage {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub seq: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &Bytes) -> &str {
        let at = if frame[1] == 126 { 4 } else { 2 };
        std::str::from_utf8(&frame[at..]).unwrap()
    }

    #[test]
    fn only_rejected_tokens_count_as_failed_checks() {
        use HandshakeError as H;
        assert!(H::Auth(AuthError::InvalidToken).rejects_token());
        assert!(H::Auth(AuthError::Forbidden).rejects_token());
        for other in [
            H::Auth(AuthError::RateLimited),
            H::Auth(AuthError::Unavailable("down".into())),
            H::NotMember {
                login: "alice".into(),
                org: "acme".into(),
            },
            H::Binary,
            H::Timeout(Duration::from_secs(5)),
            H::ShuttingDown,
        ] {
            assert!(!other.rejects_token(), "{other:?}");
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(
            text(&error_frame(ErrorCode::AccessDenied, "no")),
            r#"{"type":"error","error":"access_denied","message":"no"}"#
        );
        let stream = StreamState {
            epoch: "e1".into(),
            seq: 9,
            oldest: 3,
        };
        let base = Confirmed {
            organization: "acme",
            username: "alice",
            event_types: Some(&["pull_request".into()]),
            stream: &stream,
            resume: None,
            warnings: &[],
        };
        assert_eq!(
            std::str::from_utf8(&confirmation_json(&base)).unwrap(),
            r#"{"type":"subscription_confirmed","organization":"acme","username":"alice","event_types":["pull_request"],"stream":{"epoch":"e1","seq":9,"oldest":3}}"#
        );
        let resumed = Confirmed {
            event_types: None,
            resume: Some(Ok(())),
            warnings: &["w".into()],
            ..base
        };
        assert_eq!(
            std::str::from_utf8(&confirmation_json(&resumed)).unwrap(),
            r#"{"type":"subscription_confirmed","organization":"acme","username":"alice","stream":{"epoch":"e1","seq":9,"oldest":3},"resumed":true,"warnings":["w"]}"#
        );
        let refused = Confirmed {
            resume: Some(Err(ResumeRefusal::TooOld)),
            warnings: &[],
            ..resumed
        };
        assert_eq!(
            std::str::from_utf8(&confirmation_json(&refused)).unwrap(),
            r#"{"type":"subscription_confirmed","organization":"acme","username":"alice","stream":{"epoch":"e1","seq":9,"oldest":3},"resumed":false,"resume_error":"too_old"}"#
        );
        assert_eq!(text(&ping_frame(3)), r#"{"type":"ping","seq":3}"#);
        let seq = serde_json::json!("abc");
        assert_eq!(
            text(&pong_frame(Some(&seq))),
            r#"{"type":"pong","seq":"abc"}"#
        );
        assert_eq!(text(&pong_frame(None)), r#"{"type":"pong"}"#);
    }

    #[test]
    fn every_error_code_is_reachable() {
        let cases = [
            (
                HandshakeError::Timeout(Duration::from_secs(5)),
                "invalid_subscription",
            ),
            (
                HandshakeError::Auth(AuthError::InvalidToken),
                "authentication_failed",
            ),
            (HandshakeError::Auth(AuthError::Forbidden), "access_denied"),
            (
                HandshakeError::Auth(AuthError::RateLimited),
                "rate_limit_exceeded",
            ),
            (
                HandshakeError::Auth(AuthError::Unavailable("x".into())),
                "internal_error",
            ),
            (
                HandshakeError::EventTypeNotAllowed("push".into()),
                "event_type_not_allowed",
            ),
            (
                HandshakeError::PayloadNotAllowed(PayloadRefusal::Disabled),
                "payload_not_allowed",
            ),
            (
                HandshakeError::NotMember {
                    login: "a".into(),
                    org: "b".into(),
                },
                "access_denied",
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.answer().0.as_str(), code, "{e:?}");
        }
    }
}
