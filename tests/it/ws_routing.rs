//! Who receives what: every subscription mode of PROTOCOL.md against real
//! webhooks, with the clients that must NOT receive an event checked too.
//!
//! "Did not receive" is checked without waiting: after the event under test
//! a marker event that the client does match is sent; events arrive in
//! acceptance order, so the marker must be the client's very next message.

use crate::common::*;
use serde_json::{Value, json};

/// A payload of `kind` in `org` where `login` plays `role` and nobody else
/// is involved but `zz-other`.
fn involving(org: &str, role: &str, login: &str) -> (&'static str, Vec<u8>) {
    let other = json!({"login": "zz-other"});
    let user = json!({"login": login});
    let mut pr = json!({
        "html_url": format!("https://github.com/{org}/api/pull/5"),
        "number": 5,
        "user": other,
        "assignees": [],
        "requested_reviewers": [],
        "head": {"sha": "0123456789012345678901234567890123456789"},
    });
    let mut root = json!({
        "repository": {"html_url": format!("https://github.com/{org}/api"), "full_name": format!("{org}/api"), "private": false, "owner": {"login": org}},
        "sender": other,
    });
    let kind = match role {
        "author" => {
            pr["user"] = user;
            "pull_request"
        }
        "assignee" => {
            pr["assignees"] = json!([user]);
            "pull_request"
        }
        "reviewer" => {
            pr["requested_reviewers"] = json!([user]);
            "pull_request"
        }
        "sender" => {
            root["sender"] = user;
            "pull_request"
        }
        "review" => {
            root["review"] = json!({"user": user, "state": "approved"});
            "pull_request_review"
        }
        "comment" => {
            root["comment"] = json!({"user": user, "body": "looks good"});
            "pull_request_review_comment"
        }
        "mention" => {
            root["comment"] = json!({"user": other, "body": format!("cc @{login}, please look")});
            "pull_request_review_comment"
        }
        _ => unreachable!(),
    };
    root["pull_request"] = pr;
    (kind, serde_json::to_vec(&root).unwrap())
}

/// Sends a marker (an event authored by `login` in `org`) and asserts it is
/// the next thing each of `clients` receives.
async fn assert_next_is_marker(
    server: &TestServer,
    clients: &mut [&mut Ws],
    org: &str,
    login: &str,
    id: &str,
) {
    let (kind, body) = involving(org, "author", login);
    server.webhook_with_id(kind, &body, id).await;
    for ws in clients.iter_mut() {
        let got = next_event(ws).await;
        assert_eq!(got["delivery_id"], id, "expected the marker, got {got}");
    }
}

// One scenario: the same three clients must receive nothing between the
// cases, which the markers after each one check.
#[tokio::test]
async fn user_events_only_matches_every_kind_of_involvement() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let mut alice = subscribe(
        addr,
        "alice",
        json!({"organization": "acme", "user_events_only": true}),
    )
    .await;
    let mut alice_any_org = subscribe(addr, "alice", json!({"user_events_only": true})).await;
    let mut bob = subscribe(
        addr,
        "bob",
        json!({"organization": "acme", "user_events_only": true}),
    )
    .await;

    for (i, role) in [
        "author", "assignee", "reviewer", "review", "comment", "mention", "sender",
    ]
    .iter()
    .enumerate()
    {
        let (kind, body) = involving("acme", role, "alice");
        let id = format!("{role}-{i}");
        assert_eq!(server.webhook_with_id(kind, &body, &id).await.0, 200);
        for ws in [&mut alice, &mut alice_any_org] {
            let got = next_event(ws).await;
            assert_eq!(got["delivery_id"], id.as_str(), "{role}");
            assert_eq!(got["type"], kind);
        }
        // bob is not involved (and alice is not involved in bob's marker).
        assert_next_is_marker(
            &server,
            &mut [&mut bob],
            "acme",
            "bob",
            &format!("bob-marker-{i}"),
        )
        .await;
    }
    // Case-insensitive logins: "ALICE" as the author.
    let (kind, body) = involving("acme", "author", "ALICE");
    let receivers = &mut [&mut alice, &mut alice_any_org];
    server
        .webhook_reaches(kind, &body, "upper", receivers)
        .await;

    // A mention ends at a character outside [A-Za-z0-9-]: "@alice." and
    // "@alice_x" mention alice...
    for (i, body) in ["thanks @alice.", "@alice_x"].iter().enumerate() {
        let mut v: Value =
            serde_json::from_slice(&involving("acme", "mention", "alice").1).unwrap();
        v["comment"]["body"] = json!(body);
        let id = format!("ends-{i}");
        let body = serde_json::to_vec(&v).unwrap();
        let receivers = &mut [&mut alice, &mut alice_any_org];
        server
            .webhook_reaches("pull_request_review_comment", &body, &id, receivers)
            .await;
    }
    // ...but near misses do not.
    let mut v: Value = serde_json::from_slice(&involving("acme", "mention", "alice").1).unwrap();
    v["comment"]["body"] = json!("ping @alice2, @alice-bot, @Alicey and mail alice@example.com");
    server
        .webhook_with_id(
            "pull_request_review_comment",
            &serde_json::to_vec(&v).unwrap(),
            "near-miss",
        )
        .await;
    assert_next_is_marker(
        &server,
        &mut [&mut alice, &mut alice_any_org],
        "acme",
        "alice",
        "m1",
    )
    .await;

    // Involved, but in an org alice does not belong to: nobody.
    let (kind, body) = involving("widgets", "author", "alice");
    server.webhook_with_id(kind, &body, "widgets").await;
    assert_next_is_marker(
        &server,
        &mut [&mut alice, &mut alice_any_org],
        "acme",
        "alice",
        "m2",
    )
    .await;
}

