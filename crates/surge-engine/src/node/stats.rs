//! What a node reports about itself: how applying goes ([`ApplyStats`], from the apply
//! thread's counters) and what recovery did ([`RecoveryReport`]).

/// How applying goes on a node.
#[derive(Clone, Debug, Default)]
pub struct ApplyStats {
    /// Log records applied since the node started (pulses included).
    pub records: u64,
    /// Commands applied.
    pub commands: u64,
    /// Time to apply one record (state machine, history index, eviction slice), in µs:
    /// median.
    pub apply_latency_us_p50: u64,
    /// 99th percentile.
    pub apply_latency_us_p99: u64,
    /// Longest.
    pub apply_latency_us_max: u64,
    /// Longest time the apply thread waited for the checkpoint thread (a checkpoint
    /// still being written, or buffers still being touched, when the next is handed
    /// over), in µs.
    pub checkpoint_wait_us_max: u64,
}

/// The apply thread's counters.
pub(super) struct ApplyCounters {
    pub(super) records: u64,
    pub(super) commands: u64,
    pub(super) latency_us: hdrhistogram::Histogram<u64>,
    pub(super) checkpoint_wait_us_max: u64,
}

/// Longest apply latency recorded, in µs (a minute).
pub(super) const APPLY_LATENCY_US_MAX: u64 = 60_000_000;

impl ApplyCounters {
    pub(super) fn new() -> ApplyCounters {
        ApplyCounters {
            records: 0,
            commands: 0,
            latency_us: hdrhistogram::Histogram::new_with_bounds(1, APPLY_LATENCY_US_MAX, 2)
                .expect("valid constant bounds"),
            checkpoint_wait_us_max: 0,
        }
    }
}

/// What recovery did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The record index of the checkpoint loaded, if any.
    pub checkpoint_record_index: Option<u64>,
    /// Log records replayed after it.
    pub records_replayed: u64,
    /// Warnings: a torn tail cut back, damaged checkpoints skipped, an index rebuilt.
    pub warnings: Vec<String>,
}
