//! `surge bench memory`: resident memory of the state machine as transfers accumulate
//! (uniform transfers over 1,000,000 accounts), read from `/proc/self/status` at each
//! milestone. With `--evict true` (the default) it runs the node's eviction cycle: every
//! `--evict-interval` transfers, finished transfers older than the previous cycle are
//! archived in a real history index (in `--data-dir`) and leave memory, and before
//! every batch the ids it names that may have left are looked up there and recalled, as
//! the node does. `--evict false` keeps everything in memory: the baseline.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{Config, ResultCode, StateMachine};
use surge_engine::{
    EVICT_TRANSFERS_PER_BATCH, EVICT_TRANSFERS_PER_COMMAND, PLAN_SLOTS_PER_BATCH,
    PLAN_SLOTS_PER_COMMAND,
};
use surge_history::{HistoryIndex, LsmHistory};

use super::commit;
use crate::workload::{measured_batches, setup_batches, WorkloadKind, WorkloadShape};

/// Options of `surge bench memory`.
#[derive(Clone, Debug, clap::Args)]
pub struct MemoryBenchArgs {
    /// Transfer counts at which to report resident memory, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000000,50000000")]
    pub milestones: Vec<u64>,
    /// Accounts the transfers move between.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Pre-size the tables for the largest milestone (as a configured node would).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub presize: bool,
    /// Evict finished transfers to the index's archive as the node does (false: keep all).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub evict: bool,
    /// Transfers between eviction cycles; a transfer stays resident one to two cycles.
    #[arg(long, default_value_t = 1_000_000)]
    pub evict_interval: u64,
    /// Directory for the archive (a fresh subdirectory, removed afterwards).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Print one JSON object per milestone instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct MemoryReport {
    bench: &'static str,
    workload: &'static str,
    transfers: u64,
    accounts: u64,
    resident_bytes: u64,
    resident_bytes_per_transfer: f64,
    /// Whether finished transfers were evicted.
    evict: bool,
    /// Transfer ids held in memory / evicted to the archive.
    transfers_resident: u64,
    transfers_evicted: u64,
    /// Bytes of the in-memory filter over evicted ids.
    evicted_filter_bytes: u64,
    /// Ids looked up in the archive before batches (filter positives) and found there.
    archive_lookups: u64,
    archive_found: u64,
    /// Bytes of the archive on disk.
    archive_disk_bytes: u64,
    /// Eviction cycles run, and the longest one (list, archive durably, evict), in seconds.
    eviction_cycles: u64,
    eviction_seconds_max: f64,
    /// The longest planning plus evicting of a cycle: what a node's apply thread spends
    /// (the archive run is written on its archiver thread meanwhile).
    eviction_apply_seconds_max: f64,
    /// The longest single slice of that work as the node spreads it over batches of
    /// 8,190 commands (see `surge_engine::PLAN_SLOTS_PER_BATCH`): the most an eviction
    /// delays one such batch.
    eviction_slice_seconds_max: f64,
    seconds: f64,
    commit: String,
}

