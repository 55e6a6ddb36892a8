//! The daemon: an HTTP server routing to the library's endpoints, and its
//! lifecycle. It is built only from the crate's public API (the `use`
//! lines below name nothing else), which is what an embedder has too.
//!
//! [`start`] binds, starts the hub and serves until [`ServerHandle::shutdown`],
//! which drains: `/healthz` turns 503, new webhooks and upgrades get 503,
//! every client gets its queued frames and a close frame 1001, and the
//! server is gone within `server.shutdown_timeout_s`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::config::{Config, WebhookSecret};
use crate::{
    AuthProvider, CommitCache, ConnCounts, EventSink, Hub, HubConfig, Metrics, ReplayConfig,
    WebhookEndpoint, WebhookOptions, WsEndpoint, WsOptions,
};

/// Where the server is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Shutting down: `/healthz`, `/`, webhooks and upgrades are answered
    /// 503 (with `Connection: close`) on old and new connections alike.
    Draining,
    /// Drained: idle connections are closed.
    Stopped,
}

/// Everything a request handler needs.
struct App {
    webhook: WebhookEndpoint,
    ws: WsEndpoint,
    metrics: Arc<Metrics>,
    /// `/metrics` is served here (else on a listener of its own).
    public_metrics: bool,
    phase: watch::Receiver<Phase>,
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    hub: Hub,
    ws: WsEndpoint,
    commit_cache: Arc<CommitCache>,
    phase: watch::Sender<Phase>,
    accept_tasks: Vec<JoinHandle<()>>,
    metrics_addr: Option<SocketAddr>,
    shutdown_timeout: Duration,
}

/// Pending connections the kernel may queue before `accept`: a reconnect
/// storm of thousands of clients must not overflow it (Linux caps it at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `config.server.listen` and starts serving; `auth` checks tokens.
/// Call from a tokio runtime.
pub async fn start(
    config: &Config,
    secret: &WebhookSecret,
    auth: Arc<dyn AuthProvider>,
) -> io::Result<ServerHandle> {
    let listener = listen(config.server.listen)?;
    let local_addr = listener.local_addr()?;
    let metrics_listener = match config.server.metrics_listen {
        Some(addr) => Some(listen(addr)?),
        None => None,
    };
    let cluster = match &config.cluster.nats_url {
        None => None,
        Some(_) => Some(
            Cluster::connect(&config.cluster)
                .await
                .map_err(|e| io::Error::other(format!("cannot join the cluster: {e}")))?,
        ),
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let hub = Hub::start(HubConfig {
        shards: config.broker.effective_shards(),
        client_queue: config.broker.client_queue,
        slow_client: config.broker.slow_client,
        enforce_tiers: config.tiers.enforce,
        replay: ReplayConfig {
            max_events: config.replay.max_events,
            max_bytes: config.replay.max_bytes,
            max_age: Duration::from_secs(config.replay.max_age_s),
        },
        epoch: cluster.as_ref().map(|c| c.epoch().to_owned()),
    })?;
    let metrics = Metrics::new(&hub, auth.clone());
    if let Some(c) = &cluster {
        metrics.watch_cluster(c.stats());
    }
    let allowed = config.webhook.allowed_list();
    let s = &config.server;
    let ws = WsEndpoint::new(
        hub.clone(),
        auth,
        WsOptions {
            handshake_timeout: Duration::from_secs(s.handshake_timeout_s),
            ping_interval: Duration::from_secs(s.ping_interval_s),
            read_timeout: Duration::from_secs(s.read_timeout_s),
            write_timeout: Duration::from_secs(s.write_timeout_s),
            auth_timeout: Duration::from_secs(config.auth.check_timeout_s),
            allowed_events: allowed.clone(),
            max_conns_per_ip: config.limits.max_conns_per_ip,
            max_conns_total: config.limits.max_conns_total,
            trusted_proxies: config.limits.trusted_proxies.clone(),
        },
        metrics.clone(),
    );
    // Intake hands its events to the hub itself, or to the cluster's
    // stream, from which every node's hub is fed.
    let (ws, sink): (WsEndpoint, Arc<dyn EventSink>) = match &cluster {
        Some(c) => (ws.with_backfill(Arc::new(c.clone())), Arc::new(c.clone())),
        None => (ws, Arc::new(hub.clone())),
    };
    let webhook = WebhookEndpoint::new(
        sink,
        secret.expose(),
        WebhookOptions {
            max_payload_bytes: config.webhook.max_payload_bytes,
            allowed_events: allowed,
            commit_cache_entries: config.webhook.commit_cache_entries,
            commit_cache_ttl: Duration::from_secs(config.webhook.commit_cache_ttl_s),
        },
        metrics.clone(),
    );
    let commit_cache = webhook.commit_cache().clone();
    if let Some(c) = &cluster {
        c.start(hub.clone(), commit_cache.clone());
    }
    let (phase, phase_rx) = watch::channel(Phase::Serving);
    let app = Arc::new(App {
        webhook,
        ws: ws.clone(),
        metrics: metrics.clone(),
        public_metrics: metrics_listener.is_none(),
        phase: phase_rx.clone(),
    });
    let header_timeout = Duration::from_secs(s.header_read_timeout_s);
    let mut accept_tasks = vec![tokio::spawn(accept_loop(listener, app, header_timeout))];
    if let Some(l) = metrics_listener {
        accept_tasks.push(tokio::spawn(metrics_loop(l, metrics, phase_rx)));
    }
    Ok(ServerHandle {
        local_addr,
        hub,
        ws,
        commit_cache,
        phase,
        accept_tasks,
        metrics_addr,
        shutdown_timeout: Duration::from_secs(s.shutdown_timeout_s),
    })
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    bind(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, header_timeout: Duration) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(stream, peer, app.clone(), header_timeout));
    }
}

