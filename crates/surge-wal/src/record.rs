//! The log record format: a 64-byte header, then the batch body zero-padded to 64 bytes.
//!
//! ```text
//! offset size field
//!  0     4    magic             0x4C475253, "SRGL" as little-endian bytes 53 52 47 4C
//!  4     2    format_version    1
//!  6     2    shard             the shard whose log this is
//!  8     8    record_index      0, 1, 2, … across the whole log
//! 16     8    sequence_first    sequence number of the first command; next record's
//!                               sequence_first = this sequence_first + count
//! 24     8    timestamp_ns      log time of the first command; command i is at T + i;
//!                               next record's T > T + max(count, 1) - 1
//! 32     4    count             commands in the body
//! 36     1    operation         surge_core::Operation as u8
//! 37     3    reserved          zero
//! 40     4    body_size_bytes   count × operation.record_size_bytes() (without padding)
//! 44     4    checksum_previous checksum_header of the previous record (0 for record 0)
//! 48     4    checksum_body     crc32c of the body including its padding
//! 52     4    reserved          zero
//! 56     4    reserved          zero
//! 60     4    checksum_header   crc32c of bytes 0..60
//! 64     …    body              body_size_bytes, then zeros up to a multiple of 64
//! ```
//!
//! All integers are little-endian. An all-zero header marks the end of a segment's data.
//! [`decode`] never panics on any bytes; it checks, in order: length, magic, version,
//! header checksum, reserved bytes, operation, body size, body checksum, padding.

use surge_core::Operation;
use thiserror::Error;

use crate::constants::{
    BODY_SIZE_BYTES_MAX, FORMAT_VERSION, HEADER_SIZE_BYTES, MAGIC, RECORD_ALIGNMENT_BYTES,
    RECORD_EVENTS_MAX,
};

/// The decoded fields of a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The shard whose log this is.
    pub shard: u16,
    /// Position of the record in the whole log, from 0.
    pub record_index: u64,
    /// Sequence number of the first command.
    pub sequence_first: u64,
    /// Log time of the first command, in ns.
    pub timestamp_ns: u64,
    /// Commands in the body.
    pub count: u32,
    /// What the commands are.
    pub operation: Operation,
    /// Body size without padding, in bytes.
    pub body_size_bytes: u32,
    /// `checksum_header` of the previous record (0 for record 0).
    pub checksum_previous: u32,
    /// crc32c of the padded body.
    pub checksum_body: u32,
    /// crc32c of header bytes 0..60.
    pub checksum_header: u32,
}

impl RecordHeader {
    /// Size of the whole record on disk (header, body, padding), in bytes.
    pub fn record_size_bytes(&self) -> usize {
        record_size_bytes(self.body_size_bytes as usize)
    }

    /// Sequence number one past this record's last command.
    pub fn sequence_next(&self) -> u64 {
        // Saturating: a header read from disk may hold any value, and must not panic.
        self.sequence_first.saturating_add(u64::from(self.count))
    }

    /// Smallest timestamp the next record may have, in ns.
    pub fn timestamp_ns_next_min(&self) -> u64 {
        self.timestamp_ns
            .saturating_add(u64::from(self.count.max(1)))
    }
}

/// A whole record: its header and its body (without padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The header fields.
    pub header: RecordHeader,
    /// `count` fixed-size commands, `body_size_bytes` long.
    pub body: Vec<u8>,
}

/// A checked record still in the buffer it was read into: its header and its body
/// (without padding), borrowed, so a reader can check records without copying them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The header fields.
    pub header: RecordHeader,
    /// `count` fixed-size commands, `body_size_bytes` long.
    pub body: &'a [u8],
}

