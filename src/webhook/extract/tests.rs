//! The rules of extraction, one by one.

use std::time::SystemTime;

use super::users::mentions;
use super::*;
use crate::event::{MAX_FIELD, MAX_LOGIN, MAX_MENTIONS, MAX_USERS};

/// Extracts with a commit cache that knows `cached` as the PR of
/// commit `s` in repository `o/r`, and nothing else.
fn run(kind: &str, json: &str, cached: Option<PrInfo>) -> Result<Extraction, ParseError> {
    let mut body = json.as_bytes().to_vec();
    extract(kind, "d", &mut body, SystemTime::UNIX_EPOCH, |repo, sha| {
        cached.clone().filter(|_| (repo, sha) == ("o/r", "s"))
    })
}

/// The URL the event carries for every client (not the repository URL of
/// an event for payload clients only).
fn url(kind: &str, json: &str, cached: Option<PrInfo>) -> Option<String> {
    run(kind, json, cached)
        .unwrap()
        .event
        .filter(|e| !e.payload_only)
        .map(|e| e.url)
}

#[test]
fn an_event_without_a_url_is_for_payload_clients_under_its_repository_url() {
    let push = r#"{"ref":"refs/heads/main","after":"abc","repository":{"html_url":"https://github.com/o/r","full_name":"o/r","private":true,"owner":{"login":"o"}},"sender":{"login":"u"}}"#;
    let e = run("push", push, None).unwrap().event.unwrap();
    assert!(e.payload_only);
    assert_eq!(
        (
            e.url.as_str(),
            e.org.as_deref(),
            e.repo.as_deref(),
            e.private
        ),
        ("https://github.com/o/r", Some("o"), Some("o/r"), true)
    );
    // Nothing to put it under: not an event at all.
    assert!(run("push", r#"{"ref":"x"}"#, None).unwrap().event.is_none());
    // An event with a URL of its own is for everyone.
    let pr = r#"{"pull_request":{"html_url":"https://github.com/o/r/pull/1"},"repository":{"html_url":"https://github.com/o/r"}}"#;
    assert!(
        !run("pull_request", pr, None)
            .unwrap()
            .event
            .unwrap()
            .payload_only
    );
}

fn cached(url: &str) -> Option<PrInfo> {
    Some(PrInfo::new(url, "", 1, SystemTime::UNIX_EPOCH))
}

#[test]
fn refuses_non_json_and_non_objects() {
    for bad in ["", "{", "{\"a\":1", "nope", "{\"a\":1}}"] {
        assert!(
            matches!(run("push", bad, None), Err(ParseError::InvalidJson(_))),
            "{bad:?}"
        );
    }
    for not_obj in ["[]", "1", "\"s\"", "null"] {
        assert_eq!(
            run("push", not_obj, None).unwrap_err(),
            ParseError::NotObject
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
    let number =
        format!(r#"{{"check_run":{{"head_sha":"s","pull_requests":[{{"number":2}}]}},{repo}}}"#);
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
    let mut body = br#"{"status":1,"sha":"ABC","repository":{"full_name":"Acme/Api"}}"#.to_vec();
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
    let null_pr = r#"{"issue":{"html_url":"https://github.com/o/r/issues/1","pull_request":null}}"#;
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

#[test]
fn action_is_the_top_level_string_when_printable_and_not_over_long() {
    let pr = |action: serde_json::Value| {
        event(
            "pull_request",
            serde_json::json!({
                "action": action,
                "pull_request": {"html_url": "https://github.com/o/r/pull/1", "action": "nested"},
            }),
        )
        .unwrap()
        .action
    };
    assert_eq!(pr("closed".into()).as_deref(), Some("closed"));
    let edge = "a".repeat(MAX_FIELD);
    assert_eq!(pr(edge.clone().into()), Some(edge));
    for absent in [
        serde_json::Value::Null,
        7.into(),
        "".into(),
        "a".repeat(MAX_FIELD + 1).into(),
        "clo\nsed".into(),
        "x\u{7f}".into(),
    ] {
        assert_eq!(pr(absent.clone()), None, "{absent}");
    }
    let no_action = event(
        "pull_request",
        serde_json::json!({"pull_request": {"html_url": "https://github.com/o/r/pull/1", "action": "nested"}}),
    )
    .unwrap();
    assert_eq!(no_action.action, None, "only the top level counts");
}
