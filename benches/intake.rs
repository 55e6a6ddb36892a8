//! Webhook intake after the body is read: verify (HMAC-SHA256) + parse
//! (simd-json) + extract + serialize the outgoing frame, for real payloads.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;

use hookfan::{
    Event, Hub, HubConfig, Metrics, StaticTokens, WebhookEndpoint, WebhookOptions, WebhookVerifier,
    sign,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &[u8] = b"bench-secret";

fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhooks/");
    std::fs::read(format!("{dir}{name}")).expect("fixture")
}

fn intake(c: &mut Criterion) {
    let mut group = c.benchmark_group("intake");
    for (kind, file) in [
        ("pull_request", "pull_request.labeled.json"),
        (
            "pull_request_review_comment",
            "pull_request_review_comment.created.json",
        ),
        ("check_run", "check_run.completed.json"),
    ] {
        let body = fixture(file);
        let sig = sign(SECRET, &body);
        let verifier = WebhookVerifier::new(SECRET);
        // The parse-once path of the webhook endpoint (with its commit
        // cache), then the event built; nothing is broadcast.
        let hub = Hub::start(HubConfig::default()).unwrap();
        let endpoint = WebhookEndpoint::new(
            Arc::new(hub.clone()),
            SECRET,
            WebhookOptions::default(),
            Metrics::new(&hub, Arc::new(StaticTokens::default())),
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(
            format!("verify_parse_extract_serialize/{file} ({} B)", body.len()),
            |b| {
                b.iter_batched_ref(
                    || body.clone(),
                    |buf| {
                        assert!(verifier.verify(Some(sig.as_bytes()), buf));
                        let parts = endpoint
                            .parse(kind, "bench-delivery", buf)
                            .unwrap()
                            .unwrap();
                        black_box(Event::new(parts));
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    // The HMAC alone, for scale: what the parse costs on top of it.
    let body = fixture("pull_request.labeled.json");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("hmac_sha256_only/pull_request.labeled.json", |b| {
        b.iter(|| black_box(sign(SECRET, black_box(&body))))
    });
    group.finish();
}

criterion_group!(benches, intake);
criterion_main!(benches);
