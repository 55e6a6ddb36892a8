//! Who receives an event: PROTOCOL.md's matching rules, in one place.
//!
//! `Filter` is a client's subscription after authentication, normalized for
//! matching (lowercase, sorted). `judge` applies every rule to one client and
//! one event; the index only narrows down which clients are asked.

use std::cmp::Ordering;

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
    /// By repository (`owner/repo`): `repositories` with nothing else.
    Repo,
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
    /// Event types asked for, `TYPE` (every action) or `TYPE.ACTION`; empty
    /// means every type except the explicit-only ones.
    pub event_types: Box<[Box<str>]>,
    /// Subscribed pull request keys (`owner/repo#n`), lowercased.
    pub pr_keys: Box<[Box<str>]>,
    /// Only events the user is involved in.
    pub user_events_only: bool,
    /// The client's tier may see private repositories.
    pub can_see_private: bool,
    /// The client receives events with their webhook payload.
    pub include_payload: bool,
    /// Subscribed repositories (`owner/repo`), lowercased; empty: any.
    pub repos: Box<[Box<str>]>,
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
        for list in [&mut self.pr_keys, &mut self.event_types, &mut self.repos] {
            let mut v: Vec<Box<str>> = std::mem::take(list).into_vec();
            v.sort_unstable();
            v.dedup();
            *list = v.into_boxed_slice();
        }
        self
    }

    /// The index family and keys this client is found under: the field that
    /// decides (rules 4 to 8), so `repositories` only when nothing else is
    /// subscribed. A client with neither PRs, `user_events_only`, an
    /// organization nor repositories matches nothing and sits in no index.
    pub fn index_keys(&self) -> Option<(Family, &[Box<str>])> {
        if !self.pr_keys.is_empty() {
            Some((Family::Pr, &self.pr_keys))
        } else if self.user_events_only {
            Some((Family::User, std::slice::from_ref(&self.login)))
        } else if &*self.organization == "*" {
            Some((Family::Org, self.orgs.lowercase()))
        } else if !self.organization.is_empty() {
            Some((Family::Org, std::slice::from_ref(&self.organization)))
        } else if !self.repos.is_empty() {
            Some((Family::Repo, &self.repos))
        } else {
            None
        }
    }

    /// Rule 1: the event's type is listed, bare or with the event's action
    /// (compared in place: nothing is allocated per event); without a list,
    /// any type but the explicit-only ones.
    fn wants_type(&self, e: &Event) -> bool {
        if self.event_types.is_empty() {
            return !e.is_explicit_only();
        }
        let kind = e.kind();
        if self
            .event_types
            .binary_search_by(|t| (**t).cmp(kind))
            .is_ok()
        {
            return true;
        }
        e.action().is_some_and(|action| {
            self.event_types
                .binary_search_by(|t| cmp_type_action(t, kind, action))
                .is_ok()
        })
    }

    /// Rule 3: with repositories, the event's is one of them.
    fn wants_repo(&self, e: &Event) -> bool {
        self.repos.is_empty()
            || e.repo()
                .is_some_and(|r| self.repos.binary_search_by(|k| (**k).cmp(r)).is_ok())
    }

    fn member_of(&self, org: &str) -> bool {
        self.orgs.contains(org)
    }

    /// PROTOCOL.md "Who receives an event", rules 1 to 9, in order.
    pub fn judge(&self, e: &Event, enforce_tiers: bool) -> Verdict {
        // 1. Event types and actions (the explicit-only types need naming);
        // an event without a URL of its own goes to payload clients only.
        if !self.wants_type(e) || (e.is_payload_only() && !self.include_payload) {
            return Verdict::Skip;
        }
        // 2. Private repositories and tiers.
        let unentitled = e.is_private() && !self.can_see_private;
        if unentitled && enforce_tiers {
            return Verdict::Skip;
        }
        // 3. Repositories narrow every other rule.
        if !self.wants_repo(e) {
            return Verdict::Skip;
        }
        let matched = if !self.pr_keys.is_empty() {
            // 4. Pull requests, taken from the event's URL.
            e.pr_key()
                .is_some_and(|k| self.pr_keys.binary_search_by(|p| (**p).cmp(k)).is_ok())
                && e.org().is_none_or(|o| self.member_of(o))
        } else if self.user_events_only {
            // 5. Events involving the user, in the subscribed org(s).
            let org_ok = match &*self.organization {
                "" | "*" => e.org().is_some_and(|o| self.member_of(o)),
                named => e.org() == Some(named),
            };
            org_ok && e.users().iter().any(|u| **u == *self.login)
        } else {
            match &*self.organization {
                // 8. Repositories alone (rule 3 checked the event's is one),
                // with the membership rule of pull requests; 9. or nothing.
                "" => !self.repos.is_empty() && e.org().is_none_or(|o| self.member_of(o)),
                // 6. Every org of the user.
                "*" => e.org().is_some_and(|o| self.member_of(o)),
                // 7. One org.
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

/// `entry` compared with `kind.action`, without building that string: the
/// order of `str`, so that a list sorted by it can be binary-searched.
fn cmp_type_action(entry: &str, kind: &str, action: &str) -> Ordering {
    let joined = kind
        .bytes()
        .chain(std::iter::once(b'.'))
        .chain(action.bytes());
    entry.bytes().cmp(joined)
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

    fn repo_event(kind: &str, org: Option<&str>, repo: &str, action: Option<&str>) -> Event {
        Event::new(EventParts {
            kind: kind.into(),
            url: format!("https://github.com/{repo}/pull/7"),
            org: org.map(Into::into),
            repo: Some(repo.into()),
            action: action.map(Into::into),
            users: vec!["alice".into()],
            ..EventParts::default()
        })
    }

    fn with_repos(mut f: Filter, repos: &[&str]) -> Filter {
        f.repos = boxed(repos);
        f.normalized()
    }

    #[test]
    fn events_without_a_url_of_their_own_go_to_payload_clients_only() {
        let push = Event::new(EventParts {
            kind: "push".into(),
            url: "https://github.com/acme/api".into(),
            org: Some("acme".into()),
            repo: Some("acme/api".into()),
            payload_only: true,
            ..EventParts::default()
        });
        let mut f = filter("acme", &["acme"]);
        assert_eq!(f.judge(&push, true), Verdict::Skip);
        f.include_payload = true;
        assert_eq!(f.judge(&push, true), Verdict::Deliver);
        assert_eq!(f.judge(&pr_event("acme"), true), Verdict::Deliver);
        let mut named = filter("acme", &["acme"]);
        named.include_payload = true;
        named.event_types = boxed(&["pull_request"]);
        assert_eq!(named.normalized().judge(&push, true), Verdict::Skip);
    }

    #[test]
    fn repositories_alone_match_their_events_with_org_membership() {
        let f = with_repos(filter("", &["acme"]), &["acme/web", "acme/api"]);
        assert_eq!(
            f.index_keys(),
            Some((Family::Repo, &boxed(&["acme/api", "acme/web"])[..]))
        );
        let api = repo_event("push", Some("Acme"), "Acme/API", None);
        assert_eq!(f.judge(&api, true), Verdict::Deliver, "case-insensitive");
        let other = repo_event("push", Some("acme"), "acme/other", None);
        assert_eq!(f.judge(&other, true), Verdict::Skip);
        let no_repo = event("push", Some("acme"), PR7, &[], false);
        assert_eq!(
            f.judge(&no_repo, true),
            Verdict::Skip,
            "no repository: no match"
        );
        // The user must belong to the event's organization when it has one.
        let outsider = with_repos(filter("", &["zeta"]), &["acme/api"]);
        assert_eq!(outsider.judge(&api, true), Verdict::Skip);
        let user_repo = repo_event("push", None, "acme/api", None);
        assert_eq!(outsider.judge(&user_repo, true), Verdict::Deliver);
        // Tiers still apply.
        let mut free = with_repos(filter("", &["acme"]), &["acme/api"]);
        free.can_see_private = false;
        let private = Event::new(EventParts {
            kind: "push".into(),
            url: "https://github.com/acme/api".into(),
            org: Some("acme".into()),
            repo: Some("acme/api".into()),
            private: true,
            ..EventParts::default()
        });
        assert_eq!(free.judge(&private, true), Verdict::Skip);
        assert_eq!(free.judge(&private, false), Verdict::DeliverUnentitled);
    }

    #[test]
    fn repositories_narrow_the_other_fields() {
        let api = repo_event("pull_request", Some("acme"), "acme/api", None);
        let web = repo_event("pull_request", Some("acme"), "acme/web", None);
        for org in ["acme", "*"] {
            let f = with_repos(filter(org, &["acme"]), &["acme/api"]);
            assert_eq!(f.index_keys().unwrap().0, Family::Org, "{org}");
            assert_eq!(f.judge(&api, true), Verdict::Deliver, "{org}");
            assert_eq!(f.judge(&web, true), Verdict::Skip, "{org}");
        }
        // A named org and a repository of another org: nothing.
        let f = with_repos(filter("zeta", &["acme", "zeta"]), &["acme/api"]);
        assert_eq!(f.judge(&api, true), Verdict::Skip);
        let mut user = with_repos(filter("", &["acme"]), &["acme/web"]);
        user.user_events_only = true;
        assert_eq!(user.index_keys().unwrap().0, Family::User);
        assert_eq!(user.judge(&web, true), Verdict::Deliver);
        assert_eq!(user.judge(&api, true), Verdict::Skip);
        let mut prs = with_repos(filter("", &["acme"]), &["acme/web"]);
        prs.pr_keys = boxed(&["acme/api#7", "acme/web#7"]);
        let prs = prs.normalized();
        assert_eq!(prs.index_keys().unwrap().0, Family::Pr);
        assert_eq!(prs.judge(&web, true), Verdict::Deliver);
        assert_eq!(prs.judge(&api, true), Verdict::Skip);
    }

    #[test]
    fn event_types_may_name_actions() {
        let mut f = filter("acme", &["acme"]);
        f.event_types = boxed(&["pull_request.closed", "check_suite.completed", "push"]);
        let f = f.normalized();
        let judge = |kind: &str, action: Option<&str>| {
            f.judge(&repo_event(kind, Some("acme"), "acme/api", action), true)
        };
        assert_eq!(judge("pull_request", Some("closed")), Verdict::Deliver);
        assert_eq!(judge("pull_request", Some("opened")), Verdict::Skip);
        assert_eq!(judge("pull_request", None), Verdict::Skip);
        assert_eq!(judge("check_suite", Some("completed")), Verdict::Deliver);
        assert_eq!(judge("check_suite", Some("requested")), Verdict::Skip);
        assert_eq!(judge("check_run", Some("completed")), Verdict::Skip);
        // A bare type: every action, and none.
        assert_eq!(judge("push", Some("anything")), Verdict::Deliver);
        assert_eq!(judge("push", None), Verdict::Deliver);
        // Prefixes are not matches.
        assert_eq!(judge("pull_request", Some("close")), Verdict::Skip);
        assert_eq!(judge("pull_request", Some("closed_x")), Verdict::Skip);
        assert_eq!(judge("pull", Some("request.closed")), Verdict::Skip);
        // Explicit-only types count as named with an action too.
        let mut w = filter("acme", &["acme"]);
        w.event_types = boxed(&["workflow_run.completed"]);
        let w = w.normalized();
        let run = |action| repo_event("workflow_run", Some("acme"), "acme/api", Some(action));
        assert_eq!(w.judge(&run("completed"), true), Verdict::Deliver);
        assert_eq!(w.judge(&run("requested"), true), Verdict::Skip);
    }

    #[test]
    fn type_action_order_is_the_sort_order() {
        let mut entries = vec![
            "pull_request.closed",
            "pull_request",
            "pull_request_review",
            "pull_request.a",
            "pull_request.closed_x",
            "pull_requesta",
        ];
        entries.sort_unstable();
        for e in &entries {
            for (k, a) in [
                ("pull_request", "closed"),
                ("pull_request", "a"),
                ("pull", "request.closed"),
                ("pull_request", ""),
            ] {
                let joined = format!("{k}.{a}");
                assert_eq!(
                    cmp_type_action(e, k, a),
                    (*e).cmp(joined.as_str()),
                    "{e} vs {joined}"
                );
            }
        }
    }
}
