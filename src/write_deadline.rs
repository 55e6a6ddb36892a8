//! A deadline on stalled writes for a connection served by hyper, which has
//! none of its own: a client that stops reading a response (a long
//! `/events` stream, a webhook answer) would otherwise hold its connection,
//! and what hyper buffered for it, for as long as TCP lets it.
//!
//! The wrapper costs nothing while writes go through: its timer is made
//! only when a write finds the socket full, and dropped at the next write
//! that makes progress. An upgraded WebSocket connection is unwrapped
//! (the session keeps its own write timeout).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io` whose writes fail with `TimedOut` once they have made no progress
/// for `limit`.
pub struct WriteDeadline<I> {
    io: I,
    limit: Duration,
    /// Set while a write waits on a full socket.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> WriteDeadline<I> {
    pub fn new(io: I, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    /// The wrapped connection.
    pub fn into_inner(self) -> I {
        self.io
    }

    /// Called when a write found the socket full: arms the deadline, or
    /// fails once it has passed.
    fn waiting(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no write progress within {} s", limit.as_secs()),
            )),
            Poll::Pending => Ok(()),
        }
    }

    /// Passes a write's result on, tracking whether it is stalled.
    fn track<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                self.waiting(cx)?;
                Poll::Pending
            }
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.track(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_makes_no_progress_fails_at_the_limit() {
        // A peer that never reads: a 64 KiB pipe fills up.
        let (near, _far) = tokio::io::duplex(64 * 1024);
        let mut io = WriteDeadline::new(near, Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        let chunk = vec![0u8; 16 * 1024];
        let err = loop {
            if let Err(e) = io.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (near, mut far) = tokio::io::duplex(1024);
        let mut io = WriteDeadline::new(near, Duration::from_secs(10));
        // Reads 1 KiB every 5 s: each write waits, none for 10 s.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            while total < 8 * 1024 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                total += far.read(&mut buf).await.unwrap();
            }
        });
        io.write_all(&[1u8; 8 * 1024]).await.unwrap();
        drop(io);
        reader.await.unwrap();
    }
}
