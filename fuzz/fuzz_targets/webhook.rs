//! The webhook path, as `POST /webhook` runs it once the body is read:
//! signature check, the one parse (with the commit cache), the event, and
//! its frame once sequenced.
//!
//! Input: `[selector][n][n bytes of X-GitHub-Delivery][body...]`. The
//! selector's low 4 bits pick the event type from `KINDS`; with its high bit
//! set the body is first parsed as a `pull_request` too, so that the commit
//! cache has something to resolve check events through.

#![no_main]

use std::time::Duration;

use hookfan::fuzzing::{delivery_id, parse_webhook, sequenced_frame};
use hookfan::{CommitCache, Event, WebhookVerifier, sign};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-webhook-secret";

/// Types with a rule of their own in extraction, then types without.
const KINDS: [&str; 16] = [
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "issue_comment",
    "check_run",
    "check_suite",
    "status",
    "workflow_run",
    "push",
    "ping",
    "issues",
    "workflow_job",
    "release",
    "",
    "made_up",
];

fuzz_target!(|data: &[u8]| {
    let [selector, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n).min(rest.len());
    let (raw_delivery, body) = rest.split_at(n);
    let kind = KINDS[usize::from(selector & 0x0f)];
    // What reaches intake from the header: visible ASCII, else nothing.
    let raw_delivery = std::str::from_utf8(raw_delivery)
        .ok()
        .filter(|s| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
        .unwrap_or("");
    let delivery = delivery_id(raw_delivery);
    assert!(delivery.len() <= 128 && delivery.bytes().all(|b| b.is_ascii_graphic()));

    // Verify: the right signature passes, any other is refused.
    let verifier = WebhookVerifier::new(SECRET);
    let signature = sign(SECRET, body);
    assert!(verifier.verify(Some(signature.as_bytes()), body));
    let mut wrong = signature.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    assert!(!verifier.verify(Some(&wrong), body));
    assert!(!verifier.verify(Some(&signature.as_bytes()[7..]), body));
    assert!(!WebhookVerifier::new(b"").verify(Some(sign(b"", body).as_bytes()), body));

    let cache = CommitCache::new(16, Duration::from_secs(3600));
    if selector & 0x80 != 0 {
        let _ = parse_webhook("pull_request", &delivery, &mut body.to_vec(), &cache);
    }
    // Parsing works in place: the original stays for the checks below.
    let mut buf = body.to_vec();
    let parsed = parse_webhook(kind, &delivery, &mut buf, &cache);

    // A JSON object (as serde_json reads it) is never refused; a body that
    // is not JSON never accepted.
    let reference = serde_json::from_slice::<Value>(body);
    match (&parsed, &reference) {
        (Err(e), Ok(Value::Object(_))) => panic!("valid JSON object refused: {e}"),
        // serde_json's own limits (nesting over 128 levels, numbers beyond
        // f64) are not JSON's.
        (Ok(_), Err(e))
            if !["recursion limit", "number out of range"]
                .iter()
                .any(|limit| e.to_string().contains(limit)) =>
        {
            panic!("invalid JSON accepted: {e}")
        }
        _ => {}
    }
    let Ok(Some(parts)) = parsed else {
        return;
    };
    assert_eq!(parts.kind, kind);
    assert_eq!(parts.delivery_id, delivery);
    assert!(!parts.url.is_empty());

    // The event and its frame: a text frame whose payload is the event's
    // JSON object with its seq.
    let url = parts.url.clone();
    let event = Event::new(parts);
    let payload: Value = serde_json::from_slice(event.payload()).expect("payload is JSON");
    assert_eq!(payload["url"], url.as_str());
    assert_eq!(payload["type"], kind);
    let seq = u64::MAX - u64::from(*selector);
    let frame = sequenced_frame(event, seq);
    assert_eq!(frame[0], 0x81, "FIN + text");
    let (len, at) = match frame[1] {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => (
            usize::try_from(u64::from_be_bytes(frame[2..10].try_into().unwrap())).unwrap(),
            10,
        ),
        l => (usize::from(l), 2),
    };
    assert_eq!(at + len, frame.len());
    let sent: Value = serde_json::from_slice(&frame[at..]).expect("frame payload is JSON");
    assert_eq!(sent["seq"], seq);
    assert_eq!(sent["url"], url.as_str());
});
