//! `hookfan wait`: blocks until the first event of a subscription (and,
//! checked here, of a commit) arrives, prints it and exits: for CI steps
//! such as "wait until the check suite of this commit completed". Shares
//! its connection and subscription options with `hookfan subscribe`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use hookfan::client::{ReceivedEvent, Update};

use crate::subscribe::{ConnectionArgs, SubscriptionArgs, failure, report, subscriber};

/// Shortest `--commit` prefix accepted (git's own default abbreviation).
const MIN_COMMIT: usize = 7;
/// Longest `--commit`: a SHA-256 object name.
const MAX_COMMIT: usize = 64;

#[derive(Args)]
pub struct WaitArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    subscription: SubscriptionArgs,
    /// Only an event whose commit_sha starts with SHA (case-insensitive):
    /// the full SHA, or a prefix of at least 7 hex digits.
    #[arg(long, value_name = "SHA", value_parser = parse_commit)]
    commit: Option<String>,
    /// Give up after this many seconds (exit status 1).
    #[arg(long, value_name = "SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
}

/// `--commit`: 7..64 hex digits, kept lowercased.
fn parse_commit(s: &str) -> Result<String, String> {
    if (MIN_COMMIT..=MAX_COMMIT).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected a commit SHA or a prefix of it: {MIN_COMMIT} to {MAX_COMMIT} hex digits"
        ))
    }
}

/// Whether the event is about `commit` (a lowercased prefix); any event
/// when no commit is asked for.
fn is_about(e: &ReceivedEvent, commit: Option<&str>) -> bool {
    let Some(commit) = commit else {
        return true;
    };
    let sha = serde_json::from_str::<serde_json::Value>(&e.json)
        .ok()
        .and_then(|v| v.get("commit_sha")?.as_str().map(str::to_ascii_lowercase));
    sha.is_some_and(|s| s.starts_with(commit))
}

/// Runs the command: 0 with the event printed, 1 on timeout (or another
/// failure), 2 on a refusal retrying cannot fix.
pub fn run(args: WaitArgs) -> ExitCode {
    match crate::runtime(&mut tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime.block_on(wait(args)),
        Err(code) => code,
    }
}

async fn wait(args: WaitArgs) -> ExitCode {
    let limit = Duration::from_secs(args.timeout);
    match tokio::time::timeout(limit, first_match(&args)).await {
        Ok(code) => code,
        Err(_) => {
            eprintln!(
                "hookfan: no matching event within {} s (--timeout)",
                args.timeout
            );
            ExitCode::FAILURE
        }
    }
}

/// Reads updates until an event matches; reconnects and resumes are the
/// subscriber's, a gap is reported and the wait goes on.
async fn first_match(args: &WaitArgs) -> ExitCode {
    let mut sub = match subscriber(&args.connection, args.subscription.request(), None).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    loop {
        match sub.next().await {
            Ok(Update::Event(e)) if is_about(&e, args.commit.as_deref()) => {
                println!("{}", e.json);
                return ExitCode::SUCCESS;
            }
            Ok(Update::Event(_)) => {}
            Ok(Update::Gap(g)) => eprintln!(
                "hookfan: warning: {}; the awaited event may have been one of them, still waiting",
                g.describe()
            ),
            Ok(other) => report(&other, args.connection.verbose),
            Err(e) => return failure(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> ReceivedEvent {
        ReceivedEvent::parse(json).expect("an event")
    }

    #[test]
    fn commit_is_7_to_64_hex_digits_lowercased() {
        assert_eq!(parse_commit("ABCDEF0").unwrap(), "abcdef0");
        assert!(parse_commit(&"a".repeat(64)).is_ok());
        for bad in ["abcdef", "abcdefg", "", &"a".repeat(65), "abc def0"] {
            assert_eq!(
                parse_commit(bad).unwrap_err(),
                "expected a commit SHA or a prefix of it: 7 to 64 hex digits",
                "{bad}"
            );
        }
    }

    #[test]
    fn an_event_is_about_a_commit_its_sha_starts_with() {
        let e = event(r#"{"url":"u","commit_sha":"5F3C8E1A9b"}"#);
        assert!(is_about(&e, None));
        assert!(is_about(&e, Some("5f3c8e1")));
        assert!(is_about(&e, Some("5f3c8e1a9b")));
        assert!(!is_about(&e, Some("5f3c8e2")));
        assert!(!is_about(&e, Some("5f3c8e1a9b0")));
        assert!(!is_about(&event(r#"{"url":"u"}"#), Some("5f3c8e1")));
    }
}
