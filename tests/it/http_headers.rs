//! The headers browsers rely on, over real sockets: on every answer of
//! every listener (and HSTS over TLS only), and `server.allowed_origins`:
//! a page of another origin refused before its token is looked at, a
//! listed one given CORS on `/events`, the server's own host always let in.

use futures_util::SinkExt;
use hyper::HeaderMap;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::common::pki::TestCa;
use crate::common::*;

const DASHBOARD: &str = "https://dash.example";
const EVIL: &str = "https://evil.example";
const LISTED: &str = "[server]\nallowed_origins = [\"https://DASH.example:443\"]\n";

fn get(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// The headers of a WebSocket upgrade with `auth` as its `Authorization`.
fn upgrade(auth: &str) -> Vec<(&'static str, String)> {
    vec![
        ("connection", "Upgrade".into()),
        ("upgrade", "websocket".into()),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
        ("sec-websocket-version", "13".into()),
        ("authorization", auth.into()),
    ]
}

/// What an answer must carry, whatever it is: `cache` is its
/// `Cache-Control` (`None`: none at all), `html` whether it may not be
/// framed, `tls` whether it came over TLS.
fn assert_browser_headers(what: &str, h: &HeaderMap, cache: Option<&str>, html: bool, tls: bool) {
    assert_eq!(
        get(h, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "{what}: {h:?}"
    );
    assert_eq!(
        get(h, "referrer-policy").as_deref(),
        Some("no-referrer"),
        "{what}: {h:?}"
    );
    assert_eq!(get(h, "cache-control").as_deref(), cache, "{what}: {h:?}");
    let frame = html.then_some("DENY");
    assert_eq!(get(h, "x-frame-options").as_deref(), frame, "{what}: {h:?}");
    let hsts = tls.then_some("max-age=31536000");
    assert_eq!(
        get(h, "strict-transport-security").as_deref(),
        hsts,
        "{what}: {h:?}"
    );
    if html {
        let csp = get(h, "content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    }
    // No origin is listed: no CORS at all.
    for cors in ["access-control-allow-origin", "vary"] {
        assert_eq!(get(h, cors), None, "{what}: {h:?}");
    }
}

/// A request and what its answer must be: what, method, path, extra
/// headers, status, `Cache-Control`, HTML.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
    Option<&'a str>,
    bool,
);

/// One answer of each kind the main listener gives (see [`Case`]), over
/// `sender_for`'s connections (plain or TLS, `tls` says which).
async fn every_kind_of_answer<F, Fut>(sender_for: F, host: &str, tls: bool)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Sender>,
{
    let bearer = format!("Bearer {}", token("alice"));
    let ws = upgrade(&bearer);
    let ws: Vec<(&str, &str)> = ws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let events = [("authorization", bearer.as_str())];
    let no_store = Some("no-store");
    let cases: &[Case] = &[
        ("root", "GET", "/", &[], 200, no_store, false),
        ("health", "GET", "/healthz", &[], 200, no_store, false),
        ("not found", "GET", "/nope", &[], 404, no_store, false),
        (
            "webhook 401",
            "POST",
            "/webhook",
            &[("x-github-event", "ping")],
            401,
            no_store,
            false,
        ),
        ("ws 403", "GET", "/ws", &[], 403, no_store, false),
        ("ws 405", "POST", "/ws", &[], 405, no_store, false),
        ("ws 101", "GET", "/ws", &ws, 101, None, false),
        ("events 403", "GET", "/events", &[], 403, no_store, false),
        (
            "events stream",
            "GET",
            "/events?organization=acme",
            &events,
            200,
            Some("no-cache"),
            false,
        ),
        ("page", "GET", "/ui/", &[], 200, no_store, true),
        (
            "page script",
            "GET",
            "/ui/app.js",
            &[],
            200,
            no_store,
            false,
        ),
        ("page redirect", "GET", "/ui", &[], 308, no_store, false),
        ("metrics", "GET", "/metrics", &[], 200, no_store, false),
    ];
    for &(what, method, path, headers, status, cache, html) in cases {
        let mut sender = sender_for().await;
        let (got, h) = send_head(&mut sender, host, method, path, headers).await;
        assert_eq!(got, status, "{what}: {h:?}");
        assert_browser_headers(what, &h, cache, html, tls);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_main_listener_carries_the_browser_headers() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let connect =
        || async move { http1(tokio::net::TcpStream::connect(addr).await.unwrap()).await };
    every_kind_of_answer(connect, &addr.to_string(), false).await;

    // The draining 503s, too; a listed page can read the one of /events.
    let server = TestServer::start(&format!("{LISTED}shutdown_timeout_s = 5\n")).await;
    let addr = server.addr;
    // A client that never answers the close frame keeps the drain going.
    let mut stuck = RawWs::subscribe(addr, &token("alice"), r#"{"organization":"acme"}"#).await;
    assert_eq!(stuck.next_json().await["type"], "subscription_confirmed");
    let server = std::sync::Arc::new(server);
    let stopping = {
        let server = server.clone();
        tokio::spawn(async move { server.handle().shutdown().await })
    };
    while stuck.next_frame().await.expect("close frame").0 != 0x8 {}
    for path in ["/healthz", "/ws"] {
        let (status, h) = request_head(addr, "GET", path, &[]).await;
        assert_eq!(status, 503, "{path}");
        assert_browser_headers(path, &h, Some("no-store"), false, false);
    }
    let (status, h) = request_head(addr, "GET", "/events", &[("origin", DASHBOARD)]).await;
    assert_eq!(status, 503);
    for (name, value) in [
        ("access-control-allow-origin", DASHBOARD),
        ("vary", "Origin"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(get(&h, name).as_deref(), Some(value), "{name}: {h:?}");
    }
    stopping.await.unwrap();
}

#[tokio::test]
async fn the_side_listeners_carry_them_too() {
    let server = TestServer::start("[server]\nmetrics_listen = \"127.0.0.1:0\"\n").await;
    let metrics = server.handle().metrics_addr().unwrap();
    for (path, status) in [("/metrics", 200), ("/ws", 404)] {
        let (got, h) = request_head(metrics, "GET", path, &[]).await;
        assert_eq!(got, status, "{path}");
        assert_browser_headers(path, &h, Some("no-store"), false, false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_every_answer_is_also_strict_transport_security() {
    let ca = TestCa::new("hookfan headers CA");
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    ca.leaf().write(&cert, &key);
    let tls = format!("[server.tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n");
    let server = TestServer::start_with(&tls, |c| {
        c.server.tls.as_mut().unwrap().redirect_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.addr;
    let ca = &ca;
    let connect =
        || async move { http1(ca.connect(addr, ca.client_config()).await.unwrap()).await };
    every_kind_of_answer(connect, &format!("localhost:{}", addr.port()), true).await;

    // Plain HTTP to the TLS port: the 400 written before hyper carries the
    // same, but HSTS (a browser ignores it over plain HTTP).
    let (status, h) = request_head(addr, "GET", "/healthz", &[]).await;
    assert_eq!(status, 400);
    assert_browser_headers("plain http to tls", &h, Some("no-store"), false, false);
    // The redirect listener speaks plain HTTP.
    let redirect = server.handle().redirect_addr().unwrap();
    let (status, h) = request_head(redirect, "GET", "/ws", &[]).await;
    assert_eq!(status, 308);
    assert_browser_headers("redirect", &h, Some("no-store"), false, false);
}

/// `/metrics`' value of `name`.
async fn counted(addr: std::net::SocketAddr, name: &str) -> f64 {
    metric_of(addr, name).await
}

/// A `/ws` upgrade's refusal: its status and body.
async fn ws_refusal(addr: std::net::SocketAddr, token: &str, origin: &str) -> (u16, String) {
    match ws_connect_with(addr, Some(token), &[("origin", origin)]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Ok(_) => panic!("{origin}: upgraded"),
        Err(e) => panic!("{origin}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_origin_is_refused_before_its_token_is_looked_at() {
    // One rejected token would make the next upgrade a 429.
    let server = TestServer::start_with(LISTED, |c| c.auth.max_failed_checks_per_ip = 1).await;
    let addr = server.addr;
    // Unknown tokens, a malformed one: each would fail its check.
    let unknown = token("nobody");
    for (origin, tok) in [
        (EVIL, unknown.as_str()),
        ("null", unknown.as_str()),
        (EVIL, "nope"),
    ] {
        assert_eq!(
            ws_refusal(addr, tok, origin).await,
            (403, "403 Forbidden: origin not allowed\n".into()),
            "{origin}"
        );
        let auth = format!("Bearer {tok}");
        let sse = Sse::open(
            addr,
            "organization=acme",
            &[("authorization", &auth), ("origin", origin)],
        )
        .await;
        assert_eq!(sse.status, 403, "{origin}");
        assert_eq!(get(&sse.headers, "access-control-allow-origin"), None);
        assert_eq!(get(&sse.headers, "vary").as_deref(), Some("Origin"));
    }
    let forbidden_origin = r#"hookfan_handshakes_total{outcome="forbidden_origin"}"#;
    assert_eq!(counted(addr, forbidden_origin).await, 6.0);
    assert_eq!(
        counted(addr, r#"hookfan_handshakes_total{outcome="forbidden"}"#).await,
        0.0
    );
    assert_eq!(
        counted(
            addr,
            r#"hookfan_auth_results_total{result="invalid_token"}"#
        )
        .await,
        0.0
    );
    // No failed check was counted: without an Origin the address is let in.
    let mut ws = ws_connect(addr, Some(&token("alice")))
        .await
        .expect("no Origin: upgraded");
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");
    // Other methods: the origin is judged first.
    let (status, _) = request_head(addr, "POST", "/ws", &[("origin", EVIL)]).await;
    assert_eq!(status, 403);
    let (status, h) = request_head(addr, "POST", "/ws", &[]).await;
    assert_eq!((status, get(&h, "allow").as_deref()), (405, Some("GET")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_upgrades_and_reads_events_with_cors() {
    let server = TestServer::start(LISTED).await;
    let addr = server.addr;
    let mut ws = ws_connect_with(addr, Some(&token("alice")), &[("origin", DASHBOARD)])
        .await
        .expect("listed: upgraded");
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");

    let auth = format!("Bearer {}", token("alice"));
    let from_dashboard = [("authorization", auth.as_str()), ("origin", DASHBOARD)];
    let mut sse = Sse::open(addr, "organization=acme", &from_dashboard).await;
    assert_eq!(sse.status, 200);
    assert_eq!(
        get(&sse.headers, "access-control-allow-origin").as_deref(),
        Some(DASHBOARD)
    );
    assert_eq!(get(&sse.headers, "vary").as_deref(), Some("Origin"));
    assert_eq!(
        get(&sse.headers, "cache-control").as_deref(),
        Some("no-cache")
    );
    assert_eq!(get(&sse.headers, "access-control-expose-headers"), None);
    assert_eq!(get(&sse.headers, "access-control-allow-credentials"), None);
    assert_eq!(
        sse.next_message().await.event.as_deref(),
        Some("subscription_confirmed")
    );
    let (status, _) = server
        .webhook(
            "pull_request",
            &pr_payload("acme", "api", 7, "alice", false),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(sse.next_event().await.0["type"], "pull_request");

    // Refusals are readable by the page too: the 200 with an error event,
    // and the 403 of a malformed token.
    let unknown = format!("Bearer {}", token("nobody"));
    let mut sse = Sse::open(
        addr,
        "organization=acme",
        &[("authorization", &unknown), ("origin", DASHBOARD)],
    )
    .await;
    assert_eq!(sse.status, 200);
    assert_eq!(
        get(&sse.headers, "access-control-allow-origin").as_deref(),
        Some(DASHBOARD)
    );
    let error = sse.next_message().await;
    assert_eq!(
        (error.event.as_deref(), &error.json()["error"]),
        (Some("error"), &json!("authentication_failed"))
    );
    let (status, h) = request_head(
        addr,
        "GET",
        "/events",
        &[("authorization", "Bearer nope"), ("origin", DASHBOARD)],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        get(&h, "access-control-allow-origin").as_deref(),
        Some(DASHBOARD)
    );
}

#[tokio::test]
async fn a_listed_origin_is_answered_its_preflight() {
    let server = TestServer::start(LISTED).await;
    let addr = server.addr;
    let asking = |origin| {
        [
            ("origin", origin),
            ("access-control-request-method", "GET"),
            (
                "access-control-request-headers",
                "authorization,last-event-id",
            ),
        ]
    };
    let (status, h) = request_head(addr, "OPTIONS", "/events", &asking(DASHBOARD)).await;
    assert_eq!(status, 204);
    for (name, value) in [
        ("access-control-allow-origin", DASHBOARD),
        ("access-control-allow-methods", "GET"),
        (
            "access-control-allow-headers",
            "Authorization, Last-Event-ID",
        ),
        ("access-control-max-age", "600"),
        ("vary", "Origin"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        assert_eq!(get(&h, name).as_deref(), Some(value), "{name}: {h:?}");
    }
    let (status, h) = request_head(addr, "OPTIONS", "/events", &asking(EVIL)).await;
    assert_eq!(
        (status, get(&h, "access-control-allow-origin")),
        (403, None)
    );
    // Not a preflight: no Origin, or this server's own page.
    let own = format!("http://{addr}");
    for headers in [&[][..], &[("origin", own.as_str())]] {
        let (status, h) = request_head(addr, "OPTIONS", "/events", headers).await;
        assert_eq!(
            (status, get(&h, "allow").as_deref()),
            (405, Some("GET")),
            "{headers:?}"
        );
        assert_eq!(get(&h, "access-control-allow-origin"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_page_needs_no_listing() {
    let server = TestServer::start(LISTED).await;
    let addr = server.addr;
    // The page at /ui/ is this origin: its requests name this host.
    let own = format!("http://{addr}");
    let mut ws = ws_connect_with(addr, Some(&token("alice")), &[("origin", &own)])
        .await
        .expect("own host: upgraded");
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscription_confirmed");
    let auth = format!("Bearer {}", token("alice"));
    let mut sse = Sse::open(
        addr,
        "organization=acme",
        &[("authorization", &auth), ("origin", &own)],
    )
    .await;
    assert_eq!(sse.status, 200);
    // Same origin: nothing for CORS to allow.
    assert_eq!(get(&sse.headers, "access-control-allow-origin"), None);
    assert_eq!(
        sse.next_message().await.event.as_deref(),
        Some("subscription_confirmed")
    );
    // Another port of this host is another origin.
    let other_port = format!("http://127.0.0.1:{}", addr.port() + 1);
    assert_eq!(ws_refusal(addr, &token("alice"), &other_port).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_origins_listed_any_origin_is_let_in_without_cors() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    for origin in [EVIL, "null"] {
        let mut ws = ws_connect_with(addr, Some(&token("alice")), &[("origin", origin)])
            .await
            .expect("upgraded");
        ws.send(Message::text(json!({"organization": "acme"}).to_string()))
            .await
            .unwrap();
        assert_eq!(
            next_json(&mut ws).await["type"],
            "subscription_confirmed",
            "{origin}"
        );
        let auth = format!("Bearer {}", token("alice"));
        let mut sse = Sse::open(
            addr,
            "organization=acme",
            &[("authorization", &auth), ("origin", origin)],
        )
        .await;
        assert_eq!(sse.status, 200, "{origin}");
        assert_eq!(get(&sse.headers, "access-control-allow-origin"), None);
        assert_eq!(get(&sse.headers, "vary"), None);
        assert_eq!(
            sse.next_message().await.event.as_deref(),
            Some("subscription_confirmed")
        );
    }
    let (status, h) = request_head(
        addr,
        "OPTIONS",
        "/events",
        &[("origin", EVIL), ("access-control-request-method", "GET")],
    )
    .await;
    assert_eq!((status, get(&h, "allow").as_deref()), (405, Some("GET")));
    assert_eq!(get(&h, "access-control-allow-origin"), None);
    assert_eq!(
        counted(
            addr,
            r#"hookfan_handshakes_total{outcome="forbidden_origin"}"#
        )
        .await,
        0.0
    );
}
