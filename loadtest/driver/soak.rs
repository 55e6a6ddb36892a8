//! The soak: N clients over K orgs keep churning while signed webhooks
//! arrive at R/s for the run's duration. Each client subscribes, reads for a
//! random lifetime, disconnects (a close frame or a dropped socket), stays
//! away briefly and comes back with `resume` from the last seq it saw; a
//! fraction come back with a fresh subscription instead, and their
//! accounting starts again from the confirmation's seq.
//!
//! Webhooks are posted one at a time, so webhook j gets seq `base + 1 + j`
//! (`base`: the daemon's last seq before the run) and is for org `j % K`.
//! A client of org k is therefore owed exactly the seqs of org k after the
//! seq its accounting started from, each once and in order, across all its
//! connections; every frame is checked against that (missing, duplicated,
//! unexpected). A refused resume is a failure unless the confirmation shows
//! the window had already passed the client's seq.
//!
//! Every `--sample-s` the daemon's RSS, fds and threads (/proc), gauges and
//! counters from its /metrics, the loopback socket backlog (/proc/net/tcp)
//! and the driver's own counts go to `samples.csv`; at the end, the
//! least-squares slopes of RSS and fds after a warm-up.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

use crate::{HttpConn, client, default_payload, report};

#[derive(Args, Clone)]
pub struct SoakArgs {
    /// hookfan's address (WebSocket and webhooks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where /metrics is served (default: --addr).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Bearer token the clients present (a member of every load org).
    #[arg(long, default_value = "")]
    token: String,
    /// File holding the webhook secret.
    #[arg(long)]
    secret_file: PathBuf,
    /// The daemon's pid (memory, fds, threads, CPU; its death ends the run).
    #[arg(long)]
    daemon_pid: u32,
    /// WebSocket clients.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Organizations `load0..load{K-1}`; client i subscribes to `load{i % K}`.
    #[arg(long, default_value_t = 100)]
    orgs: usize,
    /// Webhooks per second; webhook j is for org `load{j % K}`.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds of webhooks (the run adds the initial connect and the drain).
    #[arg(long, default_value_t = 3600.0)]
    duration_s: f64,
    /// A connection lives a random time between these (seconds).
    #[arg(long, default_value_t = 10.0)]
    life_min_s: f64,
    #[arg(long, default_value_t = 110.0)]
    life_max_s: f64,
    /// A client stays away a random time between these (seconds).
    #[arg(long, default_value_t = 0.5)]
    away_min_s: f64,
    #[arg(long, default_value_t = 5.0)]
    away_max_s: f64,
    /// Fraction of reconnects with a fresh subscription instead of resume.
    #[arg(long, default_value_t = 0.1)]
    fresh: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    sample_s: f64,
    /// Samples before this (seconds after the first webhook) are left out of
    /// the slopes (default: 10 % of the duration, at least 60 s, at most half).
    #[arg(long)]
    warmup_s: Option<f64>,
    /// Directory for `samples.csv`.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Source addresses to spread clients over (127.0.0.0/8).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds the clients have to catch up after the last webhook.
    #[arg(long, default_value_t = 180.0)]
    drain_timeout_s: f64,
    /// Webhook payload (a pull_request event of org `acme`; "acme" is replaced by the org).
    #[arg(long)]
    payload: Option<PathBuf>,
    /// Seed of the clients' lifetimes and choices (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Also print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

/// What the run is doing; every client watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Webhooks arrive; clients churn.
    Live,
    /// The last webhook is posted (`Shared::final_seq`): each client stops
    /// churning, resumes if it has to, and finishes once it holds every
    /// event of its org up to the final seq.
    Drain,
    /// Stop now (drained, drain timeout, or the daemon died).
    Stop,
}

/// The seqs the run's webhooks got: webhook j (posted one at a time, each
/// answered before the next) has seq `base + 1 + j` and org `j % orgs`.
#[derive(Debug, Clone, Copy)]
struct Seqs {
    base: u64,
    orgs: u64,
}

impl Seqs {
    fn of_webhook(&self, j: u64) -> u64 {
        self.base + 1 + j
    }

    /// Events of `org` with a seq at or below `seq`.
    fn count_upto(&self, org: u64, seq: u64) -> u64 {
        match seq.checked_sub(self.base + 1) {
            Some(j) if j >= org => (j - org) / self.orgs + 1,
            _ => 0,
        }
    }

    /// Events of `org` with a seq in `after + 1 ..= upto`.
    fn owed(&self, org: u64, after: u64, upto: u64) -> u64 {
        self.count_upto(org, upto)
            .saturating_sub(self.count_upto(org, after))
    }

    /// The last seq of `org` at or below `upto` (`base` when none).
    fn last_of(&self, org: u64, upto: u64) -> u64 {
        match upto.checked_sub(self.base + 1) {
            Some(j) if j >= org => self.of_webhook(org + (j - org) / self.orgs * self.orgs),
            _ => self.base,
        }
    }
}

