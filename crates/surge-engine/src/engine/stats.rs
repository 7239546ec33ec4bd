//! Per-shard counters for operators (`/metrics`) and benchmarks.

use std::sync::atomic::Ordering;

use super::completion::ShardLoad;
use crate::node::Node;

/// Counters of every shard.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// By shard index.
    pub shards: Vec<ShardStats>,
}

/// One shard's counters.
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// Batches submitted and not yet completed (the shard's queue depth).
    pub batches_in_flight: usize,
    /// Batches (parts) completed.
    pub batches: u64,
    /// Commands completed.
    pub commands: u64,
    /// Submissions refused because this shard was full.
    pub busy: u64,
    /// Submit to completion of a part, in µs: median, 99th percentile, maximum.
    pub latency_us_p50: u64,
    /// 99th percentile.
    pub latency_us_p99: u64,
    /// Longest.
    pub latency_us_max: u64,
    /// The log's group commit: syncs, commands per sync, sync latency.
    pub commit: surge_wal::CommitStats,
    /// Applying records to the state machine.
    pub apply: crate::node::ApplyStats,
    /// The history index's store (memtables waiting to be written, runs), if it has one.
    pub history: Option<surge_history::LsmStats>,
}

pub(super) fn shard_stats(node: &Node, load: &ShardLoad) -> ShardStats {
    let latency = load.latency_us.lock();
    ShardStats {
        batches_in_flight: load.in_flight.load(Ordering::Acquire),
        batches: load.batches.load(Ordering::Relaxed),
        commands: load.commands.load(Ordering::Relaxed),
        busy: load.busy.load(Ordering::Relaxed),
        latency_us_p50: latency.value_at_quantile(0.5),
        latency_us_p99: latency.value_at_quantile(0.99),
        latency_us_max: latency.max(),
        commit: node.commit_stats(),
        apply: node.apply_stats(),
        history: node.history().map(|index| index.stats()),
    }
}
