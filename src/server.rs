//! The daemon: an HTTP server routing to the library's endpoints, and its
//! lifecycle. It is built only from the crate's public API (the `use`
//! lines below name nothing else), which is what an embedder has too.
//!
//! [`start`] binds, starts the hub and serves until [`ServerHandle::shutdown`],
//! which drains: `/healthz` turns 503, new webhooks and upgrades get 503,
//! every client gets its queued frames and a close frame 1001, and the
//! server is gone within `server.shutdown_timeout_s`.
//!
//! With `[server.tls]` the listener speaks TLS (certificate from files or
//! from ACME) and an optional plain listener redirects to it.
//! [`ServerHandle::reload`] (SIGHUP in the daemon) swaps the certificate,
//! the tokens and the tier lists without touching a connection.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::cluster::{Cluster, Learners};
use crate::config::{Config, ConfigError, TlsConfig, WebhookSecret};
use crate::tls::acme::Acme;
use crate::tls::metrics::TlsFigures;
use crate::tls::server::{ACME_TLS_ALPN, CertFile, CertStore, Certificate};
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
    redirect_addr: Option<SocketAddr>,
    shutdown_timeout: Duration,
    auth: Arc<dyn AuthProvider>,
    metrics: Arc<Metrics>,
    tls: Option<Arc<CertStore>>,
    /// The configuration as last (re)loaded.
    config: Mutex<Config>,
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
    // Certificates first: a bad one is refused before anything listens.
    let tls = match &config.server.tls {
        Some(t) => Some(prepare_tls(t)?),
        None => None,
    };
    let listener = listen(config.server.listen)?;
    let local_addr = listener.local_addr()?;
    let metrics_listener = match config.server.metrics_listen {
        Some(addr) => Some(listen(addr)?),
        None => None,
    };
    let redirect_listener = match config.server.tls.as_ref().and_then(|t| t.redirect_listen) {
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
    if let Some(t) = &tls {
        metrics.register(Arc::new(TlsFigures {
            store: t.store.clone(),
            acme: t.acme.as_ref().map(Acme::stats),
        }));
    }
    if let Some(c) = &cluster {
        metrics.register(c.stats());
    }
    let allowed = config.webhook.allowed_list();
    let s = &config.server;
    let ws = WsEndpoint::new(
        hub.clone(),
        auth.clone(),
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
            recheck_interval: Duration::from_secs(config.auth.recheck_interval_s),
            // Half the API requests at most, the rest for handshakes.
            recheck_concurrency: (config.auth.max_concurrent_api_requests / 2).max(1),
            max_failed_checks_per_ip: config.auth.max_failed_checks_per_ip,
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
            body_timeout: Duration::from_secs(config.webhook.body_timeout_s),
            max_concurrent_requests: config.webhook.max_concurrent_requests,
            max_inflight_bytes: config.webhook.max_inflight_bytes,
            dedup_entries: config.webhook.dedup_entries,
            dedup_window: Duration::from_secs(config.webhook.dedup_window_s),
        },
        metrics.clone(),
    );
    let commit_cache = webhook.commit_cache().clone();
    if let Some(c) = &cluster {
        c.start(
            hub.clone(),
            Learners {
                commits: commit_cache.clone(),
                deliveries: webhook.delivery_ids().clone(),
            },
        );
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
    let acceptor = (tls.as_ref()).map(|t| TlsAcceptor::from(t.config.clone()));
    let mut accept_tasks = vec![tokio::spawn(accept_loop(
        listener,
        app,
        header_timeout,
        acceptor,
    ))];
    if let Some(l) = metrics_listener {
        accept_tasks.push(tokio::spawn(metrics_loop(
            l,
            metrics.clone(),
            phase_rx.clone(),
        )));
    }
    let redirect_addr = match redirect_listener {
        Some(l) => {
            let addr = l.local_addr()?;
            accept_tasks.push(tokio::spawn(redirect_loop(l, local_addr.port(), phase_rx)));
            Some(addr)
        }
        None => None,
    };
    let store = tls.as_ref().map(|t| t.store.clone());
    // ACME orders once the listener answers its tls-alpn-01 challenges.
    if let Some(PreparedTls {
        acme: Some(acme),
        cached,
        ..
    }) = tls
    {
        accept_tasks.push(tokio::spawn(acme.run(cached)));
    }
    Ok(ServerHandle {
        local_addr,
        hub,
        ws,
        commit_cache,
        phase,
        accept_tasks,
        metrics_addr,
        redirect_addr,
        shutdown_timeout: Duration::from_secs(s.shutdown_timeout_s),
        auth,
        metrics,
        tls: store,
        config: Mutex::new(config.clone()),
    })
}

