//! Webhook intake against the real server: every fixture's extraction, every
//! status code in PROTOCOL.md's order of checks, and the commit cache.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Expect = Option<(
    &'static str,
    &'static str,
    bool,
    Option<&'static str>,
    &'static [&'static str],
)>;

const H1: &str = "0b1e2c6f4d8a3e5b7c9d1f2a4b6c8e0d2f4a6b8c";
const H2: &str = "5f3c8e1a9b7d2c4e6f8a0b2d4c6e8f0a1b3d5c7e";
const PR7: &str = "https://github.com/acme/api/pull/7";
const BOT: &str = "hookfan-ci[bot]";

/// Every fixture of the project (tests/fixtures/webhooks), with its event
/// type and what the server must extract: (URL, org, private, commit SHA,
/// involved users), or `None` when the event carries no URL (answered 200,
/// not broadcast). Worked out by hand from what each payload is made of
/// (scripts/gen-fixtures.py) against the URL table of docs/protocol.md,
/// with an empty commit cache.
const FIXTURES: &[(&str, &str, Expect)] = &[
    (
        "check_run.completed.json",
        "check_run",
        Some((PR7, "acme", false, Some(H2), &[BOT])),
    ),
    // Empty pull_requests and nothing cached: the repository URL.
    (
        "check_run.created.no-pull-requests.json",
        "check_run",
        Some((
            "https://github.com/acme/api",
            "acme",
            false,
            Some(H2),
            &[BOT],
        )),
    ),
    (
        "check_suite.completed.json",
        "check_suite",
        Some((PR7, "acme", false, Some(H2), &[BOT])),
    ),
    (
        "check_suite.requested.no-pull-requests.json",
        "check_suite",
        Some((
            "https://github.com/acme/api",
            "acme",
            false,
            Some(H2),
            &[BOT],
        )),
    ),
    // A comment on a plain issue carries no PR URL.
    ("issue_comment.created.json", "issue_comment", None),
    (
        "issue_comment.created.on-pull-request.json",
        "issue_comment",
        Some((PR7, "acme", false, None, &["alice", "bob"])),
    ),
    ("ping.json", "ping", None),
    (
        "pull_request.assigned.json",
        "pull_request",
        Some((PR7, "acme", false, Some(H2), &["alice", "bob", "carol"])),
    ),
    (
        "pull_request.closed.json",
        "pull_request",
        Some((PR7, "acme", false, Some(H2), &["alice", "bob"])),
    ),
    (
        "pull_request.labeled.json",
        "pull_request",
        Some((PR7, "acme", false, Some(H2), &["alice", "bob"])),
    ),
    (
        "pull_request.opened.json",
        "pull_request",
        Some((PR7, "acme", false, Some(H1), &["alice", "bob"])),
    ),
    (
        "pull_request.opened.private-repo.json",
        "pull_request",
        Some((
            "https://github.com/widgets/secret-sauce/pull/3",
            "widgets",
            true,
            Some("9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"),
            &["bob", "carol"],
        )),
    ),
    (
        "pull_request.review_requested.json",
        "pull_request",
        Some((PR7, "acme", false, Some(H2), &["alice", "bob", "carol"])),
    ),
    (
        "pull_request.synchronize.json",
        "pull_request",
        Some((PR7, "acme", false, Some(H2), &["alice", "bob"])),
    ),
    (
        "pull_request_review.submitted.json",
        "pull_request_review",
        Some((PR7, "acme", false, None, &["alice", "bob"])),
    ),
    // The comment mentions @carol.
    (
        "pull_request_review_comment.created.json",
        "pull_request_review_comment",
        Some((PR7, "acme", false, None, &["alice", "bob", "carol"])),
    ),
    (
        "pull_request_review_thread.resolved.json",
        "pull_request_review_thread",
        Some((PR7, "acme", false, None, &["alice"])),
    ),
    ("push.json", "push", None),
    // status [ext]: only through the commit cache, empty here.
    ("status.json", "status", None),
    (
        "workflow_run.completed.json",
        "workflow_run",
        Some((PR7, "acme", false, Some(H2), &["alice"])),
    ),
    (
        "workflow_run.requested.no-pull-requests.json",
        "workflow_run",
        None,
    ),
];

