//! The `hookfan` daemon and its command line: `main` parses it and hands
//! over to one file per command (`serve`, `check_config`, `subscribe`, with
//! `forward` for its `--forward`, and `wait`); `prepare` loads what serving
//! and checking share, `logging` sets up the daemon's logs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check_config;
// `subscribe --forward`.
mod forward;
mod logging;
mod prepare;
mod serve;
// The `subscribe` and `wait` commands (clients, not part of the library).
mod subscribe;
mod wait;

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
    Subscribe(Box<subscribe::SubscribeArgs>),
    /// Wait for the first event of a subscription (and of --commit), print
    /// it and exit: 0 when it came, 1 on --timeout, 2 when refused.
    Wait(Box<wait::WaitArgs>),
}

/// Exit status for a configuration the daemon refuses.
const EXIT_CONFIG: u8 = 2;

/// The runtime `builder` makes, or the failure already reported.
fn runtime(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("hookfan: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let check = match cli.command {
        Some(Command::Subscribe(args)) => return subscribe::run(*args),
        Some(Command::Wait(args)) => return wait::run(*args),
        Some(Command::CheckConfig) => true,
        None => false,
    };
    let Some(path) = cli.config.clone() else {
        eprintln!("hookfan: --config PATH is required (try config/hookfan.toml)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let prepared = prepare::prepare(&path, cli.listen);
    if check {
        return check_config::run(&path, prepared);
    }
    match prepared {
        Ok(p) => serve::run(p, path, cli.listen),
        Err(errors) => {
            eprint!("hookfan: {errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
