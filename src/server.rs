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

use crate::config::{Config, WebhookSecret};
use crate::{
    AuthProvider, CommitCache, ConnCounts, Hub, HubConfig, Metrics, WebhookEndpoint,
    WebhookOptions, WsEndpoint, WsOptions,
};

/// Everything a request handler needs.
struct App {
    webhook: WebhookEndpoint,
    ws: WsEndpoint,
    metrics: Arc<Metrics>,
    draining: watch::Receiver<bool>,
}

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    hub: Hub,
    ws: WsEndpoint,
    drain: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
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
    let hub = Hub::start(HubConfig {
        shards: config.broker.effective_shards(),
        client_queue: config.broker.client_queue,
        slow_client: config.broker.slow_client,
        enforce_tiers: config.tiers.enforce,
        commit_cache_entries: config.webhook.commit_cache_entries,
        commit_cache_ttl: Duration::from_secs(config.webhook.commit_cache_ttl_s),
    })?;
    let metrics = Metrics::new(&hub, auth.clone());
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
    let webhook = WebhookEndpoint::new(
        hub.clone(),
        secret.expose(),
        WebhookOptions {
            max_payload_bytes: config.webhook.max_payload_bytes,
            allowed_events: allowed,
        },
        metrics.clone(),
    );
    let (drain, draining) = watch::channel(false);
    let app = Arc::new(App {
        webhook,
        ws: ws.clone(),
        metrics,
        draining,
    });
    let header_timeout = Duration::from_secs(s.header_read_timeout_s);
    let accept_task = tokio::spawn(accept_loop(listener, app, header_timeout));
    Ok(ServerHandle {
        local_addr,
        hub,
        ws,
        drain,
        accept_task,
        shutdown_timeout: Duration::from_secs(s.shutdown_timeout_s),
    })
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
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

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    header_timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    let mut draining = app.draining.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(route(req, peer, &app).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = draining.wait_for(|d| *d) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("valid response")
}

async fn route(req: Request<Incoming>, peer: SocketAddr, app: &App) -> Response<Full<Bytes>> {
    let draining = *app.draining.borrow();
    match req.uri().path() {
        "/" => match *req.method() {
            Method::GET | Method::HEAD => text(StatusCode::OK, "hookfan is running\n"),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        },
        "/healthz" if draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/metrics" => match *req.method() {
            Method::GET | Method::HEAD => Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(Full::new(Bytes::from(app.metrics.encode())))
                .expect("valid response"),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        },
        "/webhook" if draining => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        "/webhook" => app.webhook.handle(req).await,
        "/ws" if draining => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: shutting down\n",
        ),
        "/ws" => app.ws.handle(req, peer),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The broker.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The commit cache.
    pub fn commit_cache(&self) -> &CommitCache {
        self.hub.commit_cache()
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
        let _ = self.drain.send(true);
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
        self.accept_task.abort();
        let _ = tokio::time::timeout_at(deadline, self.hub.stopped()).await;
    }
}
