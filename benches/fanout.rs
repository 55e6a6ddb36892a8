//! The broker's hot path inside one shard: index lookup, per-client filter,
//! and pushing the shared frame into client queues; and a resume over the
//! replay window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hookfan::bench::{ReplayBench, ShardBench};
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

fn resume(c: &mut Criterion) {
    let mut group = c.benchmark_group("resume");
    // One client resuming over a full window of 100,000 events, 1 % of
    // which match its subscription.
    let window = ReplayBench::new(100_000, 100);
    assert_eq!(window.resume(), 1_000);
    group.sample_size(30);
    group.bench_function("snapshot_under_hub_lock/100k_window", |b| {
        b.iter(|| std::hint::black_box(window.snapshot()))
    });
    group.bench_function("resume_one_client/100k_window_1pct_match", |b| {
        b.iter(|| std::hint::black_box(window.resume()))
    });
    group.finish();
}

criterion_group!(benches, fanout, resume);
criterion_main!(benches);
