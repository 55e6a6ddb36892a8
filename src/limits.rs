//! WebSocket connection limits: per client and in total; the client's IP
//! and the key per-client tables count it under. Failed checks per client
//! are in [`failed_checks`], requests per client and minute in [`rate`].
//!
//! A slot is reserved before the upgrade and released when the returned
//! [`Slot`] is dropped, so it is given back on every path a connection can
//! end by (refused upgrade, handshake timeout, bad subscription, failed auth,
//! disconnect, shutdown) without any path having to remember to.

pub(crate) mod config;
mod failed_checks;
mod metrics;
mod rate;

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use ahash::AHashMap;
use hyper::HeaderMap;
use ipnet::IpNet;

pub use config::LimitsConfig;
pub(crate) use failed_checks::{FailedChecks, TooManyFailures};
pub(crate) use metrics::ClientTables;
pub(crate) use rate::{RateLimited, RequestRate};

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

/// What every per-client table (connection slots, failed token checks)
/// counts a client under: see [`client_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(IpAddr);

/// The key of a client at `ip`: an IPv4 address is its own key; an IPv6
/// address counts as its /64, because one subscriber (one attacker) is
/// routinely given a whole /64 and could otherwise take a fresh allowance
/// per address. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack listener reports for an IPv4 client) is the IPv4 address, so
/// a client counts the same whichever socket it came through.
pub(crate) fn client_key(ip: IpAddr) -> ClientKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !(u128::MAX >> 64);
            ClientKey(IpAddr::V6(Ipv6Addr::from(network)))
        }
    }
}

impl fmt::Display for ClientKey {
    /// `203.0.113.7`, or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Counts connections per client key and in total.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    per_ip: usize,
    total: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    by_key: AHashMap<ClientKey, usize>,
}

/// A reserved connection slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    limiter: Arc<ConnLimiter>,
    key: ClientKey,
}

/// Current counts, for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// Slots held.
    pub total: usize,
    /// Distinct clients holding slots: IPv4 addresses and IPv6 /64s.
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

    /// Reserves a slot for the client `key`, unless a limit is reached.
    pub fn try_acquire(self: &Arc<Self>, key: ClientKey) -> Result<Slot, LimitExceeded> {
        let mut s = self.lock();
        if s.total >= self.total {
            return Err(LimitExceeded::Total);
        }
        let n = s.by_key.entry(key).or_insert(0);
        if *n >= self.per_ip {
            return Err(LimitExceeded::PerIp);
        }
        *n += 1;
        s.total += 1;
        Ok(Slot {
            limiter: self.clone(),
            key,
        })
    }

    pub fn counts(&self) -> ConnCounts {
        let s = self.lock();
        ConnCounts {
            total: s.total,
            ips: s.by_key.len(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.total -= 1;
        if let Some(n) = s.by_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                s.by_key.remove(&self.key);
            }
        }
    }
}

/// The client's IP: the peer address, unless the peer is a trusted proxy, in
/// which case `X-Forwarded-For` is read from the right, skipping trusted
/// proxies; the first address that is not one is the client. Addresses added
/// by anyone else (the leftmost entries a client can forge) are never used
/// unless every hop is trusted.
///
/// Every address is taken in its canonical form: an IPv4-mapped IPv6
/// address (`::ffff:10.0.0.5`) is the IPv4 address, both for matching
/// `trusted` and in the result (which logs show).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !in_networks(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(v) = value.to_str() else {
            return peer;
        };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip.to_canonical()),
                Err(_) => return peer,
            }
        }
    }
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !in_networks(ip, trusted) {
            break;
        }
    }
    client
}

