//! A GitHub-like `GET /meta` (what `webhook.allowed_sources = ["github"]`
//! fetches), started by a test on 127.0.0.1:0. It answers what the test
//! sets, changeable at any time: `hooks` ranges (among GitHub's other keys),
//! a status with GitHub's error body, or any body. It counts requests and
//! records those GitHub would refuse or that carry what they must not (an
//! `Authorization` header: `/meta` needs none, and no token may leave).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::watch;

/// What `/meta` answers.
#[derive(Debug, Clone)]
pub enum MetaAnswer {
    /// 200 with these `hooks` ranges.
    Hooks(Vec<String>),
    /// This status, with GitHub's error body.
    Status(u16),
    /// 200 with this body.
    Body(String),
}

/// 200 with these `hooks` ranges.
pub fn meta_hooks(ranges: &[&str]) -> MetaAnswer {
    MetaAnswer::Hooks(ranges.iter().map(|r| r.to_string()).collect())
}

struct State {
    answer: Mutex<MetaAnswer>,
    bad: Mutex<Vec<String>>,
    /// Requests served so far.
    requests: watch::Sender<usize>,
}

/// The mock; dropping it stops the server and its connections.
pub struct MetaMock {
    addr: SocketAddr,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MetaMock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MetaMock {
    /// Starts the mock, answering `answer` until told otherwise.
    pub async fn start(answer: MetaAnswer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            answer: Mutex::new(answer),
            bad: Mutex::new(Vec::new()),
            requests: watch::Sender::new(0),
        });
        let st = state.clone();
        let server = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                let service = hyper::service::service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(st.answer(&req)) }
                });
                conns.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        MetaMock {
            addr,
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, the API base URL (`auth.github_api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `/meta` answers from now on.
    pub fn set(&self, answer: MetaAnswer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        *self.state.requests.borrow()
    }

    /// Waits (20 s at most) until `n` requests have been served.
    pub async fn served(&self, n: usize) {
        let mut rx = self.state.requests.subscribe();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|got| *got >= n))
            .await
            .unwrap_or_else(|_| panic!("{} requests to /meta, not {n}", self.requests()))
            .unwrap();
    }

    /// Every request that GitHub would refuse or that carried what it must
    /// not, and why.
    pub fn bad_requests(&self) -> Vec<String> {
        self.state.bad.lock().unwrap().clone()
    }
}

impl State {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let what = format!("{} {}", req.method(), req.uri());
        let problems = problems(req);
        self.bad
            .lock()
            .unwrap()
            .extend(problems.into_iter().map(|p| format!("{what}: {p}")));
        let answer = if req.method() == "GET" && req.uri().path() == "/meta" {
            self.current().clone()
        } else {
            MetaAnswer::Status(404)
        };
        self.requests.send_modify(|n| *n += 1);
        match answer {
            MetaAnswer::Hooks(ranges) => reply(200, meta_json(&ranges).to_string()),
            MetaAnswer::Status(status) => reply(
                status,
                json!({"message": "Server Error", "documentation_url": "https://docs.github.com/rest"})
                    .to_string(),
            ),
            MetaAnswer::Body(body) => reply(200, body),
        }
    }

    fn current(&self) -> MutexGuard<'_, MetaAnswer> {
        self.answer.lock().unwrap()
    }
}

/// What GitHub would refuse in a request to `/meta`, or that must not be
/// in one.
fn problems(req: &Request<Incoming>) -> Vec<&'static str> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let mut p = Vec::new();
    if req.uri().path() != "/meta" {
        p.push("not /meta");
    }
    if h("user-agent").is_none_or(str::is_empty) {
        p.push("no User-Agent");
    }
    if h("accept") != Some("application/vnd.github+json") {
        p.push("Accept is not application/vnd.github+json");
    }
    if h("x-github-api-version") != Some("2022-11-28") {
        p.push("X-GitHub-Api-Version is not 2022-11-28");
    }
    if req.headers().contains_key("authorization") {
        p.push("an Authorization header");
    }
    p
}

/// GitHub's `/meta` answer with `hooks` ranges, among its other keys.
fn meta_json(hooks: &[String]) -> serde_json::Value {
    json!({
        "verifiable_password_authentication": false,
        "ssh_key_fingerprints": {"SHA256_ED25519": "+DiY3wvvV6TuJJhbpZisF/zLDA0zPMSvHdkr4UvCOqU"},
        "hooks": hooks,
        "web": ["192.30.252.0/22", "185.199.108.0/22"],
        "api": ["192.30.252.0/22", "185.199.108.0/22"],
        "git": ["192.30.252.0/22"],
        "actions": ["4.148.0.0/16", "4.149.0.0/18"],
        "domains": {"website": ["*.github.com", "*.github.dev"]}
    })
}

fn reply(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
