//! Delivery latency, written by every session without contention: each
//! thread has its own set of atomic counters, summed when scraped.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::MetricEncoder;

/// Latency bucket bounds, in seconds.
pub(super) const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Shards of the latency histogram; each runtime thread writes to its own.
const HISTOGRAM_SHARDS: usize = 16;

/// A histogram written from many threads without contention: each thread
/// has its own set of atomic counters, summed when scraped.
#[derive(Default)]
pub(crate) struct LatencyHistogram {
    shards: [Padded; HISTOGRAM_SHARDS],
}

/// One thread's counters, on its own cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Padded {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % HISTOGRAM_SHARDS;
    }
    SHARD.with(|s| *s)
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn observe(&self, d: Duration) {
        let shard = &self.shards[thread_shard()];
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            shard.buckets[i].fetch_add(1, Relaxed);
        }
        shard.count.fetch_add(1, Relaxed);
        shard.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.count.load(Relaxed)).sum()
    }

    pub(super) fn encode(&self, mut m: MetricEncoder<'_>) -> std::fmt::Result {
        // Per-bucket counts; the encoder makes them cumulative.
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let n = self
                .shards
                .iter()
                .map(|s| s.buckets[i].load(Relaxed))
                .sum::<u64>();
            buckets.push((*bound, n));
        }
        // Read after the buckets: a concurrent observation may land in
        // `count` but not yet in a bucket, never the other way round.
        let count = self.count();
        let in_buckets: u64 = buckets.iter().map(|b| b.1).sum();
        buckets.push((f64::INFINITY, count.saturating_sub(in_buckets)));
        let sum: u64 = self.shards.iter().map(|s| s.sum_ns.load(Relaxed)).sum();
        m.encode_histogram::<Vec<(String, String)>>(sum as f64 / 1e9, count, &buckets, None)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn sharded_histogram_sums_every_thread() {
        let h = Arc::new(LatencyHistogram::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe(Duration::from_micros(300));
                    }
                    h.observe(Duration::from_secs(60));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 4004);
        let total: u64 = h.shards.iter().map(|s| s.buckets[2].load(Relaxed)).sum();
        assert_eq!(total, 4000, "300 µs falls in the 0.5 ms bucket");
    }
}
