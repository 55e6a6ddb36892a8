//! Webhook payloads: the fixtures, GitHub's example payloads for the
//! cross-check, and payloads made up by a test.

use std::path::PathBuf;

use serde_json::{Value, json};

/// The project's own webhook payloads (scripts/gen-fixtures.py).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks"
    ))
}

/// A directory of GitHub's own example payloads for the cross-check, when
/// `HOOKFAN_SHARED_FIXTURES` names one.
pub fn shared_fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HOOKFAN_SHARED_FIXTURES")?);
    assert!(
        dir.is_dir(),
        "HOOKFAN_SHARED_FIXTURES={} is not a directory",
        dir.display()
    );
    Some(dir)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A fixture of `acme/api` moved to the repository `org/repo`: its names,
/// URLs and owner, with `repository.private` set to `private`. Commit SHAs
/// are kept, so that the same commit appears in both repositories.
pub fn rehomed(name: &str, org: &str, repo: &str, private: bool) -> Vec<u8> {
    let text = String::from_utf8(fixture(name))
        .unwrap()
        .replace("acme/api", &format!("{org}/{repo}"))
        .replace("\"login\": \"acme\"", &format!("\"login\": \"{org}\""))
        .replace("\"name\": \"api\"", &format!("\"name\": \"{repo}\""));
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["repository"]["private"] = json!(private);
    serde_json::to_vec(&v).unwrap()
}

/// A minimal `pull_request` payload.
pub fn pr_payload(org: &str, repo: &str, number: u64, author: &str, private: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "html_url": format!("https://github.com/{org}/{repo}/pull/{number}"),
            "number": number,
            "user": {"login": author},
            "head": {"sha": format!("{:040x}", number)},
            "assignees": [],
            "requested_reviewers": [],
        },
        "repository": {
            "html_url": format!("https://github.com/{org}/{repo}"),
            "full_name": format!("{org}/{repo}"),
            "private": private,
            "owner": {"login": org},
        },
        "sender": {"login": author},
    }))
    .unwrap()
}

/// An event for `org` broadcast through the hub directly, with a delivery
/// id of `pad` extra bytes (large frames fill a stalled socket sooner).
pub fn hub_event(org: &str, id: &str, pad: usize) -> hookfan::Event {
    hookfan::Event::new(hookfan::EventParts {
        kind: "pull_request".into(),
        delivery_id: format!("{id}{}", "x".repeat(pad)),
        url: format!("https://github.com/{org}/api/pull/1"),
        org: Some(org.into()),
        ..Default::default()
    })
}