/// Whether the canonical address `ip` (see [`client_ip`]) is in one of
/// `nets`, an IPv4 network written in either form (`10.0.0.0/8` or
/// `::ffff:10.0.0.0/104`): trusted proxies, and the senders webhooks are
/// accepted from.
pub(crate) fn in_networks(ip: IpAddr, nets: &[IpNet]) -> bool {
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    nets.iter()
        .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(s: &str) -> ClientKey {
        client_key(ip(s))
    }

    #[test]
    fn ipv6_clients_count_per_64_and_v4_mapped_as_ipv4() {
        // One /64, whatever the interface identifier.
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2::"));
        // The neighbouring /64s are other clients.
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:1:ffff:ffff:ffff:ffff")
        );
        // IPv4: per address; the mapped form is the same client.
        assert_eq!(key("::ffff:203.0.113.9"), key("203.0.113.9"));
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
        // A v4-mapped address is not grouped with its IPv6 neighbours.
        assert_ne!(key("::ffff:203.0.113.9"), key("::ffff:203.0.113.10"));
        // Logs show the canonical address, or the /64.
        assert_eq!(key("::ffff:203.0.113.9").to_string(), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2:3:4:5:6").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn one_ipv6_64_shares_one_connection_allowance() {
        let l = ConnLimiter::new(2, 100);
        let _a = l.try_acquire(key("2001:db8::1")).unwrap();
        let _b = l.try_acquire(key("2001:db8::2")).unwrap();
        assert_eq!(
            l.try_acquire(key("2001:db8::3")).unwrap_err(),
            LimitExceeded::PerIp
        );
        let _c = l.try_acquire(key("2001:db8:0:1::1")).unwrap();
        let _d = l.try_acquire(key("::ffff:10.0.0.1")).unwrap();
        let _e = l.try_acquire(key("10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(key("10.0.0.1")).unwrap_err(),
            LimitExceeded::PerIp
        );
        assert_eq!(l.counts(), ConnCounts { total: 5, ips: 3 });
    }

    #[test]
    fn per_ip_and_total_limits_and_release_on_drop() {
        let l = ConnLimiter::new(2, 3);
        let a1 = l.try_acquire(key("10.0.0.1")).unwrap();
        let a2 = l.try_acquire(key("10.0.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(key("10.0.0.1")).unwrap_err(),
            LimitExceeded::PerIp
        );
        let b1 = l.try_acquire(key("10.0.0.2")).unwrap();
        assert_eq!(
            l.try_acquire(key("10.0.0.3")).unwrap_err(),
            LimitExceeded::Total
        );
        assert_eq!(l.counts(), ConnCounts { total: 3, ips: 2 });
        drop(a1);
        assert!(
            l.try_acquire(key("10.0.0.1")).is_ok(),
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

    #[test]
    fn v4_mapped_addresses_are_ipv4_for_proxies_and_clients() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // A dual-stack listener reports the IPv4 proxy in mapped form.
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.5"), &xff("9.9.9.9"), &trusted),
            ip("9.9.9.9")
        );
        // A mapped hop is a trusted proxy too, and the client is canonical.
        assert_eq!(
            client_ip(
                ip("::ffff:10.0.0.5"),
                &xff("::ffff:9.9.9.9, ::ffff:10.1.1.1"),
                &trusted
            ),
            ip("9.9.9.9")
        );
        // An untrusted mapped peer: itself, as IPv4.
        assert_eq!(
            client_ip(ip("::ffff:1.2.3.4"), &xff("9.9.9.9"), &trusted),
            ip("1.2.3.4")
        );
        // Proxies listed in mapped form match IPv4 peers as well.
        let mapped: Vec<IpNet> = vec!["::ffff:10.0.0.0/104".parse().unwrap()];
        assert_eq!(
            client_ip(ip("10.0.0.5"), &xff("9.9.9.9"), &mapped),
            ip("9.9.9.9")
        );
        // IPv6 proxies and clients are untouched.
        let v6: Vec<IpNet> = vec!["fd00::/8".parse().unwrap()];
        assert_eq!(
            client_ip(ip("fd00::5"), &xff("2001:db8::7"), &v6),
            ip("2001:db8::7")
        );
    }
}
