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

use super::engine::cpu::{load_average, threads_cpu, CpuTime};
use super::engine::{EngineBenchArgs, EngineReport, EngineWorkload};
use super::{commit, median};
use crate::workload::{setup_batches, WorkloadKind, WorkloadShape};
use load::{Budget, Caller, Commands, Tally, TaskPlan};
use server::BenchServer;

/// Commands per second of run a run may send (and the engine is sized for) when
/// `--capacity` is not given: above what the engine alone reaches here (~3.5 M/s), so runs
/// are timed, not cut short, and no table grows mid-run.
const CAPACITY_COMMANDS_PER_SECOND_DEFAULT: f64 = 4_000_000.0;

/// The same for the place-order stampede, which the engine runs far slower (~0.1 M/s
/// here): orders live in standard hash maps whose pre-sized memory is first touched on the
/// hot path, so sizing them for 4 M/s made it slower (2 s trial runs over TCP: 0.06 M/s
/// sized for 8 M orders, 0.09 M/s for 1 M; the engine alone 0.07 and 0.10 M/s).
const CAPACITY_ORDERS_PER_SECOND_DEFAULT: f64 = 1_000_000.0;

/// Unexpected codes a run may have, as a fraction of its commands; past it the run fails.
const NOT_OK_FRACTION_MAX: f64 = 0.01;

/// Time a call may take, retries included, before the run fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The in-process reference for what `surge bench engine` does not measure (the
/// place-order stampede): its closed-loop shape, 8 submitters × 2 batches of 8,190 in
/// flight, as tasks making one call of 8,190 commands at a time.
const IN_PROCESS_TASKS: usize = 16;

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
    /// Shards of the engine. hot-sku runs with 1 only: its buyers live on every shard and
    /// orders spanning shards are refused (order_spans_shards).
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
    /// Run the engine with the sled history index on, as a server would.
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
    /// that reaches it stops early (default: 4 M per second of run; 1 M for place-order).
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Per-buyer limit on the hot SKU (0 = none).
    #[arg(long, default_value_t = 1_000)]
    pub sku_limit_per_buyer: u32,
    /// Seed of the workload generators.
    #[arg(long, default_value_t = 0x5EED)]
    pub seed: u64,
    /// Print one JSON object per workload instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One workload's figures: the median of its runs.
#[derive(Clone, Debug, Serialize)]
pub struct TcpReport {
    /// `tcp`.
    pub bench: &'static str,
    /// `uniform`, `hot-merchant` or `hot-sku`.
    pub workload: &'static str,
    /// The operation sent: `create_transfers`, `place_orders` or `reserve`.
    pub command: String,
    /// Shards the engine ran with.
    pub shards: usize,
    /// Durable, applied commands per second over TCP: the median over runs.
    pub ops_per_sec: f64,
    /// Per-call latency percentiles of the median run, in µs: submit → every code back.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// The slowest call of the median run, in µs.
    pub max_us: f64,
    /// `ops_per_sec` of every run, in run order.
    pub runs_ops_per_sec: Vec<f64>,
    /// The engine alone (`surge bench engine`'s closed loop, same workload and seconds,
    /// this invocation): its workload, figure and runs.
    pub engine_workload: Option<String>,
    /// See `engine_workload`.
    pub engine_ops_per_sec: Option<f64>,
    /// See `engine_workload`.
    pub engine_runs_ops_per_sec: Option<Vec<f64>>,
    /// `ops_per_sec` / `engine_ops_per_sec`.
    pub ratio_to_engine: Option<f64>,
    /// Tasks, commands per call, connections and requests in flight per connection.
    pub tasks: usize,
    /// See `tasks`.
    pub commands_per_call: usize,
    /// See `tasks`.
    pub connections: usize,
    /// See `tasks`.
    pub requests_in_flight: usize,
    /// Calls and commands answered in the median run, and its seconds until the last.
    pub calls: u64,
    /// See `calls`.
    pub commands: u64,
    /// See `calls`.
    pub seconds: f64,
    /// TCP requests the client sent in the median run, and commands per request.
    pub requests: u64,
    /// See `requests`.
    pub commands_per_request: f64,
    /// Replies `busy` in the median run (the client retried them).
    pub busy_replies: u64,
    /// Commands answered with another code than `ok` in the median run, and by code.
    pub not_ok: u64,
    /// See `not_ok`.
    pub not_ok_codes: BTreeMap<String, u64>,
    /// Whether the median run stopped early because it sent `capacity` commands.
    pub capacity_reached: bool,
    /// Commands a run could send (and the engine was sized for).
    pub capacity: u64,
    /// CPU seconds per second of run by thread kind in the median run (`surge-tokio`:
    /// server and client tasks; `surge-apply`, `surge-wal-write`, ...: the engine).
    pub thread_cpu: BTreeMap<String, f64>,
    /// Seconds per second each thread kind was runnable but waiting for a CPU.
    pub thread_cpu_wait: BTreeMap<String, f64>,
    /// The 1-minute load average at the end of the median run.
    pub load_average: f64,
    /// Whether the engine ran with the history index.
    pub history: bool,
    /// Accounts (or buyers) in the workload.
    pub accounts: u64,
    /// The workload seed.
    pub seed: u64,
    /// The source revision, if known.
    pub commit: String,
}

