//! What each listener answers: the main one routes to the endpoints, the
//! metrics one serves `/metrics` alone, the redirect one sends every
//! request to https. Every answer of each gets the headers browsers rely
//! on ([`protect`]) on its way out.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Phase;
use super::headers::{Answer, protect};
use super::listen::serve_http;
use crate::http_text::{PROMETHEUS_TEXT, closing, text, typed};
use crate::write_deadline::WriteDeadline;
use crate::ws::Body;
use crate::{Metrics, WebhookEndpoint, WsEndpoint};

/// The header read timeout of the metrics and redirect listeners.
const SIDE_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler needs.
pub(super) struct App {
    pub(super) webhook: WebhookEndpoint,
    pub(super) ws: WsEndpoint,
    pub(super) metrics: Arc<Metrics>,
    /// `/metrics` is served here (else on a listener of its own).
    pub(super) public_metrics: bool,
    /// The live events page is served at `/ui/`.
    pub(super) ui: bool,
    pub(super) phase: watch::Receiver<Phase>,
    pub(super) header_timeout: Duration,
    /// How long a response's write may stall (`server.write_timeout_s`).
    pub(super) write_timeout: Duration,
    /// `Some` when the listener speaks TLS.
    pub(super) tls: Option<TlsAcceptor>,
}

/// One connection to the main listener: the TLS handshake when it speaks
/// TLS, then HTTP routed to the endpoints.
pub(super) async fn serve_app(stream: TcpStream, peer: SocketAddr, app: Arc<App>) {
    let (phase, header_timeout, tls) = (app.phase.clone(), app.header_timeout, app.tls.clone());
    let write_timeout = app.write_timeout;
    let service = service_fn(move |req| {
        let app = app.clone();
        async move {
            let mut response = route(req, peer, &app).await;
            let answer = Answer {
                streamed: matches!(response.body(), Either::Right(_)),
                tls: app.tls.is_some(),
            };
            protect(&mut response, answer);
            Ok::<_, Infallible>(response)
        }
    });
    match tls {
        None => {
            let _ = stream.set_nodelay(true);
            let stream = WriteDeadline::new(stream, write_timeout);
            serve_http(stream, service, header_timeout, phase).await;
        }
        Some(tls) => {
            if let Some(stream) = super::tls::handshake(stream, peer, &tls, header_timeout).await {
                let stream = WriteDeadline::new(stream, write_timeout);
                serve_http(stream, service, header_timeout, phase).await;
            }
        }
    }
}

async fn route(req: Request<Incoming>, peer: SocketAddr, app: &App) -> Response<Body> {
    if req.uri().path() == "/events" {
        if *app.phase.borrow() == Phase::Serving {
            return app.ws.handle_events(req, peer).await;
        }
        // A listed page may read that the server is going away.
        let mut r = draining("503 Service Unavailable: shutting down\n");
        app.ws.events_cors(req.headers(), r.headers_mut());
        return r.map(Either::Left);
    }
    route_whole(req, peer, app).await.map(Either::Left)
}

/// Every answer but an event stream.
async fn route_whole(req: Request<Incoming>, peer: SocketAddr, app: &App) -> Response<Full<Bytes>> {
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
        "/webhook" => app.webhook.handle(req, peer).await,
        "/ws" if !serving => draining("503 Service Unavailable: shutting down\n"),
        "/ws" => app.ws.handle(req, peer),
        p if app.ui && crate::ui::serves(p) => match serving {
            true => crate::ui::handle(&req),
            false => draining("503 Service Unavailable: shutting down\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// The answer to every request but `/metrics` while draining: 503, and the
/// connection is closed after it.
fn draining(body: &'static str) -> Response<Full<Bytes>> {
    closing(StatusCode::SERVICE_UNAVAILABLE, body)
}

fn metrics_response<B>(req: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    match *req.method() {
        Method::GET | Method::HEAD => typed(StatusCode::OK, PROMETHEUS_TEXT, metrics.encode()),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    }
}

/// One connection to the metrics listener (`server.metrics_listen`):
/// `/metrics` and nothing else.
pub(super) async fn serve_metrics(
    stream: TcpStream,
    metrics: Arc<Metrics>,
    phase: watch::Receiver<Phase>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = match req.uri().path() {
            "/metrics" => metrics_response(&req, &metrics),
            _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        };
        async move { Ok::<_, Infallible>(side(response)) }
    });
    serve_http(stream, service, SIDE_HEADER_TIMEOUT, phase).await;
}

/// One connection to `server.tls.redirect_listen`: every request is sent
/// to the same host and path over https (308, so that a POST stays a POST).
pub(super) async fn serve_redirect(
    stream: TcpStream,
    tls_port: u16,
    phase: watch::Receiver<Phase>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let response = side(redirect(&req, tls_port));
        async move { Ok::<_, Infallible>(response) }
    });
    serve_http(stream, service, SIDE_HEADER_TIMEOUT, phase).await;
}

/// An answer of a side listener (metrics, redirect), which speaks plain
/// HTTP.
fn side(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let answer = Answer {
        streamed: false,
        tls: false,
    };
    protect(&mut response, answer);
    response
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