/// Counts every client adds to; the sampler reads them.
#[derive(Default)]
struct Counts {
    posted: AtomicU64,
    post_failures: AtomicU64,
    /// Events received once, as owed.
    received: AtomicU64,
    /// Of those, events a resume replayed (seq <= the confirmation's).
    replayed: AtomicU64,
    missing: AtomicU64,
    duplicated: AtomicU64,
    unexpected: AtomicU64,
    resumes_ok: AtomicU64,
    /// Refused, and the confirmation's `oldest` shows the window had
    /// passed the client's seq: the protocol's answer, not a fault.
    refused_explained: AtomicU64,
    refused_unexplained: AtomicU64,
    fresh: AtomicU64,
    /// Connections the client ended after their lifetime.
    cycles: AtomicU64,
    /// Connections the server ended (close frame or end of stream).
    server_closes: AtomicU64,
    connected: AtomicU64,
    /// Clients confirmed at least once.
    started: AtomicU64,
    /// Clients that hold every event up to the final seq.
    done: AtomicU64,
}

/// State shared by the clients, the sender and the sampler.
struct Shared {
    start: Instant,
    seqs: Seqs,
    /// Send time of webhook j, in ns since `start`.
    sent_at: Vec<AtomicU64>,
    /// The last webhook's seq, once the drain begins.
    final_seq: AtomicU64,
    /// Set (after `final_seq`) when the drain begins.
    draining: AtomicBool,
    counts: Counts,
    /// Connection failures by cause.
    failures: Mutex<BTreeMap<String, u64>>,
    /// The first few unexplained refusals and server closes, for the report.
    notes: Mutex<Vec<String>>,
    daemon_died: AtomicBool,
}

impl Shared {
    /// Before the run: `webhooks` to be sent, none yet.
    fn new(seqs: Seqs, webhooks: usize) -> Self {
        Shared {
            start: Instant::now(),
            seqs,
            sent_at: (0..webhooks).map(|_| AtomicU64::new(0)).collect(),
            final_seq: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            counts: Counts::default(),
            failures: Mutex::new(BTreeMap::new()),
            notes: Mutex::new(Vec::new()),
            daemon_died: AtomicBool::new(false),
        }
    }

