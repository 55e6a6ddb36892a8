//! Verify, then parse once: a raw webhook body to an [`Event`], without
//! HTTP, so that intake, benchmarks and embedders share one path.

use std::sync::Arc;
use std::time::SystemTime;

use super::commit_cache::CommitCache;
use super::extract::{self, ExtractError};
use super::signature::Verifier;
use crate::event::Event;

/// Why a webhook body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Signature missing, malformed or wrong, or no secret (HTTP 401).
    BadSignature,
    /// Not JSON, or truncated JSON (HTTP 400).
    InvalidJson(String),
    /// JSON, but not an object (HTTP 400).
    NotObject,
}

/// Verifies webhooks with one secret and turns them into events, recording
/// pull request heads in (and resolving check events through) a commit cache.
pub struct WebhookParser {
    verifier: Verifier,
    cache: Arc<CommitCache>,
}

impl WebhookParser {
    /// A parser for webhooks signed with `secret` (an empty secret refuses
    /// every webhook).
    pub fn new(secret: &[u8], cache: Arc<CommitCache>) -> Self {
        Self {
            verifier: Verifier::new(secret),
            cache,
        }
    }

    /// The commit cache this parser uses.
    pub fn commit_cache(&self) -> &Arc<CommitCache> {
        &self.cache
    }

    /// Checks `signature` (the `X-Hub-Signature-256` value) over `body`, then
    /// parses `body` (in place, so it is left scrambled) as a webhook of type
    /// `kind`. `Ok(None)`: a valid webhook whose event carries no URL, which
    /// is not broadcast.
    pub fn parse(
        &self,
        kind: &str,
        delivery_id: &str,
        signature: Option<&[u8]>,
        body: &mut [u8],
    ) -> Result<Option<Event>, ParseError> {
        if !self.verifier.verify(signature, body) {
            return Err(ParseError::BadSignature);
        }
        let accepted_at = SystemTime::now();
        let x = extract::extract(kind, delivery_id, body, accepted_at, |sha| {
            self.cache.get(sha)
        })
        .map_err(|e| match e {
            ExtractError::InvalidJson(why) => ParseError::InvalidJson(why),
            ExtractError::NotObject => ParseError::NotObject,
        })?;
        if let Some((sha, info)) = x.record {
            self.cache.record(&sha, info);
        }
        Ok(x.event.map(Event::new))
    }
}
