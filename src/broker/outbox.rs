//! A client's bounded outbound queue: filled by its shard thread, drained by
//! its connection task.
//!
//! One small mutex guards the queue, the waker and the closed flag; the shard
//! holds it for a push, the connection for a drain, so it is never contended
//! for longer than a `VecDeque` operation. The queue owns no memory while
//! empty, so an idle client costs only this struct.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use crate::event::Event;
use crate::payloads::PayloadRefusal;

/// A frame on its way to a client: an event (its shared frame and accepted
/// time come with it) or, rarely, a control frame. 16 bytes, so that queues
/// stay small.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// An event's frame.
    Event(Arc<Event>),
    /// An event's frame with its webhook payload (for clients that asked).
    Full(Arc<Event>),
    /// A control frame (pong, close, confirmation, error).
    Control(Box<Bytes>),
}

impl Outgoing {
    /// A control frame, not measured for latency.
    pub fn control(bytes: Bytes) -> Self {
        Outgoing::Control(Box::new(bytes))
    }

    /// An event, as a client that asked for payloads (`full`) or not
    /// receives it.
    pub fn event(e: &Arc<Event>, full: bool) -> Self {
        if full {
            Outgoing::Full(e.clone())
        } else {
            Outgoing::Event(e.clone())
        }
    }

    /// The event, for either kind of event frame.
    pub fn as_event(&self) -> Option<&Arc<Event>> {
        match self {
            Outgoing::Event(e) | Outgoing::Full(e) => Some(e),
            Outgoing::Control(_) => None,
        }
    }

    /// The bytes to write.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Outgoing::Event(e) => e.frame(),
            Outgoing::Full(e) => e.full_frame(),
            Outgoing::Control(b) => b,
        }
    }

    /// When the event was accepted (events only).
    pub fn accepted(&self) -> Option<Instant> {
        self.as_event().map(|e| e.accepted_instant())
    }
}

impl PartialEq for Outgoing {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

/// Why the server closes a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The server is shutting down (close code 1001).
    Shutdown,
    /// The client's queue overflowed under the `disconnect` policy (1008).
    SlowClient,
    /// Disconnected through [`Hub::disconnect`](super::Hub::disconnect) (1000).
    Disconnected,
    /// A recheck of its access refused it (1008, after an error message).
    Revoked(Revocation),
}

/// Why a connected client lost its access when it was checked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revocation {
    /// The token is rejected now (`authentication_failed`).
    TokenRejected,
    /// The token is forbidden now (`access_denied`).
    TokenForbidden,
    /// The user no longer belongs to the subscribed organization
    /// (`access_denied`).
    NotMember,
    /// The client asked for payloads, which its tier may no longer have
    /// (`payload_not_allowed`).
    PayloadNotAllowed(PayloadRefusal),
}

impl Revocation {
    /// The protocol's error code, which is also the close frame's reason.
    pub fn code(self) -> &'static str {
        match self {
            Revocation::TokenRejected => "authentication_failed",
            Revocation::TokenForbidden | Revocation::NotMember => "access_denied",
            Revocation::PayloadNotAllowed(_) => "payload_not_allowed",
        }
    }
}

impl CloseReason {
    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Shutdown => 1001,
            CloseReason::SlowClient | CloseReason::Revoked(_) => 1008,
            CloseReason::Disconnected => 1000,
        }
    }

    /// The close frame's reason text.
    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Shutdown => "server shutting down",
            CloseReason::SlowClient => "client too slow: outbound queue full",
            CloseReason::Disconnected => "disconnected by the server",
            CloseReason::Revoked(why) => why.code(),
        }
    }
}

/// The result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued; the connection task has been woken if it was waiting.
    Queued,
    /// The queue is full; the frame was dropped and counted.
    Full,
    /// The client is closing; the frame was discarded.
    Closed,
}

/// What a drain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// Frames were moved out.
    Frames,
    /// Nothing is left and the client is to be closed for this reason.
    Closed(CloseReason),
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    capacity: usize,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Outgoing>,
    waker: Option<Waker>,
    closed: Option<CloseReason>,
    dropped: u64,
}

/// A drained queue larger than this gives its memory back, so that one burst
/// does not pin a large buffer to an idle client.
const KEEP_CAPACITY: usize = 8;

