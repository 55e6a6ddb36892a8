//! `hookfan-load`: a load driver for what k6 cannot do cheaply on two cores:
//! up to ~19,000 WebSocket connections from one process, exact delivery
//! accounting (expected, received, missing, duplicated, unexpected), latency
//! from an HDR histogram, the daemon's memory and CPU from /proc, and the
//! same fan-out against a no-broker "ceiling" writer for comparison.
//!
//! Modes:
//!   fanout   N clients over K orgs, M signed webhooks at R/s into hookfan
//!   ceiling  the same clients and events against the minimal writer
//!   intake   signed webhooks as fast as C keep-alive connections allow
//!   resume   fanout, with every client dropping at once and resuming
//!   soak     clients churning (resume, fresh subscriptions) under steady
//!            webhooks for a long run; exact accounting, daemon samples
//! `--webhooks 0` with `--hold-s` measures idle connections' memory.

mod ceiling;
mod client;
mod report;
mod resume;
mod soak;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tokio::sync::{Notify, Semaphore, mpsc};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Load driver for hookfan")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Clients subscribe to hookfan; signed webhooks fan out to them.
    Fanout(FanoutArgs),
    /// The same clients and events, against a minimal writer with no broker.
    Ceiling(FanoutArgs),
    /// Signed webhooks as fast as the connections allow; no subscribers.
    Intake(IntakeArgs),
    /// Fan-out during which every client drops at once and resumes.
    Resume(ResumeArgs),
    /// Churning clients under steady webhooks; RSS and fds sampled.
    Soak(soak::SoakArgs),
    /// The ceiling's server process (started by `ceiling`).
    #[command(hide = true)]
    CeilingServe,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    /// hookfan's address (fanout mode).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Bearer token the clients present (a member of every load org).
    #[arg(long, default_value = "")]
    token: String,
    /// File holding the webhook secret (fanout mode).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// WebSocket clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Organizations `load0..load{K-1}`; client i subscribes to `load{i % K}`.
    #[arg(long, default_value_t = 1)]
    orgs: usize,
    /// Webhooks to send; webhook j is for org `load{j % K}`.
    #[arg(long, default_value_t = 10)]
    webhooks: usize,
    /// Webhooks per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Webhook payload (a pull_request event of org `acme`; "acme" is replaced by the org).
    #[arg(long)]
    payload: Option<PathBuf>,
    /// The daemon's pid, for memory and CPU figures.
    #[arg(long)]
    daemon_pid: Option<u32>,
    /// Source addresses to spread clients over (127.0.0.0/8).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds to hold the subscribed connections before sending (memory
    /// is measured at the end of the hold).
    #[arg(long, default_value_t = 1.0)]
    hold_s: f64,
    /// Seconds to wait for outstanding deliveries after the last webhook.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout_s: f64,
    /// Webhook sender connections (keep-alive).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Also print the summary as one JSON line.
    #[arg(long)]
    json: bool,
    /// Subscribe with `"include_payload": true` (the daemon needs
    /// `[payloads] enabled`): each event carries its webhook's body.
    #[arg(long)]
    include_payload: bool,
    /// Send nothing: subscribe, print `ready`, and count the webhooks
    /// another driver process sends (`ld-0 .. ld-{M-1}`, same --orgs and
    /// --webhooks), until all arrived or --drain-timeout-s. Latency is then
    /// measured from each event's `timestamp` (the server's accept time).
    #[arg(long)]
    no_send: bool,
}

#[derive(Args, Clone)]
struct ResumeArgs {
    #[command(flatten)]
    fanout: FanoutArgs,
    /// Seconds every client stays away before all resume at once.
    #[arg(long, default_value_t = 5.0)]
    away_s: f64,
}

#[derive(Args, Clone)]
struct IntakeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long)]
    secret_file: PathBuf,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Stop after this many webhooks in all (default: run for --duration-s).
    #[arg(long)]
    count: Option<u64>,
    /// Webhook payload (default: the 27 KB pull_request.labeled.json fixture).
    #[arg(long)]
    payload: Option<PathBuf>,
    #[arg(long)]
    daemon_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

fn default_payload() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/pull_request.opened.json"
    ))
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(async move {
        match cli.mode {
            Mode::Fanout(a) => fanout(a, false).await,
            Mode::Ceiling(a) => fanout(a, true).await,
            Mode::Intake(a) => intake(a).await,
            Mode::Resume(a) => resume::run(a.fanout, a.away_s).await,
            Mode::Soak(a) => soak::run(a).await,
            Mode::CeilingServe => ceiling::serve().await.is_ok(),
        }
    });
    std::process::exit(if ok { 0 } else { 1 });
}

