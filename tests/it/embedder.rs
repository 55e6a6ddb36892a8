//! hookfan as a library, the way a service embeds it: its own hyper server,
//! its own auth provider, only the public API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookfan::{
    AuthError, AuthFuture, AuthProvider, Event, Hub, HubConfig, Identity, IdentityKind, Metrics,
    OrgSet, Tier, Token, WebhookEndpoint, WebhookOptions, WsEndpoint, WsOptions,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    answer_close, next_json, next_message, post_webhook, pr_payload, subscribe_as, token,
};

const SECRET: &[u8] = b"embedded-secret";

/// The embedder's own notion of accounts: a token `ghp_<login padded with
/// 0>` (the tests' [`token`]) belongs to `<login>`, a member of `acme`; logins starting with
/// `pro` are of the pro tier; `ghp_deny...` is rejected.
#[derive(Default)]
struct Accounts {
    checks: AtomicUsize,
}

impl AuthProvider for Accounts {
    fn authenticate<'a>(&'a self, token: &'a Token) -> AuthFuture<'a> {
        Box::pin(async move {
            self.checks.fetch_add(1, Ordering::SeqCst);
            let login = token.expose()[4..].trim_end_matches('0').to_owned();
            if login == "deny" {
                return Err(AuthError::InvalidToken);
            }
            Ok(Identity {
                tier: if login.starts_with("pro") {
                    Tier::Pro
                } else {
                    Tier::Free
                },
                login,
                orgs: OrgSet::new(["acme"]),
                kind: IdentityKind::User,
            })
        })
    }
}

struct Service {
    hub: Hub,
    ws: WsEndpoint,
    webhook: Arc<WebhookEndpoint>,
    accounts: Arc<Accounts>,
    addr: SocketAddr,
}

/// The embedder's server: `/ws` and `/webhook` mounted next to its own
/// routes.
async fn serve(options: WsOptions) -> Service {
    let hub = Hub::start(HubConfig {
        shards: 2,
        ..HubConfig::default()
    })
    .unwrap();
    let accounts = Arc::new(Accounts::default());
    let auth: Arc<dyn AuthProvider> = accounts.clone();
    let metrics = Metrics::new(&hub, auth.clone());
    let ws = WsEndpoint::new(hub.clone(), auth, options, metrics.clone());
    let webhook = Arc::new(WebhookEndpoint::new(
        Arc::new(hub.clone()),
        SECRET,
        WebhookOptions::default(),
        metrics,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ws2, webhook2) = (ws.clone(), webhook.clone());
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let (ws, webhook) = (ws2.clone(), webhook2.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (ws, webhook) = (ws.clone(), webhook.clone());
                async move {
                    Ok::<_, Infallible>(match req.uri().path() {
                        "/ws" => ws.handle(req, peer),
                        "/webhook" => webhook.handle(req, peer).await,
                        _ => Response::new(Full::new(bytes::Bytes::from_static(
                            b"the embedder page",
                        ))),
                    })
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    Service {
        hub,
        ws,
        webhook,
        accounts,
        addr,
    }
}

fn pr(org: &str, n: u64) -> Vec<u8> {
    pr_payload(org, "api", n, "someone", false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_hub_with_its_own_auth_provider() {
    let svc = serve(WsOptions::default()).await;

    // Subscribe through the embedder's server, with the embedder's accounts.
    let (mut alice, confirmed) =
        subscribe_as(svc.addr, &token("alice"), json!({"organization": "acme"})).await;
    assert_eq!(confirmed["type"], "subscription_confirmed");
    assert_eq!(confirmed["username"], "alice");
    let (_denied, refused) = subscribe_as(svc.addr, &token("deny"), json!({})).await;
    assert_eq!(refused["error"], "authentication_failed");
    assert_eq!(svc.accounts.checks.load(Ordering::SeqCst), 2);

    // The client as the hub sees it.
    assert_eq!(svc.hub.client_count(), 1);
    let clients = svc.hub.clients();
    let me = &clients[0];
    assert_eq!(me.subscription().username, "alice");
    assert_eq!(me.subscription().organization, "acme");
    assert!(!me.can_see_private() && !me.is_closing());
    assert_eq!(
        svc.hub.client(me.id()).unwrap().subscription(),
        me.subscription()
    );

    // A signed webhook through the embedder's route reaches it.
    let (status, body) =
        post_webhook(svc.addr, SECRET, "pull_request", "emb-1", &pr("acme", 7)).await;
    assert_eq!((status, body.as_str()), (200, "OK"));
    let e = next_json(&mut alice).await;
    assert_eq!(e["url"], "https://github.com/acme/api/pull/7");
    assert_eq!(e["delivery_id"], "emb-1");

    // The parse-once path from a verified body, without HTTP.
    let mut raw = pr("acme", 8);
    let parts = svc
        .webhook
        .parse("pull_request", "emb-2", &mut raw)
        .unwrap()
        .unwrap();
    let receipt = svc.hub.broadcast(Event::new(parts));
    assert_eq!(receipt.shards, 1);
    assert_eq!(next_json(&mut alice).await["delivery_id"], "emb-2");
    // ... which fed the commit cache.
    let cached = svc
        .webhook
        .commit_cache()
        .get("acme/api", &format!("{:040x}", 8))
        .unwrap();
    assert_eq!(
        (cached.url.as_str(), cached.number),
        ("https://github.com/acme/api/pull/8", 8)
    );

    // Disconnecting a client by id: close 1000, then it is gone.
    assert!(svc.hub.disconnect(me.id()));
    let close = next_message(&mut alice).await;
    assert!(
        matches!(&close, Message::Close(Some(f)) if u16::from(f.code) == 1000),
        "{close:?}"
    );
    answer_close(&mut alice).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while svc.hub.client_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still registered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!svc.hub.disconnect(me.id()));
    let _ = &svc.webhook;

    // Stopping: new clients are refused, the shards end.
    svc.hub.stop();
    svc.hub.stopped().await;
    assert!(svc.hub.is_stopped());
}

#[tokio::test]
async fn the_checks_before_the_upgrade_on_their_own() {
    let svc = serve(WsOptions {
        max_conns_per_ip: 1,
        ..WsOptions::default()
    })
    .await;
    let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let req = |auth: &str| {
        Request::get("/ws")
            .header("authorization", auth)
            .body(())
            .unwrap()
    };

    let refusal = svc.ws.check(&req("Bearer nope"), peer).unwrap_err();
    assert_eq!(
        refusal,
        hookfan::Refusal::Forbidden(hookfan::TokenRejection::Malformed)
    );
    assert_eq!(refusal.response().status(), 403);
    let admitted = svc
        .ws
        .check(&req(&format!("Bearer {}", token("bob"))), peer)
        .unwrap();
    assert_eq!(admitted.client_ip(), peer.ip());
    assert_eq!(svc.ws.connection_counts().total, 1);
    let limited = svc
        .ws
        .check(&req(&format!("Bearer {}", token("bob"))), peer)
        .unwrap_err();
    assert_eq!(limited.status(), 429);
    // An admission never upgraded gives its slot back when dropped.
    drop(admitted);
    assert_eq!(svc.ws.connection_counts().total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiers_come_from_the_embedders_identities() {
    let svc = serve(WsOptions::default()).await;
    let (_a, _) = subscribe_as(
        svc.addr,
        &token("probably"),
        json!({"organization": "acme"}),
    )
    .await;
    let c = svc.hub.clients().pop().unwrap();
    assert!(c.can_see_private(), "the provider said pro");
}