/// The listener's TLS, ready before it listens.
struct PreparedTls {
    store: Arc<CertStore>,
    config: Arc<rustls::ServerConfig>,
    acme: Option<Acme>,
    /// ACME: the certificate found in the cache.
    cached: Option<Certificate>,
}

fn prepare_tls(t: &TlsConfig) -> io::Result<PreparedTls> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    match (&t.acme, &t.cert_file, &t.key_file) {
        (Some(a), _, _) => {
            let store = CertStore::new(None);
            let acme = Acme::new(a.clone(), store.clone());
            let cached = acme.prepare().map_err(invalid)?;
            if let Some(c) = &cached {
                store.set(c);
            }
            Ok(PreparedTls {
                config: crate::tls::server::server_config(store.clone(), true),
                store,
                acme: Some(acme),
                cached,
            })
        }
        (None, Some(cert), Some(key)) => {
            let c =
                Certificate::load(cert, key).map_err(|e| invalid(cert_problem(&e).to_string()))?;
            let store = CertStore::new(Some(&c));
            Ok(PreparedTls {
                config: crate::tls::server::server_config(store.clone(), false),
                store,
                acme: None,
                cached: None,
            })
        }
        _ => Err(invalid(
            "server.tls: needs cert_file and key_file, or [server.tls.acme]".into(),
        )),
    }
}

/// A certificate problem, under the key of the file it is about.
fn cert_problem(e: &crate::tls::server::CertError) -> ConfigError {
    let key = match e.file {
        CertFile::Cert => "server.tls.cert_file",
        CertFile::Key => "server.tls.key_file",
    };
    ConfigError::new(key, e.message.clone())
}

/// Checks the certificate and key files of `[server.tls]`: readable, PEM,
/// the key matching the certificate, the certificate valid now. `Ok` when
/// there are none (no TLS, or ACME).
pub fn check_tls_files(config: &Config) -> Result<(), ConfigError> {
    match config.server.tls.as_ref() {
        Some(TlsConfig {
            cert_file: Some(cert),
            key_file: Some(key),
            acme: None,
            ..
        }) => Certificate::load(cert, key)
            .map(|_| ())
            .map_err(|e| cert_problem(&e)),
        _ => Ok(()),
    }
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

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    header_timeout: Duration,
    tls: Option<TlsAcceptor>,
) {
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
        match &tls {
            None => tokio::spawn(serve_connection(stream, peer, app.clone(), header_timeout)),
            Some(tls) => tokio::spawn(serve_tls_connection(
                stream,
                peer,
                app.clone(),
                header_timeout,
                tls.clone(),
            )),
        };
    }
}

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A TLS connection: the handshake (bounded by the header timeout), then
/// HTTP over it. A client speaking plain HTTP to the TLS port gets a plain
/// 400 saying so, rather than a reset it cannot explain.
async fn serve_tls_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    header_timeout: Duration,
    tls: TlsAcceptor,
) {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            let mut stream = stream;
            stream.write_all(PLAIN_TO_TLS_PORT).await?;
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        tls.accept(stream).await.map(Some)
    };
    let stream = match tokio::time::timeout(header_timeout, handshake).await {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    // An ACME CA validating tls-alpn-01 only needed the handshake.
    if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
        return;
    }
    let phase = app.phase.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(route(req, peer, &app).await) }
    });
    serve_http(stream, service, header_timeout, phase).await;
}

/// The answer to plain HTTP on the TLS port.
const PLAIN_TO_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\
Content-Length: 62\r\n\
\r\n\
400 Bad Request: this port speaks TLS; use https:// or wss://\n";

/// Serves one HTTP connection until it ends, or until the server has
/// stopped (then it is closed once its request in flight is answered).
/// While draining, connections stay open so that every request, on a
/// connection old or new, gets its 503 rather than a reset.
async fn serve_http<I, S>(
    stream: I,
    service: S,
    header_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = Full<Bytes>> + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
    let _ = stream.set_nodelay(true);
    let phase = app.phase.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(route(req, peer, &app).await) }
    });
    serve_http(stream, service, header_timeout, phase).await;
}

