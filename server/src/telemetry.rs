//! Logging through `tracing` (filtered by `RUST_LOG`, default `info`) and
//! the counters `/metrics` serves in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Adds its lifetime, in microseconds, to a counter when dropped.
pub struct Timing<'a>(&'a AtomicU64, std::time::Instant);

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        Metrics::add(self.0, self.1.elapsed().as_micros() as u64);
    }
}

/// Monotonic counters of this process.
#[derive(Default)]
pub struct Metrics {
    pub leases_granted: AtomicU64,
    pub answers_recorded: AtomicU64,
    pub items_closed: AtomicU64,
    pub queue_rebuilds: AtomicU64,
    /// Lease calls whose rows were committed, and the transactions that
    /// committed them: their ratio is the group commit's batch size.
    pub lease_calls_written: AtomicU64,
    pub lease_writes: AtomicU64,
    /// The same for answers; `answer_batches_split` counts batches that
    /// met a refusal and were written again one answer at a time.
    pub answer_calls_written: AtomicU64,
    pub answer_writes: AtomicU64,
    pub answer_batches_split: AtomicU64,
    /// Microseconds spent writing lease and answer batches: against wall
    /// time, how busy each writer is.
    pub lease_batch_us: AtomicU64,
    pub answer_batch_us: AtomicU64,
    /// Answers whose lease and item this process still held from the
    /// lease call (no read needed).
    pub held_lease_hits: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds the microseconds until the returned guard is dropped.
    pub fn time(counter: &AtomicU64) -> Timing<'_> {
        Timing(counter, std::time::Instant::now())
    }

    /// The Prometheus text exposition of the counters and the process's
    /// memory (current and peak resident set, from /proc on Linux).
    pub fn render(&self, queue_backend: &str) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: &dyn std::fmt::Display| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "sahel_leases_granted_total",
            "Task leases handed out.",
            &self.leases_granted.load(Ordering::Relaxed),
        );
        counter(
            "sahel_answers_recorded_total",
            "Answers committed.",
            &self.answers_recorded.load(Ordering::Relaxed),
        );
        counter(
            "sahel_items_closed_total",
            "Items resolved or closed without consensus.",
            &self.items_closed.load(Ordering::Relaxed),
        );
        counter(
            "sahel_lease_calls_written_total",
            "Lease calls whose leases were committed.",
            &self.lease_calls_written.load(Ordering::Relaxed),
        );
        counter(
            "sahel_lease_writes_total",
            "Transactions that committed lease calls (one per batch of concurrent calls).",
            &self.lease_writes.load(Ordering::Relaxed),
        );
        counter(
            "sahel_answer_calls_written_total",
            "Answers committed by the answer writer.",
            &self.answer_calls_written.load(Ordering::Relaxed),
        );
        counter(
            "sahel_answer_writes_total",
            "Transactions that committed answers (one per batch of concurrent answers on SQLite).",
            &self.answer_writes.load(Ordering::Relaxed),
        );
        counter(
            "sahel_answer_batches_split_total",
            "Answer batches that met a refusal and were written one answer at a time.",
            &self.answer_batches_split.load(Ordering::Relaxed),
        );
        let seconds = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1e6;
        counter(
            "sahel_lease_batch_seconds_total",
            "Time spent writing lease batches (one at a time per process).",
            &seconds(&self.lease_batch_us),
        );
        counter(
            "sahel_answer_batch_seconds_total",
            "Time spent writing answer batches (one at a time per process).",
            &seconds(&self.answer_batch_us),
        );
        counter(
            "sahel_held_lease_hits_total",
            "Answers on leases this process handed out, answered without reading the lease.",
            &self.held_lease_hits.load(Ordering::Relaxed),
        );
        counter(
            "sahel_queue_rebuilds_total",
            "Projects loaded into the queue from the database.",
            &self.queue_rebuilds.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time used.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {:.2}",
            cpu_ms_of("self") as f64 / 1000.0
        );
        let (rss, peak) = process_memory();
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}"
        );
        let _ = writeln!(
            out,
            "# HELP process_peak_resident_memory_bytes Peak resident memory.\n# TYPE process_peak_resident_memory_bytes gauge\nprocess_peak_resident_memory_bytes {peak}"
        );
        let _ = writeln!(
            out,
            "# HELP sahel_queue_backend The task queue backend in use.\n# TYPE sahel_queue_backend gauge\nsahel_queue_backend{{backend=\"{queue_backend}\"}} 1"
        );
        out
    }
}

/// (resident, peak resident) bytes of a process, from `/proc/<pid>/status`;
/// zeros where that file does not exist.
pub fn memory_of(pid: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn process_memory() -> (u64, u64) {
    memory_of("self")
}

/// CPU time (user + system) a process has used, in milliseconds, from
/// `/proc/<pid>/stat`; zero where that file does not exist. Linux reports
/// it in ticks of 1/100 s whatever the kernel's own tick rate.
pub fn cpu_ms_of(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name, in parentheses, may hold spaces: count from after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10
}
