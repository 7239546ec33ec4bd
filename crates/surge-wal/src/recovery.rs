//! Recovery: [`Log::open`] reads every live segment in order, a chunk at a time, checks
//! every record and the chain between them, cuts a torn tail back to the last whole record
//! (with a warning), and refuses to open on anything else: a bad record with a valid record
//! after it, a broken chain (missing, repeated or reordered record) or a missing segment.
//! It never skips a record and keeps none: records are read afterwards, as a stream, with
//! [`Log::read_from`] (`reader.rs`), which checks them again as it goes.
//!
//! The log may start at a segment other than 0 when older segments were archived or
//! deleted (`retention.rs`): the first record of the first live segment then starts the
//! chain (see `docs/LOG_FORMAT.md` for what is checked there).

use std::io;
use std::ops::Range;

use thiserror::Error;

use crate::constants::HEADER_SIZE_BYTES;
use crate::cursor::{end_of_non_zero, find_valid_header, SegmentCursor};
use crate::log::{Log, LogConfig, LogTail};
use crate::record::{self, RecordError, RecordHeader};
use crate::segment::{create_segment, live_segments, segment_name};
use crate::storage::Storage;

/// What is wrong at a corrupt position.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// A bad record with a valid record after it: not a torn tail.
    #[error(
        "bad record ({error}), yet a valid record follows in {valid_segment} at offset \
             {valid_offset}"
    )]
    BadRecord {
        /// Why the record is bad.
        error: RecordError,
        /// Segment of the later valid record.
        valid_segment: String,
        /// Offset of the later valid record.
        valid_offset: u64,
    },
    /// A valid record that does not continue the chain.
    #[error("{field}: expected {expected}, found {found}")]
    Chain {
        /// The header field that breaks the chain.
        field: &'static str,
        /// What the previous record implies (for timestamps: the minimum).
        expected: u64,
        /// What the record holds.
        found: u64,
    },
    /// Segment files are not numbered consecutively.
    #[error("segment gap: expected segment index {expected}, found {found}")]
    SegmentGap {
        /// The index after the previous segment's.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// An all-zero header (end of data) with a valid record after it in the same segment.
    #[error("end of data, yet a valid record follows at offset {valid_offset}")]
    Hole {
        /// Offset of the valid record.
        valid_offset: u64,
    },
    /// The first live segment is not segment 0 (older ones were archived or deleted), and
    /// it does not start with a whole record: where the log starts is unknown.
    #[error(
        "the first live segment (older segments archived or deleted) must start with a \
             whole record, but {reason}"
    )]
    Start {
        /// What is there instead.
        reason: String,
    },
    /// A bad record where the log holds one: read by [`Log::read_from`] after the log was
    /// opened (the file changed since), or in an archived segment.
    #[error("bad record ({error})")]
    Record {
        /// Why the record is bad.
        error: RecordError,
    },
}

/// Why a log cannot be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The config breaks its own rules.
    #[error("invalid log config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// Reading, cutting back or creating a segment failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and to which file.
        what: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The log is damaged somewhere other than its torn tail. Start nothing.
    #[error("log corruption in {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// Segment file name (`archive/…` for an archived segment).
        segment: String,
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong there.
        reason: Corruption,
    },
    /// A record asked of [`Log::read_from`] is not in the log: past its end, or before its
    /// first live record and not in `archive/` either (deleted by log retention).
    #[error("log record {record_index} is not in the log: {reason}")]
    Missing {
        /// The record asked for (or the first one missing).
        record_index: u64,
        /// Where the log starts and ends, and what is missing.
        reason: String,
    },
}

/// A torn tail that recovery cut back: a warning, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Segment file holding the torn record.
    pub segment: String,
    /// Byte offset the log was cut back to.
    pub offset: u64,
    /// Why the record there is not whole.
    pub reason: RecordError,
    /// Later segment files (with no valid record) that were removed.
    pub segments_removed: Vec<String>,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "torn tail cut back in {} at offset {} ({}); {} later segment(s) removed",
            self.segment,
            self.offset,
            self.reason,
            self.segments_removed.len()
        )
    }
}

/// What recovery found: which records the live log holds, and the torn tail it cut, if
/// any. The records themselves are read with [`Log::read_from`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Indexes of the records in the live log, `first..next`: `first` is 0 unless older
    /// segments were archived or deleted; `next` is the index the next record appended
    /// gets. Empty for an empty log.
    pub record_indexes: Range<u64>,
    /// The warning for a cut-back torn tail.
    pub torn_tail: Option<TornTail>,
}