    fn note(&self, line: String) {
        let mut n = self.notes.lock().unwrap();
        if n.len() < 20 {
            eprintln!("{line}");
            n.push(line);
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// Timing of one client's churn.
#[derive(Clone, Copy)]
struct Churn {
    life: (f64, f64),
    away: (f64, f64),
    fresh: f64,
}

fn between(rng: &mut fastrand::Rng, (lo, hi): (f64, f64)) -> Duration {
    Duration::from_secs_f64(lo + (hi - lo).max(0.0) * rng.f64())
}

/// One client's accounting: where its stream stands. The position is an
/// atomic only so that the reading closure and the task can both see it.
struct Account {
    org: u64,
    /// The last seq received, or the seq its accounting (re)started from.
    pos: AtomicU64,
}

impl Account {
    fn pos(&self) -> u64 {
        self.pos.load(Relaxed)
    }

    /// Checks one event frame (`seq`, webhook `j`) against what is owed.
    fn take(&self, seq: u64, j: u64, live: bool, sh: &Shared) {
        let c = &sh.counts;
        let s = sh.seqs;
        let known = (j as usize) < sh.sent_at.len() && s.of_webhook(j) == seq;
        if !known || j % s.orgs != self.org {
            c.unexpected.fetch_add(1, Relaxed);
            return;
        }
        let pos = self.pos();
        if seq <= pos {
            // Delivered in order once: anything at or below the position
            // is a duplicate (or out of order, equally a fault).
            c.duplicated.fetch_add(1, Relaxed);
            return;
        }
        let skipped = s.owed(self.org, pos, seq - 1);
        if skipped > 0 {
            c.missing.fetch_add(skipped, Relaxed);
        }
        self.pos.store(seq, Relaxed);
        c.received.fetch_add(1, Relaxed);
        if live {
            let sent = sh.sent_at[j as usize].load(Relaxed);
            report::record_us(sh.now_ns().saturating_sub(sent) / 1000);
        } else {
            c.replayed.fetch_add(1, Relaxed);
        }
    }

    /// The drain has begun and the client holds its org's last event.
    fn caught_up(&self, sh: &Shared) -> bool {
        sh.draining.load(Acquire)
            && self.pos() >= sh.seqs.last_of(self.org, sh.final_seq.load(Relaxed))
    }
}

/// How a connection ended.
enum End {
    /// The client holds everything up to the final seq.
    CaughtUp,
    /// The server closed, or the socket failed.
    Closed,
    Lifetime,
    Stop,
}

/// An empty masked close frame with code 1000.
const CLOSE_1000: [u8; 8] = [0x88, 0x82, 0x1f, 0x2e, 0x3d, 0x4c, 0x03 ^ 0x1f, 0xe8 ^ 0x2e];

/// One client, from its first subscription to the end of the run; returns
/// its org and final position (`None` if it never subscribed).
async fn run_client(
    target: client::Target,
    org: u64,
    churn: Churn,
    mut rng: fastrand::Rng,
    gate: Arc<Semaphore>,
    sh: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> Option<(u64, u64)> {
    let c = &sh.counts;
    let acct = Account {
        org,
        pos: AtomicU64::new(0),
    };
    let mut started = false;
    // Epoch and seq to resume from; `None`: a fresh subscription.
    let mut resume: Option<(String, u64)> = None;
    loop {
        if *phase.borrow() == Phase::Stop {
            break;
        }
        let mut sub = json!({"organization": format!("load{org}")});
        if let Some((epoch, after)) = &resume {
            sub["resume"] = json!({"epoch": epoch, "after": after});
        }
        let sub = sub.to_string();
        let connecting = async {
            let _p = gate.acquire().await.expect("semaphore");
            client::connect(&target, &sub, Duration::from_secs(30)).await
        };
        let conn = tokio::select! {
            r = connecting => r,
            _ = phase.wait_for(|p| *p == Phase::Stop) => break,
        };
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(f) => {
                *sh.failures.lock().unwrap().entry(f.0).or_default() += 1;
                let pause = between(&mut rng, (1.0, 2.0));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = phase.wait_for(|p| *p == Phase::Stop) => break,
                }
            }
        };
        let conf: Value = serde_json::from_slice(&conn.confirmation).unwrap_or(Value::Null);
        let stream = &conf["stream"];
        let (seq, oldest) = (
            stream["seq"].as_u64().unwrap_or(0),
            stream["oldest"].as_u64().unwrap_or(0),
        );
        let epoch = stream["epoch"].as_str().unwrap_or("").to_owned();
        match &resume {
            Some(_) if conf["resumed"] == true => {
                c.resumes_ok.fetch_add(1, Relaxed);
            }
            Some((_, after)) => {
                let reason = conf["resume_error"].as_str().unwrap_or("?");
                // Too old, and the window's oldest seq is past the one
                // after the client's: the events were evicted before it
                // came back. Anything else has no excuse.
                if reason == "too_old" && after + 1 < oldest {
                    c.refused_explained.fetch_add(1, Relaxed);
                } else {
                    c.refused_unexplained.fetch_add(1, Relaxed);
                    sh.note(format!(
                        "client of load{org}: resume after {after} refused ({reason}); stream seq {seq}, oldest {oldest}"
                    ));
                }
                acct.pos.store(seq, Relaxed);
            }
            None => {
                if started {
                    c.fresh.fetch_add(1, Relaxed);
                } else {
                    c.started.fetch_add(1, Relaxed);
                    started = true;
                }
                acct.pos.store(seq, Relaxed);
            }
        }
        c.connected.fetch_add(1, Relaxed);
        let end = if acct.caught_up(&sh) {
            End::CaughtUp
        } else {
            let read = conn.reader.run(&mut conn.stream, |f| {
                if let client::Frame::Text(p) = f
                    && let Some(s) = client::event_seq(p)
                    && let Some(j) = client::delivery_seq(p)
                {
                    acct.take(s, j, s > seq, &sh);
                    return !acct.caught_up(&sh);
                }
                true
            });
            tokio::pin!(read);
            let life = tokio::time::sleep(between(&mut rng, churn.life));
            tokio::pin!(life);
            // Once the drain begins, a connected client stays until it
            // holds its org's last event: a tail lost on a live connection
            // is missing, not papered over by a resume.
            let mut living = *phase.borrow_and_update() == Phase::Live;
            loop {
                tokio::select! {
                    _ = &mut read => break if acct.caught_up(&sh) { End::CaughtUp } else { End::Closed },
                    _ = &mut life, if living => break End::Lifetime,
                    r = phase.changed() => match r.map(|_| *phase.borrow_and_update()) {
                        Ok(Phase::Live) => {}
                        Ok(Phase::Drain) if acct.caught_up(&sh) => break End::CaughtUp,
                        Ok(Phase::Drain) => living = false,
                        Ok(Phase::Stop) | Err(_) => break End::Stop,
                    },
                }
            }
        };
        // Any read in progress was cancelled: the connection is only
        // closed now, never read again.
        c.connected.fetch_sub(1, Relaxed);
        resume = Some((epoch, acct.pos()));
        match end {
            End::CaughtUp => {
                c.done.fetch_add(1, Relaxed);
                break;
            }
            End::Stop => break,
            End::Closed => {
                c.server_closes.fetch_add(1, Relaxed);
                sh.note(format!(
                    "client of load{org}: the server ended the connection at seq {}",
                    acct.pos()
                ));
            }
            End::Lifetime => {
                c.cycles.fetch_add(1, Relaxed);
                if rng.bool() {
                    let _ = conn.stream.write_all(&CLOSE_1000).await;
                    let _ = conn.stream.shutdown().await;
                }
                if rng.f64() < churn.fresh {
                    resume = None;
                }
            }
        }
        drop(conn);
        let away = between(&mut rng, churn.away);
        tokio::select! {
            _ = tokio::time::sleep(away) => {}
            // The drain cuts the absence short; the client then resumes
            // (a fresh subscription would skip what it is owed).
            _ = phase.wait_for(|p| *p != Phase::Live) => {
                if resume.is_none() {
                    resume = Some((epoch_of(&conf), acct.pos()));
                }
            }
        }
    }
    started.then(|| (org, acct.pos()))
}

fn epoch_of(conf: &Value) -> String {
    conf["stream"]["epoch"].as_str().unwrap_or("").to_owned()
}

/// One row of `samples.csv`.
#[derive(Debug, Clone, Default)]
struct Sample {
    t_s: f64,
    phase: &'static str,
    rss_kb: u64,
    fds: u64,
    threads: u64,
    cpu_s: f64,
    /// Named values from /metrics (missing names stay 0).
    metrics: [f64; METRICS.len()],
    /// Bytes the daemon's sockets have sent and not yet had acknowledged.
    daemon_sendq: u64,
    /// Bytes waiting in the driver's sockets to be read.
    driver_recvq: u64,
    time_wait: u64,
    lat_p99_ms: f64,
    lat_max_ms: f64,
    posted: u64,
    received: u64,
    replayed: u64,
    resumes_ok: u64,
    refused: u64,
    fresh: u64,
    cycles: u64,
    errors: u64,
    connected: u64,
    driver_rss_kb: u64,
}

/// The /metrics series sampled, and their CSV column names.
const METRICS: [(&str, &str); 13] = [
    ("hookfan_connected_clients", "connected_clients"),
    ("hookfan_websocket_sessions", "websocket_sessions"),
    ("hookfan_runtime_alive_tasks", "tasks"),
    ("hookfan_runtime_global_queue_depth", "runtime_queue"),
    ("hookfan_shard_queue_depth", "shard_queue"),
    ("hookfan_connection_slots", "connection_slots"),
    ("hookfan_index_keys", "index_keys"),
    ("hookfan_replay_window_events", "window_events"),
    ("hookfan_replay_window_bytes", "window_bytes"),
    ("hookfan_drops_total", "drops"),
    ("hookfan_slow_client_closes_total", "slow_closes"),
    ("hookfan_deliveries_total", "daemon_deliveries"),
    ("hookfan_events_broadcast_total", "events_broadcast"),
];

const CSV_HEAD: &str = "t_s,phase,rss_kb,fds,threads,daemon_cpu_s";
const CSV_TAIL: &str = "daemon_sendq_bytes,driver_recvq_bytes,time_wait,live_latency_p99_ms,live_latency_max_ms,events_posted,deliveries_received,events_replayed,resumes_ok,resumes_refused,fresh_subscriptions,churn_cycles,errors,driver_connected,driver_rss_kb";

impl Sample {
    fn csv(&self) -> String {
        let mut s = format!(
            "{:.1},{},{},{},{},{:.2}",
            self.t_s, self.phase, self.rss_kb, self.fds, self.threads, self.cpu_s
        );
        for v in self.metrics {
            let _ = write!(s, ",{v}");
        }
        let _ = write!(
            s,
            ",{},{},{},{:.2},{:.2},{},{},{},{},{},{},{},{},{},{}",
            self.daemon_sendq,
            self.driver_recvq,
            self.time_wait,
            self.lat_p99_ms,
            self.lat_max_ms,
            self.posted,
            self.received,
            self.replayed,
            self.resumes_ok,
            self.refused,
            self.fresh,
            self.cycles,
            self.errors,
            self.connected,
            self.driver_rss_kb
        );
        s
    }

    fn metric(&self, name: &str) -> f64 {
        METRICS
            .iter()
            .position(|(m, _)| *m == name)
            .map_or(0.0, |i| self.metrics[i])
    }
}

fn csv_header() -> String {
    let mut h = CSV_HEAD.to_owned();
    for (_, col) in METRICS {
        h.push(',');
        h.push_str(col);
    }
    h.push(',');
    h.push_str(CSV_TAIL);
    h
}

/// Whether the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with(['Z', 'X'])))
        == Some(false)
}

/// Socket backlog on the daemon's port, from /proc/net/tcp: bytes queued
/// for sending on the daemon's side and for reading on the clients', and
/// sockets in TIME_WAIT.
fn socket_backlog(port: u16) -> (u64, u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/net/tcp") else {
        return (0, 0, 0);
    };
    let port_of = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let (mut sendq, mut recvq, mut tw) = (0, 0, 0);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().take(5).collect();
        let [_, local, remote, state, queues] = f[..] else {
            continue;
        };
        let Some((tx, rx)) = queues.split_once(':') else {
            continue;
        };
        let (tx, rx) = (
            u64::from_str_radix(tx, 16).unwrap_or(0),
            u64::from_str_radix(rx, 16).unwrap_or(0),
        );
        match state {
            "01" if port_of(local) == Some(port) => sendq += tx,
            "01" if port_of(remote) == Some(port) => recvq += rx,
            "06" if port_of(local) == Some(port) || port_of(remote) == Some(port) => tw += 1,
            _ => {}
        }
    }
    (sendq, recvq, tw)
}

