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

mod url;
mod users;

use std::time::SystemTime;

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::commit_cache::PrInfo;
use crate::event::{EventParts, MAX_FIELD};

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

/// Why a webhook body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or truncated JSON (HTTP 400).
    #[error("webhook body is not JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object (HTTP 400).
    #[error("webhook body is not a JSON object")]
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

/// The parts of a payload the rules look at.
#[derive(Clone, Copy)]
struct Payload<'t, 'i> {
    root: Value<'t, 'i>,
    repo: Option<Value<'t, 'i>>,
    /// The repository's HTML URL.
    repo_url: Option<&'i str>,
    /// The repository's `owner/name`; an over-long one counts as absent,
    /// here as in the event.
    repo_name: Option<&'i str>,
    /// The `pull_request` object.
    pr: Option<Value<'t, 'i>>,
}

impl<'t, 'i> Payload<'t, 'i> {
    fn new(root: Value<'t, 'i>) -> Self {
        let repo = root.get("repository");
        Payload {
            root,
            repo,
            repo_url: repo.and_then(|r| r.text("html_url")),
            repo_name: repo.and_then(|r| r.text("full_name")).filter(|r| fits(r)),
            pr: root.get("pull_request").filter(Value::is_object),
        }
    }
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
) -> Result<Extraction, ParseError> {
    let tape = simd_json::to_tape(body).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    let root = tape.as_value();
    if !root.is_object() {
        return Err(ParseError::NotObject);
    }
    let p = Payload::new(root);
    // A check or status event resolves through the PRs of its own
    // repository only; without a repository name, not at all.
    let cached = |sha: Option<&str>| lookup(p.repo_name?, sha?).map(|p| p.url);
    let url = url::of(kind, p, cached);
    let commit_sha = url::commit_sha(kind, p).filter(|s| fits(s));
    let record = if kind == "pull_request" {
        pr_head(p, commit_sha, accepted_at)
    } else {
        None
    };
    let event = url
        .filter(|u| !u.is_empty() && fits(u))
        .map(|url| EventParts {
            kind: kind.to_owned(),
            delivery_id: delivery_id.to_owned(),
            accepted_at: Some(accepted_at),
            url,
            org: org(p).filter(|o| fits(o)).map(str::to_owned),
            repo: p.repo_name.map(str::to_owned),
            private: p.repo.and_then(|r| r.get_bool("private")).unwrap_or(false),
            commit_sha: commit_sha.map(str::to_owned),
            users: users::involved_users(root, p.pr),
            payload: None,
        });
    Ok(Extraction { event, record })
}

/// Whether a string field is short enough to be kept ([`MAX_FIELD`]).
fn fits(s: &str) -> bool {
    s.len() <= MAX_FIELD
}

/// The repository owner's login, else the organization's.
fn org<'i>(p: Payload<'_, 'i>) -> Option<&'i str> {
    p.repo
        .and_then(|r| r.get("owner"))
        .and_then(|o| o.text("login"))
        .or_else(|| p.root.get("organization").and_then(|o| o.text("login")))
}

/// A pull request's head, to record: it needs the repository's name and
/// the head SHA.
fn pr_head(p: Payload<'_, '_>, sha: Option<&str>, at: SystemTime) -> Option<PrHead> {
    let pr = p.pr?;
    let info = PrInfo::new(
        pr.text("html_url")?,
        p.repo_url.unwrap_or_default(),
        pr.get_u64("number")?,
        at,
    );
    Some(PrHead {
        repo: p.repo_name.filter(|r| !r.is_empty())?.to_owned(),
        sha: sha.filter(|s| !s.is_empty())?.to_owned(),
        info,
    })
}

#[cfg(test)]
mod tests;
