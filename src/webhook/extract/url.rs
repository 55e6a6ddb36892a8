//! Which URL an event carries (PROTOCOL.md "Which URL an event carries"),
//! and which commit it is about.

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::{Payload, Text};

/// The event's URL, by its type; `cached` resolves a head SHA through the
/// commit cache.
pub(super) fn of(
    kind: &str,
    p: Payload<'_, '_>,
    cached: impl Fn(Option<&str>) -> Option<String>,
) -> Option<String> {
    let root = p.root;
    match kind {
        "pull_request"
        | "pull_request_review"
        | "pull_request_review_comment"
        | "pull_request_review_thread" => p.pr.and_then(|p| p.text("html_url")).map(str::to_owned),
        "issue_comment" => root
            .get("issue")
            .filter(|i| i.get("pull_request").is_some_and(|p| p.as_null().is_none()))
            .and_then(|i| i.text("html_url"))
            .map(str::to_owned),
        "check_run" | "check_suite" => {
            let check = root.get(kind);
            let first = check.and_then(|c| first_pr(c, p.repo_url));
            first
                .or_else(|| cached(check.and_then(|c| c.text("head_sha"))))
                .or_else(|| p.repo_url.map(str::to_owned))
        }
        "status" => cached(root.text("sha")),
        "workflow_run" => {
            let run = root.get("workflow_run");
            let first = run.and_then(|r| {
                let n = r.get_array("pull_requests")?.get(0)?.get_u64("number")?;
                Some(format!("{}/pull/{n}", p.repo_url?))
            });
            first.or_else(|| cached(run.and_then(|r| r.text("head_sha"))))
        }
        _ => None,
    }
}

/// The commit the event is about: a pull request's head, a check's or
/// run's head, a status's commit.
pub(super) fn commit_sha<'i>(kind: &str, p: Payload<'_, 'i>) -> Option<&'i str> {
    let root = p.root;
    match kind {
        "pull_request" => p.pr.and_then(|p| p.get("head")).and_then(|h| h.text("sha")),
        "check_run" | "check_suite" | "workflow_run" => {
            root.get(kind).and_then(|c| c.text("head_sha"))
        }
        "status" => root.text("sha"),
        _ => None,
    }
}

/// The URL of a check object's first pull request: its `html_url`, else the
/// repository URL + `/pull/` + its number.
fn first_pr(check: Value<'_, '_>, repo_url: Option<&str>) -> Option<String> {
    let first = check.get_array("pull_requests")?.get(0)?;
    if let Some(u) = first.text("html_url") {
        return Some(u.to_owned());
    }
    let n = first.get_u64("number")?;
    Some(format!("{}/pull/{n}", repo_url?))
}
