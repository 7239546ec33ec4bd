//! Helpers shared by the log's integration tests: deterministic batches and a log writer
//! that remembers where each record landed.
#![allow(dead_code)]

use surge_core::Operation;
use surge_wal::storage::split_mix;
use surge_wal::{Append, Log, LogConfig, Record, Recovered, RecoveryError, Storage};

/// A batch body of `count` commands of `operation`, filled from `seed`.
pub fn body(operation: Operation, count: u32, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..count as usize * operation.record_size_bytes())
        .map(|_| split_mix(&mut state) as u8)
        .collect()
}

/// A random, valid batch: mostly transfers, sometimes accounts or a pulse.
pub fn random_batch(rng: &mut u64, count_max: u32) -> (Operation, u32, Vec<u8>) {
    let operation = match split_mix(rng) % 8 {
        0 => Operation::Pulse,
        1 => Operation::CreateAccounts,
        2 => Operation::PayOrders,
        _ => Operation::CreateTransfers,
    };
    let count = if operation == Operation::Pulse {
        0
    } else {
        1 + (split_mix(rng) % u64::from(count_max)) as u32
    };
    let seed = split_mix(rng);
    (operation, count, body(operation, count, seed))
}

/// Where a record is on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The record as written.
    pub record: Record,
    /// Segment file name.
    pub segment: String,
    /// Byte offset in the segment.
    pub offset: u64,
}

/// Appends one batch and syncs; returns the record and where it is.
pub fn append_synced(log: &mut Log, operation: Operation, count: u32, body: Vec<u8>) -> Placed {
    let append = Append {
        operation,
        count,
        body: &body,
    };
    let headers = log.append(1_000, &[append]).expect("append");
    log.sync().expect("sync");
    let header = headers[0];
    let tail = log.tail();
    Placed {
        segment: surge_wal::segment::segment_name(tail.segment_index),
        offset: tail.offset - header.record_size_bytes() as u64,
        record: Record { header, body },
    }
}

/// Opens the log and reads every record of the live log back through the stream reader.
pub fn open_all(
    storage: Box<dyn Storage>,
    config: LogConfig,
) -> Result<(Log, Recovered, Vec<Record>), RecoveryError> {
    let (mut log, recovered) = Log::open(storage, config)?;
    let records = log.read_all()?;
    assert_eq!(
        records.len() as u64,
        recovered.record_indexes.end - recovered.record_indexes.start
    );
    Ok((log, recovered, records))
}

/// Opens a log over `storage` and appends `count` synced records of 1 to 3 transfers.
pub fn write_log(storage: Box<dyn Storage>, config: LogConfig, count: usize) -> Vec<Placed> {
    let (log, recovered) = Log::open(storage, config).expect("open a fresh log");
    assert!(recovered.record_indexes.is_empty());
    append_records(log, count)
}

/// Appends `count` synced records of 1 to 3 transfers to an open log.
pub fn append_records(mut log: Log, count: usize) -> Vec<Placed> {
    (0..count)
        .map(|i| {
            let count = 1 + (i % 3) as u32;
            let body = body(Operation::CreateTransfers, count, i as u64);
            append_synced(&mut log, Operation::CreateTransfers, count, body)
        })
        .collect()
}

/// The records of placed records.
pub fn records(placed: &[Placed]) -> Vec<Record> {
    placed.iter().map(|p| p.record.clone()).collect()
}