/// The daemon's /metrics as `series -> value`.
async fn scrape(addr: SocketAddr) -> Option<HashMap<String, f64>> {
    let fetch = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("/metrics")
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        resp.into_body().collect().await.ok().map(|b| b.to_bytes())
    };
    let body = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&body);
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_owned(), v.parse().ok()?))
            })
            .collect(),
    )
}

/// Takes one sample of the daemon and the run.
async fn sample(a: &SoakArgs, sh: &Shared, t0: Instant, phase: &'static str) -> Sample {
    let pid = a.daemon_pid;
    let c = &sh.counts;
    let metrics = scrape(a.metrics_addr.unwrap_or(a.addr)).await;
    let mut s = Sample {
        t_s: t0.elapsed().as_secs_f64(),
        phase,
        rss_kb: report::status_field(pid, "VmRSS:").unwrap_or(0),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
        threads: report::status_field(pid, "Threads:").unwrap_or(0),
        cpu_s: report::cpu_seconds(pid).unwrap_or(0.0),
        posted: c.posted.load(Relaxed),
        received: c.received.load(Relaxed),
        replayed: c.replayed.load(Relaxed),
        resumes_ok: c.resumes_ok.load(Relaxed),
        refused: c.refused_explained.load(Relaxed) + c.refused_unexplained.load(Relaxed),
        fresh: c.fresh.load(Relaxed),
        cycles: c.cycles.load(Relaxed),
        errors: c.missing.load(Relaxed) + c.duplicated.load(Relaxed) + c.unexpected.load(Relaxed),
        connected: c.connected.load(Relaxed),
        driver_rss_kb: report::status_field(std::process::id(), "VmRSS:").unwrap_or(0),
        ..Sample::default()
    };
    if let Some(m) = metrics {
        for (i, (name, _)) in METRICS.iter().enumerate() {
            s.metrics[i] = m.get(*name).copied().unwrap_or(0.0);
        }
    }
    (s.daemon_sendq, s.driver_recvq, s.time_wait) = socket_backlog(a.addr.port());
    // Latency of live deliveries since the last sample.
    let lat = report::summary_ms(&report::take_merged());
    (s.lat_p99_ms, s.lat_max_ms) = (lat[2], lat[3]);
    s
}

