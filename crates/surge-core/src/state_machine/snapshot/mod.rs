//! Snapshots: the state machine's whole logical state as bytes, for checkpoints.
//!
//! [`StateMachine::snapshot`] writes every map in key order (never in hash-table slot
//! order), so two equal states give byte-identical snapshots, and [`StateMachine::restore`]
//! reads one back. Restoring never panics on any input: a small cursor reader returns a
//! [`SnapshotError`] naming the offset, counts are checked against the bytes left before
//! anything is allocated, and keys, enum values and cross-references are validated. The
//! bytes carry no checksum: the log crate wraps a snapshot in a checksummed file.
//!
//! The expiry heaps are not stored. They only hold hints (an entry is acted on only if its
//! item is still live with the same due time), so restore rebuilds them from the live items
//! and the restored machine gives exactly the results the original would.
//!
//! Layout, all integers little-endian, records as their `#[repr(C)]` bytes:
//!
//! ```text
//! offset size  field
//!      0    8  magic "SURGESNP"
//!      8    2  snapshot format version (6; 5, with 40-byte order spans and without the
//!              last two sections, and 4 and 3, without the last four or five, are
//!              still read)
//!     10    2  records::RECORD_FORMAT_VERSION
//!     12    8  config.accounts_capacity      (each capacity at most 2^32)
//!     20    8  config.transfers_capacity
//!     28    8  config.orders_capacity
//!     36    8  config.dispatch_redelivery_ns
//!     44    8  timestamp_last
//!     52    8  dispatch_sequence_next
//!     60   16  transfers_digest               (checked against the slots on restore)
//!     76    8  transfer_records_base          (sequence number of the first record)
//!     84    8  transfers_evicted              (ids that left memory)
//!     92   16  transfers_evicted_digest       (their share of transfers_digest)
//!    108       twenty sections, each a u64 count then that many items:
//!
//! section          order           item                                           bytes
//! accounts         id              Account record                                  128
//! transfer records log order       Transfer record, sequence numbers from the base 128
//! kept records     sequence        sequence u64, Transfer record (before the base, 136
//!                                  still resident: live pendings, order transfers)
//! transfer slots   id              id u128, sequence u64 (bit 63 set = failed),     32
//!                                  fingerprint u64 (or the failure's code)
//! pendings         transfer id     id u128, expires_at u64, order id u128,          41
//!                                  status u8 (PendingStatus)
//! skus             id              Sku record                                      128
//! reservations     (order, sku)    Reservation record, fingerprint u64,             76
//!                                  failure u32 (0 = held, else its code)
//! buyer units      (sku, buyer)    sku u64, buyer u128, units u64                   32
//! orders           id              Order record, fingerprint u64, expires_at u64,  304
//!                                  payment transfer u128, closing transfer u128
//! orders failed    id              id u128, code u32                                20
//! dispatches       id              id u128, order id u128, sequence u64,            61
//!                                  created_at u64, redeliver_at u64,
//!                                  attempts u32, status u8 (DispatchStatus)
//! dispatch feed    sequence        sequence u64, dispatch id u128                   24
//! filter layers    age             capacity u64, count u64, capacity/32 blocks of   16+
//!                                  64 bytes (the filter over evicted ids)
//! shard outbox     transfer id     ShardLeg record (debit legs in flight)           144
//! compensated      transfer id     id u128, code u32, Transfer record (the         148
//!                                  movement back from transit)
//! shard pendings   transfer id     ShardLeg record (settled cross-shard pending     144
//!                                  transfers still pending, debit side)
//! order spans      order id        id u128, buyer shard u32, merchant shard u32,    52
//!                                  step in flight u128, shard count u32, lines
//!                                  reserved elsewhere u32, merchant ledger u32
//!                                  (orders spanning shards)
//! order outbox     transfer id     OrderMessage record (order steps in flight)      176
//! unit outbox      (order, shard)  UnitStep record, waiting key u128 (unit steps    288
//!                                  in flight)
//! unit holds       order id        id u128, fingerprint u64, status u8, failure     29
//!                                  u32 (units held for orders of other shards)
//! ```
//!
//! Nothing may follow the last section. A committed transfer costs 160 bytes (record and
//! slot; 201 while it has a pending state), a failed transfer id 32, an account 128.

use std::cmp::Reverse;
use std::mem::size_of;

use bytemuck::Pod;

