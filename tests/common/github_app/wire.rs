//! What goes over the wire: GitHub's answers (JSON, headers), the shape of
//! a delivery in the list, and the webhook POST of a redelivery.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use serde_json::{Value, json};

use super::super::http1;

pub const DOCS: &str = "https://docs.github.com/rest";
/// How long GitHub waits for the webhook receiver.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

pub type Answer = Response<Full<Bytes>>;

/// An answer with GitHub's JSON content type and `headers`.
pub fn reply(status: u16, headers: &[(String, String)], body: &Value) -> Answer {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-github-media-type", "github.v3; format=json")
        .header("x-github-request-id", "0000:0000:0000000:0000000:00000000");
    for (k, v) in headers {
        r = r.header(k.as_str(), v.as_str());
    }
    r.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// GitHub's error shape: `{"message", "documentation_url"}`.
pub fn error(status: u16, headers: &[(String, String)], message: &str) -> Answer {
    reply(
        status,
        headers,
        &json!({"message": message, "documentation_url": DOCS}),
    )
}

/// The message GitHub sends with `status` when the test chose the status.
pub fn message_for(status: u16) -> &'static str {
    match status {
        401 => "Bad credentials",
        403 | 429 => {
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        }
        404 => "Not Found",
        422 => "Validation Failed",
        500..=599 => "Server Error",
        _ => "Error",
    }
}

/// The rate-limit headers of an answer that did not hit a limit.
pub fn rate_headers(now: u64) -> Vec<(String, String)> {
    [
        ("x-ratelimit-limit", "5000".to_owned()),
        ("x-ratelimit-remaining", "4999".to_owned()),
        ("x-ratelimit-used", "1".to_owned()),
        ("x-ratelimit-reset", (now + 3600).to_string()),
        ("x-ratelimit-resource", "core".to_owned()),
        ("x-github-api-version-selected", "2022-11-28".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// ISO 8601 in UTC to the second, as GitHub writes `delivered_at`.
pub fn iso8601(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// GitHub's `status` text for a receiver's answer (0: none).
pub fn status_text(code: u16) -> String {
    match code {
        0 => "failed to connect to host".to_owned(),
        200..=299 => "OK".to_owned(),
        _ => format!("Invalid HTTP Response: {code}"),
    }
}

/// A delivery as the list shows it; `action`, `installation_id` and
/// `repository_id` are read from the body, null when it has none.
pub fn delivery_json(
    id: u64,
    guid: &str,
    event: &str,
    body: &[u8],
    status_code: u16,
    delivered_at: SystemTime,
    redelivery: bool,
) -> Value {
    let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    json!({
        "id": id,
        "guid": guid,
        "delivered_at": iso8601(delivered_at),
        "redelivery": redelivery,
        "duration": if status_code == 0 { 0.0 } else { 0.05 },
        "status": status_text(status_code),
        "status_code": status_code,
        "event": event,
        "action": payload["action"],
        "installation_id": payload["installation"]["id"],
        "repository_id": payload["repository"]["id"],
        "throttled_at": null,
    })
}

/// A webhook as GitHub's redelivery posts it.
pub struct Hook<'a> {
    pub app_id: u64,
    pub guid: &'a str,
    pub event: &'a str,
    pub body: &'a [u8],
    pub secret: &'a [u8],
}

/// Posts `hook` to `http://addr/webhook`; the receiver's status, 0 when
/// there is no receiver, no answer or none in time.
pub async fn post_hook(addr: Option<SocketAddr>, hook: Hook<'_>) -> u16 {
    let Some(addr) = addr else { return 0 };
    let app_id = hook.app_id.to_string();
    let req = hyper::Request::post("/webhook")
        .header("host", addr.to_string())
        .header("user-agent", "GitHub-Hookshot/mock")
        .header("content-type", "application/json")
        .header("x-github-event", hook.event)
        .header("x-github-delivery", hook.guid)
        .header("x-github-hook-id", "1")
        .header("x-github-hook-installation-target-type", "integration")
        .header("x-github-hook-installation-target-id", app_id)
        .header("x-hub-signature-256", hookfan::sign(hook.secret, hook.body))
        .body(Full::new(Bytes::copy_from_slice(hook.body)))
        .unwrap();
    let send = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let resp = http1(stream).await.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    };
    tokio::time::timeout(HOOK_TIMEOUT, send)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}
