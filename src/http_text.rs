//! Plain-text answers: every `text/plain` response the server writes,
//! whether through hyper or, before hyper has the connection, as raw bytes.
//! It imports nothing from the crate, so that any endpoint can use it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};

/// The content type of a human-readable answer.
pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// What every answer of the daemon tells browsers, written as a person
/// would type it: never guess a content type, never send this server's URL
/// as a referrer.
pub(crate) const BROWSER_HEADERS: [(&str, &str); 2] = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
];

/// Keep no copy: on every answer but an upgrade and an event stream.
pub(crate) const NO_STORE: (&str, &str) = ("Cache-Control", "no-store");

/// The content type of the Prometheus text exposition format.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A `text/plain` response: `status`, `content_type` and `body`.
pub(crate) fn typed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// A human-readable answer (`text/plain; charset=utf-8`).
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    typed(status, TEXT_PLAIN, Bytes::from_static(body.as_bytes()))
}

/// A human-readable answer after which the connection is closed.
pub(crate) fn closing(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(status, body);
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// What [`closing`] answers, as HTTP/1.1 bytes, with the headers the
/// server adds to every answer ([`BROWSER_HEADERS`], [`NO_STORE`]): for a
/// connection that hyper never gets (plain HTTP on the TLS port). Header
/// names are written as a person would type them.
pub(crate) fn closing_wire(status: StatusCode, body: &str) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n\
         Content-Type: {TEXT_PLAIN}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default(),
    );
    for (name, value) in BROWSER_HEADERS.iter().chain([&NO_STORE]) {
        head += &format!("{name}: {value}\r\n");
    }
    format!(
        "{head}Connection: close\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {body}",
        body.len(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_wire_is_the_answer_to_plain_http_on_the_tls_port() {
        let expected: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
X-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\n\
Cache-Control: no-store\r\n\
Connection: close\r\n\
Content-Length: 62\r\n\
\r\n\
400 Bad Request: this port speaks TLS; use https:// or wss://\n";
        let got = closing_wire(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: this port speaks TLS; use https:// or wss://\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn closing_closes() {
        let r = closing(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert_eq!(r.headers()[header::CONTENT_TYPE], TEXT_PLAIN);
    }
}
