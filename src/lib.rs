//! hookfan: a GitHub webhook fan-out server.
//!
//! A GitHub App has one webhook URL; hookfan sits behind it, verifies each
//! delivery (HMAC-SHA256), parses it once into a compact [`Event`], and
//! pushes a small JSON message over authenticated WebSockets to every client
//! whose subscription matches. It speaks webhook-sprinkler's protocol.
//!
//! Layout: [`config`] (the TOML file), [`webhook`] (intake: signature, body,
//! extraction, commit cache), [`event`] (the compact event and its frame),
//! [`broker`] (hub, shards, index, outboxes), `ws` (upgrade, frame codec,
//! sessions), [`subscription`], [`auth`] (providers, tokens, tiers) and
//! [`server`] (HTTP routing and lifecycle).

#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod config;
pub mod event;
mod limits;
mod metrics;
pub mod server;
pub mod subscription;
pub mod webhook;
mod ws;

pub use event::{Event, EventParts};
pub use limits::ConnCounts;
