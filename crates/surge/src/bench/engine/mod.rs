//! `surge bench engine`: the real engine ([`Engine`], `--shards` shards) in-process on real
//! files with real `fdatasync`. Reports commands per second and each command's latency from the
//! `submit` of its batch until `wait` returned its durable, applied result (every command
//! of a batch gets its batch's latency). The closed-loop workloads (`uniform`,
//! `hot-merchant`, `hot-sku`, `hot-sku-orders`, `mixed`) run `--submitters` threads that
//! each keep at most
//! `--in-flight` batches unanswered; `open-loop` offers a fixed rate from a pacer thread and
//! measures from each batch's *scheduled* send time, so queueing behind a stall is counted,
//! not hidden (coordinated omission), and a `Busy` answer is a rejection, not retried.
//! Setup (accounts, funding, SKUs) is logged through the node before timing. Every code is
//! checked: more than 1 % unexpected codes fails the run. The log alone (group commit, the
//! same batches, the same disk) runs once per invocation as the peer.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use serde::Serialize;
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{BatchBuf, ResultCode};
use surge_wal::bench::{run_wal_bench, BenchOptions};
use surge_wal::CommitStats;

use super::stall::{StallMeter, Stalls};
use super::{commit, median};
use crate::rng::SplitMix64;
use crate::workload::{
    measured_batch, mixed_setup_batches, setup_batches, stampede_order, FestivalMix, WorkloadKind,
    WorkloadShape,
};

pub(crate) mod cpu;
mod load;
mod target;

use cpu::*;
use load::*;
pub(crate) use target::open_bench_engine;
use target::*;

/// Commands per second of run a closed-loop run may submit (and the state machine is
/// sized for) when `--capacity` is not given: above what one shard reaches on this
/// machine (~3.6 M/s at best), so runs are timed, not cut short. A run that reaches its
/// capacity stops early rather than grow a table mid-run (a multi-second stall of the apply
/// thread: the 1.7 GB transfer record buffer is reallocated and copied at 13 M transfers).
const CAPACITY_COMMANDS_PER_SECOND_DEFAULT: f64 = 4_000_000.0;

/// The same for `mixed`: above what one shard reaches (~1.1 M/s measured 2026-12-06), but
/// not 4 M/s, because the state machine touches every order's memory when it is sized
/// (0.6 – 0.9 KB per order of capacity, docs/MEMORY.md): 2 M/s is ~6 GB for a 5 s run.
const CAPACITY_MIXED_COMMANDS_PER_SECOND_DEFAULT: f64 = 2_000_000.0;

/// The same for the place-order stampede (`hot-sku-orders`), for the same reason: ~1 KB
/// per order (6 M orders: 6.0 GB of resident memory, measured 2026-12-06), so ~10 GB for a
/// 5 s run. One shard reached 2.6 M/s once one-line orders were logged compact, so a run
/// at that rate ends early, at the capacity, and is measured over the time it ran.
const CAPACITY_ORDERS_PER_SECOND_DEFAULT: f64 = 2_000_000.0;

/// The same with more than one shard, where every shard's tables are sized for the whole
/// run and most orders span shards (~0.3 M/s measured with 2 shards, 2026-12-06).
const CAPACITY_ORDERS_SPANNING_PER_SECOND_DEFAULT: f64 = 1_000_000.0;

/// Place-order commands a run may submit per second of it by default, with `shards`
/// shards (`bench engine`'s hot-sku-orders, `bench tcp`'s hot-sku place-order).
pub(crate) fn orders_capacity_per_second_default(shards: usize) -> f64 {
    if shards == 1 {
        CAPACITY_ORDERS_PER_SECOND_DEFAULT
    } else {
        CAPACITY_ORDERS_SPANNING_PER_SECOND_DEFAULT
    }
}

/// Orders per mixed-workload command, at most: every order is placed by one command and
/// then paid, cancelled or abandoned (~1.9 commands per order).
const MIXED_ORDERS_PER_COMMAND_MAX: f64 = 0.55;

