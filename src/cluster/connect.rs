//! Joining the cluster at start: NATS reached with the configured
//! credentials and TLS, the stream made sure of; a failure names the config
//! key to look at. Also the back-off between attempts to reach NATS again,
//! and what the client's events (lost, back) change.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_nats::ConnectErrorKind;
use async_nats::jetstream;
use tokio::sync::watch;

use super::backfill::BackfillBounds;
use super::config::{ClusterConfig, redact_userinfo};
use super::stream::{ensure_stream, epoch_of};
use super::{Cluster, ClusterError, ClusterStats, Inner, fail};
use crate::checks::read_secret_line;

/// Back-off between attempts to start the stream's consumer again: 100 ms
/// doubling to 5 s, with jitter so that the nodes of a cluster do not retry
/// in step.
pub(super) fn backoff(attempt: usize) -> Duration {
    doubling(attempt, Duration::from_secs(5))
}

/// Delay between attempts to reach NATS again: 100 ms doubling to 1 s, with
/// jitter. A second at most, so that a node is back within about a second
/// of a restarted NATS listening again (however long it was down); an
/// attempt a second costs NATS nothing.
fn reconnect_delay(attempt: usize) -> Duration {
    doubling(attempt, Duration::from_secs(1))
}

/// 100 ms doubling with each attempt up to `cap`, times 0.5 to 1.
fn doubling(attempt: usize, cap: Duration) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.min(6) as u32);
    base.min(cap).mul_f64(0.5 + fastrand::f64() / 2.0)
}

impl Cluster {
    /// Connects to NATS, makes sure the stream exists with the configured
    /// limits, and reads where it stands. Fails, naming the config key,
    /// when NATS cannot be reached or an existing stream conflicts.
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let url = config
            .nats_url
            .as_deref()
            .ok_or_else(|| fail("cluster.nats_url", "not set"))?;
        let shown = redact_userinfo(url);
        let addrs = url
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail("cluster.nats_url", format!("{shown:?}: {e}")))?;
        let stats = Arc::new(ClusterStats {
            node: config.node(),
            ..ClusterStats::default()
        });
        let link = Arc::new(Link {
            stats: stats.clone(),
            reconnected: watch::Sender::new(0),
            down: AtomicBool::new(false),
        });
        let options = async_nats::ConnectOptions::new()
            .name(format!("hookfan {}", stats.node))
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(reconnect_delay)
            .event_callback({
                let link = link.clone();
                move |event| {
                    let link = link.clone();
                    async move { link.on_event(event) }
                }
            });
        let (options, auth_key) = with_credentials(options, config).await?;
        let client = options
            .connect(addrs)
            .await
            .map_err(|e| connect_failure(&e, config, auth_key, &shown))?;
        stats.connected.store(true, Relaxed);
        let mut js = jetstream::new(client.clone());
        let publish_timeout = Duration::from_secs(config.publish_timeout_s);
        js.set_timeout(publish_timeout);
        let info = ensure_stream(&js, config).await?;
        let epoch = epoch_of(&info);
        let last = info.state.last_sequence;
        stats.stream_last.store(last, Relaxed);
        stats.applied.store(last, Relaxed);
        tracing::info!(
            node = %stats.node, stream = %config.stream, %epoch, seq = last,
            oldest = info.state.first_sequence, "joined the cluster's stream"
        );
        Ok(Cluster {
            inner: Arc::new(Inner {
                client,
                js,
                stream: config.stream.clone(),
                subject: config.subject.clone(),
                publish_timeout,
                epoch,
                joined_at: last,
                stream_first: AtomicU64::new(info.state.first_sequence.max(1)),
                applied: watch::Sender::new(last),
                reconnected: link.reconnected.clone(),
                stats,
                hub: OnceLock::new(),
                backfills: tokio::sync::Semaphore::new(config.backfill_concurrency),
                backfill_bounds: BackfillBounds {
                    max_seqs: config.backfill_max_events,
                    max_bytes: config.backfill_max_bytes,
                },
            }),
        })
    }
}

