//! The WebSocket endpoint: checks before the upgrade (token shape), the
//! upgrade itself (fastwebsockets over hyper), then one session task per
//! connection.

pub(crate) mod codec;
mod messages;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::auth::{AuthProvider, Token};
use crate::broker::Hub;
use crate::limits::{ConnLimiter, client_ip};
use crate::metrics::Metrics;

/// Timing and policy of WebSocket sessions.
#[derive(Debug, Clone)]
pub(crate) struct WsSettings {
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Bound on a whole token check.
    pub auth_timeout: Duration,
    /// The server's allowed event types; `None` allows every type.
    pub allowed_events: Option<Vec<String>>,
}

/// What every session needs.
pub(crate) struct WsContext {
    pub hub: Hub,
    pub auth: Arc<dyn AuthProvider>,
    pub settings: WsSettings,
    pub limiter: Arc<ConnLimiter>,
    /// Proxies whose `X-Forwarded-For` gives the client IP.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub metrics: Arc<Metrics>,
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(text)))
        .expect("valid response")
}

/// Answers `GET /ws`: refuses with 403 / 429 / 400 before the upgrade, or
/// upgrades and spawns the connection's session, which holds the
/// connection's limit slot until it ends.
pub(crate) fn upgrade(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    ctx: &Arc<WsContext>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return r;
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let token = match Token::from_authorization(auth) {
        Ok(t) => t,
        Err(why) => {
            ctx.metrics.handshake("forbidden");
            tracing::debug!(%peer, %why, "upgrade refused");
            return plain(StatusCode::FORBIDDEN, format!("403 Forbidden: {why}\n"));
        }
    };
    let ip = client_ip(peer.ip(), req.headers(), &ctx.trusted_proxies);
    let slot = match ctx.limiter.try_acquire(ip) {
        Ok(slot) => slot,
        Err(limit) => {
            ctx.metrics.handshake(match limit {
                crate::limits::LimitExceeded::PerIp => "limited_per_ip",
                crate::limits::LimitExceeded::Total => "limited_total",
            });
            tracing::info!(%ip, limit = limit.as_str(), "connection limit reached");
            return plain(
                StatusCode::TOO_MANY_REQUESTS,
                "429 Too Many Requests: Connection limit exceeded\n".into(),
            );
        }
    };
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
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(ws) => ws.into_inner().into_inner(),
            Err(e) => {
                ctx.metrics.handshake("upgrade_failed");
                tracing::debug!(%ip, error = %e, "upgrade did not complete");
                return;
            }
        };
        // The session works on the TCP stream directly (see codec.rs for why);
        // hyper hands back any bytes it read past the request.
        let parts = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(p) => p,
            Err(_) => {
                tracing::error!(%ip, "upgraded connection is not a TCP stream");
                return;
            }
        };
        let held = (guard, slot);
        session::run(parts.io.into_inner(), parts.read_buf, token, ip, ctx, held).await;
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::new()))
}