use super::archive::{EvictedFilter, IdFilter};
use super::cross_shard::Compensated;
use super::journal::{sorted, Journaled};
use super::ledger::{resolution_digest, slot_digest};
use super::order_saga::{authorize_deadline, OrderSpan};
use super::order_units::{remote_shards, UnitHold, UnitHoldStatus, UnitSent};
use super::table::{Table, TableEntry};
use super::{
    BuyerUnits, Config, DispatchEntry, DispatchStatus, OrderEntry, PendingState, PendingStatus,
    StateMachine, StoredReservation, TransferSlot,
};
use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};
use crate::records::{
    order_message_flags, order_message_kind, Account, Order, OrderMessage, OrderStatus,
    Reservation, ReservationStatus, ShardLeg, Sku, Transfer, UnitStep, ORDER_LINES_MAX,
    RECORD_FORMAT_VERSION,
};
use crate::result::ResultCode;

mod buffers;
mod read;
#[cfg(test)]
mod tests;
mod write;

pub(in crate::state_machine) use buffers::emptied_with_room;
pub use buffers::SnapshotBuffers;
use read::{Decoded, Reader};
use write::{
    put_buyer_units, put_dispatch, put_order, put_pending, put_reservation, put_section, put_slot,
    put_u128, put_u32, put_u64, sorted_by_key, sorted_pairs, Emitter, EMIT_PIECE_BYTES,
};

/// First bytes of every snapshot.
const MAGIC: [u8; 8] = *b"SURGESNP";

/// Version of the layout in the module documentation. Bump on any change.
const SNAPSHOT_FORMAT_VERSION: u16 = 6;
/// Still read: version 6 with 40-byte order spans (no shard count, lines reserved
/// elsewhere or merchant ledger) and without the unit sections.
const SNAPSHOT_FORMAT_VERSION_5: u16 = 5;
/// Still read: version 5 without the two order sections.
const SNAPSHOT_FORMAT_VERSION_4: u16 = 4;
/// Still read: version 4 without the shard pendings section.
const SNAPSHOT_FORMAT_VERSION_PREVIOUS: u16 = 3;

/// Largest capacity a snapshot's config may ask for. A capacity is an allocation hint,
/// so a larger one is taken for corruption rather than allocated.
const CONFIG_CAPACITY_MAX: u64 = 1 << 32;

/// Least capacity of the SKU table and the failed-order map, as in [`StateMachine::new`].
const SMALL_MAPS_CAPACITY_MIN: usize = 64;

const HEADER_SIZE_BYTES: usize = 108;
const COUNT_SIZE_BYTES: usize = 8;
const SECTIONS_COUNT: usize = 20;
const KEPT_RECORD_SIZE_BYTES: usize = 8 + TRANSFER_SIZE_BYTES;
/// The smallest filter layer: capacity and count, no blocks.
const FILTER_LAYER_HEADER_SIZE_BYTES: usize = 16;
const ACCOUNT_SIZE_BYTES: usize = size_of::<Account>();
const TRANSFER_SIZE_BYTES: usize = size_of::<Transfer>();
const SLOT_SIZE_BYTES: usize = 16 + 8 + 8;
const PENDING_SIZE_BYTES: usize = 16 + 8 + 16 + 1;
const SKU_SIZE_BYTES: usize = size_of::<Sku>();
const RESERVATION_SIZE_BYTES: usize = size_of::<Reservation>() + 8 + 4;
const BUYER_UNITS_SIZE_BYTES: usize = 8 + 16 + 8;
const ORDER_SIZE_BYTES: usize = size_of::<Order>() + 8 + 8 + 16 + 16;
const ORDER_FAILED_SIZE_BYTES: usize = 16 + 4;
const DISPATCH_SIZE_BYTES: usize = 16 + 16 + 8 + 8 + 8 + 4 + 1;
const FEED_SIZE_BYTES: usize = 8 + 16;
const SHARD_LEG_SIZE_BYTES: usize = size_of::<ShardLeg>();
const COMPENSATED_SIZE_BYTES: usize = 16 + 4 + TRANSFER_SIZE_BYTES;
const ORDER_SPAN_SIZE_BYTES: usize = 16 + 4 + 4 + 16 + 4 + 4 + 4;
/// An order span in version 5.
const ORDER_SPAN_5_SIZE_BYTES: usize = 16 + 4 + 4 + 16;
const UNIT_SENT_SIZE_BYTES: usize = size_of::<UnitStep>() + 16;
const UNIT_HOLD_SIZE_BYTES: usize = 16 + 8 + 1 + 4;
const ORDER_MESSAGE_SIZE_BYTES: usize = size_of::<OrderMessage>();

