//! Streaming reads and log retention: `read_from` any record index returns exactly the
//! records from there (checked again as read), old segments are archived or deleted below
//! a record index, a log that starts at a later segment opens and goes on, a gap between
//! live segments is still refused, and a power cut at any point of a retention leaves
//! every record either live or archived (or, with Delete, a consecutive suffix) and a log
//! that recovers.

mod common;

use common::{records, write_log, Placed};
use surge_core::Operation;
use surge_wal::segment::{archived_segment_name, segment_index, segment_name};
use surge_wal::storage::split_mix;
use surge_wal::{
    retain_segments, Corruption, Log, LogConfig, LogRetention, Record, RecoveryError, SimStorage,
    Storage,
};

const SEGMENT_SIZE_BYTES: u64 = 4096;

fn config() -> LogConfig {
    LogConfig {
        shard: 3,
        segment_size_bytes: SEGMENT_SIZE_BYTES,
    }
}

/// A log of `count` records over several 4 KiB segments.
fn setup(count: usize) -> (SimStorage, Vec<Placed>) {
    let storage = SimStorage::new();
    let placed = write_log(Box::new(storage.clone()), config(), count);
    let segments = placed.last().and_then(|last| segment_index(&last.segment));
    assert!(segments >= Some(4), "the log spans five segments or more");
    (storage, placed)
}

fn open(storage: &SimStorage) -> Log {
    Log::open(Box::new(storage.clone()), config())
        .expect("the log opens")
        .0
}

fn read_from(log: &mut Log, record_index: u64) -> Result<Vec<Record>, RecoveryError> {
    log.read_from(record_index)?.collect()
}

/// The index of the first record of segment `index`.
fn first_of(placed: &[Placed], index: u64) -> u64 {
    let name = segment_name(index);
    placed
        .iter()
        .find(|p| p.segment == name)
        .map(|p| p.record.header.record_index)
        .expect("the segment holds a record")
}

#[test]
fn reading_from_any_record_returns_exactly_the_records_from_there() {
    let (storage, placed) = setup(60);
    let all = records(&placed);
    let mut log = open(&storage);
    let end = all.len() as u64;
    let second_segment = first_of(&placed, 1);
    for from in [0, 1, second_segment - 1, second_segment, 37, end - 1, end] {
        let read = read_from(&mut log, from).expect("read");
        assert_eq!(read, all[from as usize..], "from {from}");
    }
    match log.read_from(end + 1) {
        Err(RecoveryError::Missing { record_index, .. }) => assert_eq!(record_index, end + 1),
        other => panic!("expected Missing, got {other:?}"),
    }
    // A body damaged after the log was opened is caught as it is read, not returned.
    let victim = &placed[40];
    storage
        .corrupt(&victim.segment, victim.offset + 70, b"\xFF")
        .expect("damage");
    let mut reader = log.read_from(35).expect("reader");
    for expected in &all[35..40] {
        assert_eq!(&reader.next().expect("a record").expect("valid"), expected);
    }
    match reader.next() {
        Some(Err(RecoveryError::Corrupt {
            segment,
            offset,
            reason: Corruption::Record { .. },
        })) => assert_eq!((segment, offset), (victim.segment.clone(), victim.offset)),
        other => panic!("expected the damaged record to be refused, got {other:?}"),
    }
    assert!(reader.next().is_none(), "the stream ends after an error");
}

#[test]
fn archived_segments_leave_a_log_that_starts_later_and_still_reads_from_zero() {
    let (storage, placed) = setup(60);
    let all = records(&placed);
    // Everything below the first record of segment 3 may go: segments 0, 1 and 2.
    let keep_from = first_of(&placed, 3);
    let mut disk: Box<dyn Storage> = Box::new(storage.clone());
    let moved = retain_segments(&mut *disk, keep_from + 1, LogRetention::Archive).expect("archive");
    assert_eq!(
        moved,
        vec![segment_name(0), segment_name(1), segment_name(2)]
    );
    assert_eq!(
        disk.list_directory("archive").expect("list"),
        moved,
        "moved, not copied"
    );
    // Retention is idempotent, and never touches the newest segment.
    let again = retain_segments(&mut *disk, u64::MAX, LogRetention::Archive).expect("again");
    let newest = placed.last().expect("records").segment.clone();
    assert!(!again.contains(&newest));
    let (mut log, recovered) = Log::open(Box::new(storage.clone()), config()).expect("opens");
    let first_live = first_of(&placed, segment_index(&newest).expect("index"));
    assert_eq!(recovered.record_indexes, first_live..all.len() as u64);
    assert!(recovered.torn_tail.is_none());
    assert_eq!(log.read_all().expect("read"), all[first_live as usize..]);
    // Older records come from archive/, checked across the boundary to the live log.
    assert_eq!(read_from(&mut log, 0).expect("read"), all);
    assert_eq!(read_from(&mut log, 5).expect("read"), all[5..]);
    // The log goes on after a reopen that starts at a later segment.
    let body = common::body(Operation::CreateAccounts, 1, 9);
    let next = common::append_synced(&mut log, Operation::CreateAccounts, 1, body);
    assert_eq!(next.record.header.record_index, all.len() as u64);
    drop(log);
    let mut log = open(&storage);
    assert_eq!(read_from(&mut log, 0).expect("read").len(), all.len() + 1);
    // A damaged archived record is refused when read, naming the archived file.
    let victim = &placed[2];
    let archived = archived_segment_name(0);
    storage
        .corrupt(&archived, victim.offset + 64, b"\x01")
        .expect("damage");
    match read_from(&mut log, 0) {
        Err(RecoveryError::Corrupt {
            segment, offset, ..
        }) => assert_eq!((segment, offset), (archived, victim.offset)),
        other => panic!("expected corruption in the archive, got {other:?}"),
    }
}

