//! The GitHub auth provider through real WebSocket clients, against a local
//! HTTP server that answers like the GitHub REST API and counts what it is
//! asked: user and app installation tokens, every error mapping, retries,
//! timeouts, pagination, the token cache (TTLs, single flight), the cap on
//! concurrent API requests, the limit on failed checks per client IP, tiers,
//! and that the token never reaches a log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::future::join_all;
use hookfan::auth::AuthProvider;
use hookfan::auth::github::GithubProvider;
use hookfan::config::{AuthConfig, AuthProviderKind, TiersConfig};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

// ---------------------------------------------------------------------------
// The mock GitHub API.

/// What the mock answers for a token.
#[derive(Clone)]
enum Account {
    /// A user: `/installation/repositories` answers `install_status` (GitHub
    /// answers a user token there with 403; 404 is also seen), `/user` its
    /// login, `/user/orgs` its orgs, paginated.
    User {
        login: String,
        orgs: Vec<String>,
        install_status: u16,
    },
    /// An app installation on `org`.
    App { org: String },
    /// Every request answered `status`; with the rate limit spent when
    /// `rate_limited`.
    Status { status: u16, rate_limited: bool },
}

fn user(login: &str, orgs: &[&str]) -> Account {
    Account::User {
        login: login.to_owned(),
        orgs: orgs.iter().map(|s| s.to_string()).collect(),
        install_status: 404,
    }
}

#[derive(Default)]
struct MockState {
    port: AtomicUsize,
    /// Requests per path.
    hits: Mutex<HashMap<String, usize>>,
    /// Requests being answered now, and the most at once.
    current: AtomicUsize,
    max: AtomicUsize,
    /// The next this many requests are answered 500.
    fail_next: AtomicUsize,
    /// Delay before answering.
    delay: Mutex<Duration>,
    accounts: Mutex<HashMap<String, Account>>,
    /// Requests without the headers GitHub expects.
    bad_headers: AtomicUsize,
    /// `/installation/repositories` requests (the first of every API round)
    /// per token.
    rounds: Mutex<HashMap<String, usize>>,
}

struct Mock {
    addr: SocketAddr,
    state: Arc<MockState>,
}

impl Mock {
    async fn start() -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(MockState::default());
        state.port.store(addr.port().into(), Ordering::SeqCst);
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(answer(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Mock { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn add(&self, token: &str, account: Account) {
        self.state
            .accounts
            .lock()
            .unwrap()
            .insert(token.to_owned(), account);
    }

    fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// API rounds made for `token`.
    fn rounds(&self, token: &str) -> usize {
        self.state
            .rounds
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().unwrap() = d;
    }

    fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }
}

const INSTALL: &str = "/installation/repositories";
const USER: &str = "/user";
const ORGS: &str = "/user/orgs";

struct Busy<'a>(&'a MockState);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reply(status: u16, headers: &[(&str, String)], body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<usize> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok())?
    })
}

/// The mock's answer to one request: counted, checked for GitHub's
/// headers, delayed or failed when the test says so, then answered for the
/// token's account.
async fn answer(st: &MockState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    *st.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let now = st.current.fetch_add(1, Ordering::SeqCst) + 1;
    st.max.fetch_max(now, Ordering::SeqCst);
    let _busy = Busy(st);

    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if h("accept") != "application/vnd.github+json"
        || !h("user-agent").starts_with("hookfan/")
        || h("x-github-api-version") != "2022-11-28"
    {
        st.bad_headers.fetch_add(1, Ordering::SeqCst);
    }
    let auth = h("authorization");
    if path == INSTALL {
        let token = auth.trim_start_matches("Bearer ").to_owned();
        *st.rounds.lock().unwrap().entry(token).or_default() += 1;
    }
    let delay = *st.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if st
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return reply(500, &[], json!({"message": "Server Error"}));
    }
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return reply(401, &[], json!({"message": "Requires authentication"}));
    };
    let account = st.accounts.lock().unwrap().get(token).cloned();
    let account = match account {
        Some(a) => a,
        // The many distinct tokens of the load tests.
        None if token.starts_with("ghp_bulk") => user(&token[4..12], &["acme"]),
        None => Account::Status {
            status: 401,
            rate_limited: false,
        },
    };
    answer_as(st, &req, &path, account)
}

/// GitHub's rate-limit headers with `remaining` requests left.
fn limits(remaining: u32) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit", "5000".to_owned()),
        ("x-ratelimit-remaining", remaining.to_string()),
        ("x-ratelimit-reset", "1900000000".to_owned()),
    ]
}

/// What GitHub answers `account` on `path`.
fn answer_as(
    st: &MockState,
    req: &Request<Incoming>,
    path: &str,
    account: Account,
) -> Response<Full<Bytes>> {
    let not_found = || reply(404, &[], json!({"message": "Not Found"}));
    match account {
        Account::Status {
            status,
            rate_limited,
        } => {
            let message = match (status, rate_limited) {
                (401, _) => "Bad credentials",
                (_, true) => "API rate limit exceeded",
                _ => "Forbidden",
            };
            reply(
                status,
                &limits(if rate_limited { 0 } else { 4000 }),
                json!({"message": message}),
            )
        }
        Account::App { org } => match path {
            INSTALL => reply(
                200,
                &limits(4999),
                json!({"total_count": 3, "repository_selection": "selected", "repositories": [
                    {"id": 1, "name": "api", "full_name": format!("{org}/api"), "private": true,
                     "owner": {"login": org, "id": 7, "type": "Organization"}}
                ]}),
            ),
            USER | ORGS => reply(
                403,
                &limits(4999),
                json!({"message": "Resource not accessible by integration"}),
            ),
            _ => not_found(),
        },
        Account::User {
            login,
            orgs,
            install_status,
        } => match path {
            INSTALL => reply(
                install_status,
                &limits(4999),
                json!({"message": "You must authenticate with an installation access token in order to list repositories for an installation."}),
            ),
            USER => reply(
                200,
                &limits(4999),
                json!({"login": login, "id": 1, "type": "User"}),
            ),
            ORGS => orgs_page(st, req, &orgs),
            _ => not_found(),
        },
    }
}

