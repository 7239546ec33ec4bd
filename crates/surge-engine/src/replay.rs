//! Replay on open: the log's records from the checkpoint's on (or from the start), read and
//! checked on a reader thread ([`Log::read_from`]) and applied in log order on the caller's,
//! through a bounded channel, so reading, checksumming and copying overlap with applying
//! and only a few records are in memory at once. The reader starts while the state machine
//! is still being restored or sized, so the first records are ready when it is.
//!
//! The first record read is the checkpoint's own: it must be in the log with the checksum
//! the checkpoint recorded ([`EngineError::CheckpointMismatch`] otherwise), and is not
//! applied again. A record that is needed but no longer kept (deleted by log retention) is
//! [`EngineError::LogRecordsMissing`], before anything is applied.

use std::ops::Range;

use crossbeam_channel::{bounded, Receiver, Sender};
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{decode, Batch, BatchBuf, Operation, ResultCode, StateMachine};
use surge_history::{derive_entries_since, HistoryIndex, LsmHistory};
use surge_wal::{Log, LogReader, Record, RecoveryError};

use crate::node::{check_checkpoint, evict, eviction_due, recall_lookups, EngineError};

/// Records read ahead of the apply, at most (each up to ~2 MiB): enough to keep the apply
/// fed, few enough to keep recovery's memory small.
const REPLAY_QUEUE_DEPTH_MAX: usize = 16;

/// Where replay starts and why the records from there are needed.
pub(crate) struct ReplayPlan {
    /// The checkpoint the state is restored from: the record it reflects and that
    /// record's checksum; `None` to replay from record 0 (no checkpoint, or one of the
    /// empty state).
    pub checkpoint: Option<(u64, u32)>,
    /// The records the live log holds, as recovery found them.
    pub records: Range<u64>,
    /// What replaying from record 0 is for, for the error if record 0 is gone.
    pub needed_for: String,
    /// Records up to this one are already in the history index.
    pub history_applied: Option<u64>,
    /// Whether finished transfers leave memory every `evict_interval_transfers`, as they
    /// do while running, so a long replay stays bounded too (needs the history).
    pub evicting: bool,
    /// See `NodeConfig::evict_interval_transfers`.
    pub evict_interval_transfers: u64,
}

/// What replay did.
pub(crate) struct Replayed {
    /// The state after the last record.
    pub state_machine: StateMachine,
    /// Records applied.
    pub records_replayed: u64,
    /// The transfer sequence number at the last eviction (see `Applier::eviction_mark`).
    pub eviction_mark: u64,
}

/// Replays the log per `plan` onto the state machine `prepare` returns (it is called once
/// the reader is running), indexing history records the index does not hold yet.
pub(crate) fn replay(
    log: &mut Log,
    plan: &ReplayPlan,
    prepare: impl FnOnce() -> Result<StateMachine, EngineError>,
    mut history: Option<&mut LsmHistory>,
) -> Result<Replayed, EngineError> {
    let from = match plan.checkpoint {
        Some((index, _)) => index,
        None => 0,
    };
    let opened = match plan.checkpoint {
        Some((index, _)) if index >= plan.records.end => Err(EngineError::CheckpointMismatch {
            record_index: index,
            reason: format!("the log holds {} records", plan.records.end),
        }),
        _ => log.read_from(from).map_err(|error| missing(error, plan)),
    };
    let reader = match opened {
        Ok(reader) => reader,
        Err(error) => {
            // The state is not needed, but its thread must finish before we return; a
            // checkpoint that does not restore is reported first, as it would be below.
            prepare()?;
            return Err(error);
        }
    };
    std::thread::scope(|scope| {
        let (records, records_received) = bounded(REPLAY_QUEUE_DEPTH_MAX);
        let (bodies_spare, bodies) = bounded(REPLAY_QUEUE_DEPTH_MAX + 1);
        std::thread::Builder::new()
            .name("surge-replay-read".to_string())
            .spawn_scoped(scope, move || read(reader, &records, &bodies))
            .expect("spawn the replay reader thread");
        let mut state_machine = prepare()?;
        let evicted = state_machine.memory_counts().transfers_evicted;
        if evicted > 0 && history.is_none() {
            return Err(EngineError::HistoryRequired { evicted });
        }
        let mut eviction_mark = 0;
        let mut records_replayed = 0;
        let mut results: Vec<ResultCode> = Vec::new();
        for item in records_received.iter() {
            let record = item?;
            let record_index = record.header.record_index;
            if let Some((index, checksum)) =
                plan.checkpoint.filter(|&(index, _)| index == record_index)
            {
                check_checkpoint(index, checksum, &record)?;
            } else {
                apply(
                    &mut state_machine,
                    &record,
                    &mut results,
                    history.as_deref_mut(),
                    plan,
                )?;
                records_replayed += 1;
                let sequence = state_machine.transfer_sequence();
                let interval = plan.evict_interval_transfers;
                if let (Some(index), true) = (history.as_deref_mut(), plan.evicting) {
                    if eviction_due(eviction_mark, sequence, interval) {
                        evict(&mut state_machine, index, eviction_mark)?;
                        eviction_mark = sequence;
                    }
                }
            }
            // Hand the body's buffer back to the reader; if it has enough, drop it.
            let _ = bodies_spare.try_send(record.body);
        }
        Ok(Replayed {
            state_machine,
            records_replayed,
            eviction_mark,
        })
    })
}

