//! `surge bench recovery`: writes a log of many transfers (accounts first) through group
//! commit with real `fdatasync`, then times [`Node::open`] over it with no checkpoint, so
//! recovery scans and replays the whole log: replay records per second and time to ready.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context};
use serde::Serialize;
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{Account, AccountId, BatchBuf, StateMachine, Transfer, TransferId};
use surge_engine::{Node, NodeConfig, NodeStorage};
use surge_wal::{
    FileStorage, GroupCommit, GroupCommitConfig, Log, LogConfig, SubmitError, SystemClock, Ticket,
};

use super::{commit, median};
use crate::rng::SplitMix64;
use crate::workload::{ACCOUNT_CODE, LEDGER, TRANSFER_CODE};

/// Batches in flight while the log is written, at most.
const BATCHES_IN_FLIGHT_MAX: usize = 64;

/// Options of `surge bench recovery`.
#[derive(Clone, Debug, clap::Args)]
pub struct RecoveryBenchArgs {
    /// Directory on the disk to use; a fresh subdirectory is made in it and removed
    /// afterwards.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Transfers in the log (in batches of 8,190).
    #[arg(long, default_value_t = 10_000_000)]
    pub transfers: u64,
    /// Accounts the transfers move money between.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: u64,
    /// Transfers the recovering state machine allocates room for up front (default: all of
    /// them, as a server configured for the load would); fewer makes its tables grow while
    /// replaying.
    #[arg(long)]
    pub transfers_capacity: Option<u64>,
    /// Seed of the transfer generator.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// Also rebuild the history index while replaying (a fresh, empty index each run, as
    /// after the index was lost; eviction off, so every transfer stays in memory).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub history: bool,
    /// Recoveries timed over the same log; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print one JSON object instead of a line.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryReport {
    /// `recovery`.
    pub bench: &'static str,
    /// `replay`.
    pub workload: &'static str,
    /// Log records (commands) recovered per second: transfers / `seconds_to_ready`.
    pub ops_per_sec: f64,
    /// `Node::open` until it returned (log scan, checksum checks, replay): the median run.
    pub seconds_to_ready: f64,
    /// `seconds_to_ready` of every run, in run order.
    pub runs_seconds_to_ready: Vec<f64>,
    /// Reading and checking the log alone (`Log::open`, no apply), measured separately.
    pub seconds_log_scan: f64,
    /// Allocating (and touching) an empty state machine of the same capacity, measured
    /// separately: part of `seconds_to_ready` that does not depend on the log.
    pub seconds_state_allocation: f64,
    /// Writing the log (with fdatasync), for reference.
    pub seconds_to_write: f64,
    /// Transfers in the log.
    pub transfers: u64,
    /// Transfers the state machine was sized for.
    pub transfers_capacity: u64,
    /// Accounts created before them.
    pub accounts: u64,
    /// Log records (batches).
    pub records: u64,
    /// Whether recovery rebuilt the history index too.
    pub history: bool,
    /// Encoded log bytes.
    pub log_bytes: u64,
    /// The source revision, if known.
    pub commit: String,
}

/// Runs the benchmark and prints its report.
pub fn run(args: &RecoveryBenchArgs) -> anyhow::Result<RecoveryReport> {
    ensure!(args.transfers >= 1, "--transfers must be at least 1");
    ensure!(args.accounts >= 2, "--accounts must be at least 2");
    ensure!(args.runs >= 1, "--runs must be at least 1");
    let directory = args
        .data_dir
        .join(format!("surge-bench-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let outcome = run_in(&directory, args);
    let removed = std::fs::remove_dir_all(&directory)
        .with_context(|| format!("removing {}", directory.display()));
    let report = outcome?;
    removed?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "recovery: {} transfers ({} records, {:.1} MiB{}) ready in {:.3} s (alone: log \
             scan {:.3} s, state allocation {:.3} s): {:.0} records/s; runs {:.3?} s",
            report.transfers,
            report.records,
            report.log_bytes as f64 / (1024.0 * 1024.0),
            if report.history {
                ", rebuilding the history index"
            } else {
                ""
            },
            report.seconds_to_ready,
            report.seconds_log_scan,
            report.seconds_state_allocation,
            report.ops_per_sec,
            report.runs_seconds_to_ready
        );
    }
    Ok(report)
}

fn run_in(directory: &Path, args: &RecoveryBenchArgs) -> anyhow::Result<RecoveryReport> {
    let log_directory = directory.join("log");
    let write_start = Instant::now();
    let (records, log_bytes) = write_log(&log_directory, args)?;
    let seconds_to_write = write_start.elapsed().as_secs_f64();

    let config = NodeConfig {
        state: surge_core::Config {
            accounts_capacity: args.accounts as usize,
            transfers_capacity: args.transfers_capacity.unwrap_or(args.transfers) as usize,
            ..surge_core::Config::default()
        },
        // No checkpoint: recovery replays the whole log.
        checkpoint_interval_records: 0,
        history_directory: args.history.then(|| directory.join("history")),
        evict_finished_transfers: false,
        ..NodeConfig::default()
    };
    let allocation_start = Instant::now();
    drop(StateMachine::new(config.state));
    let seconds_state_allocation = allocation_start.elapsed().as_secs_f64();
    let runs_seconds_to_ready = (0..args.runs)
        .map(|_| recover(directory, &config, records, args))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let seconds_to_ready = median(&runs_seconds_to_ready);

    let scan_start = Instant::now();
    let (_log, recovered) = Log::open(Box::new(FileStorage::open(&log_directory)?), log_config())
        .context("scanning the log")?;
    let seconds_log_scan = scan_start.elapsed().as_secs_f64();
    ensure!(recovered.record_indexes == (0..records));

    Ok(RecoveryReport {
        bench: "recovery",
        workload: "replay",
        ops_per_sec: args.transfers as f64 / seconds_to_ready,
        seconds_to_ready,
        runs_seconds_to_ready,
        seconds_log_scan,
        seconds_state_allocation,
        seconds_to_write,
        transfers: args.transfers,
        transfers_capacity: args.transfers_capacity.unwrap_or(args.transfers),
        accounts: args.accounts,
        records,
        log_bytes,
        history: args.history,
        commit: commit(),
    })
}

