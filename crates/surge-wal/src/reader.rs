//! Reading the log as a stream: [`Log::read_from`] returns a [`LogReader`] that yields the
//! records from a given record index on, in order, a segment at a time through one reused
//! buffer, checking every record it returns (checksums, then the chain: shard, index,
//! `checksum_previous`, sequence, timestamp) so nothing unchecked is ever applied.
//!
//! The segment holding the record is found from the segments' first headers (64 bytes each),
//! without reading earlier bodies. Records before the given index in that segment are checked
//! by header and chain only. Records older than the live log are read from `archive/` when
//! log retention moved them there (see `retention.rs`); a record in neither place is
//! [`RecoveryError::Missing`].

use std::collections::VecDeque;

use crate::constants::HEADER_SIZE_BYTES;
use crate::cursor::SegmentCursor;
use crate::log::{Log, LogConfig, LogTail};
use crate::record::{self, Record, RecordHeader};
use crate::recovery::{
    advance, anchor, check_chain, corrupt, io_error, tail_at_start, Corruption, RecoveryError,
};
use crate::segment::{
    archived_segment_name, archived_segments, first_header, live_segments, segment_name,
};
use crate::storage::Storage;

/// The log's records from one index on, in order: see the module docs. An [`Iterator`]
/// of `Result<Record, RecoveryError>` that ends after the first error; or call
/// [`LogReader::read_next`] to reuse one body buffer.
pub struct LogReader<'a> {
    storage: &'a mut dyn Storage,
    config: LogConfig,
    /// Segments still to open, in order: (index, storage name). Archived ones first.
    segments: VecDeque<(u64, String)>,
    cursor: SegmentCursor,
    /// Whether the cursor is on a segment with data left.
    reading: bool,
    /// The record expected next, once `anchored`.
    tail: LogTail,
    /// False until the first record of the first segment read starts the chain (only for
    /// a first segment other than 0).
    anchored: bool,
    /// Records below this are checked by header and chain only, and not returned.
    record_index_from: u64,
    /// One past the log's last record when the reader was made: where it stops.
    record_index_end: u64,
    /// Set by the iterator after an error: it returns nothing more.
    failed: bool,
}

impl std::fmt::Debug for LogReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("tail", &self.tail)
            .field("record_index_from", &self.record_index_from)
            .field("record_index_end", &self.record_index_end)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// The records from `record_index` to the end of the log, in order, as a stream: see
    /// the module docs. `record_index` may be the log's next index (nothing to read).
    /// Fails at once with [`RecoveryError::Missing`] if the record is past the end, or
    /// older than the live log and not archived.
    pub fn read_from(&mut self, record_index: u64) -> Result<LogReader<'_>, RecoveryError> {
        let record_index_end = self.tail.record_index;
        if record_index > record_index_end {
            return Err(RecoveryError::Missing {
                record_index,
                reason: format!("the log ends before record {record_index_end}"),
            });
        }
        let segments = if record_index == record_index_end {
            VecDeque::new()
        } else {
            locate(&mut *self.storage, record_index)?
        };
        let segment_first = segments.front().map_or(0, |&(index, _)| index);
        let anchored = segment_first == 0;
        let mut tail = tail_at_start(segment_first);
        if segments.is_empty() {
            tail.record_index = record_index_end;
        }
        Ok(LogReader {
            storage: &mut *self.storage,
            config: self.config,
            segments,
            cursor: SegmentCursor::new(),
            reading: false,
            tail,
            anchored: anchored || record_index == record_index_end,
            record_index_from: record_index,
            record_index_end,
            failed: false,
        })
    }

    /// Every record of the live log, in order, in memory: for tests and tools over small
    /// logs. Recovery streams with [`Log::read_from`] instead.
    pub fn read_all(&mut self) -> Result<Vec<Record>, RecoveryError> {
        let first = live_record_index_first(&mut *self.storage, self.tail.record_index)?;
        self.read_from(first)?.collect()
    }
}

/// The index of the first record in the live log (`next` for an empty log).
fn live_record_index_first(
    storage: &mut dyn Storage,
    record_index_next: u64,
) -> Result<u64, RecoveryError> {
    let live = live_segments(storage).map_err(io_error("list the log directory".to_string()))?;
    match live.first() {
        None | Some(0) => Ok(0),
        Some(&index) => {
            let name = segment_name(index);
            match first_header(storage, &name).map_err(io_error(format!("read {name}")))? {
                Ok(header) => Ok(header.record_index),
                Err(_) if live.len() == 1 => Ok(record_index_next),
                Err(error) => Err(corrupt(&name, 0, Corruption::Record { error })),
            }
        }
    }
}

