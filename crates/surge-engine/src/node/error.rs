//! Why a node stopped or could not start ([`EngineError`]).

use std::path::PathBuf;

use surge_core::Operation;
use surge_history::HistoryError;
use surge_wal::{CheckpointError, RecoveryError, RetentionError, SubmitError, WalError};
use thiserror::Error;

/// Why the node stopped or could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The log could not be recovered: the server must not start.
    #[error("log recovery failed: {0}")]
    Recovery(#[from] RecoveryError),
    /// Checkpoints could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The newest checkpoint names a log record the log does not hold (or holds another).
    #[error("checkpoint at log record {record_index} does not match the log: {reason}")]
    CheckpointMismatch {
        /// The record the checkpoint reflects.
        record_index: u64,
        /// What differs.
        reason: String,
    },
    /// A checkpoint's snapshot does not restore.
    #[error("checkpoint snapshot does not restore: {0}")]
    Snapshot(#[from] surge_core::SnapshotError),
    /// A durable record does not decode as a batch (a bug: records are checksummed).
    #[error("log record {record_index} does not decode: {reason}")]
    BadRecord {
        /// The record.
        record_index: u64,
        /// Why.
        reason: String,
    },
    /// The log failed (fail-stop): nothing more is accepted.
    #[error("log failed: {0}")]
    Log(#[from] WalError),
    /// The submission was refused.
    #[error("submission refused: {0}")]
    Submit(#[from] SubmitError),
    /// The history index failed and could not be rebuilt.
    #[error("history index: {0}")]
    History(#[from] HistoryError),
    /// The batch was applied, but its codes were not collected in time and were dropped.
    #[error("the codes of log record {record_index} were not collected in time")]
    ResultsDropped {
        /// The record.
        record_index: u64,
    },
    /// An empty batch was submitted.
    #[error("a batch needs at least one command")]
    EmptyBatch,
    /// The checkpoint holds transfers that left memory, and only the history index knows
    /// their outcomes: the node must not start without it.
    #[error(
        "the checkpoint has {evicted} transfers archived in the history index, but no \
         history directory is configured: configure the one it was written with"
    )]
    HistoryRequired {
        /// Transfers that left memory.
        evicted: u64,
    },
    /// The node stopped before the batch was applied.
    #[error("the node stopped: {0}")]
    Stopped(String),
    /// Recovery needs log records that are no longer kept: older segments were deleted by
    /// log retention (or removed by hand). Start nothing.
    #[error("recovery needs log records from {record_index} on, to {needed_for}; {reason}")]
    LogRecordsMissing {
        /// The first record needed.
        record_index: u64,
        /// Why recovery needs it.
        needed_for: String,
        /// Where the log starts, and what is missing.
        reason: String,
    },
    /// Log retention (archiving or deleting old segments) failed.
    #[error("{0}")]
    LogRetention(#[from] RetentionError),
    /// A shard's queue is full: nothing was logged; retry later with the same ids.
    #[error("shard {shard} is busy: retry later with the same ids")]
    Busy {
        /// The full shard.
        shard: u32,
    },
    /// The data directory (or a file in it) could not be created, read or synced.
    #[error("data directory {path}: {source}")]
    DataDirectory {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configured shard count is impossible or differs from the data directory's.
    #[error("shard count: {0}")]
    ShardCount(String),
    /// A dispatch-feed cursor does not parse or names another shard count.
    #[error("{0}")]
    BadCursor(String),
    /// Clients may not submit this operation (pulses and messages between shards are the
    /// engine's own).
    #[error("operation {0:?} is the engine's own; clients may not submit it")]
    OperationNotAllowed(Operation),
    /// The engine runs without history indexes, so statements cannot be served.
    #[error("statements need the history index, which is switched off")]
    HistoryDisabled,
}

impl EngineError {
    /// Whether the submission was refused only because a queue was full (nothing was
    /// logged; retry later with the same ids).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            EngineError::Busy { .. } | EngineError::Submit(SubmitError::Busy)
        )
    }
}