/// Runs the benchmark and prints its report.
pub fn run(args: &MemoryBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.milestones.is_empty(),
        "--milestones needs at least one count"
    );
    anyhow::ensure!(args.accounts >= 2, "--accounts must be at least 2");
    let mut milestones = args.milestones.clone();
    milestones.sort_unstable();
    let largest = *milestones.last().expect("not empty");
    let batches_per_step = 100;
    let shape = WorkloadShape {
        accounts: args.accounts,
        batches: batches_per_step,
        batch_size: BATCH_EVENTS_MAX,
        sku_limit_per_buyer: 0,
        cart_percent: 0,
        seed: 0x5EED,
    };
    anyhow::ensure!(args.evict_interval > 0, "--evict-interval must be positive");
    // Evicting, at most two cycles of transfers (and the step that starts a third) are
    // resident at once; cycles start only between steps, so a cycle is a whole number of
    // steps. Sized for that, the record buffer never grows (a growth is a reallocation and
    // copy on the apply thread).
    let step_transfers = (batches_per_step * BATCH_EVENTS_MAX) as u64;
    let cycle_transfers = args.evict_interval.div_ceil(step_transfers) * step_transfers;
    let resident_most = if args.evict {
        largest.min(2 * cycle_transfers + step_transfers)
    } else {
        largest
    };
    let config = Config {
        accounts_capacity: args.accounts as usize + 2,
        transfers_capacity: if args.presize {
            resident_most as usize
        } else {
            1024
        },
        ..Config::default()
    };
    let archive_directory = tempfile::Builder::new()
        .prefix("surge-bench-memory-")
        .tempdir_in(&args.data_dir)
        .with_context(|| format!("creating a directory in {}", args.data_dir.display()))?;
    let mut archive = LsmHistory::open(&archive_directory.path().join("history"))?;
    let mut eviction_mark = 0u64;
    let mut evicted_at = 0u64;
    let mut archive_lookups = 0u64;
    let mut archive_found = 0u64;
    let mut eviction_cycles = 0u64;
    let mut eviction_seconds_max = 0f64;
    let mut eviction_apply_seconds_max = 0f64;
    let mut eviction_slice_seconds_max = 0f64;
    let start = Instant::now();
    let baseline = resident_bytes()?;
    let mut state_machine = StateMachine::new(config);
    let mut results = Vec::with_capacity(BATCH_EVENTS_MAX);
    for batch in setup_batches(WorkloadKind::Uniform, &shape) {
        state_machine.apply(
            state_machine.timestamp_next_min(),
            batch.as_batch(),
            &mut results,
        );
    }
    let revision = commit();
    let mut applied = 0u64;
    let mut step = 0u64;
    for milestone in milestones {
        while applied < milestone {
            // Fresh ids per step: the workload numbers its transfers from a fixed base.
            let step_shape = WorkloadShape {
                seed: shape.seed + step,
                ..shape
            };
            for mut batch in measured_batches(WorkloadKind::Uniform, &step_shape) {
                if let surge_core::BatchBuf::CreateTransfers(transfers) = &mut batch {
                    for transfer in transfers.iter_mut() {
                        transfer.id.0 += u128::from(step) << 96;
                    }
                }
                let ids = state_machine.archive_lookups(batch.as_batch());
                archive_lookups += ids.len() as u64;
                let mut found = Vec::new();
                for id in ids {
                    found.extend(archive.archived(id)?);
                }
                archive_found += found.len() as u64;
                state_machine.recall(&found);
                let timestamp = state_machine.timestamp_next_min();
                state_machine.apply(timestamp, batch.as_batch(), &mut results);
                anyhow::ensure!(
                    results.iter().all(|code| *code == ResultCode::Ok),
                    "workload transfer refused"
                );
                applied += results.len() as u64;
            }
            step += 1;
            if args.evict && applied - evicted_at >= args.evict_interval {
                let cycle_start = Instant::now();
                // Sliced as the node does it, timing every slice.
                let mut slice_max = std::time::Duration::ZERO;
                let mut apply_thread = std::time::Duration::ZERO;
                let plan_slots = PLAN_SLOTS_PER_BATCH + PLAN_SLOTS_PER_COMMAND * BATCH_EVENTS_MAX;
                let evict_transfers =
                    EVICT_TRANSFERS_PER_BATCH + EVICT_TRANSFERS_PER_COMMAND * BATCH_EVENTS_MAX;
                let mut plan = state_machine.eviction_plan_start(eviction_mark);
                loop {
                    let slice = Instant::now();
                    let planned = state_machine.eviction_plan_continue(&mut plan, plan_slots);
                    slice_max = slice_max.max(slice.elapsed());
                    apply_thread += slice.elapsed();
                    if planned {
                        break;
                    }
                }
                archive.archive(&plan.entries)?;
                loop {
                    let slice = Instant::now();
                    let done = state_machine.evict_continue(&mut plan, evict_transfers);
                    slice_max = slice_max.max(slice.elapsed());
                    apply_thread += slice.elapsed();
                    if done {
                        break;
                    }
                }
                eviction_slice_seconds_max =
                    eviction_slice_seconds_max.max(slice_max.as_secs_f64());
                eviction_apply_seconds_max =
                    eviction_apply_seconds_max.max(apply_thread.as_secs_f64());
                eviction_mark = state_machine.transfer_sequence();
                evicted_at = applied;
                eviction_cycles += 1;
                eviction_seconds_max =
                    eviction_seconds_max.max(cycle_start.elapsed().as_secs_f64());
            }
        }
        let resident = resident_bytes()?.saturating_sub(baseline);
        let counts = state_machine.memory_counts();
        let report = MemoryReport {
            bench: "memory",
            workload: "uniform",
            transfers: applied,
            accounts: args.accounts,
            resident_bytes: resident,
            resident_bytes_per_transfer: resident as f64 / applied as f64,
            evict: args.evict,
            transfers_resident: counts.transfers as u64,
            transfers_evicted: counts.transfers_evicted,
            evicted_filter_bytes: counts.evicted_filter_bytes as u64,
            archive_lookups,
            archive_found,
            archive_disk_bytes: directory_bytes(archive_directory.path())?,
            eviction_cycles,
            eviction_seconds_max,
            eviction_apply_seconds_max,
            eviction_slice_seconds_max,
            seconds: start.elapsed().as_secs_f64(),
            commit: revision.clone(),
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{:>12} transfers: resident {:>8.2} GiB ({:.0} bytes per transfer, accounts \
                 included) after {:.1} s; {} ids in memory, {} evicted (filter {:.1} MiB, \
                 archive {:.2} GiB on disk, {} lookups, {} found; {} eviction cycles, the \
                 longest {:.3} s, of which plan + evict {:.3} s in slices of at most \
                 {:.1} ms)",
                report.transfers,
                report.resident_bytes as f64 / (1u64 << 30) as f64,
                report.resident_bytes_per_transfer,
                report.seconds,
                report.transfers_resident,
                report.transfers_evicted,
                report.evicted_filter_bytes as f64 / (1u64 << 20) as f64,
                report.archive_disk_bytes as f64 / (1u64 << 30) as f64,
                report.archive_lookups,
                report.archive_found,
                report.eviction_cycles,
                report.eviction_seconds_max,
                report.eviction_apply_seconds_max,
                report.eviction_slice_seconds_max * 1e3,
            );
        }
    }
    Ok(())
}

/// Bytes of the files under `directory`.
fn directory_bytes(directory: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(directory)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            directory_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}

/// `VmRSS` of this process, in bytes.
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("malformed VmRSS line: {line}"))?
        .parse()?;
    Ok(kib * 1024)
}
