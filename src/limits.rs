//! WebSocket connection limits: per client IP and in total.
//!
//! A slot is reserved before the upgrade and released when the returned
//! [`Slot`] is dropped, so it is given back on every path a connection can
//! end by (refused upgrade, handshake timeout, bad subscription, failed auth,
//! disconnect, shutdown) without any path having to remember to.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::AHashMap;
use hyper::HeaderMap;
use ipnet::IpNet;

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitExceeded {
    /// `limits.max_conns_per_ip`.
    PerIp,
    /// `limits.max_conns_total`.
    Total,
}

impl LimitExceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitExceeded::PerIp => "per_ip",
            LimitExceeded::Total => "total",
        }
    }
}

/// Counts connections per IP and in total.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    per_ip: usize,
    total: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    by_ip: AHashMap<IpAddr, usize>,
}

/// A reserved connection slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

/// Current counts, for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// Slots held.
    pub total: usize,
    /// Distinct client IPs holding slots.
    pub ips: usize,
}

impl ConnLimiter {
    pub fn new(per_ip: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_ip,
            total,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a slot for `ip`, unless a limit is reached.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, LimitExceeded> {
        let mut s = self.lock();
        if s.total >= self.total {
            return Err(LimitExceeded::Total);
        }
        let n = s.by_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return Err(LimitExceeded::PerIp);
        }
        *n += 1;
        s.total += 1;
        Ok(Slot {
            limiter: self.clone(),
            ip,
        })
    }

    pub fn counts(&self) -> ConnCounts {
        let s = self.lock();
        ConnCounts {
            total: s.total,
            ips: s.by_ip.len(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.total -= 1;
        if let Some(n) = s.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.by_ip.remove(&self.ip);
            }
        }
    }
}

/// The client's IP: the peer address, unless the peer is a trusted proxy, in
/// which case `X-Forwarded-For` is read from the right, skipping trusted
/// proxies; the first address that is not one is the client. Addresses added
/// by anyone else (the leftmost entries a client can forge) are never used
/// unless every hop is trusted.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(v) = value.to_str() else {
            return peer;
        };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return peer,
            }
        }
    }
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_and_total_limits_and_release_on_drop() {
        let l = ConnLimiter::new(2, 3);
        let a1 = l.try_acquire(ip("10.0.0.1")).unwrap();
        let a2 = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.1")).unwrap_err(),
            LimitExceeded::PerIp
        );
        let b1 = l.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.3")).unwrap_err(),
            LimitExceeded::Total
        );
        assert_eq!(l.counts(), ConnCounts { total: 3, ips: 2 });
        drop(a1);
        assert!(
            l.try_acquire(ip("10.0.0.1")).is_ok(),
            "freed and dropped again at once"
        );
        drop((a2, b1));
        assert_eq!(l.counts(), ConnCounts::default());
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("1.2.3.4"), &xff("9.9.9.9"), &trusted),
            ip("1.2.3.4")
        );
        // A trusted proxy: the rightmost untrusted hop is the client.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &xff("6.6.6.6, 9.9.9.9"), &trusted),
            ip("9.9.9.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), &xff("9.9.9.9, 10.1.1.1"), &trusted),
            ip("9.9.9.9")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &xff("10.2.2.2, 10.1.1.1"), &trusted),
            ip("10.2.2.2")
        );
        // No or malformed header: the peer.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), &xff("not-an-ip"), &trusted),
            ip("10.0.0.5")
        );
        // Several header lines count in order.
        let mut h = xff("7.7.7.7");
        h.append("x-forwarded-for", "8.8.8.8".parse().unwrap());
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &trusted), ip("8.8.8.8"));
    }
}
