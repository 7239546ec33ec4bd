//! The log: appends records to the current segment, rotates to a new preallocated
//! segment when the next record does not fit, and syncs. Fail-stop: after any failed write
//! or sync, the log refuses everything with the original reason and never retries.
//!
//! [`Log::open`] (in `recovery.rs`) is the only way to get a `Log`; [`Log::read_from`] (in
//! `reader.rs`) reads its records back.

use std::io;

use surge_core::Operation;
use thiserror::Error;

use crate::constants::{
    RECORD_EVENTS_MAX, RECORD_SIZE_BYTES_MAX, SEGMENT_SIZE_BYTES_DEFAULT, SEGMENT_SIZE_BYTES_MIN,
};
use crate::record::{self, RecordHeader};
use crate::segment::create_segment;
use crate::storage::Storage;

/// How a log is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// The shard whose log this is; written into and checked in every header.
    pub shard: u16,
    /// Size each segment is preallocated to, in bytes: a multiple of 64, at least
    /// `SEGMENT_SIZE_BYTES_MIN`. Records larger than a segment are refused.
    pub segment_size_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            shard: 0,
            segment_size_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
        }
    }
}

/// One batch to append: an operation and its `count` commands.
#[derive(Clone, Copy, Debug)]
pub struct Append<'a> {
    /// What the commands are.
    pub operation: Operation,
    /// How many commands.
    pub count: u32,
    /// `count × operation.record_size_bytes()` bytes.
    pub body: &'a [u8],
}

/// Errors of the log after it is open.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalError {
    /// A write or sync failed, now or earlier: the log is stopped for good. Nothing after
    /// the last successful sync is durable.
    #[error("log failed (fail-stop, no retry): {reason}")]
    Failed {
        /// What failed, where, and the I/O error.
        reason: String,
        /// The kind of the original I/O error (`StorageFull` for ENOSPC).
        kind: io::ErrorKind,
    },
    /// The batch is malformed (wrong body size, too many commands): nothing was written,
    /// the log is still healthy.
    #[error("invalid batch: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The record would not fit in one segment: nothing was written.
    #[error("record of {size_bytes} bytes does not fit a segment of {segment_size_bytes}")]
    TooLarge {
        /// Encoded record size, in bytes.
        size_bytes: u64,
        /// The configured segment size, in bytes.
        segment_size_bytes: u64,
    },
}

impl WalError {
    /// True for the sticky fail-stop error.
    pub fn is_failed(&self) -> bool {
        matches!(self, WalError::Failed { .. })
    }
}

/// Where the next record goes and what it must chain to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogTail {
    /// Index of the segment being appended to.
    pub segment_index: u64,
    /// Byte offset of the next record in that segment.
    pub offset: u64,
    /// `record_index` of the next record.
    pub record_index: u64,
    /// `sequence_first` of the next record.
    pub sequence: u64,
    /// Smallest timestamp of the next record, in ns.
    pub timestamp_ns_min: u64,
    /// `checksum_previous` of the next record.
    pub checksum_previous: u32,
}

/// An open write-ahead log. Single writer: owned by one thread (see `GroupCommit`).
pub struct Log {
    pub(crate) storage: Box<dyn Storage>,
    pub(crate) config: LogConfig,
    pub(crate) tail: LogTail,
    /// Segments written since the last sync (at most the current one: rotation syncs).
    pub(crate) dirty: bool,
    pub(crate) failed: Option<WalError>,
    /// Reused encode buffer, so an append allocates only when a group grows.
    pub(crate) buffer: Vec<u8>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("config", &self.config)
            .field("tail", &self.tail)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl LogConfig {
    /// Checks the config's own rules.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_size_bytes < SEGMENT_SIZE_BYTES_MIN {
            return Err(format!(
                "segment_size_bytes {} is below the minimum {SEGMENT_SIZE_BYTES_MIN}",
                self.segment_size_bytes
            ));
        }
        if self.segment_size_bytes % 64 != 0 {
            return Err(format!(
                "segment_size_bytes {} is not a multiple of 64",
                self.segment_size_bytes
            ));
        }
        Ok(())
    }
}

/// Checks one batch before it is encoded. Bad batches are input, so they get an error.
pub fn check_append(append: &Append<'_>, config: &LogConfig) -> Result<u64, WalError> {
    let size = append.operation.record_size_bytes();
    if append.count as usize > RECORD_EVENTS_MAX {
        return Err(WalError::Invalid {
            reason: format!(
                "count {} passes the limit {RECORD_EVENTS_MAX}",
                append.count
            ),
        });
    }
    if append.body.len() != append.count as usize * size {
        return Err(WalError::Invalid {
            reason: format!(
                "body of {} bytes for {} records of {size} bytes",
                append.body.len(),
                append.count
            ),
        });
    }
    let size_bytes = record::record_size_bytes(append.body.len()) as u64;
    assert!(size_bytes as usize <= RECORD_SIZE_BYTES_MAX);
    if size_bytes > config.segment_size_bytes {
        return Err(WalError::TooLarge {
            size_bytes,
            segment_size_bytes: config.segment_size_bytes,
        });
    }
    Ok(size_bytes)
}

