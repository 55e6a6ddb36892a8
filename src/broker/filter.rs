//! Who receives an event: PROTOCOL.md's matching rules, in one place.
//!
//! `Filter` is a client's subscription after authentication, normalized for
//! matching (lowercase, sorted). `judge` applies every rule to one client and
//! one event; the index only narrows down which clients are asked.

use crate::auth::OrgSet;
use crate::event::Event;

/// Which index family a client sits in. A client is in exactly one, so an
/// event reaches it through at most one index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// By organization: a named org, or each of the user's orgs for `*`.
    Org,
    /// By pull request key.
    Pr,
    /// By involved user (`user_events_only`).
    User,
}

/// A client's normalized subscription.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// The client's login, lowercased.
    pub login: Box<str>,
    /// The organizations the user belongs to (shared with the account's
    /// other connections).
    pub orgs: OrgSet,
    /// The subscribed organization, lowercased: empty, `*`, or a name.
    pub organization: Box<str>,
    /// Event types asked for; empty means every type except the
    /// explicit-only ones.
    pub event_types: Box<[Box<str>]>,
    /// Subscribed pull request keys (`owner/repo#n`), lowercased.
    pub pr_keys: Box<[Box<str>]>,
    /// Only events the user is involved in.
    pub user_events_only: bool,
    /// The client's tier may see private repositories.
    pub can_see_private: bool,
    /// The client receives events with their webhook payload.
    pub include_payload: bool,
}

/// The outcome of matching one client against one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Deliver.
    Deliver,
    /// Deliver, although the client's tier may not see private repositories
    /// (tier enforcement is off): the caller logs a warning.
    DeliverUnentitled,
    /// Do not deliver.
    Skip,
}

impl Filter {
    /// Sorts and deduplicates the lists so that lookups can binary-search.
    pub fn normalized(mut self) -> Self {
        for list in [&mut self.pr_keys, &mut self.event_types] {
            let mut v: Vec<Box<str>> = std::mem::take(list).into_vec();
            v.sort_unstable();
            v.dedup();
            *list = v.into_boxed_slice();
        }
        self
    }

    /// The index family and keys this client is found under. A client with
    /// neither PRs, `user_events_only` nor an organization matches nothing
    /// and sits in no index.
    pub fn index_keys(&self) -> Option<(Family, &[Box<str>])> {
        if !self.pr_keys.is_empty() {
            Some((Family::Pr, &self.pr_keys))
        } else if self.user_events_only {
            Some((Family::User, std::slice::from_ref(&self.login)))
        } else if &*self.organization == "*" {
            Some((Family::Org, self.orgs.lowercase()))
        } else if !self.organization.is_empty() {
            Some((Family::Org, std::slice::from_ref(&self.organization)))
        } else {
            None
        }
    }

    fn member_of(&self, org: &str) -> bool {
        self.orgs.contains(org)
    }

