//! The WebSocket endpoint: checks before the upgrade (the page's origin,
//! token shape, failed token checks, connection limits), the upgrade itself (fastwebsockets over
//! hyper), then one session task per connection.

mod access;
pub(crate) use crate::codec;
mod messages;
mod origin;
mod session;
mod sse;
mod subprotocol;
mod wire;

pub use origin::{Origin, OriginError};
pub(crate) use sse::Body;
pub use subprotocol::SUBPROTOCOL;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpStream;

use crate::auth::{AuthProvider, Token, TokenRejection};
use crate::broker::{Backfill, Hub};
use crate::http_text;
use crate::limits::{
    ClientTables, ConnCounts, ConnLimiter, FailedChecks, LimitExceeded, RateLimited, RequestRate,
    Slot, TooManyFailures, client_ip, client_key,
};
use crate::metrics::Metrics;
use crate::write_deadline::WriteDeadline;
use access::AccessWatch;
use origin::{AllowedOrigins, Verdict};
use subprotocol::Offered;

/// Settings of a [`WsEndpoint`]; the defaults are PROTOCOL.md's.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Time a client has to send its subscription (5 s).
    pub handshake_timeout: Duration,
    /// Interval of the server's `{"type":"ping"}` messages (54 s).
    pub ping_interval: Duration,
    /// Client silence after which the connection is closed (90 s).
    pub read_timeout: Duration,
    /// Time a write may stall before the client is dropped (10 s).
    pub write_timeout: Duration,
    /// Bound on a whole token check (30 s).
    pub auth_timeout: Duration,
    /// Event types clients may subscribe to; `None` allows every type.
    pub allowed_events: Option<Vec<String>>,
    /// Connections allowed per client IP (10): per IPv4 address, per IPv6
    /// /64 (an IPv4-mapped IPv6 address counts as the IPv4 address).
    pub max_conns_per_ip: usize,
    /// Connections allowed in total (100,000).
    pub max_conns_total: usize,
    /// Proxies whose `X-Forwarded-For` gives the client IP (none).
    pub trusted_proxies: Vec<IpNet>,
    /// How often a connected client's token is checked again (300 s, the
    /// token cache's lifetime).
    pub recheck_interval: Duration,
    /// Most rechecks running at once (16: half the GitHub provider's
    /// default cap on API requests, leaving the rest to handshakes).
    pub recheck_concurrency: usize,
    /// Rejected tokens allowed per client IP (counted like
    /// `max_conns_per_ip`) and minute before its upgrades are answered 429
    /// without a check (30); 0: no limit.
    pub max_failed_checks_per_ip: u32,
    /// Upgrades and `/events` requests allowed per client IP and minute,
    /// counted before any token check (60: six times `max_conns_per_ip`);
    /// 0: no limit.
    pub upgrades_per_ip_per_minute: u32,
    /// Most clients the per-client tables (upgrade rates, failed token
    /// checks) remember (100,000).
    pub rate_table_entries: usize,
    /// Pages (origins) other than the server's own host allowed to open
    /// `/ws` and `/events` (none). When some are listed, a request whose
    /// `Origin` is neither listed nor the request's `Host` is refused
    /// (403) before its token is looked at; when none are, `Origin` is not
    /// judged (the token is the credential).
    pub allowed_origins: Vec<Origin>,
    /// Whether, and to which tiers, full webhook payloads are given
    /// (`"include_payload": true`; else `payload_not_allowed`).
    pub payloads: crate::payloads::PayloadsConfig,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(54),
            read_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(crate::auth::config::DEFAULT_CHECK_TIMEOUT_S),
            allowed_events: None,
            max_conns_per_ip: crate::limits::config::DEFAULT_MAX_CONNS_PER_IP,
            max_conns_total: crate::limits::config::DEFAULT_MAX_CONNS_TOTAL,
            trusted_proxies: Vec::new(),
            recheck_interval: Duration::from_secs(crate::auth::config::DEFAULT_RECHECK_INTERVAL_S),
            // Half the API requests at most, the rest for handshakes.
            recheck_concurrency: (crate::auth::config::DEFAULT_MAX_CONCURRENT_API_REQUESTS / 2)
                .max(1),
            max_failed_checks_per_ip: crate::auth::config::DEFAULT_MAX_FAILED_CHECKS_PER_IP,
            upgrades_per_ip_per_minute: crate::limits::config::default_upgrades_per_minute(
                crate::limits::config::DEFAULT_MAX_CONNS_PER_IP,
            ),
            rate_table_entries: crate::limits::config::DEFAULT_RATE_TABLE_ENTRIES,
            allowed_origins: Vec::new(),
            payloads: crate::payloads::PayloadsConfig::default(),
        }
    }
}

