//! Surge's write-ahead log: checksummed, chained records in preallocated segment files,
//! written by one group-commit thread with one `fdatasync` per group, recovered after a
//! crash by cutting a torn tail back and refusing any other damage, read back as a checked
//! stream from any record index, and trimmed by archiving or deleting old segments.
//!
//! This crate owns the log's bytes on disk and the handoff from submitters to the writer,
//! and the file helpers that keep other large files off the log's syncs
//! ([`remove_in_steps`], [`WriteBehind`]), which the history index uses too.
//! It never applies commands (that is `surge-core`'s state machine, fed from the durable
//! record channel), never uses tokio, and never retries a failed write or sync.
//!
//! All disk access goes through [`Storage`]; tests use [`SimStorage`] to cut the power.
//! The group-commit handoff is model-checked with loom:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p surge-wal --release --lib loom
//! ```
#![warn(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod clock;
pub mod constants;
mod cursor;
pub mod group_commit;
mod handoff;
pub mod log;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod remove;
pub mod retention;
pub mod segment;
pub mod storage;
pub mod write_behind;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use group_commit::{CommitStats, GroupCommit, GroupCommitConfig, SubmitError, Ticket};
pub use log::{Append, Log, LogConfig, LogTail, WalError};
pub use reader::LogReader;
pub use record::{Record, RecordError, RecordHeader, RecordView};
pub use recovery::{Corruption, Recovered, RecoveryError, TornTail};
pub use remove::{free_in_steps, remove_in_steps};
pub use retention::{retain_segments, LogRetention, RetentionError};
pub use storage::{FileStorage, SimStorage, Storage};
pub use write_behind::WriteBehind;