    /// PROTOCOL.md "Who receives an event", rules 1 to 7, in order.
    pub fn judge(&self, e: &Event, enforce_tiers: bool) -> Verdict {
        // 1. Event types (the explicit-only types need naming).
        if self.event_types.is_empty() {
            if e.is_explicit_only() {
                return Verdict::Skip;
            }
        } else if self
            .event_types
            .binary_search_by(|t| (**t).cmp(e.kind()))
            .is_err()
        {
            return Verdict::Skip;
        }
        // 2. Private repositories and tiers.
        let unentitled = e.is_private() && !self.can_see_private;
        if unentitled && enforce_tiers {
            return Verdict::Skip;
        }
        let matched = if !self.pr_keys.is_empty() {
            // 3. Pull requests, taken from the event's URL.
            e.pr_key()
                .is_some_and(|k| self.pr_keys.binary_search_by(|p| (**p).cmp(k)).is_ok())
                && e.org().is_none_or(|o| self.member_of(o))
        } else if self.user_events_only {
            // 4. Events involving the user, in the subscribed org(s).
            let org_ok = match &*self.organization {
                "" | "*" => e.org().is_some_and(|o| self.member_of(o)),
                named => e.org() == Some(named),
            };
            org_ok && e.users().iter().any(|u| **u == *self.login)
        } else {
            match &*self.organization {
                // 7. Nothing subscribed.
                "" => false,
                // 5. Every org of the user.
                "*" => e.org().is_some_and(|o| self.member_of(o)),
                // 6. One org.
                named => e.org() == Some(named),
            }
        };
        match (matched, unentitled) {
            (false, _) => Verdict::Skip,
            (true, false) => Verdict::Deliver,
            (true, true) => Verdict::DeliverUnentitled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventParts;

    fn boxed(v: &[&str]) -> Box<[Box<str>]> {
        v.iter().map(|s| Box::from(*s)).collect()
    }

    fn filter(org: &str, orgs: &[&str]) -> Filter {
        Filter {
            login: "alice".into(),
            orgs: OrgSet::new(orgs),
            organization: org.into(),
            can_see_private: true,
            ..Filter::default()
        }
        .normalized()
    }

    fn event(kind: &str, org: Option<&str>, url: &str, users: &[&str], private: bool) -> Event {
        Event::new(EventParts {
            kind: kind.into(),
            url: url.into(),
            org: org.map(Into::into),
            private,
            users: users.iter().map(|u| u.to_string()).collect(),
            ..EventParts::default()
        })
    }

    const PR7: &str = "https://github.com/Acme/API/pull/7";

    fn pr_event(org: &str) -> Event {
        event("pull_request", Some(org), PR7, &["bob"], false)
    }

    #[test]
    fn named_org_is_case_insensitive() {
        let f = filter("acme", &["acme"]);
        assert_eq!(f.judge(&pr_event("ACME"), true), Verdict::Deliver);
        assert_eq!(f.judge(&pr_event("other"), true), Verdict::Skip);
        assert_eq!(f.index_keys(), Some((Family::Org, &boxed(&["acme"])[..])));
    }

    #[test]
    fn star_matches_the_users_orgs_only() {
        let f = filter("*", &["zeta", "acme"]);
        assert_eq!(f.judge(&pr_event("acme"), true), Verdict::Deliver);
        assert_eq!(f.judge(&pr_event("zeta"), true), Verdict::Deliver);
        assert_eq!(f.judge(&pr_event("other"), true), Verdict::Skip);
        let no_org = event("pull_request", None, PR7, &[], false);
        assert_eq!(f.judge(&no_org, true), Verdict::Skip);
        assert_eq!(
            f.index_keys(),
            Some((Family::Org, &boxed(&["acme", "zeta"])[..]))
        );
    }

    #[test]
    fn nothing_subscribed_matches_nothing() {
        let f = filter("", &["acme"]);
        assert_eq!(f.judge(&pr_event("acme"), true), Verdict::Skip);
        assert_eq!(f.index_keys(), None);
    }

    #[test]
    fn event_types_filter_and_explicit_only_types() {
        let mut f = filter("acme", &["acme"]);
        f.event_types = boxed(&["check_run", "pull_request"]);
        let f = f.normalized();
        assert_eq!(f.judge(&pr_event("acme"), true), Verdict::Deliver);
        let comment = event("issue_comment", Some("acme"), PR7, &[], false);
        assert_eq!(f.judge(&comment, true), Verdict::Skip);

        let status = event("status", Some("acme"), PR7, &[], false);
        assert_eq!(
            filter("acme", &["acme"]).judge(&status, true),
            Verdict::Skip
        );
        let mut explicit = filter("acme", &["acme"]);
        explicit.event_types = boxed(&["status"]);
        assert_eq!(explicit.judge(&status, true), Verdict::Deliver);
    }

    #[test]
    fn private_events_and_tiers() {
        let private = event("pull_request", Some("acme"), PR7, &[], true);
        let mut free = filter("acme", &["acme"]);
        free.can_see_private = false;
        assert_eq!(free.judge(&private, true), Verdict::Skip);
        assert_eq!(free.judge(&private, false), Verdict::DeliverUnentitled);
        assert_eq!(free.judge(&pr_event("acme"), true), Verdict::Deliver);
        let pro = filter("acme", &["acme"]);
        assert_eq!(pro.judge(&private, true), Verdict::Deliver);
    }

    #[test]
    fn pull_request_subscriptions_need_org_membership() {
        let mut f = filter("", &["acme"]);
        f.pr_keys = boxed(&["acme/api#7"]);
        assert_eq!(f.judge(&pr_event("acme"), true), Verdict::Deliver);
        let comment = event("issue_comment", Some("acme"), PR7, &[], false);
        assert_eq!(
            f.judge(&comment, true),
            Verdict::Deliver,
            "[ext] comments on the PR"
        );
        let other_pr = event(
            "pull_request",
            Some("acme"),
            "https://github.com/acme/api/pull/8",
            &[],
            false,
        );
        assert_eq!(f.judge(&other_pr, true), Verdict::Skip);
        let repo_url = event(
            "check_run",
            Some("acme"),
            "https://github.com/acme/api",
            &[],
            false,
        );
        assert_eq!(f.judge(&repo_url, true), Verdict::Skip);
        let mut outsider = filter("", &["other"]);
        outsider.pr_keys = boxed(&["acme/api#7"]);
        assert_eq!(outsider.judge(&pr_event("acme"), true), Verdict::Skip);
        let no_org = event("pull_request", None, PR7, &[], false);
        assert_eq!(outsider.judge(&no_org, true), Verdict::Deliver);
        // PR subscriptions take precedence over the organization field.
        let mut both = filter("other", &["acme"]);
        both.pr_keys = boxed(&["acme/api#7"]);
        assert_eq!(both.judge(&pr_event("acme"), true), Verdict::Deliver);
        assert_eq!(both.index_keys().unwrap().0, Family::Pr);
    }

    #[test]
    fn user_events_only() {
        for org in ["", "*"] {
            let mut f = filter(org, &["acme"]);
            f.user_events_only = true;
            let mine = event("pull_request", Some("acme"), PR7, &["alice"], false);
            assert_eq!(f.judge(&mine, true), Verdict::Deliver, "org {org:?}");
            let theirs = event("pull_request", Some("acme"), PR7, &["alice2"], false);
            assert_eq!(f.judge(&theirs, true), Verdict::Skip);
            let elsewhere = event("pull_request", Some("other"), PR7, &["alice"], false);
            assert_eq!(f.judge(&elsewhere, true), Verdict::Skip);
        }
        let mut f = filter("acme", &["acme", "zeta"]);
        f.user_events_only = true;
        let zeta = event("pull_request", Some("zeta"), PR7, &["alice"], false);
        assert_eq!(
            f.judge(&zeta, true),
            Verdict::Skip,
            "named org must be equal"
        );
        assert_eq!(f.index_keys(), Some((Family::User, &boxed(&["alice"])[..])));
    }
}
