//! The compact event every webhook is reduced to, and its wire frame.
//!
//! An `Event` is built once per accepted webhook and never looked at as raw
//! JSON again: routing reads its org, PR key and users; delivery writes its
//! `frame`, the complete WebSocket text frame (header and JSON payload),
//! serialized here once and shared by reference count with every recipient.
//! The JSON is built when the event is made; its `"seq"` is appended, and
//! the frame made, once the event's sequence number is known
//! ([`Event::set_seq`]).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use smallvec::SmallVec;

use crate::codec;
use crate::payloads::WebhookPayload;

/// Event types that only reach clients naming them in `event_types`
/// (webhook-sprinkler never sent them, so old clients must not start
/// receiving them unasked).
pub const EXPLICIT_ONLY_TYPES: [&str; 2] = ["status", "workflow_run"];

/// GitHub's webhook event types. Metrics label an event by its type only
/// when it is one of these (else `other`), so that label values stay bounded
/// whatever a sender puts in `X-GitHub-Event`.
pub const KNOWN_EVENT_TYPES: &[&str] = &[
    "branch_protection_configuration",
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "custom_property",
    "custom_property_values",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_protection_rule",
    "deployment_review",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "github_app_authorization",
    "gollum",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issues",
    "label",
    "marketplace_purchase",
    "member",
    "membership",
    "merge_group",
    "meta",
    "milestone",
    "org_block",
    "organization",
    "package",
    "page_build",
    "personal_access_token_request",
    "ping",
    "project",
    "project_card",
    "project_column",
    "projects_v2",
    "projects_v2_item",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_advisory",
    "repository_dispatch",
    "repository_import",
    "repository_ruleset",
    "repository_vulnerability_alert",
    "secret_scanning_alert",
    "secret_scanning_alert_location",
    "security_advisory",
    "security_and_analysis",
    "sponsorship",
    "star",
    "status",
    "team",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

/// `kind` if it is a known event type, else `"other"`: a bounded label value.
pub fn type_label(kind: &str) -> &'static str {
    KNOWN_EVENT_TYPES
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

/// Most `@mentions` taken from one comment body; a mention past this is not
/// routed (it bounds the routing cost of a hostile or pathological body).
pub const MAX_MENTIONS: usize = 100;

/// Most users an event names: the involved logins plus the mentions.
/// Intake keeps no more, and a cluster node refuses a stream message with
/// more, so that every node builds the same event.
pub const MAX_USERS: usize = MAX_MENTIONS + 64;

/// Longest string field of an event (URL, organization, repository, commit
/// SHA); intake counts a longer one as absent, and a cluster node refuses a
/// stream message holding one.
pub const MAX_FIELD: usize = 2048;

/// Whether `s` is kept as an event's `action`: 1..[`MAX_FIELD`] bytes,
/// printable (no control characters). Intake counts another as absent and
/// a cluster node refuses a stream message holding one, so that every node
/// builds the same frame.
pub fn is_action(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FIELD && !s.chars().any(char::is_control)
}

/// Longest GitHub login; a longer name is not a login.
pub const MAX_LOGIN: usize = 39;

/// What an event is made from: the fields intake extracted, before
/// normalization. Embedders broadcasting their own events fill this in.
#[derive(Debug, Clone, Default)]
pub struct EventParts {
    /// The `X-GitHub-Event` type, e.g. `pull_request`.
    pub kind: String,
    /// The `X-GitHub-Delivery` id (may be empty).
    pub delivery_id: String,
    /// When the server accepted the webhook.
    pub accepted_at: Option<SystemTime>,
    /// The URL the event carries (a PR URL, or a repository URL).
    pub url: String,
    /// The organization (`repository.owner.login`, else `organization.login`).
    pub org: Option<String>,
    /// The repository's `owner/name`.
    pub repo: Option<String>,
    /// `repository.private`.
    pub private: bool,
    /// The commit SHA the event is about, when it has one.
    pub commit_sha: Option<String>,
    /// The payload's top-level `action` (`opened`, `completed`, ...), when
    /// it has one.
    pub action: Option<String>,
    /// Logins involved in the event (author, assignees, reviewers, ...).
    pub users: Vec<String>,
    /// The webhook as GitHub sent it, for the clients that receive
    /// payloads (kept when `[payloads]` is enabled).
    pub payload: Option<WebhookPayload>,
    /// For the clients that receive payloads only: a webhook that carries
    /// no URL of its own (a `push`, say), under its repository's URL.
    pub payload_only: bool,
}

/// A webhook reduced to what routing and delivery need.
#[derive(Debug)]
pub struct Event {
    kind: Box<str>,
    delivery_id: Box<str>,
    accepted_at: SystemTime,
    /// `accepted_at` on the monotonic clock, for latency measurements.
    accepted: Instant,
    /// Filled in by the shards as they route the event (for its log line).
    routing: RoutingTally,
    url: Box<str>,
    /// Lowercased.
    org: Option<Box<str>>,
    /// Lowercased `owner/name`.
    repo: Option<Box<str>>,
    /// Lowercased `owner/repo#number`, taken from the URL.
    pr_key: Option<Box<str>>,
    pr_number: Option<u64>,
    private: bool,
    commit_sha: Option<Box<str>>,
    /// The payload's `action`, as sent.
    action: Option<Box<str>>,
    /// Lowercased and deduplicated.
    users: SmallVec<[Box<str>; 4]>,
    explicit_only: bool,
    /// Only clients receiving payloads get it.
    payload_only: bool,
    /// Acceptance order, assigned by the hub (0 until then).
    seq: u64,
    /// Before the seq is known: the JSON without `"seq"`. After: the
    /// complete WebSocket text frame sent to every recipient.
    frame: Bytes,
    /// Offset of the JSON payload inside `frame`.
    payload_at: u8,
    /// The frame for clients that receive payloads, when the event has one.
    full: Option<FullFrame>,
}

/// The frame with the webhook's headers and body, for the clients that
/// asked for payloads. Built whole when the event is made (the body copied
/// once, outside the hub's lock); sequencing only appends `"seq"` and
/// writes the WebSocket header into room left for it in front.
#[derive(Debug)]
enum FullFrame {
    /// `[header room][{...,"payload":BODY]`, with capacity for the rest.
    Unsequenced(Vec<u8>),
    /// The complete frame, and the JSON's offset inside it.
    Sequenced(Bytes, u8),
}

#[derive(Serialize)]
struct Wire<'a> {
    url: &'a str,
    timestamp: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    delivery_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    commit_sha: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    action: &'a str,
}

