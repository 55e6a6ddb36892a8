//! Reading a server's `/metrics` text.

use std::net::SocketAddr;

use super::request;

/// The value of `name` (with its labels) in a metrics text, if it is there.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of `name` in a metrics text; 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    metric_value(text, name).unwrap_or(0.0)
}

/// The metrics text of the server at `addr` (its public `/metrics`).
pub async fn metrics_text(addr: SocketAddr) -> String {
    request(addr, "GET", "/metrics", &[], Vec::new()).await.1
}

/// The value of a metric of the server at `addr`; 0 when absent.
pub async fn metric_of(addr: SocketAddr, name: &str) -> f64 {
    metric(&metrics_text(addr).await, name)
}