/// Unexpected codes a run may have, as a fraction of its commands; past it the run fails.
const NOT_OK_FRACTION_MAX: f64 = 0.01;

/// Setup batches in flight at once (setup is not timed).
const SETUP_IN_FLIGHT_MAX: usize = 16;

/// Batches the open loop's pacer may have handed to its collector, unanswered, at most.
const OPEN_LOOP_IN_FLIGHT_MAX: usize = 65_536;

/// Wait before submitting again after a closed-loop `Busy`.
const BUSY_RETRY_INTERVAL: Duration = Duration::from_micros(100);

/// Each submitter's commands (and so ids) come from its own range of indexes this wide.
const SUBMITTER_INDEX_RANGE: u64 = 1 << 40;

/// Name under which `thread_cpu` reports the benchmark's own submitting threads.
const CLIENTS_CPU_NAME: &str = "bench-clients";

/// Highest latency the histograms track, in ns (longer ones are clamped).
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// What a workload run offers the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineWorkload {
    /// Transfers between random pairs of `--accounts` accounts.
    Uniform,
    /// Flash-sale payments: random buyer wallets pay one merchant account.
    HotMerchant,
    /// A stampede: every command reserves a unit of one SKU for a random buyer.
    HotSku,
    /// The place-order stampede (`bench tcp`'s hot-sku): every command places an order of
    /// one unit of one SKU for a random funded buyer (reserve and hold the payment).
    HotSkuOrders,
    /// A festival mix: place orders; then pay most, cancel some, leave some to expire,
    /// refund some of the paid ones. Every command counts as an op.
    Mixed,
    /// `--open-loop-workload` offered at `--open-loop-rate` commands/s.
    #[value(alias = "open-loop-256k")]
    OpenLoop,
}

impl EngineWorkload {
    /// Every workload, in report order.
    pub const ALL: [EngineWorkload; 6] = [
        EngineWorkload::Uniform,
        EngineWorkload::HotMerchant,
        EngineWorkload::HotSku,
        EngineWorkload::HotSkuOrders,
        EngineWorkload::Mixed,
        EngineWorkload::OpenLoop,
    ];

    /// The fixed workload whose setup (and, but for the stampede of orders, commands) it
    /// runs.
    fn fixed_kind(self) -> Option<WorkloadKind> {
        match self {
            EngineWorkload::Uniform => Some(WorkloadKind::Uniform),
            EngineWorkload::HotMerchant => Some(WorkloadKind::HotMerchant),
            EngineWorkload::HotSku | EngineWorkload::HotSkuOrders => Some(WorkloadKind::HotSku),
            EngineWorkload::Mixed | EngineWorkload::OpenLoop => None,
        }
    }
}

