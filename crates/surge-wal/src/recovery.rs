//! Recovery: [`Log::open`] reads every segment in order, checks every record and the chain
//! between them, cuts a torn tail back to the last whole record (with a warning), and
//! refuses to open on anything else: a bad record with a valid record after it, a broken
//! chain (missing, repeated or reordered record) or a missing segment. Never skips a record.

use std::io;

use thiserror::Error;

use crate::constants::{HEADER_SIZE_BYTES, RECORD_ALIGNMENT_BYTES};
use crate::log::{Log, LogConfig, LogTail};
use crate::record::{self, Record, RecordError, RecordHeader};
use crate::segment::{create_segment, segment_index, segment_name};
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
        /// Segment file name.
        segment: String,
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong there.
        reason: Corruption,
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

/// What recovery found: every record, in log order, and the torn tail it cut, if any.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Every record of the log, in order.
    pub records: Vec<Record>,
    /// The warning for a cut-back torn tail.
    pub torn_tail: Option<TornTail>,
}

/// How a segment's scan ended.
enum ScanEnd {
    /// An all-zero header, or the end of the file, at this offset.
    EndOfData(u64),
    /// An undecodable record at this offset.
    Bad(u64, RecordError),
}

fn io_error(what: String) -> impl FnOnce(io::Error) -> RecoveryError {
    move |source| RecoveryError::Io { what, source }
}