/// Applies one replayed record, and indexes it unless the history index already holds it
/// (written before the crash).
fn apply(
    state_machine: &mut StateMachine,
    record: &Record,
    results: &mut Vec<ResultCode>,
    history: Option<&mut LsmHistory>,
    plan: &ReplayPlan,
) -> Result<(), EngineError> {
    let commands = Commands::of(record)?;
    let batch = commands.batch();
    // Ids the batch names that left memory answer from the archive, as they did live.
    if let Some(index) = history.as_deref() {
        let found = recall_lookups(state_machine, index, batch)?;
        state_machine.recall(&found);
    }
    let first_sequence = state_machine.transfer_sequence_next();
    state_machine.apply(record.header.timestamp_ns, batch, results);
    let record_index = record.header.record_index;
    let indexed = plan
        .history_applied
        .is_some_and(|applied| record_index <= applied);
    if let (Some(index), false) = (history, indexed) {
        let entries = derive_entries_since(
            state_machine,
            Some(first_sequence),
            record_index,
            batch,
            results,
        );
        index.apply(record_index, &entries)?;
    }
    Ok(())
}

/// The reader thread: sends each record (or the error that ends the stream) until the log
/// ends or the apply side hangs up. Reuses the bodies the apply side hands back.
fn read(
    mut reader: LogReader<'_>,
    records: &Sender<Result<Record, RecoveryError>>,
    bodies: &Receiver<Vec<u8>>,
) {
    loop {
        let mut body = bodies.try_recv().unwrap_or_default();
        let item = match reader.read_next(&mut body) {
            Ok(Some(header)) => Ok(Record { header, body }),
            Ok(None) => return,
            Err(error) => Err(error),
        };
        let failed = item.is_err();
        if records.send(item).is_err() || failed {
            return;
        }
    }
}

/// The error for a log that lacks the first record replay needs.
fn missing(error: RecoveryError, plan: &ReplayPlan) -> EngineError {
    match (error, plan.checkpoint) {
        (RecoveryError::Missing { reason, .. }, Some((record_index, _))) => {
            EngineError::CheckpointMismatch {
                record_index,
                reason: format!("the log no longer holds it: {reason}"),
            }
        }
        (
            RecoveryError::Missing {
                record_index,
                reason,
            },
            None,
        ) => EngineError::LogRecordsMissing {
            record_index,
            needed_for: plan.needed_for.clone(),
            reason,
        },
        (error, _) => error.into(),
    }
}

/// A record's commands: borrowed straight from its body when the buffer is aligned for
/// them (the usual case: the allocator aligns to 16 bytes, as the records need), else
/// decoded into a copy by `surge_core::decode`, which also reports malformed bodies.
pub(crate) enum Commands<'a> {
    Borrowed(Batch<'a>),
    Decoded(BatchBuf),
}

impl<'a> Commands<'a> {
    pub(crate) fn of(record: &'a Record) -> Result<Commands<'a>, EngineError> {
        let header = &record.header;
        if let Some(batch) = view(header.operation, &record.body) {
            return Ok(Commands::Borrowed(batch));
        }
        decode(header.operation as u8, &record.body)
            .map(Commands::Decoded)
            .map_err(|error| EngineError::BadRecord {
                record_index: header.record_index,
                reason: error.to_string(),
            })
    }

    pub(crate) fn batch(&self) -> Batch<'_> {
        match self {
            Commands::Borrowed(batch) => *batch,
            Commands::Decoded(batch) => batch.as_batch(),
        }
    }
}