/// Options of `surge bench engine`.
#[derive(Clone, Debug, clap::Args)]
pub struct EngineBenchArgs {
    /// Directory on the disk to measure (not a tmpfs: fdatasync would be free there). A
    /// fresh subdirectory is made in it, a node directory per run, removed afterwards.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Workloads to run, repeated or comma-separated (default: all, in the order uniform,
    /// hot-merchant, hot-sku, hot-sku-orders, mixed, open-loop).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workload: Vec<EngineWorkload>,
    /// Shard counts to run each workload with, comma-separated (`1,2`). With more than
    /// one, the buyers of the order workloads (hot-sku-orders, mixed) live on every shard:
    /// most orders span shards and run as order sagas.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub shards: Vec<usize>,
    /// Seconds of measured load per run (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Runs per workload, each on a fresh node; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Closed loop: threads submitting batches.
    #[arg(long, default_value_t = 8)]
    pub submitters: usize,
    /// Closed loop: batches each submitter keeps unanswered, at most; it submits the next
    /// one only when fewer are.
    #[arg(long, default_value_t = 2)]
    pub in_flight: usize,
    /// Closed loop: commands per batch (at most 8,190).
    #[arg(long, default_value_t = BATCH_EVENTS_MAX)]
    pub batch_size: usize,
    /// Accounts (uniform) or buyer wallets (the other workloads), created and funded
    /// before timing.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Run the node with the history index on (finished transfers then leave memory
    /// for its archive), as a server would.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub history: bool,
    /// With `--history false`: also run `uniform` once with the history index on, so its
    /// cost is printed next to the figure without it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub history_peer: bool,
    /// Also run the log alone (group commit of the same batches, same submitters, same
    /// disk, `--seconds`) once as the peer; each figure is reported as a fraction of it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub wal_peer: bool,
    /// Closed loop: threads reading random accounts (`Engine::account`) while the
    /// submitters write, to show what reads cost the writes (compare with 0).
    #[arg(long, default_value_t = 0)]
    pub readers: usize,
    /// Open loop: commands per second offered.
    #[arg(long, default_value_t = 256_000)]
    pub open_loop_rate: u64,
    /// Open loop: commands per batch; a batch is sent every batch / rate seconds (256 at
    /// 256,000/s: one per millisecond).
    #[arg(long, default_value_t = 256)]
    pub open_loop_batch_size: usize,
    /// Open loop: the traffic offered.
    #[arg(long, value_enum, default_value = "hot-merchant")]
    pub open_loop_workload: WorkloadKind,
    /// Commands a run may submit, and the state machine's tables are sized for up front;
    /// a closed-loop run that reaches it stops early (default: 4 M per second of run, 2 M
    /// for mixed and hot-sku-orders, 1 M for hot-sku-orders with more than one shard; the
    /// open loop: its rate × seconds).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Per-buyer limit on the hot SKU (0 = none).
    #[arg(long, default_value_t = 1_000)]
    pub sku_limit_per_buyer: u32,
    /// Mixed: percent of the orders that are carts of two SKUs (the second may live on
    /// another shard: the order then waits for that shard's units too).
    #[arg(long, default_value_t = 0)]
    pub cart_percent: u64,
    /// Measure the machine's own stalls beside each run (`bench/stall.rs`: a thread waking
    /// every millisecond, and the hypervisor's steal); `false` runs without that thread.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub stall_meter: bool,
    /// Seed of the workload generators.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// Print one JSON object per workload and shard count instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One workload's figures at one shard count: the median of its runs.
#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    /// `engine`.
    pub bench: &'static str,
    /// `uniform`, `hot-merchant`, `hot-sku`, `hot-sku-orders`, `mixed` or
    /// `open-loop-<rate/1000>k`.
    pub workload: String,
    /// Shards the engine ran with.
    pub shards: usize,
    /// Durable, applied commands per second: the median over runs (open loop: achieved).
    pub ops_per_sec: f64,
    /// Per-command latency percentiles of the median run, in µs: submit → durable result
    /// (open loop: scheduled send → durable result).
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// The slowest command of the median run, in µs.
    pub max_us: f64,
    /// `ops_per_sec` of every run, in run order.
    pub runs_ops_per_sec: Vec<f64>,
    /// `p99_us` of every run, in run order.
    pub runs_p99_us: Vec<f64>,
    /// Commands per batch.
    pub batch_size: usize,
    /// Submitting threads (open loop: the one pacer).
    pub submitters: usize,
    /// Batches each submitter keeps unanswered, at most (open loop: unbounded, 0).
    pub in_flight: usize,
    /// Whether the node ran with the history index (and eviction into it).
    pub history: bool,
    /// Commands answered in the median run.
    pub commands: u64,
    /// Seconds from the start of the median run until its last answer.
    pub seconds: f64,
    /// Commands answered with another code than `ok` in the median run.
    pub not_ok: u64,
    /// `not_ok` by code.
    pub not_ok_codes: BTreeMap<String, u64>,
    /// Submissions answered `Busy` in the median run (closed loop: submitted again).
    pub busy: u64,
    /// Open loop: commands offered per second (the schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_per_sec: Option<f64>,
    /// Open loop: commands answered per second (`ops_per_sec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_per_sec: Option<f64>,
    /// Open loop: commands refused `Busy` and dropped, not retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
    /// Commands a run could submit (and the state was sized for).
    pub capacity: u64,
    /// Whether the median run stopped early because it submitted `capacity` commands.
    pub capacity_reached: bool,
    /// Mixed: orders placed and left unpaid, to expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_abandoned: Option<u64>,
    /// Mixed: percent of the orders that are carts of two SKUs (`--cart-percent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_percent: Option<u64>,
    /// Log syncs per second in the median run.
    pub syncs_per_sec: f64,
    /// Commands per log sync in the median run.
    pub commands_per_sync: f64,
    /// Median and 99th percentile `fdatasync` latency of the node's log during the measured
    /// window (the worst shard's; the set-up is left out).
    pub sync_p50_us: u64,
    /// See `sync_p50_us`.
    pub sync_p99_us: u64,
    /// The longest `fdatasync` of the node's log during the measured window.
    pub sync_max_us: u64,
    /// 99th percentile and longest time to apply one log record (state machine, index,
    /// eviction slice, checkpoint copy slice), the worst shard's, during the measured
    /// window (the set-up's large batches left out): a stall of the apply thread shows
    /// here.
    pub apply_p99_us: u64,
    /// See `apply_p99_us`.
    pub apply_max_us: u64,
    /// Longest time an apply thread waited for its checkpoint thread during the measured
    /// window (µs).
    pub checkpoint_wait_max_us: u64,
    /// CPU time per second of run, by thread (`surge-apply`, `surge-wal-write`, ...; the
    /// benchmark's submitting threads as `bench-clients`), in the median run: where the
    /// cores went.
    pub thread_cpu: BTreeMap<String, f64>,
    /// Time per second of run each thread was runnable but waiting for a CPU (the machine
    /// is shared: another process's load shows here).
    pub thread_cpu_wait: BTreeMap<String, f64>,
    /// The machine's 1-minute load average at the end of the median run.
    pub load_average: f64,
    /// The machine's own stalls during the median run (`bench/stall.rs`): how late a
    /// thread sleeping 1 ms at a time woke up, and the hypervisor's steal. A latency
    /// figure cannot be better than what the machine lets a thread do. `None` with
    /// `--stall-meter false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalls: Option<Stalls>,
    /// Threads reading accounts while the submitters wrote (`--readers`).
    pub readers: usize,
    /// Account reads per second in the median run.
    pub reads_per_sec: f64,
    /// 99th percentile and longest read latency in the median run, in µs.
    pub read_p99_us: f64,
    /// See `read_p99_us`.
    pub read_max_us: f64,
    /// `ops_per_sec` of the log alone (group commit, the same batches), this invocation
    /// (closed-loop workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_alone_ops_per_sec: Option<f64>,
    /// `ops_per_sec` / `wal_alone_ops_per_sec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fraction_of_wal: Option<f64>,
    /// `ops_per_sec` / `uniform`'s at the same shard count in this invocation (closed-loop
    /// workloads after `uniform`, without the history index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_uniform: Option<f64>,
    /// Accounts (or buyers) in the workload.
    pub accounts: u64,
    /// The workload seed.
    pub seed: u64,
    /// The source revision, if known.
    pub commit: String,
}

