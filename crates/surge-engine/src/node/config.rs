//! A node's configuration ([`NodeConfig`]) and its defaults.

use std::path::PathBuf;

use surge_wal::{GroupCommitConfig, LogConfig, LogRetention};

/// Default of [`NodeConfig::results_uncollected_max`].
const RESULTS_UNCOLLECTED_MAX_DEFAULT: usize = 65_536;

/// Default of [`NodeConfig::evict_interval_transfers`].
const EVICT_INTERVAL_TRANSFERS_DEFAULT: u64 = 1_000_000;

/// Default of [`NodeConfig::checkpoint_log_percent`]: a checkpoint once the log has
/// grown by the last checkpoint's size (as Redis rewrites its append-only file once it
/// doubled), so checkpoints write about as much as the log does.
const CHECKPOINT_LOG_PERCENT_DEFAULT: u32 = 100;

/// Configuration of a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// State machine sizing and behaviour.
    pub state: surge_core::Config,
    /// Log segments.
    pub log: LogConfig,
    /// Group commit queues.
    pub group_commit: GroupCommitConfig,
    /// A checkpoint falls due every this many log records (0: never), and is written
    /// unless `checkpoint_log_percent` skips it.
    pub checkpoint_interval_records: u64,
    /// Where in the interval the checkpoints fall: after the records whose index + 1 is
    /// this much (modulo the interval) past a multiple of the interval (0: at the
    /// multiples). The engine spreads
    /// its shards' phases over the interval, so shards that log at the same pace do not
    /// write their checkpoints (hundreds of megabytes each) to the same disk at once.
    pub checkpoint_phase_records: u64,
    /// A checkpoint that falls due (every `checkpoint_interval_records`, at the phase) is
    /// skipped until the log written since the last checkpoint (records, in bytes) is at
    /// least this percent of that checkpoint's size (0: never skipped; the first
    /// checkpoint since a start never is). A checkpoint rewrites the whole state, hundreds
    /// of megabytes on a large ledger, so this keeps the bytes written for checkpoints at
    /// about 100 / this percent of the log's (the same, at 100) however large the state
    /// grows. Recovery replays at most about this share of a checkpoint's size of log
    /// after the newest checkpoint, and with `log_retention` the log kept spans about
    /// `checkpoints_kept` times that.
    pub checkpoint_log_percent: u32,
    /// Checkpoints kept on disk (at least 1).
    pub checkpoints_kept: usize,

    /// Directory of the history index; `None` runs without one.
    pub history_directory: Option<PathBuf>,
    /// Applied batches whose codes wait for their submitter, at most; older ones are
    /// dropped (a `Pending` dropped without `wait` never collects its codes), and their
    /// submitter gets `ResultsDropped`: the batch itself is durable and applied.
    pub results_uncollected_max: usize,
    /// Bounded memory: every `evict_interval_transfers` committed transfers, the finished
    /// client transfers committed before the previous such cycle leave memory, their
    /// outcomes archived durably in the history index first (so this needs
    /// `history_directory`; without one nothing is evicted).
    pub evict_finished_transfers: bool,
    /// Committed transfers between eviction cycles (at least 1). A transfer stays resident
    /// for one to two intervals, so size `state.transfers_capacity` for a little over twice
    /// this, or the record buffer grows (a reallocation on the apply thread). A cycle costs
    /// the apply thread ~0.3 µs per evicted transfer, spread over batches (docs/MEMORY.md).
    pub evict_interval_transfers: u64,
    /// What happens to log segments entirely below the oldest kept checkpoint's record,
    /// after each checkpoint: kept (default), moved to the log's `archive/`, or deleted.
    /// With `Delete`, a history index that must be rebuilt from the log cannot be, and
    /// the node refuses to start (`LogRecordsMissing`); `Archive` rebuilds from the archive.
    pub log_retention: LogRetention,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            state: surge_core::Config::default(),
            log: LogConfig::default(),
            group_commit: GroupCommitConfig::default(),
            checkpoint_interval_records: 10_000,
            checkpoint_phase_records: 0,
            checkpoint_log_percent: CHECKPOINT_LOG_PERCENT_DEFAULT,
            checkpoints_kept: 3,
            history_directory: None,
            results_uncollected_max: RESULTS_UNCOLLECTED_MAX_DEFAULT,
            evict_finished_transfers: true,
            evict_interval_transfers: EVICT_INTERVAL_TRANSFERS_DEFAULT,
            log_retention: LogRetention::Keep,
        }
    }
}
