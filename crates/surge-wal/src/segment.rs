//! Segment files: names, and creating one preallocated, with the directory synced.

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

/// Creates segment `index`, preallocated (zero-filled) to `size_bytes`, makes its size
/// durable and then its directory entry, so a crash never leaves a segment whose entry
/// exists but whose zeroed space does not.
pub fn create_segment(
    storage: &mut dyn Storage,
    index: u64,
    size_bytes: u64,
) -> std::io::Result<String> {
    let name = segment_name(index);
    storage.create(&name)?;
    storage.set_len(&name, size_bytes)?;
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
    }
}