impl Event {
    /// Normalizes `parts` (lowercases org, repo and users, derives the PR key
    /// from the URL) and serializes the outgoing frame.
    pub fn new(parts: EventParts) -> Event {
        let accepted_at = parts.accepted_at.unwrap_or_else(SystemTime::now);
        let timestamp = humantime::format_rfc3339_nanos(accepted_at).to_string();
        let commit_sha = parts.commit_sha.filter(|s| !s.is_empty());
        let action = parts.action.filter(|s| !s.is_empty());
        let json = serde_json::to_vec(&Wire {
            url: &parts.url,
            timestamp: &timestamp,
            kind: &parts.kind,
            delivery_id: &parts.delivery_id,
            commit_sha: commit_sha.as_deref().unwrap_or(""),
            action: action.as_deref().unwrap_or(""),
        })
        .expect("serializing strings cannot fail");

        let mut users: SmallVec<[Box<str>; 4]> = SmallVec::new();
        for u in parts.users {
            if u.is_empty() {
                continue;
            }
            let u = u.to_ascii_lowercase();
            if !users.iter().any(|x| **x == *u) {
                users.push(u.into_boxed_str());
            }
        }
        let pr = parse_pr_url(&parts.url);
        let full = parts
            .payload
            .as_ref()
            .map(|p| FullFrame::Unsequenced(full_json(&json, p)));
        Event {
            explicit_only: EXPLICIT_ONLY_TYPES.contains(&parts.kind.as_str()),
            payload_only: parts.payload_only,
            kind: parts.kind.into_boxed_str(),
            delivery_id: parts.delivery_id.into_boxed_str(),
            accepted_at,
            accepted: Instant::now(),
            routing: RoutingTally::default(),
            pr_key: pr.as_ref().map(|p| p.key().into_boxed_str()),
            pr_number: pr.map(|p| p.number),
            url: parts.url.into_boxed_str(),
            org: lower_nonempty(parts.org),
            repo: lower_nonempty(parts.repo),
            private: parts.private,
            commit_sha: commit_sha.map(String::into_boxed_str),
            action: action.map(String::into_boxed_str),
            users,
            seq: 0,
            frame: Bytes::from(json),
            payload_at: 0,
            full,
        }
    }

