//! The log benchmark: durable records/s through [`GroupCommit`] with real `fdatasync`, and,
//! in the same run, the disk's raw sequential write + `fdatasync` bandwidth as the peer.
//! The `surge` binary prints these reports as JSON; this module only measures.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use surge_core::Operation;
use thiserror::Error;

use crate::clock::SystemClock;
use crate::constants::{SEGMENT_SIZE_BYTES_DEFAULT, SYNC_LATENCY_US_MAX};
use crate::group_commit::{GroupCommit, GroupCommitConfig, SubmitError, Ticket};
use crate::log::{Log, LogConfig, WalError};
use crate::record::record_size_bytes;
use crate::recovery::RecoveryError;
use crate::storage::FileStorage;

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchOptions {
    /// How long each workload runs.
    pub duration: Duration,
    /// Commands per batch (one record each).
    pub batch_records: u32,
    /// Threads submitting batches.
    pub submitters: usize,
    /// Batches each submitter keeps in flight.
    pub batches_in_flight: usize,
    /// Segment size of the benchmark log, in bytes.
    pub segment_size_bytes: u64,
}

impl Default for BenchOptions {
    fn default() -> BenchOptions {
        BenchOptions {
            duration: Duration::from_secs(3),
            batch_records: 8_190,
            submitters: 2,
            batches_in_flight: 4,
            segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
        }
    }
}

/// One workload's figures.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `wal_group_commit` or `disk_raw_write_fdatasync`.
    pub workload: String,
    /// Durable 128-byte records per second.
    pub ops_per_sec: f64,
    /// fdatasync calls per second.
    pub syncs_per_sec: f64,
    /// Durable bytes per second, in MiB.
    pub mib_per_sec: f64,
    /// Median sync latency, in µs.
    pub p50_us: u64,
    /// 99th percentile sync latency, in µs.
    pub p99_us: u64,
    /// 99.9th percentile sync latency, in µs.
    pub p999_us: u64,
    /// This workload's bandwidth over the raw disk's (1.0 for the raw workload itself).
    pub fraction_of_disk: f64,
    /// Records made durable.
    pub records: u64,
    /// Syncs done.
    pub syncs: u64,
    /// Wall time measured, in seconds.
    pub seconds: f64,
    /// Bytes per write chunk (one encoded batch record).
    pub chunk_size_bytes: usize,
    /// Commands per batch.
    pub batch_records: u32,
}

/// Why the benchmark could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A file operation of the benchmark itself failed.
    #[error("benchmark I/O: {0}")]
    Io(#[from] io::Error),
    /// Opening the benchmark log failed.
    #[error("benchmark log: {0}")]
    Recovery(#[from] RecoveryError),
    /// The log failed while appending.
    #[error("benchmark log: {0}")]
    Wal(#[from] WalError),
}

const RECORD_OPERATION: Operation = Operation::CreateTransfers;

/// Runs the log workload and the raw-disk peer in `directory` (on the disk to measure) and
/// returns both reports, the log's first. Removes its files afterwards.
pub fn run_wal_bench(
    directory: &Path,
    options: &BenchOptions,
) -> Result<Vec<BenchReport>, BenchError> {
    assert!(options.batch_records > 0);
    let body_size = options.batch_records as usize * RECORD_OPERATION.record_size_bytes();
    let chunk_size_bytes = record_size_bytes(body_size);
    let raw = run_raw(directory, options, chunk_size_bytes)?;
    let mut wal = run_group_commit(directory, options, chunk_size_bytes)?;
    wal.fraction_of_disk = wal.mib_per_sec / raw.mib_per_sec.max(f64::MIN_POSITIVE);
    Ok(vec![wal, raw])
}

fn run_group_commit(
    directory: &Path,
    options: &BenchOptions,
    chunk_size_bytes: usize,
) -> Result<BenchReport, BenchError> {
    let data_directory = directory.join("surge-wal-bench");
    if data_directory.exists() {
        std::fs::remove_dir_all(&data_directory)?;
    }
    let storage = FileStorage::for_data_directory(&data_directory)?;
    let config = LogConfig {
        shard: 0,
        segment_size_bytes: options.segment_size_bytes,
    };
    let (log, _) = Log::open(Box::new(storage), config)?;
    let (group_commit, output) =
        GroupCommit::start(log, Box::new(SystemClock), GroupCommitConfig::default());
    drop(output);
    let body: Vec<u8> = (0..chunk_size_bytes - 64)
        .map(|i| (i % 251) as u8)
        .collect();
    let body = &body[..options.batch_records as usize * RECORD_OPERATION.record_size_bytes()];
    let start = Instant::now();
    let deadline = start + options.duration;
    let failure = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..options.submitters.max(1))
            .map(|_| scope.spawn(|| submit_until(&group_commit, body, options, deadline)))
            .collect();
        workers
            .into_iter()
            .find_map(|worker| worker.join().ok().and_then(Result::err))
    });
    let seconds = start.elapsed().as_secs_f64();
    let stats = group_commit.stats();
    drop(group_commit);
    std::fs::remove_dir_all(&data_directory)?;
    if let Some(error) = failure {
        return Err(BenchError::Wal(error));
    }
    Ok(BenchReport {
        workload: "wal_group_commit".to_string(),
        ops_per_sec: stats.commands as f64 / seconds,
        syncs_per_sec: stats.syncs as f64 / seconds,
        mib_per_sec: stats.bytes as f64 / seconds / (1024.0 * 1024.0),
        p50_us: stats.sync_latency_us_p50,
        p99_us: stats.sync_latency_us_p99,
        p999_us: stats.sync_latency_us_p999,
        fraction_of_disk: 0.0,
        records: stats.commands,
        syncs: stats.syncs,
        seconds,
        chunk_size_bytes,
        batch_records: options.batch_records,
    })
}