/// `server.tls.redirect_listen`: every request is sent to the same host and
/// path over https (308, so that a POST stays a POST).
async fn redirect_loop(listener: TcpListener, tls_port: u16, phase: watch::Receiver<Phase>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let service = service_fn(move |req: Request<Incoming>| {
            let response = redirect(&req, tls_port);
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

fn redirect<B>(req: &Request<B>, tls_port: u16) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<hyper::http::uri::Authority>().ok());
    let Some(host) = host else {
        return text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: no Host header to redirect to; use https://\n",
        );
    };
    let target = match tls_port {
        443 => format!("https://{}", host.host()),
        p => format!("https://{}:{p}", host.host()),
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{target}{path}");
    match header::HeaderValue::from_str(&location) {
        Ok(v) => {
            let mut r = text(
                StatusCode::PERMANENT_REDIRECT,
                "308 Permanent Redirect: this server is served over https\n",
            );
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
    }
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

    /// The address of the plain-HTTP redirect listener, when
    /// `server.tls.redirect_listen` is set.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_addr
    }

    /// Reloads the configuration file at `path` without dropping a
    /// connection: the TLS certificate and key, the static tokens file and
    /// the tier lists (the caller applies `log.level` from the returned
    /// config). Each part that fails keeps its old value; every failure is
    /// logged with the file and the problem and counted in
    /// `hookfan_config_reloads_total{result="failed"}`. Changes to other
    /// keys are reported as needing a restart. `Err` when the file itself is
    /// invalid (nothing is applied then). `adjust` applies what the command
    /// line overrode at start (`--listen`), so that it is not taken for a
    /// change.
    pub fn reload(&self, path: &Path, adjust: impl FnOnce(&mut Config)) -> Result<Config, String> {
        let new = match Config::load(path) {
            Ok(mut c) => {
                adjust(&mut c);
                c
            }
            Err(errors) => {
                let problem = errors.to_string();
                tracing::error!(file = %path.display(), problem = %problem.trim_end(), "reload refused: the configuration is invalid; keeping the running one");
                self.metrics.reload("failed");
                return Err(problem);
            }
        };
        let mut failures = Vec::new();
        let mut running = self.config.lock().expect("config lock");
        if let (
            Some(store),
            Some(TlsConfig {
                cert_file: Some(cert),
                key_file: Some(key),
                acme: None,
                ..
            }),
        ) = (&self.tls, &new.server.tls)
        {
            match Certificate::load(cert, key) {
                Ok(c) => {
                    store.set(&c);
                    tracing::info!(cert = %cert.display(), not_after = %crate::tls::server::rfc3339(c.not_after), "TLS certificate reloaded");
                }
                Err(e) => failures.push(cert_problem(&e).to_string()),
            }
        }
        if let Err(e) = self.auth.reload(&new.auth, &new.tiers) {
            failures.push(e);
        }
        // Connected clients are held to the tokens and tiers of now.
        self.ws.recheck_access();
        let restart = needs_restart(&running, &new);
        if !restart.is_empty() {
            tracing::warn!(sections = ?restart, "these changes take effect only at the next restart");
        }
        for f in &failures {
            tracing::error!(file = %path.display(), problem = %f, "reload: keeping the previous value");
        }
        self.metrics
            .reload(if failures.is_empty() { "ok" } else { "failed" });
        tracing::info!(file = %path.display(), failures = failures.len(), "configuration reloaded");
        *running = new.clone();
        Ok(new)
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

/// The sections of `new` that differ from `old` in what a reload does not
/// apply.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    // Copy what a reload applies, then compare the rest section by section.
    let mut new = new.clone();
    if let (Some(o), Some(n)) = (&old.server.tls, &mut new.server.tls)
        && o.acme.is_none()
        && n.acme.is_none()
    {
        n.cert_file.clone_from(&o.cert_file);
        n.key_file.clone_from(&o.key_file);
    }
    new.auth.tokens_file.clone_from(&old.auth.tokens_file);
    new.tiers.pro.clone_from(&old.tiers.pro);
    new.tiers.flock.clone_from(&old.tiers.flock);
    new.log.level.clone_from(&old.log.level);
    fn differ<T: serde::Serialize>(a: &T, b: &T) -> bool {
        toml::to_string(a).ok() != toml::to_string(b).ok()
    }
    [
        ("server", differ(&old.server, &new.server)),
        ("webhook", differ(&old.webhook, &new.webhook)),
        ("broker", differ(&old.broker, &new.broker)),
        ("auth", differ(&old.auth, &new.auth)),
        ("limits", differ(&old.limits, &new.limits)),
        ("tiers", differ(&old.tiers, &new.tiers)),
        ("log", differ(&old.log, &new.log)),
        ("replay", differ(&old.replay, &new.replay)),
        ("cluster", differ(&old.cluster, &new.cluster)),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}