/// How a segment's scan ended.
enum ScanEnd {
    /// An all-zero header, or the end of the file, at this offset.
    EndOfData(u64),
    /// An undecodable record at this offset, and how far it extends (its size if its
    /// header is whole, else one header).
    Bad(u64, RecordError, usize),
}

pub(crate) fn io_error(what: String) -> impl FnOnce(io::Error) -> RecoveryError {
    move |source| RecoveryError::Io { what, source }
}

pub(crate) fn corrupt(segment: &str, offset: u64, reason: Corruption) -> RecoveryError {
    RecoveryError::Corrupt {
        segment: segment.to_string(),
        offset,
        reason,
    }
}

impl Log {
    /// Opens (or creates) the log in `storage` and recovers it: see the module docs.
    pub fn open(
        mut storage: Box<dyn Storage>,
        config: LogConfig,
    ) -> Result<(Log, Recovered), RecoveryError> {
        config
            .validate()
            .map_err(|reason| RecoveryError::Config { reason })?;
        let segments = list_segments(&mut *storage)?;
        let (tail, record_index_first, torn_tail) = scan_log(&mut *storage, &config, &segments)?;
        if segments.is_empty() {
            create_segment(&mut *storage, tail.segment_index, config.segment_size_bytes).map_err(
                io_error(format!("create {}", segment_name(tail.segment_index))),
            )?;
        } else {
            preallocate(&mut *storage, tail.segment_index, config.segment_size_bytes)?;
        }
        make_durable(&mut *storage, &segments, tail.segment_index)?;
        let recovered = Recovered {
            record_indexes: record_index_first..tail.record_index,
            torn_tail,
        };
        let log = Log {
            storage,
            config,
            tail,
            dirty: false,
            failed: None,
            buffer: Vec::new(),
        };
        Ok((log, recovered))
    }
}

/// Checks every live segment in order; cuts a torn tail back. Returns the chain after the
/// last whole record, the first record's index, and the torn tail's warning.
fn scan_log(
    storage: &mut dyn Storage,
    config: &LogConfig,
    segments: &[u64],
) -> Result<(LogTail, u64, Option<TornTail>), RecoveryError> {
    let mut scan = Scan::new(config, segments.first().copied().unwrap_or(0));
    // For the scans past a segment's end of data (holes, a torn tail).
    let mut buffer = Vec::new();
    for (position, &index) in segments.iter().enumerate() {
        let name = segment_name(index);
        scan.tail.segment_index = index;
        let end = scan.segment(storage, &name)?;
        if scan.record_index_first.is_none() {
            return Err(corrupt(&name, 0, start_missing(&end)));
        }
        match end {
            ScanEnd::EndOfData(offset) => {
                scan.tail.offset = offset;
                let found = find_valid_header(storage, &name, offset, &mut buffer)
                    .map_err(io_error(format!("read {name}")))?;
                if let Some(valid_offset) = found {
                    return Err(corrupt(&name, offset, Corruption::Hole { valid_offset }));
                }
            }
            ScanEnd::Bad(offset, error, extent) => {
                let later = &segments[position + 1..];
                let bad = BadRecord {
                    name: &name,
                    offset,
                    extent,
                    error,
                };
                check_torn(storage, &bad, later, &mut buffer)?;
                let torn = cut_back(storage, bad, later, &mut buffer)?;
                scan.tail.offset = offset;
                let first = scan.record_index_first.unwrap_or(0);
                return Ok((scan.tail, first, Some(torn)));
            }
        }
    }
    Ok((scan.tail, scan.record_index_first.unwrap_or(0), None))
}

/// What recovery read may have been written but never synced (a killed process, a failed
/// sync, a full disk mid-rotation): makes it durable before anything is built on it, or a
/// later acknowledged record could sit behind one a power cut erases. Then closes every
/// segment but `tail_segment`, the only one written from now on.
fn make_durable(
    storage: &mut dyn Storage,
    segments: &[u64],
    tail_segment: u64,
) -> Result<(), RecoveryError> {
    for &index in segments.iter().chain(std::iter::once(&tail_segment)) {
        let name = segment_name(index);
        storage
            .sync_data(&name)
            .map_err(io_error(format!("sync {name}")))?;
    }
    storage
        .sync_directory()
        .map_err(io_error("sync the log directory".to_string()))?;
    for &index in segments.iter().filter(|&&index| index != tail_segment) {
        storage.close(&segment_name(index));
    }
    Ok(())
}

/// Segment indexes in order, checked to be consecutive.
fn list_segments(storage: &mut dyn Storage) -> Result<Vec<u64>, RecoveryError> {
    let indexes = live_segments(storage).map_err(io_error("list the log directory".to_string()))?;
    for pair in indexes.windows(2) {
        let expected = pair[0] + 1;
        if pair[1] != expected {
            let reason = Corruption::SegmentGap {
                expected,
                found: pair[1],
            };
            return Err(corrupt(&segment_name(pair[1]), 0, reason));
        }
    }
    Ok(indexes)
}