/// Adds the configured credentials and TLS settings; also returns the key
/// holding the credentials, to name should NATS refuse them.
async fn with_credentials(
    mut options: async_nats::ConnectOptions,
    config: &ClusterConfig,
) -> Result<(async_nats::ConnectOptions, Option<&'static str>), ClusterError> {
    let mut auth_key = None;
    if let Some(path) = &config.creds_file {
        auth_key = Some("cluster.creds_file");
        options = options.credentials_file(path).await.map_err(|e| {
            fail(
                "cluster.creds_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
    }
    if let (Some(user), Some(path)) = (&config.user, &config.password_file) {
        auth_key = Some("cluster.password_file");
        let password = read_secret_line("cluster.password_file", path)?;
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(path) = &config.token_file {
        auth_key = Some("cluster.token_file");
        options = options.token(read_secret_line("cluster.token_file", path)?);
    }
    if let Some(path) = &config.tls_ca_file {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok((options, auth_key))
}

/// Names the key to fix when the first connection to NATS (at `shown`, the
/// redacted URL) failed; `auth_key` holds the credentials, if any.
fn connect_failure(
    e: &async_nats::ConnectError,
    config: &ClusterConfig,
    auth_key: Option<&'static str>,
    shown: &str,
) -> ClusterError {
    if matches!(
        e.kind(),
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication
    ) {
        return match auth_key {
            Some(key) => fail(
                key,
                format!("NATS at {shown} refused this node's credentials: {e}"),
            ),
            None => fail(
                "cluster.nats_url",
                format!(
                    "NATS at {shown} wants credentials ({e}): set cluster.user and \
                     cluster.password_file, cluster.token_file or cluster.creds_file"
                ),
            ),
        };
    }
    // An alert from the server refuses this node's certificate; any other
    // TLS error is about the server's.
    let tls_key = match tls_failure(e) {
        Some(rustls::Error::AlertReceived(_)) => Some("cluster.tls_cert_file"),
        Some(_) => Some("cluster.tls_ca_file"),
        None if e.kind() != ConnectErrorKind::Tls => None,
        None if config.tls_cert_file.is_some() => Some("cluster.tls_cert_file"),
        None => Some("cluster.tls_ca_file"),
    };
    match tls_key {
        Some(key) => fail(key, format!("no TLS connection to NATS at {shown}: {e}")),
        None => fail(
            "cluster.nats_url",
            format!("cannot reach NATS at {shown}: {e}"),
        ),
    }
}

/// The TLS error a failed connection ended with, if any. async-nats
/// reports a handshake failure as an IO error wrapping rustls's.
fn tls_failure<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if let Some(tls) = inner.and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Some(tls);
        }
        cause = err.source();
    }
    None
}

/// What the NATS client's events change: the node's state, and the signal
/// that makes the consumer start again at once after a reconnection.
struct Link {
    stats: Arc<ClusterStats>,
    /// Bumped each time NATS is back after being lost.
    reconnected: watch::Sender<u64>,
    /// NATS was lost and is not back yet.
    down: AtomicBool,
}

impl Link {
    fn on_event(&self, event: async_nats::Event) {
        let stats = &self.stats;
        match event {
            async_nats::Event::Connected => {
                stats.connected.store(true, Relaxed);
                tracing::info!(node = %stats.node, "connected to NATS");
                // The consumer's pull requests died with the old connection
                // (and the server may have lost the consumer itself): it is
                // made again now rather than when heartbeats time out.
                if self.down.swap(false, Relaxed) {
                    stats.reconnects.fetch_add(1, Relaxed);
                    self.reconnected.send_modify(|n| *n += 1);
                }
            }
            async_nats::Event::Disconnected => {
                stats.connected.store(false, Relaxed);
                self.down.store(true, Relaxed);
                tracing::warn!(node = %stats.node, "lost NATS: webhooks are answered 503 until it is back");
            }
            async_nats::Event::Closed => {
                stats.connected.store(false, Relaxed);
            }
            other => tracing::info!(node = %stats.node, event = %other, "NATS"),
        }
    }
}
