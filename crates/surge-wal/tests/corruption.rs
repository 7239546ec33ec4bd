//! Corruption tests on real files: a torn tail (the log truncated at every byte of its last
//! record) is cut back with a warning; a flipped byte, a removed record, swapped records, a
//! torn record before a later segment, and a missing segment are errors naming the place.

mod common;

use std::path::{Path, PathBuf};

use common::{records, write_log, Placed};
use surge_core::Operation;
use surge_wal::{Corruption, FileStorage, Log, LogConfig, Record, Recovered, RecoveryError};

const SEGMENT_SIZE_BYTES: u64 = 4096;

fn config() -> LogConfig {
    LogConfig {
        shard: 1,
        segment_size_bytes: SEGMENT_SIZE_BYTES,
    }
}

fn log_dir(root: &Path) -> PathBuf {
    root.join("log")
}

/// Opens the log under `root` and reads all its records back.
fn open(root: &Path) -> Result<(Log, Recovered, Vec<Record>), RecoveryError> {
    common::open_all(
        Box::new(FileStorage::for_data_directory(root).unwrap()),
        config(),
    )
}

fn setup(count: usize) -> (tempfile::TempDir, Vec<Placed>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FileStorage::for_data_directory(dir.path()).unwrap();
    let placed = write_log(Box::new(storage), config(), count);
    (dir, placed)
}

