//! Each node's consumer: applies the stream to its hub, in order, teaching
//! its learners every pull request and delivery id seen.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::connect::backoff;
use super::facts::{self, DecodeError};
use super::stream::read_from;
use super::{ClusterError, Inner, Learners, nats};
use crate::broker::Hub;
use crate::event::Event;

/// Applies the stream to the hub, in order, from the seq after the last
/// applied; starts over (with back-off) whenever the consumer fails, and at
/// once when NATS is back after being lost.
pub(super) async fn consume(inner: Arc<Inner>, hub: Hub, learners: Learners) {
    let mut reconnected = inner.reconnected.subscribe();
    let mut attempt = 0usize;
    while !hub.is_stopped() {
        let from = *inner.applied.borrow() + 1;
        inner.stats.consumer_starts.fetch_add(1, Relaxed);
        reconnected.mark_unchanged();
        // None: NATS is back after being lost.
        let outcome = tokio::select! {
            r = consume_from(&inner, &hub, &learners, from) => Some(r),
            () = back(&mut reconnected) => None,
        };
        match outcome {
            Some(Ok(())) => return,
            None => {
                // A fresh start: the consumer is made again from `applied + 1`
                // now, and retried quickly should JetStream not be ready.
                attempt = 0;
                tracing::info!(
                    node = %inner.stats.node, after = *inner.applied.borrow(),
                    "NATS is back: reading the stream again"
                );
                continue;
            }
            Some(Err(e)) => {
                // It got somewhere: the next failure starts the backoff over.
                if *inner.applied.borrow() >= from {
                    attempt = 0;
                }
                if !hub.is_stopped() {
                    tracing::warn!(
                        node = %inner.stats.node, error = %e, after = *inner.applied.borrow(),
                        "stream consumer interrupted; starting again"
                    );
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(attempt)) => attempt += 1,
            () = back(&mut reconnected) => attempt = 0,
        }
    }
}

/// Returns once NATS is back after being lost (never, once the link is
/// gone).
async fn back(reconnected: &mut watch::Receiver<u64>) {
    if reconnected.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Applies the stream from seq `from` until the hub stops, or reading fails.
async fn consume_from(
    inner: &Inner,
    hub: &Hub,
    learners: &Learners,
    from: u64,
) -> Result<(), ClusterError> {
    let stream = inner.js.get_stream(&inner.stream).await.map_err(nats)?;
    let mut messages = read_from(&stream, from).await?;
    let mut stopped = Box::pin(hub.stopped());
    loop {
        let m = tokio::select! {
            m = messages.next() => m,
            () = &mut stopped => return Ok(()),
        };
        let m = match m {
            None => return Err(ClusterError::MessagesEnded),
            Some(Err(e)) => return Err(nats(e)),
            Some(Ok(m)) => m,
        };
        let info = m.info().map_err(nats)?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        inner.stats.stream_last.fetch_max(seq + pending, Relaxed);
        apply(inner, hub, learners, seq, &m.payload);
    }
}

/// Applies one stream message to the hub.
fn apply(inner: &Inner, hub: &Hub, learners: &Learners, seq: u64, payload: &bytes::Bytes) {
    let last = *inner.applied.borrow();
    if seq <= last {
        return;
    }
    if seq > last + 1 {
        // The stream dropped these (by its limits) before this node read
        // them: this node's clients missed them, and no resume can give
        // them back.
        let lost = seq - last - 1;
        inner.stats.lost.fetch_add(lost, Relaxed);
        tracing::error!(
            node = %inner.stats.node, after = last, next = seq, lost,
            "the stream dropped events before this node applied them"
        );
        hub.restart_at(seq - 1);
    }
    match facts::decode(payload) {
        Ok(parts) => {
            let event = Event::new(parts);
            learners.commits.learn(&event);
            learners.deliveries.learn(event.delivery_id());
            hub.broadcast_at(event, seq);
        }
        Err(e) => {
            let counter = match e {
                DecodeError::UnknownVersion(_) => &inner.stats.skipped_unknown_version,
                DecodeError::Malformed(_) => &inner.stats.skipped_malformed,
            };
            counter.fetch_add(1, Relaxed);
            tracing::warn!(node = %inner.stats.node, seq, error = %e, "stream message skipped");
            hub.skip_to(seq);
        }
    }
    inner.stats.applied.store(seq, Relaxed);
    inner.applied.send_replace(seq);
}