/// What every session needs.
pub(crate) struct WsContext {
    pub hub: Hub,
    pub auth: Arc<dyn AuthProvider>,
    pub settings: WsOptions,
    pub limiter: Arc<ConnLimiter>,
    /// Rejected tokens per client: recorded by sessions, read before the
    /// upgrade.
    pub failed_checks: Arc<FailedChecks>,
    /// Upgrades and `/events` requests per client and minute.
    pub upgrades: Arc<RequestRate>,
    pub metrics: Arc<Metrics>,
    /// Where resumes find what the hub no longer holds (a cluster's stream).
    pub backfill: Option<Arc<dyn Backfill>>,
    /// The tokens of the connected clients, checked again as they come due.
    pub access: Arc<AccessWatch>,
    /// `settings.allowed_origins`, as requests are judged by it.
    pub origins: AllowedOrigins,
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The socket under an upgraded connection.
enum Socket {
    Tcp(TcpStream),
    /// Boxed: the TLS state is large, the upgrade task stays small.
    Tls(Box<TlsStream>),
}

/// The socket of an upgraded connection, and the bytes hyper read past the
/// request: served by the daemon (with a [`WriteDeadline`] around it) or by
/// an embedder (without).
fn unwrap_socket(upgraded: hyper::upgrade::Upgraded) -> Option<(Socket, Bytes)> {
    let upgraded = match upgraded.downcast::<TokioIo<WriteDeadline<TcpStream>>>() {
        Ok(p) => return Some((Socket::Tcp(p.io.into_inner().into_inner()), p.read_buf)),
        Err(u) => u,
    };
    let upgraded = match upgraded.downcast::<TokioIo<WriteDeadline<TlsStream>>>() {
        Ok(p) => {
            return Some((
                Socket::Tls(Box::new(p.io.into_inner().into_inner())),
                p.read_buf,
            ));
        }
        Err(u) => u,
    };
    let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => return Some((Socket::Tcp(p.io.into_inner()), p.read_buf)),
        Err(u) => u,
    };
    match upgraded.downcast::<TokioIo<TlsStream>>() {
        Ok(p) => Some((Socket::Tls(Box::new(p.io.into_inner())), p.read_buf)),
        Err(_) => None,
    }
}

/// `GET /ws`: what an embedder routes WebSocket clients to.
///
/// Cheap to clone; safe to share between connections. [`WsEndpoint::handle`]
/// (or [`WsEndpoint::upgrade`]) must be called from a tokio runtime: each
/// accepted connection runs as tasks on it. The request must come from a
/// hyper 1.x HTTP/1.1 connection served `with_upgrades()` over a
/// `TokioIo<tokio::net::TcpStream>`, or a
/// `TokioIo<tokio_rustls::server::TlsStream<TcpStream>>` (the session works
/// on the socket directly).
#[derive(Clone)]
pub struct WsEndpoint {
    ctx: Arc<WsContext>,
}