/// GitHub's own example payloads (the shared corpus beside the repository,
/// when `HOOKFAN_SHARED_FIXTURES` points at it): a cross-check of the same
/// rules on third-party data. Values worked out by hand from the payloads.
const SHARED_FIXTURES: &[(&str, &str, Expect)] = &[
    (
        "check_run.completed.github-actions.json",
        "check_run",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat"],
        )),
    ),
    (
        "check_run.completed.json",
        "check_run",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat"],
        )),
    ),
    (
        "check_run.created.json",
        "check_run",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat"],
        )),
    ),
    (
        "check_run.requested_action.json",
        "check_run",
        Some((
            "https://github.com/electron/electron/pull/26764",
            "electron",
            false,
            Some("5bd5f196a46b8222fb7484f05faba41a73cf34bd"),
            &["codebytere"],
        )),
    ),
    // Empty pull_requests and nothing cached: the repository URL.
    (
        "check_run.rerequested.no-pull-requests.json",
        "check_run",
        Some((
            "http://github.com/github/hello-world",
            "github",
            false,
            Some("d6fde92930d4715a2b49857d24b940956b26d2d3"),
            &["octocat"],
        )),
    ),
    (
        "check_suite.completed.json",
        "check_suite",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat"],
        )),
    ),
    (
        "check_suite.completed.no-pull-requests.json",
        "check_suite",
        Some((
            "https://github.com/Codertocat/Hello-World",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat"],
        )),
    ),
    (
        "check_suite.requested.json",
        "check_suite",
        Some((
            "https://github.com/Codertocat/Hello-World",
            "codertocat",
            false,
            Some("f95f852bd8fca8fcc58a9a2d6c842781e32a215e"),
            &["codertocat"],
        )),
    ),
    (
        "check_suite.rerequested.json",
        "check_suite",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["octocoders-linter[bot]"],
        )),
    ),
    ("installation.created.json", "installation", None),
    ("installation.deleted.json", "installation", None),
    (
        "installation_repositories.added.json",
        "installation_repositories",
        None,
    ),
    (
        "installation_repositories.removed.json",
        "installation_repositories",
        None,
    ),
    ("issue_comment.created.json", "issue_comment", None),
    // The issue is the PR: its author counts as the PR author.
    (
        "issue_comment.created.on-pull-request.json",
        "issue_comment",
        Some((
            "https://github.com/runatlantis/atlantis-tests/pull/1",
            "runatlantis",
            false,
            None,
            &["runatlantis"],
        )),
    ),
    (
        "issue_comment.created.private-repo.json",
        "issue_comment",
        None,
    ),
    (
        "issue_comment.created.with-installation.json",
        "issue_comment",
        None,
    ),
    ("issue_comment.edited.json", "issue_comment", None),
    ("issues.labeled.json", "issues", None),
    ("issues.milestoned.on-pull-request.json", "issues", None),
    ("issues.opened.empty-body.json", "issues", None),
    ("issues.opened.json", "issues", None),
    ("issues.transferred.private-repo.json", "issues", None),
    (
        "merge_group.checks_requested.private-repo.json",
        "merge_group",
        None,
    ),
    ("ping.json", "ping", None),
    ("ping.organization-hook.json", "ping", None),
    ("ping.with-app_id.json", "ping", None),
    (
        "pull_request.assigned.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.closed.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.converted_to_draft.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.labeled.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.opened.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.opened.null-body.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.opened.with-organization.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.ready_for_review.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.reopened.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.review_request_removed.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.review_requested.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.synchronize.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request.unlabeled.json",
        "pull_request",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821"),
            &["codertocat"],
        )),
    ),
    // The review's PR URL and its repository disagree in octokit's example;
    // the URL wins (PR subscribers subscribe by URL).
    (
        "pull_request_review.dismissed.json",
        "pull_request_review",
        Some((
            "https://github.com/hellomouse/GNS/pull/902",
            "codertocat",
            false,
            None,
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request_review.submitted.json",
        "pull_request_review",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            None,
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request_review_comment.created.json",
        "pull_request_review_comment",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            None,
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request_review_comment.edited.json",
        "pull_request_review_comment",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            None,
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request_review_thread.resolved.json",
        "pull_request_review_thread",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            None,
            &["codertocat", "octocat"],
        )),
    ),
    (
        "pull_request_review_thread.unresolved.json",
        "pull_request_review_thread",
        Some((
            "https://github.com/Codertocat/Hello-World/pull/2",
            "codertocat",
            false,
            None,
            &["codertocat", "octocat"],
        )),
    ),
    ("push.json", "push", None),
    ("push.new-branch.json", "push", None),
    ("push.with-installation.json", "push", None),
    // status: only through the commit cache, which is empty here.
    ("status.json", "status", None),
    ("status.with-installation.json", "status", None),
    ("workflow_run.completed.json", "workflow_run", None),
    // PROTOCOL.md's [ext] row: repository URL + /pull/ + the first PR's number.
    (
        "workflow_run.completed.with-pull-requests.json",
        "workflow_run",
        Some((
            "https://github.com/octo-org/octo-repo/pull/2",
            "octo-org",
            false,
            Some("3484a3fb816e0859fd6e1cea078d76385ff50625"),
            &["codertocat"],
        )),
    ),
    ("workflow_run.requested.json", "workflow_run", None),
];