/// Per-client delivery accounting.
struct Tally {
    org: usize,
    /// Bit j: webhook j received.
    seen: Vec<u64>,
    duplicated: u64,
    unexpected: u64,
}

impl Tally {
    fn new(org: usize, webhooks: usize) -> Self {
        Self {
            org,
            seen: vec![0; webhooks.div_ceil(64)],
            duplicated: 0,
            unexpected: 0,
        }
    }

    /// Counts one text frame if it is one of the run's events (`ld-<j>`).
    fn count(&mut self, payload: &[u8], run: &Run, orgs: usize) {
        let Some(seq) = client::delivery_seq(payload) else {
            return;
        };
        let now = run.start.elapsed().as_nanos() as u64;
        let j = seq as usize;
        if j >= run.sent_at.len() || j % orgs != self.org {
            self.unexpected += 1;
            return;
        }
        let (w, bit) = (j / 64, 1u64 << (j % 64));
        if self.seen[w] & bit != 0 {
            self.duplicated += 1;
        } else {
            self.seen[w] |= bit;
        }
        if run.listen_only {
            if let Some(age) = client::age_us(payload) {
                report::record_us(age);
            }
        } else {
            let sent = run.sent_at[j].load(Relaxed);
            report::record_us(now.saturating_sub(sent) / 1000);
        }
        run.first_recv.fetch_min(now, Relaxed);
        run.last_recv[j].fetch_max(now, Relaxed);
        run.received.fetch_add(1, Relaxed);
    }
}

/// Delivery accounting summed over clients.
#[derive(Default)]
struct Totals {
    received: u64,
    missing: u64,
    duplicated: u64,
    unexpected: u64,
}

impl Totals {
    /// Adds one client's tally; its org expects webhooks j with j % orgs == org.
    fn add(&mut self, t: &Tally, webhooks: usize, orgs: usize) {
        let got: u64 = t.seen.iter().map(|w| w.count_ones() as u64).sum();
        let want = (0..webhooks).filter(|j| j % orgs == t.org).count() as u64;
        self.received += got;
        self.missing += want.saturating_sub(got);
        self.duplicated += t.duplicated;
        self.unexpected += t.unexpected;
    }
}

/// Shared state of a fan-out run.
struct Run {
    start: Instant,
    /// Send time of webhook j, in ns since `start` (0: not sent).
    sent_at: Vec<AtomicU64>,
    /// Last receive of webhook j, in ns since `start`.
    last_recv: Vec<AtomicU64>,
    received: AtomicU64,
    /// Earliest receive, in ns since `start`.
    first_recv: AtomicU64,
    stop: Notify,
    /// Webhooks come from another process (`--no-send`).
    listen_only: bool,
}

impl Run {
    fn new(webhooks: usize, listen_only: bool) -> Arc<Run> {
        Arc::new(Run {
            start: Instant::now(),
            sent_at: (0..webhooks).map(|_| AtomicU64::new(0)).collect(),
            last_recv: (0..webhooks).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
            first_recv: AtomicU64::new(u64::MAX),
            stop: Notify::new(),
            listen_only,
        })
    }
}