/// Why a request to `/ws` is refused before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request's `Origin` is neither listed in
    /// [`WsOptions::allowed_origins`] nor the server's own host (403).
    ForbiddenOrigin,
    /// The bearer token is missing or malformed (403).
    Forbidden(TokenRejection),
    /// A connection limit is reached (429).
    TooManyConnections,
    /// The client made more upgrades (or `/events` requests) within a
    /// minute than `limits.upgrades_per_ip_per_minute` allows (429, with
    /// `Retry-After`).
    TooManyUpgrades {
        /// Seconds until the client may try again.
        retry_after_s: u64,
    },
    /// The client had too many tokens rejected within a minute (429, with
    /// `Retry-After`).
    TooManyFailedChecks {
        /// Seconds until the client's minute has passed.
        retry_after_s: u64,
    },
}

impl Refusal {
    /// The HTTP status: 403 or 429.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::ForbiddenOrigin | Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::TooManyConnections
            | Refusal::TooManyUpgrades { .. }
            | Refusal::TooManyFailedChecks { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The answer the daemon gives: the status and a plain-text reason
    /// (and `Retry-After` when the client is limited for a while).
    pub fn response(&self) -> Response<Full<Bytes>> {
        match self {
            Refusal::ForbiddenOrigin => {
                plain(self.status(), "403 Forbidden: origin not allowed\n".into())
            }
            Refusal::Forbidden(why) => plain(self.status(), format!("403 Forbidden: {why}\n")),
            Refusal::TooManyConnections => plain(
                self.status(),
                "429 Too Many Requests: Connection limit exceeded\n".into(),
            ),
            Refusal::TooManyUpgrades { retry_after_s } => retry_later(
                "429 Too Many Requests: too many connection attempts from this address\n",
                *retry_after_s,
            ),
            Refusal::TooManyFailedChecks { retry_after_s } => retry_later(
                "429 Too Many Requests: too many failed token checks from this address\n",
                *retry_after_s,
            ),
        }
    }
}

/// A request that passed the checks made before the upgrade: a
/// well-formed token, and a connection slot, held until the connection
/// ends (or until this is dropped, if it is never upgraded).
#[derive(Debug)]
pub struct Admission {
    token: Token,
    ip: IpAddr,
    slot: Slot,
    /// The client offered [`SUBPROTOCOL`]: the upgrade answers it.
    subprotocol: bool,
}

impl Admission {
    /// The client's IP (from `X-Forwarded-For` behind a trusted proxy), an
    /// IPv4-mapped IPv6 address given as the IPv4 address.
    pub fn client_ip(&self) -> IpAddr {
        self.ip
    }
}

/// The answer to a method other than GET (on `/ws` and `/events`).
fn get_only() -> Response<Full<Bytes>> {
    let mut r = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "405 Method Not Allowed\n".into(),
    );
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
    r
}

/// A 429 saying `why`, with `Retry-After: retry_after_s`.
fn retry_later(why: &'static str, retry_after_s: u64) -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::TOO_MANY_REQUESTS, why.into());
    r.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_s),
    );
    r
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    http_text::typed(status, http_text::TEXT_PLAIN, text)
}

impl WsEndpoint {
    /// An endpoint registering its clients with `hub`, checking tokens with
    /// `auth`, counting into `metrics`.
    pub fn new(
        hub: Hub,
        auth: Arc<dyn AuthProvider>,
        options: WsOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limiter = ConnLimiter::new(options.max_conns_per_ip, options.max_conns_total);
        let access = AccessWatch::new(options.recheck_interval, options.recheck_concurrency);
        let failed_checks = Arc::new(FailedChecks::new(
            options.max_failed_checks_per_ip,
            options.rate_table_entries,
            "too many failed token checks: upgrades refused until the minute has passed",
        ));
        let upgrades = Arc::new(RequestRate::new(
            options.upgrades_per_ip_per_minute,
            options.rate_table_entries,
        ));
        metrics.register(Arc::new(ClientTables {
            limiter: limiter.clone(),
            failed_checks: failed_checks.clone(),
            upgrades: upgrades.clone(),
        }));
        let origins = AllowedOrigins::new(&options.allowed_origins);
        Self {
            ctx: Arc::new(WsContext {
                hub,
                auth,
                settings: options,
                limiter,
                failed_checks,
                upgrades,
                metrics,
                backfill: None,
                access,
                origins,
            }),
        }
    }

