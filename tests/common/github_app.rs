//! A GitHub-like server for the App's redelivery API, started by a test on
//! 127.0.0.1:0. It checks every request as GitHub does (the App's JWT,
//! verified with the App's public key only; `Accept`, API version,
//! `User-Agent`), records what fails and why, serves the webhook
//! deliveries newest first a page at a time (opaque `cursor`, `Link`
//! header), and answers `POST /app/hook/deliveries/{id}/attempts` with 202
//! and then, asynchronously, posts the original body signed with the
//! webhook secret to hookfan, recording that redelivery in the list.

mod jwt;
mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;

pub use jwt::{app_jwt, sign_jwt};
use wire::{Answer, Hook, error, reply};

/// A delivery GitHub made (or failed to make) before the test looks.
pub struct MockDelivery {
    pub guid: String,
    pub event: String,
    pub body: Vec<u8>,
    /// The receiver's answer; 0 = none (hookfan down).
    pub status_code: u16,
    /// `delivered_at` is now minus this.
    pub age: Duration,
    pub redelivery: bool,
}

struct Stored {
    id: u64,
    guid: String,
    event: String,
    body: Arc<[u8]>,
    status_code: u16,
    delivered_at: SystemTime,
    redelivery: bool,
}

struct Canned {
    left: usize,
    status: u16,
    headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Books {
    next_id: u64,
    deliveries: Vec<Stored>,
    hookfan: Option<SocketAddr>,
    attempts: HashMap<String, usize>,
    statuses: HashMap<String, Vec<u16>>,
    list_requests: Vec<Instant>,
    bad: Vec<String>,
    /// Answers queued by the test, served in order.
    canned: std::collections::VecDeque<Canned>,
    page_cap: usize,
}

struct State {
    addr: SocketAddr,
    app_id: u64,
    secret: Vec<u8>,
    verifier: jwt::Verifier,
    books: Mutex<Books>,
    /// True while the test holds the list back.
    held: watch::Sender<bool>,
    /// Redeliveries posted to hookfan and not yet answered.
    in_flight: watch::Sender<usize>,
}

/// The mock; dropping it stops the server and its connections.
pub struct GithubAppMock {
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GithubAppMock {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GithubAppMock {
    /// Starts the mock for App `app_id`, whose private key is `app_key_pem`
    /// (the mock keeps only its public key), posting redeliveries signed
    /// with `webhook_secret`.
    pub async fn start(app_id: u64, app_key_pem: &str, webhook_secret: &[u8]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(State {
            addr: listener.local_addr().unwrap(),
            app_id,
            secret: webhook_secret.to_vec(),
            verifier: jwt::Verifier::new(app_id, app_key_pem),
            books: Mutex::new(Books {
                next_id: 1_000_001,
                page_cap: 100,
                ..Books::default()
            }),
            held: watch::Sender::new(false),
            in_flight: watch::Sender::new(0),
        });
        let st = state.clone();
        // The connections live in the accept task's JoinSet, so aborting
        // that task stops them too.
        let server = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                let service = hyper::service::service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(st.answer(req).await) }
                });
                conns.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        GithubAppMock { state, server }
    }

    /// `http://127.0.0.1:PORT`, the API base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// Where redeliveries are posted: `http://ADDR/webhook`.
    pub fn deliver_to(&self, hookfan: SocketAddr) {
        self.state.books().hookfan = Some(hookfan);
    }

    /// Adds a delivery to the list; its id (ids increase).
    pub fn add(&self, d: MockDelivery) -> u64 {
        self.state.store(Stored {
            id: 0,
            guid: d.guid,
            event: d.event,
            body: d.body.into(),
            status_code: d.status_code,
            delivered_at: SystemTime::now() - d.age,
            redelivery: d.redelivery,
        })
    }

    /// Redeliveries GitHub accepted (202) for deliveries of `guid`.
    pub fn attempts(&self, guid: &str) -> usize {
        self.state.books().attempts.get(guid).copied().unwrap_or(0)
    }