impl TcpReport {
    /// The human-readable line.
    pub fn line(&self) -> String {
        let ratio = self.ratio_to_engine.map_or_else(String::new, |ratio| {
            format!(
                "  engine {:.0}/s, ratio {ratio:.2}",
                self.engine_ops_per_sec.unwrap_or(0.0)
            )
        });
        format!(
            "{:<13} {:<16} shards {} {:>10.0} ops/s  p50 {:>8.0} µs  p99 {:>8.0} µs  \
             p999 {:>8.0} µs  not_ok {}{ratio}  runs {:?}",
            self.workload,
            self.command,
            self.shards,
            self.ops_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.not_ok,
            self.runs_ops_per_sec
                .iter()
                .map(|r| format!("{:.2}M", r / 1e6))
                .collect::<Vec<_>>()
        )
    }
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
    let hot_sku = args.workload.is_empty() || args.workload.contains(&TcpWorkload::HotSku);
    if hot_sku && args.shards > 1 {
        bail!(
            "hot-sku places orders (or reservations) for buyers that live on every shard; \
             orders spanning shards are refused (order_spans_shards: the order saga is not \
             built yet), so it runs only with --shards 1; pick workloads with --workload"
        );
    }
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

/// The engine alone, in-process, on the same workload: what it measured and its figure.
struct EngineAlone {
    workload: String,
    ops_per_sec: f64,
    runs_ops_per_sec: Vec<f64>,
}

/// The ceiling of the TCP run: `surge bench engine`'s closed loop for the same workload,
/// seconds, runs, shards and sizes. `bench engine` has no place-order stampede (its hot-sku
/// reserves), so that one runs through this benchmark's own tasks straight into the engine,
/// in the same shape (16 calls of 8,190 commands in flight), the same orders as over TCP.
fn engine_alone(
    directory: &Path,
    args: &TcpBenchArgs,
    workload: TcpWorkload,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<EngineAlone> {
    if (workload, args.hot_sku_command) == (TcpWorkload::HotSku, HotSkuCommand::PlaceOrder) {
        let in_process = Drive {
            transport: Transport::InProcess,
            tasks: IN_PROCESS_TASKS,
            commands_per_call: BATCH_EVENTS_MAX,
        };
        let results = (0..args.runs)
            .map(|index| runtime.block_on(run_once(directory, args, workload, index, in_process)))
            .collect::<anyhow::Result<Vec<RunResult>>>()
            .context("the in-process reference")?;
        let runs_ops_per_sec: Vec<f64> = results.iter().map(RunResult::ops_per_sec).collect();
        return Ok(EngineAlone {
            workload: "hot-sku place_orders (in-process, 16 x 8,190)".to_string(),
            ops_per_sec: median(&runs_ops_per_sec),
            runs_ops_per_sec,
        });
    }
    let report = bench_engine(directory, args, workload)?;
    Ok(EngineAlone {
        workload: report.workload,
        ops_per_sec: report.ops_per_sec,
        runs_ops_per_sec: report.runs_ops_per_sec,
    })
}

/// `surge bench engine`'s closed loop (8 threads × 2 batches of 8,190 in flight).
fn bench_engine(
    directory: &Path,
    args: &TcpBenchArgs,
    workload: TcpWorkload,
) -> anyhow::Result<EngineReport> {
    let engine_directory = directory.join("engine-alone");
    std::fs::create_dir_all(&engine_directory)
        .with_context(|| format!("creating {}", engine_directory.display()))?;
    let engine_args = EngineBenchArgs {
        data_dir: engine_directory.clone(),
        workload: vec![workload.engine_workload()],
        shards: vec![args.shards],
        seconds: args.seconds,
        runs: args.runs,
        submitters: 8,
        in_flight: 2,
        batch_size: BATCH_EVENTS_MAX,
        accounts: args.accounts,
        history: args.history,
        history_peer: false,
        wal_peer: false,
        open_loop_rate: 256_000,
        open_loop_batch_size: 256,
        open_loop_workload: WorkloadKind::HotMerchant,
        capacity: args.capacity,
        sku_limit_per_buyer: args.sku_limit_per_buyer,
        seed: args.seed,
        json: args.json,
    };
    let report = super::engine::measure(
        &engine_directory,
        &engine_args,
        workload.engine_workload(),
        args.history,
        args.shards,
        args.runs,
    )
    .context("the engine-alone reference")?;
    std::fs::remove_dir_all(&engine_directory)
        .with_context(|| format!("removing {}", engine_directory.display()))?;
    Ok(report)
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

/// What one run measured.
struct RunResult {
    command: String,
    tally: Tally,
    seconds: f64,
    requests: u64,
    busy_replies: u64,
    capacity: u64,
    capacity_reached: bool,
    thread_cpu: BTreeMap<String, CpuTime>,
    load_average: f64,
}

impl RunResult {
    fn ops_per_sec(&self) -> f64 {
        self.tally.commands as f64 / self.seconds
    }

    fn percentile_us(&self, percentile: f64) -> f64 {
        self.tally.latency_ns.value_at_percentile(percentile) as f64 / 1_000.0
    }
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
    let rate = if place_orders {
        CAPACITY_ORDERS_PER_SECOND_DEFAULT
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
    let start = Instant::now();
    let plan = Arc::new(TaskPlan {
        commands,
        shape,
        commands_per_call: how.commands_per_call,
        deadline: start + Duration::from_secs_f64(args.seconds),
        budget: Arc::new(Budget::new(capacity)),
    });
    let tally = load::run_tasks(&callers, how.tasks, plan.clone()).await?;
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

/// Fails the run if more than 1 % of its commands answered an unexpected code: the figure
/// would then measure failures, not work. Every workload expects `ok` for every command.
fn check_codes(workload: TcpWorkload, result: &RunResult) -> anyhow::Result<()> {
    let not_ok: u64 = result.tally.not_ok.values().sum();
    ensure!(
        result.tally.commands > 0,
        "{workload:?}: no command was answered"
    );
    if not_ok as f64 > NOT_OK_FRACTION_MAX * result.tally.commands as f64 {
        bail!(
            "{workload:?}: {not_ok} of {} commands did not answer ok ({:?}); the figure \
             would measure failures",
            result.tally.commands,
            result.tally.not_ok
        );
    }
    Ok(())
}

/// The report of one workload from its runs: the median run by commands per second.
fn summarize(args: &TcpBenchArgs, workload: TcpWorkload, results: &[RunResult]) -> TcpReport {
    let runs_ops_per_sec: Vec<f64> = results.iter().map(RunResult::ops_per_sec).collect();
    let middle = median(&runs_ops_per_sec);
    let chosen = &results[runs_ops_per_sec
        .iter()
        .position(|o| *o == middle)
        .expect("a run")];
    let per_second = |field: fn(&CpuTime) -> u64| -> BTreeMap<String, f64> {
        chosen
            .thread_cpu
            .iter()
            .map(|(name, time)| {
                let fraction = field(time) as f64 / 1e9 / chosen.seconds;
                (name.clone(), (fraction * 1000.0).round() / 1000.0)
            })
            .collect()
    };
    let tally = &chosen.tally;
    TcpReport {
        bench: "tcp",
        workload: workload.kind().name(),
        command: chosen.command.clone(),
        shards: args.shards,
        ops_per_sec: middle,
        p50_us: chosen.percentile_us(50.0),
        p99_us: chosen.percentile_us(99.0),
        p999_us: chosen.percentile_us(99.9),
        max_us: tally.latency_ns.max() as f64 / 1_000.0,
        runs_ops_per_sec,
        engine_workload: None,
        engine_ops_per_sec: None,
        engine_runs_ops_per_sec: None,
        ratio_to_engine: None,
        tasks: args.tasks,
        commands_per_call: args.commands_per_call,
        connections: args.connections,
        requests_in_flight: args.requests_in_flight,
        calls: tally.calls,
        commands: tally.commands,
        seconds: chosen.seconds,
        requests: chosen.requests,
        commands_per_request: tally.commands as f64 / chosen.requests.max(1) as f64,
        busy_replies: chosen.busy_replies,
        not_ok: tally.not_ok.values().sum(),
        not_ok_codes: tally.not_ok.clone(),
        capacity_reached: chosen.capacity_reached,
        capacity: chosen.capacity,
        thread_cpu: per_second(|time| time.running_ns),
        thread_cpu_wait: per_second(|time| time.waiting_ns),
        load_average: chosen.load_average,
        history: args.history,
        accounts: args.accounts,
        seed: args.seed,
        commit: String::new(),
    }
}
