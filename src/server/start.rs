//! [`start`]: from a validated configuration to a serving server, step by
//! step: the certificate, the listeners, the cluster, the hub, the
//! endpoints, then one accept loop per listener.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::Phase;
use super::handle::ServerHandle;
use super::listen::{accept_loop, listen, listen_if};
use super::routes::{App, serve_app, serve_metrics, serve_redirect};
use super::tls::{PreparedTls, TlsMode, prepare_tls};
use crate::cluster::{Cluster, Learners};
use crate::config::Config;
use crate::redelivery::{Redelivery, Setup};
use crate::tls::acme::Acme;
use crate::tls::metrics::TlsFigures;
use crate::webhook::{Refresher, WebhookSecret};
use crate::{AuthProvider, EventSink, Hub, HubConfig, Metrics, WebhookEndpoint, WsEndpoint};

/// Binds `config.server.listen` and starts serving; `auth` checks tokens.
/// Call from a tokio runtime.
pub async fn start(
    config: &Config,
    secret: &WebhookSecret,
    auth: Arc<dyn AuthProvider>,
) -> io::Result<ServerHandle> {
    // Certificates first: a bad one is refused before anything listens.
    let tls = prepare_tls(TlsMode::of(config))?;
    let listeners = Listeners::bind(config)?;
    let cluster = join_cluster(config).await?;
    let hub = Hub::start(hub_config(config, cluster.as_ref()))?;
    let metrics = Metrics::new(&hub, auth.clone());
    register_figures(&metrics, tls.as_ref(), cluster.as_ref());
    let (ws, webhook) = endpoints(config, secret, &hub, &auth, &metrics, cluster.as_ref());
    let commit_cache = webhook.commit_cache().clone();
    let webhook_keys = webhook.keys().clone();
    if let Some(c) = &cluster {
        c.start(
            hub.clone(),
            Learners {
                commits: commit_cache.clone(),
                deliveries: webhook.delivery_ids().clone(),
            },
        );
    }
    let redelivery = redelivery(config, &webhook, cluster.as_ref()).await?;
    if let Some(r) = &redelivery {
        metrics.register(r.stats());
    }
    let sources = sources_refresher(config, &webhook)?;
    let (phase, phase_rx) = watch::channel(Phase::Serving);
    let app = App {
        webhook,
        ws: ws.clone(),
        metrics: metrics.clone(),
        public_metrics: listeners.metrics.is_none(),
        ui: config.server.ui,
        phase: phase_rx,
        header_timeout: Duration::from_secs(config.server.header_read_timeout_s),
        write_timeout: Duration::from_secs(config.server.write_timeout_s),
        tls: (tls.as_ref()).map(|t| TlsAcceptor::from(t.config.clone())),
    };
    let (local_addr, metrics_addr, redirect_addr) = listeners.addrs;
    let mut accept_tasks = listeners.serve(app);
    if let Some(r) = redelivery {
        accept_tasks.push(tokio::spawn(r.run(hub.clone())));
    }
    // GitHub's webhook ranges: fetched now, then refreshed, until shutdown.
    if let Some(s) = sources {
        let hub = hub.clone();
        accept_tasks.push(tokio::spawn(async move { s.run(hub.stopped()).await }));
    }
    // ACME orders once the listener answers its tls-alpn-01 challenges.
    let store = tls.as_ref().map(|t| t.store.clone());
    if let Some(PreparedTls {
        acme: Some(acme),
        cached,
        ..
    }) = tls
    {
        accept_tasks.push(tokio::spawn(acme.run(cached)));
    }
    Ok(ServerHandle {
        local_addr,
        hub,
        ws,
        commit_cache,
        webhook_keys,
        phase,
        accept_tasks,
        metrics_addr,
        redirect_addr,
        shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_s),
        auth,
        metrics,
        tls: store,
        config: Mutex::new(config.clone()),
    })
}

/// The TLS listener's and the cluster link's figures, into `/metrics`.
fn register_figures(metrics: &Metrics, tls: Option<&PreparedTls>, cluster: Option<&Cluster>) {
    if let Some(t) = tls {
        metrics.register(Arc::new(TlsFigures {
            store: t.store.clone(),
            acme: t.acme.as_ref().map(Acme::stats),
        }));
    }
    if let Some(c) = cluster {
        metrics.register(c.stats());
    }
}

/// What keeps GitHub's ranges of `webhook.allowed_sources` fresh, when the
/// list names `github`.
fn sources_refresher(config: &Config, webhook: &WebhookEndpoint) -> io::Result<Option<Refresher>> {
    webhook
        .sources_refresher(
            &config.auth.github_api_url,
            Duration::from_secs(config.auth.api_timeout_s),
        )
        .map_err(|e| io::Error::other(format!("webhook.allowed_sources: {e}")))
}

