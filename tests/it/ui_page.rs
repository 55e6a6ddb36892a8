//! `/ui/`: the live events page's files, served from the binary with a
//! policy that keeps everything same-origin.

use crate::common::*;

/// The status, the named headers and the body of a GET.
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[&str],
) -> (u16, Vec<String>, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sender = http1(stream).await;
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let named = headers
        .iter()
        .map(|h| {
            resp.headers()
                .get(*h)
                .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
        })
        .collect();
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, named, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_page_and_its_scripts_are_served_same_origin_only() {
    let server = TestServer::start("").await;
    let policy = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    for (path, kind, marker) in [
        ("/ui/", "text/html; charset=utf-8", "app.js"),
        ("/ui/app.js", "text/javascript; charset=utf-8", ""),
        ("/ui/style.css", "text/css; charset=utf-8", ""),
        ("/ui/hookfan.js", "text/javascript; charset=utf-8", ""),
    ] {
        let (status, h, body) = get(
            server.addr,
            path,
            &[
                "content-type",
                "content-security-policy",
                "x-content-type-options",
            ],
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(h, [kind, policy, "nosniff"], "{path}");
        assert!(!body.is_empty() && body.contains(marker), "{path}: {body}");
    }
    // The JavaScript client is the repository's, byte for byte.
    let (_, _, client) = get(server.addr, "/ui/hookfan.js", &[]).await;
    let file = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/hookfan.js"),
    )
    .unwrap();
    assert_eq!(client, file);
    let (status, h, _) = get(server.addr, "/ui", &["location"]).await;
    assert_eq!((status, h[0].as_str()), (308, "/ui/"));
    let (status, _, body) = get(server.addr, "/ui/missing.js", &[]).await;
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
    let (status, _) = request(server.addr, "POST", "/ui/", &[], vec![]).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn an_operator_can_turn_the_page_off() {
    let server = TestServer::start_with("", |c| c.server.ui = false).await;
    let (status, _, body) = get(server.addr, "/ui/", &[]).await;
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
}
