//! `webhook.allowed_sources`: the senders `POST /webhook` is accepted from,
//! checked on the request head before anything else (after the method).
//!
//! The list holds CIDRs and/or the word `github`, which stands for the
//! `hooks` ranges GitHub publishes at `GET {auth.github_api_url}/meta`
//! (`meta.rs`), fetched at start and refreshed in the background
//! (`refresh.rs`). Until a first list is known a sender outside the CIDRs
//! is answered 503 (GitHub records the failure and the redelivery sweeper
//! recovers it), never 200; a failed refresh keeps the last good list.
//! A request reads the list under a read lock, once.

mod meta;
mod refresh;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits::in_networks;
pub(crate) use meta::RefresherError;
pub(crate) use refresh::Refresher;

/// One entry of `webhook.allowed_sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedSource {
    /// `"github"`: the `hooks` ranges of `GET {auth.github_api_url}/meta`.
    Github,
    /// A network; a single address (`192.0.2.1`) is its /32 or /128.
    Net(IpNet),
}

impl FromStr for AllowedSource {
    type Err = String;

    /// `"github"`, a CIDR, or a single address; the error names the entry.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "github" {
            return Ok(Self::Github);
        }
        let net = if s.contains('/') {
            s.parse::<IpNet>().ok()
        } else {
            s.parse::<IpAddr>().ok().map(IpNet::from)
        };
        net.map(Self::Net).ok_or_else(|| {
            format!(
                "{s:?} is not a CIDR (like \"192.30.252.0/22\" or \"2606:50c0::/32\"), \
                 an IP address or \"github\""
            )
        })
    }
}

impl fmt::Display for AllowedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Github => f.write_str("github"),
            Self::Net(n) => n.fmt(f),
        }
    }
}

impl Serialize for AllowedSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AllowedSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Why a sender is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Outside every range in force: 403.
    Forbidden,
    /// Outside the CIDRs, and GitHub's ranges not fetched yet: 503, with
    /// the seconds until the next fetch (at least 1).
    Unknown { retry_after_s: u64 },
}

/// The senders admitted: the CIDRs of the list, and GitHub's ranges when
/// the list names `github`. Shared by the endpoint (reads) and the
/// [`Refresher`] (writes).
pub(crate) struct Sources {
    fixed: Vec<IpNet>,
    /// `Some` when the list names `github`: its ranges, once fetched.
    github: Option<RwLock<Option<Vec<IpNet>>>>,
    /// Fetches of GitHub's ranges that succeeded / failed.
    pub(super) refreshes_ok: AtomicU64,
    pub(super) refreshes_failed: AtomicU64,
    /// Unix time of the last fetch that succeeded (0: none yet).
    pub(super) last_refresh: AtomicU64,
    /// Unix time of the next fetch, for `Retry-After`.
    next_fetch: AtomicU64,
}

impl Sources {
    /// The senders `list` describes; `None` when it is empty (any sender).
    pub(crate) fn new(list: &[AllowedSource]) -> Option<Self> {
        if list.is_empty() {
            return None;
        }
        let fixed = list
            .iter()
            .filter_map(|s| match s {
                AllowedSource::Net(n) => Some(*n),
                AllowedSource::Github => None,
            })
            .collect();
        let github = list.contains(&AllowedSource::Github);
        Some(Self {
            fixed,
            github: github.then(|| RwLock::new(None)),
            refreshes_ok: AtomicU64::new(0),
            refreshes_failed: AtomicU64::new(0),
            last_refresh: AtomicU64::new(0),
            next_fetch: AtomicU64::new(0),
        })
    }

    /// Whether GitHub's ranges are part of the list (and must be fetched).
    pub(crate) fn names_github(&self) -> bool {
        self.github.is_some()
    }