/// The sockets, bound before anything else starts so that a port taken is
/// refused at once.
struct Listeners {
    main: TcpListener,
    metrics: Option<TcpListener>,
    redirect: Option<TcpListener>,
    /// The addresses bound: main, metrics, redirect.
    addrs: (SocketAddr, Option<SocketAddr>, Option<SocketAddr>),
}

impl Listeners {
    fn bind(config: &Config) -> io::Result<Self> {
        let main = listen(config.server.listen)?;
        let metrics = listen_if(config.server.metrics_listen)?;
        let redirect_addr = config.server.tls.as_ref().and_then(|t| t.redirect_listen);
        let redirect = listen_if(redirect_addr)?;
        let local = |l: &Option<TcpListener>| l.as_ref().map(TcpListener::local_addr).transpose();
        let addrs = (main.local_addr()?, local(&metrics)?, local(&redirect)?);
        Ok(Self {
            main,
            metrics,
            redirect,
            addrs,
        })
    }

    /// Starts one accept loop per listener.
    fn serve(self, app: App) -> Vec<JoinHandle<()>> {
        let tls_port = self.addrs.0.port();
        let (metrics, phase) = (app.metrics.clone(), app.phase.clone());
        let app = Arc::new(app);
        let mut tasks = vec![tokio::spawn(accept_loop(self.main, move |stream, peer| {
            serve_app(stream, peer, app.clone())
        }))];
        if let Some(l) = self.metrics {
            let phase = phase.clone();
            tasks.push(tokio::spawn(accept_loop(l, move |stream, _| {
                serve_metrics(stream, metrics.clone(), phase.clone())
            })));
        }
        if let Some(l) = self.redirect {
            tasks.push(tokio::spawn(accept_loop(l, move |stream, _| {
                serve_redirect(stream, tls_port, phase.clone())
            })));
        }
        tasks
    }
}

async fn join_cluster(config: &Config) -> io::Result<Option<Cluster>> {
    if config.cluster.nats_url.is_none() {
        return Ok(None);
    }
    let joined = Cluster::connect(&config.cluster).await.and_then(|c| {
        if config.payloads.enabled {
            c.check_payload_room(config.webhook.max_payload_bytes)?;
        }
        Ok(c)
    });
    joined
        .map(Some)
        .map_err(|e| io::Error::other(format!("cannot join the cluster: {e}")))
}

/// The redelivery sweeper, when `[redelivery]` is on; in a cluster with
/// the lease that lets one node sweep at a time.
async fn redelivery(
    config: &Config,
    webhook: &WebhookEndpoint,
    cluster: Option<&Cluster>,
) -> io::Result<Option<Redelivery>> {
    let c = &config.redelivery;
    if !c.enabled {
        return Ok(None);
    }
    let lease = match cluster {
        Some(cl) => Some(
            cl.lease("redelivery", Duration::from_secs(c.lease_ttl_s))
                .await
                .map_err(|e| io::Error::other(format!("redelivery: the sweep's lease: {e}")))?,
        ),
        None => None,
    };
    Redelivery::new(Setup {
        config: c,
        app: &config.github_app,
        api_url: &config.auth.github_api_url,
        api_timeout: Duration::from_secs(config.auth.api_timeout_s),
        accepted: webhook.delivery_ids().clone(),
        lease,
    })
    .map_err(io::Error::other)
}

fn hub_config(config: &Config, cluster: Option<&Cluster>) -> HubConfig {
    HubConfig {
        epoch: cluster.map(|c| c.epoch().to_owned()),
        ..config.hub_config()
    }
}

/// The WebSocket and webhook endpoints. Intake hands its events to the hub
/// itself, or to the cluster's stream, from which every node's hub is fed.
fn endpoints(
    config: &Config,
    secret: &WebhookSecret,
    hub: &Hub,
    auth: &Arc<dyn AuthProvider>,
    metrics: &Arc<Metrics>,
    cluster: Option<&Cluster>,
) -> (WsEndpoint, WebhookEndpoint) {
    let ws = WsEndpoint::new(
        hub.clone(),
        auth.clone(),
        config.ws_options(),
        metrics.clone(),
    );
    let (ws, sink): (WsEndpoint, Arc<dyn EventSink>) = match cluster {
        Some(c) => (ws.with_backfill(Arc::new(c.clone())), Arc::new(c.clone())),
        None => (ws, Arc::new(hub.clone())),
    };
    let webhook =
        WebhookEndpoint::with_secret(sink, secret, config.webhook_options(), metrics.clone());
    (ws, webhook)
}