    /// The event type (`X-GitHub-Event`).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The GitHub delivery id; empty when the sender gave none.
    pub fn delivery_id(&self) -> &str {
        &self.delivery_id
    }
    /// When the server accepted the webhook.
    pub fn accepted_at(&self) -> SystemTime {
        self.accepted_at
    }
    /// The URL the event carries.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The organization, lowercased.
    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
    /// The repository `owner/name`, lowercased.
    pub fn repo(&self) -> Option<&str> {
        self.repo.as_deref()
    }
    /// `owner/repo#number`, lowercased, when the URL is a pull request URL.
    pub fn pr_key(&self) -> Option<&str> {
        self.pr_key.as_deref()
    }
    /// The pull request number, when the URL is a pull request URL.
    pub fn pr_number(&self) -> Option<u64> {
        self.pr_number
    }
    /// Whether the repository is private.
    pub fn is_private(&self) -> bool {
        self.private
    }
    /// The commit SHA, when the event has one.
    pub fn commit_sha(&self) -> Option<&str> {
        self.commit_sha.as_deref()
    }
    /// The payload's `action`, when it has one.
    pub fn action(&self) -> Option<&str> {
        self.action.as_deref()
    }
    /// Involved logins, lowercased and deduplicated.
    pub fn users(&self) -> &[Box<str>] {
        &self.users
    }
    /// Whether only clients receiving payloads may receive it (it carries
    /// no URL of its own).
    pub fn is_payload_only(&self) -> bool {
        self.payload_only
    }
    /// Whether only clients naming this type explicitly may receive it.
    pub fn is_explicit_only(&self) -> bool {
        self.explicit_only
    }
    pub(crate) fn routing(&self) -> &RoutingTally {
        &self.routing
    }
    /// When the event was built, on the monotonic clock.
    pub(crate) fn accepted_instant(&self) -> Instant {
        self.accepted
    }
    /// The acceptance sequence number (0 until the hub accepts the event).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The JSON object sent to clients (with its `"seq"` once the hub has
    /// accepted the event).
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.payload_at as usize..]
    }
    /// The complete WebSocket frame sent to clients (after [`Event::set_seq`]).
    pub(crate) fn frame(&self) -> &Bytes {
        &self.frame
    }
    /// The frame for clients that receive payloads: with `"headers"` and
    /// `"payload"` when the event has a payload, else the usual frame.
    pub(crate) fn full_frame(&self) -> &Bytes {
        match &self.full {
            Some(FullFrame::Sequenced(frame, _)) => frame,
            _ => &self.frame,
        }
    }
    /// The JSON sent to clients that receive payloads: with `"headers"`
    /// and `"payload"` when the event has a payload, else [`Event::payload`].
    pub fn full_payload(&self) -> &[u8] {
        match &self.full {
            Some(FullFrame::Sequenced(frame, at)) => &frame[*at as usize..],
            _ => self.payload(),
        }
    }
    /// Whether the event carries the webhook's payload.
    pub fn has_payload(&self) -> bool {
        self.full.is_some()
    }
    /// Gives the event its sequence number, appends it to the JSON as
    /// `"seq"` and builds the frames. Once only.
    pub(crate) fn set_seq(&mut self, seq: u64) {
        debug_assert_eq!(self.seq, 0, "an event is sequenced once");
        self.seq = seq;
        let json = &self.frame[..];
        let mut with_seq = Vec::with_capacity(json.len() + SEQ_FIELD);
        with_seq.extend_from_slice(&json[..json.len() - 1]);
        push_seq(&mut with_seq, seq);
        let (frame, payload_at) = codec::text_frame(&with_seq);
        self.frame = frame;
        self.payload_at = payload_at;
        if let Some(FullFrame::Unsequenced(mut buf)) = self.full.take() {
            push_seq(&mut buf, seq);
            let (frame, at) = codec::text_frame_in_place(buf, codec::MAX_HEADER);
            self.full = Some(FullFrame::Sequenced(frame, at));
        }
    }
    /// Memory the event holds, roughly: what the replay window counts.
    pub(crate) fn size(&self) -> usize {
        std::mem::size_of::<Event>()
            + self.frame.len()
            + self.kind.len()
            + self.delivery_id.len()
            + self.url.len()
            + self.org.as_deref().map_or(0, str::len)
            + self.repo.as_deref().map_or(0, str::len)
            + self.pr_key.as_deref().map_or(0, str::len)
            + self.commit_sha.as_deref().map_or(0, str::len)
            + self.action.as_deref().map_or(0, str::len)
            + self.users.iter().map(|u| u.len() + 16).sum::<usize>()
            + match &self.full {
                Some(FullFrame::Sequenced(f, _)) => f.len(),
                Some(FullFrame::Unsequenced(b)) => b.capacity(),
                None => 0,
            }
    }
}

