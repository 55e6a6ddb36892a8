//! `hookfan subscribe --forward URL`: each event's webhook POSTed to a
//! server of one's own, in order, one at a time, retried until it is
//! answered (see [`hookfan::client::Forwarder`]).
//!
//! stdout gets one line per event once it is done with (forwarded, or
//! skipped and why); stderr gets each failed attempt and the warnings.
//! The caller saves the position only after [`deliver`] returns, as with
//! `--exec`: a stopped receiver, or a stopped `hookfan subscribe`, loses
//! nothing.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookfan::client::{Attempt, ForwardBackoff, ForwardSecret, Forwarder, ReceivedEvent};

use crate::subscribe::EXIT_REFUSED;

/// The forwarder `--forward URL` asks for, signing with the secret of
/// `secret_file` when given (else warning, once, that it will not sign);
/// `Err` is the exit status (2), the problem already printed.
pub fn forwarder(
    url: &str,
    secret_file: Option<&Path>,
    timeout: Duration,
) -> Result<Forwarder, ExitCode> {
    let refused = |e: &dyn std::fmt::Display| {
        eprintln!("hookfan: {e}");
        ExitCode::from(EXIT_REFUSED)
    };
    let secret = secret_file
        .map(ForwardSecret::from_file)
        .transpose()
        .map_err(|e| refused(&e))?;
    let f = Forwarder::new(url, secret.clone(), timeout).map_err(|e| refused(&e))?;
    if secret.is_none() {
        eprintln!(
            "hookfan: warning: no --forward-secret-file: the webhooks forwarded to {url} carry no X-Hub-Signature-256, so the receiver cannot tell them from anyone else's requests"
        );
    }
    Ok(f)
}

/// Forwards `e`'s payload until it is answered: a 2xx is done, another
/// answer but a 5xx is skipped, and a 5xx, a connection failure or a
/// timeout is tried again after `backoff`'s delay, forever.
pub async fn deliver(f: &Forwarder, backoff: ForwardBackoff, mut e: ReceivedEvent) {
    let who = describe(&e);
    let Some(range) = e.payload_range() else {
        println!("skipped {who}: no payload (accepted while the server kept none)");
        return;
    };
    // The message's own buffer, sliced: a 25 MiB payload is not copied.
    let body = Bytes::from(std::mem::take(&mut e.json).into_bytes()).slice(range);
    let mut failures = 0u32;
    loop {
        let start = Instant::now();
        let attempt = f.send(&e, body.clone()).await;
        let ms = start.elapsed().as_millis();
        match attempt {
            Attempt::Delivered(status) => {
                println!("forwarded {who} status={status} ms={ms}");
                return;
            }
            Attempt::Rejected(status) => {
                println!("skipped {who} status={status} ms={ms} (refused; not retried)");
                return;
            }
            Attempt::Failed(why) => {
                failures = failures.saturating_add(1);
                let wait = backoff.delay(failures);
                eprintln!(
                    "hookfan: --forward: {who} attempt {failures} failed after {ms} ms: {why}; trying again in {:.1} s",
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// `delivery=ID type=TYPE seq=N`, for the lines about `e`.
fn describe(e: &ReceivedEvent) -> String {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let seq = e.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
    format!(
        "delivery={} type={} seq={seq}",
        or_dash(&e.delivery_id),
        or_dash(&e.kind)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_delivery_type_and_seq() {
        let e = ReceivedEvent::parse(
            r#"{"url":"u","type":"push","delivery_id":"d-1","seq":4,"payload":{}}"#,
        )
        .unwrap();
        assert_eq!(describe(&e), "delivery=d-1 type=push seq=4");
        let bare = ReceivedEvent::parse(r#"{"url":"u"}"#).unwrap();
        assert_eq!(describe(&bare), "delivery=- type=- seq=-");
    }
}
