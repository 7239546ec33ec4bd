//! Log retention: live segments whose records all lie below a record index that is no
//! longer needed (the engine passes its oldest kept checkpoint's) are moved to `archive/`
//! or deleted, oldest first. Each move or removal is made durable (directory `fsync`)
//! before the next, so after any crash the live segments are still consecutive: a suffix
//! of what they were. The newest live segment is never touched (the writer appends to it).
//!
//! Runs on its own storage handle ([`Storage::try_clone`]) beside the writer: it reads only
//! first headers of segments the writer is done with, and the writer never reopens them.

use std::io;

use thiserror::Error;

use crate::constants::ARCHIVE_DIRECTORY_NAME;
use crate::segment::{archived_segment_name, first_header, live_segments, segment_name};
use crate::storage::Storage;

/// What happens to log segments that lie entirely below the oldest record still needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogRetention {
    /// Keep every segment in the log directory (the log grows without bound).
    #[default]
    Keep,
    /// Move them to the log directory's `archive/` subdirectory, where
    /// [`crate::Log::read_from`] still finds them (to rebuild derived indexes) and an
    /// operator can ship or delete them.
    Archive,
    /// Delete them. Anything that needs older records (rebuilding the history index, a
    /// recovery with no usable checkpoint) is then impossible, and refused.
    Delete,
}

/// Why retention failed: the segments moved or removed before the failure are durable.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// A disk operation failed.
    #[error("log retention: {what}: {source}")]
    Io {
        /// What was being done, and to which file.
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

fn io_error(what: String) -> impl FnOnce(io::Error) -> RetentionError {
    move |source| RetentionError::Io { what, source }
}

/// Archives or deletes (per `retention`) every live segment whose records all lie below
/// `record_index`: segment k goes when segment k + 1's first record is at or below it.
/// Returns the names of the segments moved or removed, oldest first. See the module docs.
pub fn retain_segments(
    storage: &mut dyn Storage,
    record_index: u64,
    retention: LogRetention,
) -> Result<Vec<String>, RetentionError> {
    let mut retained = Vec::new();
    if retention == LogRetention::Keep {
        return Ok(retained);
    }
    let live = live_segments(storage).map_err(io_error("list the log directory".to_string()))?;
    for pair in live.windows(2) {
        let (index, next) = (pair[0], pair[1]);
        // Only consecutive segments: never widen a gap recovery would refuse anyway.
        if next != index + 1 {
            break;
        }
        let next_name = segment_name(next);
        let next_first =
            first_header(storage, &next_name).map_err(io_error(format!("read {next_name}")))?;
        match next_first {
            Ok(header) if header.record_index <= record_index => {}
            // A later first record, or none yet (a segment just created): keep the rest.
            _ => break,
        }
        let name = segment_name(index);
        match retention {
            LogRetention::Keep => unreachable!("returned above"),
            LogRetention::Archive => {
                if retained.is_empty() {
                    storage
                        .create_directory(ARCHIVE_DIRECTORY_NAME)
                        .map_err(io_error(format!("create {ARCHIVE_DIRECTORY_NAME}/")))?;
                }
                let archived = archived_segment_name(index);
                storage
                    .rename(&name, &archived)
                    .map_err(io_error(format!("move {name} to {archived}")))?;
            }
            LogRetention::Delete => storage
                .remove(&name)
                .map_err(io_error(format!("delete {name}")))?,
        }
        storage
            .sync_directory()
            .map_err(io_error(format!("sync the log directory after {name}")))?;
        retained.push(name);
    }
    Ok(retained)
}
