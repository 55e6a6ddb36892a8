//! The cluster's stream: made sure of at start (found, or created with the
//! configured limits), named by its epoch, read from a seq on, and its
//! bounds kept fresh.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use super::config::ClusterConfig;
use super::{ClusterError, Inner, fail, nats};
use crate::broker::Hub;

/// Finds the stream, or creates it with the configured limits; an existing
/// stream must match them.
pub(super) async fn ensure_stream(
    js: &jetstream::Context,
    c: &ClusterConfig,
) -> Result<stream::Info, ClusterError> {
    let wanted = wanted(c);
    let info = find_or_create(js, c, &wanted).await?;
    check_agrees(&info.config, &wanted, c)?;
    Ok(info)
}

/// The stream this node is configured for.
fn wanted(c: &ClusterConfig) -> stream::Config {
    stream::Config {
        name: c.stream.clone(),
        subjects: vec![c.subject.clone()],
        max_age: Duration::from_secs(c.max_age_s),
        max_bytes: c.max_bytes as i64,
        num_replicas: c.replicas,
        duplicate_window: Duration::from_secs(c.duplicate_window_s),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

/// The stream's info; the stream is created as `wanted` if there is none.
async fn find_or_create(
    js: &jetstream::Context,
    c: &ClusterConfig,
    wanted: &stream::Config,
) -> Result<stream::Info, ClusterError> {
    let cannot_read = |e: &dyn std::fmt::Display| {
        fail(
            "cluster.stream",
            format!("cannot read stream {}: {e}", c.stream),
        )
    };
    let mut s = match js.get_stream(&c.stream).await {
        Ok(s) => s,
        Err(e) if is_not_found(&e) => {
            tracing::info!(stream = %c.stream, subject = %c.subject, "creating the stream");
            js.create_stream(wanted.clone()).await.map_err(|e| {
                fail(
                    "cluster.stream",
                    format!("cannot create stream {}: {e}", c.stream),
                )
            })?
        }
        Err(e) => return Err(cannot_read(&e)),
    };
    Ok(s.info().await.map_err(|e| cannot_read(&e))?.clone())
}

/// An existing stream must have the limits this node is configured for;
/// the first that differs is named, with its key.
fn check_agrees(
    have: &stream::Config,
    wanted: &stream::Config,
    c: &ClusterConfig,
) -> Result<(), ClusterError> {
    let secs = |d: Duration| format!("{} s", d.as_secs());
    // (key, differs, what the stream has, what this node wants)
    let checks = [
        (
            "cluster.subject",
            have.subjects != wanted.subjects,
            format!("subjects {:?}", have.subjects),
            format!("[{:?}]", c.subject),
        ),
        (
            "cluster.duplicate_window_s",
            have.duplicate_window != wanted.duplicate_window,
            format!("duplicate_window {}", secs(have.duplicate_window)),
            secs(wanted.duplicate_window),
        ),
        (
            "cluster.max_age_s",
            have.max_age != wanted.max_age,
            format!("max_age {}", secs(have.max_age)),
            secs(wanted.max_age),
        ),
        (
            "cluster.max_bytes",
            have.max_bytes != wanted.max_bytes,
            format!("max_bytes {}", have.max_bytes),
            c.max_bytes.to_string(),
        ),
        (
            "cluster.replicas",
            have.num_replicas != wanted.num_replicas,
            format!("{} replicas", have.num_replicas),
            c.replicas.to_string(),
        ),
        (
            "cluster.stream",
            have.retention != wanted.retention,
            format!("retention {:?}", have.retention),
            "limits retention".to_owned(),
        ),
    ];
    match checks.into_iter().find(|c| c.1) {
        Some((key, _, has, wants)) => Err(fail(
            key,
            format!(
                "the existing stream {} has {has}, this node is configured for {wants}; \
                 make them agree (edit the stream, or this node's config)",
                c.stream
            ),
        )),
        None => Ok(()),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The epoch: 64 bits of a hash of the stream's name and creation time, so
/// that a re-created stream (whose seqs start again) has another.
pub(super) fn epoch_of(info: &stream::Info) -> String {
    let created = info.created.unix_timestamp_nanos();
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{}\n{created}", info.config.name).as_bytes(),
    );
    hex::encode(&d.as_ref()[..8])
}

/// The stream's messages in order from seq `from`, through an ordered
/// consumer (ephemeral, no acknowledgements, recreated by the library when
/// it notices a gap).
pub(super) async fn read_from(
    stream: &stream::Stream,
    from: u64,
) -> Result<consumer::pull::Ordered, ClusterError> {
    stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(nats)?
        .messages()
        .await
        .map_err(nats)
}

/// Keeps the stream's bounds fresh for confirmations and the lag metric.
pub(super) async fn watch_stream(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if inner.hub.get().is_some_and(Hub::is_stopped) {
            return;
        }
        if let Ok(Ok(s)) =
            tokio::time::timeout(inner.publish_timeout, inner.js.get_stream(&inner.stream)).await
        {
            let state = &s.cached_info().state;
            inner
                .stream_first
                .store(state.first_sequence.max(1), Relaxed);
            inner
                .stats
                .stream_last
                .fetch_max(state.last_sequence, Relaxed);
        }
    }
}
