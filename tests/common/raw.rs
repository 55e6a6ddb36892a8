//! A raw HTTP/1.1 client over TCP: requests written byte for byte (a head
//! without its body, a declared length never sent), answers read one at a
//! time, and whether the server closed the connection.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 connection, reading answers one at a time.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// A header's value (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// A connection from the local address `source` (any of 127.0.0.0/8
    /// on Linux), so that the server sees another peer.
    pub async fn connect_from(addr: SocketAddr, source: IpAddr) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        Raw {
            stream: socket.connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// The connection itself, for a test that reads and writes at once.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more into the buffer; `false` at EOF or on a reset.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> Option<bool> {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => None,
            Ok(Ok(0)) | Ok(Err(_)) => Some(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(true)
            }
        }
    }

    /// The next answer, within `limit`.
    pub async fn answer(&mut self, limit: Duration) -> Answer {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(a) = self.take_answer() {
                return a;
            }
            let more = self.fill(deadline).await;
            assert!(more.is_some(), "no answer within {limit:?}");
            assert!(
                more == Some(true),
                "connection closed before a whole answer: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    fn take_answer(&mut self) -> Option<Answer> {
        let text = String::from_utf8_lossy(&self.buf).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n")?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if rest.len() < len {
            return None;
        }
        let answer = Answer {
            status: head[9..12].parse().unwrap(),
            head: head.to_owned(),
            body: rest[..len].to_owned(),
        };
        self.buf.drain(..head.len() + 4 + len);
        Some(answer)
    }

    /// Everything the server sends until it closes the connection; `None`
    /// when it is still open after `limit`.
    pub async fn rest_until_closed(&mut self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.fill(deadline).await? {
                true => continue,
                false => return Some(String::from_utf8_lossy(&self.buf).into_owned()),
            }
        }
    }
}
