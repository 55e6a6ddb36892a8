//! `hookfan` without a command: the daemon. Serves until SIGTERM or
//! SIGINT (then drains), reloading on SIGHUP.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hookfan::server::ServerHandle;

use crate::logging::{self, LevelSetter};
use crate::prepare::Prepared;

pub(crate) fn run(p: Prepared, path: PathBuf, listen: Option<SocketAddr>) -> ExitCode {
    let (_log_flush, set_level) = logging::init(&p.config);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime =
        match crate::runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(workers)) {
            Ok(r) => r,
            Err(code) => return code,
        };
    let code = runtime.block_on(async move {
        // Before the listener exists: a SIGTERM that comes right after
        // "listening on" must drain, not kill the process.
        let signals = Signals::install();
        if p.config.development {
            tracing::warn!("!!! DEVELOPMENT CONFIG: committed dev secret and static dev tokens; never expose this instance !!!");
        }
        let server = match hookfan::server::start(&p.config, &p.secret, p.auth).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hookfan: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {}", server.local_addr());
        let _ = std::io::stdout().flush();
        tracing::info!(addr = %server.local_addr(), shards = server.hub().config().shards, auth = %p.auth_summary, webhook_secrets = p.secret.count(), tls = p.config.server.tls.is_some(), "hookfan serving");
        let reload = Reload {
            path: &path,
            listen,
            set_level,
            level: p.config.log.level.clone(),
        };
        reload.until_stopped(&server, signals).await;
        tracing::info!("shutting down");
        server.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    });
    // Whatever is still running (a client that never answered) must not
    // hold the exit: the shutdown bound has already been spent.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// What SIGHUP needs: the file, what the command line overrode, and the
/// log level in force.
struct Reload<'a> {
    path: &'a Path,
    listen: Option<SocketAddr>,
    set_level: LevelSetter,
    level: String,
}

impl Reload<'_> {
    /// Reloads on every SIGHUP; returns at SIGTERM or SIGINT.
    async fn until_stopped(mut self, server: &ServerHandle, mut signals: Signals) {
        while signals.wait().await == Wake::Reload {
            tracing::info!(file = %self.path.display(), "SIGHUP: reloading");
            let listen = self.listen;
            let reloaded = server.reload(self.path, |c| {
                if let Some(l) = listen {
                    c.server.listen = l;
                }
            });
            if let Ok(new) = reloaded
                && new.log.level != self.level
            {
                match (self.set_level)(&new.log.level) {
                    Ok(()) => {
                        tracing::info!(level = %new.log.level, "log level changed");
                        self.level = new.log.level;
                    }
                    Err(e) => tracing::error!(error = %e, "log level not changed"),
                }
            }
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP, handled (not fatal) from the moment they
/// are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[derive(Debug, PartialEq, Eq)]
enum Wake {
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
    /// SIGHUP: reload the configuration.
    Reload,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }

    async fn wait(&mut self) -> Wake {
        tokio::select! {
            _ = self.term.recv() => Wake::Stop,
            _ = self.int.recv() => Wake::Stop,
            _ = self.hup.recv() => Wake::Reload,
        }
    }
}
