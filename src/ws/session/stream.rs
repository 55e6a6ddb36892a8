//! Streaming: frames from the outbox (after a resume's replay) to the
//! socket, the client's messages, pings and timeouts, until either side
//! closes.
//!
//! One `poll_fn` waits on everything (socket readiness through the stream's
//! own waker slots, the outbox, one timer) rather than `select!` over
//! readiness futures: an idle connection's task is several hundred bytes
//! smaller for it.

use std::future::Future;
use std::io;
use std::ops::ControlFlow::{self, Break, Continue};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::super::codec::{self, Message};
use super::super::messages::{self, ClientMessage};
use super::super::wire::Wire;
use super::super::{WsContext, WsOptions};
use super::conn::{CLOSE_GRACE, Conn, ConnError, MAX_IOVECS, ReadOutcome};
use crate::broker::{ClientId, Drained, Outbox, Replay};

/// How streaming ended.
pub(super) struct End {
    pub(super) reason: &'static str,
    /// Events taken from the outbox.
    pub(super) frames: u64,
}
/// What reading from the client found.
enum Input {
    /// Messages handled (or none yet).
    More,
    /// The client sent a close frame with this code.
    Close(Option<u16>),
    /// The client closed the TCP connection.
    Eof,
}

/// What woke the streaming loop.
enum Wake {
    Readable(io::Result<()>),
    Writable(io::Result<()>),
    Drained(Drained),
    Timer,
}

/// The streaming loop's own state: its timers, and how it is ending.
struct State {
    /// Events taken from the outbox (or the replay).
    frames: u64,
    last_read: Instant,
    next_ping: Instant,
    ping_seq: u64,
    /// Set once the server has queued its close frame: the connection then
    /// ends when the client answers, or at this deadline.
    closing: Option<Instant>,
    reason: &'static str,
    /// The client's messages are to be read.
    input_ready: bool,
    /// Alternates which of reading and writing is looked at first, so that
    /// a client flooding us cannot starve its own writes (nor the reverse).
    read_first: bool,
    replay_batches: u32,
}

/// Streams frames from the outbox to the socket and handles the client's
/// messages until the connection ends.
pub(super) async fn stream_events<W: Wire>(
    conn: &mut Conn<W>,
    outbox: &Outbox,
    replay: &mut Option<Box<Replay>>,
    ctx: &WsContext,
    id: ClientId,
) -> End {
    let s = &ctx.settings;
    // Messages may have arrived together with the subscription.
    let mut st = State::new(conn.decoder.has_partial(), s);
    let sleep = tokio::time::sleep_until(st.next_ping);
    tokio::pin!(sleep);

    loop {
        if st.input_ready {
            st.input_ready = false;
            if let Break(end) = st.read_input(conn).await {
                return end;
            }
        }
        // A replay goes first: live events wait in the outbox (under its
        // bound and the slow-client policy) until it is written, at the
        // pace the socket takes it.
        if conn.pending.is_empty()
            && st.closing.is_none()
            && let Some(r) = replay
        {
            if outbox.is_closing() || !r.fill(&mut conn.pending, MAX_IOVECS) {
                replay_ended(ctx, id, r, outbox);
                *replay = None;
            } else {
                if let Break(end) = st.write_taken(conn) {
                    return end;
                }
                // A long replay to a fast reader never waits on the
                // socket: give the runtime thread back now and then.
                st.replay_batches += 1;
                if st.replay_batches.is_multiple_of(16) {
                    Box::pin(tokio::task::yield_now()).await;
                }
                continue;
            }
        }
        let deadline = st.deadline(conn, s);
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        st.read_first = !st.read_first;
        let may_drain = st.closing.is_none() && replay.is_none();
        let wake = next_wake(conn, outbox, st.read_first, may_drain, sleep.as_mut()).await;
        if let Break(end) = st.on_wake(wake, conn, s) {
            return end;
        }
    }
}