/// Posts every file of `table` (read from `dir`) to a fresh server and
/// checks what was extracted and broadcast.
async fn check_table(dir: &std::path::Path, table: &[(&str, &str, Expect)]) {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = table.iter().map(|f| f.0).collect();
    assert_eq!(on_disk, listed, "the table must cover every fixture file");

    for (file, kind, expect) in table {
        // A fresh server per fixture: the commit cache starts empty.
        let server = TestServer::start("").await;
        let tap = server.hub().tap();
        let delivery = format!("delivery-{file}");
        let body = std::fs::read(dir.join(file)).unwrap();
        let (status, body) = server.webhook_with_id(kind, &body, &delivery).await;
        assert_eq!(status, 200, "{file}: {body}");
        match expect {
            None => {
                assert!(body.starts_with("ignored: "), "{file}: {body}");
                assert!(tap.try_recv().is_err(), "{file}: must not be broadcast");
            }
            Some((url, org, private, sha, users)) => {
                assert_eq!(body, "OK", "{file}");
                let e = tap
                    .try_recv()
                    .unwrap_or_else(|_| panic!("{file}: not broadcast"));
                assert_eq!(e.kind(), *kind, "{file}");
                assert_eq!(e.delivery_id(), delivery, "{file}");
                assert_eq!(e.url(), *url, "{file}");
                assert_eq!(e.org(), Some(*org), "{file}");
                assert_eq!(e.is_private(), *private, "{file}");
                assert_eq!(e.commit_sha(), *sha, "{file}");
                let mut got: Vec<&str> = e.users().iter().map(|u| &**u).collect();
                got.sort();
                let mut want: Vec<&str> = users.to_vec();
                want.sort();
                assert_eq!(got, want, "{file}");
                // The wire JSON carries exactly these fields.
                let wire: Value = serde_json::from_slice(e.payload()).unwrap();
                assert_eq!(wire["url"], *url, "{file}");
                assert_eq!(wire["type"], *kind, "{file}");
                assert_eq!(wire["delivery_id"], delivery.as_str(), "{file}");
                match sha {
                    Some(s) => assert_eq!(wire["commit_sha"], *s, "{file}"),
                    None => assert!(wire.get("commit_sha").is_none(), "{file}"),
                }
                assert!(wire["timestamp"].as_str().unwrap().ends_with('Z'));
            }
        }
    }
}

