//! `surge bench memory`: resident memory of the state machine as transfers accumulate
//! (uniform transfers over 1,000,000 accounts), read from `/proc/self/status` at each
//! milestone. Finished transfers still live in memory today; this is the baseline that
//! moving them behind the history index must bring down (docs/MEMORY.md).

use std::time::Instant;

use serde::Serialize;
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{Config, ResultCode, StateMachine};

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
        seed: 0x5EED,
    };
    let config = Config {
        accounts_capacity: args.accounts as usize + 2,
        transfers_capacity: if args.presize { largest as usize } else { 1024 },
        ..Config::default()
    };
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
                let timestamp = state_machine.timestamp_next_min();
                state_machine.apply(timestamp, batch.as_batch(), &mut results);
                anyhow::ensure!(
                    results.iter().all(|code| *code == ResultCode::Ok),
                    "workload transfer refused"
                );
                applied += results.len() as u64;
            }
            step += 1;
        }
        let resident = resident_bytes()?.saturating_sub(baseline);
        let report = MemoryReport {
            bench: "memory",
            workload: "uniform",
            transfers: applied,
            accounts: args.accounts,
            resident_bytes: resident,
            resident_bytes_per_transfer: resident as f64 / applied as f64,
            seconds: start.elapsed().as_secs_f64(),
            commit: revision.clone(),
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "{:>12} transfers: resident {:>8.2} GiB ({:.0} bytes per transfer, accounts \
                 included) after {:.1} s",
                report.transfers,
                report.resident_bytes as f64 / (1u64 << 30) as f64,
                report.resident_bytes_per_transfer,
                report.seconds
            );
        }
    }
    Ok(())
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
