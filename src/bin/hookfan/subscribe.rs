//! `hookfan subscribe`: prints (or runs a command for, or forwards the
//! webhook of) every event of a subscription, surviving restarts,
//! failovers and network blips; a thin layer over [`hookfan::client`].
//! Part of the binary, not the library.
//! Its connection and subscription options, and the subscriber built from
//! them, are shared with `hookfan wait`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, ValueEnum};
use hookfan::Token;
use hookfan::client::{
    ClientConfig, ClientError, ForwardBackoff, Forwarder, Position, ReceivedEvent, Subscriber,
    SubscriptionRequest, Update,
};
use tokio::io::AsyncWriteExt;

/// Exit status: the server refused in a way retrying cannot fix, the
/// token would have been sent unencrypted to another machine, or
/// `--forward` cannot work (its URL or secret file).
pub(crate) const EXIT_REFUSED: u8 = 2;
/// Exit status: events may have been missed (`--on-gap exit`).
const EXIT_GAP: u8 = 3;

/// Where and how to connect: shared by `subscribe` and `wait`.
#[derive(Args)]
pub struct ConnectionArgs {
    /// Server URL, ws://HOST:PORT or wss://HOST:PORT (`/ws` is added when
    /// there is no path). Repeat for failover: tried in order, then
    /// round-robin.
    #[arg(long = "server", value_name = "URL", required = true)]
    servers: Vec<String>,
    /// Environment variable holding the token.
    #[arg(long, value_name = "VAR", default_value = "GITHUB_TOKEN")]
    token_env: String,
    /// File holding the token (first line).
    #[arg(long, value_name = "PATH", conflicts_with = "token_cmd")]
    token_file: Option<PathBuf>,
    /// Command printing the token (run with `sh -c`), e.g. `gh auth token`.
    #[arg(long, value_name = "CMD")]
    token_cmd: Option<String>,
    /// Silence from the server this long (seconds) means a dead
    /// connection: twice the server's `server.ping_interval_s` (54 s by
    /// default).
    #[arg(long, value_name = "SECONDS", default_value_t = 108,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout: u64,
    /// Send the token over ws:// (unencrypted) to a host that is not
    /// loopback; without it such a server is refused.
    #[arg(long)]
    allow_insecure: bool,
    /// Connection status on stderr too (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// What to subscribe to: shared by `subscribe` and `wait`.
#[derive(Args)]
pub struct SubscriptionArgs {
    /// Organization to subscribe to (`*`: every organization of the token).
    #[arg(long)]
    org: Option<String>,
    /// A pull request URL to subscribe to (repeatable).
    #[arg(long = "pr", value_name = "URL")]
    prs: Vec<String>,
    /// A repository, OWNER/REPO, to subscribe to (repeatable): only its
    /// events; alone, every event of it.
    #[arg(long = "repository", value_name = "OWNER/REPO")]
    repositories: Vec<String>,
    /// Only events that involve the token's user.
    #[arg(long)]
    user_events: bool,
    /// Event types, comma-separated, each TYPE or TYPE.ACTION (e.g.
    /// pull_request.closed); default: the server's.
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    event_types: Vec<String>,
}

impl SubscriptionArgs {
    pub(crate) fn request(&self) -> SubscriptionRequest {
        SubscriptionRequest {
            organization: self.org.clone().unwrap_or_default(),
            pull_requests: self.prs.clone(),
            user_events_only: self.user_events,
            event_types: self.event_types.clone(),
            repositories: self.repositories.clone(),
            include_payload: false,
        }
    }
}

#[derive(Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    subscription: SubscriptionArgs,
    /// How each event is printed.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Keep the last position in this file (written atomically), and
    /// resume from it when started again.
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// What to do when events may have been missed.
    #[arg(long, value_enum, default_value_t = OnGap::Continue)]
    on_gap: OnGap,
    /// Run CMD (`sh -c`) once per event, in order, with the event on stdin
    /// and HOOKFAN_URL, HOOKFAN_TYPE, HOOKFAN_DELIVERY_ID, HOOKFAN_SEQ set,
    /// instead of printing it.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// POST each event's webhook to URL (http:// or https://), byte for
    /// byte with GitHub's headers, in order, retried until answered,
    /// instead of printing it; asks the server for payloads
    /// (`include_payload`).
    #[arg(long, value_name = "URL", conflicts_with = "exec")]
    forward: Option<String>,
    /// Sign the forwarded webhooks (X-Hub-Signature-256) with the secret
    /// in FILE's first line, as GitHub signs with yours.
    #[arg(long, value_name = "FILE", requires = "forward")]
    forward_secret_file: Option<PathBuf>,
    /// Time for each forward attempt (connect, send, answer), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    forward_timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The event as received.
    Json,
    /// Time, type and URL.
    Text,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnGap {
    /// Say so on stderr and go on.
    Continue,
    /// Say so on stderr and exit with status 3.
    Exit,
}

/// Runs the command until a refusal, a gap (with `--on-gap exit`), or a
/// signal.
pub fn run(args: SubscribeArgs) -> ExitCode {
    match crate::runtime(&mut tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime.block_on(subscribe(args)),
        Err(code) => code,
    }
}

async fn subscribe(args: SubscribeArgs) -> ExitCode {
    let forwarder = match &args.forward {
        Some(url) => {
            let timeout = Duration::from_secs(args.forward_timeout);
            let secret = args.forward_secret_file.as_deref();
            match crate::forward::forwarder(url, secret, timeout) {
                Ok(f) => Some(f),
                Err(code) => return code,
            }
        }
        None => None,
    };
    let position = match args.state_file.as_deref().map(load_state).transpose() {
        Ok(p) => p.flatten(),
        Err(e) => {
            eprintln!("hookfan: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut request = args.subscription.request();
    request.include_payload = forwarder.is_some();
    let mut sub = match subscriber(&args.connection, request, position).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    loop {
        let update = match sub.next().await {
            Ok(u) => u,
            Err(e) => return failure(e),
        };
        match update {
            Update::Event(e) => handle_event(&args, &sub, forwarder.as_ref(), e).await,
            Update::Gap(g) => {
                eprintln!("hookfan: {}", g.describe());
                if args.on_gap == OnGap::Exit {
                    return ExitCode::from(EXIT_GAP);
                }
            }
            other => report(&other, args.connection.verbose),
        }
    }
}

/// The exit status for an error of the subscriber, reported on stderr: a
/// refusal retrying cannot fix is [`EXIT_REFUSED`].
pub(crate) fn failure(e: ClientError) -> ExitCode {
    match e {
        ClientError::Refused { message, code } => {
            eprintln!("hookfan: the server refused the subscription: {message} ({code})");
            ExitCode::from(EXIT_REFUSED)
        }
        e => {
            eprintln!("hookfan: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reports a connection update on stderr: the server's warnings always,
/// the rest with `-v`. Events and gaps are the caller's.
pub(crate) fn report(update: &Update, verbose: u8) {
    match update {
        Update::Connected {
            server,
            resumed,
            warnings,
        } => {
            for w in warnings {
                eprintln!("hookfan: warning from the server: {w}");
            }
            if verbose > 0 {
                let how = match resumed {
                    Some(true) => ", resumed",
                    Some(false) => ", not resumed",
                    None => "",
                };
                eprintln!("hookfan: subscribed on {server}{how}");
            }
        }
        Update::Disconnected {
            server,
            error,
            retry_in,
        } if verbose > 0 => {
            eprintln!(
                "hookfan: {server}: {error}; trying again in {:.1} s",
                retry_in.as_secs_f64()
            );
        }
        _ => {}
    }
}

/// The subscriber the arguments ask for, from `position` if any; `Err` is
/// the exit status, the problem already printed.
pub(crate) async fn subscriber(
    args: &ConnectionArgs,
    request: SubscriptionRequest,
    position: Option<Position>,
) -> Result<Subscriber, ExitCode> {
    let token = token(args).await.map_err(|e| {
        eprintln!("hookfan: {e}");
        ExitCode::FAILURE
    })?;
    let mut config = ClientConfig::new(args.servers.clone(), token, request);
    config.position = position;
    config.idle_timeout = Duration::from_secs(args.idle_timeout);
    config.allow_insecure = args.allow_insecure;
    Subscriber::new(config).map_err(|e| match e {
        ClientError::InsecureServer { server } => {
            eprintln!(
                "hookfan: {server}: refusing to send the token unencrypted over ws:// to a host that is not loopback; use wss://, or --allow-insecure to send it anyway"
            );
            ExitCode::from(EXIT_REFUSED)
        }
        e => {
            eprintln!("hookfan: {e}");
            ExitCode::FAILURE
        }
    })
}

/// Prints the event, runs `--exec` for it or forwards it, then saves the
/// position.
async fn handle_event(
    args: &SubscribeArgs,
    sub: &Subscriber,
    forwarder: Option<&Forwarder>,
    e: ReceivedEvent,
) {
    match (&args.exec, forwarder) {
        (Some(cmd), _) => execute(cmd, &e).await,
        (None, Some(f)) => crate::forward::deliver(f, ForwardBackoff::default(), e).await,
        (None, None) => print_event(&e, args.format),
    }
    // Committed only once the event was printed, handled or forwarded
    // (or skipped): a restart resumes after it, never before an event not
    // yet acted on.
    if let (Some(path), Some(p)) = (&args.state_file, sub.position())
        && let Err(e) = save_state(path, p)
    {
        eprintln!("hookfan: {e}");
    }
}

/// Why the command could not get its token or keep its position.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run --token-cmd: {0}")]
    TokenCmd(std::io::Error),
    #[error("--token-cmd failed ({0})")]
    TokenCmdFailed(std::process::ExitStatus),
    #[error("no token: ${0} is not set (or use --token-file / --token-cmd)")]
    NoToken(String),
    #[error("the token is empty")]
    EmptyToken,
    #[error("cannot read the state file {}: {source}", path.display())]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {} is not {{\"epoch\":..,\"seq\":..}}: {source}", path.display())]
    BadState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the state file {}: {source}", path.display())]
    WriteState {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The token, from exactly one source; never from the command line itself.
async fn token(args: &ConnectionArgs) -> Result<Token, SubscribeError> {
    let t = if let Some(path) = &args.token_file {
        std::fs::read_to_string(path)
            .map_err(|source| SubscribeError::TokenFile {
                path: path.clone(),
                source,
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    } else if let Some(cmd) = &args.token_cmd {
        let out = tokio::process::Command::new("sh")
            .args(["-c", cmd])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await
            .map_err(SubscribeError::TokenCmd)?;
        if !out.status.success() {
            return Err(SubscribeError::TokenCmdFailed(out.status));
        }
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    } else {
        std::env::var(&args.token_env)
            .map_err(|_| SubscribeError::NoToken(args.token_env.clone()))?
            .trim()
            .to_owned()
    };
    if t.is_empty() {
        return Err(SubscribeError::EmptyToken);
    }
    Ok(Token::new(t))
}

fn print_event(e: &ReceivedEvent, format: Format) {
    let mut out = std::io::stdout().lock();
    let _ = match format {
        Format::Json => writeln!(out, "{}", e.json),
        Format::Text => writeln!(out, "{} {} {}", e.timestamp, e.kind, e.url),
    };
    let _ = out.flush();
}

/// Runs the command for one event and waits for it; a failure is reported
/// and does not stop the stream.
async fn execute(cmd: &str, e: &ReceivedEvent) {
    let seq = e.seq.map(|s| s.to_string()).unwrap_or_default();
    let child = tokio::process::Command::new("sh")
        .args(["-c", cmd])
        .env("HOOKFAN_URL", &e.url)
        .env("HOOKFAN_TYPE", &e.kind)
        .env("HOOKFAN_DELIVERY_ID", &e.delivery_id)
        .env("HOOKFAN_SEQ", &seq)
        .stdin(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(err) => {
            eprintln!("hookfan: cannot run --exec for seq {seq}: {err}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is not an error.
        let _ = stdin.write_all(e.json.as_bytes()).await;
        let _ = stdin.write_all(b"\n").await;
    }
    match child.wait().await {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!(
            "hookfan: --exec failed ({s}) for seq {seq}, delivery {}; going on",
            e.delivery_id
        ),
        Err(err) => eprintln!("hookfan: --exec for seq {seq}: {err}"),
    }
}

fn load_state(path: &Path) -> Result<Option<Position>, SubscribeError> {
    let path_buf = || path.to_path_buf();
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SubscribeError::ReadState {
            path: path_buf(),
            source,
        }),
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| SubscribeError::BadState {
                path: path_buf(),
                source,
            }),
    }
}

/// Writes the position to a temporary file beside `path`, then renames it
/// over `path`: a reader never sees half a file.
fn save_state(path: &Path, p: &Position) -> Result<(), SubscribeError> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(p).expect("serializable"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| SubscribeError::WriteState {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let path = PathBuf::from("/s.json");
        let cases = [
            (
                SubscribeError::TokenFile {
                    path: path.clone(),
                    source: io(),
                },
                "cannot read the token file /s.json: denied",
            ),
            (
                SubscribeError::TokenCmd(io()),
                "cannot run --token-cmd: denied",
            ),
            (
                SubscribeError::NoToken("GITHUB_TOKEN".into()),
                "no token: $GITHUB_TOKEN is not set (or use --token-file / --token-cmd)",
            ),
            (SubscribeError::EmptyToken, "the token is empty"),
            (
                SubscribeError::ReadState {
                    path: path.clone(),
                    source: io(),
                },
                "cannot read the state file /s.json: denied",
            ),
            (
                SubscribeError::WriteState {
                    path: path.clone(),
                    source: io(),
                },
                "cannot write the state file /s.json: denied",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
        let dir = std::env::temp_dir().join(format!("hookfan-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.json");
        assert!(
            load_state(&path).unwrap().is_none(),
            "a missing file is no position"
        );
        std::fs::write(&path, b"nope").unwrap();
        let e = load_state(&path).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        let expected = format!(
            r#"the state file {} is not {{"epoch":..,"seq":..}}: "#,
            path.display()
        );
        assert!(e.starts_with(&expected), "{e}");
    }
}