impl EngineReport {
    /// The human-readable line.
    pub fn line(&self) -> String {
        let open_loop = match (self.offered_per_sec, self.rejected) {
            (Some(offered), Some(rejected)) => {
                format!("  offered {offered:.0}/s, rejected {rejected}")
            }
            _ => String::new(),
        };
        let wal = self
            .fraction_of_wal
            .map_or_else(String::new, |f| format!("  {:.0}% of the WAL", f * 100.0));
        let uniform = self
            .ratio_to_uniform
            .map_or_else(String::new, |r| format!("  {r:.2} of uniform"));
        let stalls = self
            .stalls
            .map_or_else(String::new, |stalls| format!("  {}", stalls.line()));
        format!(
            "{:<16} shards {} history {:<5} {:>10.0} ops/s  p50 {:>8.0} µs  p99 {:>8.0} µs  \
             p999 {:>8.0} µs  not_ok {} busy {}{open_loop}{wal}{uniform}{stalls}  runs {:?}",
            self.workload,
            self.shards,
            self.history,
            self.ops_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.not_ok,
            self.busy,
            self.runs_ops_per_sec
                .iter()
                .map(|r| format!("{:.2}M", r / 1e6))
                .collect::<Vec<_>>()
        )
    }
}

/// Runs the benchmark and prints its reports.
pub fn run(args: &EngineBenchArgs) -> anyhow::Result<Vec<EngineReport>> {
    check_args(args)?;
    let directory = args
        .data_dir
        .join(format!("surge-bench-engine-{}", std::process::id()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let outcome = run_in(&directory, args);
    let removed = std::fs::remove_dir_all(&directory)
        .with_context(|| format!("removing {}", directory.display()));
    let reports = outcome?;
    removed?;
    Ok(reports)
}

fn check_args(args: &EngineBenchArgs) -> anyhow::Result<()> {
    ensure!(!args.shards.is_empty(), "--shards needs at least one count");
    if let Some(shards) = args
        .shards
        .iter()
        .find(|shards| !(1..=64).contains(*shards))
    {
        bail!("--shards {shards}: 1..=64 shards can be measured");
    }
    ensure!(
        args.seconds > 0.0 && args.seconds.is_finite(),
        "--seconds must be positive"
    );
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.submitters >= 1, "--submitters must be at least 1");
    ensure!(args.in_flight >= 1, "--in-flight must be at least 1");
    ensure!(
        (1..=BATCH_EVENTS_MAX).contains(&args.batch_size),
        "--batch-size must be 1..={BATCH_EVENTS_MAX}"
    );
    ensure!(
        (1..=BATCH_EVENTS_MAX).contains(&args.open_loop_batch_size),
        "--open-loop-batch-size must be 1..={BATCH_EVENTS_MAX}"
    );
    ensure!(
        args.open_loop_rate >= 1,
        "--open-loop-rate must be positive"
    );
    ensure!(args.accounts >= 2, "--accounts must be at least 2");
    ensure!(args.cart_percent <= 100, "--cart-percent must be 0..=100");
    Ok(())
}

fn run_in(directory: &Path, args: &EngineBenchArgs) -> anyhow::Result<Vec<EngineReport>> {
    let wal_alone = if args.wal_peer {
        Some(wal_alone_ops_per_sec(directory, args)?)
    } else {
        None
    };
    let workloads = if args.workload.is_empty() {
        EngineWorkload::ALL.to_vec()
    } else {
        args.workload.clone()
    };
    let revision = commit();
    let mut reports = Vec::new();
    // `uniform`'s figure by shard count, for the ratios of the workloads after it.
    let mut uniform_ops: BTreeMap<usize, f64> = BTreeMap::new();
    for workload in workloads {
        for &shards in &args.shards {
            let mut plans = vec![(args.history, args.runs)];
            if workload == EngineWorkload::Uniform && args.history_peer && !args.history {
                plans.push((true, 1));
            }
            for (history, runs) in plans {
                let mut report = measure(directory, args, workload, history, shards, runs)?;
                // The open loop offers a fixed rate: a fraction of the log would say nothing.
                if workload != EngineWorkload::OpenLoop {
                    report.wal_alone_ops_per_sec = wal_alone;
                    report.fraction_of_wal = wal_alone.map(|wal| report.ops_per_sec / wal);
                }
                match workload {
                    EngineWorkload::Uniform if !history => {
                        uniform_ops.insert(shards, report.ops_per_sec);
                    }
                    EngineWorkload::Uniform | EngineWorkload::OpenLoop => {}
                    _ if !history => {
                        let uniform = uniform_ops.get(&shards);
                        report.ratio_to_uniform = uniform.map(|u| report.ops_per_sec / u);
                    }
                    _ => {}
                }
                report.commit = revision.clone();
                if args.json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{}", report.line());
                }
                reports.push(report);
            }
        }
    }
    Ok(reports)
}

