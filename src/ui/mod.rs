//! `GET /ui/`: the live events page. Its HTML, CSS and JavaScript (with
//! the JavaScript client, `clients/js/hookfan.js`) are embedded in the
//! binary: nothing is fetched from elsewhere, and the policy sent with
//! every file forbids it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::http_text::text;

/// Where the page lives; `/ui` alone is redirected here.
pub(crate) const PREFIX: &str = "/ui/";

/// Sent with every file: scripts, styles and connections from this origin
/// only (CSP Level 3 lets `'self'` match `ws:`/`wss:` to the same host),
/// never in a frame, and no form submitted anywhere (the token field
/// must never end up in a URL, even if the page's script failed).
const POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A file of the page: its path under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/style.css"),
    },
    Asset {
        name: "hookfan.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../clients/js/hookfan.js"),
    },
];

/// Whether `path` is the page's (`/ui` or under `/ui/`).
pub(crate) fn serves(path: &str) -> bool {
    path == "/ui" || path.starts_with(PREFIX)
}

/// Answers a request for one of the page's files: GET or HEAD only.
pub(crate) fn handle<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    let Some(name) = path.strip_prefix(PREFIX) else {
        return redirect_to_page();
    };
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset),
        None => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// A file with its policy; the server adds what every answer carries
/// (`nosniff`, `no-referrer`, `no-store`, so a new binary's page is always
/// the one shown) and `X-Frame-Options: DENY` to the HTML.
fn serve(asset: &Asset) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, asset.content_type)
        .header(header::CONTENT_SECURITY_POLICY, POLICY)
        .body(Full::new(Bytes::from_static(asset.body.as_bytes())))
        .expect("valid response")
}

/// `/ui` to `/ui/`, so that the page's relative links resolve under it.
fn redirect_to_page() -> Response<Full<Bytes>> {
    let mut r = text(
        StatusCode::PERMANENT_REDIRECT,
        "308 Permanent Redirect: /ui/\n",
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(PREFIX));
    r
}
