//! `surge bench tcp`: the payment API over loopback. Each run opens a fresh engine on real
//! files (real `fdatasync`) in a temporary directory and serves it with the real
//! `surge_tcp::serve` on `127.0.0.1:0` in this process (one generated token, checked by
//! an `Authenticator`); `--tasks` tokio tasks then call it through `surge-client`, one call
//! of `--commands-per-call` commands at a time each, and the client packs concurrent calls
//! into requests. Reported per workload: commands per second and each call's latency from
//! its submit until every code of it is back (durable and applied). Setup (accounts,
//! funding, the SKU) goes over TCP too, untimed. Before each workload the engine alone runs
//! the same workload for the same seconds through `surge bench engine`'s closed loop
//! (in-process, no sockets), and the TCP figure is printed as a ratio to it.

mod load;
mod reference;
mod report;
mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use serde::Serialize;
use surge_client::{Client, ClientConfig};
use surge_core::constants::BATCH_EVENTS_MAX;
use tokio::time::Instant;

use super::engine::cpu::{load_average, per_second, threads_cpu, CpuTime};
use super::engine::{
    orders_capacity_per_second_default, EngineBenchArgs, EngineReport, EngineWorkload,
};
use super::stall::{StallMeter, Stalls};
use super::{commit, median};
use crate::workload::{setup_batches, WorkloadKind, WorkloadShape};
use load::{Budget, Caller, Commands, Tally, TaskPlan};
use reference::engine_alone;
pub use report::TcpReport;
use report::{check_codes, summarize, RunResult};
use server::BenchServer;

/// Commands per second of run a run may send (and the engine is sized for) when
/// `--capacity` is not given: above what the engine alone reaches here (~3.5 M/s), so runs
/// are timed, not cut short, and no table grows mid-run.
const CAPACITY_COMMANDS_PER_SECOND_DEFAULT: f64 = 4_000_000.0;

/// Unexpected codes a run may have, as a fraction of its commands; past it the run fails.
const NOT_OK_FRACTION_MAX: f64 = 0.01;

/// Time a call may take, retries included, before the run fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Name under which `thread_cpu` reports the tokio workers (server and client tasks).
const TOKIO_THREAD_NAME: &str = "surge-tokio";

/// What a workload run sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TcpWorkload {
    /// Transfers between random pairs of `--accounts` accounts.
    Uniform,
    /// Random capped buyer wallets of `--accounts` pay one merchant account.
    HotMerchant,
    /// A stampede on one SKU by random buyers of `--accounts` (`--hot-sku-command`).
    HotSku,
}

impl TcpWorkload {
    const ALL: [TcpWorkload; 3] = [
        TcpWorkload::Uniform,
        TcpWorkload::HotMerchant,
        TcpWorkload::HotSku,
    ];

    fn kind(self) -> WorkloadKind {
        match self {
            TcpWorkload::Uniform => WorkloadKind::Uniform,
            TcpWorkload::HotMerchant => WorkloadKind::HotMerchant,
            TcpWorkload::HotSku => WorkloadKind::HotSku,
        }
    }

    fn engine_workload(self) -> EngineWorkload {
        match self {
            TcpWorkload::Uniform => EngineWorkload::Uniform,
            TcpWorkload::HotMerchant => EngineWorkload::HotMerchant,
            TcpWorkload::HotSku => EngineWorkload::HotSku,
        }
    }
}

/// The command of the hot-SKU stampede.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HotSkuCommand {
    /// `place_orders`: reserve a unit and hold the payment from the buyer's wallet.
    PlaceOrder,
    /// `reserve`: a unit only (what `surge bench engine`'s hot-sku sends).
    Reserve,
}