/// `runs` runs of one workload at one shard count, each on a fresh engine in its own
/// subdirectory of `directory`, and their report (without the log-alone peer and the
/// commit); `surge bench tcp` calls it for its in-process reference.
pub(crate) fn measure(
    directory: &Path,
    args: &EngineBenchArgs,
    workload: EngineWorkload,
    history: bool,
    shards: usize,
    runs: usize,
) -> anyhow::Result<EngineReport> {
    let results = (0..runs)
        .map(|index| run_once(directory, args, workload, history, shards, index))
        .collect::<anyhow::Result<Vec<RunResult>>>()?;
    Ok(summarize(args, workload, history, shards, &results))
}

/// Durable records per second of the log alone: `surge bench wal`'s group commit with the
/// same batch size, submitters and batches in flight, on the same disk.
fn wal_alone_ops_per_sec(directory: &Path, args: &EngineBenchArgs) -> anyhow::Result<f64> {
    let wal_directory = directory.join("wal-peer");
    std::fs::create_dir_all(&wal_directory)
        .with_context(|| format!("creating {}", wal_directory.display()))?;
    let options = BenchOptions {
        duration: Duration::from_secs_f64(args.seconds),
        batch_records: args.batch_size as u32,
        submitters: args.submitters,
        batches_in_flight: args.in_flight,
        ..BenchOptions::default()
    };
    let reports = run_wal_bench(&wal_directory, &options)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("the log-alone peer")?;
    std::fs::remove_dir_all(&wal_directory)
        .with_context(|| format!("removing {}", wal_directory.display()))?;
    reports
        .iter()
        .find(|report| report.workload == "wal_group_commit")
        .map(|report| report.ops_per_sec)
        .context("the log-alone peer printed no wal_group_commit figure")
}