/// The chain expected at the start of segment 0: record 0, with nothing before it.
pub(crate) fn tail_at_start(segment_index: u64) -> LogTail {
    LogTail {
        segment_index,
        offset: 0,
        record_index: 0,
        sequence: 0,
        timestamp_ns_min: 0,
        checksum_previous: 0,
    }
}

/// Starts the chain at `header`, the first record of segment `segment_index` (not 0) when
/// the segments before it are gone: whatever it holds is taken as the start, except that
/// it cannot be an earlier record than its segment's index (every segment but the newest
/// holds at least one record). Its shard is checked by `check_chain` after this.
pub(crate) fn anchor(
    header: &RecordHeader,
    segment_index: u64,
    tail: &mut LogTail,
) -> Result<(), Corruption> {
    assert!(segment_index > 0);
    if header.record_index < segment_index {
        return Err(Corruption::Chain {
            field: "record_index (minimum)",
            expected: segment_index,
            found: header.record_index,
        });
    }
    tail.record_index = header.record_index;
    tail.sequence = header.sequence_first;
    tail.timestamp_ns_min = header.timestamp_ns;
    tail.checksum_previous = header.checksum_previous;
    Ok(())
}

/// The corruption for a first live segment (not segment 0) without a first record.
fn start_missing(end: &ScanEnd) -> Corruption {
    let reason = match end {
        ScanEnd::EndOfData(_) => "it holds no record".to_string(),
        ScanEnd::Bad(_, error, _) => format!("its first record is bad ({error})"),
    };
    Corruption::Start { reason }
}

/// The validating pass of [`Log::open`]: the chain so far and the reused read buffer.
struct Scan<'a> {
    config: &'a LogConfig,
    /// The record expected next.
    tail: LogTail,
    /// The first record's index, once known: at once for a log starting at segment 0.
    record_index_first: Option<u64>,
    cursor: SegmentCursor,
}

impl Scan<'_> {
    fn new(config: &LogConfig, segment_first: u64) -> Scan<'_> {
        Scan {
            config,
            tail: tail_at_start(segment_first),
            record_index_first: (segment_first == 0).then_some(0),
            cursor: SegmentCursor::new(),
        }
    }

    /// Checks records from the start of a segment until its end of data or a bad record,
    /// each against the chain, advancing `tail`. Keeps nothing but the chain.
    fn segment(&mut self, storage: &mut dyn Storage, name: &str) -> Result<ScanEnd, RecoveryError> {
        let read_error = || io_error(format!("read {name}"));
        self.cursor.open(storage, name).map_err(read_error())?;
        loop {
            let offset = self.cursor.offset();
            let rest = self
                .cursor
                .fill(storage, HEADER_SIZE_BYTES)
                .map_err(read_error())?;
            if rest.is_empty() || record::is_end_of_data(rest) {
                return Ok(ScanEnd::EndOfData(offset));
            }
            let size = match record::decode_header(rest) {
                Ok(header) => header.record_size_bytes(),
                Err(error) => return Ok(ScanEnd::Bad(offset, error, HEADER_SIZE_BYTES)),
            };
            let rest = self.cursor.fill(storage, size).map_err(read_error())?;
            let view = match record::decode_view(rest) {
                Ok(view) => view,
                Err(error) => return Ok(ScanEnd::Bad(offset, error, size)),
            };
            let header = view.header;
            // Check our own work again after reading, as before writing.
            assert_eq!(view.body.len(), header.body_size_bytes as usize);
            if self.record_index_first.is_none() {
                anchor(&header, self.tail.segment_index, &mut self.tail)
                    .map_err(|reason| corrupt(name, offset, reason))?;
                self.record_index_first = Some(header.record_index);
            }
            if let Err(reason) = check_chain(&header, &self.tail, self.config) {
                return Err(corrupt(name, offset, reason));
            }
            advance(&mut self.tail, &header);
            self.cursor.advance(size);
        }
    }
}

/// Moves the chain past `header`, a record that passed `check_chain`.
pub(crate) fn advance(tail: &mut LogTail, header: &RecordHeader) {
    tail.record_index += 1;
    tail.sequence = header.sequence_next();
    tail.timestamp_ns_min = header.timestamp_ns_next_min();
    tail.checksum_previous = header.checksum_header;
}

