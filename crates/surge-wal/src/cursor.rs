//! Reading a segment front to back through one reused buffer, in large reads
//! (`READ_CHUNK_SIZE_BYTES`), so recovery and the reader never hold more than a chunk of the
//! log in memory and never read a segment with one allocation per record. Also the two
//! scans recovery makes past a segment's end of data: for a valid header, and for the last
//! non-zero byte.

use std::io;

use crate::constants::{READ_CHUNK_SIZE_BYTES, RECORD_ALIGNMENT_BYTES};
use crate::record;
use crate::storage::Storage;

/// A position in one segment file and the bytes read ahead of it.
pub(crate) struct SegmentCursor {
    /// The segment's storage name; empty before the first `open`.
    name: String,
    /// The segment's length when it was opened, in bytes.
    file_len: u64,
    /// Reused: as long as the longest segment opened so far, up to `READ_CHUNK_SIZE_BYTES`.
    buffer: Vec<u8>,
    /// Segment offset of `buffer[0]`.
    buffer_offset: u64,
    /// `buffer[start..end]` holds the bytes from the cursor's position on.
    start: usize,
    end: usize,
}

impl SegmentCursor {
    /// A cursor on no segment yet. Its buffer is allocated by the first `open`.
    pub(crate) fn new() -> SegmentCursor {
        SegmentCursor {
            name: String::new(),
            file_len: 0,
            buffer: Vec::new(),
            buffer_offset: 0,
            start: 0,
            end: 0,
        }
    }

    /// Moves to offset 0 of segment file `name`, closing the previous segment's handle.
    pub(crate) fn open(&mut self, storage: &mut dyn Storage, name: &str) -> io::Result<()> {
        if !self.name.is_empty() && self.name != name {
            storage.close(&self.name);
        }
        self.file_len = storage.len(name)?;
        self.name = name.to_string();
        grow_for(&mut self.buffer, self.file_len);
        self.buffer_offset = 0;
        self.start = 0;
        self.end = 0;
        Ok(())
    }

    /// The segment's storage name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The segment offset the cursor is at.
    pub(crate) fn offset(&self) -> u64 {
        self.buffer_offset + self.start as u64
    }

    /// The bytes from the cursor on: at least `want` of them, or all that are left of the
    /// segment if fewer (so a record check sees exactly what a whole-file read would). The
    /// buffer holds a whole chunk or the whole segment, so either fits.
    pub(crate) fn fill(&mut self, storage: &mut dyn Storage, want: usize) -> io::Result<&[u8]> {
        assert!(want <= READ_CHUNK_SIZE_BYTES);
        if self.end - self.start < want {
            // Keep the unread bytes, then read as much as the buffer takes behind them.
            self.buffer.copy_within(self.start..self.end, 0);
            self.buffer_offset += self.start as u64;
            self.end -= self.start;
            self.start = 0;
            while self.end < self.buffer.len()
                && self.buffer_offset + (self.end as u64) < self.file_len
            {
                let at = self.buffer_offset + self.end as u64;
                let read = storage.read_at(&self.name, at, &mut self.buffer[self.end..])?;
                if read == 0 {
                    break;
                }
                self.end += read;
            }
        }
        Ok(&self.buffer[self.start..self.end])
    }

