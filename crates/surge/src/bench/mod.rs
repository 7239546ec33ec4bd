//! Benchmarks as commands: each prints one JSON object (or a table row) per workload with
//! `workload`, `ops_per_sec` and latency percentiles, medians over several runs.

pub mod engine;
pub mod history;
pub mod memory;
pub mod recovery;
pub mod stall;
pub mod state_machine;
pub mod tcp;
pub mod wal;

use serde::Serialize;

/// One workload's result.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The benchmark (`state-machine`).
    pub bench: &'static str,
    /// The workload name.
    pub workload: &'static str,
    /// Commands per second: the median over runs.
    pub ops_per_sec: f64,
    /// Per-batch latency percentiles of the median run, in µs.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// `ops_per_sec` of every run, in run order.
    pub runs_ops_per_sec: Vec<f64>,
    /// Commands per batch.
    pub batch_size: usize,
    /// Measured batches per run.
    pub batches: usize,
    /// Accounts (or buyers) in the workload.
    pub accounts: u64,
    /// The workload seed.
    pub seed: u64,
    /// Commands that did not return `ok` in the median run (a workload sanity check).
    pub not_ok: u64,
    /// `ops_per_sec` divided by `uniform`'s in the same invocation, when it ran first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_uniform: Option<f64>,
    /// The source revision, if known.
    pub commit: String,
}

impl BenchReport {
    /// The human-readable line.
    pub fn line(&self) -> String {
        let ratio = self
            .ratio_to_uniform
            .map_or(String::new(), |ratio| format!("  {ratio:.2} of uniform"));
        format!(
            "{:<14} {:>12.0} ops/s   batch p50 {:>8.1} µs  p99 {:>8.1} µs  p999 {:>8.1} µs  \
             runs {:?}{ratio}",
            self.workload,
            self.ops_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.runs_ops_per_sec
                .iter()
                .map(|r| format!("{:.2}M", r / 1e6))
                .collect::<Vec<_>>()
        )
    }
}

/// The source revision, from `git` if the binary runs inside a checkout.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|revision| revision.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `value` rounded to 0.001, as reports print per-second figures.
pub fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

/// The median of `values` (the lower middle for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2]
}
