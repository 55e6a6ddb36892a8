//! The `hookfan` daemon and its command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hookfan::auth::AuthProvider;
use hookfan::auth::github::GithubProvider;
use hookfan::auth::static_tokens::StaticTokens;
use hookfan::config::{
    AuthProviderKind, Config, ConfigError, ConfigErrors, LogFormat, SECRET_ENV, SecretSource,
    WebhookSecret,
};

// The `subscribe` command (a client, not part of the library).
mod subscribe_command;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// GitHub webhook fan-out over authenticated WebSockets.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// Listen address, overriding server.listen (e.g. 127.0.0.1:0).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print the effective settings (secrets masked).
    CheckConfig,
    /// Subscribe to a hookfan server and print (or act on) every event,
    /// reconnecting and resuming by itself.
    Subscribe(Box<subscribe_command::SubscribeArgs>),
}

/// Exit status for a configuration the daemon refuses.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let check = match cli.command {
        Some(Command::Subscribe(args)) => return subscribe_command::run(*args),
        Some(Command::CheckConfig) => true,
        None => false,
    };
    let Some(path) = cli.config.clone() else {
        eprintln!("hookfan: --config PATH is required (try config/hookfan.toml)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let prepared = prepare(&path, cli.listen);
    if check {
        return check_config(&path, prepared);
    }
    match prepared {
        Ok(p) => serve(p, path, cli.listen),
        Err(errors) => {
            eprint!("hookfan: {errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// A configuration with everything it points at loaded.
struct Prepared {
    config: Config,
    secret: WebhookSecret,
    auth: Arc<dyn AuthProvider>,
    auth_summary: String,
}

/// Loads the config, the secret and the auth provider, collecting every problem.
fn prepare(
    path: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
) -> Result<Prepared, ConfigErrors> {
    let (mut config, mut errors) = Config::load_lenient(path);
    if errors.iter().any(|e| e.key == "config") {
        return Err(ConfigErrors(errors));
    }
    if let Some(l) = listen {
        config.server.listen = l;
    }
    // The certificate files too: check-config finds a bad one before a
    // restart does.
    if let Err(e) = hookfan::server::check_tls_files(&config) {
        errors.push(e);
    }
    let env = std::env::var(SECRET_ENV).ok();
    let secret = WebhookSecret::load(&config, env.as_deref())
        .map_err(|e| errors.push(e))
        .ok();
    // What the auth section points at is checked only when the section is valid.
    let auth_valid = !errors.iter().any(|e| e.key.starts_with("auth."));
    let auth: Option<(Arc<dyn AuthProvider>, String)> = match config.auth.provider {
        _ if !auth_valid => None,
        AuthProviderKind::Static => {
            let file = (config.auth.tokens_file.clone())
                .expect("validated: the static provider has a tokens_file");
            match StaticTokens::load(&file) {
                Ok(t) => {
                    let t = t.with_default_tier(config.tiers.default_tier);
                    let summary = format!("static, {} tokens from {}", t.len(), file.display());
                    Some((Arc::new(t), summary))
                }
                Err(e) => {
                    errors.extend(e);
                    None
                }
            }
        }
        AuthProviderKind::Github => match GithubProvider::new(&config.auth, &config.tiers) {
            Ok(p) => {
                let summary = format!("github, {}", p.base_url());
                Some((Arc::new(p), summary))
            }
            Err(e) => {
                errors.push(ConfigError::new("auth.github_api_url", e.to_string()));
                None
            }
        },
    };
    match (secret, auth) {
        (Some(secret), Some((auth, auth_summary))) if errors.is_empty() => Ok(Prepared {
            config,
            secret,
            auth,
            auth_summary,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

fn check_config(path: &std::path::Path, prepared: Result<Prepared, ConfigErrors>) -> ExitCode {
    match prepared {
        Ok(p) => {
            let secret = match p.secret.source() {
                SecretSource::File(f) => format!(
                    "**** ({} bytes, from {})",
                    p.secret.expose().len(),
                    f.display()
                ),
                SecretSource::Env => format!(
                    "**** ({} bytes, from {SECRET_ENV})",
                    p.secret.expose().len()
                ),
            };
            println!("# {}: valid", path.display());
            println!("# webhook secret: {secret}");
            println!("# auth: {}", p.auth_summary);
            println!(
                "# broker.shards = 0 resolves to {} here",
                p.config.broker.effective_shards()
            );
            print!("{}", toml::to_string(&p.config).expect("config serializes"));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Logs go to stderr through a writer thread: a slow or stuck stderr (a
/// full pipe) must never stall a shard or a connection. Should it fall
/// behind by more than its buffer, lines are dropped rather than waited
/// for. The returned guard flushes what is left when dropped; the level
/// setter changes `log.level` on a reload.
fn init_logging(config: &Config) -> (tracing_appender::non_blocking::WorkerGuard, LevelSetter) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).expect("validated");
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The filter's handle has the type of the whole subscriber: one per format.
    macro_rules! init_reloadable {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |level: &str| {
                let filter =
                    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
                handle.reload(filter).map_err(|e| e.to_string())
            }) as LevelSetter
        }};
    }
    let setter = match config.log.format {
        LogFormat::Text => init_reloadable!(builder),
        LogFormat::Json => init_reloadable!(builder.json()),
    };
    (guard, setter)
}

/// Sets the log filter (`log.level`) of the running daemon.
type LevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

fn serve(p: Prepared, path: PathBuf, listen: Option<std::net::SocketAddr>) -> ExitCode {
    let (_log_flush, set_level) = init_logging(&p.config);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookfan: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
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
        tracing::info!(addr = %server.local_addr(), shards = server.hub().config().shards, auth = %p.auth_summary, tls = p.config.server.tls.is_some(), "hookfan serving");
        let mut level = p.config.log.level.clone();
        let mut signals = signals;
        while signals.wait().await == Wake::Reload {
            tracing::info!(file = %path.display(), "SIGHUP: reloading");
            let reloaded = server.reload(&path, |c| {
                if let Some(l) = listen {
                    c.server.listen = l;
                }
            });
            if let Ok(new) = reloaded
                && new.log.level != level
            {
                match set_level(&new.log.level) {
                    Ok(()) => {
                        tracing::info!(level = %new.log.level, "log level changed");
                        level = new.log.level;
                    }
                    Err(e) => tracing::error!(error = %e, "log level not changed"),
                }
            }
        }
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
