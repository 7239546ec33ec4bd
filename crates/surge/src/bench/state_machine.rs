//! `surge bench state-machine`: applies batches of 8,190 commands to the in-memory state
//! machine on one core and reports commands per second and per-batch latency. No log, no
//! I/O: this is the ceiling the engine can approach. Each workload after `uniform` also
//! reports its ratio to `uniform` in the same invocation (the machine is noisy).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{BatchBuf, Config, ResultCode, StateMachine};

use super::{commit, median, BenchReport};
use crate::workload::{
    measured_batches, mixed_batches, mixed_setup_batches, setup_batches, stampede_batches,
    WorkloadKind, WorkloadShape,
};

/// Log time between the starts of two mixed-workload batches, in ns: about what a batch of
/// 8,190 commands takes in the engine, so the abandoned orders (unpaid for 250 ms of log
/// time) expire during a run of 200 batches, as they would in a festival.
const MIXED_BATCH_LOG_TIME_NS: u64 = 2_000_000;

/// What a state-machine workload applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StateMachineWorkload {
    /// Transfers between random pairs of accounts.
    Uniform,
    /// Every transfer pays one merchant account from a random buyer wallet.
    HotMerchant,
    /// Every command reserves a unit of one SKU for a random buyer.
    HotSku,
    /// The place-order stampede: every command places an order of one unit of one SKU for
    /// a random funded buyer (reserve the unit and hold the payment, as one command).
    HotSkuOrders,
    /// The festival mix of `bench engine mixed`: place orders; then pay most, cancel some,
    /// leave some to expire, refund a few.
    Mixed,
}

impl StateMachineWorkload {
    /// What runs when no `--workload` is given (the place-order workloads are named).
    pub const DEFAULT: [StateMachineWorkload; 3] = [
        StateMachineWorkload::Uniform,
        StateMachineWorkload::HotMerchant,
        StateMachineWorkload::HotSku,
    ];

    /// Every workload, in report order.
    pub const ALL: [StateMachineWorkload; 5] = [
        StateMachineWorkload::Uniform,
        StateMachineWorkload::HotMerchant,
        StateMachineWorkload::HotSku,
        StateMachineWorkload::HotSkuOrders,
        StateMachineWorkload::Mixed,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            StateMachineWorkload::Uniform => "uniform",
            StateMachineWorkload::HotMerchant => "hot-merchant",
            StateMachineWorkload::HotSku => "hot-sku",
            StateMachineWorkload::HotSkuOrders => "hot-sku-orders",
            StateMachineWorkload::Mixed => "mixed",
        }
    }

    /// Batches that set the workload up (not timed).
    fn setup(self, shape: &WorkloadShape) -> Vec<BatchBuf> {
        match self {
            StateMachineWorkload::Uniform => setup_batches(WorkloadKind::Uniform, shape),
            StateMachineWorkload::HotMerchant => setup_batches(WorkloadKind::HotMerchant, shape),
            StateMachineWorkload::HotSku | StateMachineWorkload::HotSkuOrders => {
                setup_batches(WorkloadKind::HotSku, shape)
            }
            StateMachineWorkload::Mixed => mixed_setup_batches(shape),
        }
    }

    /// The measured batches.
    fn measured(self, shape: &WorkloadShape) -> Vec<BatchBuf> {
        match self {
            StateMachineWorkload::Uniform => measured_batches(WorkloadKind::Uniform, shape),
            StateMachineWorkload::HotMerchant => measured_batches(WorkloadKind::HotMerchant, shape),
            StateMachineWorkload::HotSku => measured_batches(WorkloadKind::HotSku, shape),
            StateMachineWorkload::HotSkuOrders => stampede_batches(shape),
            StateMachineWorkload::Mixed => mixed_batches(shape),
        }
    }

    /// Least log time between the starts of two measured batches (0: back to back).
    fn batch_log_time_ns(self) -> u64 {
        match self {
            StateMachineWorkload::Mixed => MIXED_BATCH_LOG_TIME_NS,
            _ => 0,
        }
    }
}