/// `body` as typed records without a copy, if it is aligned, a whole number of records
/// and within the batch limit (what `decode` checks); `None` otherwise.
fn view(operation: Operation, body: &[u8]) -> Option<Batch<'_>> {
    let size = operation.record_size_bytes();
    if size > 0 && body.len() / size > BATCH_EVENTS_MAX {
        return None;
    }
    Some(match operation {
        Operation::Pulse if body.is_empty() => Batch::Pulse,
        Operation::Pulse => return None,
        Operation::CreateAccounts => Batch::CreateAccounts(bytemuck::try_cast_slice(body).ok()?),
        Operation::CreateTransfers => Batch::CreateTransfers(bytemuck::try_cast_slice(body).ok()?),
        Operation::CreateSkus => Batch::CreateSkus(bytemuck::try_cast_slice(body).ok()?),
        Operation::Reserve => Batch::Reserve(bytemuck::try_cast_slice(body).ok()?),
        Operation::ConfirmReservations => {
            Batch::ConfirmReservations(bytemuck::try_cast_slice(body).ok()?)
        }
        Operation::ReleaseReservations => {
            Batch::ReleaseReservations(bytemuck::try_cast_slice(body).ok()?)
        }
        Operation::PlaceOrders => Batch::PlaceOrders(bytemuck::try_cast_slice(body).ok()?),
        Operation::PayOrders => Batch::PayOrders(bytemuck::try_cast_slice(body).ok()?),
        Operation::CancelOrders => Batch::CancelOrders(bytemuck::try_cast_slice(body).ok()?),
        Operation::RefundOrders => Batch::RefundOrders(bytemuck::try_cast_slice(body).ok()?),
        Operation::AckDispatch => Batch::AckDispatch(bytemuck::try_cast_slice(body).ok()?),
        Operation::ShardDebit => Batch::ShardDebit(bytemuck::try_cast_slice(body).ok()?),
        Operation::ShardCredit => Batch::ShardCredit(bytemuck::try_cast_slice(body).ok()?),
        Operation::ShardResolve => Batch::ShardResolve(bytemuck::try_cast_slice(body).ok()?),
        Operation::ReserveOrders => Batch::ReserveOrders(bytemuck::try_cast_slice(body).ok()?),
        Operation::OrderLegs => Batch::OrderLegs(bytemuck::try_cast_slice(body).ok()?),
        Operation::OrderResolve => Batch::OrderResolve(bytemuck::try_cast_slice(body).ok()?),
        Operation::OrderConfirm => Batch::OrderConfirm(bytemuck::try_cast_slice(body).ok()?),
        Operation::PlaceOrdersCompact => {
            Batch::PlaceOrdersCompact(bytemuck::try_cast_slice(body).ok()?)
        }
        Operation::OrderUnits => Batch::OrderUnits(bytemuck::try_cast_slice(body).ok()?),
        Operation::UnitConfirm => Batch::UnitConfirm(bytemuck::try_cast_slice(body).ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_equals_the_decoded_batch_or_falls_back() {
        let transfers: Vec<surge_core::Transfer> = (1..=3)
            .map(|id| surge_core::Transfer {
                id: surge_core::TransferId(id),
                amount: 7,
                ..Default::default()
            })
            .collect();
        let body = Batch::CreateTransfers(&transfers).body().to_vec();
        let viewed = view(Operation::CreateTransfers, &body);
        let decoded = decode(Operation::CreateTransfers as u8, &body).unwrap();
        if let Some(batch) = viewed {
            assert_eq!(batch.body(), decoded.as_batch().body());
        }
        // Misaligned, partial or over-long bodies are left to `decode`.
        let mut shifted = vec![0u8; body.len() + 1];
        shifted[1..].copy_from_slice(&body);
        assert!(view(Operation::CreateTransfers, &shifted[1..]).is_none());
        assert!(view(Operation::CreateTransfers, &body[..100]).is_none());
        assert!(view(Operation::Pulse, &[1]).is_none());
        assert!(matches!(view(Operation::Pulse, &[]), Some(Batch::Pulse)));
        let too_many = vec![0u8; (BATCH_EVENTS_MAX + 1) * 32];
        assert!(view(Operation::AckDispatch, &too_many).is_none());
    }
}
