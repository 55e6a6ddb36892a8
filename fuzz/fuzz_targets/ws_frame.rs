//! The decoder of the client's WebSocket frames (`ws::codec`), fed the
//! same bytes twice: whole, and cut into chunks while pausing after every
//! message (as the session does during the handshake). Both must give the
//! same messages, then the same protocol error or the same leftover state.
//!
//! Input: `[mode][bytes as read from the socket...]`. The mode's low 2 bits
//! pick the message limit, the next 4 the chunk length (1..=15; 0: a length
//! per chunk, 1..=16, taken from the input's own bytes).

#![no_main]

use hookfan::fuzzing::{WsDecoder, WsMessage};
use libfuzzer_sys::fuzz_target;

/// The session's limit (8 KiB), and smaller ones that fragments reach.
const LIMITS: [usize; 4] = [8192, 125, 16, 0];

/// What feeding the input gave: the messages, and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<WsMessage>,
    end: Result<bool, (u16, &'static str)>,
}

/// What any message handed to the session must be.
fn check(m: &WsMessage, limit: usize) {
    match m {
        WsMessage::Text(t) => assert!(t.len() <= limit, "text of {} bytes", t.len()),
        WsMessage::Binary(b) => assert!(b.len() <= limit, "binary of {} bytes", b.len()),
        WsMessage::Ping(p) => assert!(p.len() <= 125, "ping of {} bytes", p.len()),
        WsMessage::Close(Some(code)) => {
            assert!(matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999))
        }
        _ => {}
    }
}

fn whole(limit: usize, input: &[u8]) -> Outcome {
    let mut d = WsDecoder::new(limit);
    let mut messages = Vec::new();
    let end = d
        .feed(&mut input.to_vec(), |m| {
            messages.push(m);
            true
        })
        .map(|()| d.has_partial());
    Outcome { messages, end }
}

fn chunked(limit: usize, input: &[u8], chunk: impl Fn(usize) -> usize) -> Outcome {
    let mut d = WsDecoder::new(limit);
    let mut messages = Vec::new();
    let mut at = 0;
    let mut i = 0;
    let end = loop {
        let n = chunk(i).clamp(1, 16).min(input.len() - at);
        let mut piece = input[at..at + n].to_vec();
        at += n;
        i += 1;
        // Pause after each message; an empty feed resumes.
        let mut fed = d.feed(&mut piece, |m| {
            messages.push(m);
            false
        });
        let mut seen = usize::MAX;
        while fed.is_ok() && seen != messages.len() {
            seen = messages.len();
            fed = d.feed(&mut [], |m| {
                messages.push(m);
                false
            });
        }
        if let Err(e) = fed {
            break Err(e);
        }
        if at == input.len() {
            break Ok(d.has_partial());
        }
    };
    Outcome { messages, end }
}

fuzz_target!(|data: &[u8]| {
    let [mode, input @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(mode & 3)];
    let step = usize::from((mode >> 2) & 0x0f);
    let a = whole(limit, input);
    a.messages.iter().for_each(|m| check(m, limit));
    let b = if step == 0 {
        chunked(limit, input, |i| {
            usize::from(input.get(i).copied().unwrap_or(1) % 16 + 1)
        })
    } else {
        chunked(limit, input, |_| step)
    };
    assert_eq!(a, b, "whole vs chunked with mode {mode:#04x}");
});
