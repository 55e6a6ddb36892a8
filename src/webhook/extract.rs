//! Webhook body -> event fields: the one and only parse of a payload.
//!
//! A pure function over the raw bytes (simd-json's tape, no value tree) and a
//! commit cache lookup; it decides the URL per PROTOCOL.md "Which URL an
//! event carries", and collects org, private flag, commit SHA and involved
//! users. Values of an unexpected JSON type count as absent: a valid JSON
//! payload is never refused for its shape, only ignored when it carries no URL.
//!
//! The event is capped here, the one place every event is built from a
//! payload, to the limits a cluster's stream message is held to
//! ([`MAX_FIELD`], [`MAX_USERS`]), so that a single node and every node of
//! a cluster build the same event: a string field longer than `MAX_FIELD`
//! counts as absent (an over-long URL: no URL, so not broadcast), a name
//! longer than [`MAX_LOGIN`] is not a login, and users past `MAX_USERS` are
//! dropped.

use std::time::SystemTime;

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::commit_cache::PrInfo;
use crate::event::{EventParts, MAX_FIELD, MAX_LOGIN, MAX_MENTIONS, MAX_USERS};

/// String fields that borrow the parsed input, not the tape value.
trait Text<'i> {
    /// The string under `key`, if it is a string.
    fn text(&self, key: &str) -> Option<&'i str>;
}

impl<'i> Text<'i> for Value<'_, 'i> {
    fn text(&self, key: &str) -> Option<&'i str> {
        self.get(key)?.into_string()
    }
}

/// The body could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExtractError {
    /// Not JSON (or truncated JSON).
    InvalidJson(String),
    /// JSON, but not an object.
    NotObject,
}

/// The outcome of extraction.
#[derive(Debug)]
pub(crate) struct Extraction {
    /// The event to broadcast, or `None` when the payload carries no URL.
    pub event: Option<EventParts>,
    /// A `pull_request` event's head, for the commit cache.
    pub record: Option<PrHead>,
}

/// A pull request's head commit, as the commit cache records it.
#[derive(Debug)]
pub(crate) struct PrHead {
    /// The repository (`owner/name`) the pull request belongs to.
    pub repo: String,
    /// Its head SHA.
    pub sha: String,
    pub info: PrInfo,
}