// The sizes drawn in the module documentation.
const _: () = assert!(HEADER_SIZE_BYTES == 8 + 2 + 2 + 4 * 8 + 8 + 8 + 16 + 8 + 8 + 16);
const _: () = assert!(ACCOUNT_SIZE_BYTES == 128);
const _: () = assert!(TRANSFER_SIZE_BYTES == 128);
const _: () = assert!(SKU_SIZE_BYTES == 128);
const _: () = assert!(RESERVATION_SIZE_BYTES == 76);
const _: () = assert!(ORDER_SIZE_BYTES == 304);
const _: () = assert!(DISPATCH_SIZE_BYTES == 61);

/// Why bytes could not be restored as a state machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic: not a snapshot.
    #[error("not a snapshot: magic {found:02x?}")]
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// Written in a format (or with record layouts) this build does not read.
    #[error("unsupported {what} version {found}; this build reads {supported}")]
    UnsupportedVersion {
        /// Which version: the snapshot format or the record format.
        what: &'static str,
        /// The version in the snapshot.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The bytes end before the snapshot does.
    #[error("snapshot truncated at offset {offset}: {needed} more bytes needed")]
    Truncated {
        /// Where the missing field starts.
        offset: usize,
        /// Bytes missing (at least).
        needed: usize,
    },
    /// A field holds a value no state machine can be in.
    #[error("invalid {what} at offset {offset}")]
    InvalidValue {
        /// Where the item or field starts.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Bytes follow the last section.
    #[error("{count} trailing bytes at offset {offset}")]
    TrailingBytes {
        /// Where the last section ended.
        offset: usize,
        /// Bytes after it.
        count: usize,
    },
}

fn invalid(offset: usize, what: &'static str) -> SnapshotError {
    SnapshotError::InvalidValue { offset, what }
}

/// A snapshot taken in two steps: the state's largest sections are copied, unsorted,
/// as of one instant (the accounts, the transfer records and the transfers' id slots: on a
/// large ledger almost all of it), and [`SnapshotParts::encode`] sorts them and writes the
/// bytes, on any thread, later. The copy is made at once ([`StateMachine::snapshot_parts`])
/// or a little at a time while the state moves on ([`StateMachine::snapshot_begin`]). The
/// bytes are [`StateMachine::snapshot`]'s, which is the two steps in a row.
pub struct SnapshotParts {
    size_bytes: usize,
    /// The header.
    head: Vec<u8>,
    /// The accounts, in any order.
    accounts: Vec<Account>,
    /// The transfer records, in log order.
    records: Vec<Transfer>,
    /// The kept records' section, written.
    kept: Vec<u8>,
    /// The transfers' id slots, in any order.
    slots: Vec<TransferSlot>,
    /// Every section after the slots, written.
    rest: Vec<u8>,
}

/// A snapshot being copied while the state moves on: what was written at its start, and
/// the transfer records copied so far (the tables copy themselves, `table.rs`).
pub(super) struct SnapshotCopy {
    size_bytes: usize,
    head: Vec<u8>,
    /// Records of sequence numbers `records_first..` copied so far.
    records: Vec<Transfer>,
    records_first: u64,
    /// The sequence number after the last record when the copy began.
    records_end: u64,
    kept: Vec<u8>,
    rest: Vec<u8>,
}

impl SnapshotParts {
    /// The snapshot's bytes. The buffers stay, for [`SnapshotParts::into_buffers`].
    pub fn encode(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_bytes);
        let encoded = self.encode_with(|bytes| {
            out.extend_from_slice(bytes);
            Ok::<(), std::convert::Infallible>(())
        });
        let Ok(()) = encoded;
        out
    }

    /// The snapshot's bytes, in order, handed to `emit` a piece at a time (the accounts and
    /// transfer records straight from their buffers, the other large sections whole, the
    /// rest gathered into pieces of about 64 KiB): a checkpoint written as it is encoded
    /// never holds a whole copy of the snapshot. Stops
    /// at `emit`'s first error. The buffers stay, for [`SnapshotParts::into_buffers`].
    pub fn encode_with<E>(&mut self, emit: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut out = Emitter {
            piece: Vec::with_capacity(EMIT_PIECE_BYTES + 256),
            emit,
            emitted: 0,
        };
        out.bytes(&self.head)?;
        self.accounts.sort_unstable_by_key(|account| account.id);
        put_u64(&mut out.piece, self.accounts.len() as u64);
        out.bytes(bytemuck::cast_slice(&self.accounts))?;
        put_u64(&mut out.piece, self.records.len() as u64);
        out.bytes(bytemuck::cast_slice(&self.records))?;
        out.bytes(&self.kept)?;
        self.slots.sort_unstable_by_key(|slot| slot.key());
        out.section(self.slots.iter(), |out, slot| put_slot(out, slot))?;
        out.bytes(&self.rest)?;
        out.flush()?;
        assert_eq!(out.emitted, self.size_bytes);
        Ok(())
    }

    /// The copy's buffers, for the next [`StateMachine::snapshot_begin`].
    pub fn into_buffers(self) -> SnapshotBuffers {
        SnapshotBuffers {
            touched: [self.accounts.len(), self.records.len(), self.slots.len()],
            accounts: self.accounts,
            records: self.records,
            slots: self.slots,
        }
    }
}

