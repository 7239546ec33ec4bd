//! Segment files: names (live `segment-00000042.log`, archived
//! `archive/segment-00000042.log`), listing them, reading a segment's first header, and
//! creating one preallocated, with the directory synced.

use std::io;

use crate::constants::{ARCHIVE_DIRECTORY_NAME, HEADER_SIZE_BYTES};
use crate::record::{self, RecordError, RecordHeader};
use crate::storage::Storage;

/// The file name of segment `index`: `segment-00000042.log`.
pub fn segment_name(index: u64) -> String {
    format!("segment-{index:08}.log")
}

/// The index of a segment file name, or `None` for any other name.
pub fn segment_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".log")?;
    if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The storage name of archived segment `index`: `archive/segment-00000042.log`.
pub fn archived_segment_name(index: u64) -> String {
    format!("{ARCHIVE_DIRECTORY_NAME}/{}", segment_name(index))
}

/// Indexes of the live segments (in the log directory itself), sorted; gaps not checked.
pub fn live_segments(storage: &mut dyn Storage) -> io::Result<Vec<u64>> {
    let mut indexes: Vec<u64> = storage
        .list()?
        .iter()
        .filter_map(|name| segment_index(name))
        .collect();
    indexes.sort_unstable();
    Ok(indexes)
}

/// Indexes of the archived segments (in `archive/`), sorted; gaps not checked.
pub fn archived_segments(storage: &mut dyn Storage) -> io::Result<Vec<u64>> {
    let mut indexes: Vec<u64> = storage
        .list_directory(ARCHIVE_DIRECTORY_NAME)?
        .iter()
        .filter_map(|name| segment_index(name))
        .collect();
    indexes.sort_unstable();
    Ok(indexes)
}

/// The header of the record at offset 0 of segment file `name`, checked alone (see
/// [`record::decode_header`]); an error for an empty segment or a bad header. Reads 64
/// bytes: how a segment holding a given record index is found without reading bodies.
pub fn first_header(
    storage: &mut dyn Storage,
    name: &str,
) -> io::Result<Result<RecordHeader, RecordError>> {
    let mut bytes = [0u8; HEADER_SIZE_BYTES];
    let read = storage.read_at(name, 0, &mut bytes)?;
    Ok(record::decode_header(&bytes[..read]))
}

/// Creates segment `index`, preallocated (zero-filled, its blocks reserved) to
/// `size_bytes`, makes its size durable and then its directory entry, so a crash never
/// leaves a segment whose entry exists but whose zeroed space does not.
pub fn create_segment(
    storage: &mut dyn Storage,
    index: u64,
    size_bytes: u64,
) -> std::io::Result<String> {
    let name = segment_name(index);
    storage.create(&name)?;
    storage.allocate(&name, size_bytes)?;
    storage.sync_data(&name)?;
    storage.sync_directory()?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(42), "segment-00000042.log");
        assert_eq!(segment_index("segment-00000042.log"), Some(42));
        assert_eq!(
            segment_index(&segment_name(123_456_789_012)),
            Some(123_456_789_012)
        );
        assert_eq!(segment_index("segment-42.log"), None);
        assert_eq!(segment_index("segment-0000004x.log"), None);
        assert_eq!(segment_index("other"), None);
        assert_eq!(archived_segment_name(7), "archive/segment-00000007.log");
    }
}
