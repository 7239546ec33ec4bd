//! The history index: where in the log a transfer, an order's events and an account's
//! statement lines are, so lookups of old records need no replay.
//!
//! The index is derived from the log and is never the source of truth: nothing is
//! acknowledged or decided from it, with one exception that is still derived from the log:
//! the archive entries of finished transfers that left the state machine's memory
//! ([`HistoryIndex::archive`]). The engine stores them durably before it evicts, and a
//! replay of the log produces them again; a command reusing an old id is answered from
//! them exactly as the resident state would have answered.
//!
//! [`derive_entries`] turns one applied batch (with the state machine right after it) into
//! entries; a [`HistoryIndex`] stores them together with
//! the "applied up to" record index in one atomic write, so after a crash it is caught up
//! from the log after that index, and if it reports corruption it is deleted and rebuilt
//! from the log. [`SledHistory`] keeps it in sled; [`MemoryHistory`] is the same contract in
//! memory, for tests and for running without a disk index.
#![warn(missing_docs)]

mod archive_runs;
mod derive;
mod files;
mod lsm;
mod memory;
mod sled_history;

pub use derive::{derive_entries, derive_entries_since, IndexEntry, StatementLine};
pub use lsm::{
    LsmHistory, LsmStats, LsmStore, FROZEN_MAX, MEMTABLE_BYTES_DEFAULT, MEMTABLE_BYTES_MAX,
    MERGE_FANOUT,
};
pub use memory::MemoryHistory;
pub use sled_history::{SledHistory, HISTORY_CACHE_BYTES_DEFAULT};

use surge_core::{
    AccountId, ArchivedTransfer, LogPosition, Operation, OrderId, Transfer, TransferId,
};
use thiserror::Error;

/// Why the index could not answer or store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// sled reported an error (I/O or corruption): rebuild the index from the log.
    #[error("history index storage failed: {0}")]
    Storage(#[from] sled::Error),
    /// A stored value does not decode: the index is corrupt; rebuild it from the log.
    #[error("history index entry under key {key:02x?} is corrupt: {reason}")]
    Corrupt {
        /// The key whose value is bad.
        key: Vec<u8>,
        /// What was wrong.
        reason: &'static str,
    },
    /// Reading or writing an archive run file failed (a disk problem, not corruption).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and to which file.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another handle (in this process or another) holds the index directory's lock.
    #[error("the history index at {0} is in use by another handle")]
    Locked(String),
    /// A write through a handle made for reading.
    #[error("a reader handle on the history index cannot write")]
    ReadOnly,
    /// A background thread of the index failed to write a run; nothing more is stored.
    #[error("the history index's background writer failed: {0}")]
    Background(String),
    /// Entries were offered for a record at or before the one already indexed.
    #[error("record {record_index} is not after the indexed record {applied_up_to}")]
    OutOfOrder {
        /// The record offered.
        record_index: u64,
        /// The last record already indexed.
        applied_up_to: u64,
    },
}

impl HistoryError {
    /// Whether the stored index is damaged or unreadable as a sled database (rebuild it
    /// from the log), as opposed to busy (another handle holds it) or failing on I/O (a
    /// disk problem the operator must see, not a reason to delete anything).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            HistoryError::Corrupt { .. }
                | HistoryError::Storage(
                    sled::Error::Corruption { .. }
                        | sled::Error::Unsupported(_)
                        | sled::Error::ReportableBug(_)
                )
        )
    }

    /// Whether another handle holds sled's lock on the directory.
    pub fn is_locked(&self) -> bool {
        match self {
            HistoryError::Locked(_) => true,
            HistoryError::Storage(sled::Error::Io(error)) => {
                error.kind() == std::io::ErrorKind::WouldBlock
                    || error.to_string().contains("could not acquire lock")
            }
            _ => false,
        }
    }
}

/// One page of an account's statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementPage {
    /// Lines in log order.
    pub lines: Vec<StatementLine>,
    /// Pass as `after` to get the next page; `None` when the range is exhausted.
    pub next: Option<StatementCursor>,
}

/// Where a statement page ends: the last line's timestamp and transfer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementCursor {
    /// Timestamp of the last line returned.
    pub timestamp: u64,
    /// Transfer id of the last line returned.
    pub transfer_id: TransferId,
}

/// The index's contract. Implementations store each record's entries and its index
/// atomically, so `applied_up_to` never claims entries that are not there.
pub trait HistoryIndex {
    /// The last log record whose entries are stored, if any.
    fn applied_up_to(&self) -> Result<Option<u64>, HistoryError>;

    /// Stores the entries of log record `record_index` (possibly none) and marks it applied.
    fn apply(&mut self, record_index: u64, entries: &[IndexEntry]) -> Result<(), HistoryError>;

    /// Stores, durably (the call returns after a flush), the archive entries of transfers
    /// about to leave the state machine's memory. Entries never change once written, so
    /// storing one again is harmless.
    fn archive(&mut self, entries: &[ArchivedTransfer]) -> Result<(), HistoryError>;

    /// The archive entry of a transfer that left memory, if one was stored.
    fn archived(&self, id: TransferId) -> Result<Option<ArchivedTransfer>, HistoryError>;

    /// Where transfer `id` was created, and the transfer as applied.
    fn transfer(&self, id: TransferId) -> Result<Option<(LogPosition, Transfer)>, HistoryError>;

    /// Every successful command on order `id`, in log order.
    fn order_events(&self, id: OrderId) -> Result<Vec<(LogPosition, Operation)>, HistoryError>;

    /// Statement lines of `account_id` with `from_ns <= timestamp < to_ns`, after the cursor
    /// `after`, at most `limit` lines.
    fn statement(
        &self,
        account_id: AccountId,
        from_ns: u64,
        to_ns: u64,
        after: Option<StatementCursor>,
        limit: usize,
    ) -> Result<StatementPage, HistoryError>;
}

#[cfg(test)]
mod tests;