/// Why bytes are not a valid record.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the header or the record needs.
    #[error("too short: need {expected} bytes, found {found}")]
    TooShort {
        /// Bytes needed.
        expected: usize,
        /// Bytes available.
        found: usize,
    },
    /// The header does not start with the magic number.
    #[error("bad magic: expected {expected:#010x}, found {found:#010x}")]
    Magic {
        /// [`MAGIC`].
        expected: u32,
        /// What the bytes hold.
        found: u32,
    },
    /// A format version this code does not read.
    #[error("unknown format version: expected {expected}, found {found}")]
    Version {
        /// [`FORMAT_VERSION`].
        expected: u16,
        /// What the header holds.
        found: u16,
    },
    /// The header checksum does not match bytes 0..60.
    #[error("header checksum mismatch: computed {expected:#010x}, stored {found:#010x}")]
    ChecksumHeader {
        /// crc32c of the header bytes.
        expected: u32,
        /// The stored checksum.
        found: u32,
    },
    /// A reserved header byte is not zero.
    #[error("reserved header byte {offset} is {found:#04x}, expected 0")]
    Reserved {
        /// Offset of the byte in the header.
        offset: usize,
        /// Its value.
        found: u8,
    },
    /// The operation byte names no operation.
    #[error("unknown operation {found}")]
    Operation {
        /// The byte.
        found: u8,
    },
    /// The body size does not match count × record size, or passes the limits.
    #[error("bad body size: expected {expected} (count {count}), found {found}")]
    BodySize {
        /// count × the operation's record size.
        expected: u64,
        /// The command count.
        count: u32,
        /// The stored size.
        found: u32,
    },
    /// The body checksum does not match the body.
    #[error("body checksum mismatch: computed {expected:#010x}, stored {found:#010x}")]
    ChecksumBody {
        /// crc32c of the padded body.
        expected: u32,
        /// The stored checksum.
        found: u32,
    },
    /// A padding byte after the body is not zero.
    #[error("padding byte at record offset {offset} is {found:#04x}, expected 0")]
    Padding {
        /// Offset of the byte from the start of the record.
        offset: usize,
        /// Its value.
        found: u8,
    },
}

/// Size of a record with a body of `body_size_bytes` on disk, in bytes.
pub fn record_size_bytes(body_size_bytes: usize) -> usize {
    HEADER_SIZE_BYTES + body_size_bytes.div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut value = [0u8; 4];
    value.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(value)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(value)
}

