//! How intake answers: one variant per row of PROTOCOL.md's order of
//! checks, mapped to its status, body and headers in one place.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http_text;

/// How intake answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 405: not a POST.
    MethodNotAllowed,
    /// 429 + `Retry-After` before the body is read: the sender had
    /// `webhook.max_bad_signatures_per_ip_per_minute` bad signatures within
    /// a minute.
    TooManyBadSignatures {
        /// Seconds until the sender's minute has passed.
        retry_after_s: u64,
    },
    /// 403: the sender is outside `webhook.allowed_sources`.
    ForbiddenSource,
    /// 503 + `Retry-After` (seconds until the next fetch): the sender is
    /// outside the CIDRs of `webhook.allowed_sources`, and GitHub's ranges
    /// are not known yet.
    SourcesUnknown { retry_after_s: u64 },
    /// 200, not broadcast: the event type is not in the allowed list.
    TypeNotAllowed,
    /// 413: declared or actual body over the limit.
    TooLarge,
    /// 401 before the body is read: no secret, or the signature header is
    /// missing or malformed.
    BadSignatureHeader,
    /// 503 + `Retry-After` before the body is read: as many webhook
    /// requests in progress as `webhook.max_concurrent_requests` allows.
    BusyRequests,
    /// 503 + `Retry-After`: no room for the body in
    /// `webhook.max_inflight_bytes` (before reading, or midway for a body
    /// of unknown length).
    BusyBytes,
    /// 408: the body was not complete within `webhook.body_timeout_s`.
    Timeout,
    /// 400: the body could not be read (the connection failed mid-body).
    ReadFailed,
    /// 401: the signature is well-formed but does not match the body.
    BadSignature,
    /// 400: the body is not JSON, or not a JSON object.
    InvalidJson,
    /// 200, not broadcast again: this delivery id was already accepted.
    Duplicate,
    /// 200, not broadcast: the event carries no URL.
    NoUrl,
    /// 200 `OK`: broadcast.
    Broadcast,
    /// 503: the sink could not store the event.
    Unavailable,
}

impl Outcome {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyBadSignatures { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ForbiddenSource => StatusCode::FORBIDDEN,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadSignatureHeader | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::ReadFailed | Self::InvalidJson => StatusCode::BAD_REQUEST,
            Self::TypeNotAllowed | Self::Duplicate | Self::NoUrl | Self::Broadcast => {
                StatusCode::OK
            }
            Self::SourcesUnknown { .. }
            | Self::BusyRequests
            | Self::BusyBytes
            | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn body(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method not allowed\n",
            Self::TooManyBadSignatures { .. } => {
                "too many requests: too many bad signatures from this address; check the webhook secret\n"
            }
            Self::ForbiddenSource => {
                "forbidden: webhooks are accepted only from the addresses in webhook.allowed_sources\n"
            }
            Self::SourcesUnknown { .. } => {
                "service unavailable: the addresses webhooks are accepted from are not known yet, retry later\n"
            }
            Self::TooLarge => "payload too large\n",
            Self::BadSignatureHeader | Self::BadSignature => "unauthorized\n",
            Self::BusyRequests | Self::BusyBytes => {
                "service unavailable: too many webhooks in progress, retry later\n"
            }
            Self::Timeout => "request timeout: the body was not received in time\n",
            Self::ReadFailed | Self::InvalidJson => "bad request\n",
            Self::TypeNotAllowed => "ignored: event type not allowed\n",
            Self::Duplicate => "duplicate: delivery already accepted\n",
            Self::NoUrl => "ignored: event carries no pull request URL\n",
            Self::Broadcast => "OK",
            Self::Unavailable => "service unavailable: the event could not be stored\n",
        }
    }

    /// A short name for logs and the `webhook_outcomes_total` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyBadSignatures { .. } => "limited_bad_signatures",
            Self::ForbiddenSource => "forbidden_source",
            Self::SourcesUnknown { .. } => "sources_unknown",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::TooLarge => "too_large",
            Self::BadSignatureHeader => "bad_signature_header",
            Self::BusyRequests => "busy_requests",
            Self::BusyBytes => "busy_bytes",
            Self::Timeout => "timeout",
            Self::ReadFailed => "read_failed",
            Self::BadSignature => "bad_signature",
            Self::InvalidJson => "invalid_json",
            Self::Duplicate => "duplicate",
            Self::NoUrl => "no_url",
            Self::Broadcast => "broadcast",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether the answer was decided before the body was read to its end:
    /// the connection is then closed (`Connection: close`), so that the
    /// unread rest is never taken for the next request.
    fn leaves_body_unread(self) -> bool {
        matches!(
            self,
            Self::MethodNotAllowed
                | Self::TooManyBadSignatures { .. }
                | Self::ForbiddenSource
                | Self::SourcesUnknown { .. }
                | Self::TypeNotAllowed
                | Self::TooLarge
                | Self::BadSignatureHeader
                | Self::BusyRequests
                | Self::BusyBytes
                | Self::Timeout
                | Self::ReadFailed
        )
    }

    /// The response; `retry_after` is the `Retry-After` of a 503 for
    /// capacity (one for unknown sources carries its own).
    pub fn response(self, retry_after: &HeaderValue) -> Response<Full<Bytes>> {
        let mut r = http_text::text(self.status(), self.body());
        let headers = r.headers_mut();
        if self == Self::MethodNotAllowed {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        match self {
            Self::BusyRequests | Self::BusyBytes => {
                headers.insert(header::RETRY_AFTER, retry_after.clone());
            }
            Self::TooManyBadSignatures { retry_after_s }
            | Self::SourcesUnknown { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            _ => {}
        }
        if self.leaves_body_unread() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}
