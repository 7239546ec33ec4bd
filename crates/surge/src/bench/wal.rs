//! `surge bench wal`: durable appends through group commit with real `fdatasync`, and the
//! same disk's raw sequential write + `fdatasync` bandwidth in the same run, so the log's
//! figure is read as a fraction of what the disk can do.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use surge_wal::bench::{run_wal_bench, BenchOptions};

use super::{commit, median};

/// Options of `surge bench wal`.
#[derive(Clone, Debug, clap::Args)]
pub struct WalBenchArgs {
    /// Directory on the disk to measure; a fresh subdirectory is made in it and removed
    /// afterwards. It must not be a tmpfs (fdatasync would be free there).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Seconds per workload per run.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Runs; the median run is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Threads submitting batches.
    #[arg(long, default_value_t = 2)]
    pub submitters: usize,
    /// Commands (128-byte records) per batch.
    #[arg(long, default_value_t = 8_190)]
    pub batch_records: u32,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One workload's median result.
#[derive(Clone, Debug, Serialize)]
struct WalReport {
    bench: &'static str,
    workload: String,
    ops_per_sec: f64,
    syncs_per_sec: f64,
    mib_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    fraction_of_disk: f64,
    runs_ops_per_sec: Vec<f64>,
    batch_records: u32,
    submitters: usize,
    commit: String,
}

/// Runs the benchmark and prints its report.
pub fn run(args: &WalBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        (1..=surge_core::constants::BATCH_EVENTS_MAX as u32).contains(&args.batch_records),
        "--batch-records must be 1..=8190"
    );
    anyhow::ensure!(args.submitters >= 1, "--submitters must be at least 1");
    let directory = args
        .data_dir
        .join(format!("surge-bench-wal-{}", std::process::id()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let options = BenchOptions {
        duration: Duration::from_secs_f64(args.seconds),
        batch_records: args.batch_records,
        submitters: args.submitters,
        ..BenchOptions::default()
    };
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let reports = run_wal_bench(&directory, &options);
        let reports = match reports {
            Ok(reports) => reports,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&directory);
                return Err(anyhow::anyhow!("{error}")).context("wal benchmark");
            }
        };
        runs.push(reports);
    }
    std::fs::remove_dir_all(&directory)
        .with_context(|| format!("removing {}", directory.display()))?;
    let revision = commit();
    let workloads = runs[0].len();
    for workload in 0..workloads {
        let per_run: Vec<f64> = runs.iter().map(|run| run[workload].ops_per_sec).collect();
        let middle = median(&per_run);
        let chosen = runs
            .iter()
            .map(|run| &run[workload])
            .find(|report| report.ops_per_sec == middle)
            .expect("the median is a run");
        let report = WalReport {
            bench: "wal",
            workload: chosen.workload.clone(),
            ops_per_sec: chosen.ops_per_sec,
            syncs_per_sec: chosen.syncs_per_sec,
            mib_per_sec: chosen.mib_per_sec,
            p50_us: chosen.p50_us,
            p99_us: chosen.p99_us,
            p999_us: chosen.p999_us,
            fraction_of_disk: chosen.fraction_of_disk,
            runs_ops_per_sec: per_run,
            batch_records: args.batch_records,
            submitters: args.submitters,
            commit: revision.clone(),
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{:<26} {:>10.0} records/s  {:>7.1} MiB/s  {:>6.1} syncs/s  sync p50 {} µs \
                 p99 {} µs p999 {} µs  {:.0}% of disk",
                report.workload,
                report.ops_per_sec,
                report.mib_per_sec,
                report.syncs_per_sec,
                report.p50_us,
                report.p99_us,
                report.p999_us,
                report.fraction_of_disk * 100.0
            );
        }
    }
    Ok(())
}