/// What one run measured.
struct RunResult {
    commands: u64,
    seconds: f64,
    latency_ns: Histogram<u64>,
    not_ok: BTreeMap<String, u64>,
    busy: u64,
    rejected: u64,
    offered_per_sec: Option<f64>,
    orders_abandoned: Option<u64>,
    capacity_reached: bool,
    commit_stats: CommitStats,
    /// The worst shard's apply latency: 99th percentile and longest, and its longest wait
    /// for the checkpoint thread, µs.
    apply_latency_us: (u64, u64, u64),
    syncs: u64,
    commands_logged: u64,
    thread_cpu: BTreeMap<String, CpuTime>,
    load_average: f64,
    /// Account reads by the `--readers` threads during the run.
    reads: u64,
    read_latency_ns: Histogram<u64>,
    /// The machine's own stalls during the run (`--stall-meter`).
    stalls: Option<Stalls>,
}

impl RunResult {
    fn ops_per_sec(&self) -> f64 {
        self.commands as f64 / self.seconds
    }

    fn percentile_us(&self, percentile: f64) -> f64 {
        self.latency_ns.value_at_percentile(percentile) as f64 / 1_000.0
    }

    fn not_ok_count(&self) -> u64 {
        self.not_ok.values().sum()
    }
}

/// The sizes and ids of one workload run.
struct RunPlan {
    workload: EngineWorkload,
    /// The fixed workload (the open loop's too); `None` for the festival mix.
    kind: Option<WorkloadKind>,
    shape: WorkloadShape,
    state: surge_core::Config,
    /// Commands the run may submit.
    capacity: u64,
}

