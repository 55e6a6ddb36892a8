//! One connection: the WebSocket upgrade with the token, the subscription
//! sent (with the position to resume from), and the server's confirmation
//! awaited.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::error::Failure;
use super::{ClientConfig, ClientError, FATAL_ERRORS, Position};

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The largest message (and frame) taken when payloads are asked for: a
/// payload may be 25 MiB (the server's `webhook.max_payload_bytes` at
/// most), and tungstenite's default frame limit is 16 MiB.
pub const MAX_PAYLOAD_MESSAGE: usize = 64 << 20;
const _: () = assert!(MAX_PAYLOAD_MESSAGE > 25 << 20, "room for a 25 MiB payload");

/// The WebSocket limits for `config`: tungstenite's defaults, raised to
/// [`MAX_PAYLOAD_MESSAGE`] when payloads are asked for.
fn ws_config(config: &ClientConfig) -> Option<WebSocketConfig> {
    config.subscription.include_payload.then(|| {
        WebSocketConfig::default()
            .max_message_size(Some(MAX_PAYLOAD_MESSAGE))
            .max_frame_size(Some(MAX_PAYLOAD_MESSAGE))
    })
}

/// Connects to `url` and subscribes as `config` says, resuming after
/// `position` when there is one; the connection and the server's
/// `subscription_confirmed` message.
pub(super) async fn handshake(
    url: &str,
    config: &ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    position: Option<&Position>,
) -> Result<(Ws, Value), Failure> {
    let mut ws = connect(url, config, tls).await?;
    let mut sub = serde_json::to_value(&config.subscription).expect("serializable");
    if let Some(p) = position {
        sub["resume"] = serde_json::json!({"epoch": p.epoch, "after": p.seq});
    }
    ws.send(Message::text(sub.to_string()))
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let confirmation = confirmation(&mut ws).await?;
    Ok((ws, confirmation))
}

/// The WebSocket upgrade, with the bearer token.
async fn connect(
    url: &str,
    config: &ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Ws, Failure> {
    let mut req = url
        .into_client_request()
        .map_err(|e| Failure::Fatal(ClientError::Config(format!("{url}: {e}"))))?;
    let bearer = format!("Bearer {}", config.token.expose());
    req.headers_mut().insert(
        "authorization",
        bearer.parse().map_err(|_| {
            Failure::Fatal(ClientError::Config(
                "the token is not a valid header value".into(),
            ))
        })?,
    );
    let connector = tls.map(Connector::Rustls);
    let limits = ws_config(config);
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, limits, true, connector)
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(r) if matches!(r.status().as_u16(), 400 | 401 | 403 | 404) => {
                Failure::Fatal(http_refusal(&r))
            }
            other => Failure::Retry(other.to_string()),
        })?;
    Ok(ws)
}

/// A 400 / 401 / 403 / 404 answer to the upgrade: its body, or its status
/// when the body is empty.
fn http_refusal(r: &tungstenite::http::Response<Option<Vec<u8>>>) -> ClientError {
    let body = r
        .body()
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .unwrap_or_default();
    ClientError::Refused {
        code: format!("http_{}", r.status().as_u16()),
        message: if body.is_empty() {
            format!("the server answered {}", r.status())
        } else {
            body
        },
    }
}

/// Reads until the server confirms the subscription or refuses it.
async fn confirmation(ws: &mut Ws) -> Result<Value, Failure> {
    loop {
        let text = match ws.next().await {
            None => return Err(Failure::Retry("closed before confirming".into())),
            Some(Err(e)) => return Err(Failure::Retry(e.to_string())),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                let why = f.map_or(String::new(), |f| f.reason.to_string());
                return Err(Failure::Retry(format!("closed before confirming: {why}")));
            }
            Some(Ok(_)) => continue,
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|_| Failure::Retry(format!("unexpected answer: {text}")))?;
        match v["type"].as_str() {
            Some("subscription_confirmed") => return Ok(v),
            Some("error") => {
                let code = v["error"].as_str().unwrap_or("error").to_owned();
                let message = v["message"].as_str().unwrap_or_default().to_owned();
                return Err(if FATAL_ERRORS.contains(&code.as_str()) {
                    Failure::Fatal(ClientError::Refused { code, message })
                } else {
                    Failure::Retry(format!("{message} ({code})"))
                });
            }
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Token;
    use crate::client::SubscriptionRequest;

    #[test]
    fn payload_subscriptions_take_messages_of_64_mib() {
        let mut config = ClientConfig::new(
            vec!["ws://127.0.0.1:1".into()],
            Token::new("t"),
            SubscriptionRequest::default(),
        );
        assert!(ws_config(&config).is_none(), "tungstenite's defaults");
        config.subscription.include_payload = true;
        let c = ws_config(&config).unwrap();
        assert_eq!(c.max_message_size, Some(64 << 20));
        assert_eq!(c.max_frame_size, Some(64 << 20));
    }
}