impl Log {
    /// The config this log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Where the next record goes.
    pub fn tail(&self) -> LogTail {
        self.tail
    }

    /// The fail-stop error, if the log has failed.
    pub fn failure(&self) -> Option<&WalError> {
        self.failed.as_ref()
    }

    fn check_healthy(&self) -> Result<(), WalError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Turns an I/O error into the sticky failure and returns it.
    fn fail(&mut self, what: &str, segment_index: u64, offset: u64, error: io::Error) -> WalError {
        let name = crate::segment::segment_name(segment_index);
        let failure = WalError::Failed {
            reason: format!("{what} {name} at offset {offset}: {error}"),
            kind: error.kind(),
        };
        assert!(self.failed.is_none());
        self.failed = Some(failure.clone());
        failure
    }

    /// Appends the batches as consecutive records, with one write per segment touched
    /// (one in the common case). The first record's timestamp is
    /// `max(timestamp_ns, previous end + 1)`. Returns the headers written. The records are
    /// durable only after [`Log::sync`].
    pub fn append(
        &mut self,
        timestamp_ns: u64,
        appends: &[Append<'_>],
    ) -> Result<Vec<RecordHeader>, WalError> {
        self.check_healthy()?;
        for append in appends {
            check_append(append, &self.config)?;
        }
        let mut headers = Vec::with_capacity(appends.len());
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let result = self.append_encoded(timestamp_ns, appends, &mut buffer, &mut headers);
        self.buffer = buffer;
        result.map(|()| headers)
    }

    fn append_encoded(
        &mut self,
        timestamp_ns: u64,
        appends: &[Append<'_>],
        buffer: &mut Vec<u8>,
        headers: &mut Vec<RecordHeader>,
    ) -> Result<(), WalError> {
        let mut timestamp_ns = timestamp_ns.max(self.tail.timestamp_ns_min);
        for append in appends {
            let size_bytes = record::record_size_bytes(append.body.len()) as u64;
            let buffered = buffer.len() as u64;
            if self.tail.offset + buffered + size_bytes > self.config.segment_size_bytes {
                self.write_buffer(buffer)?;
                self.rotate()?;
            }
            let header = RecordHeader {
                shard: self.config.shard,
                record_index: self.tail.record_index,
                sequence_first: self.tail.sequence,
                timestamp_ns,
                count: append.count,
                operation: append.operation,
                body_size_bytes: 0,
                checksum_previous: self.tail.checksum_previous,
                checksum_body: 0,
                checksum_header: 0,
            };
            let written = record::encode(&header, append.body, buffer);
            self.tail.record_index += 1;
            self.tail.sequence = written.sequence_next();
            self.tail.checksum_previous = written.checksum_header;
            timestamp_ns = written.timestamp_ns_next_min();
            self.tail.timestamp_ns_min = timestamp_ns;
            headers.push(written);
        }
        self.write_buffer(buffer)
    }

    /// Writes the buffered records at the tail of the current segment.
    fn write_buffer(&mut self, buffer: &mut Vec<u8>) -> Result<(), WalError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let name = crate::segment::segment_name(self.tail.segment_index);
        let offset = self.tail.offset;
        assert!(offset + buffer.len() as u64 <= self.config.segment_size_bytes);
        if let Err(error) = self.storage.write_at(&name, offset, buffer) {
            return Err(self.fail("write", self.tail.segment_index, offset, error));
        }
        self.tail.offset += buffer.len() as u64;
        self.dirty = true;
        buffer.clear();
        Ok(())
    }

    /// Syncs the full segment, then creates the next one. Syncing first means at most one
    /// segment ever holds unsynced records, so a crash can only tear the newest segment.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.sync_segment()?;
        let index = self.tail.segment_index + 1;
        if let Err(error) =
            create_segment(&mut *self.storage, index, self.config.segment_size_bytes)
        {
            return Err(self.fail("create", index, 0, error));
        }
        // Full and synced: never written again, so do not keep it open.
        let full = crate::segment::segment_name(self.tail.segment_index);
        self.storage.close(&full);
        self.tail.segment_index = index;
        self.tail.offset = 0;
        Ok(())
    }

    fn sync_segment(&mut self) -> Result<(), WalError> {
        if !self.dirty {
            return Ok(());
        }
        let name = crate::segment::segment_name(self.tail.segment_index);
        if let Err(error) = self.storage.sync_data(&name) {
            return Err(self.fail(
                "fdatasync",
                self.tail.segment_index,
                self.tail.offset,
                error,
            ));
        }
        self.dirty = false;
        Ok(())
    }

    /// Makes every appended record durable (`fdatasync`). After an error, fails for good.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_healthy()?;
        self.sync_segment()
    }
}