impl StateMachine {
    /// The whole logical state as bytes: deterministic (equal states give equal bytes),
    /// versioned and little-endian; see the module documentation for the layout.
    /// Walks every map: meant for checkpoints, not the hot path.
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_parts().encode()
    }

    /// The first step of [`StateMachine::snapshot`]: copies, without sorting or writing
    /// them, what the largest sections hold; [`SnapshotParts::encode`] does the rest.
    pub fn snapshot_parts(&self) -> SnapshotParts {
        SnapshotParts {
            size_bytes: self.snapshot_size_bytes(),
            head: self.snapshot_head(),
            accounts: self.accounts.map.iter().copied().collect(),
            records: self.transfer_records.iter().copied().collect(),
            kept: self.kept_section(),
            slots: self.transfers.map.iter().copied().collect(),
            rest: self.snapshot_rest(),
        }
    }

    /// Begins a snapshot of the state as it is now, copied a little at a time while the
    /// state moves on: every change to the accounts' or the transfers' tables first copies
    /// the 4 KiB of slots it lands in, if not yet copied, and
    /// [`StateMachine::snapshot_advance`] copies the rest, a budget at a time. The smaller
    /// sections are written at once. Call between batches; `buffers` come from the last
    /// snapshot ([`SnapshotParts::into_buffers`]) or are empty.
    pub fn snapshot_begin(&mut self, buffers: SnapshotBuffers) {
        assert!(self.snapshot_copy.is_none(), "one snapshot at a time");
        assert!(
            self.cross_shard.staged.is_empty(),
            "snapshots are taken between batches"
        );
        let SnapshotBuffers {
            accounts,
            records,
            slots,
            touched: _,
        } = buffers;
        let records = emptied_with_room(records, self.transfer_records.len());
        self.accounts.map.copy_begin(accounts);
        self.transfers.map.copy_begin(slots);
        self.snapshot_copy = Some(SnapshotCopy {
            size_bytes: self.snapshot_size_bytes(),
            head: self.snapshot_head(),
            records,
            records_first: self.transfer_records_base,
            records_end: self.transfer_sequence_next(),
            kept: self.kept_section(),
            rest: self.snapshot_rest(),
        });
    }

    /// What a snapshot's copy holds: accounts, resident transfer records, transfer id
    /// slots (for [`SnapshotBuffers::prepare`]).
    pub fn snapshot_held(&self) -> [usize; 3] {
        [
            self.accounts.map.len(),
            self.transfer_records.len(),
            self.transfers.map.len(),
        ]
    }

    /// Whether a snapshot begun by [`StateMachine::snapshot_begin`] is still being copied.
    pub fn snapshot_in_progress(&self) -> bool {
        self.snapshot_copy.is_some()
    }

    /// Copies up to about `budget_bytes` more of the snapshot in progress; its parts once
    /// the whole of it is copied (then no snapshot is in progress). `usize::MAX` finishes
    /// it at once.
    pub fn snapshot_advance(&mut self, budget_bytes: usize) -> Option<SnapshotParts> {
        let mut budget = budget_bytes;
        let records_left = self.snapshot_records_left();
        if records_left > 0 {
            let count = records_left.min((budget / TRANSFER_SIZE_BYTES).max(1));
            self.snapshot_copy_records(count);
            budget = budget.saturating_sub(count * TRANSFER_SIZE_BYTES);
        }
        let accounts_done = self.accounts.map.copy_advance(budget / 2);
        let slots_done = self.transfers.map.copy_advance(budget / 2);
        if !(accounts_done && slots_done) || self.snapshot_records_left() > 0 {
            return None;
        }
        let copy = self.snapshot_copy.take()?;
        Some(SnapshotParts {
            size_bytes: copy.size_bytes,
            head: copy.head,
            accounts: self.accounts.map.copy_take(),
            records: copy.records,
            kept: copy.kept,
            slots: self.transfers.map.copy_take(),
            rest: copy.rest,
        })
    }

    /// Transfer records the snapshot in progress has yet to copy.
    fn snapshot_records_left(&self) -> usize {
        match &self.snapshot_copy {
            Some(copy) => (copy.records_end - copy.records_first) as usize - copy.records.len(),
            None => 0,
        }
    }

    /// Copies the next `count` transfer records into the snapshot in progress.
    fn snapshot_copy_records(&mut self, count: usize) {
        let Some(copy) = &mut self.snapshot_copy else {
            return;
        };
        let next = copy.records_first + copy.records.len() as u64;
        let offset = (next - self.transfer_records_base) as usize;
        copy.records
            .extend(self.transfer_records.range(offset..offset + count).copied());
    }

    /// Before the transfer records below sequence number `sequence` leave the deque
    /// (eviction): the snapshot in progress copies them first.
    pub(super) fn snapshot_before_records_leave(&mut self, sequence: u64) {
        if let Some(copy) = &self.snapshot_copy {
            let copied_to = copy.records_first + copy.records.len() as u64;
            let needed_to = sequence.min(copy.records_end);
            if needed_to > copied_to {
                self.snapshot_copy_records((needed_to - copied_to) as usize);
            }
        }
    }

    /// The header.
    fn snapshot_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_SIZE_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&RECORD_FORMAT_VERSION.to_le_bytes());
        for capacity in [
            self.config.accounts_capacity,
            self.config.transfers_capacity,
            self.config.orders_capacity,
        ] {
            put_u64(&mut out, capacity as u64);
        }
        put_u64(&mut out, self.config.dispatch_redelivery_ns);
        put_u64(&mut out, self.timestamp_last);
        put_u64(&mut out, self.dispatch_sequence_next);
        put_u128(&mut out, self.transfers_digest);
        put_u64(&mut out, self.transfer_records_base);
        put_u64(&mut out, self.transfers_evicted);
        put_u128(&mut out, self.transfers_evicted_digest);
        assert_eq!(out.len(), HEADER_SIZE_BYTES);
        out
    }

    /// The kept records' section.
    fn kept_section(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            COUNT_SIZE_BYTES + self.transfer_records_kept.len() * KEPT_RECORD_SIZE_BYTES,
        );
        put_section(
            &mut out,
            self.transfer_records_kept.iter(),
            |out, (sequence, record)| {
                put_u64(out, **sequence);
                out.extend_from_slice(bytemuck::bytes_of(*record));
            },
        );
        out
    }

    /// Every section after the slots.
    fn snapshot_rest(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let pendings = sorted_pairs(self.pendings.map.iter());
        put_section(&mut out, pendings, |out, (id, state)| {
            put_pending(out, id, state)
        });
        put_section(&mut out, self.skus_sorted(), |out, sku| {
            out.extend_from_slice(bytemuck::bytes_of(sku));
        });
        let reservations = sorted_by_key(self.reservations.map.iter());
        put_section(&mut out, reservations, put_reservation);
        put_section(
            &mut out,
            sorted_by_key(self.buyer_units.map.iter()),
            put_buyer_units,
        );
        put_section(&mut out, self.orders.entries_sorted(), put_order);
        put_section(
            &mut out,
            self.orders.failures_sorted(),
            |out, (id, code)| {
                put_u128(out, id.0);
                put_u32(out, code.as_u32());
            },
        );
        put_section(
            &mut out,
            self.orders.dispatches_sorted(),
            |out, (id, entry)| put_dispatch(out, id, entry),
        );
        // A BTreeMap walks in key order already.
        put_section(
            &mut out,
            self.dispatch_feed.map.iter(),
            |out, (sequence, id)| {
                put_u64(out, **sequence);
                put_u128(out, id.0);
            },
        );
        put_section(&mut out, self.evicted_filter.layers.iter(), |out, layer| {
            out.extend_from_slice(&layer.to_bytes());
        });
        put_section(&mut out, self.cross_shard.outbox.values(), |out, leg| {
            out.extend_from_slice(bytemuck::bytes_of(*leg));
        });
        put_section(
            &mut out,
            self.cross_shard.compensated.iter(),
            |out, (id, compensated)| {
                put_u128(out, id.0);
                put_u32(out, compensated.code.as_u32());
                out.extend_from_slice(bytemuck::bytes_of(&compensated.transfer));
            },
        );
        assert!(
            self.cross_shard.staged.is_empty(),
            "snapshots are taken between batches"
        );
        put_section(&mut out, self.cross_shard.pendings.values(), |out, leg| {
            out.extend_from_slice(bytemuck::bytes_of(*leg));
        });
        put_section(
            &mut out,
            self.order_saga.spans_sorted(),
            |out, (id, span)| {
                put_u128(out, id.0);
                put_u32(out, span.buyer_shard);
                put_u32(out, span.merchant_shard);
                put_u128(out, span.in_flight.0);
                put_u32(out, span.shard_count);
                put_u32(out, span.units_reserved);
                put_u32(out, span.merchant_ledger);
            },
        );
        put_section(&mut out, self.order_saga.outbox.values(), |out, message| {
            out.extend_from_slice(bytemuck::bytes_of(*message));
        });
        put_section(
            &mut out,
            self.order_saga.unit_outbox.values(),
            |out, sent| {
                out.extend_from_slice(bytemuck::bytes_of(&sent.step));
                put_u128(out, sent.key.0);
            },
        );
        put_section(
            &mut out,
            sorted(self.order_saga.unit_holds.iter()),
            |out, (id, hold)| {
                put_u128(out, id.0);
                put_u64(out, hold.fingerprint);
                out.push(hold.status as u8);
                put_u32(out, hold.failure.as_u32());
            },
        );
        out
    }

    /// Exact size of [`StateMachine::snapshot`]'s output (of a checkpoint's body taken
    /// now). Sums counts: cheap.
    pub fn snapshot_size_bytes(&self) -> usize {
        HEADER_SIZE_BYTES
            + SECTIONS_COUNT * COUNT_SIZE_BYTES
            + self.accounts.map.len() * ACCOUNT_SIZE_BYTES
            + self.transfer_records.len() * TRANSFER_SIZE_BYTES
            + self.transfer_records_kept.len() * KEPT_RECORD_SIZE_BYTES
            + self.transfers.map.len() * SLOT_SIZE_BYTES
            + self.pendings.map.len() * PENDING_SIZE_BYTES
            + self.skus.map.len() * SKU_SIZE_BYTES
            + self.reservations.map.len() * RESERVATION_SIZE_BYTES
            + self.buyer_units.map.len() * BUYER_UNITS_SIZE_BYTES
            + self.orders.len() * ORDER_SIZE_BYTES
            + self.orders.failed_len() * ORDER_FAILED_SIZE_BYTES
            + self.orders.dispatches_len() * DISPATCH_SIZE_BYTES
            + self.dispatch_feed.map.len() * FEED_SIZE_BYTES
            + self.evicted_filter.layers.len() * FILTER_LAYER_HEADER_SIZE_BYTES
            + self.evicted_filter.size_bytes()
            + self.cross_shard.outbox.len() * SHARD_LEG_SIZE_BYTES
            + self.cross_shard.compensated.len() * COMPENSATED_SIZE_BYTES
            + self.cross_shard.pendings.len() * SHARD_LEG_SIZE_BYTES
            + self.order_saga.spans.len() * ORDER_SPAN_SIZE_BYTES
            + self.order_saga.outbox.len() * ORDER_MESSAGE_SIZE_BYTES
            + self.order_saga.unit_outbox.len() * UNIT_SENT_SIZE_BYTES
            + self.order_saga.unit_holds.len() * UNIT_HOLD_SIZE_BYTES
    }

    /// A state machine from [`StateMachine::snapshot`] bytes. Never panics: malformed or
    /// truncated bytes give a [`SnapshotError`]. Tables are sized from the snapshot's config
    /// capacities or its counts, whichever is larger; expiry heaps are rebuilt from the live
    /// holds, reservations, unpaid orders and pending dispatch requests. The capacities
    /// (at most 2^32 each) are allocated as given, so restore only checksummed bytes.
    pub fn restore(bytes: &[u8]) -> Result<StateMachine, SnapshotError> {
        let decoded = Decoded::read(&mut Reader { bytes, offset: 0 })?;
        Ok(decoded.build())
    }
}