fn plan(
    args: &EngineBenchArgs,
    workload: EngineWorkload,
    shards: usize,
    run_index: usize,
) -> RunPlan {
    let open_loop = workload == EngineWorkload::OpenLoop;
    let (kind, batch_size) = if open_loop {
        (Some(args.open_loop_workload), args.open_loop_batch_size)
    } else {
        (workload.fixed_kind(), args.batch_size)
    };
    let capacity = args.capacity.unwrap_or_else(|| {
        let rate = match workload {
            EngineWorkload::OpenLoop => args.open_loop_rate as f64,
            EngineWorkload::Mixed => CAPACITY_MIXED_COMMANDS_PER_SECOND_DEFAULT,
            EngineWorkload::HotSkuOrders => orders_capacity_per_second_default(shards),
            _ => CAPACITY_COMMANDS_PER_SECOND_DEFAULT,
        };
        (rate * args.seconds).ceil() as u64
    }) as usize;
    // `batches` only stocks the hot SKU here (runs are timed): a unit for every command a
    // run may submit, so the stampede never sells out (the figure would count `sold_out`).
    let shape = WorkloadShape {
        accounts: args.accounts,
        batches: capacity.div_ceil(batch_size) + 1,
        batch_size,
        sku_limit_per_buyer: args.sku_limit_per_buyer,
        cart_percent: args.cart_percent,
        seed: args.seed.wrapping_add(run_index as u64),
    };
    let accounts = args.accounts as usize;
    let (transfers, orders) = match (workload, kind) {
        (EngineWorkload::Mixed, _) => {
            let orders = (capacity as f64 * MIXED_ORDERS_PER_COMMAND_MAX).ceil() as usize;
            (accounts + capacity, orders)
        }
        (EngineWorkload::HotSkuOrders, _) => (accounts + capacity, capacity),
        (_, Some(WorkloadKind::HotSku)) => (accounts, capacity),
        _ => (accounts + capacity, 1024),
    };
    RunPlan {
        workload,
        kind,
        shape,
        capacity: capacity as u64,
        state: surge_core::Config {
            accounts_capacity: accounts + 2,
            transfers_capacity: transfers,
            orders_capacity: orders.max(1024),
            ..surge_core::Config::default()
        },
    }
}

/// One run on a fresh node in its own directory, removed afterwards.
fn run_once(
    directory: &Path,
    args: &EngineBenchArgs,
    workload: EngineWorkload,
    history: bool,
    shards: usize,
    run_index: usize,
) -> anyhow::Result<RunResult> {
    let plan = plan(args, workload, shards, run_index);
    let run_directory = directory.join(format!("run-{run_index}"));
    let outcome = run_on_node(&run_directory, args, &plan, history, shards);
    let removed = std::fs::remove_dir_all(&run_directory)
        .with_context(|| format!("removing {}", run_directory.display()));
    let result = outcome?;
    removed?;
    Ok(result)
}

/// Opens an engine in `directory`, sets the workload up, measures it, and shuts it down.
fn run_on_node(
    directory: &Path,
    args: &EngineBenchArgs,
    plan: &RunPlan,
    history: bool,
    shards: usize,
) -> anyhow::Result<RunResult> {
    let node = open_engine(directory, history, shards, plan.state)?;
    let setup = match plan.kind {
        Some(kind) => setup_batches(kind, &plan.shape),
        None => mixed_setup_batches(&plan.shape),
    };
    set_up(&node, &setup)?;
    let result = match plan.workload {
        EngineWorkload::OpenLoop => run_open_loop(&node, args, plan)?,
        _ => run_closed_loop(&node, args, plan)?,
    };
    node.engine.shutdown();
    check_codes(plan.workload, &result)?;
    Ok(result)
}

/// Fails the run if more than 1 % of its commands answered an unexpected code: the figure
/// would then measure failures, not work. Every workload expects `ok` for every command.
fn check_codes(workload: EngineWorkload, result: &RunResult) -> anyhow::Result<()> {
    let not_ok = result.not_ok_count();
    ensure!(result.commands > 0, "{workload:?}: no command was answered");
    if not_ok as f64 > NOT_OK_FRACTION_MAX * result.commands as f64 {
        bail!(
            "{workload:?}: {not_ok} of {} commands did not answer ok ({:?}); the figure \
             would measure failures",
            result.commands,
            result.not_ok
        );
    }
    Ok(())
}