/// The segments to read for `record_index`, from the one holding it to the newest: the
/// newest live segment whose first record is at or before it, else the archived one.
fn locate(
    storage: &mut dyn Storage,
    record_index: u64,
) -> Result<VecDeque<(u64, String)>, RecoveryError> {
    let live = live_segments(storage).map_err(io_error("list the log directory".to_string()))?;
    let live_names = |from: usize| live[from..].iter().map(|&i| (i, segment_name(i)));
    let mut live_first_record = None;
    for (position, &index) in live.iter().enumerate().rev() {
        let name = segment_name(index);
        match first_header(storage, &name).map_err(io_error(format!("read {name}")))? {
            Ok(header) if header.record_index <= record_index => {
                return Ok(live_names(position).collect());
            }
            Ok(header) => live_first_record = Some(header.record_index),
            // The newest segment may be empty: created by a rotation just before a crash.
            Err(_) if position + 1 == live.len() => {}
            Err(error) => return Err(corrupt(&name, 0, Corruption::Record { error })),
        }
    }
    let Some(&live_first) = live.first() else {
        return Err(RecoveryError::Missing {
            record_index,
            reason: "the log has no segment".to_string(),
        });
    };
    let live_start = live_first_record.map_or_else(
        || format!("the live log starts at segment {live_first}"),
        |first| format!("the live log starts at record {first}"),
    );
    // Archived segments joined to the live ones: consecutive indexes up to the first live.
    let archived = archived_segments(storage)
        .map_err(io_error("list the log's archive directory".to_string()))?;
    let mut joined = Vec::new();
    for &index in archived.iter().rev() {
        if index + 1 != joined.last().copied().unwrap_or(live_first) {
            break;
        }
        joined.push(index);
    }
    let mut oldest = None;
    for (position, &index) in joined.iter().enumerate() {
        let name = archived_segment_name(index);
        match first_header(storage, &name).map_err(io_error(format!("read {name}")))? {
            Ok(header) if header.record_index <= record_index => {
                let mut segments: VecDeque<(u64, String)> = joined[..=position]
                    .iter()
                    .rev()
                    .map(|&i| (i, archived_segment_name(i)))
                    .collect();
                segments.extend(live_names(0));
                return Ok(segments);
            }
            Ok(header) => oldest = Some((name, header.record_index)),
            Err(error) => return Err(corrupt(&name, 0, Corruption::Record { error })),
        }
    }
    let reason = match oldest {
        Some((name, first)) => format!(
            "{live_start}, and the oldest archived segment joined to it, {name}, starts at \
             record {first}"
        ),
        None => format!(
            "{live_start} (segment {live_first}), and archive/ does not hold segment {}: \
             older segments were deleted",
            live_first.saturating_sub(1)
        ),
    };
    Err(RecoveryError::Missing {
        record_index,
        reason,
    })
}

impl LogReader<'_> {
    /// The next record: its header returned, its body copied into `body` (cleared first,
    /// so one buffer serves every record). `None` after the last record.
    pub fn read_next(&mut self, body: &mut Vec<u8>) -> Result<Option<RecordHeader>, RecoveryError> {
        loop {
            if self.anchored && self.tail.record_index >= self.record_index_end {
                return Ok(None);
            }
            if !self.reading {
                self.open_next()?;
            }
            let name = self.cursor.name().to_string();
            let offset = self.cursor.offset();
            let bad = |error| corrupt(&name, offset, Corruption::Record { error });
            let rest = self
                .cursor
                .fill(self.storage, HEADER_SIZE_BYTES)
                .map_err(io_error(format!("read {name}")))?;
            if rest.is_empty() || record::is_end_of_data(rest) {
                if !self.anchored {
                    let reason = "it holds no record".to_string();
                    return Err(corrupt(&name, offset, Corruption::Start { reason }));
                }
                // This segment's data ends here; the chain goes on in the next one.
                self.reading = false;
                continue;
            }
            let header = record::decode_header(rest).map_err(bad)?;
            if !self.anchored {
                anchor(&header, self.tail.segment_index, &mut self.tail)
                    .map_err(|reason| corrupt(&name, offset, reason))?;
                self.anchored = true;
            }
            check_chain(&header, &self.tail, &self.config)
                .map_err(|reason| corrupt(&name, offset, reason))?;
            let size = header.record_size_bytes();
            if self.tail.record_index < self.record_index_from {
                // Before the first record asked for: the header and chain are enough.
                advance(&mut self.tail, &header);
                self.cursor.advance(size);
                continue;
            }
            let rest = self
                .cursor
                .fill(self.storage, size)
                .map_err(io_error(format!("read {name}")))?;
            let view = record::decode_view(rest).map_err(bad)?;
            // The same bytes as the header checked above.
            assert_eq!(view.header, header);
            body.clear();
            body.extend_from_slice(view.body);
            advance(&mut self.tail, &header);
            self.cursor.advance(size);
            return Ok(Some(header));
        }
    }

    /// Moves the cursor to the next segment, which must exist: the log held the record
    /// expected next when the reader was made.
    fn open_next(&mut self) -> Result<(), RecoveryError> {
        let Some((index, name)) = self.segments.pop_front() else {
            return Err(RecoveryError::Missing {
                record_index: self.tail.record_index,
                reason: format!(
                    "the log ends before it, though it held records up to {} when the \
                     reader started: it changed since",
                    self.record_index_end
                ),
            });
        };
        self.cursor
            .open(self.storage, &name)
            .map_err(io_error(format!("read {name}")))?;
        self.tail.segment_index = index;
        self.reading = true;
        Ok(())
    }
}

impl Iterator for LogReader<'_> {
    type Item = Result<Record, RecoveryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let mut body = Vec::new();
        match self.read_next(&mut body) {
            Ok(Some(header)) => Some(Ok(Record { header, body })),
            Ok(None) => None,
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
