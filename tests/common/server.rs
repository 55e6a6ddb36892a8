//! A real server in this process on 127.0.0.1:0, with the test token
//! table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hookfan::auth::AuthProvider;
use hookfan::auth::static_tokens::StaticTokens;
use hookfan::config::{Config, WebhookSecret};
use hookfan::server::ServerHandle;

use super::{SECRET, Ws, hub_event, next_event, post_webhook, tokens_toml};

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    /// Holds the tokens file for as long as the server runs.
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with the base test config plus `extra` TOML (whole
    /// sections; they replace nothing, so do not repeat a base section).
    pub async fn start(extra: &str) -> TestServer {
        Self::start_with(extra, |_| {}).await
    }

    /// Like `start`, with a chance to adjust the parsed config.
    pub async fn start_with(extra: &str, adjust: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_with_auth(extra, adjust, |config| {
            Arc::new(StaticTokens::load(config.auth.tokens_file.as_ref().unwrap()).unwrap())
        })
        .await
    }

    /// Like `start_with`, with the auth provider made by `auth` from the
    /// adjusted config (the base config's `[auth]` section is the static
    /// test token table).
    pub async fn start_with_auth(
        extra: &str,
        adjust: impl FnOnce(&mut Config),
        auth: impl FnOnce(&Config) -> Arc<dyn AuthProvider>,
    ) -> TestServer {
        Self::try_start_with_auth(extra, adjust, auth)
            .await
            .unwrap()
    }

    /// Like `start`, returning the server's refusal to start.
    pub async fn try_start(extra: &str) -> std::io::Result<TestServer> {
        Self::try_start_with_auth(
            extra,
            |_| {},
            |config| {
                Arc::new(StaticTokens::load(config.auth.tokens_file.as_ref().unwrap()).unwrap())
            },
        )
        .await
    }

    async fn try_start_with_auth(
        extra: &str,
        adjust: impl FnOnce(&mut Config),
        auth: impl FnOnce(&Config) -> Arc<dyn AuthProvider>,
    ) -> std::io::Result<TestServer> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.toml"), tokens_toml()).unwrap();
        let text =
            format!("[auth]\nprovider = \"static\"\ntokens_file = \"tokens.toml\"\n{extra}\n");
        let mut config = Config::parse(&text, dir.path()).unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let auth = auth(&config);
        let handle =
            hookfan::server::start(&config, &WebhookSecret::from_bytes(SECRET), auth).await?;
        let addr = handle.local_addr();
        Ok(TestServer {
            handle: Some(handle),
            addr,
            _dir: dir,
        })
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    pub fn hub(&self) -> &hookfan::Hub {
        self.handle().hub()
    }

    /// Posts a webhook signed with the test secret, with a delivery id of
    /// its own (a delivery id already accepted is not broadcast again).
    pub async fn webhook(&self, kind: &str, body: &[u8]) -> (u16, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.webhook_with_id(kind, body, &format!("test-delivery-{n}"))
            .await
    }

    /// Posts a webhook with a given delivery id.
    pub async fn webhook_with_id(&self, kind: &str, body: &[u8], delivery: &str) -> (u16, String) {
        post_webhook(self.addr, SECRET, kind, delivery, body).await
    }

    /// Posts a webhook with delivery id `id`, answered 200, and checks that
    /// it is the next event each of `receivers` gets.
    pub async fn webhook_reaches(
        &self,
        kind: &str,
        body: &[u8],
        id: &str,
        receivers: &mut [&mut Ws],
    ) {
        let (status, text) = self.webhook_with_id(kind, body, id).await;
        assert_eq!(status, 200, "{id}: {text}");
        for ws in receivers.iter_mut() {
            let got = next_event(ws).await;
            assert_eq!(got["delivery_id"], id, "{id}: got {got}");
        }
    }

    /// Waits until `cond` holds for the hub's stats (shards synced first).
    pub async fn wait_stats(&self, what: &str, cond: impl Fn(&hookfan::HubStats) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            self.hub().sync().await;
            let s = self.hub().stats();
            if cond(&s) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}: {s:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Floods acme through the hub with large events (64 KiB delivery ids), in
/// bursts that `readers` read in full, until the hub's stats say `done`;
/// returns how many were sent.
pub async fn flood_until(
    server: &TestServer,
    readers: &mut [Ws],
    done: impl Fn(&hookfan::HubStats) -> bool,
) -> u64 {
    let mut sent = 0u64;
    loop {
        for _ in 0..4 {
            server
                .hub()
                .broadcast(hub_event("acme", &format!("f{sent:05}-"), 64 * 1024));
            sent += 1;
        }
        for ws in readers.iter_mut() {
            for _ in 0..4 {
                next_event(ws).await;
            }
        }
        server.hub().sync().await;
        if done(&server.hub().stats()) {
            return sent;
        }
        assert!(sent < 20_000, "never happened");
    }
}
