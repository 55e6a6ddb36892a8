//! Entry points for the cargo-fuzz targets in `fuzz/`: thin wrappers over
//! the crate-private parsers, so that the fuzzers run the daemon's own code
//! (no logic of its own lives here). Not a stable API. The config loader
//! needs no wrapper: [`Config::parse`](crate::config::Config::parse) is
//! public.

use bytes::Bytes;

use crate::cluster::facts;
pub use crate::cluster::facts::DecodeError;
use crate::codec;
use crate::event::{Event, EventParts};
use crate::subscription::Subscription;
use crate::webhook::{CommitCache, ParseError};

/// The `X-GitHub-Delivery` header as intake keeps it (printable, bounded).
pub fn delivery_id(header: &str) -> String {
    crate::webhook::sanitize_delivery_id(header)
}

/// Intake's one parse of a verified body (in place), with its commit cache:
/// the event's parts, or `None` when the event carries no URL.
pub fn parse_webhook(
    kind: &str,
    delivery_id: &str,
    body: &mut [u8],
    cache: &CommitCache,
) -> Result<Option<EventParts>, ParseError> {
    crate::webhook::parse(kind, delivery_id, body, cache).map(|p| p.event)
}

/// The WebSocket frame the hub sends for `event` once it is given `seq`.
pub fn sequenced_frame(mut event: Event, seq: u64) -> Bytes {
    event.set_seq(seq);
    event.frame().clone()
}

/// The frames the hub sends for `event` once it is given `seq`: to every
/// client, and to the clients that receive payloads.
pub fn sequenced_frames(mut event: Event, seq: u64) -> (Bytes, Bytes) {
    event.set_seq(seq);
    (event.frame().clone(), event.full_frame().clone())
}

/// The warnings the handshake sends for a subscription's unknown fields.
pub fn subscription_warnings(unknown: &[String]) -> Vec<String> {
    crate::subscription::unknown_field_warnings(unknown)
}

/// The routing keys (`owner/repo#n`) of a subscription's pull requests.
pub fn pr_keys(subscription: &Subscription) -> Vec<Box<str>> {
    subscription.pr_keys()
}

/// A cluster stream message to the event it carries (`cluster::facts`).
pub fn decode_stream_message(message: &[u8]) -> Result<EventParts, DecodeError> {
    facts::decode(&bytes::Bytes::copy_from_slice(message))
}

/// The cluster stream message for an event (`cluster::facts`).
pub fn encode_stream_message(event: &EventParts) -> Vec<u8> {
    facts::encode(event)
}

/// A complete client message from [`WsDecoder`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text message (UTF-8 checked).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close, with its code if any.
    Close(Option<u16>),
}

/// The session's decoder of client WebSocket frames (`ws::codec::Decoder`).
#[derive(Debug)]
pub struct WsDecoder(codec::Decoder);

impl WsDecoder {
    /// A decoder refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self(codec::Decoder::new(max_message))
    }

    /// `Decoder::feed`: `on_message` returns `false` to pause. A protocol
    /// violation comes back as its close code and reason.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        mut on_message: impl FnMut(WsMessage) -> bool,
    ) -> Result<(), (u16, &'static str)> {
        self.0
            .feed(input, |m| {
                on_message(match m {
                    codec::Message::Text(t) => WsMessage::Text(t.to_owned()),
                    codec::Message::Binary(b) => WsMessage::Binary(b.to_vec()),
                    codec::Message::Ping(p) => WsMessage::Ping(p.to_vec()),
                    codec::Message::Pong => WsMessage::Pong,
                    codec::Message::Close(c) => WsMessage::Close(c),
                })
            })
            .map_err(|e| (e.close_code(), e.reason()))
    }

    /// Whether bytes of an unfinished frame or message are buffered.
    pub fn has_partial(&self) -> bool {
        self.0.has_partial()
    }
}