// One scenario: the final count of deliveries proves that nobody received
// anything besides what is read here, across all the sends.
#[tokio::test]
async fn org_star_and_pr_subscriptions_with_fixtures() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let mut lower = subscribe(addr, "codertocat", json!({"organization": "acme"})).await;
    let mut exact = subscribe(addr, "octocat", json!({"organization": "ACME"})).await;
    // hubot: acme and zeta; carol: widgets only.
    let mut star = subscribe(addr, "hubot", json!({"organization": "*"})).await;
    let mut star_elsewhere = subscribe(addr, "carol", json!({"organization": "*"})).await;
    let mut widgets = subscribe(addr, "carol", json!({"organization": "widgets"})).await;
    let mut pr7 = subscribe(
        addr,
        "octocat",
        json!({"pull_requests": ["https://github.com/ACME/API/pull/7"]}),
    )
    .await;
    let mut pr8 = subscribe(
        addr,
        "octocat",
        json!({"pull_requests": ["https://github.com/acme/api/pull/8"]}),
    )
    .await;
    let mut pr7_outsider = subscribe(
        addr,
        "dave",
        json!({"pull_requests": ["https://github.com/acme/api/pull/7"]}),
    )
    .await;
    let mut nothing = subscribe(addr, "hubot", json!({})).await;

    let sends = [
        ("pull_request", "pull_request.opened.json"),
        ("pull_request_review", "pull_request_review.submitted.json"),
        (
            "pull_request_review_comment",
            "pull_request_review_comment.created.json",
        ),
        (
            "pull_request_review_thread",
            "pull_request_review_thread.resolved.json",
        ),
        // [ext]: check runs on a subscribed PR reach its subscribers.
        ("check_run", "check_run.completed.json"),
        ("check_suite", "check_suite.completed.json"),
    ];
    for (kind, file) in sends {
        let receivers = &mut [&mut lower, &mut exact, &mut star, &mut pr7];
        server
            .webhook_reaches(kind, &fixture(file), file, receivers)
            .await;
    }
    // A check suite on a commit the cache does not know (the opened event's
    // head is another one): the repository URL, for org subscribers only.
    server
        .webhook_with_id(
            "check_suite",
            &fixture("check_suite.requested.no-pull-requests.json"),
            "repo-url",
        )
        .await;
    for ws in [&mut lower, &mut exact, &mut star] {
        let e = next_event(ws).await;
        assert_eq!(
            (e["delivery_id"].as_str(), e["url"].as_str()),
            (Some("repo-url"), Some("https://github.com/acme/api"))
        );
    }

    // Those that must not have received anything: the next thing each gets
    // is an event it does match.
    let marker = |org: &str, n: u64| pr_payload(org, "api", n, "zz", false);
    let receivers = &mut [&mut star_elsewhere, &mut widgets];
    server
        .webhook_reaches(
            "pull_request",
            &marker("widgets", 1),
            "m-widgets",
            receivers,
        )
        .await;
    let receivers = &mut [&mut lower, &mut exact, &mut star];
    server
        .webhook_reaches("pull_request", &marker("acme", 1), "m-acme", receivers)
        .await;
    let mut pr_marker: Value =
        serde_json::from_slice(&fixture("pull_request.closed.json")).unwrap();
    pr_marker["pull_request"]["html_url"] = json!("https://github.com/acme/api/pull/8");
    let pr_marker = serde_json::to_vec(&pr_marker).unwrap();
    let receivers = &mut [&mut pr8, &mut lower, &mut exact, &mut star];
    server
        .webhook_reaches("pull_request", &pr_marker, "m-pr8", receivers)
        .await;
    // pr7's next event is a PR 7 event, not the PR 8 marker.
    let closed = fixture("pull_request.closed.json");
    let receivers = &mut [&mut pr7, &mut lower, &mut exact, &mut star];
    server
        .webhook_reaches("pull_request", &closed, "m-pr7", receivers)
        .await;

    // dave subscribed to PR 7 but is not a member of acme, and `nothing`
    // subscribed to nothing: no event of this test reached them. Every
    // delivery the hub made is one read above.
    server.hub().sync().await;
    let _ = (&mut pr7_outsider, &mut nothing);
    let read_above: u64 = 6 * 4 + 3 + 2 + 3 + 4 + 4;
    assert_eq!(server.hub().stats().deliveries, read_above);
}

