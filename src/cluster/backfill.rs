//! Resumes served from the stream: the events a client missed that its
//! node's window no longer holds, read within bounds and a time limit.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::StreamExt;

use super::stream::read_from;
use super::{Cluster, ClusterError, Inner, facts, nats};
use crate::broker::{Backfill, BackfillError, BackfillFuture, Backfilled};
use crate::event::Event;

/// How much one resume may take from the stream: `cluster.backfill_max_events`
/// seqs, `cluster.backfill_max_bytes` of the events it keeps.
#[derive(Debug, Clone, Copy)]
pub(super) struct BackfillBounds {
    pub(super) max_seqs: u64,
    pub(super) max_bytes: usize,
}

impl BackfillBounds {
    /// Whether `from ..= to` spans more seqs than one resume may read.
    fn refuse_range(&self, from: u64, to: u64) -> bool {
        to.saturating_sub(from).saturating_add(1) > self.max_seqs
    }
}

/// Which events a resume keeps.
type Keep<'a> = dyn Fn(&Event) -> bool + Send + Sync + 'a;

impl Backfill for Cluster {
    fn oldest(&self) -> u64 {
        self.inner.stream_first.load(Relaxed)
    }

    fn catch_up(&self) -> BackfillFuture<'_, ()> {
        Box::pin(async move { self.inner.catch_up().await.map_err(BackfillError::new) })
    }

    fn fetch<'a>(
        &'a self,
        from: u64,
        to: u64,
        keep: Box<Keep<'a>>,
    ) -> BackfillFuture<'a, Backfilled> {
        Box::pin(async move {
            fetch(&self.inner, from, to, &*keep)
                .await
                .map_err(BackfillError::new)
        })
    }
}

/// [`Backfill::fetch`]: refused when too large or NATS is down, else read
/// in this node's turn, all within a time limit.
async fn fetch(
    inner: &Inner,
    from: u64,
    to: u64,
    keep: &Keep<'_>,
) -> Result<Backfilled, ClusterError> {
    let bounds = inner.backfill_bounds;
    if bounds.refuse_range(from, to) {
        return Ok(Backfilled::TooLarge);
    }
    if !inner.connected() {
        return Err(ClusterError::NotConnected);
    }
    let limit = inner.publish_timeout * 6;
    let bounded = async {
        let _turn = inner
            .backfills
            .acquire()
            .await
            .map_err(|_| ClusterError::Closed)?;
        fetch_range(inner, from, to, bounds, keep).await
    };
    tokio::time::timeout(limit, bounded)
        .await
        .map_err(|_| ClusterError::SlowRead {
            from,
            to,
            secs: limit.as_secs(),
        })?
}

/// The events with seq in `from ..= to` that `keep` accepts, at most
/// `bounds.max_bytes` of them.
async fn fetch_range(
    inner: &Inner,
    from: u64,
    to: u64,
    bounds: BackfillBounds,
    keep: &Keep<'_>,
) -> Result<Backfilled, ClusterError> {
    let mut s = inner.js.get_stream(&inner.stream).await.map_err(nats)?;
    let first = s.info().await.map_err(nats)?.state.first_sequence;
    inner.stream_first.store(first.max(1), Relaxed);
    if first > from {
        return Ok(Backfilled::NotHeld);
    }
    let mut messages = read_from(&s, from).await?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(m) = messages.next().await {
        // An ordered consumer recovers from errors by itself (from the seq
        // after the last it delivered): keep reading, within the caller's
        // time limit.
        let Ok(m) = m else { continue };
        let Ok(seq) = m.info().map(|i| i.stream_sequence) else {
            continue;
        };
        // A consumer recreated before its first message may start over
        // from the beginning of the stream.
        if seq < from {
            continue;
        }
        if seq > to {
            break;
        }
        if let Ok(parts) = facts::decode(&m.payload) {
            let mut event = Event::new(parts);
            event.set_seq(seq);
            if keep(&event) {
                bytes += event.size();
                if bytes > bounds.max_bytes {
                    return Ok(Backfilled::TooLarge);
                }
                out.push(Arc::new(event));
            }
        }
        if seq == to {
            break;
        }
    }
    Ok(Backfilled::Events(out))
}