/// Counts and logs a replay written to its end (or cut short by the
/// outbox closing).
pub(crate) fn replay_ended(ctx: &WsContext, id: ClientId, r: &Replay, outbox: &Outbox) {
    ctx.hub.count_replayed(r.replayed);
    tracing::info!(
        client = id,
        outcome = "resumed",
        replayed = r.replayed,
        candidates = r.candidates(),
        complete = !outbox.is_closing(),
        "resume replayed"
    );
}

/// Waits for the first of: the socket readable, the socket writable
/// (while frames wait), frames in the outbox (when nothing is being
/// written and `may_drain`), the timer.
fn next_wake<W: Wire>(
    conn: &mut Conn<W>,
    outbox: &Outbox,
    read_first: bool,
    may_drain: bool,
    mut sleep: Pin<&mut Sleep>,
) -> impl Future<Output = Wake> {
    std::future::poll_fn(move |cx| {
        let stream = &conn.stream;
        let writing = conn.writing();
        let read = |cx: &mut std::task::Context<'_>| stream.poll_read_ready(cx).map(Wake::Readable);
        let write = |cx: &mut std::task::Context<'_>| {
            if writing {
                stream.poll_write_ready(cx).map(Wake::Writable)
            } else {
                Poll::Pending
            }
        };
        let first = if read_first { read(cx) } else { write(cx) };
        if first.is_ready() {
            return first;
        }
        let second = if read_first { write(cx) } else { read(cx) };
        if second.is_ready() {
            return second;
        }
        if !writing
            && may_drain
            && let Poll::Ready(d) = outbox.poll_drain(cx, &mut conn.pending)
        {
            return Poll::Ready(Wake::Drained(d));
        }
        sleep.as_mut().poll(cx).map(|()| Wake::Timer)
    })
}

impl State {
    fn new(input_ready: bool, s: &WsOptions) -> Self {
        let last_read = Instant::now();
        Self {
            frames: 0,
            last_read,
            next_ping: last_read + s.ping_interval,
            ping_seq: 0,
            closing: None,
            reason: "closed by client",
            input_ready,
            read_first: true,
            replay_batches: 0,
        }
    }

    fn end(&self, reason: &'static str) -> End {
        End {
            reason,
            frames: self.frames,
        }
    }

    /// When the loop must wake at the latest: the close's grace, else the
    /// read timeout or the next ping; sooner if a write stalls.
    fn deadline<W: Wire>(&self, conn: &Conn<W>, s: &WsOptions) -> Instant {
        let mut deadline = match self.closing {
            Some(d) => d,
            None => (self.last_read + s.read_timeout).min(self.next_ping),
        };
        if conn.writing() {
            deadline = deadline.min(conn.write_progress + s.write_timeout);
        }
        deadline
    }

    /// Starts writing the frames just taken (from the outbox or the
    /// replay), counting them.
    fn write_taken<W: Wire>(&mut self, conn: &mut Conn<W>) -> ControlFlow<End> {
        self.frames += conn.pending.len() as u64;
        if conn.write_batch().is_err() {
            return Break(self.end("write error"));
        }
        Continue(())
    }

    /// Handles what the client sent; ends the loop on its close, its
    /// going away, or a protocol or I/O error.
    async fn read_input<W: Wire>(&mut self, conn: &mut Conn<W>) -> ControlFlow<End> {
        match handle_input(conn, &mut self.last_read) {
            Ok(Input::More) => Continue(()),
            Ok(Input::Eof) => {
                let why = if self.closing.is_some() {
                    self.reason
                } else {
                    "client went away"
                };
                Break(self.end(why))
            }
            Ok(Input::Close(code)) => {
                if self.closing.is_none() {
                    conn.queue(codec::close_frame(code.unwrap_or(1000), ""));
                    // Boxed, like the close below: rare paths must not
                    // grow every idle connection's task.
                    let _ = Box::pin(tokio::time::timeout(CLOSE_GRACE, conn.flush())).await;
                }
                Break(self.end(self.reason))
            }
            Err(ConnError::Protocol(p)) => {
                Box::pin(conn.close(p.close_code(), p.reason())).await;
                Break(self.end(p.reason()))
            }
            Err(ConnError::Io(e)) => {
                tracing::debug!(error = %e, "client connection failed");
                Break(self.end("i/o error"))
            }
        }
    }