fn print_trends(
    rss: &Trend,
    fds: &Trend,
    threads: &Trend,
    tasks: &Trend,
    rss_max_all: f64,
    fds_max_all: f64,
) {
    println!(
        "daemon RSS KB (steady): start {:.0}, end {:.0}, min {:.0}, max {:.0}, slope {:+.1} KB/min; max over the run {rss_max_all:.0}",
        rss.start, rss.end, rss.min, rss.max, rss.per_min
    );
    println!(
        "daemon fds (steady): start {:.0}, end {:.0}, min {:.0}, max {:.0}, slope {:+.2}/min; max over the run {fds_max_all:.0}",
        fds.start, fds.end, fds.min, fds.max, fds.per_min
    );
    println!(
        "daemon threads (steady): min {:.0}, max {:.0}, slope {:+.3}/min; tokio tasks: min {:.0}, max {:.0}, slope {:+.2}/min",
        threads.min, threads.max, threads.per_min, tasks.min, tasks.max, tasks.per_min
    );
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// Start, end, min, max and slope per minute of one column over the steady
/// samples.
struct Trend {
    start: f64,
    end: f64,
    min: f64,
    max: f64,
    per_min: f64,
}

fn trend(steady: &[Sample], value: impl Fn(&Sample) -> f64) -> Trend {
    let pts: Vec<(f64, f64)> = steady.iter().map(|s| (s.t_s / 60.0, value(s))).collect();
    let ys = pts.iter().map(|p| p.1);
    Trend {
        start: pts.first().map_or(0.0, |p| p.1),
        end: pts.last().map_or(0.0, |p| p.1),
        min: ys.clone().fold(f64::INFINITY, f64::min),
        max: ys.fold(f64::NEG_INFINITY, f64::max),
        per_min: slope(&pts),
    }
}

pub async fn run(a: SoakArgs) -> bool {
    let orgs = a.orgs.max(1);
    let seed = a.seed.unwrap_or_else(|| fastrand::u64(..));
    let metrics_addr = a.metrics_addr.unwrap_or(a.addr);
    let Some(m) = scrape(metrics_addr).await else {
        eprintln!("cannot read http://{metrics_addr}/metrics");
        return false;
    };
    // Nobody else posts webhooks: the run's seqs follow the daemon's last.
    let base = m
        .get("hookfan_events_broadcast_total")
        .copied()
        .unwrap_or(0.0) as u64;
    let webhooks = (a.rate * a.duration_s).round().max(0.0) as usize;
    let sh = Arc::new(Shared::new(
        Seqs {
            base,
            orgs: orgs as u64,
        },
        webhooks,
    ));
    let csv_path = a.out.join("samples.csv");
    let mut csv = match std::fs::File::create(&csv_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{}: {e}", csv_path.display());
            return false;
        }
    };
    let _ = writeln!(csv, "{}", csv_header());
    let rss_idle = report::status_field(a.daemon_pid, "VmRSS:").unwrap_or(0);
    let fds_idle = std::fs::read_dir(format!("/proc/{}/fd", a.daemon_pid)).map_or(0, |d| d.count());
    println!(
        "soak: {} clients over {orgs} orgs, {} webhooks/s for {:.0} s ({webhooks}), lifetimes {}-{} s, away {}-{} s, fresh {:.0} %, seed {seed}; daemon idle RSS {rss_idle} KB, {fds_idle} fds",
        a.clients,
        a.rate,
        a.duration_s,
        a.life_min_s,
        a.life_max_s,
        a.away_min_s,
        a.away_max_s,
        a.fresh * 100.0
    );

    let (phase_tx, phase_rx) = watch::channel(Phase::Live);
    let gate = Arc::new(Semaphore::new(a.connect_concurrency.max(1)));
    let churn = Churn {
        life: (a.life_min_s, a.life_max_s),
        away: (a.away_min_s, a.away_max_s),
        fresh: a.fresh,
    };
    let connect_started = Instant::now();
    let clients: Vec<_> = (0..a.clients)
        .map(|i| {
            let target = client::Target {
                addr: a.addr,
                token: a.token.clone(),
                source: (!a.source_ips.is_empty()).then(|| a.source_ips[i % a.source_ips.len()]),
            };
            let rng =
                fastrand::Rng::with_seed(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tokio::spawn(run_client(
                target,
                (i % orgs) as u64,
                churn,
                rng,
                gate.clone(),
                sh.clone(),
                phase_rx.clone(),
            ))
        })
        .collect();
    let c = &sh.counts;
    while c.started.load(Relaxed) < a.clients as u64
        && connect_started.elapsed() < Duration::from_secs(300)
        && alive(a.daemon_pid)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "subscribed {}/{} in {:.2} s",
        c.started.load(Relaxed),
        a.clients,
        connect_started.elapsed().as_secs_f64()
    );

    // Webhooks, one at a time (so that webhook j has seq base + 1 + j), and
    // samples every --sample-s, until the duration has passed.
    let t0 = Instant::now();
    let warmup = a
        .warmup_s
        .unwrap_or((a.duration_s * 0.1).max(60.0).min(a.duration_s / 2.0));
    let sender = {
        let (sh, addr, rate) = (sh.clone(), a.addr, a.rate.max(0.001));
        let secret = std::fs::read_to_string(&a.secret_file).expect("secret file");
        let secret = secret.trim_end_matches(['\n', '\r']).to_owned();
        let path = a.payload.clone().unwrap_or_else(default_payload);
        let raw =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let payloads: Vec<(Bytes, String)> = (0..orgs)
            .map(|k| {
                let body = Bytes::from(raw.replace("acme", &format!("load{k}")));
                let sig = hookfan::sign(secret.as_bytes(), &body);
                (body, sig)
            })
            .collect();
        tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr).await;
            let interval = Duration::from_secs_f64(1.0 / rate);
            let start = tokio::time::Instant::now();
            for j in 0..sh.sent_at.len() {
                tokio::time::sleep_until(start + interval.mul_f64(j as f64)).await;
                if sh.daemon_died.load(Relaxed) {
                    return;
                }
                let org = j % payloads.len();
                sh.sent_at[j].store(sh.now_ns(), Relaxed);
                let (body, sig) = &payloads[org];
                let status = conn
                    .post(body, sig, &format!("ld-{j}"), "pull_request", org)
                    .await;
                if status != 200 {
                    // Later webhooks' seqs would be unknown: stop here.
                    sh.counts.post_failures.fetch_add(1, Relaxed);
                    sh.note(format!(
                        "webhook {j}: HTTP {status}; no more webhooks are sent"
                    ));
                    return;
                }
                sh.counts.posted.fetch_add(1, Relaxed);
            }
        })
    };
    let mut samples = Vec::new();
    let _ = report::take_merged();
    let every = Duration::from_secs_f64(a.sample_s.max(0.1));
    let mut next = t0;
    let mut sender = Some(sender);
    let mut drain_started: Option<Instant> = None;
    loop {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let died = !alive(a.daemon_pid);
        if died {
            sh.daemon_died.store(true, Relaxed);
        }
        let label = match (drain_started, t0.elapsed().as_secs_f64() < warmup) {
            (Some(_), _) => "drain",
            (None, true) => "warmup",
            (None, false) => "steady",
        };
        if !died {
            let s = sample(&a, &sh, t0, label).await;
            let _ = writeln!(csv, "{}", s.csv());
            samples.push(s);
        }
        if died {
            eprintln!("the daemon (pid {}) died", a.daemon_pid);
            break;
        }
        if let Some(s) = sender.as_ref()
            && s.is_finished()
        {
            sender = None;
            // In-flight deliveries land; then every client catches up.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let posted = c.posted.load(Relaxed);
            sh.final_seq.store(base + posted, Relaxed);
            sh.draining.store(true, Release);
            let _ = phase_tx.send(Phase::Drain);
            drain_started = Some(Instant::now());
            println!(
                "posted {posted} webhooks in {:.1} s; draining",
                t0.elapsed().as_secs_f64()
            );
        }
        if let Some(d) = drain_started {
            let until = d + Duration::from_secs_f64(a.drain_timeout_s);
            while c.done.load(Relaxed) < c.started.load(Relaxed) && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !alive(a.daemon_pid) {
                    break;
                }
            }
            if c.done.load(Relaxed) >= c.started.load(Relaxed) || Instant::now() >= until {
                break;
            }
        }
    }
    let drain_s = drain_started.map_or(0.0, |d| d.elapsed().as_secs_f64());
    let ran_s = t0.elapsed().as_secs_f64() - drain_s;
    let _ = phase_tx.send(Phase::Stop);
    if let Some(s) = sender {
        s.abort();
    }
    if !sh.daemon_died.load(Relaxed) {
        // Every client has gone: give the daemon a moment to see the
        // closes, so that the last sample shows what it keeps afterwards.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(10) {
            let left = scrape(metrics_addr).await.map_or(0.0, |m| {
                ["hookfan_websocket_sessions", "hookfan_connection_slots"]
                    .iter()
                    .map(|k| m.get(*k).copied().unwrap_or(0.0))
                    .sum()
            });
            if left == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let s = sample(&a, &sh, t0, "end").await;
        let _ = writeln!(csv, "{}", s.csv());
        samples.push(s);
    }

    // What was still owed at the end counts as missing.
    let final_seq = sh.final_seq.load(Relaxed).max(base);
    let mut tail_missing = 0;
    let mut never = 0;
    for h in clients {
        match h.await {
            Ok(Some((org, pos))) => tail_missing += sh.seqs.owed(org, pos, final_seq),
            _ => never += 1,
        }
    }
    c.missing.fetch_add(tail_missing, Relaxed);
    let get = |x: &AtomicU64| x.load(Relaxed);
    let (received, missing, duplicated, unexpected) = (
        get(&c.received),
        get(&c.missing),
        get(&c.duplicated),
        get(&c.unexpected),
    );
    let (refused_explained, refused_unexplained) =
        (get(&c.refused_explained), get(&c.refused_unexplained));
    let failures = sh.failures.lock().unwrap().clone();
    let refusals_at_connect: u64 = failures
        .iter()
        .filter(|(k, _)| k.starts_with("refused"))
        .map(|(_, v)| v)
        .sum();
    let died = sh.daemon_died.load(Relaxed) || !alive(a.daemon_pid);

    let steady: Vec<Sample> = samples
        .iter()
        .filter(|s| s.phase == "steady")
        .cloned()
        .collect();
    let rss = trend(&steady, |s| s.rss_kb as f64);
    let fds = trend(&steady, |s| s.fds as f64);
    let threads = trend(&steady, |s| s.threads as f64);
    let tasks = trend(&steady, |s| s.metric("hookfan_runtime_alive_tasks"));
    let max_of = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    let rss_max_all = max_of(&|s| s.rss_kb as f64);
    let fds_max_all = max_of(&|s| s.fds as f64);
    let sendq_max = max_of(&|s| s.daemon_sendq as f64);
    let shardq_max = max_of(&|s| s.metric("hookfan_shard_queue_depth"));
    let runq_max = max_of(&|s| s.metric("hookfan_runtime_global_queue_depth"));
    let recvq_max = max_of(&|s| s.driver_recvq as f64);
    let lat_p99_max = max_of(&|s| s.lat_p99_ms);
    let lat_max = max_of(&|s| s.lat_max_ms);
    let last = samples.last().cloned().unwrap_or_default();
    let (first_t, last_t) = (
        steady.first().map_or(0.0, |s| s.t_s),
        steady.last().map_or(0.0, |s| s.t_s),
    );
    println!(
        "webhooks and churn for {ran_s:.0} s ({:.0} s planned); drain {drain_s:.1} s; {} samples ({} steady, {first_t:.0}-{last_t:.0} s after a warm-up of {warmup:.0} s) in {}",
        a.duration_s,
        samples.len(),
        steady.len(),
        csv_path.display()
    );
    if steady.is_empty() {
        println!("no samples after the warm-up: no slopes");
    } else {
        print_trends(&rss, &fds, &threads, &tasks, rss_max_all, fds_max_all);
    }
    println!("daemon CPU {:.1} s in all", last.cpu_s);
    println!(
        "queues: daemon drops {:.0}, slow-client closes {:.0}; max at a sample: shard queue {shardq_max:.0}, runtime global queue {runq_max:.0}; socket backlog max: daemon send {sendq_max:.0} B, driver receive {recvq_max:.0} B; live delivery latency per {:.0} s: worst p99 {lat_p99_max:.1} ms, max {lat_max:.1} ms",
        last.metric("hookfan_drops_total"),
        last.metric("hookfan_slow_client_closes_total"),
        a.sample_s
    );
    println!(
        "churn: {} cycles, {} resumes ok, refused {refused_explained} explained (window passed) / {refused_unexplained} unexplained, {} fresh subscriptions, {} server closes; connect failures {failures:?}; {never} clients never subscribed",
        get(&c.cycles),
        get(&c.resumes_ok),
        get(&c.fresh),
        get(&c.server_closes)
    );
    println!(
        "events posted {} (post failures {}), final seq {final_seq}; deliveries expected {}, received {received} ({} by replay), missing {missing} ({tail_missing} at the end), duplicated {duplicated}, unexpected {unexpected}; {} of {} clients caught up",
        get(&c.posted),
        get(&c.post_failures),
        received + missing,
        get(&c.replayed),
        get(&c.done),
        get(&c.started)
    );
    if !died {
        println!(
            "after every client left: daemon RSS {} KB (idle before the run {rss_idle}), fds {} (idle {fds_idle}), threads {}, sessions {:.0}, connection slots {:.0}, index keys {:.0}",
            last.rss_kb,
            last.fds,
            last.threads,
            last.metric("hookfan_websocket_sessions"),
            last.metric("hookfan_connection_slots"),
            last.metric("hookfan_index_keys")
        );
    } else {
        println!("the daemon died");
    }
    if a.json {
        println!(
            "{}",
            json!({
                "mode": "soak",
                "clients": a.clients, "orgs": orgs, "rate": a.rate, "duration_s": a.duration_s,
                "seed": seed, "warmup_s": warmup,
                "events_posted": get(&c.posted), "post_failures": get(&c.post_failures),
                "expected": received + missing, "received": received, "replayed": get(&c.replayed),
                "missing": missing, "duplicated": duplicated, "unexpected": unexpected,
                "churn_cycles": get(&c.cycles), "resumes_ok": get(&c.resumes_ok),
                "refused_explained": refused_explained, "refused_unexplained": refused_unexplained,
                "fresh": get(&c.fresh), "server_closes": get(&c.server_closes),
                "connect_failures": failures,
                "rss_kb": {"start": rss.start, "end": rss.end, "min": rss.min, "max": rss.max,
                           "slope_per_min": rss.per_min, "max_all": rss_max_all},
                "fds": {"start": fds.start, "end": fds.end, "min": fds.min, "max": fds.max,
                        "slope_per_min": fds.per_min, "max_all": fds_max_all},
                "tasks": {"min": tasks.min, "max": tasks.max, "slope_per_min": tasks.per_min},
                "shard_queue_max": shardq_max, "runtime_queue_max": runq_max,
                "drops": last.metric("hookfan_drops_total"),
                "sendq_max": sendq_max, "recvq_max": recvq_max,
                "latency_p99_max_ms": lat_p99_max, "latency_max_ms": lat_max,
                "daemon_died": died,
            })
        );
    }
    !died
        && missing == 0
        && duplicated == 0
        && unexpected == 0
        && refused_unexplained == 0
        && refusals_at_connect == 0
        && get(&c.post_failures) == 0
        && get(&c.done) == a.clients as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_of_an_org() {
        // base 5, 3 orgs: org 1 has webhooks 1, 4, 7 = seqs 7, 10, 13.
        let s = Seqs { base: 5, orgs: 3 };
        assert_eq!(s.count_upto(1, 6), 0);
        assert_eq!(s.count_upto(1, 7), 1);
        assert_eq!(s.count_upto(1, 12), 2);
        assert_eq!(s.owed(1, 5, 13), 3);
        assert_eq!(s.owed(1, 7, 13), 2);
        assert_eq!(s.owed(1, 13, 13), 0);
        assert_eq!(s.owed(1, 13, 9), 0);
        assert_eq!(s.last_of(1, 12), 10);
        assert_eq!(s.last_of(1, 13), 13);
        assert_eq!(s.last_of(2, 6), 5, "none yet: base");
    }

    #[test]
    fn accounting_counts_gaps_duplicates_and_strangers() {
        let sh = Shared::new(Seqs { base: 0, orgs: 2 }, 10);
        // Org 0: webhooks 0, 2, 4, ... = seqs 1, 3, 5, ...
        let a = Account {
            org: 0,
            pos: AtomicU64::new(0),
        };
        a.take(1, 0, true, &sh);
        a.take(5, 4, true, &sh); // seq 3 skipped
        a.take(5, 4, false, &sh); // again
        a.take(3, 2, false, &sh); // late: below the position
        a.take(2, 1, true, &sh); // org 1's
        a.take(7, 5, true, &sh); // seq and webhook disagree
        a.take(99, 98, true, &sh); // never sent
        let c = &sh.counts;
        let get = |x: &AtomicU64| x.load(Relaxed);
        assert_eq!(get(&c.received), 2);
        assert_eq!(get(&c.missing), 1);
        assert_eq!(get(&c.duplicated), 2);
        assert_eq!(get(&c.unexpected), 3);
        assert_eq!(a.pos(), 5);
        assert!(!a.caught_up(&sh), "not draining");
        sh.final_seq.store(8, Relaxed);
        sh.draining.store(true, Release);
        assert!(!a.caught_up(&sh), "seq 7 is still owed");
        a.take(7, 6, true, &sh);
        assert!(a.caught_up(&sh));
    }

    #[test]
    fn slope_of_a_line() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        assert_eq!(slope(&[(0.0, 1.0)]), 0.0);
    }

    #[test]
    fn close_frame_unmasks_to_1000() {
        let code = [CLOSE_1000[6] ^ CLOSE_1000[2], CLOSE_1000[7] ^ CLOSE_1000[3]];
        assert_eq!(u16::from_be_bytes(code), 1000);
    }
}
