//! The integration tests, one module per area, in one test binary: one
//! build and one link instead of one per file, which is most of the time a
//! cold `cargo test --release` takes. Run one area with
//! `cargo test --release --test it ws_resume::`.
//!
//! They share one process: the only process-wide state a test sets is the
//! global tracing subscriber of `github_auth::the_token_never_reaches_logs_errors_or_stats`
//! (other tests' logs land in its buffer too; it asserts only about its own
//! tokens).

#[path = "../common/mod.rs"]
mod common;

mod acme;
mod cli;
mod client;
mod cluster;
mod cluster_restart;
mod embedder;
mod events_sse;
mod filters;
mod forward;
mod github_app_mock;
mod github_auth;
mod http_headers;
mod js_client;
mod limits;
mod loadtest_smoke;
mod metrics;
mod monitoring;
mod operations;
mod payloads;
mod rate_limits;
mod redelivery;
mod subscription_validate;
mod tls;
mod ui_page;
mod wait;
mod webhook_dedup;
mod webhook_intake;
mod webhook_limits;
mod webhook_secrets;
mod webhook_sources;
mod ws_fanout;
mod ws_handshake;
mod ws_resume;
mod ws_routing;
mod ws_subprotocol;