/// Options of one benchmark invocation.
#[derive(Clone, Debug, clap::Args)]
pub struct StateMachineBenchArgs {
    /// Workloads to run (default: uniform, hot-merchant, hot-sku; also hot-sku-orders,
    /// mixed).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workload: Vec<StateMachineWorkload>,
    /// Accounts (uniform) or buyers (hot workloads).
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Measured batches per run.
    #[arg(long, default_value_t = 200)]
    pub batches: usize,
    /// Commands per batch (at most 8,190).
    #[arg(long, default_value_t = BATCH_EVENTS_MAX)]
    pub batch_size: usize,
    /// Runs per workload; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Per-buyer limit on the hot SKU (0 = none).
    #[arg(long, default_value_t = 1_000)]
    pub sku_limit_per_buyer: u32,
    /// Seed of the workload generator.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Default for StateMachineBenchArgs {
    fn default() -> Self {
        Self {
            workload: Vec::new(),
            accounts: 1_000_000,
            batches: 200,
            batch_size: BATCH_EVENTS_MAX,
            runs: 5,
            sku_limit_per_buyer: 1_000,
            seed: 0x5EED,
            json: false,
        }
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: &StateMachineBenchArgs) -> anyhow::Result<Vec<BenchReport>> {
    anyhow::ensure!(
        (1..=BATCH_EVENTS_MAX).contains(&args.batch_size),
        "--batch-size must be 1..={BATCH_EVENTS_MAX}"
    );
    anyhow::ensure!(args.accounts >= 2, "--accounts must be at least 2");
    anyhow::ensure!(
        args.batches >= 1 && args.runs >= 1,
        "--batches and --runs must be >= 1"
    );
    let workloads = if args.workload.is_empty() {
        StateMachineWorkload::DEFAULT.to_vec()
    } else {
        args.workload.clone()
    };
    let revision = commit();
    let mut reports = Vec::new();
    let mut uniform_ops = None;
    for kind in workloads {
        let shape = WorkloadShape {
            accounts: args.accounts,
            batches: args.batches,
            batch_size: args.batch_size,
            sku_limit_per_buyer: args.sku_limit_per_buyer,
            cart_percent: 0,
            seed: args.seed,
        };
        let runs: Vec<RunResult> = (0..args.runs).map(|_| run_once(kind, &shape)).collect();
        let runs_ops: Vec<f64> = runs.iter().map(|run| run.ops_per_sec).collect();
        let median_ops = median(&runs_ops);
        let chosen = runs
            .iter()
            .find(|run| run.ops_per_sec == median_ops)
            .expect("median is a run");
        let report = BenchReport {
            bench: "state-machine",
            workload: kind.name(),
            ops_per_sec: median_ops,
            p50_us: chosen.percentile_us(50.0),
            p99_us: chosen.percentile_us(99.0),
            p999_us: chosen.percentile_us(99.9),
            runs_ops_per_sec: runs_ops,
            batch_size: shape.batch_size,
            batches: shape.batches,
            accounts: shape.accounts,
            seed: shape.seed,
            not_ok: chosen.not_ok,
            ratio_to_uniform: uniform_ops.map(|uniform| median_ops / uniform),
            commit: revision.clone(),
        };
        if kind == StateMachineWorkload::Uniform {
            uniform_ops = Some(median_ops);
        }
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{}", report.line());
        }
        reports.push(report);
    }
    Ok(reports)
}

struct RunResult {
    ops_per_sec: f64,
    batch_ns: Histogram<u64>,
    not_ok: u64,
}

impl RunResult {
    fn percentile_us(&self, percentile: f64) -> f64 {
        self.batch_ns.value_at_percentile(percentile) as f64 / 1_000.0
    }
}

fn run_once(kind: StateMachineWorkload, shape: &WorkloadShape) -> RunResult {
    let setup = kind.setup(shape);
    let measured = kind.measured(shape);
    let config = Config {
        accounts_capacity: shape.accounts as usize + 2,
        transfers_capacity: shape.accounts as usize + shape.commands(),
        orders_capacity: shape.commands(),
        ..Config::default()
    };
    let mut state_machine = StateMachine::new(config);
    let mut results = Vec::with_capacity(BATCH_EVENTS_MAX);
    for batch in &setup {
        state_machine.apply(
            state_machine.timestamp_next_min(),
            batch.as_batch(),
            &mut results,
        );
        assert!(
            results.iter().all(|code| *code == ResultCode::Ok),
            "workload setup failed"
        );
    }
    measure(
        &mut state_machine,
        &measured,
        shape.commands(),
        kind.batch_log_time_ns(),
    )
}

/// The timed part, kept out of line so `valgrind --tool=callgrind
/// --toggle-collect='*measure*'` counts exactly its instructions.
#[inline(never)]
fn measure(
    state_machine: &mut StateMachine,
    measured: &[BatchBuf],
    commands: usize,
    batch_log_time_ns: u64,
) -> RunResult {
    let mut results = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut batch_ns =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds");
    let mut not_ok = 0;
    let mut total = Duration::ZERO;
    let mut batch_start = state_machine.timestamp_next_min();
    for batch in measured {
        let timestamp = state_machine.timestamp_next_min().max(batch_start);
        batch_start = timestamp + batch_log_time_ns;
        let start = Instant::now();
        state_machine.apply(timestamp, batch.as_batch(), &mut results);
        let elapsed = start.elapsed();
        total += elapsed;
        batch_ns.saturating_record(elapsed.as_nanos().max(1) as u64);
        not_ok += results
            .iter()
            .filter(|code| **code != ResultCode::Ok)
            .count() as u64;
    }
    RunResult {
        ops_per_sec: commands as f64 / total.as_secs_f64(),
        batch_ns,
        not_ok,
    }
}
