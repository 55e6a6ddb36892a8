//! Parse once: a verified webhook body to an [`Event`], recording pull
//! request heads in the commit cache and resolving check events through it.

use std::time::SystemTime;

use super::commit_cache::CommitCache;
use super::extract::{self, ExtractError};
use crate::event::Event;

/// Why a webhook body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON, or truncated JSON (HTTP 400).
    InvalidJson(String),
    /// JSON, but not an object (HTTP 400).
    NotObject,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::InvalidJson(why) => write!(f, "webhook body is not JSON: {why}"),
            ParseError::NotObject => f.write_str("webhook body is not a JSON object"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses `body` (in place) as a webhook of type `kind`. `Ok(None)`: valid,
/// but the event carries no URL and is not broadcast.
pub(crate) fn parse(
    kind: &str,
    delivery_id: &str,
    body: &mut [u8],
    cache: &CommitCache,
) -> Result<Option<Event>, ParseError> {
    let accepted_at = SystemTime::now();
    let x = extract::extract(kind, delivery_id, body, accepted_at, |sha| cache.get(sha)).map_err(
        |e| match e {
            ExtractError::InvalidJson(why) => ParseError::InvalidJson(why),
            ExtractError::NotObject => ParseError::NotObject,
        },
    )?;
    if let Some((sha, info)) = x.record {
        cache.record(&sha, info);
    }
    Ok(x.event.map(Event::new))
}
