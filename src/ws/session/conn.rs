//! A session's socket: a frame decoder for what the client sends, and the
//! queue of frames to write, written in vectored writes without waiting.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::super::codec::{self, Decoder, Message, ProtocolError};
use super::super::wire::Wire;
use crate::broker::Outgoing;
use crate::metrics::LatencyHistogram;

/// Largest message a client may send (the subscription included).
pub(super) const MAX_MESSAGE: usize = 8192;

/// How long a closing connection waits for the client's close frame.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Most frames written with one system call.
pub(super) const MAX_IOVECS: usize = 64;

/// Bytes read per system call; a client sends small messages.
const READ_CHUNK: usize = 2048;

/// A socket with a frame decoder and a queue of frames to write.
pub(super) struct Conn<W> {
    pub(super) stream: W,
    pub(super) decoder: Decoder,
    /// Bytes hyper read past the upgrade request; decoded before the socket.
    pub(super) prefix: Option<Bytes>,
    /// Frames to write, oldest first.
    pub(super) pending: VecDeque<Outgoing>,
    /// Bytes of `pending[0]` already written.
    written: usize,
    /// When a write last made progress (or pending became non-empty).
    pub(super) write_progress: Instant,
    /// Where event frames' delivery latencies go once written.
    latency: Arc<LatencyHistogram>,
}

pub(super) enum ReadOutcome {
    /// Bytes were decoded (possibly none, on a spurious wakeup).
    Data,
    /// The client closed the connection.
    Eof,
}

impl<W: Wire> Conn<W> {
    pub(super) fn new(stream: W, prefix: Bytes, latency: Arc<LatencyHistogram>) -> Self {
        Self {
            stream,
            decoder: Decoder::new(MAX_MESSAGE),
            prefix: (!prefix.is_empty()).then_some(prefix),
            pending: VecDeque::new(),
            written: 0,
            write_progress: Instant::now(),
            latency,
        }
    }

    /// Queues a control frame (not an event).
    pub(super) fn queue(&mut self, frame: Bytes) {
        if self.pending.is_empty() {
            self.write_progress = Instant::now();
        }
        self.pending.push_back(Outgoing::control(frame));
    }

    /// Reads what is available without waiting and decodes it, together
    /// with any complete frames the decoder held back.
    pub(super) fn read_now(
        &mut self,
        on_message: impl FnMut(Message<'_>) -> bool,
    ) -> Result<ReadOutcome, ConnError> {
        if let Some(prefix) = self.prefix.take() {
            let mut buf = prefix.to_vec();
            self.decoder.feed(&mut buf, on_message)?;
            return Ok(ReadOutcome::Data);
        }
        let mut buf = [0u8; READ_CHUNK];
        let n = match self.stream.try_read(&mut buf) {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(ConnError::Io(e)),
        };
        self.decoder.feed(&mut buf[..n], on_message)?;
        Ok(ReadOutcome::Data)
    }

    /// Writes as much of `pending` as the socket takes now. Returns whether
    /// everything was written.
    pub(super) fn write_now(&mut self) -> io::Result<bool> {
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (i, f) in self.pending.iter().take(MAX_IOVECS).enumerate() {
                let b = f.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.written..] } else { b });
                n += 1;
            }
            let mut wrote = match self.stream.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            self.write_progress = now;
            while wrote > 0 {
                let left = self.pending[0].bytes().len() - self.written;
                if wrote >= left {
                    wrote -= left;
                    self.written = 0;
                    let done = self.pending.pop_front().expect("a frame was being written");
                    if let Some(accepted) = done.accepted() {
                        self.latency
                            .observe(now.into_std().saturating_duration_since(accepted));
                    }
                } else {
                    self.written += wrote;
                    wrote = 0;
                }
            }
        }
        if self.pending.capacity() > 64 {
            self.pending = VecDeque::new();
        }
        match self.stream.try_flush() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            r => r,
        }
    }

    /// Whether anything is waiting to be written: frames, or (TLS) records.
    pub(super) fn writing(&self) -> bool {
        !self.pending.is_empty() || self.stream.wants_write()
    }

    pub(super) async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)).await
    }

    /// Starts writing a batch of frames just moved to `pending`.
    pub(super) fn write_batch(&mut self) -> io::Result<bool> {
        self.write_progress = Instant::now();
        self.write_now()
    }

    /// Writes everything pending, waiting for the socket as needed.
    pub(super) async fn flush(&mut self) -> io::Result<()> {
        while !self.write_now()? {
            std::future::poll_fn(|cx| self.stream.poll_write_ready(cx)).await?;
        }
        Ok(())
    }

    /// Sends a close frame and waits briefly for the client's answer, so that
    /// a final error message is read before the TCP connection goes away.
    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        self.queue(codec::close_frame(code, reason));
        let deadline = Instant::now() + CLOSE_GRACE;
        let _ = tokio::time::timeout_at(deadline, async {
            self.flush().await?;
            loop {
                self.readable().await?;
                let mut closed = false;
                match self.read_now(|m| {
                    closed = matches!(m, Message::Close(_));
                    !closed
                }) {
                    Ok(ReadOutcome::Eof) | Err(_) => return io::Result::Ok(()),
                    Ok(ReadOutcome::Data) if closed => return Ok(()),
                    Ok(ReadOutcome::Data) => {}
                }
            }
        })
        .await;
    }
}

#[derive(Debug)]
pub(super) enum ConnError {
    Io(io::Error),
    Protocol(ProtocolError),
}

impl From<ProtocolError> for ConnError {
    fn from(e: ProtocolError) -> Self {
        ConnError::Protocol(e)
    }
}
