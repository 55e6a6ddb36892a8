//! The reconnect-and-resume scenario: N clients over K orgs receive
//! webhooks arriving at R/s; a third of the way through, every client drops
//! at once, stays away `--away-s`, and all come back at once, each resuming
//! after the last seq it saw. Deliveries are counted over both connections
//! (missing, duplicated, unexpected); reported: how long until every client
//! was confirmed, and until every replay was written (the client live
//! again), and the daemon's CPU over that storm.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::{FanoutArgs, Run, Tally, Totals, build_payloads, client, report, send_webhooks};

/// What the run is doing; clients watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Live,
    Drop,
    Reconnect,
}

/// One client's resume, in ns since the run's start.
#[derive(Default)]
struct Resumed {
    resumed: bool,
    confirmed_ns: u64,
    /// When the last replayed event (seq <= the confirmation's seq) arrived,
    /// else the confirmation.
    replayed_ns: u64,
    replayed: u64,
}

/// Counts while reading `c` until the phase leaves `Live` (or, after the
/// resume, until the run stops); returns the largest seq seen.
async fn read_until(
    c: &mut client::Connected,
    t: &mut Tally,
    run: &Run,
    orgs: usize,
    phase: &mut watch::Receiver<Phase>,
    mut on_seq: impl FnMut(u64),
) -> u64 {
    let mut last = 0;
    let stop = run.stop.notified();
    tokio::pin!(stop);
    stop.as_mut().enable();
    let read = c.reader.run(&mut c.stream, |f| {
        if let client::Frame::Text(payload) = f
            && let Some(seq) = client::event_seq(payload)
            && client::delivery_seq(payload).is_some()
        {
            last = last.max(seq);
            on_seq(seq);
            t.count(payload, run, orgs);
        }
        true
    });
    tokio::select! {
        _ = read => {}
        _ = &mut stop => {}
        _ = phase.wait_for(|p| *p == Phase::Drop) => {}
    }
    last
}

fn parse(confirmation: &[u8]) -> Value {
    serde_json::from_slice(confirmation).unwrap_or(Value::Null)
}

