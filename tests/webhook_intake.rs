//! Webhook intake against the real server: every fixture's extraction, every
//! status code in PROTOCOL.md's order of checks, and the commit cache.

mod common;

use std::time::Duration;

use common::*;
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

/// Every fixture, with the event type header its README gives, and what the
/// server must extract: (URL, org, private, commit SHA, involved users), or
/// `None` when the event carries no URL (answered 200, not broadcast).
/// Values were worked out from the payloads by hand against PROTOCOL.md's
/// URL table (with an empty commit cache).
const FIXTURES: &[(&str, &str, Expect)] = &[
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

#[tokio::test]
async fn every_fixture_is_extracted_as_protocol_md_says() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = FIXTURES.iter().map(|f| f.0).collect();
    assert_eq!(on_disk, listed, "the table must cover every fixture file");

    for (file, kind, expect) in FIXTURES {
        // A fresh server per fixture: the commit cache starts empty.
        let server = TestServer::start("").await;
        let tap = server.hub().tap();
        let delivery = format!("delivery-{file}");
        let (status, body) = server
            .webhook_with_id(kind, &fixture(file), &delivery)
            .await;
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
                let got: Vec<&str> = e.users().iter().map(|u| &**u).collect();
                let mut got_sorted = got.clone();
                got_sorted.sort();
                let mut want: Vec<&str> = users.to_vec();
                want.sort();
                assert_eq!(got_sorted, want, "{file}");
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
async fn pr_keys_come_from_the_url() {
    let server = TestServer::start("").await;
    let tap = server.hub().tap();
    for (file, kind, key) in [
        (
            "pull_request.opened.json",
            "pull_request",
            Some("codertocat/hello-world#2"),
        ),
        (
            "pull_request_review.dismissed.json",
            "pull_request_review",
            Some("hellomouse/gns#902"),
        ),
        (
            "issue_comment.created.on-pull-request.json",
            "issue_comment",
            Some("runatlantis/atlantis-tests#1"),
        ),
        ("check_suite.requested.json", "check_suite", None),
    ] {
        assert_eq!(server.webhook(kind, &fixture(file)).await.0, 200);
        assert_eq!(tap.try_recv().unwrap().pr_key(), key, "{file}");
    }
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
    let mut req = b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pull_request\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'a'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    let (s, text) = raw(addr, &req).await;
    assert_eq!(s, 413, "{text}");

    // A chunked body within the limit goes through.
    let mut req = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\n{}Transfer-Encoding: chunked\r\n\r\n",
        signed_headers("pull_request", &good)
    )
    .into_bytes();
    for part in good.chunks(100) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (s, text) = raw(addr, &req).await;
    assert_eq!(s, 200, "{text}");
    assert!(text.ends_with("OK"));
    assert_eq!(
        next_event(&mut client).await["url"],
        "https://github.com/acme/api/pull/7"
    );
    assert!(tap.try_recv().is_ok());

    // 401: missing, wrong prefix, wrong digest, signed with an empty secret.
    let wrong_digest = {
        let mut s = sig.clone().into_bytes();
        let last = s.len() - 1;
        s[last] = if s[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(s).unwrap()
    };
    let sha1_prefix = sig.replace("sha256=", "sha1=");
    let empty_key = hookfan::sign(b"", &good);
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
        let (s, b) = post(addr, "/webhook", &headers, good.clone()).await;
        assert_eq!((s, b.as_str()), (401, "unauthorized\n"), "{what}");
    }

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
    let check = fixture("check_run.rerequested.no-pull-requests.json");
    let check_json: Value = serde_json::from_slice(&check).unwrap();
    let head = check_json["check_run"]["head_sha"]
        .as_str()
        .unwrap()
        .to_owned();

    // Without a cached PR: the repository URL.
    assert_eq!(server.webhook("check_run", &check).await.0, 200);
    assert_eq!(
        tap.try_recv().unwrap().url(),
        "http://github.com/github/hello-world"
    );

    // A pull_request event whose head is that SHA teaches the cache.
    let mut pr: Value = serde_json::from_slice(&fixture("pull_request.synchronize.json")).unwrap();
    pr["pull_request"]["head"]["sha"] = json!(head);
    assert_eq!(
        server
            .webhook("pull_request", &serde_json::to_vec(&pr).unwrap())
            .await
            .0,
        200
    );
    assert_eq!(tap.try_recv().unwrap().commit_sha(), Some(head.as_str()));

    assert_eq!(server.webhook("check_run", &check).await.0, 200);
    let e = tap.try_recv().unwrap();
    assert_eq!(e.url(), "https://github.com/Codertocat/Hello-World/pull/2");
    assert_eq!(e.commit_sha(), Some(head.as_str()));
    assert_eq!(server.handle().commit_cache().stats().entries, 1);

    // status [ext]: only through the cache.
    let mut status: Value = serde_json::from_slice(&fixture("status.json")).unwrap();
    assert_eq!(
        server
            .webhook("status", &serde_json::to_vec(&status).unwrap())
            .await
            .1,
        "ignored: event carries no pull request URL\n"
    );
    status["sha"] = json!(head);
    assert_eq!(
        server
            .webhook("status", &serde_json::to_vec(&status).unwrap())
            .await
            .1,
        "OK"
    );
    assert_eq!(
        tap.try_recv().unwrap().url(),
        "https://github.com/Codertocat/Hello-World/pull/2"
    );
}

#[tokio::test]
async fn commit_cache_is_bounded_in_entries() {
    // One entry at most: a second PR's head evicts the first.
    let server = TestServer::start("[webhook]\ncommit_cache_entries = 1\n").await;
    let tap = server.hub().tap();
    let check = |sha: &str| {
        serde_json::to_vec(&json!({
            "check_suite": {"head_sha": sha, "pull_requests": []},
            "repository": {"html_url": "https://github.com/acme/api", "owner": {"login": "acme"}}
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
