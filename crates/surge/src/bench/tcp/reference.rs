//! The ceiling each `surge bench tcp` figure is compared with: the engine alone,
//! in-process, on the same workload, seconds, runs, shards and sizes.

use super::*;

/// The in-process reference for the place-order stampede: `surge bench engine`'s
/// closed-loop shape, 8 submitters × 2 batches of 8,190 in flight, as tasks making one call
/// of 8,190 commands at a time.
const IN_PROCESS_TASKS: usize = 16;

/// The engine alone, in-process, on the same workload: what it measured and its figure.
pub(super) struct EngineAlone {
    pub(super) workload: String,
    pub(super) ops_per_sec: f64,
    pub(super) runs_ops_per_sec: Vec<f64>,
}

/// The ceiling of the TCP run: `surge bench engine`'s closed loop for the same workload,
/// seconds, runs, shards and sizes. The place-order stampede runs through this benchmark's
/// own tasks straight into the engine instead, in the same shape (16 calls of 8,190
/// commands in flight), so the orders are the very ones sent over TCP (`bench engine
/// hot-sku-orders` runs the same stampede through its own loop).
pub(super) fn engine_alone(
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
        readers: 0,
        open_loop_rate: 256_000,
        open_loop_batch_size: 256,
        open_loop_workload: WorkloadKind::HotMerchant,
        capacity: args.capacity,
        sku_limit_per_buyer: args.sku_limit_per_buyer,
        cart_percent: 0,
        stall_meter: args.stall_meter,
        seed: args.seed,
        json: args.json,
    };
    let report = crate::bench::engine::measure(
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