/// Extracts the event from a webhook body of type `kind`. `lookup` asks the
/// commit cache for the PR of a repository (`owner/name`) whose head is a
/// SHA; it is only asked about the event's own repository. `body` is parsed
/// in place.
pub(crate) fn extract(
    kind: &str,
    delivery_id: &str,
    body: &mut [u8],
    accepted_at: SystemTime,
    lookup: impl Fn(&str, &str) -> Option<PrInfo>,
) -> Result<Extraction, ExtractError> {
    let tape = simd_json::to_tape(body).map_err(|e| ExtractError::InvalidJson(e.to_string()))?;
    let root = tape.as_value();
    if !root.is_object() {
        return Err(ExtractError::NotObject);
    }

    let repo = root.get("repository");
    let repo_url = repo.and_then(|r| r.text("html_url"));
    // An over-long name counts as absent, here as in the event.
    let repo_name = repo.and_then(|r| r.text("full_name")).filter(|r| fits(r));
    let pr = root.get("pull_request").filter(Value::is_object);
    // A check or status event resolves through the PRs of its own
    // repository only; without a repository name, not at all.
    let cached = |sha: Option<&str>| lookup(repo_name?, sha?).map(|p| p.url);

    let url = match kind {
        "pull_request"
        | "pull_request_review"
        | "pull_request_review_comment"
        | "pull_request_review_thread" => pr.and_then(|p| p.text("html_url")).map(str::to_owned),
        "issue_comment" => root
            .get("issue")
            .filter(|i| i.get("pull_request").is_some_and(|p| p.as_null().is_none()))
            .and_then(|i| i.text("html_url"))
            .map(str::to_owned),
        "check_run" | "check_suite" => {
            let check = root.get(kind);
            let first = check.and_then(|c| first_pr(c, repo_url));
            first
                .or_else(|| cached(check.and_then(|c| c.text("head_sha"))))
                .or_else(|| repo_url.map(str::to_owned))
        }
        "status" => cached(root.text("sha")),
        "workflow_run" => {
            let run = root.get("workflow_run");
            let first = run.and_then(|r| {
                let n = r.get_array("pull_requests")?.get(0)?.get_u64("number")?;
                Some(format!("{}/pull/{n}", repo_url?))
            });
            first.or_else(|| cached(run.and_then(|r| r.text("head_sha"))))
        }
        _ => None,
    };

    let commit_sha = match kind {
        "pull_request" => pr.and_then(|p| p.get("head")).and_then(|h| h.text("sha")),
        "check_run" | "check_suite" | "workflow_run" => {
            root.get(kind).and_then(|c| c.text("head_sha"))
        }
        "status" => root.text("sha"),
        _ => None,
    }
    .filter(|s| fits(s));

    let record = if kind == "pull_request" {
        pr_head(pr, repo_name, repo_url, commit_sha, accepted_at)
    } else {
        None
    };

    let event = url.filter(|u| !u.is_empty() && fits(u)).map(|url| {
        let org = repo
            .and_then(|r| r.get("owner"))
            .and_then(|o| o.text("login"))
            .or_else(|| root.get("organization").and_then(|o| o.text("login")));
        EventParts {
            kind: kind.to_owned(),
            delivery_id: delivery_id.to_owned(),
            accepted_at: Some(accepted_at),
            url,
            org: org.filter(|o| fits(o)).map(str::to_owned),
            repo: repo_name.map(str::to_owned),
            private: repo.and_then(|r| r.get_bool("private")).unwrap_or(false),
            commit_sha: commit_sha.map(str::to_owned),
            users: involved_users(root, pr),
        }
    });
    Ok(Extraction { event, record })
}

