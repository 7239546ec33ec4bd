//! Limits and fixed numbers of the log, with their units. The relations between them are
//! checked at compile time, so a change that breaks one fails the build.

use surge_core::constants::{BATCH_BODY_SIZE_BYTES_MAX, BATCH_EVENTS_MAX};

/// Size of a record header, in bytes.
pub const HEADER_SIZE_BYTES: usize = 64;

/// Every record starts on a multiple of this, in bytes; bodies are zero-padded to it.
pub const RECORD_ALIGNMENT_BYTES: usize = 64;

/// The first four bytes of every record header: "SRGL" read as a little-endian u32.
pub const MAGIC: u32 = 0x4C47_5253;

/// The record format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Most commands in one record (one batch).
pub const RECORD_EVENTS_MAX: usize = BATCH_EVENTS_MAX;

/// Largest record body before padding, in bytes.
pub const BODY_SIZE_BYTES_MAX: usize = BATCH_BODY_SIZE_BYTES_MAX;

/// Largest record on disk (header, body and padding), in bytes.
pub const RECORD_SIZE_BYTES_MAX: usize = HEADER_SIZE_BYTES
    + BODY_SIZE_BYTES_MAX.div_ceil(RECORD_ALIGNMENT_BYTES) * RECORD_ALIGNMENT_BYTES;

/// Default size of one preallocated segment file, in bytes.
pub const SEGMENT_SIZE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Smallest segment size a config may ask for, in bytes.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 4096;

/// Name of the log's subdirectory inside a data directory.
pub const LOG_DIRECTORY_NAME: &str = "log";

/// Bytes freed per step of [`crate::remove_in_steps`]: one journal commit's worth of freed
/// blocks, so a sync of another file waits behind at most this much. A file no larger is
/// only unlinked.
pub const REMOVE_STEP_BYTES: u64 = 4 << 20;

/// Bytes appended between two starts of writeback by a [`crate::WriteBehind`].
pub const WRITE_BEHIND_STEP_BYTES: u64 = 1 << 20;

/// Name of the subdirectory of the log directory that archived segments are moved to.
pub const ARCHIVE_DIRECTORY_NAME: &str = "archive";

/// Bytes read from a segment at once (into one reused buffer) by recovery and the reader.
pub const READ_CHUNK_SIZE_BYTES: usize = 8 * 1024 * 1024;

/// Default bound of the group-commit submission queue, in submissions.
pub const SUBMIT_QUEUE_DEPTH_MAX_DEFAULT: usize = 1024;

/// Default bound of one group (one write, one fdatasync), in encoded bytes.
pub const GROUP_SIZE_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// Default bound of the durable-record channel to the apply stage, in records.
pub const OUTPUT_QUEUE_DEPTH_MAX_DEFAULT: usize = 1024;

/// Highest sync latency the histogram tracks, in microseconds (longer ones are clamped).
pub const SYNC_LATENCY_US_MAX: u64 = 60 * 1_000_000;

const _: () = assert!(HEADER_SIZE_BYTES % RECORD_ALIGNMENT_BYTES == 0);
const _: () = assert!(SEGMENT_SIZE_BYTES_MIN as usize % RECORD_ALIGNMENT_BYTES == 0);
const _: () = assert!(SEGMENT_SIZE_BYTES_DEFAULT as usize % RECORD_ALIGNMENT_BYTES == 0);
// With the default segment size, every record fits in one segment.
const _: () = assert!(RECORD_SIZE_BYTES_MAX as u64 <= SEGMENT_SIZE_BYTES_DEFAULT);
// With the default group size, the largest record fits in one group.
const _: () = assert!(RECORD_SIZE_BYTES_MAX <= GROUP_SIZE_BYTES_MAX_DEFAULT);
// Every record fits in one read chunk, and chunks keep 64-byte headers whole.
const _: () = assert!(RECORD_SIZE_BYTES_MAX <= READ_CHUNK_SIZE_BYTES);
const _: () = assert!(READ_CHUNK_SIZE_BYTES % RECORD_ALIGNMENT_BYTES == 0);
// The header's u32 count and body size fields hold every legal value.
const _: () = assert!(RECORD_EVENTS_MAX <= u32::MAX as usize);
const _: () = assert!(BODY_SIZE_BYTES_MAX <= u32::MAX as usize);