fn corrupt(segment: &str, offset: u64, reason: Corruption) -> RecoveryError {
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
        let mut tail = LogTail {
            segment_index: segments.first().copied().unwrap_or(0),
            offset: 0,
            record_index: 0,
            sequence: 0,
            timestamp_ns_min: 0,
            checksum_previous: 0,
        };
        let mut recovered = Recovered::default();
        for (position, &index) in segments.iter().enumerate() {
            let name = segment_name(index);
            let bytes = storage
                .read_all(&name)
                .map_err(io_error(format!("read {name}")))?;
            tail.segment_index = index;
            match scan_segment(&bytes, &name, &config, &mut tail, &mut recovered.records)? {
                ScanEnd::EndOfData(offset) => {
                    tail.offset = offset;
                    if let Some(valid_offset) = find_valid_header(&bytes, offset) {
                        return Err(corrupt(&name, offset, Corruption::Hole { valid_offset }));
                    }
                }
                ScanEnd::Bad(offset, error) => {
                    let later = &segments[position + 1..];
                    check_torn(&mut *storage, &name, &bytes, offset, &error, later)?;
                    let torn = cut_back(&mut *storage, &name, &bytes, offset, error, later)?;
                    tail.offset = offset;
                    recovered.torn_tail = Some(torn);
                    break;
                }
            }
        }
        if segments.is_empty() {
            create_segment(&mut *storage, tail.segment_index, config.segment_size_bytes).map_err(
                io_error(format!("create {}", segment_name(tail.segment_index))),
            )?;
        } else {
            preallocate(&mut *storage, tail.segment_index, config.segment_size_bytes)?;
        }
        // What recovery read may have been written but never synced (a killed process, a
        // failed sync, a full disk mid-rotation): make it durable before anything is built
        // on it, or a later acknowledged record could sit behind one a power cut erases.
        for &index in segments.iter().chain(std::iter::once(&tail.segment_index)) {
            let name = segment_name(index);
            storage
                .sync_data(&name)
                .map_err(io_error(format!("sync {name}")))?;
        }
        storage
            .sync_directory()
            .map_err(io_error("sync the log directory".to_string()))?;
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

/// Segment indexes in order, checked to be consecutive.
fn list_segments(storage: &mut dyn Storage) -> Result<Vec<u64>, RecoveryError> {
    let names = storage
        .list()
        .map_err(io_error("list the log directory".to_string()))?;
    let mut indexes: Vec<u64> = names
        .iter()
        .filter_map(|name| segment_index(name))
        .collect();
    indexes.sort_unstable();
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

/// Decodes records from the start of a segment until its end of data or a bad record,
/// checking each against the chain and advancing `tail`.
fn scan_segment(
    bytes: &[u8],
    name: &str,
    config: &LogConfig,
    tail: &mut LogTail,
    records: &mut Vec<Record>,
) -> Result<ScanEnd, RecoveryError> {
    let mut offset = 0usize;
    loop {
        let rest = &bytes[offset..];
        if rest.is_empty() || record::is_end_of_data(rest) {
            return Ok(ScanEnd::EndOfData(offset as u64));
        }
        let record = match record::decode(rest) {
            Ok(record) => record,
            Err(error) => return Ok(ScanEnd::Bad(offset as u64, error)),
        };
        if let Err(reason) = check_chain(&record.header, tail, config) {
            return Err(corrupt(name, offset as u64, reason));
        }
        // Check our own work again after reading, as before writing.
        assert_eq!(record.body.len(), record.header.body_size_bytes as usize);
        tail.record_index += 1;
        tail.sequence = record.header.sequence_next();
        tail.timestamp_ns_min = record.header.timestamp_ns_next_min();
        tail.checksum_previous = record.header.checksum_header;
        offset += record.header.record_size_bytes();
        records.push(record);
    }
}

/// Checks that `header` is the record `tail` expects next.
fn check_chain(
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

/// Offset of the first valid header at or after `from` (in 64-byte steps), if any.
fn find_valid_header(bytes: &[u8], from: u64) -> Option<u64> {
    let start = usize::try_from(from).ok()?;
    (start..bytes.len())
        .step_by(RECORD_ALIGNMENT_BYTES)
        .find(|&offset| record::decode_header(&bytes[offset..]).is_ok())
        .map(|offset| offset as u64)
}

/// Fails with corruption unless the bad record at `offset` is a torn tail: no valid header
/// after it in its segment or in any later segment.
fn check_torn(
    storage: &mut dyn Storage,
    name: &str,
    bytes: &[u8],
    offset: u64,
    error: &RecordError,
    later: &[u64],
) -> Result<(), RecoveryError> {
    let bad = |valid_segment: String, valid_offset| {
        let reason = Corruption::BadRecord {
            error: error.clone(),
            valid_segment,
            valid_offset,
        };
        corrupt(name, offset, reason)
    };
    // If the bad record's header is whole, its body may be anything a client sent: look
    // for later records only past its extent, so client bytes shaped like a header inside a
    // torn body cannot pass for a later record.
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let extent = record::decode_header(&bytes[start..])
        .map_or(HEADER_SIZE_BYTES, |header| header.record_size_bytes());
    if let Some(valid_offset) = find_valid_header(bytes, offset + extent as u64) {
        return Err(bad(name.to_string(), valid_offset));
    }
    for &index in later {
        let later_name = segment_name(index);
        let later_bytes = storage
            .read_all(&later_name)
            .map_err(io_error(format!("read {later_name}")))?;
        if let Some(valid_offset) = find_valid_header(&later_bytes, 0) {
            return Err(bad(later_name, valid_offset));
        }
    }
    Ok(())
}

/// Zeroes the torn tail from `offset` to the segment's last non-zero byte, syncs, and
/// removes the later segments (which hold no valid record).
fn cut_back(
    storage: &mut dyn Storage,
    name: &str,
    bytes: &[u8],
    offset: u64,
    reason: RecordError,
    later: &[u64],
) -> Result<TornTail, RecoveryError> {
    let start = usize::try_from(offset)
        .unwrap_or(bytes.len())
        .min(bytes.len());
    let end = bytes[start..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(start, |last| start + last + 1);
    if end > start {
        let zeros = vec![0u8; end - start];
        storage
            .write_at(name, offset, &zeros)
            .map_err(io_error(format!("cut back {name}")))?;
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
        offset,
        reason,
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
            .set_len(&name, size_bytes)
            .map_err(io_error(format!("preallocate {name}")))?;
        storage
            .sync_data(&name)
            .map_err(io_error(format!("fdatasync {name}")))?;
    }
    Ok(())
}