/// Appends one record (header, body, padding) to `out` and returns its header.
/// `header.body_size_bytes`, `checksum_body` and `checksum_header` are computed here;
/// the other fields are taken from `header` as given.
pub fn encode(header: &RecordHeader, body: &[u8], out: &mut Vec<u8>) -> RecordHeader {
    let size = Operation::record_size_bytes(header.operation);
    assert!(header.count as usize <= RECORD_EVENTS_MAX);
    assert_eq!(body.len(), header.count as usize * size);
    assert!(body.len() <= BODY_SIZE_BYTES_MAX);
    let start = out.len();
    assert!(start % RECORD_ALIGNMENT_BYTES == 0);
    out.resize(start + HEADER_SIZE_BYTES, 0);
    out.extend_from_slice(body);
    out.resize(start + record_size_bytes(body.len()), 0);
    let checksum_body = crc32c::crc32c(&out[start + HEADER_SIZE_BYTES..]);
    let header_bytes = &mut out[start..start + HEADER_SIZE_BYTES];
    header_bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header_bytes[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header_bytes[6..8].copy_from_slice(&header.shard.to_le_bytes());
    header_bytes[8..16].copy_from_slice(&header.record_index.to_le_bytes());
    header_bytes[16..24].copy_from_slice(&header.sequence_first.to_le_bytes());
    header_bytes[24..32].copy_from_slice(&header.timestamp_ns.to_le_bytes());
    header_bytes[32..36].copy_from_slice(&header.count.to_le_bytes());
    header_bytes[36] = header.operation as u8;
    header_bytes[40..44].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header_bytes[44..48].copy_from_slice(&header.checksum_previous.to_le_bytes());
    header_bytes[48..52].copy_from_slice(&checksum_body.to_le_bytes());
    let checksum_header = crc32c::crc32c(&header_bytes[0..60]);
    header_bytes[60..64].copy_from_slice(&checksum_header.to_le_bytes());
    RecordHeader {
        body_size_bytes: body.len() as u32,
        checksum_body,
        checksum_header,
        ..*header
    }
}

/// True if `bytes` starts with an all-zero header: the end of a segment's data.
pub fn is_end_of_data(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_SIZE_BYTES && bytes[..HEADER_SIZE_BYTES].iter().all(|&b| b == 0)
}

/// Decodes and checks a header alone (length, magic, version, checksum, reserved bytes,
/// operation, body size). Does not look at the body.
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
    if bytes.len() < HEADER_SIZE_BYTES {
        return Err(RecordError::TooShort {
            expected: HEADER_SIZE_BYTES,
            found: bytes.len(),
        });
    }
    let magic = u32_at(bytes, 0);
    if magic != MAGIC {
        return Err(RecordError::Magic {
            expected: MAGIC,
            found: magic,
        });
    }
    let version = u16_at(bytes, 4);
    if version != FORMAT_VERSION {
        return Err(RecordError::Version {
            expected: FORMAT_VERSION,
            found: version,
        });
    }
    let checksum_header = u32_at(bytes, 60);
    let computed = crc32c::crc32c(&bytes[0..60]);
    if computed != checksum_header {
        return Err(RecordError::ChecksumHeader {
            expected: computed,
            found: checksum_header,
        });
    }
    for offset in (37..40).chain(52..60) {
        if bytes[offset] != 0 {
            return Err(RecordError::Reserved {
                offset,
                found: bytes[offset],
            });
        }
    }
    let operation =
        Operation::from_u8(bytes[36]).ok_or(RecordError::Operation { found: bytes[36] })?;
    let count = u32_at(bytes, 32);
    let body_size_bytes = u32_at(bytes, 40);
    let expected = u64::from(count) * operation.record_size_bytes() as u64;
    let within_limits =
        count as usize <= RECORD_EVENTS_MAX && body_size_bytes as usize <= BODY_SIZE_BYTES_MAX;
    if expected != u64::from(body_size_bytes) || !within_limits {
        return Err(RecordError::BodySize {
            expected,
            count,
            found: body_size_bytes,
        });
    }
    Ok(RecordHeader {
        shard: u16_at(bytes, 6),
        record_index: u64_at(bytes, 8),
        sequence_first: u64_at(bytes, 16),
        timestamp_ns: u64_at(bytes, 24),
        count,
        operation,
        body_size_bytes,
        checksum_previous: u32_at(bytes, 44),
        checksum_body: u32_at(bytes, 48),
        checksum_header,
    })
}

/// Decodes and checks the record at the start of `bytes` (which may run on past it).
pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
    decode_view(bytes).map(|view| Record {
        header: view.header,
        body: view.body.to_vec(),
    })
}