async fn fanout(a: FanoutArgs, ceiling_mode: bool) -> bool {
    let orgs = a.orgs.max(1);
    // The ceiling server runs as a process of its own, as hookfan does (with
    // its own file descriptor budget).
    let mut a = a;
    let ceiling = if ceiling_mode {
        let (child, addr) = ceiling::spawn_server().expect("ceiling server");
        a.addr = addr;
        a.daemon_pid = Some(child.id());
        Some(KillOnDrop(child))
    } else {
        None
    };
    let addr = a.addr;
    let rss_before = a.daemon_pid.and_then(report::rss_bytes);

    // Connect.
    let run = Run::new(a.webhooks, a.no_send);
    let gate = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut handles = Vec::with_capacity(a.clients);
    for i in 0..a.clients {
        let target = client::Target {
            addr,
            token: a.token.clone(),
            source: (!a.source_ips.is_empty()).then(|| a.source_ips[i % a.source_ips.len()]),
        };
        let org = i % orgs;
        let mut sub = json!({"organization": format!("load{org}")});
        if a.include_payload {
            sub["include_payload"] = json!(true);
        }
        let sub = sub.to_string();
        let gate = gate.clone();
        let run = run.clone();
        let webhooks = a.webhooks;
        handles.push(tokio::spawn(async move {
            let connected = {
                let _permit = gate.acquire().await.expect("semaphore");
                client::connect(&target, &sub, Duration::from_secs(30)).await
            };
            let c = connected?;
            Ok::<_, client::Failure>((org, tokio::spawn(read_events(c, org, orgs, webhooks, run))))
        }));
    }
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut readers = Vec::new();
    let mut clients_per_org = vec![0u64; orgs];
    for h in handles {
        match h.await.expect("connect task") {
            Ok((org, reader)) => {
                clients_per_org[org] += 1;
                readers.push(reader);
            }
            Err(f) => *failures.entry(f.0).or_default() += 1,
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connected = readers.len();
    println!(
        "connected {connected}/{} in {connect_secs:.2} s ({:.0}/s), failures: {failures:?}",
        a.clients,
        connected as f64 / connect_secs
    );
    tokio::time::sleep(Duration::from_secs_f64(a.hold_s)).await;
    let rss_after = a.daemon_pid.and_then(report::rss_bytes);
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => Some((a as f64 - b as f64) / connected as f64),
        _ => None,
    };
    if let (Some(b), Some(af)) = (rss_before, rss_after) {
        println!(
            "daemon RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per connection",
            b as f64 / 1048576.0,
            af as f64 / 1048576.0,
            per_conn.unwrap_or(0.0)
        );
    }

    // Send (or, with --no-send, let another driver send).
    let cpu_before = a.daemon_pid.and_then(report::cpu_seconds);
    let send_started = Instant::now();
    let webhook_lat = if a.no_send {
        println!("ready");
        [0.0; 4]
    } else {
        let payloads = build_payloads(&a, orgs);
        send_webhooks(&a, orgs, &payloads, &run, ceiling.is_some()).await
    };
    let send_secs = send_started.elapsed().as_secs_f64();

    // Clients of org k expect the webhooks j with j % K == k.
    let expected: u64 = (0..a.webhooks).map(|j| clients_per_org[j % orgs]).sum();
    let drained = tokio::time::timeout(Duration::from_secs_f64(a.drain_timeout_s), async {
        while run.received.load(Relaxed) < expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok();
    let cpu_after = a.daemon_pid.and_then(report::cpu_seconds);
    run.stop.notify_waiters();

    let mut totals = Totals::default();
    for r in readers {
        totals.add(&r.await.expect("reader"), a.webhooks, orgs);
    }
    let Totals {
        received,
        missing,
        duplicated,
        unexpected,
    } = totals;
    let lat = report::summary_ms(&report::take_merged());
    // Fan-out time per webhook: send to last receive; webhooks spaced
    // further apart than that do not overlap.
    let fan_ns: u64 = (0..a.webhooks)
        .map(|j| {
            let s = run.sent_at[j].load(Relaxed);
            run.last_recv[j].load(Relaxed).saturating_sub(s)
        })
        .sum();
    let per_sec = if a.no_send {
        // No send times here: deliveries over first to last receive.
        let last = (0..a.webhooks)
            .map(|j| run.last_recv[j].load(Relaxed))
            .max()
            .unwrap_or(0);
        let span = last.saturating_sub(run.first_recv.load(Relaxed));
        if span > 0 {
            received as f64 / (span as f64 / 1e9)
        } else {
            0.0
        }
    } else if fan_ns > 0 {
        received as f64 / (fan_ns as f64 / 1e9)
    } else {
        0.0
    };
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(af)) => Some(af - b),
        _ => None,
    };
    let mode = match (ceiling_mode, a.no_send) {
        (true, _) => "ceiling",
        (false, true) => "fanout-listen",
        (false, false) => "fanout",
    };
    if a.no_send {
        println!(
            "{mode}: counted {} webhooks sent by another driver, for {connected} clients over {orgs} orgs",
            a.webhooks
        );
    } else {
        println!(
            "{mode}: {} webhooks in {send_secs:.2} s to {connected} clients over {orgs} orgs",
            a.webhooks
        );
    }
    println!(
        "deliveries: expected {expected}, received {received}, missing {missing}, duplicated {duplicated}, unexpected {unexpected}{}",
        if drained { "" } else { " (drain timed out)" }
    );
    let (rate_basis, latency_basis) = if a.no_send {
        ("first to last receive", "from each event's timestamp")
    } else {
        ("per webhook, send to last receive", "from the POST")
    };
    println!(
        "delivery rate {per_sec:.0}/s ({rate_basis}); latency ({latency_basis}) ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
        lat[0], lat[1], lat[2], lat[3]
    );
    if !a.no_send {
        println!(
            "webhook POST latency ms p50 {:.3} p99 {:.3} max {:.3}",
            webhook_lat[0], webhook_lat[2], webhook_lat[3]
        );
        if let Some(c) = cpu {
            println!(
                "daemon CPU {c:.2} s over {:.2} s ({:.0}% of one core)",
                send_secs,
                100.0 * c / send_secs.max(1e-9)
            );
        }
    }
    if a.json {
        println!(
            "{}",
            json!({
                "mode": mode,
                "clients": a.clients,
                "connected": connected,
                "connect_failures": failures,
                "connect_per_sec": connected as f64 / connect_secs,
                "rss_before": rss_before,
                "rss_after": rss_after,
                "rss_per_connection": per_conn,
                "webhooks": a.webhooks,
                "expected": expected,
                "received": received,
                "missing": missing,
                "duplicated": duplicated,
                "unexpected": unexpected,
                "deliveries_per_sec": per_sec,
                "latency_ms": {"p50": lat[0], "p90": lat[1], "p99": lat[2], "max": lat[3]},
                "daemon_cpu_s": cpu,
                "send_s": send_secs,
                "rss_peak": a.daemon_pid.and_then(report::peak_rss_bytes),
            })
        );
    }
    failures.is_empty() && missing == 0 && duplicated == 0 && unexpected == 0
}

async fn read_events(
    c: client::Connected,
    org: usize,
    orgs: usize,
    webhooks: usize,
    run: Arc<Run>,
) -> Tally {
    let client::Connected {
        mut stream,
        mut reader,
        ..
    } = c;
    let mut t = Tally::new(org, webhooks);
    let stop = run.stop.notified();
    tokio::pin!(stop);
    // Registered now, so a stop sent before the first poll is not missed.
    stop.as_mut().enable();
    let read = reader.run(&mut stream, |f| {
        if let client::Frame::Text(payload) = f {
            t.count(payload, &run, orgs);
        }
        true
    });
    tokio::select! {
        _ = read => {}
        _ = &mut stop => {}
    }
    t
}

fn build_payloads(a: &FanoutArgs, orgs: usize) -> Vec<Bytes> {
    let path = a.payload.clone().unwrap_or_else(default_payload);
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (0..orgs)
        .map(|k| Bytes::from(raw.replace("acme", &format!("load{k}"))))
        .collect()
}

/// Sends the webhooks at the configured rate over a few keep-alive
/// connections; returns POST latency p50/p90/p99/max in ms.
async fn send_webhooks(
    a: &FanoutArgs,
    orgs: usize,
    payloads: &[Bytes],
    run: &Arc<Run>,
    to_ceiling: bool,
) -> [f64; 4] {
    // The ceiling checks no signature; any secret will do.
    let secret = match &a.secret_file {
        Some(f) => std::fs::read(f).expect("secret file"),
        None if to_ceiling => b"ceiling".to_vec(),
        None => panic!("--secret-file is required"),
    };
    let secret = String::from_utf8_lossy(&secret)
        .trim_end_matches(['\n', '\r'])
        .to_owned();
    let sigs: Vec<String> = payloads
        .iter()
        .map(|p| hookfan::sign(secret.as_bytes(), p))
        .collect();
    let (tx, rx) = mpsc::channel::<usize>(1024);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let lat = Arc::new(std::sync::Mutex::new(report::new_histogram()));
    let mut workers = Vec::new();
    for _ in 0..a.senders.max(1) {
        let rx = rx.clone();
        let lat = lat.clone();
        let run = run.clone();
        let payloads = payloads.to_vec();
        let sigs = sigs.clone();
        let addr = a.addr;
        workers.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr).await;
            loop {
                let Some(j) = rx.lock().await.recv().await else {
                    return;
                };
                let org = j % orgs;
                let t0 = Instant::now();
                run.sent_at[j].store(run.start.elapsed().as_nanos() as u64, Relaxed);
                let status = conn
                    .post(
                        &payloads[org],
                        &sigs[org],
                        &format!("ld-{j}"),
                        "pull_request",
                        org,
                    )
                    .await;
                let _ = lat.lock().unwrap().record(t0.elapsed().as_micros() as u64);
                if status != 200 {
                    eprintln!("webhook {j}: HTTP {status}");
                }
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(0.001));
    let start = tokio::time::Instant::now();
    for j in 0..a.webhooks {
        tokio::time::sleep_until(start + interval * j as u32).await;
        let _ = tx.send(j).await;
    }
    drop(tx);
    for w in workers {
        let _ = w.await;
    }
    let h = lat.lock().unwrap();
    report::summary_ms(&h)
}

/// Kills the ceiling server when the run ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A keep-alive HTTP/1.1 connection for webhooks.
struct HttpConn {
    addr: SocketAddr,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    async fn connect(addr: SocketAddr) -> Self {
        let mut c = Self { addr, sender: None };
        c.reconnect().await;
        c
    }

    async fn reconnect(&mut self) {
        self.sender = None;
        if let Ok(stream) = tokio::net::TcpStream::connect(self.addr).await {
            let _ = stream.set_nodelay(true);
            if let Ok((sender, conn)) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
            {
                tokio::spawn(conn);
                self.sender = Some(sender);
            }
        }
    }

    async fn post(
        &mut self,
        body: &Bytes,
        sig: &str,
        delivery: &str,
        kind: &str,
        org: usize,
    ) -> u16 {
        for _ in 0..2 {
            if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
                self.reconnect().await;
            }
            let Some(sender) = self.sender.as_mut() else {
                continue;
            };
            let req = hyper::Request::post("/webhook")
                .header("host", self.addr.to_string())
                .header("content-type", "application/json")
                .header("x-github-event", kind)
                .header("x-github-delivery", delivery)
                .header("x-hub-signature-256", sig)
                .header(ceiling::ORG_HEADER, org)
                .body(Full::new(body.clone()))
                .expect("request");
            match sender.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp.into_body().collect().await;
                    return status;
                }
                Err(_) => self.sender = None,
            }
        }
        0
    }
}

