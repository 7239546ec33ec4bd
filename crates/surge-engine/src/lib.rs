//! Surge's engine: the node that ties the deterministic core to the disk.
//!
//! A [`Node`] owns one shard: the write-ahead log (through `surge-wal`'s group commit), the
//! state machine, checkpoints and the history index. A caller submits a batch; the node logs
//! it, and only after the `fdatasync` covering it returned applies it in log order and hands
//! back one result code per command. On open it recovers: the newest valid checkpoint, then
//! the log after it, then the history index caught up.
//!
//! Threads, not tasks: the log writer, the apply thread and the pulse thread are plain
//! threads joined by bounded channels and locks (no tokio), so the server bridges async
//! connections to them. Sharding across cores is the engine issue's next step.
#![warn(missing_docs)]

mod engine;
mod node;
mod replay;
mod router;

pub use engine::{
    is_client_operation, shards_default, Completion, DispatchCursor, Engine, EngineConfig,
    EngineReport, EngineStats, ShardStats, BATCHES_IN_FLIGHT_PER_SHARD_MAX_DEFAULT,
};
pub use node::{
    ApplyStats, EngineError, Node, NodeConfig, NodeStorage, OrderStep, Pending, RecoveryReport,
    EVICT_TRANSFERS_PER_BATCH, EVICT_TRANSFERS_PER_COMMAND, PLAN_SLOTS_PER_BATCH,
    PLAN_SLOTS_PER_COMMAND,
};
