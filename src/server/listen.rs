//! Sockets: binding a listener, the one accept loop every listener runs
//! (the main one, plain or TLS, the metrics one and the redirect one), and
//! HTTP/1.1 over an accepted connection until the server stops.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Phase;

/// Pending connections the kernel may queue before `accept`: a reconnect
/// storm of thousands of clients must not overflow it (Linux caps it at
/// `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr`; the error names the address.
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    bind(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// [`listen`] when `addr` is set.
pub(super) fn listen_if(addr: Option<SocketAddr>) -> io::Result<Option<TcpListener>> {
    addr.map(listen).transpose()
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until the task is aborted, serving each with
/// `serve` on a task of its own.
pub(super) async fn accept_loop<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(serve(stream, peer));
    }
}

/// Serves one HTTP connection until it ends, or until the server has
/// stopped (then it is closed once its request in flight is answered).
/// While draining, connections stay open so that every request, on a
/// connection old or new, gets its 503 rather than a reset.
pub(super) async fn serve_http<I, S, B>(
    stream: I,
    service: S,
    header_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B> + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = phase.wait_for(|p| *p == Phase::Stopped) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