fn log_config() -> LogConfig {
    LogConfig::default()
}

/// Writes the accounts, then the transfers, in batches of 8,190; returns the records and
/// the bytes written.
fn write_log(log_directory: &Path, args: &RecoveryBenchArgs) -> anyhow::Result<(u64, u64)> {
    let (log, _) = Log::open(Box::new(FileStorage::open(log_directory)?), log_config())
        .context("creating the log")?;
    let (group_commit, durable) =
        GroupCommit::start(log, Box::new(SystemClock), GroupCommitConfig::default());
    // Nothing is applied while writing: the records are only logged.
    drop(durable);
    let mut in_flight = VecDeque::new();
    let accounts: Vec<Account> = (1..=args.accounts)
        .map(|id| Account {
            id: AccountId(u128::from(id)),
            ledger: LEDGER,
            code: ACCOUNT_CODE,
            ..Account::default()
        })
        .collect();
    for chunk in accounts.chunks(BATCH_EVENTS_MAX) {
        submit(
            &group_commit,
            &mut in_flight,
            BatchBuf::CreateAccounts(chunk.to_vec()),
        )?;
    }
    let mut rng = SplitMix64::new(args.seed);
    let mut written = 0;
    while written < args.transfers {
        let count = (args.transfers - written).min(BATCH_EVENTS_MAX as u64);
        let transfers = (written..written + count)
            .map(|index| {
                let debit = rng.below(args.accounts) + 1;
                let credit = (debit + rng.below(args.accounts - 1)) % args.accounts + 1;
                Transfer {
                    id: TransferId(u128::from(index) + 1),
                    debit_account_id: AccountId(u128::from(debit)),
                    credit_account_id: AccountId(u128::from(credit)),
                    amount: rng.below(10_000) + 1,
                    ledger: LEDGER,
                    code: TRANSFER_CODE,
                    ..Transfer::default()
                }
            })
            .collect();
        submit(
            &group_commit,
            &mut in_flight,
            BatchBuf::CreateTransfers(transfers),
        )?;
        written += count;
    }
    while let Some(ticket) = in_flight.pop_front() {
        ticket.wait().context("writing the log")?;
    }
    let stats = group_commit.stats();
    drop(group_commit.shutdown());
    Ok((stats.records, stats.bytes))
}

/// Opens a node over the log once; the seconds until it was ready. Recovery writes
/// nothing here (no checkpoint, nothing due to expire), so every run sees the same log.
fn recover(
    directory: &Path,
    config: &NodeConfig,
    records: u64,
    args: &RecoveryBenchArgs,
) -> anyhow::Result<f64> {
    let storage = NodeStorage {
        log: Box::new(FileStorage::open(&directory.join("log"))?),
        checkpoints: Box::new(FileStorage::open(&directory.join("checkpoints"))?),
    };
    if let Some(history) = &config.history_directory {
        match std::fs::remove_dir_all(history) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(error).with_context(|| format!("removing {}", history.display()))
            }
            _ => {}
        }
    }
    let start = Instant::now();
    let (node, recovery) =
        Node::open(config.clone(), storage, Arc::new(SystemClock)).context("recovering the log")?;
    let seconds_to_ready = start.elapsed().as_secs_f64();
    ensure!(
        recovery.checkpoint_record_index.is_none() && recovery.records_replayed == records,
        "replayed {} records from checkpoint {:?}, expected all {records}",
        recovery.records_replayed,
        recovery.checkpoint_record_index
    );
    let held = node.read(|state| state.memory_counts());
    ensure!(
        held.transfer_records as u64 == args.transfers && held.accounts as u64 == args.accounts,
        "after recovery the state holds {held:?}, expected {} accounts and {} transfers",
        args.accounts,
        args.transfers
    );
    node.shutdown();
    Ok(seconds_to_ready)
}

/// Queues `batch`, waiting for the oldest batch in flight while the log is busy or too
/// many are in flight.
fn submit(
    group_commit: &GroupCommit,
    in_flight: &mut VecDeque<Ticket>,
    batch: BatchBuf,
) -> anyhow::Result<()> {
    let batch = batch.as_batch();
    loop {
        if in_flight.len() >= BATCHES_IN_FLIGHT_MAX {
            let oldest = in_flight.pop_front().expect("in flight");
            oldest.wait().context("writing the log")?;
        }
        match group_commit.submit(batch.operation(), batch.body().to_vec(), batch.len() as u32) {
            Ok(ticket) => {
                in_flight.push_back(ticket);
                return Ok(());
            }
            Err(SubmitError::Busy) if !in_flight.is_empty() => {
                let oldest = in_flight.pop_front().expect("in flight");
                oldest.wait().context("writing the log")?;
            }
            Err(SubmitError::Busy) => std::thread::yield_now(),
            Err(error) => return Err(error).context("writing the log"),
        }
    }
}