async fn intake(a: IntakeArgs) -> bool {
    let path = a.payload.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/webhooks/pull_request.labeled.json"
        ))
    });
    // An org nobody subscribes to: intake alone is measured.
    let raw = std::fs::read_to_string(&path)
        .expect("payload")
        .replace("acme", "intake-nobody");
    let body = Bytes::from(raw);
    let secret = std::fs::read_to_string(&a.secret_file).expect("secret file");
    let sig = hookfan::sign(secret.trim_end_matches(['\n', '\r']).as_bytes(), &body);
    let deadline = match a.count {
        Some(_) => Instant::now() + Duration::from_secs(3600),
        None => Instant::now() + Duration::from_secs_f64(a.duration_s),
    };
    let budget = Arc::new(AtomicU64::new(a.count.unwrap_or(u64::MAX)));
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let cpu_before = a.daemon_pid.and_then(report::cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..a.connections {
        let (body, sig, ok, bad) = (body.clone(), sig.clone(), ok.clone(), bad.clone());
        let budget = budget.clone();
        let addr = a.addr;
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr).await;
            let mut n = 0u64;
            while Instant::now() < deadline
                && budget
                    .fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1))
                    .is_ok()
            {
                let t0 = Instant::now();
                let status = conn
                    .post(&body, &sig, &format!("in-{c}-{n}"), "pull_request", 0)
                    .await;
                report::record_us(t0.elapsed().as_micros() as u64);
                n += 1;
                if status == 200 {
                    ok.fetch_add(1, Relaxed);
                } else {
                    bad.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, a.daemon_pid.and_then(report::cpu_seconds)) {
        (Some(b), Some(af)) => Some(af - b),
        _ => None,
    };
    let lat = report::summary_ms(&report::take_merged());
    let (ok, bad) = (ok.load(Relaxed), bad.load(Relaxed));
    println!(
        "intake: {ok} webhooks of {} B in {secs:.2} s over {} connections: {:.0}/s, non-200 {bad}",
        body.len(),
        a.connections,
        ok as f64 / secs
    );
    println!(
        "request latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
        lat[0], lat[1], lat[2], lat[3]
    );
    if let Some(c) = cpu {
        println!("daemon CPU {c:.2} s ({:.0}% of one core)", 100.0 * c / secs);
    }
    if a.json {
        println!(
            "{}",
            json!({
                "mode": "intake", "ok": ok, "non_200": bad, "per_sec": ok as f64 / secs,
                "bytes": body.len(), "connections": a.connections,
                "latency_ms": {"p50": lat[0], "p90": lat[1], "p99": lat[2], "max": lat[3]},
                "daemon_cpu_s": cpu,
            })
        );
    }
    bad == 0
}