    /// hookfan's answers to the redeliveries of `guid` that have finished,
    /// in order (0 = unreachable); [`Self::settled`] waits for the rest.
    pub fn attempt_statuses(&self, guid: &str) -> Vec<u16> {
        let books = self.state.books();
        books.statuses.get(guid).cloned().unwrap_or_default()
    }

    /// Waits until every redelivery accepted so far has been answered.
    pub async fn settled(&self) {
        let mut rx = self.state.in_flight.subscribe();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|n| *n == 0))
            .await
            .expect("redeliveries still in flight after 20 s")
            .unwrap();
    }

    /// When each `GET /app/hook/deliveries` (any page) arrived.
    pub fn list_requests(&self) -> Vec<Instant> {
        self.state.books().list_requests.clone()
    }

    /// Every request that failed a check, and why.
    pub fn bad_requests(&self) -> Vec<String> {
        self.state.books().bad.clone()
    }

    /// The next `n` API requests that pass the checks get `status` with
    /// `headers` (and GitHub's message for that status) instead; after
    /// the answers queued before, if any.
    pub fn answer_next(&self, n: usize, status: u16, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.state.books().canned.push_back(Canned {
            left: n,
            status,
            headers,
        });
    }

    /// From now on `GET /app/hook/deliveries` waits, unanswered...
    pub fn hold_list(&self) {
        self.state.held.send_replace(true);
    }

    /// ...until this.
    pub fn release_list(&self) {
        self.state.held.send_replace(false);
    }

    /// The largest page served (default 100, GitHub's maximum).
    pub fn set_page_size_cap(&self, n: usize) {
        self.state.books().page_cap = n.max(1);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl State {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap()
    }

    /// Adds `d` to the list under the next id; that id.
    fn store(&self, mut d: Stored) -> u64 {
        let mut books = self.books();
        d.id = books.next_id;
        books.next_id += 1;
        books.deliveries.push(d);
        books.next_id - 1
    }

    /// Records a failed check.
    fn record(&self, what: &str, why: &str) {
        self.books().bad.push(format!("{what}: {why}"));
    }

    /// Records a failed check and answers it.
    fn bad(&self, what: &str, why: &str, answer: Answer) -> Answer {
        self.record(what, why);
        answer
    }

    async fn answer(self: &Arc<Self>, req: Request<Incoming>) -> Answer {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let what = format!("{method} {path}");
        let list = method == Method::GET && path == "/app/hook/deliveries";
        if list {
            self.books().list_requests.push(Instant::now());
            let _ = self.held.subscribe().wait_for(|held| !held).await;
        }
        if let Some(refused) = self.refusal(&what, req.headers()) {
            return refused;
        }
        if let Some(canned) = self.canned() {
            return canned;
        }
        let attempt = path
            .strip_prefix("/app/hook/deliveries/")
            .and_then(|rest| rest.strip_suffix("/attempts"))
            .and_then(|id| id.parse().ok())
            .filter(|_| method == Method::POST);
        match attempt {
            _ if list => self.list_page(&what, req.uri().query().unwrap_or("")),
            Some(id) => self.redeliver(id),
            None => self.bad(&what, "no such endpoint", error(404, &[], "Not Found")),
        }
    }

    /// GitHub's checks of every request; the refusal when one fails.
    fn refusal(&self, what: &str, headers: &HeaderMap) -> Option<Answer> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if h("user-agent").is_none_or(str::is_empty) {
            let msg = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.";
            return Some(self.bad(what, "no User-Agent", error(403, &[], msg)));
        }
        match h("x-github-api-version") {
            Some("2022-11-28") => {}
            Some(v) => {
                let msg = format!(
                    "Invalid API version provided: {v}. Supported versions are 2022-11-28."
                );
                let why = format!("X-GitHub-Api-Version {v:?}");
                return Some(self.bad(what, &why, error(400, &[], &msg)));
            }
            // GitHub serves the default version; hookfan must name it.
            None => self.record(what, "no X-GitHub-Api-Version"),
        }
        if h("accept") != Some("application/vnd.github+json") {
            // GitHub serves JSON anyway; hookfan must ask for it.
            let why = format!("Accept {:?}, not application/vnd.github+json", h("accept"));
            self.record(what, &why);
        }
        let now = unix_now() as i64;
        self.verifier
            .check(h("authorization").unwrap_or(""), now)
            .err()
            .map(|r| self.bad(what, &r.reason, error(401, &[], r.message)))
    }

    /// The test's canned answer, if one is left.
    fn canned(&self) -> Option<Answer> {
        let mut books = self.books();
        while books.canned.front().is_some_and(|c| c.left == 0) {
            books.canned.pop_front();
        }
        let canned = books.canned.front_mut()?;
        canned.left -= 1;
        let message = wire::message_for(canned.status);
        Some(error(canned.status, &canned.headers, message))
    }

    /// One page of deliveries, newest first, from the delivery the
    /// `cursor` names (`v1_<id>`, as GitHub's look), with a `Link` to the
    /// next page when there is one.
    fn list_page(&self, what: &str, query: &str) -> Answer {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        let per_page = param("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
        let books = self.books();
        let size = per_page.clamp(1, 100).min(books.page_cap);
        let mut order: Vec<&Stored> = books.deliveries.iter().collect();
        order.sort_by_key(|d| std::cmp::Reverse((d.delivered_at, d.id)));
        let start = match param("cursor") {
            None => 0,
            Some(c) => match c.strip_prefix("v1_").and_then(|id| id.parse::<u64>().ok()) {
                Some(id) => order.iter().position(|d| d.id == id).unwrap_or(order.len()),
                None => {
                    drop(books);
                    let why = format!("cursor {c:?} is not one the mock gave");
                    return self.bad(what, &why, error(422, &[], "Validation Failed"));
                }
            },
        };
        let page: Vec<Value> = order
            .iter()
            .skip(start)
            .take(size)
            .map(|d| {
                let (guid, event, code) = (&d.guid, &d.event, d.status_code);
                wire::delivery_json(
                    d.id,
                    guid,
                    event,
                    &d.body,
                    code,
                    d.delivered_at,
                    d.redelivery,
                )
            })
            .collect();
        let mut headers = wire::rate_headers(unix_now());
        if let Some(next) = order.get(start + size) {
            let url = format!(
                "http://{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}",
                self.addr, next.id
            );
            headers.push(("link".to_owned(), format!("<{url}>; rel=\"next\"")));
        }
        reply(200, &headers, &Value::Array(page))
    }

    /// Accepts a redelivery of delivery `id` (202) and makes it in the
    /// background, as GitHub does.
    fn redeliver(self: &Arc<Self>, id: u64) -> Answer {
        let mut books = self.books();
        let Some(d) = books.deliveries.iter().find(|d| d.id == id) else {
            return error(404, &[], "Not Found");
        };
        let (guid, event, body) = (d.guid.clone(), d.event.clone(), d.body.clone());
        *books.attempts.entry(guid.clone()).or_default() += 1;
        let hookfan = books.hookfan;
        drop(books);
        self.in_flight.send_modify(|n| *n += 1);
        let st = self.clone();
        tokio::spawn(async move {
            let hook = Hook {
                app_id: st.app_id,
                guid: &guid,
                event: &event,
                body: &body,
                secret: &st.secret,
            };
            let status_code = wire::post_hook(hookfan, hook).await;
            let mut books = st.books();
            books
                .statuses
                .entry(guid.clone())
                .or_default()
                .push(status_code);
            drop(books);
            st.store(Stored {
                id: 0,
                guid,
                event,
                body,
                status_code,
                delivered_at: SystemTime::now(),
                redelivery: true,
            });
            st.in_flight.send_modify(|n| *n -= 1);
        });
        reply(202, &wire::rate_headers(unix_now()), &json!({}))
    }
}