pub async fn run(a: FanoutArgs, away_s: f64) -> bool {
    let orgs = a.orgs.max(1);
    let run = Run::new(a.webhooks, false);
    let (phase_tx, phase_rx) = watch::channel(Phase::Live);
    let gate = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
    let connected = Arc::new(AtomicUsize::new(0));
    let live_again = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let target = client::Target {
            addr: a.addr,
            token: a.token.clone(),
            source: (!a.source_ips.is_empty()).then(|| a.source_ips[i % a.source_ips.len()]),
        };
        let org = i % orgs;
        let (gate, run, connected, live_again) = (
            gate.clone(),
            run.clone(),
            connected.clone(),
            live_again.clone(),
        );
        let mut phase = phase_rx.clone();
        let webhooks = a.webhooks;
        handles.push(tokio::spawn(async move {
            let sub = json!({"organization": format!("load{org}")});
            let mut c = {
                let _p = gate.acquire().await.expect("semaphore");
                client::connect(&target, &sub.to_string(), Duration::from_secs(60)).await?
            };
            let epoch = parse(&c.confirmation)["stream"]["epoch"].clone();
            connected.fetch_add(1, Relaxed);
            let mut t = Tally::new(org, webhooks);
            let last = read_until(&mut c, &mut t, &run, orgs, &mut phase, |_| {}).await;
            drop(c);
            let _ = phase.wait_for(|p| *p == Phase::Reconnect).await;
            let mut sub = sub;
            sub["resume"] = json!({"epoch": epoch, "after": last});
            let mut c = {
                let _p = gate.acquire().await.expect("semaphore");
                client::connect(&target, &sub.to_string(), Duration::from_secs(60)).await?
            };
            let conf = parse(&c.confirmation);
            let now = || run.start.elapsed().as_nanos() as u64;
            let confirmed_ns = now();
            let up_to = conf["stream"]["seq"].as_u64().unwrap_or(0);
            let mut r = Resumed {
                resumed: conf["resumed"] == true,
                confirmed_ns,
                replayed_ns: confirmed_ns,
                replayed: 0,
            };
            let mut live = false;
            read_until(&mut c, &mut t, &run, orgs, &mut phase, |seq| {
                if seq <= up_to {
                    r.replayed += 1;
                    r.replayed_ns = now();
                } else if !live {
                    live = true;
                    live_again.fetch_add(1, Relaxed);
                }
            })
            .await;
            Ok::<_, client::Failure>((t, r))
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Relaxed) < a.clients && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("connected {}/{}", connected.load(Relaxed), a.clients);

    // Webhooks throughout; the drop a third of the way in.
    let payloads = build_payloads(&a, orgs);
    let sender = {
        let (a, run) = (a.clone(), run.clone());
        tokio::spawn(async move { send_webhooks(&a, orgs, &payloads, &run, false).await })
    };
    let send_s = a.webhooks as f64 / a.rate.max(0.001);
    tokio::time::sleep(Duration::from_secs_f64(send_s / 3.0)).await;
    let _ = phase_tx.send(Phase::Drop);
    tokio::time::sleep(Duration::from_secs_f64(away_s)).await;
    let cpu_before = a.daemon_pid.and_then(report::cpu_seconds);
    let storm_ns = run.start.elapsed().as_nanos() as u64;
    let storm = Instant::now();
    let _ = phase_tx.send(Phase::Reconnect);
    // Every client has had an event past its replay: live again.
    while live_again.load(Relaxed) < a.clients && storm.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first_live_s = storm.elapsed().as_secs_f64();
    let cpu_storm = a.daemon_pid.and_then(report::cpu_seconds);
    let webhook_lat = sender.await.expect("sender");

    let expected: u64 = (0..a.webhooks)
        .map(|j| (0..a.clients).filter(|i| i % orgs == j % orgs).count() as u64)
        .sum();
    let drained = tokio::time::timeout(Duration::from_secs_f64(a.drain_timeout_s), async {
        while run.received.load(Relaxed) < expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok();
    run.stop.notify_waiters();

    let mut totals = Totals::default();
    let (mut resumed, mut replayed, mut confirmed_max, mut replayed_max) = (0usize, 0u64, 0, 0);
    let mut failures = 0usize;
    for h in handles {
        match h.await.expect("client task") {
            Ok((t, r)) => {
                totals.add(&t, a.webhooks, orgs);
                resumed += r.resumed as usize;
                replayed += r.replayed;
                confirmed_max = confirmed_max.max(r.confirmed_ns);
                replayed_max = replayed_max.max(r.replayed_ns);
            }
            Err(f) => {
                eprintln!("client failed: {}", f.0);
                failures += 1;
            }
        }
    }
    let Totals {
        received,
        missing,
        duplicated,
        unexpected,
    } = totals;
    let ms = |ns: u64| ns.saturating_sub(storm_ns) as f64 / 1e6;
    let cpu = match (cpu_before, cpu_storm) {
        (Some(b), Some(af)) => Some(af - b),
        _ => None,
    };
    println!(
        "resume storm: {} clients over {orgs} orgs dropped at once, away {away_s:.1} s, back at once",
        a.clients
    );
    println!(
        "resumed {resumed}/{} (failures {failures}); events replayed {replayed}; all confirmed after {:.0} ms, all replays written after {:.0} ms, all live (an event past the replay) after {:.0} ms",
        a.clients,
        ms(confirmed_max),
        ms(replayed_max),
        first_live_s * 1e3
    );
    if let Some(c) = cpu {
        println!("daemon CPU over the storm: {c:.2} s in {first_live_s:.2} s");
    }
    println!(
        "deliveries: expected {expected}, received {received}, missing {missing}, duplicated {duplicated}, unexpected {unexpected}{}",
        if drained { "" } else { " (drain timed out)" }
    );
    println!(
        "webhook POST latency ms p50 {:.3} p99 {:.3} max {:.3}",
        webhook_lat[0], webhook_lat[2], webhook_lat[3]
    );
    if a.json {
        println!(
            "{}",
            json!({
                "mode": "resume",
                "clients": a.clients,
                "resumed": resumed,
                "failures": failures,
                "events_replayed": replayed,
                "all_confirmed_ms": ms(confirmed_max),
                "all_replayed_ms": ms(replayed_max),
                "all_live_ms": first_live_s * 1e3,
                "daemon_cpu_storm_s": cpu,
                "expected": expected,
                "received": received,
                "missing": missing,
                "duplicated": duplicated,
                "unexpected": unexpected,
            })
        );
    }
    failures == 0 && resumed == a.clients && missing == 0 && duplicated == 0 && unexpected == 0
}
