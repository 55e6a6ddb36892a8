//! The headers browsers rely on, added in one place to every answer of
//! every listener (the handlers set only what is theirs: content type,
//! CSP, CORS). Answers written before hyper has the connection carry the
//! same ([`crate::http_text::closing_wire`]).

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http_text::{BROWSER_HEADERS, NO_STORE};

/// A year: browsers then use only https for the host, as long as they see
/// it at least once a year.
const HSTS: &str = "max-age=31536000";

/// What an answer is, for the headers it gets.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    /// An event stream: its own `Cache-Control: no-cache` stays.
    pub(super) streamed: bool,
    /// Sent over TLS: `Strict-Transport-Security` too.
    pub(super) tls: bool,
}

/// Adds the headers of [`BROWSER_HEADERS`] to `response`; `Cache-Control:
/// no-store` unless it is an upgrade (101) or an event stream;
/// `X-Frame-Options: DENY` when it is HTML; `Strict-Transport-Security`
/// over TLS.
pub(super) fn protect<B>(response: &mut Response<B>, answer: Answer) {
    let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    for pair in BROWSER_HEADERS {
        set(headers, pair);
    }
    if !upgrade && !answer.streamed {
        set(headers, NO_STORE);
    }
    if is_html(headers) {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if answer.tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

fn set(headers: &mut HeaderMap, (name, value): (&str, &'static str)) {
    let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
    headers.insert(name, HeaderValue::from_static(value));
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_text::{closing_wire, text};

    const PLAIN: Answer = Answer {
        streamed: false,
        tls: false,
    };

    fn names(r: &Response<impl Sized>) -> Vec<String> {
        let mut n: Vec<String> = r
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        n.sort();
        n
    }

    #[test]
    fn every_answer_is_kept_from_sniffing_referrers_and_caches() {
        let mut r = text(StatusCode::NOT_FOUND, "404 page not found\n");
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        protect(&mut r, PLAIN);
        assert_eq!(
            names(&r),
            [
                "cache-control: no-store",
                "content-type: text/plain; charset=utf-8",
                "referrer-policy: no-referrer",
                "x-content-type-options: nosniff",
            ]
        );
    }

    #[test]
    fn upgrades_and_streams_keep_their_caching_html_is_never_framed_tls_is_sticky() {
        let mut upgrade = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .body(())
            .unwrap();
        protect(&mut upgrade, PLAIN);
        assert!(upgrade.headers().get(header::CACHE_CONTROL).is_none());
        assert_eq!(upgrade.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");

        let mut stream = Response::builder()
            .header(header::CACHE_CONTROL, "no-cache")
            .body(())
            .unwrap();
        protect(
            &mut stream,
            Answer {
                streamed: true,
                tls: true,
            },
        );
        assert_eq!(stream.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            stream.headers()[header::STRICT_TRANSPORT_SECURITY],
            "max-age=31536000"
        );
        assert!(stream.headers().get(header::X_FRAME_OPTIONS).is_none());

        let mut page = Response::builder()
            .header(header::CONTENT_TYPE, "Text/HTML; charset=utf-8")
            .body(())
            .unwrap();
        protect(&mut page, PLAIN);
        assert_eq!(page.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            page.headers()
                .get(header::STRICT_TRANSPORT_SECURITY)
                .is_none()
        );
    }

    #[test]
    fn answers_written_before_hyper_carry_the_same() {
        let wire = String::from_utf8(closing_wire(StatusCode::BAD_REQUEST, "x\n")).unwrap();
        let mut r = text(StatusCode::BAD_REQUEST, "x\n");
        protect(&mut r, PLAIN);
        for (name, value) in r.headers() {
            let line = format!("{name}: {}\r\n", value.to_str().unwrap());
            assert!(
                wire.to_ascii_lowercase().contains(&line),
                "{line:?} in {wire}"
            );
        }
    }
}