/// Checks that `header` is the record `tail` expects next.
pub(crate) fn check_chain(
    header: &RecordHeader,
    tail: &LogTail,
    config: &LogConfig,
) -> Result<(), Corruption> {
    let chain = |field, expected: u64, found: u64| Corruption::Chain {
        field,
        expected,
        found,
    };
    if header.shard != config.shard {
        return Err(chain("shard", config.shard.into(), header.shard.into()));
    }
    if header.record_index != tail.record_index {
        return Err(chain(
            "record_index",
            tail.record_index,
            header.record_index,
        ));
    }
    if header.checksum_previous != tail.checksum_previous {
        let (expected, found) = (tail.checksum_previous, header.checksum_previous);
        return Err(chain("checksum_previous", expected.into(), found.into()));
    }
    if header.sequence_first != tail.sequence {
        return Err(chain(
            "sequence_first",
            tail.sequence,
            header.sequence_first,
        ));
    }
    if header.timestamp_ns < tail.timestamp_ns_min {
        return Err(chain(
            "timestamp_ns (minimum)",
            tail.timestamp_ns_min,
            header.timestamp_ns,
        ));
    }
    Ok(())
}

/// A record that does not decode, in segment `name` at `offset`, extending `extent` bytes.
struct BadRecord<'a> {
    name: &'a str,
    offset: u64,
    extent: usize,
    error: RecordError,
}

/// Fails with corruption unless the bad record is a torn tail: no valid header after it in
/// its segment or in any later segment.
fn check_torn(
    storage: &mut dyn Storage,
    bad: &BadRecord<'_>,
    later: &[u64],
    buffer: &mut Vec<u8>,
) -> Result<(), RecoveryError> {
    let found = |valid_segment: String, valid_offset| {
        let reason = Corruption::BadRecord {
            error: bad.error.clone(),
            valid_segment,
            valid_offset,
        };
        corrupt(bad.name, bad.offset, reason)
    };
    // If the bad record's header is whole, its body may be anything a client sent: look
    // for later records only past its extent, so client bytes shaped like a header inside a
    // torn body cannot pass for a later record.
    let from = bad.offset + bad.extent as u64;
    let valid = find_valid_header(storage, bad.name, from, buffer)
        .map_err(io_error(format!("read {}", bad.name)))?;
    if let Some(valid_offset) = valid {
        return Err(found(bad.name.to_string(), valid_offset));
    }
    for &index in later {
        let later_name = segment_name(index);
        let valid = find_valid_header(storage, &later_name, 0, buffer)
            .map_err(io_error(format!("read {later_name}")))?;
        if let Some(valid_offset) = valid {
            return Err(found(later_name, valid_offset));
        }
    }
    Ok(())
}

/// Zeroes the torn tail from its offset to the segment's last non-zero byte, syncs, and
/// removes the later segments (which hold no valid record).
fn cut_back(
    storage: &mut dyn Storage,
    bad: BadRecord<'_>,
    later: &[u64],
    buffer: &mut Vec<u8>,
) -> Result<TornTail, RecoveryError> {
    let name = bad.name;
    let end = end_of_non_zero(storage, name, bad.offset, buffer)
        .map_err(io_error(format!("read {name}")))?;
    if end > bad.offset {
        // One write in the usual case (a torn record is at most one record long).
        buffer.fill(0);
        let mut offset = bad.offset;
        while offset < end {
            let count =
                usize::try_from(end - offset).map_or(buffer.len(), |left| left.min(buffer.len()));
            storage
                .write_at(name, offset, &buffer[..count])
                .map_err(io_error(format!("cut back {name}")))?;
            offset += count as u64;
        }
        storage
            .sync_data(name)
            .map_err(io_error(format!("fdatasync {name}")))?;
    }
    let mut segments_removed = Vec::new();
    for &index in later {
        let later_name = segment_name(index);
        storage
            .remove(&later_name)
            .map_err(io_error(format!("remove {later_name}")))?;
        segments_removed.push(later_name);
    }
    if !segments_removed.is_empty() {
        storage
            .sync_directory()
            .map_err(io_error("fsync the log directory".to_string()))?;
    }
    Ok(TornTail {
        segment: name.to_string(),
        offset: bad.offset,
        reason: bad.error,
        segments_removed,
    })
}

/// Grows the segment being appended to back to its full size, if a crash or a full disk
/// interrupted its creation.
fn preallocate(
    storage: &mut dyn Storage,
    index: u64,
    size_bytes: u64,
) -> Result<(), RecoveryError> {
    let name = segment_name(index);
    let len = storage
        .len(&name)
        .map_err(io_error(format!("stat {name}")))?;
    if len < size_bytes {
        storage
            .allocate(&name, size_bytes)
            .map_err(io_error(format!("preallocate {name}")))?;
        storage
            .sync_data(&name)
            .map_err(io_error(format!("fdatasync {name}")))?;
    }
    Ok(())
}