/// [`decode`] without copying the body: the same checks, in the same order.
pub fn decode_view(bytes: &[u8]) -> Result<RecordView<'_>, RecordError> {
    let header = decode_header(bytes)?;
    let size = header.record_size_bytes();
    if bytes.len() < size {
        return Err(RecordError::TooShort {
            expected: size,
            found: bytes.len(),
        });
    }
    let padded = &bytes[HEADER_SIZE_BYTES..size];
    let computed = crc32c::crc32c(padded);
    if computed != header.checksum_body {
        return Err(RecordError::ChecksumBody {
            expected: computed,
            found: header.checksum_body,
        });
    }
    let body_size = header.body_size_bytes as usize;
    if let Some(position) = padded[body_size..].iter().position(|&b| b != 0) {
        let offset = HEADER_SIZE_BYTES + body_size + position;
        return Err(RecordError::Padding {
            offset,
            found: bytes[offset],
        });
    }
    Ok(RecordView {
        header,
        body: &padded[..body_size],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::split_mix;

    fn header(operation: Operation, count: u32) -> RecordHeader {
        RecordHeader {
            shard: 3,
            record_index: 7,
            sequence_first: 100,
            timestamp_ns: 5_000,
            count,
            operation,
            body_size_bytes: 0,
            checksum_previous: 0xDEAD_BEEF,
            checksum_body: 0,
            checksum_header: 0,
        }
    }

    #[test]
    fn round_trips_every_operation() {
        for &operation in Operation::ALL {
            for count in [0u32, 1, 3] {
                let count = if operation == Operation::Pulse {
                    0
                } else {
                    count
                };
                let body: Vec<u8> = (0..count as usize * operation.record_size_bytes())
                    .map(|i| (i * 7 + 1) as u8)
                    .collect();
                let mut out = Vec::new();
                let written = encode(&header(operation, count), &body, &mut out);
                assert_eq!(out.len() % RECORD_ALIGNMENT_BYTES, 0);
                assert_eq!(out.len(), written.record_size_bytes());
                let record = decode(&out).unwrap();
                assert_eq!(record.header, written);
                assert_eq!(record.body, body);
                assert_eq!(record.header.checksum_previous, 0xDEAD_BEEF);
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let body = vec![0xA5u8; 3 * Operation::CreateTransfers.record_size_bytes()];
        let mut out = Vec::new();
        encode(&header(Operation::CreateTransfers, 3), &body, &mut out);
        for index in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[index] ^= 1 << bit;
                assert!(
                    decode(&bad).is_err(),
                    "flip of bit {bit} of byte {index} passed"
                );
            }
        }
    }

    #[test]
    fn checks_in_order() {
        let mut out = Vec::new();
        encode(&header(Operation::CreateAccounts, 1), &[1u8; 128], &mut out);
        assert!(matches!(
            decode(&out[..10]),
            Err(RecordError::TooShort { .. })
        ));
        assert!(matches!(
            decode(&out[..100]),
            Err(RecordError::TooShort { .. })
        ));
        let mut bad = out.clone();
        bad[0] = 0;
        assert!(matches!(decode(&bad), Err(RecordError::Magic { .. })));
        let mut bad = out.clone();
        bad[4] = 2;
        assert!(matches!(decode(&bad), Err(RecordError::Version { .. })));
        let mut bad = out.clone();
        bad[70] ^= 1;
        assert!(matches!(
            decode(&bad),
            Err(RecordError::ChecksumBody { .. })
        ));
        // A reserved byte set and the header checksum recomputed.
        let mut bad = out.clone();
        bad[53] = 1;
        let checksum = crc32c::crc32c(&bad[0..60]);
        bad[60..64].copy_from_slice(&checksum.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(RecordError::Reserved { offset: 53, .. })
        ));
        let mut bad = out.clone();
        bad[36] = 200;
        let checksum = crc32c::crc32c(&bad[0..60]);
        bad[60..64].copy_from_slice(&checksum.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(RecordError::Operation { found: 200 })
        ));
        let mut bad = out;
        bad[40] = 1;
        let checksum = crc32c::crc32c(&bad[0..60]);
        bad[60..64].copy_from_slice(&checksum.to_le_bytes());
        assert!(matches!(decode(&bad), Err(RecordError::BodySize { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = 42u64;
        let mut valid = Vec::new();
        encode(&header(Operation::Reserve, 2), &[9u8; 128], &mut valid);
        for round in 0..20_000 {
            let len = (split_mix(&mut rng) % 400) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| split_mix(&mut rng) as u8).collect();
            if round % 2 == 0 {
                // Start from a valid record so the later checks are reached too.
                bytes = valid.clone();
                let flips = split_mix(&mut rng) % 4;
                for _ in 0..flips {
                    let index = (split_mix(&mut rng) % bytes.len() as u64) as usize;
                    bytes[index] = split_mix(&mut rng) as u8;
                }
                bytes.truncate((split_mix(&mut rng) % (bytes.len() as u64 + 1)) as usize);
            }
            let _ = decode(&bytes);
            let _ = decode_header(&bytes);
        }
    }
}
