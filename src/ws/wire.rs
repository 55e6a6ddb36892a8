//! The socket a session talks over: plain TCP, or TLS over TCP.
//!
//! A session polls readiness and makes non-blocking reads and vectored
//! writes itself (see codec.rs for why), so a transport is these few
//! operations. Sessions are generic over it: the plain-TCP path compiles to
//! exactly the direct socket calls.

use std::io::{self, IoSlice, Read, Write};
use std::task::{Context, Poll};

use tokio::net::TcpStream;

pub(crate) trait Wire: Send + Sync + 'static {
    /// Reads what is available without waiting (`WouldBlock` if nothing);
    /// `Ok(0)` is the end of the stream.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Takes as much of `bufs` as it can without waiting.
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Sends what the transport itself still holds (TLS records). `Ok(true)`
    /// once nothing is left; `Ok(false)` when the socket is full.
    fn try_flush(&mut self) -> io::Result<bool>;

    /// Whether the transport holds output not yet on the socket.
    fn wants_write(&self) -> bool;

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Wire for TcpStream {
    #[inline]
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }

    #[inline]
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    #[inline]
    fn try_flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    #[inline]
    fn wants_write(&self) -> bool {
        false
    }

    #[inline]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    #[inline]
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }
}

/// TLS over a TCP stream, driven with non-blocking socket calls: records
/// are read into and written out of the rustls connection only when the
/// session reads or writes. Readiness is the socket's: the read side keeps
/// reading records until plaintext comes out or the socket would block, so
/// no plaintext is ever left behind a cleared readiness flag.
pub(crate) struct TlsWire {
    tcp: TcpStream,
    tls: rustls::ServerConnection,
}

impl TlsWire {
    pub(crate) fn new(tcp: TcpStream, tls: rustls::ServerConnection) -> Self {
        Self { tcp, tls }
    }
}

/// The socket as `io::Read`/`io::Write` for rustls, never waiting.
struct Socket<'a>(&'a TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire for TlsWire {
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0): the client sent close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.tls.read_tls(&mut Socket(&self.tcp))? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.tls.process_new_packets() {
                // rustls queued an alert saying why: try to send it.
                let _ = self.try_flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Records already made go first; rustls's buffer stays bounded.
        if !self.try_flush()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write_vectored(bufs)?;
        match self.try_flush() {
            Ok(_) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    fn try_flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Socket(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_read_ready(cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }
}

impl Drop for TlsWire {
    /// Tells the client the stream ended on purpose (best effort).
    fn drop(&mut self) {
        self.tls.send_close_notify();
        let _ = self.try_flush();
    }
}