/// One page of a user's organizations, with GitHub's `link` header to the
/// others.
fn orgs_page(st: &MockState, req: &Request<Incoming>, orgs: &[String]) -> Response<Full<Bytes>> {
    let per_page = query_param(req, "per_page").unwrap_or(30);
    let page = query_param(req, "page").unwrap_or(1).max(1);
    let last = orgs.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = orgs
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .enumerate()
        .map(|(i, o)| json!({"login": o, "id": i, "description": null}))
        .collect();
    let port = st.port.load(Ordering::SeqCst);
    let link = |p: usize, rel: &str| {
        format!("<http://127.0.0.1:{port}/user/orgs?per_page={per_page}&page={p}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(page - 1, "prev"));
        links.push(link(1, "first"));
    }
    let mut headers = limits(4999);
    if !links.is_empty() {
        headers.push(("link", links.join(", ")));
    }
    reply(200, &headers, Value::Array(items))
}

// ---------------------------------------------------------------------------
// The server under test.

/// Starts hookfan with `[auth] provider = "github"` pointing at `mock`,
/// `extra` TOML sections (not `[auth]`), and `adjust` applied to `[auth]`.
/// The provider is built from the final config, as the daemon does.
async fn start(
    mock: &Mock,
    extra: &str,
    adjust: impl FnOnce(&mut AuthConfig),
) -> (TestServer, Arc<GithubProvider>) {
    let mut provider = None;
    let url = mock.url();
    let server = TestServer::start_with_auth(
        extra,
        |c| {
            c.auth.provider = AuthProviderKind::Github;
            c.auth.github_api_url = url;
            c.auth.tokens_file = None;
            adjust(&mut c.auth);
        },
        |c| {
            let p = Arc::new(GithubProvider::new(&c.auth, &c.tiers).expect("provider"));
            provider = Some(p.clone());
            p
        },
    )
    .await;
    (server, provider.unwrap())
}

/// Subscribes and returns the server's first answer (the socket is closed).
async fn first_answer(addr: SocketAddr, tok: &str, sub: Value) -> Value {
    let (mut ws, first) = subscribe_as(addr, tok, sub).await;
    if first["type"] == "error" {
        expect_close(&mut ws).await;
    }
    first
}

fn confirmed(v: &Value) -> (&str, &str) {
    assert_eq!(v["type"], "subscription_confirmed", "{v}");
    (
        v["organization"].as_str().unwrap(),
        v["username"].as_str().unwrap(),
    )
}

fn refused(v: &Value) -> &str {
    assert_eq!(v["type"], "error", "{v}");
    v["error"].as_str().unwrap()
}

fn no_token_in(v: &Value, tok: &str) {
    let s = v.to_string();
    assert!(!s.contains(tok) && !s.contains(&tok[4..]), "{s}");
}

// ---------------------------------------------------------------------------
// Tokens and organizations.

#[tokio::test]
async fn user_token_member_and_not_member() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme", "Widgets"]));
    let (server, gh) = start(&mock, "", |_| {}).await;

    let v = first_answer(server.addr, &alice, json!({"organization": "ACME"})).await;
    assert_eq!(confirmed(&v), ("ACME", "alice"));
    let v = first_answer(server.addr, &alice, json!({"organization": "widgets"})).await;
    assert_eq!(confirmed(&v), ("widgets", "alice"));
    let v = first_answer(server.addr, &alice, json!({"organization": "other"})).await;
    assert_eq!(refused(&v), "access_denied");
    assert_eq!(
        v["message"],
        "User 'alice' is not a member of organization 'other'."
    );
    // One API round for the three connections, with GitHub's headers.
    assert_eq!(
        (mock.hits(INSTALL), mock.hits(USER), mock.hits(ORGS)),
        (1, 1, 1)
    );
    assert_eq!(mock.state.bad_headers.load(Ordering::SeqCst), 0);
    let s = gh.stats();
    assert_eq!((s.cache_misses, s.cache_hits), (1, 2), "{s:?}");
    assert_eq!(
        (s.api_404, s.api_2xx, s.rounds_accepted),
        (1, 2, 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn star_and_no_org() {
    let mock = Mock::start().await;
    let (bob, dave) = (token("bob"), token("dave"));
    mock.add(&bob, user("bob", &["acme", "widgets"]));
    mock.add(&dave, user("dave", &[]));
    let (server, _gh) = start(&mock, "", |_| {}).await;
    for tok in [&bob, &dave] {
        let v = first_answer(server.addr, tok, json!({"organization": "*"})).await;
        assert_eq!(confirmed(&v).0, "*");
        let v = first_answer(server.addr, tok, json!({})).await;
        assert_eq!(confirmed(&v).0, "");
    }
    let v = first_answer(server.addr, &dave, json!({"organization": "acme"})).await;
    assert_eq!(refused(&v), "access_denied");
}

#[tokio::test]
async fn user_token_answered_403_on_the_installation_endpoint_is_still_a_user() {
    // What GitHub answers a personal access token on /installation/repositories.
    let mock = Mock::start().await;
    let carol = token("carol");
    mock.add(
        &carol,
        Account::User {
            login: "carol".into(),
            orgs: vec!["widgets".into()],
            install_status: 403,
        },
    );
    let (server, gh) = start(&mock, "", |_| {}).await;
    let v = first_answer(server.addr, &carol, json!({"organization": "widgets"})).await;
    assert_eq!(confirmed(&v), ("widgets", "carol"));
    assert_eq!((mock.hits(USER), mock.hits(ORGS)), (1, 1));
    assert_eq!(gh.stats().api_403, 1);
}

#[tokio::test]
async fn app_installation_token_is_pinned_to_its_org() {
    let mock = Mock::start().await;
    let app = app_token();
    mock.add(&app, Account::App { org: "Acme".into() });
    let (server, _gh) = start(&mock, "", |_| {}).await;

    let v = first_answer(server.addr, &app, json!({})).await;
    assert_eq!(confirmed(&v), ("Acme", "app[installation]"));
    let v = first_answer(server.addr, &app, json!({"organization": "acme"})).await;
    assert_eq!(confirmed(&v), ("acme", "app[installation]"));
    let v = first_answer(server.addr, &app, json!({"organization": "widgets"})).await;
    assert_eq!(refused(&v), "access_denied");
    // Recognised by its first request; /user is never asked.
    assert_eq!(
        (mock.hits(INSTALL), mock.hits(USER), mock.hits(ORGS)),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn invalid_token_401_stops_at_the_first_request_and_is_remembered() {
    let mock = Mock::start().await;
    let bad = token("mallory");
    let (server, gh) = start(&mock, "", |_| {}).await;
    for _ in 0..2 {
        let v = first_answer(server.addr, &bad, json!({"organization": "acme"})).await;
        assert_eq!(refused(&v), "authentication_failed");
        assert_eq!(v["message"], "Invalid GitHub token.");
        no_token_in(&v, &bad);
    }
    assert_eq!((mock.hits(INSTALL), mock.hits(USER)), (1, 0));
    let s = gh.stats();
    assert_eq!(
        (s.api_401, s.rounds_invalid, s.negative_cache_hits),
        (1, 1, 1),
        "{s:?}"
    );
}

#[tokio::test]
async fn rate_limit_403_is_rate_limit_exceeded_and_not_remembered() {
    let mock = Mock::start().await;
    let tok = token("ratelimited");
    mock.add(
        &tok,
        Account::Status {
            status: 403,
            rate_limited: true,
        },
    );
    let (server, gh) = start(&mock, "", |_| {}).await;
    for _ in 0..2 {
        let v = first_answer(server.addr, &tok, json!({})).await;
        assert_eq!(refused(&v), "rate_limit_exceeded");
    }
    // Stopped at the first request, and asked again the second time.
    assert_eq!((mock.hits(INSTALL), mock.hits(USER)), (2, 0));
    let s = gh.stats();
    assert_eq!((s.rounds_rate_limited, s.negative_cache_hits), (2, 0));
}

#[tokio::test]
async fn forbidden_403_is_access_denied_and_remembered() {
    let mock = Mock::start().await;
    let tok = token("forbidden");
    mock.add(
        &tok,
        Account::Status {
            status: 403,
            rate_limited: false,
        },
    );
    let (server, gh) = start(&mock, "", |_| {}).await;
    for _ in 0..2 {
        let v = first_answer(server.addr, &tok, json!({"organization": "acme"})).await;
        assert_eq!(refused(&v), "access_denied");
        assert_eq!(v["message"], "Access forbidden. Check token permissions.");
    }
    // A 403 on the installation endpoint is what user tokens get, so /user
    // is asked, and its 403 decides.
    assert_eq!(
        (mock.hits(INSTALL), mock.hits(USER), mock.hits(ORGS)),
        (1, 1, 0)
    );
    let s = gh.stats();
    assert_eq!((s.rounds_forbidden, s.negative_cache_hits), (1, 1));
}

#[tokio::test]
async fn a_500_then_200_is_retried() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    mock.fail_next(1);
    let (server, gh) = start(&mock, "", |_| {}).await;
    let v = first_answer(server.addr, &alice, json!({"organization": "acme"})).await;
    assert_eq!(confirmed(&v), ("acme", "alice"));
    assert_eq!(
        (mock.hits(INSTALL), mock.hits(USER), mock.hits(ORGS)),
        (2, 1, 1)
    );
    let s = gh.stats();
    assert_eq!((s.api_5xx, s.api_retries), (1, 1), "{s:?}");
}

#[tokio::test]
async fn a_500_forever_is_a_clean_internal_error() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    mock.fail_next(usize::MAX);
    let (server, gh) = start(&mock, "", |_| {}).await;
    let (mut ws, v) = subscribe_as(server.addr, &alice, json!({"organization": "acme"})).await;
    assert_eq!(refused(&v), "internal_error");
    assert_eq!(
        v["message"],
        "Could not verify the token with GitHub. Try again later."
    );
    no_token_in(&v, &alice);
    assert_eq!(expect_close(&mut ws).await.0, 1011);
    // Three attempts, then nothing else asked, and nothing remembered.
    assert_eq!((mock.hits(INSTALL), mock.hits(USER)), (3, 0));
    let v = first_answer(server.addr, &alice, json!({})).await;
    assert_eq!(refused(&v), "internal_error");
    assert_eq!(mock.hits(INSTALL), 6);
    let s = gh.stats();
    assert_eq!(
        (
            s.api_5xx,
            s.api_retries,
            s.rounds_unavailable,
            s.cache_entries
        ),
        (6, 4, 2, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_slow_api_times_out_into_an_internal_error() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    mock.set_delay(Duration::from_secs(10));
    let (server, gh) = start(&mock, "", |a| a.api_timeout_s = 1).await;
    let started = Instant::now();
    let v = first_answer(server.addr, &alice, json!({"organization": "acme"})).await;
    let took = started.elapsed();
    assert_eq!(refused(&v), "internal_error");
    // Three attempts of 1 s, with two backoffs of at most 100 + 200 ms.
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(4500),
        "{took:?}"
    );
    assert_eq!(mock.hits(INSTALL), 3);
    let s = gh.stats();
    assert_eq!((s.api_timeouts, s.api_in_flight), (3, 0), "{s:?}");
}

#[tokio::test]
async fn orgs_over_three_pages_are_all_read() {
    let mock = Mock::start().await;
    let hubot = token("hubot");
    let mut orgs: Vec<String> = (0..250).map(|i| format!("org-{i}")).collect();
    orgs[245] = "Deep-Org".into();
    let orgs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    mock.add(&hubot, user("hubot", &orgs));
    let (server, _gh) = start(&mock, "", |_| {}).await;
    let v = first_answer(server.addr, &hubot, json!({"organization": "deep-org"})).await;
    assert_eq!(confirmed(&v), ("deep-org", "hubot"));
    assert_eq!(mock.hits(ORGS), 3);
    for (org, ok) in [("org-3", true), ("org-199", true), ("org-250", false)] {
        let v = first_answer(server.addr, &hubot, json!({"organization": org})).await;
        assert_eq!(v["type"] == "subscription_confirmed", ok, "{org}: {v}");
    }
    assert_eq!(mock.hits(ORGS), 3);
}

// ---------------------------------------------------------------------------
// The token cache.

#[tokio::test]
async fn cache_entries_expire_after_their_ttl() {
    let mock = Mock::start().await;
    let (alice, bad) = (token("alice"), token("mallory"));
    mock.add(&alice, user("alice", &["acme"]));
    let (server, gh) = start(&mock, "", |a| {
        a.cache_ttl_s = 1;
        a.negative_cache_ttl_s = 1;
    })
    .await;
    let sub = || json!({"organization": "acme"});
    confirmed(&first_answer(server.addr, &alice, sub()).await);
    refused(&first_answer(server.addr, &bad, sub()).await);
    assert_eq!(mock.total_hits(), 4);
    // Within the TTLs: no request.
    confirmed(&first_answer(server.addr, &alice, sub()).await);
    refused(&first_answer(server.addr, &bad, sub()).await);
    assert_eq!(mock.total_hits(), 4);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // After them: asked again.
    confirmed(&first_answer(server.addr, &alice, sub()).await);
    refused(&first_answer(server.addr, &bad, sub()).await);
    assert_eq!(mock.total_hits(), 8);
    let s = gh.stats();
    assert_eq!(
        (s.cache_hits, s.negative_cache_hits, s.cache_misses),
        (1, 1, 4),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_with_one_token_make_one_api_round() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    // Slow enough that the connections arrive while the round is on.
    mock.set_delay(Duration::from_millis(100));
    let (server, gh) = start(&mock, "[limits]\nmax_conns_per_ip = 1000\n", |_| {}).await;
    let addr = server.addr;
    let answers = join_all((0..200).map(|_| {
        let alice = alice.clone();
        tokio::spawn(
            async move { subscribe_as(addr, &alice, json!({"organization": "acme"})).await },
        )
    }))
    .await;
    let mut sockets = Vec::new();
    for a in answers {
        let (ws, v) = a.unwrap();
        assert_eq!(confirmed(&v), ("acme", "alice"));
        sockets.push(ws);
    }
    assert_eq!(
        (mock.hits(INSTALL), mock.hits(USER), mock.hits(ORGS)),
        (1, 1, 1)
    );
    let s = gh.stats();
    assert_eq!(s.cache_misses, 1, "{s:?}");
    assert_eq!(s.single_flight_joins + s.cache_hits, 199, "{s:?}");
    assert!(s.single_flight_joins > 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_cap_holds_under_500_distinct_tokens() {
    const CAP: usize = 8;
    let mock = Mock::start().await;
    mock.set_delay(Duration::from_millis(5));
    let (server, gh) = start(&mock, "[limits]\nmax_conns_per_ip = 1000\n", |a| {
        a.max_concurrent_api_requests = CAP;
    })
    .await;
    let addr = server.addr;
    let answers = join_all((0..500).map(|i| {
        let tok = format!("ghp_bulk{i:0>32}");
        tokio::spawn(async move { subscribe_as(addr, &tok, json!({"organization": "acme"})).await })
    }))
    .await;
    let mut sockets = Vec::new();
    for a in answers {
        let (ws, v) = a.unwrap();
        assert_eq!(confirmed(&v).0, "acme");
        sockets.push(ws);
    }
    let max = mock.state.max.load(Ordering::SeqCst);
    assert!(max <= CAP, "{max} concurrent requests, cap {CAP}");
    assert!(max > 1, "the test did not load the API ({max})");
    assert_eq!(mock.total_hits(), 1500);
    let s = gh.stats();
    assert_eq!((s.cache_misses, s.rounds_accepted), (500, 500), "{s:?}");
    assert_eq!((s.api_in_flight, s.api_queued), (0, 0), "{s:?}");
}

// ---------------------------------------------------------------------------
// Failed token checks per client IP (auth.max_failed_checks_per_ip).

const FAILED_CHECKS_429: &str =
    "429 Too Many Requests: too many failed token checks from this address\n";

/// Upgrades as `client`: through the trusted proxy 127.0.0.1, which names
/// the client in `X-Forwarded-For`.
async fn connect_as(addr: SocketAddr, client: &str, tok: &str) -> Result<Ws, WsError> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert("authorization", format!("Bearer {tok}").parse().unwrap());
    h.insert("x-forwarded-for", client.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// How the server answered one attempt.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// Upgraded; the subscription's first answer.
    Answered(Value),
    /// 429 for failed checks, with its `Retry-After` in seconds.
    FailedChecks429(u64),
    /// 429 for the connection limit.
    ConnectionLimit429,
}

async fn attempt(addr: SocketAddr, client: &str, tok: &str, sub: Value) -> Attempt {
    match connect_as(addr, client, tok).await {
        Ok(mut ws) => {
            ws.send(WsMessage::text(sub.to_string())).await.unwrap();
            let first = next_json(&mut ws).await;
            if first["type"] == "error" {
                expect_close(&mut ws).await;
            }
            Attempt::Answered(first)
        }
        Err(WsError::Http(r)) if r.status() == 429 => {
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default());
            if body == FAILED_CHECKS_429 {
                let retry_after = r.headers().get("retry-after").expect("Retry-After");
                Attempt::FailedChecks429(retry_after.to_str().unwrap().parse().unwrap())
            } else {
                assert_eq!(body, "429 Too Many Requests: Connection limit exceeded\n");
                Attempt::ConnectionLimit429
            }
        }
        Err(e) => panic!("{client}: {e}"),
    }
}

/// `hookfan_handshakes_total{outcome="OUTCOME"}` as `/metrics` shows it.
async fn handshakes(server: &TestServer, outcome: &str) -> u64 {
    let (status, text) = request(server.addr, "GET", "/metrics", &[], vec![]).await;
    assert_eq!(status, 200);
    let line = format!("hookfan_handshakes_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.parse().unwrap())
}

/// Subscribes from `ip` with the made-up tokens numbered `tokens`, one
/// after the other; an attempt that meets the connection limit (the
/// previous connection's slot not given back yet) is made again.
async fn made_up_tokens(
    addr: SocketAddr,
    ip: &'static str,
    tokens: std::ops::Range<usize>,
) -> Vec<Attempt> {
    let mut answers = Vec::new();
    for i in tokens {
        let tok = format!("ghp_made{i:0>32}");
        loop {
            match attempt(addr, ip, &tok, json!({"organization": "acme"})).await {
                Attempt::ConnectionLimit429 => tokio::time::sleep(Duration::from_millis(5)).await,
                a => {
                    answers.push(a);
                    break;
                }
            }
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_tokens_from_one_address_stop_reaching_the_api() {
    // The default auth.max_failed_checks_per_ip; PER_IP connections at once.
    const LIMIT: usize = 30;
    const PER_IP: usize = 5;
    let mock = Mock::start().await;
    // Slow enough that the checks of the PER_IP workers overlap.
    mock.set_delay(Duration::from_millis(20));
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    let (server, _gh) = start(
        &mock,
        // Upgrades a minute unlimited: this test is of failed checks alone.
        &format!(
            "[limits]\nmax_conns_per_ip = {PER_IP}\ntrusted_proxies = [\"127.0.0.0/8\"]\nupgrades_per_ip_per_minute = 0\n"
        ),
        |_| {},
    )
    .await;
    let addr = server.addr;
    const ATTACKER: &str = "203.0.113.66";

    // 100 distinct made-up tokens from one address, PER_IP at a time. An
    // attempt that meets the connection limit (the previous connection's
    // slot not given back yet) is made again.
    let workers =
        (0..PER_IP).map(|w| tokio::spawn(made_up_tokens(addr, ATTACKER, w * 20..(w + 1) * 20)));
    let answers: Vec<Attempt> = join_all(workers)
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    let mut checked = 0;
    let mut retry_afters = Vec::new();
    for a in &answers {
        match a {
            Attempt::Answered(v) => {
                assert_eq!(refused(v), "authentication_failed");
                checked += 1;
            }
            Attempt::FailedChecks429(s) => retry_afters.push(*s),
            Attempt::ConnectionLimit429 => unreachable!(),
        }
    }
    assert_eq!(checked + retry_afters.len(), 100);
    // Each token checked cost one request (401 ends the round), and none
    // was refused before the address's 30th failure. A check is let in
    // only while fewer than 30 failures are recorded; it records its own
    // before its slot is given back, so at most PER_IP are in flight:
    // at most 29 + PER_IP got through.
    let requests = mock.hits(INSTALL);
    assert_eq!(mock.total_hits(), requests);
    assert_eq!(requests, checked);
    assert!(
        (LIMIT..LIMIT + PER_IP).contains(&requests),
        "{requests} API requests, {checked} checks"
    );
    assert!(mock.state.max.load(Ordering::SeqCst) > 1, "no overlap");
    // The rest were answered 429, saying when to come back (the window is
    // a minute from the first failure; the test took less than that).
    assert!(!retry_afters.is_empty());
    assert!(
        retry_afters.iter().all(|s| (1..=60).contains(s)),
        "{retry_afters:?}"
    );
    assert_eq!(
        handshakes(&server, "limited_failed_checks").await,
        retry_afters.len() as u64
    );

    // Even a good token from that address is refused without a check.
    let sub = json!({"organization": "acme"});
    let again = attempt(addr, ATTACKER, &alice, sub.clone()).await;
    assert!(matches!(again, Attempt::FailedChecks429(_)), "{again:?}");
    assert_eq!(mock.total_hits(), requests);
    // Another address is not affected.
    let Attempt::Answered(v) = attempt(addr, "198.51.100.7", &alice, sub).await else {
        panic!("refused");
    };
    assert_eq!(confirmed(&v), ("acme", "alice"));
}

#[tokio::test]
async fn forbidden_tokens_count_and_not_member_refusals_do_not() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    let forbidden = token("forbidden");
    mock.add(
        &forbidden,
        Account::Status {
            status: 403,
            rate_limited: false,
        },
    );
    let (server, _gh) = start(
        &mock,
        "[limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        |a| a.max_failed_checks_per_ip = 2,
    )
    .await;
    let addr = server.addr;
    let client = "2001:db8:7:7::1";
    // A member of acme asking for another org: the token is fine.
    for _ in 0..5 {
        let a = attempt(addr, client, &alice, json!({"organization": "other"})).await;
        let Attempt::Answered(v) = a else {
            panic!("{a:?}")
        };
        assert_eq!(refused(&v), "access_denied");
    }
    // A forbidden token and an unknown one: two failed checks.
    for tok in [&forbidden, &token("nobody")] {
        let Attempt::Answered(v) = attempt(addr, client, tok, json!({})).await else {
            panic!("refused before the check");
        };
        assert!(["access_denied", "authentication_failed"].contains(&refused(&v)));
    }
    // Another address of the same /64 is the same client.
    let a = attempt(addr, "2001:db8:7:7::2", &alice, json!({})).await;
    assert!(matches!(a, Attempt::FailedChecks429(1..=60)), "{a:?}");
}

// ---------------------------------------------------------------------------
// Tiers.

#[tokio::test]
async fn tiers_come_from_the_login_and_the_orgs() {
    let mock = Mock::start().await;
    let (alice, carol, dave, app) = (token("alice"), token("carol"), token("dave"), app_token());
    mock.add(&alice, user("alice", &["freeorg"]));
    mock.add(&carol, user("carol", &["freeorg", "BigCorp"]));
    mock.add(&dave, user("dave", &["freeorg"]));
    mock.add(
        &app,
        Account::App {
            org: "bigcorp".into(),
        },
    );
    let (server, _gh) = start(
        &mock,
        "[tiers]\nenforce = true\npro = [\"Alice\"]\nflock = [\"bigcorp\"]\n",
        |_| {},
    )
    .await;
    let sub = json!({"organization": "freeorg"});
    let mut alice = subscribe_as(server.addr, &alice, sub.clone()).await.0;
    let mut carol = subscribe_as(server.addr, &carol, sub.clone()).await.0;
    let mut dave = subscribe_as(server.addr, &dave, sub).await.0;
    let (mut app, v) = subscribe_as(server.addr, &app, json!({})).await;
    assert_eq!(confirmed(&v).0, "bigcorp");

    for (org, n, private, id) in [
        ("freeorg", 1, true, "private"),
        ("freeorg", 2, false, "public"),
        ("bigcorp", 3, true, "bigcorp"),
    ] {
        let (status, _) = server
            .webhook_with_id("pull_request", &pr_payload(org, "r", n, "x", private), id)
            .await;
        assert_eq!(status, 200);
    }
    // alice is pro by login, carol flock by org: they see the private event.
    for ws in [&mut alice, &mut carol] {
        assert_eq!(next_event(ws).await["delivery_id"], "private");
        assert_eq!(next_event(ws).await["delivery_id"], "public");
    }
    // dave is free: the private event is withheld.
    assert_eq!(next_event(&mut dave).await["delivery_id"], "public");
    // The app installation has its org's tier.
    assert_eq!(next_event(&mut app).await["delivery_id"], "bigcorp");
}

/// Safe defaults: with no `[tiers]` section a user in no tier list is
/// free and a private repository's events are withheld from it; an
/// operator serving only their own organization sets `default_tier = "pro"`
/// and its members get them.
#[tokio::test]
async fn private_events_are_withheld_unless_the_operator_says_otherwise() {
    let mock = Mock::start().await;
    let dave = token("dave");
    mock.add(&dave, user("dave", &["freeorg"]));
    for (extra, first) in [
        ("", "public"),
        ("[tiers]\ndefault_tier = \"pro\"\n", "private"),
    ] {
        let (server, _gh) = start(&mock, extra, |_| {}).await;
        let (mut ws, v) =
            subscribe_as(server.addr, &dave, json!({"organization": "freeorg"})).await;
        confirmed(&v);
        for (n, private, id) in [(1, true, "private"), (2, false, "public")] {
            let pr = pr_payload("freeorg", "r", n, "x", private);
            assert_eq!(server.webhook_with_id("pull_request", &pr, id).await.0, 200);
        }
        assert_eq!(next_event(&mut ws).await["delivery_id"], first, "{extra:?}");
    }
}

#[tokio::test]
async fn reloaded_tier_lists_apply_to_cached_tokens_too() {
    let mock = Mock::start().await;
    let dave = token("dave");
    mock.add(&dave, user("dave", &["freeorg"]));
    let (server, gh) = start(&mock, "[tiers]\nenforce = true\n", |_| {}).await;
    let sub = json!({"organization": "freeorg"});
    let private = || pr_payload("freeorg", "r", 1, "x", true);
    let public = || pr_payload("freeorg", "r", 2, "x", false);

    let (mut ws, v) = subscribe_as(server.addr, &dave, sub.clone()).await;
    confirmed(&v);
    server
        .webhook_with_id("pull_request", &private(), "p1")
        .await;
    server
        .webhook_with_id("pull_request", &public(), "a1")
        .await;
    assert_eq!(
        next_event(&mut ws).await["delivery_id"],
        "a1",
        "free: withheld"
    );
    let rounds = mock.hits("/user");

    // What SIGHUP does with a new [tiers] section.
    let tiers = TiersConfig {
        enforce: true,
        pro: vec!["DAVE".into()],
        ..TiersConfig::default()
    };
    gh.reload(&AuthConfig::default(), &tiers).unwrap();
    let (mut ws, v) = subscribe_as(server.addr, &dave, sub).await;
    confirmed(&v);
    assert_eq!(mock.hits("/user"), rounds, "the cached identity was used");
    server
        .webhook_with_id("pull_request", &private(), "p2")
        .await;
    assert_eq!(next_event(&mut ws).await["delivery_id"], "p2", "pro now");
}

// ---------------------------------------------------------------------------
// The token stays secret.

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log of this test binary. A global subscriber, not a
/// scoped one: tracing caches per-callsite interest, and a scoped subscriber
/// can miss events when other tests' threads hit the same callsites first.
fn global_log() -> LogBuf {
    static LOG: std::sync::OnceLock<LogBuf> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf = LogBuf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
    .clone()
}

#[tokio::test(flavor = "current_thread")]
async fn the_token_never_reaches_logs_errors_or_stats() {
    let buf = global_log();

    let mock = Mock::start().await;
    let good = token("goodsecret");
    let app = format!("ghs_appsecret{}", "9".repeat(27));
    let (invalid, forbidden, limited, failing) = (
        token("badsecret"),
        token("forbiddensecret"),
        token("limitedsecret"),
        token("failingsecret"),
    );
    mock.add(&good, user("alice", &["acme"]));
    mock.add(&app, Account::App { org: "acme".into() });
    let status = |status, rate_limited| Account::Status {
        status,
        rate_limited,
    };
    mock.add(&forbidden, status(403, false));
    mock.add(&limited, status(403, true));
    mock.add(&failing, status(502, false));
    let (server, gh) = start(&mock, "[log]\nlevel = \"trace\"\n", |_| {}).await;

    let mut answers = Vec::new();
    for tok in [&good, &app, &invalid, &forbidden, &limited, &failing, &good] {
        for sub in [
            json!({"organization": "acme"}),
            json!({"organization": "nope"}),
        ] {
            answers.push((tok.clone(), first_answer(server.addr, tok, sub).await));
        }
    }
    // A failed connection to the API, too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let unreachable = GithubProvider::new(
        &AuthConfig {
            github_api_url: format!("http://{closed}"),
            ..AuthConfig::default()
        },
        &Default::default(),
    )
    .unwrap();
    let err = hookfan::auth::AuthProvider::authenticate(
        &unreachable,
        &hookfan::auth::Token::new(failing.clone()),
    )
    .await
    .unwrap_err();

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let errors = format!("{err} {err:?}");
    let stats = format!("{:?} {:?}", gh.stats(), unreachable.stats());
    // The checks happened and were logged, by fingerprint.
    assert!(logs.contains("GitHub token accepted"), "{logs}");
    assert!(logs.contains("subscription refused"), "{logs}");
    assert!(
        logs.contains(&hookfan::auth::Token::new(good.clone()).fingerprint()),
        "{logs}"
    );
    assert!(
        errors.contains("unreachable") || errors.contains("3 attempts"),
        "{errors}"
    );
    for tok in [&good, &app, &invalid, &forbidden, &limited, &failing] {
        let secret = &tok[4..];
        assert!(!logs.contains(secret), "token in the logs:\n{logs}");
        assert!(!errors.contains(secret), "token in an error: {errors}");
        assert!(!stats.contains(secret), "token in the stats: {stats}");
    }
    for (tok, v) in &answers {
        no_token_in(v, tok);
    }
}

// ---------------------------------------------------------------------------
// The daemon's configuration.

#[test]
fn check_config_accepts_the_github_provider() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s").unwrap();
    let path = dir.path().join("hookfan.toml");
    std::fs::write(
        &path,
        "[webhook]\nsecret_file = \"secret\"\n[auth]\nprovider = \"github\"\ngithub_api_url = \"http://127.0.0.1:9/api/v3/\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookfan"))
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("# auth: github, http://127.0.0.1:9/api/v3\n"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------
// Access checked again on live connections (auth.recheck_interval_s).

/// Waits until `cond` holds (10 s at most).
async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With `recheck_interval_s = 2`: a token revoked on GitHub closes its
/// connection with `authentication_failed` and a user who left the
/// subscribed organization gets `access_denied`, both within 5 s; a user
/// who joined an organization of `tiers.pro` receives private events from
/// then on; the others stream on.
// One scenario: the changes happen on the mock while all clients are
// live, and the others must stream on through the same rechecks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_and_lost_memberships_close_live_connections() {
    let mock = Mock::start().await;
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(token);
    for (t, login) in [
        (&alice, "alice"),
        (&bob, "bob"),
        (&carol, "carol"),
        (&dave, "dave"),
    ] {
        mock.add(t, user(login, &["acme"]));
    }
    let (server, _gh) = start(&mock, "[tiers]\npro = [\"paying\"]\n", |a| {
        a.recheck_interval_s = 2;
        a.cache_ttl_s = 1;
    })
    .await;
    let mut ws = Vec::new();
    for t in [&alice, &bob, &carol, &dave] {
        let (w, v) = subscribe_as(server.addr, t, json!({"organization": "acme"})).await;
        confirmed(&v);
        ws.push(w);
    }
    let [mut a, mut b, mut c, mut d] = <[Ws; 4]>::try_from(ws).ok().unwrap();

    mock.add(
        &alice,
        Account::Status {
            status: 401,
            rate_limited: false,
        },
    );
    mock.add(&bob, user("bob", &["widgets"]));
    mock.add(&carol, user("carol", &["acme", "paying"]));
    let changed = Instant::now();
    assert_eq!(next_json(&mut a).await["error"], "authentication_failed");
    assert_eq!(
        expect_close(&mut a).await,
        (1008, "authentication_failed".to_owned())
    );
    let denied = next_json(&mut b).await;
    assert_eq!(
        (denied["error"].as_str(), denied["message"].as_str()),
        (
            Some("access_denied"),
            Some("User 'bob' is not a member of organization 'acme'.")
        ),
    );
    assert_eq!(
        expect_close(&mut b).await,
        (1008, "access_denied".to_owned())
    );
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "{:?}",
        changed.elapsed()
    );

    let updated = "hookfan_access_changes_total{change=\"updated\"}";
    wait_until("carol's new tier", async || {
        metric_of(server.addr, updated).await >= 1.0
    })
    .await;
    let private = pr_payload("acme", "r", 1, "x", true);
    server
        .webhook_with_id("pull_request", &private, "private")
        .await;
    let public = pr_payload("acme", "r", 2, "x", false);
    server
        .webhook_with_id("pull_request", &public, "public")
        .await;
    assert_eq!(
        next_event(&mut c).await["delivery_id"],
        "private",
        "pro now"
    );
    assert_eq!(
        next_event(&mut d).await["delivery_id"],
        "public",
        "still free"
    );
    let rechecks = "hookfan_access_rechecks_total{result=\"ok\"}";
    assert!(metric_of(server.addr, rechecks).await >= 3.0);
}

/// `/events` streams are checked again like WebSocket clients: a token
/// revoked on GitHub ends its stream with an `error` event within 5 s, a
/// stream of a token still valid goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_its_event_stream_with_an_error_event() {
    let mock = Mock::start().await;
    let [alice, dave] = ["alice", "dave"].map(token);
    mock.add(&alice, user("alice", &["acme"]));
    mock.add(&dave, user("dave", &["acme"]));
    let (server, _gh) = start(&mock, "", |a| {
        a.recheck_interval_s = 2;
        a.cache_ttl_s = 1;
    })
    .await;
    let mut revoked = Sse::subscribe(server.addr, &alice, "organization=acme").await;
    let mut kept = Sse::subscribe(server.addr, &dave, "organization=acme").await;
    for sse in [&mut revoked, &mut kept] {
        let m = sse.next_message().await;
        assert_eq!(m.event.as_deref(), Some("subscription_confirmed"), "{m:?}");
    }
    mock.add(
        &alice,
        Account::Status {
            status: 401,
            rate_limited: false,
        },
    );
    let changed = Instant::now();
    let m = revoked.next_message().await;
    assert_eq!(m.event.as_deref(), Some("error"), "{m:?}");
    assert_eq!(refused(&m.json()), "authentication_failed");
    assert_eq!(
        revoked.next().await,
        None,
        "the stream ends after its error"
    );
    assert!(
        changed.elapsed() < Duration::from_secs(5),
        "{:?}",
        changed.elapsed()
    );
    server
        .webhook("pull_request", &pr_payload("acme", "api", 3, "zed", false))
        .await;
    let (event, _) = kept.next_event().await;
    assert_eq!(event["url"], "https://github.com/acme/api/pull/3");
}

/// Rechecks come as a steady stream within half the API cap, never a
/// burst: 40 connections with distinct tokens coming due together, under
/// `max_concurrent_api_requests = 8`, are each checked again while GitHub
/// never sees more than 4 requests at once; five connections of one token
/// share its checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rechecks_are_spread_within_half_the_api_cap() {
    let mock = Mock::start().await;
    mock.set_delay(Duration::from_millis(50));
    let (server, _gh) = start(&mock, "[limits]\nmax_conns_per_ip = 100\n", |a| {
        a.recheck_interval_s = 2;
        a.cache_ttl_s = 0;
        a.max_concurrent_api_requests = 8;
    })
    .await;
    let tokens: Vec<String> = (0..40).map(|i| token(&format!("bulk{i:04}"))).collect();
    let shared = &tokens[0];
    let connects = tokens
        .iter()
        .chain(std::iter::repeat_n(shared, 4))
        .map(|t| subscribe_as(server.addr, t, json!({"organization": "acme"})));
    let clients: Vec<Ws> = join_all(connects)
        .await
        .into_iter()
        .map(|(ws, v)| {
            confirmed(&v);
            ws
        })
        .collect();
    let at_handshake: Vec<usize> = tokens.iter().map(|t| mock.rounds(t)).collect();
    assert_eq!(
        at_handshake[1..],
        [1; 39],
        "one round per token at the handshake"
    );
    mock.state.max.store(0, Ordering::SeqCst);

    wait_until("every token checked again", async || {
        tokens
            .iter()
            .zip(&at_handshake)
            .all(|(t, n)| mock.rounds(t) > *n)
    })
    .await;
    let most = mock.state.max.load(Ordering::SeqCst);
    assert!((1..=4).contains(&most), "{most} requests at once");
    // The shared token: one check for its five connections, not five.
    let shared_rounds = mock.rounds(shared) - at_handshake[0];
    let other_rounds = mock.rounds(&tokens[1]) - at_handshake[1];
    assert!(
        shared_rounds <= other_rounds + 1,
        "{shared_rounds} vs {other_rounds}"
    );
    drop(clients);
}

#[tokio::test]
async fn upgrades_past_the_rate_are_refused_before_any_api_request() {
    let mock = Mock::start().await;
    let alice = token("alice");
    mock.add(&alice, user("alice", &["acme"]));
    let (server, _gh) = start(
        &mock,
        "[limits]\nupgrades_per_ip_per_minute = 2\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        |_| {},
    )
    .await;
    let addr = server.addr;
    let sub = json!({"organization": "acme"});
    // Two made-up tokens: each costs a check (and API requests).
    for i in 0..2 {
        let a = attempt(
            addr,
            "203.0.113.70",
            &format!("ghp_made{i:0>32}"),
            sub.clone(),
        )
        .await;
        assert!(matches!(a, Attempt::Answered(_)), "{a:?}");
    }
    let spent = mock.total_hits();
    assert!(spent >= 2, "{spent}");
    // The third, even with a good token, is refused before any check.
    match connect_as(addr, "203.0.113.70", &alice).await {
        Err(WsError::Http(r)) => {
            assert_eq!(r.status(), 429);
            let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default());
            assert_eq!(
                body,
                "429 Too Many Requests: too many connection attempts from this address\n"
            );
            // Empty bucket of 2 a minute: the next is due in 30 s.
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((29..=30).contains(&retry), "{retry}");
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        mock.total_hits(),
        spent,
        "no API request for a limited upgrade"
    );
    assert_eq!(handshakes(&server, "limited_rate").await, 1);
    // Another address, the same good token: checked and confirmed.
    let a = attempt(addr, "203.0.113.71", &alice, sub).await;
    match a {
        Attempt::Answered(v) => assert_eq!(v["type"], "subscription_confirmed"),
        a => panic!("{a:?}"),
    }
}
