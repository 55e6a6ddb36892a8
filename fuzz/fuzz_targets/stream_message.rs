//! The cluster stream's message decoder (`cluster::facts::decode`), what
//! every node runs on every message it reads from the stream. Whatever
//! decodes re-encodes to a message that decodes to the same event, and
//! every node builds the same frame from it.
//!
//! Input: a stream message (JSON, version 1; or version 2, the JSON
//! followed by a webhook payload).

#![no_main]

use hookfan::Event;
use hookfan::fuzzing::{
    DecodeError, decode_stream_message, encode_stream_message, sequenced_frames,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts = match decode_stream_message(data) {
        Ok(p) => p,
        Err(DecodeError::UnknownVersion(v)) => {
            assert!(v != 1 && v != 2, "version {v} is known");
            return;
        }
        Err(DecodeError::Malformed(_)) => return,
    };
    assert!(!parts.kind.is_empty() && !parts.url.is_empty());

    let message = encode_stream_message(&parts);
    let again =
        decode_stream_message(&message).unwrap_or_else(|e| panic!("own encoding refused: {e}"));
    // `EventParts` has no `PartialEq`; its `Debug` shows every field.
    assert_eq!(format!("{parts:?}"), format!("{again:?}"));
    assert_eq!(encode_stream_message(&again), message);

    // Both frames, the full one with the payload verbatim, are the same
    // on every node.
    let frames = sequenced_frames(Event::new(parts), 7);
    assert_eq!(frames, sequenced_frames(Event::new(again), 7));
});