    /// Admits the sender `ip` (canonical, as [`crate::limits::client_ip`]
    /// gives it), or says why not.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if in_networks(ip, &self.fixed) {
            return Ok(());
        }
        let Some(github) = self.github() else {
            return Err(Refused::Forbidden);
        };
        match github.as_deref() {
            Some(nets) if in_networks(ip, nets) => Ok(()),
            Some(_) => Err(Refused::Forbidden),
            None => Err(Refused::Unknown {
                retry_after_s: self
                    .next_fetch
                    .load(Relaxed)
                    .saturating_sub(unix_now())
                    .max(1),
            }),
        }
    }

    /// How many ranges are in force: the CIDRs, and GitHub's once fetched.
    pub(crate) fn ranges(&self) -> usize {
        let github = self.github().map_or(0, |g| g.as_ref().map_or(0, Vec::len));
        self.fixed.len() + github
    }

    /// GitHub's ranges, when the list names `github`.
    fn github(&self) -> Option<RwLockReadGuard<'_, Option<Vec<IpNet>>>> {
        let lock = self.github.as_ref()?;
        Some(lock.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `nets` in force as GitHub's ranges; whether they differ from
    /// the ranges in force before.
    fn install(&self, nets: Vec<IpNet>) -> bool {
        let Some(lock) = &self.github else {
            return false;
        };
        let mut held = lock.write().unwrap_or_else(|p| p.into_inner());
        let changed = held.as_ref() != Some(&nets);
        *held = Some(nets);
        changed
    }

    /// Records that the next fetch is `wait` away.
    fn next_fetch_in(&self, wait: Duration) {
        self.next_fetch
            .store(unix_now().saturating_add(wait.as_secs()), Relaxed);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse::<IpAddr>().unwrap().to_canonical()
    }

    fn list(entries: &[&str]) -> Vec<AllowedSource> {
        entries.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn entries_parse_and_print_back() {
        assert_eq!("github".parse(), Ok(AllowedSource::Github));
        let single: AllowedSource = "192.0.2.1".parse().unwrap();
        assert_eq!(single.to_string(), "192.0.2.1/32");
        let single6: AllowedSource = "2001:db8::1".parse().unwrap();
        assert_eq!(single6.to_string(), "2001:db8::1/128");
        let net: AllowedSource = "2606:50c0::/32".parse().unwrap();
        assert_eq!(net.to_string(), "2606:50c0::/32");
        for bad in [
            "10.0.0.0/33",
            "GitHub",
            "",
            "10.0.0",
            "example.com",
            " 10.0.0.0/8",
        ] {
            let e = bad.parse::<AllowedSource>().unwrap_err();
            assert!(
                e.starts_with(&format!("{bad:?} is not a CIDR")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn empty_list_admits_anyone_and_cidrs_alone_never_wait() {
        assert!(Sources::new(&[]).is_none());
        let s = Sources::new(&list(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])).unwrap();
        assert!(!s.names_github());
        assert_eq!(s.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(s.check(ip("::ffff:10.1.2.3")), Ok(()), "v4-mapped as IPv4");
        assert_eq!(s.check(ip("2001:db8:5::1")), Ok(()));
        assert_eq!(s.check(ip("192.0.2.1")), Ok(()));
        assert_eq!(s.check(ip("192.0.2.2")), Err(Refused::Forbidden));
        assert_eq!(s.check(ip("11.0.0.1")), Err(Refused::Forbidden));
        assert_eq!(s.ranges(), 3);
    }

    #[test]
    fn github_ranges_unknown_then_installed_then_replaced() {
        let s = Sources::new(&list(&["github", "10.0.0.0/8"])).unwrap();
        assert!(s.names_github());
        // The CIDRs are known from the start; the rest waits.
        assert_eq!(s.check(ip("10.0.0.1")), Ok(()));
        s.next_fetch_in(Duration::from_secs(30));
        match s.check(ip("140.82.112.1")) {
            Err(Refused::Unknown { retry_after_s }) => {
                assert!((29..=30).contains(&retry_after_s), "{retry_after_s}")
            }
            other => panic!("{other:?}"),
        }
        s.next_fetch_in(Duration::ZERO);
        assert_eq!(
            s.check(ip("140.82.112.1")),
            Err(Refused::Unknown { retry_after_s: 1 })
        );
        assert_eq!(s.ranges(), 1);
        let hooks: Vec<IpNet> = vec!["140.82.112.0/20".parse().unwrap()];
        assert!(s.install(hooks.clone()));
        assert!(!s.install(hooks), "the same list is no change");
        assert_eq!(s.check(ip("140.82.112.1")), Ok(()));
        assert_eq!(s.check(ip("::ffff:140.82.127.255")), Ok(()));
        assert_eq!(s.check(ip("192.30.252.1")), Err(Refused::Forbidden));
        assert_eq!(s.ranges(), 2);
        assert!(s.install(vec!["192.30.252.0/22".parse().unwrap()]));
        assert_eq!(s.check(ip("140.82.112.1")), Err(Refused::Forbidden));
        assert_eq!(s.check(ip("192.30.252.1")), Ok(()));
    }
}
