//! Who an event involves: logins named one by one, `@mentions`, then the
//! pull request's lists, at most [`MAX_USERS`] of them.

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::Text;
use crate::event::{MAX_LOGIN, MAX_MENTIONS, MAX_USERS};

/// Everyone involved, at most [`MAX_USERS`] distinct logins: first those
/// named one by one (PR author and assignee, also of a PR seen as an issue;
/// the event's assignee and requested reviewer, review author, comment
/// author, sender), then `@mentions` in the comment body, then the PR's
/// `assignees` and `requested_reviewers` lists, whose tail the cap drops.
pub(super) fn involved_users(root: Value<'_, '_>, pr: Option<Value<'_, '_>>) -> Vec<String> {
    let mut users = Users::default();
    fn login<'i>(v: Option<Value<'_, 'i>>) -> Option<&'i str> {
        v.and_then(|u| u.text("login"))
    }
    let issue_pr = root
        .get("issue")
        .filter(|i| i.get("pull_request").is_some_and(|p| p.as_null().is_none()));
    let prs = [pr, issue_pr];
    for p in prs.iter().flatten() {
        users.add(login(p.get("user")));
        users.add(login(p.get("assignee")));
    }
    let comment = root.get("comment");
    for v in [
        root.get("assignee"),
        root.get("requested_reviewer"),
        root.get("review").and_then(|r| r.get("user")),
        comment.and_then(|c| c.get("user")),
        root.get("sender"),
    ] {
        users.add(login(v));
    }
    if let Some(body) = comment.and_then(|c| c.text("body")) {
        for m in mentions(body) {
            users.add(Some(&m));
        }
    }
    for p in prs.iter().flatten() {
        for list in ["assignees", "requested_reviewers"] {
            let Some(list) = p.get_array(list) else {
                continue;
            };
            for u in list.iter() {
                if !users.add(login(Some(u))) {
                    return users.0;
                }
            }
        }
    }
    users.0
}

/// Distinct logins (compared case-insensitively), at most [`MAX_USERS`].
#[derive(Default)]
struct Users(Vec<String>);

impl Users {
    /// Adds `login` unless it is not a login (empty, or longer than
    /// [`MAX_LOGIN`]) or already there; `false` once the list is full.
    fn add(&mut self, login: Option<&str>) -> bool {
        if self.0.len() == MAX_USERS {
            return false;
        }
        if let Some(l) = login.filter(|l| (1..=MAX_LOGIN).contains(&l.len()))
            && !self.0.iter().any(|u| u.eq_ignore_ascii_case(l))
        {
            self.0.push(l.to_owned());
        }
        true
    }
}

/// `@login` mentions in a comment body, in order, at most [`MAX_MENTIONS`]
/// distinct ones. A mention is `@` followed by `[A-Za-z0-9-]`, ending at any
/// other character; longer than a login can be ([`MAX_LOGIN`]) is not a
/// mention.
pub(crate) fn mentions(body: &str) -> Vec<String> {
    let b = body.as_bytes();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'@') {
        let start = i + at + 1;
        let len = b[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-')
            .count();
        i = start + len;
        if (1..=MAX_LOGIN).contains(&len) {
            let login = body[start..start + len].to_ascii_lowercase();
            if !out.contains(&login) {
                out.push(login);
                if out.len() == MAX_MENTIONS {
                    break;
                }
            }
        }
    }
    out
}