    /// Acts on what woke the loop.
    fn on_wake<W: Wire>(
        &mut self,
        wake: Wake,
        conn: &mut Conn<W>,
        s: &WsOptions,
    ) -> ControlFlow<End> {
        match wake {
            Wake::Readable(r) => {
                if r.is_err() {
                    return Break(self.end("read error"));
                }
                self.input_ready = true;
            }
            Wake::Writable(r) => {
                if r.is_err() || conn.write_now().is_err() {
                    return Break(self.end("write error"));
                }
            }
            Wake::Drained(Drained::Frames) => self.write_taken(conn)?,
            Wake::Drained(Drained::Closed(why)) => {
                self.reason = why.text();
                conn.queue(codec::close_frame(why.code(), why.text()));
                self.closing = Some(Instant::now() + CLOSE_GRACE);
            }
            Wake::Timer => return self.on_timer(conn, s),
        }
        Continue(())
    }

    /// The timer fired: the close's grace or a write stalled (the end), the
    /// read timeout (a close 1001), or a ping due.
    fn on_timer<W: Wire>(&mut self, conn: &mut Conn<W>, s: &WsOptions) -> ControlFlow<End> {
        let now = Instant::now();
        if self.closing.is_some_and(|d| now >= d) {
            return Break(self.end(self.reason));
        }
        if conn.writing() && now >= conn.write_progress + s.write_timeout {
            return Break(self.end("write timeout"));
        }
        if self.closing.is_none() && now >= self.last_read + s.read_timeout {
            // 1001 ("going away"), not 1000: clients reconnect on it.
            self.reason = "read timeout";
            let why = format!(
                "read timeout: no message from the client within {} s",
                s.read_timeout.as_secs()
            );
            conn.queue(codec::close_frame(1001, &why));
            self.closing = Some(now + CLOSE_GRACE);
        } else if self.closing.is_none() && now >= self.next_ping {
            // The JSON ping for sprinkler's clients, and a WebSocket
            // ping that any client library answers by itself: its
            // pong counts as activity, like any message.
            self.ping_seq += 1;
            conn.queue(messages::ping_frame(self.ping_seq));
            conn.queue(codec::ping_frame(&self.ping_seq.to_be_bytes()));
            self.next_ping += s.ping_interval;
        }
        Continue(())
    }
}

/// Most replies (pongs) waiting to be written; a client that keeps pinging
/// but never reads is dropped rather than allowed to grow the queue.
const MAX_PENDING_FRAMES: usize = 4096;

/// Reads and handles what the client sent.
fn handle_input<W: Wire>(conn: &mut Conn<W>, last_read: &mut Instant) -> Result<Input, ConnError> {
    let mut replies: Vec<Bytes> = Vec::new();
    let mut close = None;
    let outcome = conn.read_now(|m| {
        *last_read = Instant::now();
        match m {
            Message::Text(t) => {
                if let Ok(msg) = serde_json::from_str::<ClientMessage>(t)
                    && msg.kind.as_deref() == Some("ping")
                {
                    replies.push(messages::pong_frame(msg.seq.as_ref()));
                }
                // pong, keepalive, heartbeat and anything else: accepted, ignored.
            }
            Message::Binary(_) | Message::Pong => {}
            Message::Ping(p) => replies.push(codec::pong_frame(p)),
            Message::Close(code) => {
                close = Some(code);
                return false;
            }
        }
        true
    })?;
    for r in replies {
        conn.queue(r);
    }
    if conn.pending.len() > MAX_PENDING_FRAMES {
        return Err(ConnError::Io(io::ErrorKind::OutOfMemory.into()));
    }
    if conn.writing() {
        conn.write_now().map_err(ConnError::Io)?;
    }
    Ok(match (close, outcome) {
        (Some(code), _) => Input::Close(code),
        (None, ReadOutcome::Eof) => Input::Eof,
        (None, ReadOutcome::Data) => Input::More,
    })
}
