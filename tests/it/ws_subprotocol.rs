//! The token offered as a WebSocket subprotocol, as a browser must (its
//! WebSocket API sets no headers): `hookfan.v1, hookfan.bearer.<token>`.

use std::net::SocketAddr;

use crate::common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Message;

/// Opens `/ws` offering `protocols` (and `authorization`, when given);
/// returns the socket and the subprotocol the server answered.
async fn connect(
    addr: SocketAddr,
    protocols: &str,
    authorization: Option<&str>,
) -> Result<(Ws, Option<String>), WsError> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    if let Some(a) = authorization {
        req.headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    let answered = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, answered))
}

/// The status and body of a refused upgrade.
fn refusal(r: Result<(Ws, Option<String>), WsError>) -> (u16, String) {
    match r {
        Err(WsError::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the upgrade should have been refused"),
    }
}

async fn confirmed(ws: &mut Ws, subscription: serde_json::Value) -> serde_json::Value {
    ws.send(Message::text(subscription.to_string()))
        .await
        .unwrap();
    let first = next_json(ws).await;
    assert_eq!(first["type"], "subscription_confirmed", "{first}");
    first
}

#[tokio::test]
async fn a_token_offered_as_a_subprotocol_subscribes_and_receives() {
    let server = TestServer::start("").await;
    let offer = format!("hookfan.v1, hookfan.bearer.{}", token("alice"));
    let (mut ws, answered) = connect(server.addr, &offer, None).await.unwrap();
    // The version, never the token.
    assert_eq!(answered.as_deref(), Some("hookfan.v1"));
    let first = confirmed(&mut ws, json!({"organization": "acme"})).await;
    assert_eq!(first["username"], "alice");
    let (status, _) = server
        .webhook("pull_request", &pr_payload("acme", "api", 7, "zed", false))
        .await;
    assert_eq!(status, 200);
    let event = next_event(&mut ws).await;
    assert_eq!(
        event["url"], "https://github.com/acme/api/pull/7",
        "{event}"
    );
}

#[tokio::test]
async fn a_badly_offered_token_gets_the_403_a_bad_header_gets() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let alice = token("alice");
    assert_eq!(
        refusal(connect(addr, &format!("hookfan.bearer.{alice}"), None).await),
        (
            403,
            "403 Forbidden: the hookfan.bearer.<token> subprotocol must be offered with hookfan.v1\n"
                .to_owned()
        )
    );
    assert_eq!(
        refusal(connect(addr, "hookfan.v1, hookfan.bearer.ghp_short", None).await),
        (
            403,
            "403 Forbidden: token does not look like a GitHub token\n".to_owned()
        )
    );
    // The version alone carries no token.
    assert_eq!(
        refusal(connect(addr, "hookfan.v1", None).await),
        (
            403,
            "403 Forbidden: missing Authorization header\n".to_owned()
        )
    );
    // A well-shaped token nobody holds: refused by the check, as on the
    // header path, in the handshake.
    let stranger = format!("hookfan.v1, hookfan.bearer.ghp_{}", "z".repeat(36));
    let (mut ws, _) = connect(addr, &stranger, None).await.unwrap();
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(err["error"], "authentication_failed", "{err}");
    assert_eq!(expect_close(&mut ws).await.0, 1008);
}

#[tokio::test]
async fn with_both_forms_the_header_decides() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    // Header alice, subprotocol bob: alice.
    let offer = format!("hookfan.v1, hookfan.bearer.{}", token("bob"));
    let bearer = format!("Bearer {}", token("alice"));
    let (mut ws, answered) = connect(addr, &offer, Some(&bearer)).await.unwrap();
    assert_eq!(answered.as_deref(), Some("hookfan.v1"));
    let first = confirmed(&mut ws, json!({"organization": "acme"})).await;
    assert_eq!(first["username"], "alice");
    // A malformed header is refused even beside a good subprotocol token.
    let offer = format!("hookfan.v1, hookfan.bearer.{}", token("alice"));
    assert_eq!(
        refusal(connect(addr, &offer, Some("Bearer ghp_short")).await).0,
        403
    );
}

#[tokio::test]
async fn the_offered_token_never_reaches_the_log() {
    let daemon = spawn_daemon("[log]\nlevel = \"trace\"\n");
    let alice = token("alice");
    let (mut ws, _) = connect(
        daemon.addr,
        &format!("hookfan.v1, hookfan.bearer.{alice}"),
        None,
    )
    .await
    .unwrap();
    confirmed(&mut ws, json!({"organization": "acme"})).await;
    drop(ws);
    let stranger = format!("ghp_{}", "q".repeat(36));
    let (mut ws, _) = connect(
        daemon.addr,
        &format!("hookfan.v1, hookfan.bearer.{stranger}"),
        None,
    )
    .await
    .unwrap();
    ws.send(Message::text(json!({"organization": "acme"}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["error"], "authentication_failed");
    let refused = connect(daemon.addr, &format!("hookfan.bearer.{alice}"), None).await;
    assert_eq!(refusal(refused).0, 403);
    // Until the refusals are logged.
    let log = daemon.log_with("subscription refused").await;
    assert!(log.contains("client subscribed"), "{log}");
    for secret in [&alice[4..], &stranger[4..]] {
        assert!(!log.contains(secret), "a token is in the log:\n{log}");
    }
}
