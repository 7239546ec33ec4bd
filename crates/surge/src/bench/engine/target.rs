//! The engine under test: a fresh engine per run, its submit-and-wait interface for the
//! load loops, and the untimed setup.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;

use anyhow::{bail, Context};
use surge_core::{BatchBuf, ResultCode};
use surge_engine::{Engine, EngineConfig, EngineError, NodeConfig};
use surge_wal::CommitStats;

use super::{BUSY_RETRY_INTERVAL, SETUP_IN_FLIGHT_MAX};

/// A fresh engine in `directory` as the load loops' target.
pub(super) fn open_engine(
    directory: &Path,
    history: bool,
    shards: usize,
    state: surge_core::Config,
) -> anyhow::Result<Target> {
    let engine = open_bench_engine(directory, history, shards, state)?;
    Ok(Target { engine })
}

/// A fresh engine in `directory` for a benchmark run (`bench engine`, `bench tcp`). Each
/// shard is sized for the whole run: ids are spread by hash, and a hot workload puts most
/// of its traffic on one shard.
pub(crate) fn open_bench_engine(
    directory: &Path,
    history: bool,
    shards: usize,
    state: surge_core::Config,
) -> anyhow::Result<Engine> {
    let config = EngineConfig {
        shards,
        node: NodeConfig {
            state,
            ..NodeConfig::default()
        },
        history,
        ..EngineConfig::new(directory)
    };
    let (engine, _) = Engine::open(config)
        .with_context(|| format!("opening an engine in {}", directory.display()))?;
    Ok(engine)
}

/// The engine under test, with the submit-and-wait interface the load loops use.
pub(super) struct Target {
    pub(super) engine: Engine,
}

/// A submitted batch: its codes arrive from the engine's completion.
pub(super) struct Pending(mpsc::Receiver<Result<Vec<ResultCode>, EngineError>>);

impl Pending {
    pub(super) fn wait(self) -> Result<Vec<ResultCode>, EngineError> {
        self.0.recv().unwrap_or_else(|_| {
            Err(EngineError::Stopped(
                "the completion was dropped".to_string(),
            ))
        })
    }
}

impl Target {
    pub(super) fn submit(&self, batch: surge_core::Batch<'_>) -> Result<Pending, EngineError> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.engine.submit(
            batch,
            Box::new(move |result| {
                let _ = sender.send(result);
            }),
        )?;
        Ok(Pending(receiver))
    }

    /// Latency figures from now on only: the measured window without the set-up (whose
    /// batches of 8,190 account creations took 18–28 ms each to apply, for example).
    pub(super) fn reset_latencies(&self) {
        self.engine.reset_latencies();
    }

    /// Every shard's group-commit counters added up (latencies: the worst shard's).
    pub(super) fn commit_stats(&self) -> CommitStats {
        let mut total = CommitStats::default();
        for shard in self.engine.stats().shards {
            let stats = shard.commit;
            total.syncs += stats.syncs;
            total.bytes += stats.bytes;
            total.records += stats.records;
            total.commands += stats.commands;
            total.sync_latency_us_p50 = total.sync_latency_us_p50.max(stats.sync_latency_us_p50);
            total.sync_latency_us_p99 = total.sync_latency_us_p99.max(stats.sync_latency_us_p99);
            total.sync_latency_us_p999 = total.sync_latency_us_p999.max(stats.sync_latency_us_p999);
            total.sync_latency_us_max = total.sync_latency_us_max.max(stats.sync_latency_us_max);
        }
        total.commands_per_sync = total.commands as f64 / total.syncs.max(1) as f64;
        total
    }

    /// The worst shard's time to apply one record (99th percentile and longest) and its
    /// longest wait for the checkpoint thread, µs.
    pub(super) fn apply_latency_us(&self) -> (u64, u64, u64) {
        self.engine
            .stats()
            .shards
            .iter()
            .fold((0, 0, 0), |(p99, max, wait), shard| {
                (
                    p99.max(shard.apply.apply_latency_us_p99),
                    max.max(shard.apply.apply_latency_us_max),
                    wait.max(shard.apply.checkpoint_wait_us_max),
                )
            })
    }
}

/// Logs the setup batches (not timed; batches of one operation pipelined, the next
/// operation's only once they are done: with several shards, a funding transfer must not
/// reach an account's shard before the account); every command must succeed.
pub(super) fn set_up(node: &Target, batches: &[BatchBuf]) -> anyhow::Result<()> {
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    let check = |pending: Pending| -> anyhow::Result<()> {
        let codes = pending.wait().context("workload setup")?;
        if let Some(code) = codes.iter().find(|code| **code != ResultCode::Ok) {
            bail!("workload setup failed: a command answered {}", code.name());
        }
        Ok(())
    };
    let mut operation = None;
    for batch in batches {
        let next = batch.as_batch().operation();
        if operation.replace(next) != Some(next) {
            in_flight.drain(..).try_for_each(check)?;
        }
        if in_flight.len() >= SETUP_IN_FLIGHT_MAX {
            check(in_flight.pop_front().expect("in flight"))?;
        }
        let mut busy = 0;
        in_flight.push_back(submit_retrying(node, batch, &mut busy)?);
    }
    in_flight.into_iter().try_for_each(check)
}

/// Submits `batch`, again after a short wait while the log answers `Busy` (counted).
pub(super) fn submit_retrying(
    node: &Target,
    batch: &BatchBuf,
    busy: &mut u64,
) -> anyhow::Result<Pending> {
    loop {
        match node.submit(batch.as_batch()) {
            Err(error) if error.is_busy() => {
                *busy += 1;
                std::thread::sleep(BUSY_RETRY_INTERVAL);
            }
            other => return other.context("submitting a batch"),
        }
    }
}