#[test]
fn deleted_segments_are_gone_for_good_and_reading_them_is_refused() {
    let (storage, placed) = setup(60);
    let all = records(&placed);
    let keep_from = first_of(&placed, 2);
    let mut disk: Box<dyn Storage> = Box::new(storage.clone());
    let removed = retain_segments(&mut *disk, keep_from, LogRetention::Delete).expect("delete");
    assert_eq!(removed, vec![segment_name(0), segment_name(1)]);
    assert!(disk.list_directory("archive").expect("list").is_empty());
    let (mut log, recovered) = Log::open(Box::new(storage.clone()), config()).expect("opens");
    assert_eq!(recovered.record_indexes.start, keep_from);
    assert_eq!(
        read_from(&mut log, keep_from).expect("read"),
        all[keep_from as usize..]
    );
    match log.read_from(keep_from - 1) {
        Err(error @ RecoveryError::Missing { .. }) => {
            let text = error.to_string();
            assert!(text.contains(&format!("record {keep_from}")), "{text}");
            assert!(text.contains("deleted"), "{text}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    // Keep leaves everything where it is.
    assert!(retain_segments(&mut *disk, u64::MAX, LogRetention::Keep)
        .expect("keep")
        .is_empty());
}

#[test]
fn the_first_live_segment_must_start_with_a_whole_record_and_gaps_are_refused() {
    let (storage, placed) = setup(60);
    let mut disk: Box<dyn Storage> = Box::new(storage.clone());
    retain_segments(&mut *disk, first_of(&placed, 2), LogRetention::Archive).expect("archive");
    // A gap between live segments is still corruption.
    let saved = storage.contents(&segment_name(3)).expect("segment 3");
    disk.remove(&segment_name(3)).expect("remove");
    match Log::open(Box::new(storage.clone()), config()) {
        Err(RecoveryError::Corrupt {
            segment,
            offset: 0,
            reason: Corruption::SegmentGap { expected, found },
        }) => assert_eq!((segment, expected, found), (segment_name(4), 3, 4)),
        other => panic!("expected a segment gap, got {other:?}"),
    }
    disk.create(&segment_name(3)).expect("create");
    disk.write_at(&segment_name(3), 0, &saved).expect("restore");
    open(&storage);
    // The first live segment's first record is where the log starts: if it is damaged,
    // the start is unknown, and the log is refused rather than cut back to nothing.
    storage
        .corrupt(&segment_name(2), 9, b"\xAA")
        .expect("damage");
    match Log::open(Box::new(storage.clone()), config()) {
        Err(RecoveryError::Corrupt {
            segment,
            offset: 0,
            reason: Corruption::Start { .. },
        }) => assert_eq!(segment, segment_name(2)),
        other => panic!("expected a bad start, got {other:?}"),
    }
}

/// Runs a retention that the machine stops after `operations` storage operations, cuts
/// the power, and checks what survived.
fn retention_cut_short(retention: LogRetention, operations: u64, rng: &mut u64) {
    let (storage, placed) = setup(60);
    let all = records(&placed);
    let mut disk: Box<dyn Storage> = Box::new(storage.clone());
    storage.crash_after_operations(operations);
    let outcome = retain_segments(&mut *disk, first_of(&placed, 4), retention);
    storage.power_cut(rng);
    let (mut log, recovered) = Log::open(Box::new(storage.clone()), config())
        .unwrap_or_else(|error| panic!("{retention:?} stopped after {operations}: {error}"));
    assert_eq!(recovered.record_indexes.end, all.len() as u64);
    let start = recovered.record_indexes.start;
    // Every record is still live or archived; with Delete, the live log is a suffix.
    let readable = match retention {
        LogRetention::Delete => read_from(&mut log, start),
        _ => read_from(&mut log, 0),
    };
    let readable = readable.unwrap_or_else(|error| panic!("stopped after {operations}: {error}"));
    assert_eq!(readable, all[all.len() - readable.len()..]);
    if retention != LogRetention::Delete {
        assert_eq!(readable.len(), all.len());
    }
    if outcome.is_ok() {
        assert_eq!(start, first_of(&placed, 4), "stopped after {operations}");
    }
    // Retention finishes after the restart.
    let mut disk: Box<dyn Storage> = Box::new(storage.clone());
    retain_segments(&mut *disk, first_of(&placed, 4), retention).expect("retention again");
    let (_, recovered) = Log::open(Box::new(storage), config()).expect("opens");
    assert_eq!(recovered.record_indexes.start, first_of(&placed, 4));
}

#[test]
fn a_power_cut_during_retention_loses_no_record_and_the_log_recovers() {
    let mut rng = 0x5EED;
    for retention in [LogRetention::Archive, LogRetention::Delete] {
        // Archive: create the directory, then per segment a move and a directory sync;
        // Delete: per segment a removal and a directory sync.
        for operations in 0..9 {
            retention_cut_short(retention, operations, &mut rng);
        }
        let operations = split_mix(&mut rng) % 9;
        retention_cut_short(retention, operations, &mut rng);
    }
}