#[tokio::test]
async fn every_fixture_is_extracted_as_the_protocol_says() {
    check_table(&fixtures_dir(), FIXTURES).await;
}

#[tokio::test]
async fn fixtures_are_the_size_of_githubs() {
    // Realistic payloads: pull request events are 20-40 KB at GitHub.
    for (file, _, _) in FIXTURES {
        let len = fixture(file).len();
        if file.starts_with("pull_request") {
            assert!((20_000..=40_000).contains(&len), "{file}: {len} bytes");
        } else {
            assert!((4_000..=40_000).contains(&len), "{file}: {len} bytes");
        }
    }
}

/// The cross-check on GitHub's own example payloads. It runs when
/// `HOOKFAN_SHARED_FIXTURES` names a directory of them (`.ci/run` passes the
/// variable on when it is set), and says so when it does not run.
#[tokio::test]
async fn shared_corpus_cross_check() {
    let Some(dir) = shared_fixtures_dir() else {
        eprintln!(
            "shared_corpus_cross_check: not run: HOOKFAN_SHARED_FIXTURES is not set (point it at a directory of GitHub's example payloads)"
        );
        return;
    };
    eprintln!(
        "shared_corpus_cross_check: {} files from {}",
        SHARED_FIXTURES.len(),
        dir.display()
    );
    check_table(&dir, SHARED_FIXTURES).await;
}

#[tokio::test]
async fn pr_keys_come_from_the_url() {
    let server = TestServer::start("").await;
    let tap = server.hub().tap();
    for (file, kind, key) in [
        (
            "pull_request.opened.json",
            "pull_request",
            Some("acme/api#7"),
        ),
        (
            "pull_request.opened.private-repo.json",
            "pull_request",
            Some("widgets/secret-sauce#3"),
        ),
        (
            "issue_comment.created.on-pull-request.json",
            "issue_comment",
            Some("acme/api#7"),
        ),
        (
            "check_suite.completed.json",
            "check_suite",
            Some("acme/api#7"),
        ),
        (
            "workflow_run.completed.json",
            "workflow_run",
            Some("acme/api#7"),
        ),
    ] {
        assert_eq!(server.webhook(kind, &fixture(file)).await.0, 200);
        assert_eq!(tap.try_recv().unwrap().pr_key(), key, "{file}");
    }
    // A check suite the cache cannot place carries the repository URL: no PR key.
    let fresh = TestServer::start("").await;
    let tap = fresh.hub().tap();
    let file = "check_suite.requested.no-pull-requests.json";
    assert_eq!(fresh.webhook("check_suite", &fixture(file)).await.0, 200);
    assert_eq!(tap.try_recv().unwrap().pr_key(), None);
}

/// Sends raw bytes and returns the status line's code and the whole answer.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the head and the declared body are in.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("no answer")
            .unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if n == 0 || complete_response(&text) {
            let code = text[9..12].parse().unwrap();
            return (code, text);
        }
    }
}

fn complete_response(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    body.len() >= len
}

fn signed_headers(kind: &str, body: &[u8]) -> String {
    format!(
        "X-GitHub-Event: {kind}\r\nX-GitHub-Delivery: d1\r\nX-Hub-Signature-256: {}\r\n",
        hookfan::sign(SECRET, body)
    )
}

