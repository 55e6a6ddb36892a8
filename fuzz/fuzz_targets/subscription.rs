//! The client's subscription message, as the WebSocket handshake reads it:
//! parse and validate, the warnings for unknown fields, the routing keys.
//! What is accepted must validate again, and read back the same once
//! written out as JSON.
//!
//! Input: the text of the message (the decoder hands the handshake UTF-8
//! only).

#![no_main]

use hookfan::Subscription;
use hookfan::fuzzing::{pr_keys, subscription_warnings};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sub, unknown) = match Subscription::parse_with_unknown(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(sub.validate(), Ok(()));
    assert!(
        sub.username.is_empty(),
        "username is never read from the client"
    );
    assert_eq!(pr_keys(&sub).len(), sub.pull_requests.len());

    let warnings = subscription_warnings(&unknown);
    let named = unknown.len().min(10);
    assert_eq!(warnings.len(), named + usize::from(unknown.len() > 10));

    // Written out with only the known fields, it reads back the same.
    let mut wire = json!({
        "organization": sub.organization,
        "event_types": sub.event_types,
        "pull_requests": sub.pull_requests,
        "user_events_only": sub.user_events_only,
    });
    if let Some(r) = &sub.resume {
        wire["resume"] = json!({"epoch": r.epoch, "after": r.after});
    }
    let (again, none) = Subscription::parse_with_unknown(&wire.to_string())
        .unwrap_or_else(|e| panic!("{wire} refused: {e}"));
    assert_eq!(again, sub);
    assert!(none.is_empty());
});