impl Outbox {
    /// A queue of at most `capacity` frames.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `frame` unless the queue is full or closed.
    pub fn push(&self, frame: Outgoing) -> Push {
        let mut s = self.lock();
        if s.closed.is_some() {
            return Push::Closed;
        }
        if s.frames.len() >= self.capacity {
            s.dropped += 1;
            return Push::Full;
        }
        s.frames.push_back(frame);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Push::Queued
    }

    /// Marks the client for closing. With `discard`, queued frames are
    /// thrown away (a slow client would not read them anyway); otherwise
    /// they are still delivered before the close.
    pub fn close(&self, reason: CloseReason, discard: bool) {
        let mut s = self.lock();
        if s.closed.is_none() {
            s.closed = Some(reason);
        }
        if discard {
            s.frames = VecDeque::new();
        }
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Marks the client for closing with `last` as the only frame it still
    /// gets (an error message): what was queued is thrown away. A client
    /// already closing keeps its first reason.
    pub fn close_with(&self, reason: CloseReason, last: Outgoing) {
        let mut s = self.lock();
        if s.closed.is_some() {
            return;
        }
        s.closed = Some(reason);
        s.frames = VecDeque::from([last]);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the client has been marked for closing.
    pub fn is_closing(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Frames dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Moves every queued frame to the back of `out`; when there are none,
    /// reports a close, or registers `cx` to be woken by the next push.
    pub fn poll_drain(&self, cx: &mut Context<'_>, out: &mut VecDeque<Outgoing>) -> Poll<Drained> {
        let mut s = self.lock();
        if !s.frames.is_empty() {
            if out.is_empty() && s.frames.capacity() > out.capacity() {
                std::mem::swap(out, &mut s.frames);
            } else {
                out.extend(s.frames.drain(..));
            }
            if s.frames.capacity() > KEEP_CAPACITY {
                s.frames = VecDeque::new();
            }
            return Poll::Ready(Drained::Frames);
        }
        if let Some(reason) = s.closed {
            return Poll::Ready(Drained::Closed(reason));
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(n: u8) -> Outgoing {
        Outgoing::control(Bytes::from(vec![n]))
    }

    #[test]
    fn bounded_and_counts_drops() {
        let o = Outbox::new(2);
        assert_eq!(o.push(frame(1)), Push::Queued);
        assert_eq!(o.push(frame(2)), Push::Queued);
        assert_eq!(o.push(frame(3)), Push::Full);
        assert_eq!(o.dropped(), 1);
        let w = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(w.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = VecDeque::new();
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Frames)
        );
        assert_eq!(out, [frame(1), frame(2)]);
    }

    #[test]
    fn a_waiting_drain_is_woken_once_per_batch() {
        let o = Outbox::new(8);
        let w = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(w.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out = VecDeque::new();
        assert_eq!(o.poll_drain(&mut cx, &mut out), Poll::Pending);
        o.push(frame(1));
        o.push(frame(2));
        assert_eq!(
            w.0.load(Ordering::SeqCst),
            1,
            "second push finds no waiting drain"
        );
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Frames)
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn close_delivers_queued_frames_first_unless_discarded() {
        let o = Outbox::new(8);
        o.push(frame(1));
        o.close(CloseReason::Shutdown, false);
        assert_eq!(o.push(frame(2)), Push::Closed);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut out = VecDeque::new();
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Frames)
        );
        assert_eq!(out, [frame(1)]);
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Closed(CloseReason::Shutdown))
        );

        let o = Outbox::new(8);
        o.push(frame(1));
        o.close(CloseReason::SlowClient, true);
        let mut out = VecDeque::new();
        assert_eq!(
            o.poll_drain(&mut cx, &mut out),
            Poll::Ready(Drained::Closed(CloseReason::SlowClient))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn memory_is_returned_after_a_burst() {
        let o = Outbox::new(256);
        for i in 0..200 {
            o.push(frame(i as u8));
        }
        let mut out = VecDeque::with_capacity(4);
        out.push_back(frame(0));
        let mut cx = Context::from_waker(Waker::noop());
        let _ = o.poll_drain(&mut cx, &mut out);
        assert_eq!(o.lock().frames.capacity(), 0);
    }
}
