//! A webhook receiver like a developer's local server: a real HTTP/1.1
//! server on 127.0.0.1 that records every request and answers each with
//! the status the test chooses; it can be stopped (listener and every
//! connection closed) and started again on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

/// One request as received, with the status it was answered.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl Received {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

type Answer = Arc<dyn Fn(&HeaderMap) -> u16 + Send + Sync>;

pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    answer: Answer,
    /// The accept loop, and every connection it started: aborted by
    /// `stop`.
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn start() -> Receiver {
        Self::answering(|_| 200).await
    }

    /// A receiver answering each request with `answer(its headers)`.
    pub async fn answering(answer: impl Fn(&HeaderMap) -> u16 + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            answer: Arc::new(answer),
            accept: None,
            conns: Arc::default(),
        };
        r.serve(listener);
        r
    }

    /// `http://ADDR/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// Closes the listener, then every connection: connecting is refused.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests once there are `n` (60 s at most).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} requests received",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn serve(&mut self, listener: TcpListener) {
        let (got, answer, conns) = (self.got.clone(), self.answer.clone(), self.conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (got, answer) = (got.clone(), answer.clone());
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (got, answer) = (got.clone(), answer.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            let status = answer(&parts.headers);
                            got.lock().unwrap().push(Received {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                                status,
                            });
                            let mut resp = hyper::Response::new(Full::new(Bytes::from("ok\n")));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    },
                );
                let conn = tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
                conns.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.accept = Some(accept);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(a) = &self.accept {
            a.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}
