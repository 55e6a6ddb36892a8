//! Finer subscriptions against the real daemon: `repositories`,
//! `TYPE.ACTION` event types, the events' `action` field, and the refusals
//! of bad ones, on `/ws` and `/events`.
//!
//! "Did not receive" is checked as in ws_routing: the event that must not
//! arrive is sent first, then one that must; the client's next event must
//! be the second.

use crate::common::*;
use serde_json::{Value, json};

/// A `pull_request` payload of `org/repo` #`number` with `action`.
pub(crate) fn pr(org: &str, repo: &str, number: u64, action: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&pr_payload(org, repo, number, "zz", false)).unwrap();
    v["action"] = json!(action);
    serde_json::to_vec(&v).unwrap()
}

/// A `check_suite` payload of `org/repo` on commit `sha`, for PR #3.
pub(crate) fn check_suite(org: &str, repo: &str, sha: &str, action: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action,
        "check_suite": {"head_sha": sha, "pull_requests": [{"number": 3}]},
        "repository": {
            "html_url": format!("https://github.com/{org}/{repo}"),
            "full_name": format!("{org}/{repo}"),
            "private": false,
            "owner": {"login": org},
        },
        "sender": {"login": "zz"},
    }))
    .unwrap()
}

async fn post(d: &Daemon, kind: &str, body: &[u8], id: &str) {
    assert_eq!(d.webhook(kind, body, id).await, 200, "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_alone_get_their_repos_events_and_not_another_of_the_org() {
    let d = spawn_daemon("");
    // Any case, as GitHub compares names.
    let mut alice = subscribe(d.addr, "alice", json!({"repositories": ["Acme/API"]})).await;
    // Not a member of acme: its repositories' events are not carol's.
    let mut carol = subscribe(
        d.addr,
        "carol",
        json!({"repositories": ["acme/api", "widgets/w"]}),
    )
    .await;
    post(&d, "pull_request", &pr("acme", "web", 1, "opened"), "web-1").await;
    post(&d, "pull_request", &pr("acme", "api", 2, "opened"), "api-2").await;
    post(&d, "pull_request", &pr("widgets", "w", 3, "opened"), "w-3").await;
    let e = next_event(&mut alice).await;
    assert_eq!(e["delivery_id"], "api-2", "{e}");
    assert_eq!(e["action"], "opened", "events carry the action: {e}");
    assert_eq!(e["url"], "https://github.com/acme/api/pull/2");
    assert_eq!(next_event(&mut carol).await["delivery_id"], "w-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_narrow_an_organization_subscription() {
    let d = spawn_daemon("");
    let mut narrow = subscribe(
        d.addr,
        "bob",
        json!({"organization": "acme", "repositories": ["acme/web"]}),
    )
    .await;
    let mut whole = subscribe(d.addr, "bob", json!({"organization": "acme"})).await;
    post(&d, "pull_request", &pr("acme", "api", 1, "opened"), "api-1").await;
    post(&d, "pull_request", &pr("acme", "web", 2, "opened"), "web-2").await;
    assert_eq!(next_event(&mut narrow).await["delivery_id"], "web-2");
    assert_eq!(next_event(&mut whole).await["delivery_id"], "api-1");
    assert_eq!(next_event(&mut whole).await["delivery_id"], "web-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_type_with_an_action_gets_that_action_only() {
    let d = spawn_daemon("");
    let mut closed = subscribe(
        d.addr,
        "alice",
        json!({"organization": "acme", "event_types": ["pull_request.closed", "check_suite"]}),
    )
    .await;
    post(
        &d,
        "pull_request",
        &pr("acme", "api", 1, "opened"),
        "opened",
    )
    .await;
    post(
        &d,
        "pull_request",
        &pr("acme", "api", 1, "closed"),
        "closed",
    )
    .await;
    let e = next_event(&mut closed).await;
    assert_eq!(
        (&e["delivery_id"], &e["action"]),
        (&json!("closed"), &json!("closed")),
        "{e}"
    );
    // A bare type: every action.
    post(
        &d,
        "check_suite",
        &check_suite("acme", "api", &"a".repeat(40), "requested"),
        "cs",
    )
    .await;
    let tokio_tungstenite::tungstenite::Message::Text(text) = next_message(&mut closed).await
    else {
        panic!("not a text message");
    };
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (&e["delivery_id"], &e["action"]),
        (&json!("cs"), &json!("requested")),
        "{e}"
    );
    // The wire order: action after commit_sha, before seq.
    let at = |k: &str| text.find(&format!("\"{k}\":")).expect(k);
    assert!(
        at("commit_sha") < at("action") && at("action") < at("seq"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_repositories_and_actions_are_invalid_subscriptions() {
    let d = spawn_daemon("");
    let many: Vec<String> = (0..201).map(|i| format!("acme/r{i}")).collect();
    for (subscription, message) in [
        (
            json!({"organization": "acme", "repositories": ["acme"]}),
            "Invalid subscription: invalid repository \"acme\" (expected OWNER/REPO: OWNER 1-39 letters, digits, '-' or '_'; REPO 1-100 letters, digits, '.', '-' or '_')",
        ),
        (
            json!({"repositories": many}),
            "Invalid subscription: too many repositories specified (max 200)",
        ),
        (
            json!({"organization": "acme", "event_types": ["pull_request.Closed"]}),
            "Invalid subscription: invalid action in event type \"pull_request.Closed\" (TYPE.ACTION, the action 1-50 of a-z, 0-9, '_')",
        ),
        (
            json!({"organization": "acme", "event_types": ["Pull_request.closed"]}),
            "Invalid subscription: invalid event type \"Pull_request.closed\" (1-50 of a-z, 0-9, '_', optionally followed by '.' and an action)",
        ),
    ] {
        let (mut ws, err) = subscribe_as(d.addr, &token("alice"), subscription).await;
        assert_eq!(err["type"], "error", "{err}");
        assert_eq!(err["error"], "invalid_subscription", "{err}");
        assert_eq!(err["message"], message);
        assert_eq!(
            expect_close(&mut ws).await,
            (1008, "invalid_subscription".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_events_are_checked_by_the_type_part() {
    let d = spawn_daemon("[webhook]\nallowed_events = [\"pull_request\"]\n");
    let mut ok = subscribe(
        d.addr,
        "alice",
        json!({"organization": "acme", "event_types": ["pull_request.closed"]}),
    )
    .await;
    let (mut ws, err) = subscribe_as(
        d.addr,
        &token("alice"),
        json!({"organization": "acme", "event_types": ["push.created"]}),
    )
    .await;
    assert_eq!(err["error"], "event_type_not_allowed", "{err}");
    expect_close(&mut ws).await;
    post(&d, "pull_request", &pr("acme", "api", 1, "closed"), "c").await;
    assert_eq!(next_event(&mut ok).await["delivery_id"], "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_stream_takes_repositories_and_actions() {
    let d = spawn_daemon("");
    let mut sse = Sse::subscribe(
        d.addr,
        &token("alice"),
        "repositories=acme/web,Acme/Docs&event_types=pull_request.closed",
    )
    .await;
    assert_eq!(sse.status, 200);
    let first = sse.next_message().await;
    assert_eq!(
        first.event.as_deref(),
        Some("subscription_confirmed"),
        "{first:?}"
    );
    assert_eq!(first.json()["event_types"], json!(["pull_request.closed"]));
    post(&d, "pull_request", &pr("acme", "api", 1, "closed"), "api").await;
    post(
        &d,
        "pull_request",
        &pr("acme", "web", 2, "opened"),
        "web-opened",
    )
    .await;
    post(
        &d,
        "pull_request",
        &pr("acme", "docs", 3, "closed"),
        "docs-closed",
    )
    .await;
    let (e, _) = sse.next_event().await;
    assert_eq!(e["delivery_id"], "docs-closed", "{e}");
    let mut bad = Sse::subscribe(d.addr, &token("alice"), "repositories=acme").await;
    let m = bad.next_message().await;
    assert_eq!(m.event.as_deref(), Some("error"));
    assert_eq!(m.json()["error"], "invalid_subscription");
}