    /// Moves the cursor `count` bytes on (past bytes not read yet, too).
    pub(crate) fn advance(&mut self, count: usize) {
        if count <= self.end - self.start {
            self.start += count;
        } else {
            self.buffer_offset = self.offset() + count as u64;
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Offset of the first valid record header at or after `from` in segment file `name`, in
/// 64-byte steps, reading it in chunks through `buffer`.
pub(crate) fn find_valid_header(
    storage: &mut dyn Storage,
    name: &str,
    from: u64,
    buffer: &mut Vec<u8>,
) -> io::Result<Option<u64>> {
    grow_for(buffer, storage.len(name)?.saturating_sub(from));
    let mut chunk_offset = from;
    loop {
        let read = storage.read_at(name, chunk_offset, buffer)?;
        let chunk = &buffer[..read];
        // Chunks are a multiple of 64 bytes long, so a header never straddles two.
        let found = (0..chunk.len())
            .step_by(RECORD_ALIGNMENT_BYTES)
            .find(|&at| record::decode_header(&chunk[at..]).is_ok());
        if let Some(at) = found {
            return Ok(Some(chunk_offset + at as u64));
        }
        if read < buffer.len() {
            return Ok(None);
        }
        chunk_offset += read as u64;
    }
}

/// One past the last non-zero byte at or after `from` in segment file `name` (`from` if
/// there is none), reading it in chunks through `buffer`.
pub(crate) fn end_of_non_zero(
    storage: &mut dyn Storage,
    name: &str,
    from: u64,
    buffer: &mut Vec<u8>,
) -> io::Result<u64> {
    grow_for(buffer, storage.len(name)?.saturating_sub(from));
    let mut end = from;
    let mut chunk_offset = from;
    loop {
        let read = storage.read_at(name, chunk_offset, buffer)?;
        if let Some(last) = buffer[..read].iter().rposition(|&b| b != 0) {
            end = chunk_offset + last as u64 + 1;
        }
        if read < buffer.len() {
            return Ok(end);
        }
        chunk_offset += read as u64;
    }
}

/// Grows `buffer` to hold `len_bytes` (rounded up to 64), or one chunk if that is less:
/// small segments (as in tests) never pay for zeroing a whole chunk. Never shrinks it.
fn grow_for(buffer: &mut Vec<u8>, len_bytes: u64) {
    let wanted = usize::try_from(len_bytes)
        .unwrap_or(usize::MAX)
        .clamp(RECORD_ALIGNMENT_BYTES, READ_CHUNK_SIZE_BYTES)
        .next_multiple_of(RECORD_ALIGNMENT_BYTES);
    if buffer.len() < wanted {
        buffer.resize(wanted, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    #[test]
    fn fill_returns_what_a_whole_file_read_would() {
        let mut storage = SimStorage::new();
        storage.create("s").unwrap();
        let bytes: Vec<u8> = (0..READ_CHUNK_SIZE_BYTES + 1000).map(|i| i as u8).collect();
        storage.write_at("s", 0, &bytes).unwrap();
        let mut cursor = SegmentCursor::new();
        cursor.open(&mut storage, "s").unwrap();
        let mut position = 0;
        for step in [10, 4096, READ_CHUNK_SIZE_BYTES - 5000, 900, 500] {
            let seen = cursor.fill(&mut storage, step).unwrap();
            let left = bytes.len() - position;
            assert!(seen.len() >= step.min(left));
            assert_eq!(seen, &bytes[position..position + seen.len()]);
            let moved = step.min(left);
            cursor.advance(moved);
            position += moved;
            assert_eq!(cursor.offset(), position as u64);
        }
        let left = bytes.len() - position;
        assert_eq!(cursor.fill(&mut storage, 4096).unwrap().len(), left);
        cursor.advance(left);
        assert!(cursor.fill(&mut storage, 64).unwrap().is_empty());
    }

    #[test]
    fn advancing_past_the_buffer_skips_without_reading() {
        let mut storage = SimStorage::new();
        storage.create("s").unwrap();
        storage.write_at("s", 5000, b"here").unwrap();
        let mut cursor = SegmentCursor::new();
        cursor.open(&mut storage, "s").unwrap();
        cursor.advance(5000);
        assert_eq!(cursor.offset(), 5000);
        assert_eq!(&cursor.fill(&mut storage, 4).unwrap()[..4], b"here");
    }

    #[test]
    fn scans_past_the_end_of_data() {
        let mut storage = SimStorage::new();
        storage.create("s").unwrap();
        let size = 2 * READ_CHUNK_SIZE_BYTES as u64 + 4096;
        storage.set_len("s", size).unwrap();
        let mut buffer = Vec::new();
        assert_eq!(
            find_valid_header(&mut storage, "s", 0, &mut buffer).unwrap(),
            None
        );
        assert_eq!(
            end_of_non_zero(&mut storage, "s", 64, &mut buffer).unwrap(),
            64
        );
        let header = record::RecordHeader {
            shard: 0,
            record_index: 3,
            sequence_first: 0,
            timestamp_ns: 0,
            count: 0,
            operation: surge_core::Operation::Pulse,
            body_size_bytes: 0,
            checksum_previous: 0,
            checksum_body: 0,
            checksum_header: 0,
        };
        let mut encoded = Vec::new();
        record::encode(&header, &[], &mut encoded);
        let at = READ_CHUNK_SIZE_BYTES as u64 + 640;
        storage.write_at("s", at, &encoded).unwrap();
        storage.write_at("s", size - 1, &[7]).unwrap();
        assert_eq!(
            find_valid_header(&mut storage, "s", 64, &mut buffer).unwrap(),
            Some(at)
        );
        assert_eq!(
            find_valid_header(&mut storage, "s", at + 64, &mut buffer).unwrap(),
            None
        );
        assert_eq!(
            end_of_non_zero(&mut storage, "s", 0, &mut buffer).unwrap(),
            size
        );
    }
}
