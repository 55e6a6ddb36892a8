//! The daemon: an HTTP server routing to the library's endpoints, and its
//! lifecycle. It is built only from the crate's public API (the `use`
//! lines name little else), which is what an embedder has too.
//!
//! [`start`] binds, starts the hub and serves until [`ServerHandle::shutdown`],
//! which drains: `/healthz` turns 503, new webhooks and upgrades get 503,
//! every client gets its queued frames and a close frame 1001, and the
//! server is gone within `server.shutdown_timeout_s`.
//!
//! With `[server.tls]` the listener speaks TLS (certificate from files or
//! from ACME) and an optional plain listener redirects to it.
//! [`ServerHandle::reload`] (SIGHUP in the daemon) swaps the certificate,
//! the webhook secrets, the tokens and the tier lists without touching a
//! connection.
//!
//! Files: `start` (the steps from config to serving), `listen` (sockets,
//! the one accept loop, HTTP over a connection), `routes` (what each
//! listener answers), `headers` (what every answer tells browsers), `tls`
//! (the TLS mode and handshake), `handle` (the running server: reload,
//! shutdown).

mod handle;
mod headers;
mod listen;
mod routes;
mod start;
mod tls;

pub use handle::{ReloadError, ServerHandle};
pub use start::start;
pub use tls::check_tls_files;

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