/// One submitter: keeps `batches_in_flight` batches queued until the deadline.
fn submit_until(
    group_commit: &GroupCommit,
    body: &[u8],
    options: &BenchOptions,
    deadline: Instant,
) -> Result<(), WalError> {
    let mut in_flight: VecDeque<Ticket> = VecDeque::new();
    while Instant::now() < deadline {
        if in_flight.len() >= options.batches_in_flight.max(1) {
            if let Some(ticket) = in_flight.pop_front() {
                ticket.wait()?;
            }
        }
        match group_commit.submit(RECORD_OPERATION, body.to_vec(), options.batch_records) {
            Ok(ticket) => in_flight.push_back(ticket),
            Err(SubmitError::Busy) => match in_flight.pop_front() {
                Some(ticket) => drop(ticket.wait()?),
                None => std::thread::yield_now(),
            },
            Err(SubmitError::Failed(error) | SubmitError::Invalid(error)) => return Err(error),
            Err(error) => {
                return Err(WalError::Invalid {
                    reason: error.to_string(),
                })
            }
        }
    }
    for ticket in in_flight {
        ticket.wait()?;
    }
    Ok(())
}

/// The peer: plain sequential writes of the same chunk size, each followed by
/// `fdatasync`, into a fresh file.
fn run_raw(
    directory: &Path,
    options: &BenchOptions,
    chunk_size_bytes: usize,
) -> Result<BenchReport, BenchError> {
    std::fs::create_dir_all(directory)?;
    let path = directory.join("surge-wal-bench-raw.dat");
    let mut file = File::create(&path)?;
    let chunk: Vec<u8> = (0..chunk_size_bytes).map(|i| (i % 253) as u8).collect();
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, SYNC_LATENCY_US_MAX, 3)
        .expect("the latency bounds are valid constants");
    let mut chunks = 0u64;
    let start = Instant::now();
    while start.elapsed() < options.duration {
        file.write_all(&chunk)?;
        let sync_start = Instant::now();
        file.sync_data()?;
        let micros = u64::try_from(sync_start.elapsed().as_micros()).unwrap_or(u64::MAX);
        latency_us
            .record(micros.clamp(1, SYNC_LATENCY_US_MAX))
            .expect("clamped into the histogram's range");
        chunks += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    let records = chunks * u64::from(options.batch_records);
    Ok(BenchReport {
        workload: "disk_raw_write_fdatasync".to_string(),
        ops_per_sec: records as f64 / seconds,
        syncs_per_sec: chunks as f64 / seconds,
        mib_per_sec: (chunks * chunk_size_bytes as u64) as f64 / seconds / (1024.0 * 1024.0),
        p50_us: latency_us.value_at_quantile(0.5),
        p99_us: latency_us.value_at_quantile(0.99),
        p999_us: latency_us.value_at_quantile(0.999),
        fraction_of_disk: 1.0,
        records,
        syncs: chunks,
        seconds,
        chunk_size_bytes,
        batch_records: options.batch_records,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_reports_both_workloads() {
        let dir = tempfile::tempdir().unwrap();
        let options = BenchOptions {
            duration: Duration::from_millis(200),
            batch_records: 512,
            segment_size_bytes: 4 * 1024 * 1024,
            ..BenchOptions::default()
        };
        let reports = run_wal_bench(dir.path(), &options).unwrap();
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0].workload, "wal_group_commit");
        assert!(reports[0].records > 0);
        assert!(reports[0].syncs > 0);
        assert!(reports[0].fraction_of_disk > 0.0);
        assert!(reports[1].mib_per_sec > 0.0);
        assert_eq!(reports[0].records % 512, 0);
        // Everything the benchmark wrote is gone again.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