/// Whether a string field is short enough to be kept ([`MAX_FIELD`]).
fn fits(s: &str) -> bool {
    s.len() <= MAX_FIELD
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

fn pr_head(
    pr: Option<Value<'_, '_>>,
    repo: Option<&str>,
    repo_url: Option<&str>,
    sha: Option<&str>,
    at: SystemTime,
) -> Option<PrHead> {
    let pr = pr?;
    let info = PrInfo {
        url: pr.text("html_url")?.to_owned(),
        repo_url: repo_url.unwrap_or_default().to_owned(),
        number: pr.get_u64("number")?,
        cached_at: at,
    };
    Some(PrHead {
        repo: repo.filter(|r| !r.is_empty())?.to_owned(),
        sha: sha.filter(|s| !s.is_empty())?.to_owned(),
        info,
    })
}

/// Everyone involved, at most [`MAX_USERS`] distinct logins: first those
/// named one by one (PR author and assignee, also of a PR seen as an issue;
/// the event's assignee and requested reviewer, review author, comment
/// author, sender), then `@mentions` in the comment body, then the PR's
/// `assignees` and `requested_reviewers` lists, whose tail the cap drops.
fn involved_users(root: Value<'_, '_>, pr: Option<Value<'_, '_>>) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Extracts with a commit cache that knows `cached` as the PR of
    /// commit `s` in repository `o/r`, and nothing else.
    fn run(kind: &str, json: &str, cached: Option<PrInfo>) -> Result<Extraction, ExtractError> {
        let mut body = json.as_bytes().to_vec();
        extract(kind, "d", &mut body, SystemTime::UNIX_EPOCH, |repo, sha| {
            cached.clone().filter(|_| (repo, sha) == ("o/r", "s"))
        })
    }

    fn url(kind: &str, json: &str, cached: Option<PrInfo>) -> Option<String> {
        run(kind, json, cached).unwrap().event.map(|e| e.url)
    }

    fn cached(url: &str) -> Option<PrInfo> {
        Some(PrInfo {
            url: url.into(),
            repo_url: String::new(),
            number: 1,
            cached_at: SystemTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn refuses_non_json_and_non_objects() {
        for bad in ["", "{", "{\"a\":1", "nope", "{\"a\":1}}"] {
            assert!(
                matches!(run("push", bad, None), Err(ExtractError::InvalidJson(_))),
                "{bad:?}"
            );
        }
        for not_obj in ["[]", "1", "\"s\"", "null"] {
            assert_eq!(
                run("push", not_obj, None).unwrap_err(),
                ExtractError::NotObject
            );
        }
    }

    /// Found by the `webhook` fuzz target: an integer beyond 64 bits is
    /// JSON, but simd-json refused it (`InvalidNumber`) unless built with
    /// its `big-int-as-float` feature, so such a webhook got 400.
    #[test]
    fn integers_beyond_64_bits_are_json() {
        let j = r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/1","changed_files":184467440737095516164},"n":-9223372036854775809}"#;
        assert_eq!(
            url("pull_request", j, None).as_deref(),
            Some("https://github.com/o/r/pull/1")
        );
    }

    #[test]
    fn odd_types_are_absent_not_errors() {
        let j = r#"{"pull_request":{"html_url":7},"repository":"x","sender":[]}"#;
        assert_eq!(url("pull_request", j, None), None);
    }

    #[test]
    fn check_url_rules_in_order() {
        let repo = r#""repository":{"html_url":"https://github.com/o/r","full_name":"o/r"}"#;
        let html = format!(
            r#"{{"check_run":{{"head_sha":"s","pull_requests":[{{"html_url":"https://x/o/r/pull/9","number":2}}]}},{repo}}}"#
        );
        assert_eq!(
            url("check_run", &html, None).as_deref(),
            Some("https://x/o/r/pull/9")
        );
        let number = format!(
            r#"{{"check_run":{{"head_sha":"s","pull_requests":[{{"number":2}}]}},{repo}}}"#
        );
        assert_eq!(
            url("check_run", &number, None).as_deref(),
            Some("https://github.com/o/r/pull/2")
        );
        let empty = format!(r#"{{"check_suite":{{"head_sha":"s","pull_requests":[]}},{repo}}}"#);
        assert_eq!(
            url(
                "check_suite",
                &empty,
                cached("https://github.com/o/r/pull/5")
            )
            .as_deref(),
            Some("https://github.com/o/r/pull/5")
        );
        assert_eq!(
            url("check_suite", &empty, None).as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            url(
                "check_suite",
                r#"{"check_suite":{"pull_requests":[]}}"#,
                None
            ),
            None
        );
    }

    #[test]
    fn status_and_workflow_run_need_a_pr() {
        let status = r#"{"sha":"s","repository":{"full_name":"o/r"}}"#;
        assert_eq!(url("status", status, None), None);
        assert_eq!(
            url("status", status, cached("https://github.com/o/r/pull/3")).as_deref(),
            Some("https://github.com/o/r/pull/3")
        );
        let wr = r#"{"workflow_run":{"head_sha":"s","pull_requests":[{"number":4}]},"repository":{"html_url":"https://github.com/o/r","full_name":"o/r"}}"#;
        assert_eq!(
            url("workflow_run", wr, None).as_deref(),
            Some("https://github.com/o/r/pull/4")
        );
        let wr_empty = r#"{"workflow_run":{"head_sha":"s","pull_requests":[]},"repository":{"html_url":"https://github.com/o/r","full_name":"o/r"}}"#;
        assert_eq!(url("workflow_run", wr_empty, None), None);
        assert_eq!(
            url(
                "workflow_run",
                wr_empty,
                cached("https://github.com/o/r/pull/8")
            )
            .as_deref(),
            Some("https://github.com/o/r/pull/8")
        );
    }

    /// The commit cache is asked about the event's own repository only: a
    /// SHA known in another repository (or an event naming none) resolves
    /// to nothing.
    #[test]
    fn the_cache_is_asked_only_about_the_events_repository() {
        let pr5 = || cached("https://github.com/o/r/pull/5");
        for (kind, json) in [
            (
                "status",
                r#"{"sha":"s","repository":{"full_name":"evil/pub"}}"#,
            ),
            ("status", r#"{"sha":"s"}"#),
            (
                "workflow_run",
                r#"{"workflow_run":{"head_sha":"s","pull_requests":[]},"repository":{"full_name":"evil/pub"}}"#,
            ),
        ] {
            assert_eq!(url(kind, json, pr5()), None, "{json}");
        }
        let check = r#"{"check_run":{"head_sha":"s","pull_requests":[]},"repository":{"html_url":"https://github.com/evil/pub","full_name":"evil/pub"}}"#;
        assert_eq!(
            url("check_run", check, pr5()).as_deref(),
            Some("https://github.com/evil/pub"),
            "the repository's own URL, not o/r's pull request"
        );
        let mut asked = Vec::new();
        let mut body =
            br#"{"status":1,"sha":"ABC","repository":{"full_name":"Acme/Api"}}"#.to_vec();
        let seen = std::cell::RefCell::new(&mut asked);
        extract(
            "status",
            "d",
            &mut body,
            SystemTime::UNIX_EPOCH,
            |repo, sha| {
                seen.borrow_mut().push((repo.to_owned(), sha.to_owned()));
                None
            },
        )
        .unwrap();
        assert_eq!(asked, [("Acme/Api".to_owned(), "ABC".to_owned())]);
    }

    #[test]
    fn issue_comment_needs_a_pull_request_issue() {
        let on_pr =
            r#"{"issue":{"html_url":"https://github.com/o/r/pull/1","pull_request":{"url":"u"}}}"#;
        assert_eq!(
            url("issue_comment", on_pr, None).as_deref(),
            Some("https://github.com/o/r/pull/1")
        );
        let null_pr =
            r#"{"issue":{"html_url":"https://github.com/o/r/issues/1","pull_request":null}}"#;
        assert_eq!(url("issue_comment", null_pr, None), None);
        let plain = r#"{"issue":{"html_url":"https://github.com/o/r/issues/1"}}"#;
        assert_eq!(url("issue_comment", plain, None), None);
    }

    #[test]
    fn unknown_types_carry_no_url() {
        let j = r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/1"}}"#;
        assert_eq!(url("issues", j, None), None);
        assert_eq!(url("push", j, None), None);
    }

    #[test]
    fn org_falls_back_to_the_organization_object() {
        let j = r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/1"},"organization":{"login":"Org"}}"#;
        let e = run("pull_request", j, None).unwrap().event.unwrap();
        assert_eq!(e.org.as_deref(), Some("Org"));
    }

    #[test]
    fn pull_request_events_record_their_head() {
        let j = r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/3","number":3,"head":{"sha":"h"}},"repository":{"html_url":"https://github.com/o/r","full_name":"o/r"}}"#;
        let x = run("pull_request", j, None).unwrap();
        let PrHead { repo, sha, info } = x.record.unwrap();
        assert_eq!((repo.as_str(), sha.as_str()), ("o/r", "h"));
        assert_eq!(info.url, "https://github.com/o/r/pull/3");
        assert_eq!(info.repo_url, "https://github.com/o/r");
        assert_eq!(info.number, 3);
        assert!(
            run("pull_request_review", j, None)
                .unwrap()
                .record
                .is_none()
        );
        // A pull request of no named repository is not recorded.
        let unnamed = j.replace(r#","full_name":"o/r""#, "");
        assert!(
            run("pull_request", &unnamed, None)
                .unwrap()
                .record
                .is_none()
        );
    }

    fn event(kind: &str, v: serde_json::Value) -> Option<EventParts> {
        run(kind, &v.to_string(), None).unwrap().event
    }

    fn logins(prefix: &str, n: usize) -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| serde_json::json!({"login": format!("{prefix}{i}")}))
            .collect()
    }

    #[test]
    fn users_are_capped_keeping_the_actors_and_the_head_of_the_lists() {
        let long = "x".repeat(MAX_LOGIN + 1);
        let p = event(
            "pull_request",
            serde_json::json!({
                "pull_request": {
                    "html_url": "https://github.com/o/r/pull/1",
                    "user": {"login": "Author"},
                    "assignees": [{"login": long}, {"login": "author"}, {"login": ""}],
                    "requested_reviewers": logins("r", 500),
                },
                "sender": {"login": "sender"},
            }),
        )
        .unwrap();
        assert_eq!(p.users.len(), MAX_USERS);
        assert_eq!(&p.users[..2], ["Author", "sender"]);
        assert_eq!(
            p.users[2], "r0",
            "the over-long, duplicate and empty names are skipped"
        );
        assert_eq!(p.users[MAX_USERS - 1], format!("r{}", MAX_USERS - 3));
        // What a cluster node decodes is the same event.
        let back = crate::cluster::facts::decode(&crate::cluster::facts::encode(&p)).unwrap();
        assert_eq!(back.users, p.users);
    }

    #[test]
    fn mentions_come_before_the_long_lists() {
        let body: String = (0..MAX_MENTIONS).map(|i| format!("@m{i} ")).collect();
        let p = event(
            "issue_comment",
            serde_json::json!({
                "issue": {
                    "html_url": "https://github.com/o/r/pull/1",
                    "pull_request": {"url": "u"},
                    "requested_reviewers": logins("r", 500),
                },
                "comment": {"user": {"login": "commenter"}, "body": body},
            }),
        )
        .unwrap();
        assert_eq!(p.users.len(), MAX_USERS);
        assert_eq!(p.users[0], "commenter");
        assert_eq!(
            p.users[1..=MAX_MENTIONS].last().unwrap(),
            &format!("m{}", MAX_MENTIONS - 1)
        );
        assert_eq!(p.users[MAX_MENTIONS + 1], "r0");
    }

    #[test]
    fn over_long_fields_count_as_absent() {
        let long = "a".repeat(MAX_FIELD + 1);
        let pr = |url: &str| {
            serde_json::json!({
                "pull_request": {"html_url": url, "number": 1, "head": {"sha": long}},
                "repository": {"full_name": long, "owner": {"login": long}},
                "organization": {"login": long},
            })
        };
        let long_url = format!("https://github.com/o/r/pull/1?{long}");
        assert!(
            event("pull_request", pr(&long_url)).is_none(),
            "no URL: ignored"
        );
        let mut body = pr("https://github.com/o/r/pull/1").to_string().into_bytes();
        let x = extract(
            "pull_request",
            "d",
            &mut body,
            SystemTime::UNIX_EPOCH,
            |_, _| None,
        )
        .unwrap();
        let p = x.event.unwrap();
        assert_eq!((p.org, p.repo, p.commit_sha), (None, None, None));
        assert!(x.record.is_none(), "no SHA to remember");
        // Exactly MAX_FIELD is kept.
        let edge = format!(
            "https://github.com/o/r/pull/1?{}",
            "a".repeat(MAX_FIELD - 30)
        );
        assert_eq!(edge.len(), MAX_FIELD);
        assert_eq!(event("pull_request", pr(&edge)).unwrap().url, edge);
    }

    #[test]
    fn mention_rules() {
        assert_eq!(
            mentions("hi @Alice and @bob-2, cc @alice"),
            ["alice", "bob-2"]
        );
        assert_eq!(mentions("@alice2 is not @alice."), ["alice2", "alice"]);
        assert_eq!(mentions("mail a@b.c @ @_x"), ["b"]);
        assert_eq!(
            mentions(&format!("@{}", "a".repeat(40))),
            Vec::<String>::new()
        );
        assert_eq!(mentions("ünï @cödé"), ["c"]);
        let many: String = (0..150).map(|i| format!("@u{i} ")).collect();
        assert_eq!(mentions(&many).len(), MAX_MENTIONS);
    }
}
