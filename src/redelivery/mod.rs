//! The redelivery sweeper: GitHub does not redeliver a webhook it failed
//! to deliver (hookfan down, restarting, draining, or its cluster's NATS
//! unreachable: all answered 503 or not at all), so hookfan asks it to, the
//! way GitHub documents for App webhooks. A sweep at start catches what the
//! downtime missed; one every `interval_s` catches the rest.
//!
//! The redelivered webhook comes back through `POST /webhook` like any
//! other, and intake's delivery-id record (shared by a cluster's nodes)
//! keeps a sweep that races a late original from delivering it twice. In a
//! cluster one node sweeps at a time: the holder of a lease in JetStream's
//! key-value store, taken over when it dies.

mod api;
mod config;
mod stats;
mod sweep;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::broker::Hub;
use crate::cluster::Lease;
use crate::github_app::{AppKeyError, GithubApp, GithubAppConfig};
use crate::webhook::DeliveryIds;
use api::AppApi;
pub use config::RedeliveryConfig;
pub(crate) use stats::RedeliveryStats;
use sweep::{Sweeper, Swept};

/// Why a sweep stopped short.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SweepError {
    /// GitHub refused the App (401: bad id or key; 403: permissions;
    /// 404: no such App or webhook): nothing to do but fix the config.
    #[error("GitHub answered {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused { status: u16, message: String },
    /// Rate limited: wait this long.
    #[error("rate limited by GitHub for {} s", .0.as_secs())]
    RateLimited(Duration),
    /// 5xx, timeout, network: the next sweep tries again.
    #[error("{0}")]
    Failed(String),
}

/// Why the sweeper could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// The App's key.
    #[error("github_app.private_key_file: {0}")]
    Key(#[from] AppKeyError),
    /// Outgoing TLS.
    #[error("redelivery: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The API URL, or the cluster's lease.
    #[error("redelivery: {0}")]
    Other(String),
}

/// Everything a sweeper runs on.
pub(crate) struct Setup<'a> {
    pub config: &'a RedeliveryConfig,
    pub app: &'a GithubAppConfig,
    /// `auth.github_api_url`.
    pub api_url: &'a str,
    pub api_timeout: Duration,
    /// Intake's record of accepted delivery ids.
    pub accepted: Arc<DeliveryIds>,
    /// In a cluster: the sweep's lease.
    pub lease: Option<Lease>,
}

/// A sweeper ready to run, and its figures for `/metrics`.
pub(crate) struct Redelivery {
    sweeper: Sweeper,
    lease: Option<Lease>,
    interval: Duration,
    lease_ttl: Duration,
}

impl Redelivery {
    /// The sweeper `setup` describes (`None` when `[redelivery]` is off).
    pub(crate) fn new(setup: Setup<'_>) -> Result<Option<Redelivery>, SetupError> {
        let c = setup.config;
        if !c.enabled {
            return Ok(None);
        }
        let app = GithubApp::load(setup.app)?
            .ok_or_else(|| SetupError::Other("[github_app] is not set".to_owned()))?;
        let tls = crate::tls::client_config("the GitHub API")?;
        let api = AppApi::new(app, setup.api_url, tls, setup.api_timeout)
            .map_err(|e| SetupError::Other(e.to_string()))?;
        Ok(Some(Redelivery {
            sweeper: Sweeper {
                api,
                accepted: setup.accepted,
                stats: Arc::default(),
                lookback: Duration::from_secs(c.lookback_s),
                max_per_sweep: c.max_per_sweep,
                mark: None,
            },
            lease: setup.lease,
            interval: Duration::from_secs(c.interval_s),
            lease_ttl: Duration::from_secs(c.lease_ttl_s),
        }))
    }

    /// Its figures.
    pub(crate) fn stats(&self) -> Arc<RedeliveryStats> {
        self.sweeper.stats.clone()
    }

    /// Sweeps at once (when this node holds the lease), then every
    /// interval, until `hub` stops.
    pub(crate) async fn run(mut self, hub: Hub) {
        let mut next_sweep = Instant::now();
        let mut held_before = false;
        loop {
            let held = match &mut self.lease {
                None => true,
                Some(l) => l.hold().await,
            };
            self.sweeper.stats.sweeping.store(held, Relaxed);
            // A node that just took the lease sweeps at once: its holder
            // may have died before sweeping what it was due to.
            if held && (!held_before || Instant::now() >= next_sweep) {
                next_sweep = Instant::now() + self.sweep_once().await;
            }
            held_before = held;
            let mut nap = next_sweep.saturating_duration_since(Instant::now());
            if self.lease.is_some() {
                nap = nap.min(self.lease_ttl / 3);
            }
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = hub.stopped() => return,
            }
        }
    }

    /// One sweep, counted and logged; how long until the next.
    async fn sweep_once(&mut self) -> Duration {
        let out = self.sweeper.sweep().await;
        let s = &self.sweeper.stats;
        let (counter, wait) = match &out {
            Ok(_) => (&s.sweeps_ok, self.interval),
            Err(SweepError::Refused { .. }) => (&s.sweeps_refused, self.interval),
            Err(SweepError::RateLimited(d)) => (
                &s.sweeps_rate_limited,
                (*d).clamp(Duration::from_secs(1), Duration::from_secs(3600)),
            ),
            Err(SweepError::Failed(_)) => (&s.sweeps_failed, self.interval),
        };
        counter.fetch_add(1, Relaxed);
        match out {
            Ok(swept) => self.succeeded(&swept),
            Err(e) => log_stop(&e, wait),
        }
        wait
    }

    fn succeeded(&self, swept: &Swept) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if swept.complete {
            self.sweeper
                .stats
                .last_success
                .store(now.as_secs(), Relaxed);
        }
        let Swept {
            failed,
            accepted,
            redelivered,
            complete,
        } = *swept;
        if failed > 0 {
            tracing::info!(
                failed,
                already_accepted = accepted,
                redelivered,
                complete,
                "redelivery sweep: asked GitHub to redeliver what it failed to deliver"
            );
        } else {
            tracing::debug!("redelivery sweep: every delivery got through");
        }
    }
}

/// The one line a sweep that stopped short logs.
fn log_stop(e: &SweepError, wait: Duration) {
    let next_s = wait.as_secs();
    match e {
        SweepError::Refused { .. } => tracing::error!(
            error = %e, next_s,
            "redelivery sweep refused by GitHub: check github_app.app_id, \
             github_app.private_key_file and that the App has a webhook"
        ),
        SweepError::RateLimited(_) => {
            tracing::warn!(error = %e, next_s, "redelivery sweep backs off")
        }
        SweepError::Failed(_) => tracing::warn!(
            error = %e, next_s,
            "redelivery sweep failed; the next one tries again"
        ),
    }
}