/// Options of `surge bench tcp`.
#[derive(Clone, Debug, clap::Args)]
pub struct TcpBenchArgs {
    /// Directory on the disk to measure (not a tmpfs: fdatasync would be free there); a
    /// fresh subdirectory is made in it and removed afterwards (default: the system's
    /// temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Workloads to run, repeated or comma-separated (default: uniform, hot-merchant,
    /// hot-sku).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub workload: Vec<TcpWorkload>,
    /// Shards of the engine. With more than one, hot-sku's buyers live on every shard: most
    /// of its orders span shards and run as order sagas.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Seconds of measured load per run (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Runs per workload, each on a fresh engine and server; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Concurrent tokio tasks calling the client, each one call at a time.
    #[arg(long, default_value_t = 1024)]
    pub tasks: usize,
    /// Commands per call (at most 8,190); the client packs concurrent calls into requests.
    #[arg(long, default_value_t = 64)]
    pub commands_per_call: usize,
    /// Client connections (each a `Client` with its own driver task); tasks are spread
    /// over them.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Requests each client keeps in flight, at most (the server allows 64).
    #[arg(long, default_value_t = surge_client::constants::REQUESTS_IN_FLIGHT_MAX_DEFAULT)]
    pub requests_in_flight: usize,
    /// Accounts (uniform) or buyer wallets (the other workloads), created and funded over
    /// TCP before timing.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Run the engine with the history index on, as a server does by default.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub history: bool,
    /// The command of the hot-SKU stampede.
    #[arg(long, value_enum, default_value = "place-order")]
    pub hot_sku_command: HotSkuCommand,
    /// Also run `surge bench engine`'s closed loop for the same workload and seconds
    /// in-process before each workload, and print the ratio to it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub engine_peer: bool,
    /// Commands a run may send, and the engine's tables are sized for up front; a run
    /// that reaches it stops early (default: 4 M per second of run; 2 M for place-order,
    /// 1 M with more than one shard).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Per-buyer limit on the hot SKU (0 = none).
    #[arg(long, default_value_t = 1_000)]
    pub sku_limit_per_buyer: u32,
    /// Measure the machine's own stalls beside each run (`bench/stall.rs`: a thread waking
    /// every millisecond, and the hypervisor's steal); `false` runs without that thread.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub stall_meter: bool,
    /// Seed of the workload generators.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints its reports.
pub fn run(args: &TcpBenchArgs) -> anyhow::Result<Vec<TcpReport>> {
    check_args(args)?;
    let parent = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let directory = parent.join(format!("surge-bench-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let outcome = run_in(&directory, args);
    let removed = std::fs::remove_dir_all(&directory)
        .with_context(|| format!("removing {}", directory.display()));
    let reports = outcome?;
    removed?;
    Ok(reports)
}

fn check_args(args: &TcpBenchArgs) -> anyhow::Result<()> {
    ensure!((1..=64).contains(&args.shards), "--shards must be 1..=64");
    ensure!(
        args.seconds > 0.0 && args.seconds.is_finite(),
        "--seconds must be positive"
    );
    ensure!(args.runs >= 1, "--runs must be at least 1");
    ensure!(args.tasks >= 1, "--tasks must be at least 1");
    ensure!(args.connections >= 1, "--connections must be at least 1");
    ensure!(
        args.requests_in_flight >= 1,
        "--requests-in-flight must be at least 1"
    );
    ensure!(
        (1..=BATCH_EVENTS_MAX).contains(&args.commands_per_call),
        "--commands-per-call must be 1..={BATCH_EVENTS_MAX}"
    );
    ensure!(args.accounts >= 2, "--accounts must be at least 2");
    Ok(())
}

fn run_in(directory: &Path, args: &TcpBenchArgs) -> anyhow::Result<Vec<TcpReport>> {
    let workloads = if args.workload.is_empty() {
        TcpWorkload::ALL.to_vec()
    } else {
        args.workload.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(TOKIO_THREAD_NAME)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let revision = commit();
    let mut reports = Vec::new();
    for workload in workloads {
        let engine = if args.engine_peer {
            Some(engine_alone(directory, args, workload, &runtime)?)
        } else {
            None
        };
        let over_tcp = Drive {
            transport: Transport::Tcp,
            tasks: args.tasks,
            commands_per_call: args.commands_per_call,
        };
        let results = (0..args.runs)
            .map(|index| runtime.block_on(run_once(directory, args, workload, index, over_tcp)))
            .collect::<anyhow::Result<Vec<RunResult>>>()?;
        let mut report = summarize(args, workload, &results);
        if let Some(engine) = engine {
            report.ratio_to_engine = Some(report.ops_per_sec / engine.ops_per_sec);
            report.engine_workload = Some(engine.workload);
            report.engine_ops_per_sec = Some(engine.ops_per_sec);
            report.engine_runs_ops_per_sec = Some(engine.runs_ops_per_sec);
        }
        report.commit = revision.clone();
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{}", report.line());
        }
        reports.push(report);
    }
    Ok(reports)
}

/// How a run reaches the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// Through `surge-client` and the TCP server.
    Tcp,
    /// Straight into the engine.
    InProcess,
}

/// How a run drives the engine.
#[derive(Clone, Copy, Debug)]
struct Drive {
    transport: Transport,
    tasks: usize,
    commands_per_call: usize,
}

/// The workload's shape and the engine's sizes for one run.
fn shape_and_state(
    args: &TcpBenchArgs,
    workload: TcpWorkload,
    run_index: usize,
    call: usize,
) -> (WorkloadShape, surge_core::Config, u64) {
    let place_orders =
        (workload, args.hot_sku_command) == (TcpWorkload::HotSku, HotSkuCommand::PlaceOrder);
    // The place-order stampede as in `bench engine` (over TCP it reaches ~1.8 M/s with one
    // shard, ~0.25 M/s with two: below the engine's figures, which the defaults cover).
    let rate = if place_orders {
        orders_capacity_per_second_default(args.shards)
    } else {
        CAPACITY_COMMANDS_PER_SECOND_DEFAULT
    };
    let capacity = args.capacity.unwrap_or((rate * args.seconds).ceil() as u64);
    // `batches × batch_size` only stocks the hot SKU: a unit for every command a run may
    // send, so the stampede never sells out.
    let shape = WorkloadShape {
        accounts: args.accounts,
        batches: (capacity as usize).div_ceil(call) + 1,
        batch_size: call,
        sku_limit_per_buyer: args.sku_limit_per_buyer,
        cart_percent: 0,
        seed: args.seed.wrapping_add(run_index as u64),
    };
    let accounts = args.accounts as usize;
    let orders = match (workload, args.hot_sku_command) {
        (TcpWorkload::HotSku, _) => capacity as usize,
        _ => 1024,
    };
    let transfers = match (workload, args.hot_sku_command) {
        (TcpWorkload::HotSku, HotSkuCommand::Reserve) => accounts,
        _ => accounts + capacity as usize,
    };
    let state = surge_core::Config {
        accounts_capacity: accounts + 2,
        transfers_capacity: transfers,
        orders_capacity: orders.max(1024),
        ..surge_core::Config::default()
    };
    (shape, state, capacity)
}

/// One run: a fresh engine and server in their own directory (removed afterwards), the
/// setup over TCP, then the measured closed loop.
async fn run_once(
    directory: &Path,
    args: &TcpBenchArgs,
    workload: TcpWorkload,
    run_index: usize,
    how: Drive,
) -> anyhow::Result<RunResult> {
    let (shape, state, capacity) =
        shape_and_state(args, workload, run_index, how.commands_per_call);
    let run_directory = directory.join(format!("run-{run_index}"));
    let server = BenchServer::start(&run_directory, args.shards, args.history, state).await?;
    let outcome = drive(&server, args, workload, shape, capacity, how).await;
    let stopped = server.stop().await;
    let removed = std::fs::remove_dir_all(&run_directory)
        .with_context(|| format!("removing {}", run_directory.display()));
    let result = outcome?;
    stopped?;
    removed?;
    check_codes(workload, &result)?;
    Ok(result)
}

/// Connects the clients, sets the workload up and measures it.
async fn drive(
    server: &BenchServer,
    args: &TcpBenchArgs,
    workload: TcpWorkload,
    shape: WorkloadShape,
    capacity: u64,
    how: Drive,
) -> anyhow::Result<RunResult> {
    let callers = match how.transport {
        Transport::Tcp => connect(server, args).await?,
        Transport::InProcess => vec![Caller::Engine(server.engine.clone())],
    };
    load::set_up(&callers[0], setup_batches(workload.kind(), &shape)).await?;
    let commands = Commands::of(workload.kind(), args.hot_sku_command);
    let metric = |name: &str| server.metrics.value(name).unwrap_or(0);
    let (requests_before, busy_before) = (
        metric("surge_tcp_requests_total"),
        metric("surge_tcp_replies_busy_total"),
    );
    let cpu_before = threads_cpu();
    let meter = StallMeter::start_if(args.stall_meter)?;
    let start = Instant::now();
    let plan = Arc::new(TaskPlan {
        commands,
        shape,
        commands_per_call: how.commands_per_call,
        deadline: start + Duration::from_secs_f64(args.seconds),
        budget: Arc::new(Budget::new(capacity)),
    });
    let tally = load::run_tasks(&callers, how.tasks, plan.clone()).await?;
    // Joins the meter's thread: blocks this task for a tick (1 ms) at most.
    let stalls = meter.map(StallMeter::stop);
    drop(callers);
    let last = tally.last_answer.unwrap_or(start);
    let thread_cpu = cpu_since(&cpu_before);
    Ok(RunResult {
        command: command_name(commands),
        seconds: (last - start).as_secs_f64().max(f64::MIN_POSITIVE),
        tally,
        requests: metric("surge_tcp_requests_total") - requests_before,
        busy_replies: metric("surge_tcp_replies_busy_total") - busy_before,
        capacity,
        capacity_reached: plan.budget.reached.load(Ordering::Relaxed),
        thread_cpu,
        load_average: load_average(),
        stalls,
    })
}

/// `--connections` clients of the server, each with its own connection and driver task.
async fn connect(server: &BenchServer, args: &TcpBenchArgs) -> anyhow::Result<Vec<Caller>> {
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        let config = ClientConfig {
            call_timeout: CALL_TIMEOUT,
            requests_in_flight_max: args.requests_in_flight,
            ..ClientConfig::new(server.token.clone())
        };
        let client = Client::connect(&server.address.to_string(), config)
            .await
            .context("connecting a client")?;
        clients.push(Caller::Tcp(client));
    }
    Ok(clients)
}

fn command_name(commands: Commands) -> String {
    match commands {
        Commands::PlaceOrders => "place_orders",
        Commands::Fixed(WorkloadKind::HotSku) => "reserve",
        Commands::Fixed(_) => "create_transfers",
    }
    .to_string()
}

/// Every thread kind's CPU time since `before`.
fn cpu_since(before: &BTreeMap<String, CpuTime>) -> BTreeMap<String, CpuTime> {
    let mut spent: BTreeMap<String, CpuTime> = threads_cpu()
        .into_iter()
        .map(|(name, time)| {
            let earlier = before.get(&name).copied().unwrap_or_default();
            (name, time.since(earlier))
        })
        .collect();
    spent.retain(|_, time| time.running_ns > 0);
    spent
}