fn corrupt_at(error: RecoveryError) -> (String, u64, Corruption) {
    match error {
        RecoveryError::Corrupt {
            segment,
            offset,
            reason,
        } => (segment, offset, reason),
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn truncation_at_every_byte_of_the_last_record_is_a_torn_tail() {
    let (dir, placed) = setup(6);
    let last = placed.last().unwrap();
    let path = log_dir(dir.path()).join(&last.segment);
    let pristine = std::fs::read(&path).unwrap();
    let size = last.record.header.record_size_bytes();
    for kept in 0..size {
        for zero_fill in [false, true] {
            // Either the file ends inside the record, or the rest of it reads as zeros (a
            // torn write into preallocated space).
            let mut bytes = pristine.clone();
            let cut = last.offset as usize + kept;
            if zero_fill {
                bytes[cut..].fill(0);
            } else {
                bytes.truncate(cut);
            }
            std::fs::write(&path, &bytes).unwrap();
            let (mut log, recovered, read) = open(dir.path()).unwrap();
            assert_eq!(read, records(&placed[..placed.len() - 1]), "kept {kept}");
            match &recovered.torn_tail {
                None => assert_eq!(kept, 0, "a partial record must give a warning"),
                Some(torn) => {
                    assert_ne!(kept, 0);
                    assert_eq!(torn.segment, last.segment);
                    assert_eq!(torn.offset, last.offset);
                    assert!(torn.to_string().contains(&last.segment));
                }
            }
            // The log goes on from the cut, and a reopen is clean.
            let replacement = common::body(Operation::CreateAccounts, 1, kept as u64);
            let again = common::append_synced(&mut log, Operation::CreateAccounts, 1, replacement);
            assert_eq!(again.offset, last.offset);
            drop(log);
            let (_, recovered, read) = open(dir.path()).unwrap();
            assert!(recovered.torn_tail.is_none());
            assert_eq!(read.len(), placed.len());
            assert_eq!(read.last(), Some(&again.record));
        }
    }
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_an_error_naming_segment_and_offset() {
    let (dir, placed) = setup(6);
    let middle = &placed[2];
    let path = log_dir(dir.path()).join(&middle.segment);
    let pristine = std::fs::read(&path).unwrap();
    let size = middle.record.header.record_size_bytes();
    for position in [0, 8, 30, 44, 61, 64, 100, size - 1] {
        let mut bytes = pristine.clone();
        bytes[middle.offset as usize + position] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
        assert_eq!(segment, middle.segment, "byte {position}");
        assert_eq!(offset, middle.offset, "byte {position}");
        assert!(
            matches!(reason, Corruption::BadRecord { .. }),
            "byte {position}: {reason}"
        );
    }
    std::fs::write(&path, &pristine).unwrap();
    assert_eq!(open(dir.path()).unwrap().2, records(&placed));
}

#[test]
fn a_removed_record_is_an_error() {
    let (dir, placed) = setup(6);
    let removed = &placed[2];
    assert_eq!(removed.segment, placed[3].segment);
    let path = log_dir(dir.path()).join(&removed.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let start = removed.offset as usize;
    let size = removed.record.header.record_size_bytes();
    bytes.drain(start..start + size);
    bytes.resize(bytes.len() + size, 0);
    std::fs::write(&path, &bytes).unwrap();
    let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
    assert_eq!(
        (segment.as_str(), offset),
        (removed.segment.as_str(), removed.offset)
    );
    let expected = Corruption::Chain {
        field: "record_index",
        expected: 2,
        found: 3,
    };
    assert_eq!(reason, expected);
}

#[test]
fn swapped_records_are_an_error() {
    let (dir, placed) = setup(7);
    // Records 1 and 4 both hold two transfers, so they have the same size.
    let (a, b) = (&placed[1], &placed[4]);
    assert_eq!(
        a.record.header.record_size_bytes(),
        b.record.header.record_size_bytes()
    );
    assert_eq!(a.segment, b.segment);
    let path = log_dir(dir.path()).join(&a.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let size = a.record.header.record_size_bytes();
    let record_a = bytes[a.offset as usize..a.offset as usize + size].to_vec();
    let record_b = bytes[b.offset as usize..b.offset as usize + size].to_vec();
    bytes[a.offset as usize..a.offset as usize + size].copy_from_slice(&record_b);
    bytes[b.offset as usize..b.offset as usize + size].copy_from_slice(&record_a);
    std::fs::write(&path, &bytes).unwrap();
    let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
    assert_eq!((segment.as_str(), offset), (a.segment.as_str(), a.offset));
    assert_eq!(
        reason,
        Corruption::Chain {
            field: "record_index",
            expected: 1,
            found: 4
        }
    );
}

#[test]
fn a_torn_record_before_a_later_segment_is_an_error() {
    let (dir, placed) = setup(40);
    let first_segment = &placed[0].segment;
    let last_of_first = placed
        .iter()
        .rev()
        .find(|p| &p.segment == first_segment)
        .unwrap();
    assert_ne!(
        placed.last().unwrap().segment,
        *first_segment,
        "the log spans segments"
    );
    let path = log_dir(dir.path()).join(first_segment);
    let mut bytes = std::fs::read(&path).unwrap();
    // Tear the last record of the first segment as a crash would: keep half of it.
    let half = last_of_first.record.header.record_size_bytes() / 2;
    bytes[last_of_first.offset as usize + half..].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
    assert_eq!((&segment, offset), (first_segment, last_of_first.offset));
    match reason {
        Corruption::BadRecord {
            valid_segment,
            valid_offset,
            ..
        } => {
            assert_eq!(valid_segment, surge_wal::segment::segment_name(1));
            assert_eq!(valid_offset, 0);
        }
        other => panic!("expected a bad record before valid ones, got {other}"),
    }
}

#[test]
fn a_missing_segment_is_an_error_and_a_record_spliced_across_segments_too() {
    let (dir, placed) = setup(80);
    let last_segment = surge_wal::segment::segment_index(&placed.last().unwrap().segment);
    assert!(
        last_segment >= Some(2),
        "the log spans at least three segments"
    );
    let middle = log_dir(dir.path()).join(surge_wal::segment::segment_name(1));
    let saved = std::fs::read(&middle).unwrap();
    std::fs::remove_file(&middle).unwrap();
    let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
    assert_eq!((segment.as_str(), offset), ("segment-00000002.log", 0));
    assert_eq!(
        reason,
        Corruption::SegmentGap {
            expected: 1,
            found: 2
        }
    );
    // The middle segment back, but emptied: the chain breaks at the start of the next one.
    std::fs::write(&middle, vec![0u8; saved.len()]).unwrap();
    let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
    assert_eq!((segment.as_str(), offset), ("segment-00000002.log", 0));
    assert!(
        matches!(
            reason,
            Corruption::Chain {
                field: "record_index",
                ..
            }
        ),
        "{reason}"
    );
}

#[test]
fn a_hole_before_a_valid_record_is_an_error() {
    let (dir, placed) = setup(6);
    let hole = &placed[2];
    let path = log_dir(dir.path()).join(&hole.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    let start = hole.offset as usize;
    bytes[start..start + hole.record.header.record_size_bytes()].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (segment, offset, reason) = corrupt_at(open(dir.path()).unwrap_err());
    assert_eq!((&segment, offset), (&hole.segment, hole.offset));
    assert_eq!(
        reason,
        Corruption::Hole {
            valid_offset: placed[3].offset
        }
    );
}

#[test]
fn client_bytes_shaped_like_a_header_in_a_torn_body_do_not_pass_for_a_record() {
    let (dir, mut placed) = setup(3);
    let (mut log, _, _) = open(dir.path()).unwrap();
    // A command whose bytes hold a valid record header (a pulse), as a client could send.
    let mut fake = Vec::new();
    let pulse = surge_wal::RecordHeader {
        shard: 1,
        record_index: 99,
        sequence_first: 0,
        timestamp_ns: 0,
        count: 0,
        operation: Operation::Pulse,
        body_size_bytes: 0,
        checksum_previous: 0,
        checksum_body: 0,
        checksum_header: 0,
    };
    surge_wal::record::encode(&pulse, &[], &mut fake);
    let mut body = common::body(Operation::CreateAccounts, 4, 7);
    body[64..128].copy_from_slice(&fake);
    body[256..320].copy_from_slice(&fake);
    placed.push(common::append_synced(
        &mut log,
        Operation::CreateAccounts,
        4,
        body,
    ));
    drop(log);
    let last = placed.last().unwrap();
    let path = log_dir(dir.path()).join(&last.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    // Torn after the first fake header, before the end of the record.
    bytes[last.offset as usize + 64 + 200..].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (_, recovered, read) = open(dir.path()).unwrap();
    assert_eq!(read, records(&placed[..3]));
    let torn = recovered.torn_tail.expect("a torn tail warning");
    assert_eq!(
        (torn.segment.as_str(), torn.offset),
        (last.segment.as_str(), last.offset)
    );
}
