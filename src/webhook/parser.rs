//! Parse once: a verified webhook body to the parts of an event, recording
//! pull request heads in the commit cache and resolving check events
//! through it.

use std::cell::Cell;
use std::time::SystemTime;

use super::commit_cache::CommitCache;
use super::extract::{self, ParseError};
use crate::event::EventParts;

/// A parsed webhook.
pub(crate) struct Parsed {
    /// The event, or `None`: valid, but it carries no URL.
    pub event: Option<EventParts>,
    /// The commit cache was asked about a SHA it did not know (the URL may
    /// resolve once the cache has learnt more).
    pub cache_missed: bool,
}

/// Parses `body` (in place) as a webhook of type `kind`.
pub(crate) fn parse(
    kind: &str,
    delivery_id: &str,
    body: &mut [u8],
    cache: &CommitCache,
) -> Result<Parsed, ParseError> {
    let accepted_at = SystemTime::now();
    let missed = Cell::new(false);
    let x = extract::extract(kind, delivery_id, body, accepted_at, |repo, sha| {
        let found = cache.get(repo, sha);
        missed.set(missed.get() || found.is_none());
        found
    })?;
    if let Some(head) = x.record {
        cache.record(&head.repo, &head.sha, head.info);
    }
    Ok(Parsed {
        event: x.event,
        cache_missed: missed.get(),
    })
}
