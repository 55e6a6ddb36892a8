//! The broker's hot path inside one shard: index lookup, per-client filter,
//! and pushing the shared frame into client queues.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hookfan::bench::ShardBench;
use hookfan::{Event, EventParts};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn event(org: &str) -> Arc<Event> {
    Arc::new(Event::new(EventParts {
        kind: "pull_request".into(),
        delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        url: format!("https://github.com/{org}/api/pull/7"),
        org: Some(org.into()),
        commit_sha: Some("6dcb09b5b57875f334f61aebed695e2e4193db5e".into()),
        users: vec!["alice".into(), "bob".into()],
        ..EventParts::default()
    }))
}

/// Runs `deliver` `iters` times, draining the queues outside the timing.
fn timed(shard: &mut ShardBench, e: &Arc<Event>, iters: u64, per_event: usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        shard.deliver(e);
        total += start.elapsed();
        assert_eq!(shard.drain(), per_event);
    }
    total
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");

    // 100,000 subscriptions over 10,000 orgs; the event's org has 10.
    let mut index = ShardBench::new(256);
    for i in 0..100_000 {
        index.add_org_subscriber(&format!("org{}", i % 10_000));
    }
    let e = event("org42");
    group.bench_function("route_one_event/100k_subscriptions_10_match", |b| {
        b.iter_custom(|iters| timed(&mut index, &e, iters, 10))
    });

    // One event into 10,000 client queues.
    let mut wide = ShardBench::new(256);
    for _ in 0..10_000 {
        wide.add_org_subscriber("acme");
    }
    let e = event("acme");
    group.sample_size(50);
    group.bench_function("deliver_one_event/10k_queues", |b| {
        b.iter_custom(|iters| timed(&mut wide, &e, iters, 10_000))
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
