//! Shared test helpers, by concern: the test token table (here), real
//! servers in this process ([`server`]) and as child processes
//! ([`daemon`], [`nats`]; [`tools`] installs what they run), a GitHub-like
//! App API for the redelivery sweeper ([`github_app`]) and `/meta` for
//! `webhook.allowed_sources` ([`github_meta`]), clients for plain HTTP
//! ([`http`], and byte for byte [`raw`]), WebSocket ([`ws`]), Server-Sent
//! Events ([`sse`]) and TLS ([`pki`]), payloads ([`payloads`]), metrics
//! ([`metrics`]), and a webhook receiver for `--forward` ([`receiver`]).

pub mod daemon;
pub mod github_app;
pub mod github_meta;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod payloads;
pub mod pki;
pub mod raw;
pub mod receiver;
pub mod server;
pub mod sse;
pub mod tools;
pub mod ws;

pub use daemon::*;
pub use github_app::*;
pub use github_meta::*;
pub use http::*;
pub use metrics::*;
pub use nats::*;
pub use payloads::*;
pub use raw::*;
pub use receiver::*;
pub use server::*;
pub use sse::*;
pub use tools::*;
pub use ws::*;

pub const SECRET: &[u8] = b"test-secret";

/// A token for `name`: `ghp_` + the name padded to 36 characters.
pub fn token(name: &str) -> String {
    format!("ghp_{name}{}", "0".repeat(36 - name.len()))
}

/// Logins, orgs and tiers of the test token table.
pub const USERS: &[(&str, &[&str], &str)] = &[
    ("alice", &["acme"], "free"),
    ("bob", &["acme", "widgets"], "pro"),
    ("carol", &["widgets"], "flock"),
    ("dave", &[], "free"),
    ("codertocat", &["acme"], "pro"),
    ("octocat", &["acme"], "free"),
    ("hubot", &["acme", "zeta"], "pro"),
    ("racer", &["org0", "org1", "org2", "org3"], "pro"),
    ("trudy", &["evilorg"], "pro"),
];

/// The app installation token (pinned to acme).
pub fn app_token() -> String {
    format!("ghs_acmeapp{}", "0".repeat(29))
}

pub fn tokens_toml() -> String {
    tokens_toml_for(USERS)
}

/// A token table for `users` (login, orgs, tier), plus the app
/// installation token.
pub fn tokens_toml_for(users: &[(&str, &[&str], &str)]) -> String {
    let mut s = String::new();
    for (login, orgs, tier) in users {
        let orgs: Vec<String> = orgs.iter().map(|o| format!("\"{o}\"")).collect();
        s += &format!(
            "[[token]]\ntoken = \"{}\"\nlogin = \"{login}\"\norgs = [{}]\ntier = \"{tier}\"\n",
            token(login),
            orgs.join(", ")
        );
    }
    s += &format!(
        "[[token]]\ntoken = \"{}\"\norgs = [\"acme\"]\napp_installation = true\n",
        app_token()
    );
    s
}
