//! Which tier an account is of: the highest among its login's and its
//! organizations' under `tiers.pro` / `tiers.flock`, never below
//! `tiers.default_tier`.

use std::collections::HashSet;

use crate::auth::{Identity, IdentityKind, Tier};
use crate::tier::TiersConfig;

/// `tiers.pro` and `tiers.flock`, lowercased, and `tiers.default_tier`.
pub(super) struct TierLists {
    pro: HashSet<String>,
    flock: HashSet<String>,
    default: Tier,
}

impl TierLists {
    pub(super) fn new(tiers: &TiersConfig) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect();
        Self {
            pro: lower(&tiers.pro),
            flock: lower(&tiers.flock),
            default: tiers.default_tier,
        }
    }

    /// The highest tier among `logins` and `tiers.default_tier`.
    pub(super) fn tier<'a>(&self, logins: impl Iterator<Item = &'a str>) -> Tier {
        let mut tier = self.default;
        for l in logins {
            let l = l.to_ascii_lowercase();
            if self.flock.contains(&l) {
                return Tier::Flock;
            }
            if self.pro.contains(&l) {
                tier = tier.max(Tier::Pro);
            }
        }
        tier
    }

    /// The tier of `id`: of its login (users) and its organizations.
    pub(super) fn tier_of(&self, id: &Identity) -> Tier {
        let login = (id.kind == IdentityKind::User).then_some(id.login.as_str());
        self.tier(login.into_iter().chain(id.orgs.names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::OrgSet;

    fn lists(pro: &[&str], flock: &[&str], default_tier: Tier) -> TierLists {
        TierLists::new(&TiersConfig {
            pro: pro.iter().map(|s| s.to_string()).collect(),
            flock: flock.iter().map(|s| s.to_string()).collect(),
            default_tier,
            ..TiersConfig::default()
        })
    }

    #[test]
    fn an_app_installation_is_of_its_orgs_tier_only() {
        let l = lists(&["app[installation]"], &["BigCorp"], Tier::Free);
        let id = |kind, login: &str| Identity {
            login: login.into(),
            orgs: OrgSet::new(["bigcorp"]),
            tier: Tier::Free,
            kind,
        };
        assert_eq!(l.tier_of(&id(IdentityKind::User, "x")), Tier::Flock);
        let l = lists(&["alice"], &[], Tier::Free);
        assert_eq!(l.tier_of(&id(IdentityKind::User, "alice")), Tier::Pro);
        assert_eq!(
            l.tier_of(&id(IdentityKind::AppInstallation, "alice")),
            Tier::Free
        );
    }
}
