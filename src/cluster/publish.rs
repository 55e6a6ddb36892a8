//! Intake's side of the stream: an event is published, and the webhook
//! answered, once JetStream has stored it; a check event may first wait
//! until this node has applied everything stored so far.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use async_nats::connection::State;
use async_nats::jetstream::message::PublishMessage;

use super::{Cluster, ClusterError, Inner, facts, nats};
use crate::event::EventParts;
use crate::webhook::{EventSink, SinkError, SinkFuture, Stored};

impl Inner {
    /// Connected to NATS now.
    pub(super) fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Waits until this node has applied everything the stream holds now.
    pub(super) async fn catch_up(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.publish_timeout;
        if !self.connected() {
            return Err(ClusterError::NotConnected);
        }
        let last = tokio::time::timeout(self.publish_timeout, async {
            let s = self.js.get_stream(&self.stream).await.map_err(nats)?;
            Ok::<_, ClusterError>(s.cached_info().state.last_sequence)
        })
        .await
        .map_err(|_| ClusterError::NoAnswer)??;
        self.stats.stream_last.fetch_max(last, Relaxed);
        let mut applied = self.applied.subscribe();
        tokio::time::timeout_at(deadline.into(), applied.wait_for(|a| *a >= last))
            .await
            .map_err(|_| ClusterError::NotApplied(last))?
            .map_err(nats)?;
        Ok(())
    }
}

impl EventSink for Cluster {
    fn submit(&self, event: EventParts) -> SinkFuture<'_, Stored> {
        Box::pin(async move {
            let inner = &self.inner;
            if !inner.connected() {
                inner.stats.publish_failures.fetch_add(1, Relaxed);
                return Err(SinkError(ClusterError::NotConnected.to_string()));
            }
            let mut publish = PublishMessage::build().payload(facts::encode(&event).into());
            if !event.delivery_id.is_empty() {
                publish = publish.message_id(&event.delivery_id);
            }
            let started = Instant::now();
            let acked = tokio::time::timeout(inner.publish_timeout, async {
                inner
                    .js
                    .send_publish(inner.subject.clone(), publish)
                    .await?
                    .await
            })
            .await;
            match acked {
                Ok(Ok(ack)) => {
                    inner.stats.publish_latency.observe(started.elapsed());
                    inner.stats.published.fetch_add(1, Relaxed);
                    inner.stats.stream_last.fetch_max(ack.sequence, Relaxed);
                    // A duplicate: the stream already held this delivery id
                    // (within cluster.duplicate_window_s) and kept the first.
                    Ok(Stored {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Ok(Err(e)) => {
                    inner.stats.publish_failures.fetch_add(1, Relaxed);
                    Err(SinkError(format!("JetStream did not store the event: {e}")))
                }
                Err(_) => {
                    inner.stats.publish_failures.fetch_add(1, Relaxed);
                    Err(SinkError(format!(
                        "no acknowledgement from JetStream within {} s",
                        inner.publish_timeout.as_secs()
                    )))
                }
            }
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn sync(&self) -> SinkFuture<'_, ()> {
        Box::pin(async move {
            self.inner
                .catch_up()
                .await
                .map_err(|e| SinkError(e.to_string()))
        })
    }
}