    /// Checks every connected client's token again now, rather than when
    /// it comes due (see [`WsOptions::recheck_interval`]): after the auth
    /// provider's data changed (the daemon calls it on SIGHUP). A token
    /// rejected now closes its clients; changed organizations or tier
    /// apply from the next event on. Returns at once; the checks run in
    /// the background.
    pub fn recheck_access(&self) {
        self.ctx.access.recheck_all();
    }

    /// Resumes reaching back past the hub's window are served from
    /// `backfill`. Call before the endpoint is cloned or used.
    pub(crate) fn with_backfill(mut self, backfill: Arc<dyn Backfill>) -> Self {
        Arc::get_mut(&mut self.ctx)
            .expect("with_backfill is called on a new endpoint")
            .backfill = Some(backfill);
        self
    }

    /// Connection slots held now (see [`WsOptions::max_conns_per_ip`]).
    pub fn connection_counts(&self) -> ConnCounts {
        self.ctx.limiter.counts()
    }

    /// The checks made before the upgrade, usable on their own: the page's
    /// `Origin` (403, when [`WsOptions::allowed_origins`] lists some), the
    /// bearer token's shape (403), the client's failed token checks and the
    /// connection limits (429); see [`Refusal::response`] for the daemon's
    /// answer. `peer` is the TCP peer's address. The token is the
    /// `Authorization` header's, else the one offered as the
    /// `hookfan.bearer.<token>` subprotocol (with [`SUBPROTOCOL`]).
    pub fn check<B>(&self, req: &Request<B>, peer: SocketAddr) -> Result<Admission, Refusal> {
        let offered = Offered::read(req.headers());
        let auth = req.headers().get(header::AUTHORIZATION);
        let token = match (auth, offered.token()) {
            (None, Some(from_subprotocol)) => from_subprotocol,
            (auth, _) => Token::from_authorization(auth.map(|v| v.as_bytes())),
        };
        self.admit_request(token, req.headers(), peer, offered.version)
    }

    /// The checks on a request's origin (403), its client's rate (429), its
    /// token (its shape: 403) and client (429), for `/ws` and `/events`
    /// alike.
    fn admit_request(
        &self,
        token: Result<Token, TokenRejection>,
        headers: &header::HeaderMap,
        peer: SocketAddr,
        subprotocol: bool,
    ) -> Result<Admission, Refusal> {
        // A page of another origin costs its visitor nothing, not even
        // rate: checked first.
        self.check_origin(headers, peer)?;
        let ip = client_ip(peer.ip(), headers, &self.ctx.settings.trusted_proxies);
        self.check_rate(ip)?;
        let token = token.map_err(|why| {
            self.ctx.metrics.handshake("forbidden");
            tracing::debug!(%peer, %why, "request refused");
            Refusal::Forbidden(why)
        })?;
        self.admit(token, ip, subprotocol)
    }

    /// Takes one request from the client's allowance a minute: every
    /// request counts, whatever its token, before any check.
    fn check_rate(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.ctx.upgrades.take(client_key(ip)).map_err(|limited| {
            let RateLimited { retry_after_s } = limited;
            self.ctx.metrics.handshake("limited_rate");
            tracing::debug!(%ip, retry_after_s, "request refused: too many upgrades a minute");
            Refusal::TooManyUpgrades { retry_after_s }
        })
    }

    /// The page's origin, first of all: a refused one is neither a failed
    /// token check nor a connection.
    fn check_origin(&self, headers: &header::HeaderMap, peer: SocketAddr) -> Result<(), Refusal> {
        if self.ctx.origins.judge(headers) != Verdict::Refused {
            return Ok(());
        }
        self.ctx.metrics.handshake("forbidden_origin");
        let origin = origin::shown(headers);
        tracing::debug!(%peer, %origin, "request refused: origin not allowed");
        Err(Refusal::ForbiddenOrigin)
    }