/// Room for `,"seq":N}` (a u64 has at most 20 digits).
const SEQ_FIELD: usize = 28;

/// Appends `,"seq":N}` to a JSON object whose closing brace is missing.
fn push_seq(json: &mut Vec<u8>, seq: u64) {
    use std::io::Write as _;
    write!(json, ",\"seq\":{seq}}}").expect("writing to a Vec cannot fail");
}

/// `[room for a frame header]` then `json` with `"headers"` and
/// `"payload"` added, its closing brace left for [`push_seq`], with the
/// capacity that needs.
fn full_json(json: &[u8], payload: &WebhookPayload) -> Vec<u8> {
    let room = codec::MAX_HEADER;
    let mut buf = Vec::with_capacity(room + json.len() + payload.fields_len() + SEQ_FIELD);
    buf.resize(room, 0);
    buf.extend_from_slice(&json[..json.len() - 1]);
    buf.push(b',');
    payload.write_fields(&mut buf);
    buf
}

/// What the shards did with an event, summed as each finishes; the last
/// one to finish reports the total.
#[derive(Debug, Default)]
pub(crate) struct RoutingTally {
    shards: AtomicU32,
    shards_left: AtomicU32,
    matched: AtomicU64,
    dropped: AtomicU64,
}

/// The totals reported by the last shard to route an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed {
    pub shards: u32,
    pub matched: u64,
    pub dropped: u64,
}

/// The one log line of a routed event.
pub(crate) fn log_routed(e: &Event, r: Routed) {
    tracing::info!(
        kind = %e.kind(),
        delivery = %e.delivery_id(),
        seq = e.seq(),
        matched = r.matched,
        dropped = r.dropped,
        shards = r.shards,
        route_us = e.accepted_instant().elapsed().as_micros() as u64,
        "event routed"
    );
}

impl RoutingTally {
    /// Set by the hub before the event goes to `shards` shards.
    pub fn expect(&self, shards: u32) {
        self.shards.store(shards, Relaxed);
        self.shards_left.store(shards, Relaxed);
    }

    /// Adds one shard's counts; returns the totals if it was the last shard.
    pub fn add(&self, matched: u64, dropped: u64) -> Option<Routed> {
        self.matched.fetch_add(matched, Relaxed);
        self.dropped.fetch_add(dropped, Relaxed);
        // AcqRel: the last shard must see every other shard's additions.
        if self
            .shards_left
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            Some(Routed {
                shards: self.shards.load(Relaxed),
                matched: self.matched.load(Relaxed),
                dropped: self.dropped.load(Relaxed),
            })
        } else {
            None
        }
    }
}

