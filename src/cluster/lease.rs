//! A lease that one node of the cluster holds at a time (the redelivery
//! sweep's): a key in JetStream's key-value store, created by the node
//! that takes the lease and renewed by it; its entry ages out after the
//! lease's TTL, so that another node takes over when the holder dies.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::{Cluster, ClusterError, nats};

/// This node's claim on one lease.
pub(crate) struct Lease {
    store: kv::Store,
    key: String,
    /// The entry's value: the node's name and this process's own number,
    /// so that two nodes of one name (or a node restarted) never share it.
    holder: Bytes,
    /// The entry's revision while this node holds the lease.
    revision: Option<u64>,
    timeout: Duration,
}

impl Cluster {
    /// The lease `name`, whose entry lives `ttl` after its last renewal.
    /// The bucket is the stream's name with `-leases`; made at first use.
    pub(crate) async fn lease(&self, name: &str, ttl: Duration) -> Result<Lease, ClusterError> {
        let inner = &self.inner;
        let bucket = format!("{}-leases", inner.stream);
        let store = match inner.js.get_key_value(&bucket).await {
            Ok(s) => s,
            Err(_) => inner
                .js
                .create_key_value(kv::Config {
                    bucket,
                    history: 1,
                    max_age: ttl,
                    ..Default::default()
                })
                .await
                .map_err(nats)?,
        };
        Ok(Lease {
            store,
            key: name.to_owned(),
            holder: Bytes::from(format!("{} {:016x}", inner.stats.node, fastrand::u64(..))),
            revision: None,
            timeout: inner.publish_timeout,
        })
    }
}

impl Lease {
    /// Renews the lease if this node holds it, takes it if it is free;
    /// whether this node holds it now. NATS unreachable: not held.
    pub(crate) async fn hold(&mut self) -> bool {
        let held = tokio::time::timeout(self.timeout, self.try_hold()).await;
        self.revision = held.ok().flatten();
        self.revision.is_some()
    }

    /// The entry's revision when this node holds the lease.
    async fn try_hold(&self) -> Option<u64> {
        if let Some(rev) = self.revision
            && let Ok(rev) = self.store.update(&self.key, self.holder.clone(), rev).await
        {
            return Some(rev);
        }
        // Free when no entry is there: never taken, or aged out.
        self.store.create(&self.key, self.holder.clone()).await.ok()
    }
}