/// 401 for each wrong signature header on `good`: missing, wrong prefix,
/// wrong digest, signed with an empty secret, not hex.
async fn every_bad_signature_is_401(addr: std::net::SocketAddr, good: &[u8]) {
    let sig = hookfan::sign(SECRET, good);
    let wrong_digest = {
        let mut s = sig.clone().into_bytes();
        let last = s.len() - 1;
        s[last] = if s[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(s).unwrap()
    };
    let sha1_prefix = sig.replace("sha256=", "sha1=");
    let empty_key = hookfan::sign(b"", good);
    let uppercase_prefix = sig.replace("sha256=", "SHA256=");
    for (what, header) in [
        ("missing", None),
        ("wrong prefix", Some(sha1_prefix.as_str())),
        ("uppercase prefix", Some(uppercase_prefix.as_str())),
        ("no prefix", Some(&sig[7..])),
        ("wrong digest", Some(wrong_digest.as_str())),
        ("empty secret", Some(empty_key.as_str())),
        ("not hex", Some("sha256=zz")),
    ] {
        let mut headers = vec![("x-github-event", "pull_request")];
        if let Some(h) = header {
            headers.push(("x-hub-signature-256", h));
        }
        let (s, b) = post(addr, "/webhook", &headers, good.to_vec()).await;
        assert_eq!((s, b.as_str()), (401, "unauthorized\n"), "{what}");
    }
}

/// A chunked `POST /webhook` of `chunks` with the headers signed for
/// `signed_for`; with the terminating chunk when `end`.
fn chunked_request(signed_for: &[u8], chunks: &[&[u8]], end: bool) -> Vec<u8> {
    let mut req = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\n{}Transfer-Encoding: chunked\r\n\r\n",
        signed_headers("pull_request", signed_for)
    )
    .into_bytes();
    for part in chunks {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    if end {
        req.extend_from_slice(b"0\r\n\r\n");
    }
    req
}

// One scenario on purpose: the order of the checks is what it tests, and
// one client must receive nothing between the two good events.
#[tokio::test]
async fn status_codes_in_protocol_order_and_nothing_is_lost() {
    let server = TestServer::start(
        "[webhook]\nmax_payload_bytes = 1024\nallowed_events = [\"pull_request\", \"check_run\"]\n",
    )
    .await;
    let addr = server.addr;
    let mut client = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let tap = server.hub().tap();
    let good = pr_payload("acme", "api", 7, "bob", false);
    let sig = hookfan::sign(SECRET, &good);

    // 405: method other than POST.
    let (s, b) = request(addr, "GET", "/webhook", &[], vec![]).await;
    assert_eq!((s, b.as_str()), (405, "method not allowed\n"));
    let (s, _) = request(
        addr,
        "PUT",
        "/webhook",
        &[
            ("x-github-event", "pull_request"),
            ("x-hub-signature-256", &sig),
        ],
        good.clone(),
    )
    .await;
    assert_eq!(s, 405);

    // 200 not broadcast: event type outside the allowed list (checked before
    // size and signature).
    let (s, b) = post(
        addr,
        "/webhook",
        &[("x-github-event", "issues")],
        vec![b'x'; 5000],
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "ignored: event type not allowed\n"));

    // 413: declared length over the limit, answered without reading a byte
    // of the body (none is sent) and before the signature is looked at.
    let (s, text) = raw(addr, b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\nContent-Length: 2000\r\n\r\n").await;
    assert_eq!(s, 413, "{text}");
    assert!(text.ends_with("payload too large\n"), "{text}");

    // 413: chunked body passing the limit; answered although the body never
    // ends (the terminating chunk is not sent), so the server stopped reading.
    // (With a well-formed signature header: without one, 401 comes first.)
    let req = chunked_request(&good, &[&[b'a'; 512][..]; 3], false);
    let (s, text) = raw(addr, &req).await;
    assert_eq!(s, 413, "{text}");

    // A chunked body within the limit goes through.
    let parts: Vec<&[u8]> = good.chunks(100).collect();
    let (s, text) = raw(addr, &chunked_request(&good, &parts, true)).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.ends_with("OK"));
    assert_eq!(
        next_event(&mut client).await["url"],
        "https://github.com/acme/api/pull/7"
    );
    assert!(tap.try_recv().is_ok());

    every_bad_signature_is_401(addr, &good).await;

    // 400: invalid JSON, truncated JSON, JSON that is not an object; the
    // signature is valid, so these reach the parser.
    for (what, body) in [
        ("invalid", b"not json".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("array", b"[1,2,3]".to_vec()),
        ("string", b"\"pull_request\"".to_vec()),
        ("empty", Vec::new()),
    ] {
        let (s, b) = server.webhook("pull_request", &body).await;
        assert_eq!((s, b.as_str()), (400, "bad request\n"), "{what}");
    }

    // 200 not broadcast: an allowed type carrying no URL.
    let (s, b) = server
        .webhook("check_run", br#"{"check_run":{"pull_requests":[]}}"#)
        .await;
    assert_eq!(
        (s, b.as_str()),
        (200, "ignored: event carries no pull request URL\n")
    );

    // None of the above reached the broker; the client still gets the next
    // good event, and it is the first thing it gets.
    assert!(tap.try_recv().is_err());
    let other = pr_payload("acme", "api", 8, "bob", false);
    let (s, b) = server.webhook("pull_request", &other).await;
    assert_eq!((s, b.as_str()), (200, "OK"));
    assert_eq!(
        next_event(&mut client).await["url"],
        "https://github.com/acme/api/pull/8"
    );
}

#[tokio::test]
async fn other_paths_and_health() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let (s, b) = request(addr, "GET", "/", &[], vec![]).await;
    assert_eq!((s, b.as_str()), (200, "hookfan is running\n"));
    let (s, b) = request(addr, "GET", "/healthz", &[], vec![]).await;
    assert_eq!((s, b.as_str()), (200, "ok\n"));
    for path in ["/webhook/", "/ws/x", "/nope", "/webhooks"] {
        let (s, _) = request(addr, "POST", path, &[], vec![]).await;
        assert_eq!(s, 404, "{path}");
    }
}

#[tokio::test]
async fn commit_cache_links_early_check_events_to_their_pr() {
    let server = TestServer::start("").await;
    let tap = server.hub().tap();
    let check = fixture("check_run.created.no-pull-requests.json");

    // Without a cached PR: the repository URL.
    assert_eq!(server.webhook("check_run", &check).await.0, 200);
    assert_eq!(tap.try_recv().unwrap().url(), "https://github.com/acme/api");
    // status and workflow_run [ext] without a PR: not broadcast at all.
    let status = fixture("status.json");
    let run = fixture("workflow_run.requested.no-pull-requests.json");
    assert_eq!(
        server.webhook("status", &status).await.1,
        "ignored: event carries no pull request URL\n"
    );
    assert_eq!(
        server.webhook("workflow_run", &run).await.1,
        "ignored: event carries no pull request URL\n"
    );

    // A pull_request event whose head is that SHA teaches the cache.
    let sync = fixture("pull_request.synchronize.json");
    assert_eq!(server.webhook("pull_request", &sync).await.0, 200);
    assert_eq!(tap.try_recv().unwrap().commit_sha(), Some(H2));
    assert_eq!(server.handle().commit_cache().stats().entries, 1);

    for (kind, body) in [
        ("check_run", &check),
        ("status", &status),
        ("workflow_run", &run),
    ] {
        assert_eq!(server.webhook(kind, body).await.1, "OK", "{kind}");
        let e = tap.try_recv().unwrap();
        assert_eq!((e.kind(), e.url()), (kind, PR7));
        assert_eq!(e.commit_sha(), Some(H2), "{kind}");
    }
    // The opened event's head (H1) is another commit: a check on it is
    // not linked to the PR by the synchronize event.
    let mut other: Value = serde_json::from_slice(&check).unwrap();
    other["check_run"]["head_sha"] = json!(H1);
    server
        .webhook("check_run", &serde_json::to_vec(&other).unwrap())
        .await;
    assert_eq!(tap.try_recv().unwrap().url(), "https://github.com/acme/api");
}

/// The same commit in another organization's repository never carries
/// this one's pull request (a private one here): the commit cache answers
/// for the event's own repository only (issue #23, part 1).
// One scenario: the commit cache is filled and then queried from the
// other repositories, in that order.
#[tokio::test]
async fn a_commit_pushed_elsewhere_never_resolves_to_this_repositorys_pr() {
    let server = TestServer::start("").await;
    let types = json!([
        "pull_request",
        "check_run",
        "check_suite",
        "status",
        "workflow_run"
    ]);
    let mut acme = subscribe(
        server.addr,
        "bob",
        json!({"organization": "acme", "event_types": types}),
    )
    .await;
    let mut evil = subscribe(
        server.addr,
        "trudy",
        json!({"organization": "evilorg", "event_types": types}),
    )
    .await;
    let secret_pr = "https://github.com/acme/secret/pull/7";
    let pr = rehomed("pull_request.synchronize.json", "acme", "secret", true);
    assert_eq!(server.webhook("pull_request", &pr).await.1, "OK");
    assert_eq!(next_event(&mut acme).await["url"], secret_pr);

    // evilorg/pub gets the same head SHA (H2) in every check and status.
    let evil_repo = "https://github.com/evilorg/pub";
    for (kind, file, answer, url) in [
        (
            "check_run",
            "check_run.created.no-pull-requests.json",
            "OK",
            Some(evil_repo),
        ),
        (
            "check_suite",
            "check_suite.requested.no-pull-requests.json",
            "OK",
            Some(evil_repo),
        ),
        (
            "status",
            "status.json",
            "ignored: event carries no pull request URL\n",
            None,
        ),
        (
            "workflow_run",
            "workflow_run.requested.no-pull-requests.json",
            "ignored: event carries no pull request URL\n",
            None,
        ),
    ] {
        let body = rehomed(file, "evilorg", "pub", false);
        assert!(String::from_utf8_lossy(&body).contains(H2), "{file}");
        assert_eq!(server.webhook(kind, &body).await.1, answer, "{kind}");
        if let Some(url) = url {
            let e = next_event(&mut evil).await;
            assert_eq!(
                (e["type"].as_str(), e["url"].as_str()),
                (Some(kind), Some(url)),
                "{e}"
            );
        }
    }
    // The same events in acme/secret still resolve to its pull request.
    for (kind, file) in [
        ("check_run", "check_run.created.no-pull-requests.json"),
        ("status", "status.json"),
        (
            "workflow_run",
            "workflow_run.requested.no-pull-requests.json",
        ),
    ] {
        let body = rehomed(file, "acme", "secret", true);
        assert_eq!(server.webhook(kind, &body).await.1, "OK", "{kind}");
        let e = next_event(&mut acme).await;
        assert_eq!(
            (e["type"].as_str(), e["url"].as_str()),
            (Some(kind), Some(secret_pr)),
            "{e}"
        );
    }
    // Nothing else reached trudy: no event of acme, in any form.
    let more = tokio::time::timeout(Duration::from_millis(300), next_json(&mut evil)).await;
    assert!(more.is_err(), "trudy got more: {:?}", more.ok());
}

#[tokio::test]
async fn commit_cache_is_bounded_in_entries() {
    // One entry at most: a second PR's head evicts the first.
    let server = TestServer::start("[webhook]\ncommit_cache_entries = 1\n").await;
    let tap = server.hub().tap();
    let check = |sha: &str| {
        serde_json::to_vec(&json!({
            "check_suite": {"head_sha": sha, "pull_requests": []},
            "repository": {"html_url": "https://github.com/acme/api", "full_name": "acme/api", "owner": {"login": "acme"}}
        }))
        .unwrap()
    };
    let pr = |n: u64| pr_payload("acme", "api", n, "bob", false);
    server.webhook("pull_request", &pr(1)).await;
    server.webhook("pull_request", &pr(2)).await;
    let _ = (tap.try_recv(), tap.try_recv());
    server
        .webhook("check_suite", &check(&format!("{:040x}", 1)))
        .await;
    assert_eq!(tap.try_recv().unwrap().url(), "https://github.com/acme/api");
    server
        .webhook("check_suite", &check(&format!("{:040x}", 2)))
        .await;
    assert_eq!(
        tap.try_recv().unwrap().url(),
        "https://github.com/acme/api/pull/2"
    );
}
