//! `GET /events`: the WebSocket subscription as Server-Sent Events, for
//! clients without WebSocket (scripts, `curl -N`, proxies that do not pass
//! upgrades). The token comes in the `Authorization` header, the
//! subscription in the query, a resume in `Last-Event-ID`; the same limits,
//! checks, recheck and answers as `/ws` apply, errors coming as an `error`
//! event that ends the stream. A page of a listed origin
//! (`server.allowed_origins`) may read it from a script: every answer to
//! it carries CORS headers, and its preflight is answered.

mod query;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::messages::{self, HandshakeError};
use super::origin::Verdict;
use super::session::{self, Answer};
use super::{Admission, WsEndpoint, get_only};
use crate::auth::Token;
pub(crate) use stream::EventStream;
use stream::Subscribed;

/// What the main listener answers with: a whole body, or an event stream.
pub(crate) type Body = Either<Full<Bytes>, EventStream>;

/// How long a browser may keep a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_S: &str = "600";

impl WsEndpoint {
    /// Answers `/events`: the checks made before a WebSocket upgrade (403,
    /// 429), then, with status 200, the confirmation and the events (or one
    /// `error` event); 405 for a method other than GET, but a listed
    /// origin's preflight (`OPTIONS`, 204). Every answer to a listed origin
    /// carries its CORS headers, so that its script can read even a
    /// refusal.
    pub(crate) async fn handle_events<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let verdict = self.ctx.origins.judge(req.headers());
        let mut response = self.answer_events(req, peer, &verdict).await;
        self.cors(response.headers_mut(), &verdict);
        response
    }

    /// Adds the CORS headers of an `/events` answer given by someone else
    /// (the server's 503 while it shuts down) to a request with `request`
    /// headers.
    pub(crate) fn events_cors(&self, request: &header::HeaderMap, answer: &mut header::HeaderMap) {
        self.cors(answer, &self.ctx.origins.judge(request));
    }

    /// The CORS headers of an answer when origins are listed: the answer
    /// depends on `Origin`, and a listed one may read it.
    fn cors(&self, headers: &mut header::HeaderMap, verdict: &Verdict) {
        if !self.ctx.origins.judging() {
            return;
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Verdict::Listed(origin) = verdict {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
    }

    async fn answer_events<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        verdict: &Verdict,
    ) -> Response<Body> {
        if req.method() == Method::OPTIONS && matches!(verdict, Verdict::Listed(_)) {
            return preflight();
        }
        if req.method() != Method::GET {
            return match self.check_origin(req.headers(), peer) {
                Ok(()) => get_only().map(Either::Left),
                Err(refusal) => refusal.response().map(Either::Left),
            };
        }
        let admission = match self.check_events(&req, peer) {
            Ok(a) => a,
            Err(refusal) => return refusal.response().map(Either::Left),
        };
        let last_event_id = req.headers().get("last-event-id").map(|v| v.as_bytes());
        let first = query::subscription_json(req.uri().query(), last_event_id);
        event_stream(self.subscribe_events(first, admission).await)
    }

    /// [`WsEndpoint::check`] with the token of the `Authorization` header
    /// only (no subprotocol: this is no WebSocket).
    fn check_events<B>(
        &self,
        req: &Request<B>,
        peer: SocketAddr,
    ) -> Result<Admission, super::Refusal> {
        let auth = req.headers().get(header::AUTHORIZATION);
        let token = Token::from_authorization(auth.map(|v| v.as_bytes()));
        self.admit_request(token, req.headers(), peer, false)
    }

    /// The handshake's checks and the join, as on `/ws`: the stream to send.
    async fn subscribe_events(
        &self,
        first: Result<String, String>,
        admission: Admission,
    ) -> EventStream {
        let ctx = &self.ctx;
        let Admission {
            token, ip, slot, ..
        } = admission;
        let checked = match first {
            Ok(first) => session::check(&first, &token, ctx).await,
            Err(why) => Err(HandshakeError::InvalidQuery(why)),
        };
        let accepted = match checked {
            Ok(a) => a,
            Err(e) => return refused(ctx, session::refused_check(ctx, &token, ip, e)),
        };
        let (live, said) = match session::join_hub(accepted, ip, ctx).await {
            Ok(joined) => joined,
            Err(answer) => return refused(ctx, answer),
        };
        let first = said.message(&live);
        let access = session::subscribed(ctx, token, ip, &live, &said);
        let (login, org) = said.names();
        let held = Box::new((ctx.hub.track_session(), slot));
        let sub = Subscribed {
            live,
            access,
            login: login.into(),
            org: org.into(),
            peer: ip,
        };
        EventStream::new(ctx.clone(), first, sub, held)
    }
}

/// A listed origin's preflight: its script may send GET with a token and
/// a resume point (CORS allows no `Authorization` without asking).
fn preflight() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET")
        .header(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Last-Event-ID",
        )
        .header(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_S)
        .body(Either::Left(Full::new(Bytes::new())))
        .expect("valid response")
}

fn refused(ctx: &Arc<super::WsContext>, answer: Answer) -> EventStream {
    EventStream::refused(
        ctx.clone(),
        &messages::error_json(answer.code, &answer.message),
    )
}

/// The 200 response carrying `stream`.
fn event_stream(stream: EventStream) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        // Proxies that buffer responses (nginx) pass this one through.
        .header("x-accel-buffering", "no")
        .body(Either::Right(stream))
        .expect("valid response")
}