fn lower_nonempty(s: Option<String>) -> Option<Box<str>> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase().into_boxed_str())
}

/// The parts of `https://HOST/OWNER/REPO/pull/N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrUrl<'a> {
    pub host: &'a str,
    pub owner: &'a str,
    pub repo: &'a str,
    pub number: u64,
}

impl PrUrl<'_> {
    /// `owner/repo#number`, lowercased: the routing key of a pull request.
    pub fn key(&self) -> String {
        let mut k = String::with_capacity(self.owner.len() + self.repo.len() + 22);
        k.push_str(self.owner);
        k.push('/');
        k.push_str(self.repo);
        k.push('#');
        k.push_str(&self.number.to_string());
        k.make_ascii_lowercase();
        k
    }
}

/// Parses a pull request URL. Owner and repo are `[A-Za-z0-9_.-]+`, the
/// number a positive integer, and nothing may follow it.
pub(crate) fn parse_pr_url(url: &str) -> Option<PrUrl<'_>> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let mut parts = rest.split('/');
    let host = parts.next().filter(|h| !h.is_empty())?;
    let owner = parts.next().filter(|s| is_name(s))?;
    let repo = parts.next().filter(|s| is_name(s))?;
    if parts.next()? != "pull" {
        return None;
    }
    let n = parts.next()?;
    if parts.next().is_some() || n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let number: u64 = n.parse().ok().filter(|&n| n > 0)?;
    Some(PrUrl {
        host,
        owner,
        repo,
        number,
    })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn parts() -> EventParts {
        EventParts {
            kind: "pull_request".into(),
            delivery_id: "d-1".into(),
            accepted_at: Some(UNIX_EPOCH + Duration::new(1_795_705_445, 123_456_789)),
            url: "https://github.com/Acme/API/pull/7".into(),
            org: Some("Acme".into()),
            repo: Some("Acme/API".into()),
            private: false,
            commit_sha: Some("abc".into()),
            action: Some("opened".into()),
            users: vec!["Alice".into(), "alice".into(), "".into(), "Bob".into()],
            payload: None,
            payload_only: false,
        }
    }

    #[test]
    fn the_full_frame_adds_headers_and_the_verbatim_body_before_the_seq() {
        let body = Bytes::from(format!("{{\"big\": \"{}\"}}", "x".repeat(70_000)));
        let mut p = parts();
        p.payload = Some(WebhookPayload::new(
            [("X-GitHub-Event", b"pull_request".as_slice())],
            body.clone(),
        ));
        let mut e = Event::new(p);
        assert!(e.has_payload());
        e.set_seq(42);
        let small = std::str::from_utf8(e.payload()).unwrap();
        let full = e.full_payload();
        let want = format!(
            "{},\"headers\":{{\"X-GitHub-Event\":\"pull_request\"}},\"payload\":{},\"seq\":42}}",
            small.strip_suffix(",\"seq\":42}").unwrap(),
            std::str::from_utf8(&body).unwrap()
        );
        assert_eq!(std::str::from_utf8(full).unwrap(), want);
        // A 64-bit length header, then the JSON, and nothing else.
        let f = e.full_frame();
        assert_eq!((f[0], f[1]), (0x81, 127));
        assert_eq!(
            u64::from_be_bytes(f[2..10].try_into().unwrap()),
            full.len() as u64
        );
        assert_eq!(&f[10..], full);
        assert!(e.size() > full.len());

        let mut plain = Event::new(parts());
        plain.set_seq(42);
        assert!(!plain.has_payload());
        assert_eq!(plain.full_frame(), plain.frame());
    }

    #[test]
    fn payload_is_the_sprinkler_json_shape() {
        let e = Event::new(parts());
        assert_eq!(
            std::str::from_utf8(e.payload()).unwrap(),
            r#"{"url":"https://github.com/Acme/API/pull/7","timestamp":"2026-11-26T15:04:05.123456789Z","type":"pull_request","delivery_id":"d-1","commit_sha":"abc","action":"opened"}"#
        );
    }

    #[test]
    fn empty_delivery_id_and_sha_are_omitted() {
        let mut p = parts();
        p.delivery_id.clear();
        p.commit_sha = Some(String::new());
        p.action = Some(String::new());
        let e = Event::new(p);
        let v: serde_json::Value = serde_json::from_slice(e.payload()).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["timestamp", "type", "url"]);
        assert_eq!(e.commit_sha(), None);
        assert_eq!(e.action(), None);
    }

    #[test]
    fn seq_is_appended_to_the_json() {
        let mut e = Event::new(parts());
        e.set_seq(1042);
        assert_eq!(
            std::str::from_utf8(e.payload()).unwrap(),
            r#"{"url":"https://github.com/Acme/API/pull/7","timestamp":"2026-11-26T15:04:05.123456789Z","type":"pull_request","delivery_id":"d-1","commit_sha":"abc","action":"opened","seq":1042}"#
        );
        assert!(e.size() > e.frame().len());
    }

    #[test]
    fn frame_is_header_then_payload() {
        let mut e = Event::new(parts());
        e.set_seq(u64::MAX);
        let f = e.frame();
        assert_eq!(f[0], 0x81, "FIN + text opcode");
        assert_eq!(f[1] as usize, 126, "payload length needs the 16-bit form");
        let len = u16::from_be_bytes([f[2], f[3]]) as usize;
        assert_eq!(len, e.payload().len());
        assert_eq!(&f[4..], e.payload());
    }

    #[test]
    fn normalizes_org_repo_users_and_pr_key() {
        let e = Event::new(parts());
        assert_eq!(e.org(), Some("acme"));
        assert_eq!(e.repo(), Some("acme/api"));
        assert_eq!(e.pr_key(), Some("acme/api#7"));
        assert_eq!(e.pr_number(), Some(7));
        let users: Vec<&str> = e.users().iter().map(|u| &**u).collect();
        assert_eq!(users, ["alice", "bob"]);
        assert!(!e.is_explicit_only());
    }

    #[test]
    fn explicit_only_types() {
        for (kind, want) in [
            ("status", true),
            ("workflow_run", true),
            ("check_run", false),
        ] {
            let mut p = parts();
            p.kind = kind.into();
            assert_eq!(Event::new(p).is_explicit_only(), want, "{kind}");
        }
    }

    #[test]
    fn routing_tally_reports_once_with_every_shard_counted() {
        let t = RoutingTally::default();
        t.expect(3);
        assert_eq!(t.add(2, 0), None);
        assert_eq!(t.add(0, 1), None);
        assert_eq!(
            t.add(5, 0),
            Some(Routed {
                shards: 3,
                matched: 7,
                dropped: 1
            })
        );
    }

    #[test]
    fn type_labels_are_bounded() {
        assert_eq!(type_label("pull_request"), "pull_request");
        assert_eq!(type_label("made_up"), "other");
        assert_eq!(type_label(""), "other");
    }

    #[test]
    fn pr_url_parsing() {
        let p = parse_pr_url("https://github.com/a-b/c.d_e/pull/12").unwrap();
        assert_eq!(
            (p.host, p.owner, p.repo, p.number),
            ("github.com", "a-b", "c.d_e", 12)
        );
        for bad in [
            "https://github.com/a/b/pull/0",
            "https://github.com/a/b/pull/-1",
            "https://github.com/a/b/pull/+1",
            "https://github.com/a/b/pull/1/files",
            "https://github.com/a/b/issues/1",
            "https://github.com/a/b",
            "https://github.com//b/pull/1",
            "https://github.com/a b/c/pull/1",
            "ftp://github.com/a/b/pull/1",
            "https:///a/b/pull/1",
            "https://github.com/a/b/pull/99999999999999999999999",
        ] {
            assert_eq!(parse_pr_url(bad), None, "{bad}");
        }
    }
}