#[tokio::test]
async fn event_type_filters_and_explicit_only_types() {
    let server = TestServer::start("").await;
    let addr = server.addr;
    let mut checks = subscribe(
        addr,
        "codertocat",
        json!({"organization": "acme", "event_types": ["check_run"]}),
    )
    .await;
    let mut all = subscribe(addr, "codertocat", json!({"organization": "acme"})).await;
    let mut ext = subscribe(
        addr,
        "codertocat",
        json!({"organization": "acme", "event_types": ["status", "workflow_run"]}),
    )
    .await;

    // "pr" teaches the commit cache its head; the early check run, the
    // status and the workflow run on that commit are linked to PR 7.
    let sends = [
        ("pull_request", "pull_request.synchronize.json", "pr"),
        ("check_run", "check_run.created.no-pull-requests.json", "cr"),
        ("status", "status.json", "st"),
        (
            "workflow_run",
            "workflow_run.requested.no-pull-requests.json",
            "wr",
        ),
        ("check_run", "check_run.completed.json", "cr2"),
    ];
    for (kind, file, id) in sends {
        assert_eq!(
            server.webhook_with_id(kind, &fixture(file), id).await.1,
            "OK"
        );
    }
    assert_eq!(next_event(&mut checks).await["delivery_id"], "cr");
    assert_eq!(next_event(&mut checks).await["delivery_id"], "cr2");
    // status and workflow_run reach only a client naming them.
    for id in ["pr", "cr", "cr2"] {
        assert_eq!(next_event(&mut all).await["delivery_id"], id);
    }
    for (id, kind) in [("st", "status"), ("wr", "workflow_run")] {
        let e = next_event(&mut ext).await;
        assert_eq!(
            (e["delivery_id"].as_str(), e["type"].as_str()),
            (Some(id), Some(kind))
        );
        assert_eq!(e["commit_sha"], "5f3c8e1a9b7d2c4e6f8a0b2d4c6e8f0a1b3d5c7e");
        assert_eq!(e["url"], "https://github.com/acme/api/pull/7");
    }
}

#[tokio::test]
async fn server_allowed_events_list() {
    let server = TestServer::start("[webhook]\nallowed_events = [\"pull_request\"]\n").await;
    let mut ws = subscribe(server.addr, "codertocat", json!({"organization": "acme"})).await;
    let (s, b) = server
        .webhook("check_run", &fixture("check_run.completed.json"))
        .await;
    assert_eq!((s, b.as_str()), (200, "ignored: event type not allowed\n"));
    server
        .webhook_with_id("pull_request", &fixture("pull_request.opened.json"), "pr")
        .await;
    assert_eq!(next_event(&mut ws).await["delivery_id"], "pr");
}

async fn private_event_run(enforce: bool) {
    let server = TestServer::start(&format!("[tiers]\nenforce = {enforce}\n")).await;
    let addr = server.addr;
    let mut free = subscribe(addr, "alice", json!({"organization": "acme"})).await;
    let mut pro = subscribe(addr, "bob", json!({"organization": "acme"})).await;
    let mut flock = subscribe(addr, "carol", json!({"organization": "widgets"})).await;
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "secret", 1, "x", true),
            "private-acme",
        )
        .await;
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("widgets", "secret", 1, "x", true),
            "private-widgets",
        )
        .await;
    server
        .webhook_with_id(
            "pull_request",
            &pr_payload("acme", "public", 2, "x", false),
            "public",
        )
        .await;
    assert_eq!(next_event(&mut pro).await["delivery_id"], "private-acme");
    assert_eq!(next_event(&mut pro).await["delivery_id"], "public");
    assert_eq!(
        next_event(&mut flock).await["delivery_id"],
        "private-widgets"
    );
    if enforce {
        assert_eq!(
            next_event(&mut free).await["delivery_id"],
            "public",
            "free tier must not see private events"
        );
    } else {
        assert_eq!(next_event(&mut free).await["delivery_id"], "private-acme");
        assert_eq!(next_event(&mut free).await["delivery_id"], "public");
    }
    server.hub().sync().await;
    assert_eq!(
        server.hub().stats().unentitled_deliveries,
        if enforce { 0 } else { 1 }
    );
}

#[tokio::test]
async fn private_events_with_tier_enforcement() {
    private_event_run(true).await;
}

#[tokio::test]
async fn private_events_without_tier_enforcement() {
    private_event_run(false).await;
}