/// Serves one HTTP connection until it ends, or until the server has
/// stopped (then it is closed once its request in flight is answered).
/// While draining, connections stay open so that every request, on a
/// connection old or new, gets its 503 rather than a reset.
async fn serve_http<S>(
    stream: TcpStream,
    service: S,
    header_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
) where
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = phase.wait_for(|p| *p == Phase::Stopped) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    header_timeout: Duration,
) {
    let phase = app.phase.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(route(req, peer, &app).await) }
    });
    serve_http(stream, service, header_timeout, phase).await;
}

/// The metrics listener (`server.metrics_listen`): `/metrics` and nothing else.
async fn metrics_loop(listener: TcpListener, metrics: Arc<Metrics>, phase: watch::Receiver<Phase>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let response = match req.uri().path() {
                "/metrics" => metrics_response(&req, &metrics),
                _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
            };
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(serve_http(
            stream,
            service,
            Duration::from_secs(30),
            phase.clone(),
        ));
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid response")
}

fn metrics_response<B>(req: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    match *req.method() {
        Method::GET | Method::HEAD => Response::builder()
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Full::new(Bytes::from(metrics.encode())))
            .expect("valid response"),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// The answer to every request but `/metrics` while draining: 503, and the
/// connection is closed after it.
fn draining(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, body);
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

async fn route(req: Request<Incoming>, peer: SocketAddr, app: &App) -> Response<Full<Bytes>> {
    let serving = *app.phase.borrow() == Phase::Serving;
    match req.uri().path() {
        "/metrics" if app.public_metrics => metrics_response(&req, &app.metrics),
        "/" | "/healthz" if !serving => draining("draining: shutting down\n"),
        "/" => match *req.method() {
            Method::GET | Method::HEAD => text(StatusCode::OK, "hookfan is running\n"),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/webhook" if !serving => draining("shutting down\n"),
        "/webhook" => app.webhook.handle(req).await,
        "/ws" if !serving => draining("503 Service Unavailable: shutting down\n"),
        "/ws" => app.ws.handle(req, peer),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on when `server.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The broker.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The commit cache.
    pub fn commit_cache(&self) -> &CommitCache {
        &self.commit_cache
    }

    /// WebSocket connection slots held (see `limits.*`).
    pub fn connection_counts(&self) -> ConnCounts {
        self.ws.connection_counts()
    }

    /// Drains and stops: `/healthz` turns 503, webhooks and upgrades get 503,
    /// clients get their queued frames then a close frame 1001. Returns once
    /// every client is gone, or when the shutdown timeout is reached
    /// (whichever is first); the listener is closed on return.
    pub async fn shutdown(&self) {
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let _ = self.phase.send(Phase::Draining);
        self.hub.stop();
        let hub = self.hub.clone();
        let drained = tokio::time::timeout_at(deadline, async move {
            while hub.stats().live_sessions > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.hub.stats().live_sessions,
                "shutdown timeout reached with clients still connected"
            );
        }
        let _ = tokio::time::timeout_at(deadline, self.hub.stopped()).await;
        for t in &self.accept_tasks {
            t.abort();
        }
        let _ = self.phase.send(Phase::Stopped);
    }
}