    /// The limits on the client at `ip`: its failed token checks, then a
    /// connection slot.
    fn admit(&self, token: Token, ip: IpAddr, subprotocol: bool) -> Result<Admission, Refusal> {
        let key = client_key(ip);
        // Before a slot is taken: a refused client holds nothing.
        if let Err(TooManyFailures { retry_after_s }) = self.ctx.failed_checks.check(key) {
            self.ctx.metrics.handshake("limited_failed_checks");
            tracing::debug!(%ip, retry_after_s, "upgrade refused: too many failed token checks");
            return Err(Refusal::TooManyFailedChecks { retry_after_s });
        }
        match self.ctx.limiter.try_acquire(key) {
            Ok(slot) => Ok(Admission {
                token,
                ip,
                slot,
                subprotocol,
            }),
            Err(limit) => {
                self.ctx.metrics.handshake(match limit {
                    LimitExceeded::PerIp => "limited_per_ip",
                    LimitExceeded::Total => "limited_total",
                });
                tracing::info!(%ip, limit = limit.as_str(), "connection limit reached");
                Err(Refusal::TooManyConnections)
            }
        }
    }

    /// Upgrades an admitted request (400 if it is not a valid WebSocket
    /// upgrade) and spawns the connection's session; returns the response
    /// to send (101 Switching Protocols).
    pub fn upgrade(
        &self,
        mut req: Request<Incoming>,
        admission: Admission,
    ) -> Response<Full<Bytes>> {
        let ctx = &self.ctx;
        if !fastwebsockets::upgrade::is_upgrade_request(&req) {
            ctx.metrics.handshake("bad_request");
            return plain(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)\n".into(),
            );
        }
        let (response, upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
            Ok(x) => x,
            Err(e) => {
                ctx.metrics.handshake("bad_request");
                return plain(StatusCode::BAD_REQUEST, format!("400 Bad Request: {e}\n"));
            }
        };
        let guard = ctx.hub.track_session();
        let ctx = ctx.clone();
        let subprotocol = admission.subprotocol;
        tokio::spawn(async move {
            let Admission {
                token, ip, slot, ..
            } = admission;
            let upgraded = match upgrade.await {
                Ok(ws) => ws.into_inner().into_inner(),
                Err(e) => {
                    ctx.metrics.handshake("upgrade_failed");
                    tracing::debug!(%ip, error = %e, "upgrade did not complete");
                    return;
                }
            };
            // The session works on the socket directly (see codec.rs for
            // why); hyper hands back any bytes it read past the request.
            let held = (guard, slot);
            match unwrap_socket(upgraded) {
                Some((Socket::Tcp(tcp), prefix)) => {
                    session::run(tcp, prefix, token, ip, ctx, held).await;
                }
                Some((Socket::Tls(tls), prefix)) => {
                    let (tcp, tls) = (*tls).into_inner();
                    let wire = wire::TlsWire::new(tcp, tls);
                    session::run(wire, prefix, token, ip, ctx, held).await;
                }
                None => {
                    tracing::error!(%ip, "upgraded connection is neither TCP nor TLS over TCP");
                }
            }
        });
        let (mut parts, _) = response.into_parts();
        if subprotocol {
            parts.headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                header::HeaderValue::from_static(SUBPROTOCOL),
            );
        }
        Response::from_parts(parts, Full::new(Bytes::new()))
    }

    /// Answers a request to `/ws`: 403 for a refused origin, 405 for
    /// another method, else [`WsEndpoint::check`] then
    /// [`WsEndpoint::upgrade`].
    pub fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return match self.check_origin(req.headers(), peer) {
                Ok(()) => get_only(),
                Err(refusal) => refusal.response(),
            };
        }
        match self.check(&req, peer) {
            Ok(admission) => self.upgrade(req, admission),
            Err(refusal) => refusal.response(),
        }
    }
}
