//! Measurements: latency histograms recorded per thread and merged at the
//! end, and the daemon's memory and CPU read from /proc.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

/// Every thread's histogram, for merging.
static ALL: Mutex<Vec<Arc<Mutex<Histogram<u64>>>>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: Arc<Mutex<Histogram<u64>>> = {
        let h = Arc::new(Mutex::new(new_histogram()));
        ALL.lock().unwrap().push(h.clone());
        h
    };
}

/// Microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Records a latency in microseconds into this thread's histogram (only
/// this thread locks it until the merge).
pub fn record_us(us: u64) {
    LOCAL.with(|h| {
        let _ = h.lock().unwrap().record(us.max(1));
    });
}

/// Merges and empties every thread's histogram.
pub fn take_merged() -> Histogram<u64> {
    let mut out = new_histogram();
    for h in ALL.lock().unwrap().iter() {
        let mut h = h.lock().unwrap();
        let _ = out.add(&*h);
        h.reset();
    }
    out
}

/// `p50 / p90 / p99 / max` in milliseconds.
pub fn summary_ms(h: &Histogram<u64>) -> [f64; 4] {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return [0.0; 4];
    }
    [
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    ]
}

/// Resident memory of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// The most the process has held resident since it started (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:").map(|kb| kb * 1024)
}

/// A number from /proc/PID/status (`Threads:`, `VmRSS:` in KB).
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used, in seconds. Linux reports
/// it in clock ticks of 1/100 s on every platform Rust targets here.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields start after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
    }
}
