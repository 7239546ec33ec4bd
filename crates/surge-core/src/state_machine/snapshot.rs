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
//!      8    2  snapshot format version (5; 4 and 3, without the last two or three
//!              sections, are still read)
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
//!    108       eighteen sections, each a u64 count then that many items:
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
//! order spans      order id        id u128, buyer shard u32, merchant shard u32,    40
//!                                  step in flight u128 (orders spanning shards)
//! order outbox     transfer id     OrderMessage record (order steps in flight)      176
//! ```
//!
//! Nothing may follow the last section. A committed transfer costs 160 bytes (record and
//! slot; 201 while it has a pending state), a failed transfer id 32, an account 128.

use std::cmp::Reverse;
use std::mem::size_of;

use bytemuck::Pod;

use super::archive::{EvictedFilter, IdFilter};
use super::cross_shard::Compensated;
use super::journal::Journaled;
use super::ledger::{resolution_digest, slot_digest};
use super::order_saga::OrderSpan;
use super::table::{Table, TableEntry};
use super::{
    BuyerUnits, Config, DispatchEntry, DispatchStatus, OrderEntry, PendingState, PendingStatus,
    StateMachine, StoredReservation, TransferSlot,
};
use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};
use crate::records::{
    order_message_kind, Account, Order, OrderMessage, OrderStatus, Reservation, ReservationStatus,
    ShardLeg, Sku, Transfer, ORDER_LINES_MAX, RECORD_FORMAT_VERSION,
};
use crate::result::ResultCode;

/// First bytes of every snapshot.
const MAGIC: [u8; 8] = *b"SURGESNP";

/// Version of the layout in the module documentation. Bump on any change.
const SNAPSHOT_FORMAT_VERSION: u16 = 5;
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
const SECTIONS_COUNT: usize = 18;
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
const ORDER_SPAN_SIZE_BYTES: usize = 16 + 4 + 4 + 16;
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

impl StateMachine {
    /// The whole logical state as bytes: deterministic (equal states give equal bytes),
    /// versioned and little-endian; see the module documentation for the layout.
    /// Walks every map: meant for checkpoints, not the hot path.
    pub fn snapshot(&self) -> Vec<u8> {
        let size_bytes = self.snapshot_size_bytes();
        let mut out = Vec::with_capacity(size_bytes);
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

        put_section(&mut out, self.accounts_sorted(), |out, account| {
            out.extend_from_slice(bytemuck::bytes_of(account));
        });
        put_section(&mut out, self.transfer_records.iter(), |out, record| {
            out.extend_from_slice(bytemuck::bytes_of(*record));
        });
        put_section(
            &mut out,
            self.transfer_records_kept.iter(),
            |out, (sequence, record)| {
                put_u64(out, **sequence);
                out.extend_from_slice(bytemuck::bytes_of(*record));
            },
        );
        put_section(&mut out, sorted_by_key(self.transfers.map.iter()), put_slot);
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
            },
        );
        put_section(&mut out, self.order_saga.outbox.values(), |out, message| {
            out.extend_from_slice(bytemuck::bytes_of(*message));
        });
        assert_eq!(out.len(), size_bytes);
        out
    }

    /// Exact size of [`StateMachine::snapshot`]'s output.
    fn snapshot_size_bytes(&self) -> usize {
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

// --- Writing. ---

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u128(out: &mut Vec<u8>, value: u128) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_section<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T, IntoIter: ExactSizeIterator>,
    mut put: impl FnMut(&mut Vec<u8>, &T),
) {
    let items = items.into_iter();
    put_u64(out, items.len() as u64);
    for item in items {
        put(out, &item);
    }
}

/// Table entries in key order.
fn sorted_by_key<'a, E: TableEntry + 'a>(entries: impl Iterator<Item = &'a E>) -> Vec<E>
where
    E::Key: Ord,
{
    let mut entries: Vec<E> = entries.copied().collect();
    entries.sort_unstable_by_key(|entry| entry.key());
    entries
}

/// Map entries in key order.
fn sorted_pairs<'a, K: Ord + Copy + 'a, V: Copy + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
) -> Vec<(K, V)> {
    let mut entries: Vec<(K, V)> = entries.map(|(key, value)| (*key, *value)).collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    entries
}

fn put_slot(out: &mut Vec<u8>, slot: &TransferSlot) {
    put_u128(out, slot.id.0);
    put_u64(out, slot.index);
    put_u64(out, slot.fingerprint);
}

fn put_pending(out: &mut Vec<u8>, id: &TransferId, state: &PendingState) {
    put_u128(out, id.0);
    put_u64(out, state.expires_at);
    put_u128(out, state.order_id.0);
    out.push(state.status as u8);
}

fn put_reservation(out: &mut Vec<u8>, stored: &StoredReservation) {
    out.extend_from_slice(bytemuck::bytes_of(&stored.reservation));
    put_u64(out, stored.fingerprint);
    put_u32(out, stored.failure);
}

fn put_buyer_units(out: &mut Vec<u8>, held: &BuyerUnits) {
    let (sku_id, buyer_id) = held.key();
    put_u64(out, sku_id.0);
    put_u128(out, buyer_id.0);
    put_u64(out, held.units);
}

fn put_order(out: &mut Vec<u8>, entry: &OrderEntry) {
    out.extend_from_slice(bytemuck::bytes_of(&entry.order));
    put_u64(out, entry.fingerprint);
    put_u64(out, entry.expires_at);
    put_u128(out, entry.payment_transfer_id.0);
    put_u128(out, entry.closing_transfer_id.0);
}

fn put_dispatch(out: &mut Vec<u8>, id: &DispatchId, entry: &DispatchEntry) {
    put_u128(out, id.0);
    put_u128(out, entry.order_id.0);
    put_u64(out, entry.sequence);
    put_u64(out, entry.created_at);
    put_u64(out, entry.redeliver_at);
    put_u32(out, entry.attempts);
    out.push(entry.status as u8);
}

// --- Reading. ---

/// A cursor over untrusted bytes: every read is bounds-checked and returns an error.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        let taken = self
            .offset
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.offset..end));
        match taken {
            Some(taken) => {
                self.offset += len;
                Ok(taken)
            }
            None => Err(SnapshotError::Truncated {
                offset: self.offset,
                needed: len.saturating_sub(self.remaining()),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, SnapshotError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.array().map(u64::from_le_bytes)
    }

    fn u128(&mut self) -> Result<u128, SnapshotError> {
        self.array().map(u128::from_le_bytes)
    }

    fn record<T: Pod>(&mut self) -> Result<T, SnapshotError> {
        self.take(size_of::<T>()).map(bytemuck::pod_read_unaligned)
    }

    /// A section's item count, checked to fit in the bytes left, so nothing is allocated
    /// for items that are not there.
    fn count(&mut self, item_size_bytes: usize) -> Result<usize, SnapshotError> {
        let offset = self.offset;
        let count = self.u64()?;
        let size_bytes = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(item_size_bytes))
            .ok_or_else(|| invalid(offset, "section count"))?;
        if size_bytes > self.remaining() {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                needed: size_bytes - self.remaining(),
            });
        }
        Ok(size_bytes / item_size_bytes)
    }

    /// A section whose items must come in strictly increasing key order.
    fn sorted_section<T, K: Ord>(
        &mut self,
        item_size_bytes: usize,
        what: &'static str,
        mut read: impl FnMut(&mut Self) -> Result<T, SnapshotError>,
        key: impl Fn(&T) -> K,
    ) -> Result<Vec<T>, SnapshotError> {
        let count = self.count(item_size_bytes)?;
        let mut items: Vec<T> = Vec::with_capacity(count);
        for _ in 0..count {
            let offset = self.offset;
            let item = read(self)?;
            if let Some(previous) = items.last() {
                if key(previous) >= key(&item) {
                    return Err(invalid(offset, what));
                }
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// A snapshot read and validated, before any table is allocated.
struct Decoded {
    config: Config,
    timestamp_last: u64,
    dispatch_sequence_next: u64,
    transfers_digest: u128,
    transfer_records_base: u64,
    transfers_evicted: u64,
    transfers_evicted_digest: u128,
    accounts: Vec<Account>,
    transfer_records: Vec<Transfer>,
    transfer_records_kept: Vec<(u64, Transfer)>,
    transfer_slots: Vec<TransferSlot>,
    pendings: Vec<(TransferId, PendingState)>,
    skus: Vec<Sku>,
    reservations: Vec<StoredReservation>,
    buyer_units: Vec<BuyerUnits>,
    orders: Vec<OrderEntry>,
    orders_failed: Vec<(OrderId, ResultCode)>,
    dispatches: Vec<(DispatchId, DispatchEntry)>,
    dispatch_feed: Vec<(u64, DispatchId)>,
    filter_layers: Vec<IdFilter>,
    shard_outbox: Vec<ShardLeg>,
    shard_pendings: Vec<ShardLeg>,
    compensated: Vec<(TransferId, Compensated)>,
    order_spans: Vec<(OrderId, OrderSpan)>,
    order_outbox: Vec<OrderMessage>,
}

impl Decoded {
    fn read(reader: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let magic: [u8; 8] = reader.array()?;
        if magic != MAGIC {
            return Err(SnapshotError::BadMagic { found: magic });
        }
        // Version 3 (before cross-shard pending transfers) lacks only the last section.
        let version = reader.u16()?;
        let known = [
            SNAPSHOT_FORMAT_VERSION,
            SNAPSHOT_FORMAT_VERSION_4,
            SNAPSHOT_FORMAT_VERSION_PREVIOUS,
        ];
        if !known.contains(&version) {
            return Err(SnapshotError::UnsupportedVersion {
                what: "snapshot format",
                found: version,
                supported: SNAPSHOT_FORMAT_VERSION,
            });
        }
        check_version(reader, "record format", RECORD_FORMAT_VERSION)?;
        let config = Config {
            accounts_capacity: read_capacity(reader)?,
            transfers_capacity: read_capacity(reader)?,
            orders_capacity: read_capacity(reader)?,
            dispatch_redelivery_ns: reader.u64()?,
        };
        let timestamp_last = reader.u64()?;
        let offset = reader.offset;
        let dispatch_sequence_next = reader.u64()?;
        if dispatch_sequence_next == 0 {
            return Err(invalid(offset, "dispatch_sequence_next"));
        }
        let transfers_digest = reader.u128()?;
        let digest_offset = reader.offset - 16;
        let offset = reader.offset;
        let transfer_records_base = reader.u64()?;
        if transfer_records_base >= TransferSlot::FAILED_BIT {
            return Err(invalid(offset, "transfer_records_base"));
        }
        let transfers_evicted = reader.u64()?;
        let transfers_evicted_digest = reader.u128()?;

        let accounts =
            reader.sorted_section(ACCOUNT_SIZE_BYTES, "account order", read_account, |a| a.id)?;
        let count = reader.count(TRANSFER_SIZE_BYTES)?;
        let mut transfer_records: Vec<Transfer> = Vec::with_capacity(count);
        for _ in 0..count {
            transfer_records.push(reader.record()?);
        }
        let transfer_records_kept = reader.sorted_section(
            KEPT_RECORD_SIZE_BYTES,
            "kept record order",
            |reader| {
                let offset = reader.offset;
                let sequence = reader.u64()?;
                if sequence >= transfer_records_base {
                    return Err(invalid(offset, "kept record sequence"));
                }
                Ok((sequence, reader.record::<Transfer>()?))
            },
            |(sequence, _)| *sequence,
        )?;
        let records = Records {
            base: transfer_records_base,
            window: &transfer_records,
            kept: &transfer_records_kept,
        };
        let transfer_slots = reader.sorted_section(
            SLOT_SIZE_BYTES,
            "transfer slot order",
            |reader| read_slot(reader, &records),
            |slot| slot.id,
        )?;
        let pendings = reader.sorted_section(
            PENDING_SIZE_BYTES,
            "pending order",
            |reader| read_pending(reader, &transfer_slots),
            |(id, _)| *id,
        )?;
        // The digest covers resident slots, resolved holds and what left memory.
        let slots_digest = transfer_slots.iter().fold(0u128, |sum, slot| {
            let timestamp = match slot.failure() {
                Some(_) => 0,
                None => records
                    .get(slot.sequence())
                    .map_or(0, |record| record.timestamp),
            };
            sum.wrapping_add(slot_digest(*slot, timestamp))
        });
        let digest = pendings
            .iter()
            .filter(|(_, state)| state.status != PendingStatus::Pending)
            .fold(slots_digest, |sum, (id, state)| {
                sum.wrapping_add(resolution_digest(*id, state.status))
            })
            .wrapping_add(transfers_evicted_digest);
        if digest != transfers_digest {
            return Err(invalid(digest_offset, "transfers digest"));
        }
        let skus = reader.sorted_section(SKU_SIZE_BYTES, "sku order", read_sku, |s| s.id)?;
        let reservations = reader.sorted_section(
            RESERVATION_SIZE_BYTES,
            "reservation order",
            read_reservation,
            |stored| stored.key(),
        )?;
        let buyer_units = reader.sorted_section(
            BUYER_UNITS_SIZE_BYTES,
            "buyer units order",
            read_buyer_units,
            |held| held.key(),
        )?;
        let orders =
            reader.sorted_section(ORDER_SIZE_BYTES, "order order", read_order, |e| e.order.id)?;
        let orders_failed = reader.sorted_section(
            ORDER_FAILED_SIZE_BYTES,
            "failed order order",
            |reader| read_order_failed(reader, &orders),
            |(id, _)| *id,
        )?;
        let dispatches = reader.sorted_section(
            DISPATCH_SIZE_BYTES,
            "dispatch order",
            |reader| read_dispatch(reader, &orders, dispatch_sequence_next),
            |(id, _)| *id,
        )?;
        let dispatch_feed = reader.sorted_section(
            FEED_SIZE_BYTES,
            "dispatch feed order",
            |reader| read_feed(reader, &dispatches),
            |(sequence, _)| *sequence,
        )?;
        let count = reader.count(FILTER_LAYER_HEADER_SIZE_BYTES)?;
        let mut filter_layers = Vec::with_capacity(count);
        for _ in 0..count {
            filter_layers.push(read_filter_layer(reader)?);
        }
        let filtered: u64 = filter_layers.iter().map(|layer| layer.count).sum();
        if filtered != transfers_evicted {
            return Err(invalid(reader.offset, "filter count"));
        }
        let shard_outbox = reader.sorted_section(
            SHARD_LEG_SIZE_BYTES,
            "shard outbox order",
            |reader| reader.record::<ShardLeg>(),
            |leg| leg.transfer.id,
        )?;
        let compensated = reader.sorted_section(
            COMPENSATED_SIZE_BYTES,
            "compensated order",
            |reader| {
                let id = TransferId(reader.u128()?);
                let code = read_failure(reader)?;
                let transfer: Transfer = reader.record()?;
                Ok((id, Compensated { code, transfer }))
            },
            |(id, _)| *id,
        )?;
        let shard_pendings = if version == SNAPSHOT_FORMAT_VERSION_PREVIOUS {
            Vec::new()
        } else {
            reader.sorted_section(
                SHARD_LEG_SIZE_BYTES,
                "shard pendings order",
                |reader| reader.record::<ShardLeg>(),
                |leg| leg.transfer.id,
            )?
        };
        let (order_spans, order_outbox) = if version == SNAPSHOT_FORMAT_VERSION {
            read_order_saga(reader, &orders)?
        } else {
            (Vec::new(), Vec::new())
        };
        if reader.remaining() != 0 {
            return Err(SnapshotError::TrailingBytes {
                offset: reader.offset,
                count: reader.remaining(),
            });
        }
        Ok(Self {
            config,
            timestamp_last,
            dispatch_sequence_next,
            transfers_digest,
            transfer_records_base,
            transfers_evicted,
            transfers_evicted_digest,
            accounts,
            transfer_records,
            transfer_records_kept,
            transfer_slots,
            pendings,
            skus,
            reservations,
            buyer_units,
            orders,
            orders_failed,
            dispatches,
            dispatch_feed,
            filter_layers,
            shard_outbox,
            compensated,
            shard_pendings,
            order_spans,
            order_outbox,
        })
    }

    /// The state machine, tables sized from the config or the counts, heaps rebuilt.
    fn build(self) -> StateMachine {
        let orders_count = [
            self.pendings.len(),
            self.reservations.len(),
            self.buyer_units.len(),
            self.orders.len(),
            self.dispatches.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let config = self.config;
        let sizing = Config {
            accounts_capacity: config.accounts_capacity.max(self.accounts.len()),
            transfers_capacity: config
                .transfers_capacity
                .max(self.transfer_slots.len())
                .max(self.transfer_records.len()),
            orders_capacity: config.orders_capacity.max(orders_count),
            ..config
        };
        let mut sm = StateMachine::new(sizing);
        sm.config = config;
        sm.timestamp_last = self.timestamp_last;
        sm.dispatch_sequence_next = self.dispatch_sequence_next;
        sm.transfers_digest = self.transfers_digest;
        sm.transfer_records_base = self.transfer_records_base;
        sm.transfers_evicted = self.transfers_evicted;
        sm.transfers_evicted_digest = self.transfers_evicted_digest;
        sm.transfer_records_kept = self.transfer_records_kept.into_iter().collect();
        sm.evicted_filter = EvictedFilter {
            layers: self.filter_layers,
        };
        sm.skus = Journaled::new(Table::with_capacity(
            self.skus.len().max(SMALL_MAPS_CAPACITY_MIN),
        ));
        // Keys were checked unique and non-zero, so every insert adds an entry.
        for account in self.accounts {
            assert!(sm.accounts.map.insert(account).is_none());
        }
        sm.transfer_records
            .extend(self.transfer_records.iter().copied());
        for slot in self.transfer_slots {
            assert!(sm.transfers.map.insert(slot).is_none());
        }
        for (id, state) in self.pendings {
            let live = state.status == PendingStatus::Pending && state.expires_at != 0;
            if live && state.order_id.is_zero() {
                sm.pending_expiry.push(Reverse((state.expires_at, id)));
            }
            assert!(sm.pendings.map.insert(id, state).is_none());
        }
        for sku in self.skus {
            assert!(sm.skus.map.insert(sku).is_none());
        }
        for stored in self.reservations {
            let reserved = ReservationStatus::Reserved as u16;
            if stored.failure == 0 && stored.reservation.status == reserved {
                let (order_id, sku_id) = stored.key();
                let due = stored.expires_at();
                sm.reservation_expiry.push(Reverse((due, order_id, sku_id)));
            }
            assert!(sm.reservations.map.insert(stored).is_none());
        }
        for held in self.buyer_units {
            assert!(sm.buyer_units.map.insert(held).is_none());
        }
        for entry in &self.orders {
            if entry.order.status == OrderStatus::Reserved as u16 {
                sm.order_expiry
                    .push(Reverse((entry.expires_at, entry.order.id)));
            }
            sm.orders.restore(entry);
        }
        for (id, code) in self.orders_failed {
            sm.orders.record_failure(id, code);
        }
        for (id, entry) in self.dispatches {
            if entry.status == DispatchStatus::Pending {
                sm.dispatch_redelivery
                    .push(Reverse((entry.redeliver_at, id)));
            }
            sm.orders.restore_dispatch(&entry);
        }
        for (sequence, id) in self.dispatch_feed {
            assert!(sm.dispatch_feed.map.insert(sequence, id).is_none());
        }
        sm.cross_shard.outbox = self
            .shard_outbox
            .into_iter()
            .map(|leg| (leg.transfer.id, leg))
            .collect();
        sm.cross_shard.compensated = self.compensated.into_iter().collect();
        sm.cross_shard.pendings = self
            .shard_pendings
            .into_iter()
            .map(|leg| (leg.transfer.id, leg))
            .collect();
        for (id, _) in &self.order_spans {
            let order = sm
                .orders
                .get(*id)
                .expect("a span's order is checked placed");
            sm.order_saga
                .authorizations
                .insert(order.order.transfer_id, *id);
        }
        sm.order_saga.spans = self.order_spans.into_iter().collect();
        sm.order_saga.outbox = self
            .order_outbox
            .into_iter()
            .map(|message| (message.leg.transfer.id, message))
            .collect();
        sm
    }
}

/// The order spans and the order outbox, as read.
type OrderSagaSections = (Vec<(OrderId, OrderSpan)>, Vec<OrderMessage>);

/// The order spans and order outbox sections, checked against each other and the placed
/// `orders`: every span names a placed order, every step in flight is in the outbox and
/// names its span's order, every message's kind is known.
fn read_order_saga(
    reader: &mut Reader<'_>,
    orders: &[OrderEntry],
) -> Result<OrderSagaSections, SnapshotError> {
    let placed = |id: OrderId| {
        orders
            .binary_search_by_key(&id, |entry| entry.order.id)
            .is_ok()
    };
    let spans = reader.sorted_section(
        ORDER_SPAN_SIZE_BYTES,
        "order span order",
        |reader| {
            let id = OrderId(reader.u128()?);
            let buyer_shard = reader.u32()?;
            let merchant_shard = reader.u32()?;
            let in_flight = TransferId(reader.u128()?);
            if !placed(id) {
                return Err(invalid(reader.offset, "order span of no placed order"));
            }
            let span = OrderSpan {
                buyer_shard,
                merchant_shard,
                in_flight,
            };
            Ok((id, span))
        },
        |(id, _)| *id,
    )?;
    let outbox = reader.sorted_section(
        ORDER_MESSAGE_SIZE_BYTES,
        "order outbox order",
        |reader| {
            let message: OrderMessage = reader.record()?;
            let known = (order_message_kind::AUTHORIZE..=order_message_kind::REFUND)
                .contains(&message.kind);
            let span = spans
                .binary_search_by_key(&message.order_id, |(id, _)| *id)
                .ok()
                .map(|index| spans[index].1);
            let in_flight = span.is_some_and(|span| span.in_flight == message.leg.transfer.id);
            let expiry = message.kind == order_message_kind::EXPIRE;
            if !known || (!expiry && !in_flight) {
                return Err(invalid(reader.offset, "order step"));
            }
            Ok(message)
        },
        |message| message.leg.transfer.id,
    )?;
    for (_, span) in &spans {
        let sent = span.in_flight.is_zero()
            || outbox
                .binary_search_by_key(&span.in_flight, |message| message.leg.transfer.id)
                .is_ok();
        if !sent {
            return Err(invalid(reader.offset, "order step in flight"));
        }
    }
    Ok((spans, outbox))
}

fn check_version(
    reader: &mut Reader<'_>,
    what: &'static str,
    supported: u16,
) -> Result<(), SnapshotError> {
    let found = reader.u16()?;
    if found != supported {
        return Err(SnapshotError::UnsupportedVersion {
            what,
            found,
            supported,
        });
    }
    Ok(())
}

fn read_capacity(reader: &mut Reader<'_>) -> Result<usize, SnapshotError> {
    let offset = reader.offset;
    let capacity = reader.u64()?;
    if capacity > CONFIG_CAPACITY_MAX {
        return Err(invalid(offset, "config capacity"));
    }
    usize::try_from(capacity).map_err(|_| invalid(offset, "config capacity"))
}

/// A failure code: a known code that is not a success.
fn read_failure(reader: &mut Reader<'_>) -> Result<ResultCode, SnapshotError> {
    let offset = reader.offset;
    match ResultCode::from_u32(reader.u32()?) {
        Some(code) if !code.is_success() => Ok(code),
        _ => Err(invalid(offset, "failure code")),
    }
}

fn read_account(reader: &mut Reader<'_>) -> Result<Account, SnapshotError> {
    let offset = reader.offset;
    let account: Account = reader.record()?;
    if account.id.is_zero() {
        return Err(invalid(offset, "account id"));
    }
    Ok(account)
}

/// The resident records of a snapshot, by sequence number.
struct Records<'a> {
    base: u64,
    window: &'a [Transfer],
    kept: &'a [(u64, Transfer)],
}

impl Records<'_> {
    fn get(&self, sequence: u64) -> Option<&Transfer> {
        match sequence.checked_sub(self.base) {
            Some(offset) => usize::try_from(offset)
                .ok()
                .and_then(|offset| self.window.get(offset)),
            None => self
                .kept
                .binary_search_by_key(&sequence, |(kept, _)| *kept)
                .ok()
                .map(|index| &self.kept[index].1),
        }
    }
}

fn read_filter_layer(reader: &mut Reader<'_>) -> Result<IdFilter, SnapshotError> {
    let offset = reader.offset;
    let capacity = reader.u64()?;
    reader.offset = offset;
    let size = IdFilter::size_bytes_for(capacity)
        .ok_or_else(|| invalid(offset, "filter layer capacity"))?;
    IdFilter::from_bytes(reader.take(size)?)
        .filter(EvictedFilter::is_layer)
        .ok_or_else(|| invalid(offset, "filter layer"))
}

fn read_slot(
    reader: &mut Reader<'_>,
    records: &Records<'_>,
) -> Result<TransferSlot, SnapshotError> {
    let offset = reader.offset;
    let slot = TransferSlot {
        id: TransferId(reader.u128()?),
        index: reader.u64()?,
        fingerprint: reader.u64()?,
    };
    if slot.id.is_zero() {
        return Err(invalid(offset, "transfer id"));
    }
    if slot.index & TransferSlot::FAILED_BIT != 0 {
        let code = u32::try_from(slot.fingerprint)
            .ok()
            .and_then(ResultCode::from_u32);
        if code.is_none_or(|code| code.is_success()) {
            return Err(invalid(offset, "transfer failure code"));
        }
        return Ok(slot);
    }
    match records.get(slot.sequence()) {
        Some(record) if record.id == slot.id && flags_match(&slot, record) => Ok(slot),
        Some(record) if record.id == slot.id => Err(invalid(offset, "transfer slot flags")),
        Some(_) => Err(invalid(offset, "transfer record of another id")),
        None => Err(invalid(offset, "transfer record index")),
    }
}

/// Whether a committed slot's flag bits say what its record says.
fn flags_match(slot: &TransferSlot, record: &Transfer) -> bool {
    let code = record.code >= crate::constants::TRANSFER_CODE_SURGE_MIN;
    let pending = record.flags & crate::records::transfer_flags::PENDING != 0;
    slot.is_order_transfer() == code && slot.is_pending() == pending
}

fn read_pending(
    reader: &mut Reader<'_>,
    slots: &[TransferSlot],
) -> Result<(TransferId, PendingState), SnapshotError> {
    let offset = reader.offset;
    let id = TransferId(reader.u128()?);
    let expires_at = reader.u64()?;
    let order_id = OrderId(reader.u128()?);
    let status = match reader.u8()? {
        1 => PendingStatus::Pending,
        2 => PendingStatus::Posted,
        3 => PendingStatus::Voided,
        4 => PendingStatus::Expired,
        _ => return Err(invalid(offset, "pending status")),
    };
    // A pending state belongs to a committed transfer (its record is read on resolve).
    let committed = slots
        .binary_search_by_key(&id, |slot| slot.id)
        .ok()
        .and_then(|index| slots.get(index))
        .is_some_and(|slot| slot.failure().is_none() && slot.is_pending());
    if !committed {
        return Err(invalid(offset, "pending state of no committed transfer"));
    }
    let state = PendingState {
        expires_at,
        order_id,
        status,
    };
    Ok((id, state))
}

fn read_sku(reader: &mut Reader<'_>) -> Result<Sku, SnapshotError> {
    let offset = reader.offset;
    let sku: Sku = reader.record()?;
    if sku.id.is_zero() {
        return Err(invalid(offset, "sku id"));
    }
    Ok(sku)
}

fn read_reservation(reader: &mut Reader<'_>) -> Result<StoredReservation, SnapshotError> {
    let offset = reader.offset;
    let reservation: Reservation = reader.record()?;
    let fingerprint = reader.u64()?;
    let failure_offset = reader.offset;
    let failure = reader.u32()?;
    if reservation.order_id.is_zero() || reservation.sku_id.is_zero() {
        return Err(invalid(offset, "reservation key"));
    }
    if failure == 0 {
        if ReservationStatus::from_u16(reservation.status).is_none() {
            return Err(invalid(offset, "reservation status"));
        }
        // The expiry is computed as `timestamp + timeout_ns` and must not overflow.
        if reservation
            .timestamp
            .checked_add(reservation.timeout_ns)
            .is_none()
        {
            return Err(invalid(offset, "reservation timeout"));
        }
    } else {
        let code = ResultCode::from_u32(failure);
        if code.is_none_or(|code| code.is_success()) {
            return Err(invalid(failure_offset, "reservation failure code"));
        }
    }
    Ok(StoredReservation {
        reservation,
        fingerprint,
        failure,
    })
}

fn read_buyer_units(reader: &mut Reader<'_>) -> Result<BuyerUnits, SnapshotError> {
    let offset = reader.offset;
    let sku_id = SkuId(reader.u64()?);
    let buyer_id = AccountId(reader.u128()?);
    let units = reader.u64()?;
    if sku_id.is_zero() || buyer_id.is_zero() {
        return Err(invalid(offset, "buyer units key"));
    }
    // A count is removed when it drops to zero.
    if units == 0 {
        return Err(invalid(offset, "buyer units"));
    }
    Ok(BuyerUnits::new(sku_id, buyer_id, units))
}

fn read_order(reader: &mut Reader<'_>) -> Result<OrderEntry, SnapshotError> {
    let offset = reader.offset;
    let order: Order = reader.record()?;
    let entry = OrderEntry {
        order,
        fingerprint: reader.u64()?,
        expires_at: reader.u64()?,
        payment_transfer_id: TransferId(reader.u128()?),
        closing_transfer_id: TransferId(reader.u128()?),
    };
    if order.id.is_zero() {
        return Err(invalid(offset, "order id"));
    }
    // Stored once, as the order's timestamp and timeout.
    if order.timestamp.checked_add(order.timeout_ns) != Some(entry.expires_at) {
        return Err(invalid(offset, "order expiry"));
    }
    if OrderStatus::from_u16(order.status).is_none() {
        return Err(invalid(offset, "order status"));
    }
    if usize::from(order.line_count) > ORDER_LINES_MAX {
        return Err(invalid(offset, "order line count"));
    }
    Ok(entry)
}

fn read_order_failed(
    reader: &mut Reader<'_>,
    orders: &[OrderEntry],
) -> Result<(OrderId, ResultCode), SnapshotError> {
    let offset = reader.offset;
    let id = OrderId(reader.u128()?);
    let code = read_failure(reader)?;
    if id.is_zero() {
        return Err(invalid(offset, "failed order id"));
    }
    if orders
        .binary_search_by_key(&id, |entry| entry.order.id)
        .is_ok()
    {
        return Err(invalid(offset, "order both placed and failed"));
    }
    Ok((id, code))
}

fn read_dispatch(
    reader: &mut Reader<'_>,
    orders: &[OrderEntry],
    sequence_next: u64,
) -> Result<(DispatchId, DispatchEntry), SnapshotError> {
    let offset = reader.offset;
    let id = DispatchId(reader.u128()?);
    let order_id = OrderId(reader.u128()?);
    let sequence = reader.u64()?;
    let created_at = reader.u64()?;
    let redeliver_at = reader.u64()?;
    let attempts = reader.u32()?;
    let status = match reader.u8()? {
        1 => DispatchStatus::Pending,
        2 => DispatchStatus::Acknowledged,
        3 => DispatchStatus::Cancelled,
        _ => return Err(invalid(offset, "dispatch status")),
    };
    if id.is_zero() || id != DispatchId::from(order_id) {
        return Err(invalid(offset, "dispatch id"));
    }
    // Queries of a request read its order.
    if orders
        .binary_search_by_key(&order_id, |entry| entry.order.id)
        .is_err()
    {
        return Err(invalid(offset, "dispatch request of no order"));
    }
    if sequence >= sequence_next {
        return Err(invalid(offset, "dispatch sequence"));
    }
    let entry = DispatchEntry {
        order_id,
        sequence,
        created_at,
        redeliver_at,
        attempts,
        status,
    };
    Ok((id, entry))
}

fn read_feed(
    reader: &mut Reader<'_>,
    dispatches: &[(DispatchId, DispatchEntry)],
) -> Result<(u64, DispatchId), SnapshotError> {
    let offset = reader.offset;
    let sequence = reader.u64()?;
    let id = DispatchId(reader.u128()?);
    // The feed names pending requests under their current sequence.
    let listed = dispatches
        .binary_search_by_key(&id, |(id, _)| *id)
        .ok()
        .and_then(|index| dispatches.get(index))
        .is_some_and(|(_, entry)| {
            entry.status == DispatchStatus::Pending && entry.sequence == sequence
        });
    if !listed {
        return Err(invalid(offset, "dispatch feed entry"));
    }
    Ok((sequence, id))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::BatchBuf;
    use crate::records::{
        account_flags, order_action_flags, transfer_flags, DispatchAck, OrderAction, OrderLine,
        ReservationKey,
    };
    use crate::state_machine::{OrderLookup, ReservationLookup, TransferLookup};

    const LEDGER: u32 = 1;
    const REDELIVERY_NS: u64 = 50_000;
    /// Gap between the end of one batch and the start of the next.
    const STEP_NS: u64 = 1_000;
    const LONG_NS: u64 = 1_000_000_000;
    const BANK: u128 = 1;
    const BUYER: u128 = 2;
    const BUYER_2: u128 = 3;
    const MERCHANT: u128 = 4;
    const CAPPED: u128 = 5;

    fn config() -> Config {
        Config {
            accounts_capacity: 16,
            transfers_capacity: 16,
            orders_capacity: 16,
            dispatch_redelivery_ns: REDELIVERY_NS,
        }
    }

    fn account(id: u128, flags: u16) -> Account {
        Account {
            id: AccountId(id),
            ledger: LEDGER,
            code: 10,
            flags,
            ..Account::default()
        }
    }

    fn transfer(id: u128, debit: u128, credit: u128, amount: u64) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(debit),
            credit_account_id: AccountId(credit),
            amount,
            ledger: LEDGER,
            code: 20,
            ..Transfer::default()
        }
    }

    fn pending(id: u128, debit: u128, credit: u128, amount: u64, timeout_ns: u64) -> Transfer {
        Transfer {
            flags: transfer_flags::PENDING,
            timeout_ns,
            ..transfer(id, debit, credit, amount)
        }
    }

    fn resolve(id: u128, pending_id: u128, amount: u64, flags: u16) -> Transfer {
        Transfer {
            id: TransferId(id),
            pending_id: TransferId(pending_id),
            amount,
            flags,
            ..Transfer::default()
        }
    }

    fn sku(id: u64, stocked: u64, limit_per_buyer: u32) -> Sku {
        Sku {
            id: SkuId(id),
            units_stocked: stocked,
            limit_per_buyer,
            ..Sku::default()
        }
    }

    fn reserve(order: u128, buyer: u128, sku: u64, quantity: u32, timeout: u64) -> Reservation {
        Reservation {
            order_id: OrderId(order),
            buyer_id: AccountId(buyer),
            sku_id: SkuId(sku),
            quantity,
            timeout_ns: timeout,
            ..Reservation::default()
        }
    }

    fn key(order: u128, sku: u64) -> ReservationKey {
        ReservationKey {
            order_id: OrderId(order),
            sku_id: SkuId(sku),
            ..ReservationKey::default()
        }
    }

    fn order(id: u128, transfer: u128, timeout_ns: u64, lines: &[(u64, u32)]) -> Order {
        let mut order_lines = [OrderLine::default(); ORDER_LINES_MAX];
        for (slot, &(sku_id, quantity)) in order_lines.iter_mut().zip(lines) {
            slot.sku_id = SkuId(sku_id);
            slot.quantity = quantity;
        }
        Order {
            id: OrderId(id),
            buyer_id: AccountId(BUYER),
            merchant_id: AccountId(MERCHANT),
            transfer_id: TransferId(transfer),
            amount: 10,
            timeout_ns,
            ledger: LEDGER,
            line_count: u16::try_from(lines.len()).expect("at most eight lines"),
            lines: order_lines,
            ..Order::default()
        }
    }

    fn action(order: u128, transfer: u128, flags: u32) -> OrderAction {
        OrderAction {
            order_id: OrderId(order),
            transfer_id: TransferId(transfer),
            flags,
            ..OrderAction::default()
        }
    }

    fn ack(order: u128) -> DispatchAck {
        DispatchAck {
            dispatch_id: DispatchId(order),
            ..DispatchAck::default()
        }
    }

    /// Log time shared by the machines a test compares.
    struct Clock {
        next_ns: u64,
    }

    impl Clock {
        fn new() -> Self {
            Self { next_ns: 1_000_000 }
        }

        /// The timestamp of `batch`, `advance_ns` past the earliest allowed one.
        fn take(&mut self, batch: &BatchBuf, advance_ns: u64) -> u64 {
            let timestamp = self.next_ns + advance_ns;
            let occupied = batch.as_batch().len().max(1) as u64;
            self.next_ns = timestamp + occupied + STEP_NS;
            timestamp
        }
    }

    fn apply(sm: &mut StateMachine, timestamp: u64, batch: &BatchBuf) -> Vec<ResultCode> {
        let mut results = Vec::new();
        sm.apply(timestamp, batch.as_batch(), &mut results);
        results
    }

    /// Applies `batch` and checks its codes.
    fn run(sm: &mut StateMachine, clock: &mut Clock, batch: BatchBuf, expected: &[ResultCode]) {
        let timestamp = clock.take(&batch, 0);
        assert_eq!(apply(sm, timestamp, &batch), expected, "{batch:?}");
    }

    fn pulse(sm: &mut StateMachine, clock: &mut Clock, advance_ns: u64) {
        let timestamp = clock.take(&BatchBuf::Pulse, advance_ns);
        assert!(apply(sm, timestamp, &BatchBuf::Pulse).is_empty());
    }

    /// A state with an item in every status the state machine knows.
    fn rich_state() -> (StateMachine, Clock) {
        use ResultCode::{ExceedsCredits, ExceedsDebits, Ok, SoldOut};
        let mut sm = StateMachine::new(config());
        let clock = &mut Clock::new();
        let sm_ = &mut sm;
        let wallet = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS;
        let capped = account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;
        let accounts = vec![
            account(BANK, 0),
            account(BUYER, wallet),
            account(BUYER_2, wallet),
            account(MERCHANT, 0),
            account(CAPPED, capped),
        ];
        run(sm_, clock, BatchBuf::CreateAccounts(accounts), &[Ok; 5]);
        let transfers = vec![
            transfer(1, BANK, BUYER, 10_000),
            transfer(2, BANK, BUYER_2, 10_000),
            pending(3, BUYER, MERCHANT, 100, 0),
            pending(4, BUYER, MERCHANT, 50, LONG_NS),
            pending(5, BUYER, MERCHANT, 10, 5),
            pending(6, BUYER, MERCHANT, 20, 0),
            pending(7, BUYER, MERCHANT, 30, 0),
        ];
        run(sm_, clock, BatchBuf::CreateTransfers(transfers), &[Ok; 7]);
        let transfers = vec![
            resolve(8, 6, 15, transfer_flags::POST_PENDING),
            resolve(9, 7, 0, transfer_flags::VOID_PENDING),
            transfer(10, BUYER_2, MERCHANT, 1_000_000),
            transfer(11, BANK, CAPPED, 1),
        ];
        let codes = [Ok, Ok, ExceedsCredits, ExceedsDebits];
        run(sm_, clock, BatchBuf::CreateTransfers(transfers), &codes);
        let skus = vec![sku(1, 100, 0), sku(2, 10, 3), sku(3, 1, 0)];
        run(sm_, clock, BatchBuf::CreateSkus(skus), &[Ok; 3]);
        let reservations = vec![
            reserve(100, BUYER, 1, 2, LONG_NS),
            reserve(101, BUYER, 1, 1, LONG_NS),
            reserve(102, BUYER, 2, 1, LONG_NS),
            reserve(103, BUYER_2, 2, 2, 5),
            reserve(104, BUYER, 3, 5, LONG_NS),
        ];
        let codes = [Ok, Ok, Ok, Ok, SoldOut];
        run(sm_, clock, BatchBuf::Reserve(reservations), &codes);
        run(
            sm_,
            clock,
            BatchBuf::ConfirmReservations(vec![key(101, 1)]),
            &[Ok],
        );
        run(
            sm_,
            clock,
            BatchBuf::ReleaseReservations(vec![key(102, 2)]),
            &[Ok],
        );
        let orders = vec![
            order(1, 20, LONG_NS, &[(1, 1), (2, 1)]),
            order(2, 21, LONG_NS, &[(1, 1)]),
            order(3, 22, LONG_NS, &[(1, 2)]),
            order(4, 23, LONG_NS, &[(2, 1)]),
            order(5, 24, LONG_NS, &[(1, 1)]),
            order(6, 25, 5, &[(1, 1)]),
            order(7, 26, LONG_NS, &[(3, 2)]),
            order(8, 27, LONG_NS, &[(1, 1)]),
        ];
        let codes = [Ok, Ok, Ok, Ok, Ok, Ok, SoldOut, Ok];
        run(sm_, clock, BatchBuf::PlaceOrders(orders), &codes);
        run(
            sm_,
            clock,
            BatchBuf::PayOrders(vec![action(8, 38, 0)]),
            &[Ok],
        );
        pulse(sm_, clock, 2 * REDELIVERY_NS);
        let pays = vec![action(2, 31, 0), action(3, 32, 0), action(4, 33, 0)];
        run(sm_, clock, BatchBuf::PayOrders(pays), &[Ok; 3]);
        run(sm_, clock, BatchBuf::AckDispatch(vec![ack(3)]), &[Ok]);
        let refund = action(4, 43, order_action_flags::RESTOCK);
        run(sm_, clock, BatchBuf::RefundOrders(vec![refund]), &[Ok]);
        run(
            sm_,
            clock,
            BatchBuf::CancelOrders(vec![action(5, 45, 0)]),
            &[Ok],
        );

        // The state really holds every status.
        let status = |sm: &StateMachine, id: u128| match sm.order(OrderId(id)) {
            Some(OrderLookup::Placed(view)) => OrderStatus::from_u16(view.order.status),
            _ => None,
        };
        let statuses: Vec<_> = (1..=8).map(|id| status(&sm, id)).collect();
        let expected = [
            Some(OrderStatus::Reserved),
            Some(OrderStatus::Paid),
            Some(OrderStatus::Dispatched),
            Some(OrderStatus::Refunded),
            Some(OrderStatus::Cancelled),
            Some(OrderStatus::Expired),
            None,
            Some(OrderStatus::Paid),
        ];
        assert_eq!(statuses, expected);
        let redelivered = sm.dispatch(DispatchId(8)).expect("order 8 was paid");
        assert_eq!(redelivered.attempts, 2);
        assert_eq!(sm.dispatch_feed(0, 10).len(), 2);
        let expired = sm.reservation(OrderId(103), SkuId(2));
        assert!(matches!(expired, Some(ReservationLookup::Held(r))
            if r.status == ReservationStatus::Expired as u16));
        let pending_status = |id: u128| match sm.transfer(TransferId(id)) {
            Some(TransferLookup::Committed { pending_status, .. }) => pending_status,
            _ => None,
        };
        assert_eq!(pending_status(3), Some(PendingStatus::Pending));
        assert_eq!(pending_status(5), Some(PendingStatus::Expired));
        assert_eq!(pending_status(6), Some(PendingStatus::Posted));
        assert_eq!(pending_status(7), Some(PendingStatus::Voided));
        (sm, std::mem::replace(clock, Clock::new()))
    }

    /// Snapshots `sm`, restores it and checks the copy is the same state.
    fn round_trip(sm: &StateMachine) -> (Vec<u8>, StateMachine) {
        let bytes = sm.snapshot();
        let restored = StateMachine::restore(&bytes).expect("a snapshot restores");
        assert_eq!(restored.state_hash(), sm.state_hash());
        assert!(
            restored.snapshot() == bytes,
            "a restored machine snapshots the same"
        );
        assert_eq!(restored.config(), sm.config());
        (bytes, restored)
    }

    /// Applies `batch` to both machines: the same codes, the same state.
    fn apply_both(
        original: &mut StateMachine,
        restored: &mut StateMachine,
        timestamp: u64,
        batch: &BatchBuf,
    ) -> Vec<ResultCode> {
        let codes = apply(original, timestamp, batch);
        assert_eq!(apply(restored, timestamp, batch), codes, "{batch:?}");
        assert_eq!(restored.state_hash(), original.state_hash(), "{batch:?}");
        codes
    }

    #[test]
    fn round_trip_keeps_the_whole_state() {
        let (sm, _) = rich_state();
        let (bytes, restored) = round_trip(&sm);
        assert_eq!(restored.memory_counts(), sm.memory_counts());
        assert_eq!(restored.accounts_sorted(), sm.accounts_sorted());
        assert_eq!(restored.orders_sorted(), sm.orders_sorted());
        assert_eq!(restored.dispatches_sorted(), sm.dispatches_sorted());
        assert_eq!(restored.dispatch_feed(0, 100), sm.dispatch_feed(0, 100));
        assert_eq!(restored.timestamp_last(), sm.timestamp_last());
        // Equal states give equal bytes, whatever their tables' slot order.
        let (sm_again, _) = rich_state();
        assert!(sm_again.snapshot() == bytes);
    }

    #[test]
    fn an_empty_machine_round_trips() {
        let sm = StateMachine::new(Config::default());
        let (bytes, _) = round_trip(&sm);
        assert_eq!(
            bytes.len(),
            HEADER_SIZE_BYTES + SECTIONS_COUNT * COUNT_SIZE_BYTES
        );
    }

    #[test]
    fn restored_machine_continues_like_the_original() {
        use ResultCode::{
            Exists, IdAlreadyFailed, Ok, OrderExpired, PendingTransferExpired, ReservationExpired,
        };
        let (mut original, mut clock) = rich_state();
        let (_, mut restored) = round_trip(&original);
        let batches = [
            (
                0,
                BatchBuf::CreateTransfers(vec![
                    transfer(1, BANK, BUYER, 10_000),
                    transfer(10, BUYER_2, MERCHANT, 1_000_000),
                    transfer(50, BANK, BUYER, 5),
                    resolve(51, 3, 0, transfer_flags::POST_PENDING),
                ]),
            ),
            (
                0,
                BatchBuf::PlaceOrders(vec![
                    order(1, 20, LONG_NS, &[(1, 1), (2, 1)]),
                    order(7, 26, LONG_NS, &[(3, 2)]),
                    order(9, 29, 100, &[(1, 1)]),
                ]),
            ),
            (
                0,
                BatchBuf::Reserve(vec![
                    reserve(100, BUYER, 1, 2, LONG_NS),
                    reserve(104, BUYER, 3, 5, LONG_NS),
                ]),
            ),
            (0, BatchBuf::PayOrders(vec![action(2, 31, 0)])),
            (0, BatchBuf::AckDispatch(vec![ack(8)])),
            (2 * LONG_NS, BatchBuf::Pulse),
            (
                0,
                BatchBuf::CreateTransfers(vec![resolve(52, 4, 0, transfer_flags::POST_PENDING)]),
            ),
            (0, BatchBuf::PayOrders(vec![action(1, 53, 0)])),
            (0, BatchBuf::ConfirmReservations(vec![key(100, 1)])),
            (3 * REDELIVERY_NS, BatchBuf::Pulse),
            (3 * REDELIVERY_NS, BatchBuf::Pulse),
        ];
        let expected: [&[ResultCode]; 11] = [
            &[Exists, IdAlreadyFailed, Ok, Ok],
            &[Exists, IdAlreadyFailed, Ok],
            &[Exists, IdAlreadyFailed],
            &[Exists],
            &[Ok],
            &[],
            &[PendingTransferExpired],
            &[OrderExpired],
            &[ReservationExpired],
            &[],
            &[],
        ];
        for ((advance_ns, batch), expected) in batches.iter().zip(expected) {
            let timestamp = clock.take(batch, *advance_ns);
            assert_eq!(
                apply_both(&mut original, &mut restored, timestamp, batch),
                expected
            );
            if let Some(restored_next) = restored.expiry_next() {
                let original_next = original.expiry_next().expect("the original has hints");
                assert!(original_next <= restored_next);
            }
        }
        let redelivered = original.dispatch(DispatchId(2)).expect("order 2 was paid");
        assert!(redelivered.attempts >= 3, "{redelivered:?}");
        assert!(original.snapshot() == restored.snapshot());
    }

    #[test]
    fn versions_3_and_4_snapshots_are_still_read() {
        // Version 4 is version 5 without the last two sections (the order saga's).
        let (sm, _) = rich_state();
        let bytes = sm.snapshot();
        let mut v4 = bytes[..bytes.len() - 2 * COUNT_SIZE_BYTES].to_vec();
        assert_eq!(bytes[bytes.len() - 2 * COUNT_SIZE_BYTES..], [0; 16]);
        v4[8..10].copy_from_slice(&SNAPSHOT_FORMAT_VERSION_4.to_le_bytes());
        let restored = StateMachine::restore(&v4).expect("version 4");
        assert_eq!(restored.state_hash(), sm.state_hash());
        // Version 3 is version 4 without its last section (shard pendings).
        let mut old = bytes[..bytes.len() - 3 * COUNT_SIZE_BYTES].to_vec();
        old[8..10].copy_from_slice(&SNAPSHOT_FORMAT_VERSION_PREVIOUS.to_le_bytes());
        let restored = StateMachine::restore(&old).expect("version 3");
        assert_eq!(restored.state_hash(), sm.state_hash());
        // A version 3 snapshot with anything after its last section is refused.
        let mut trailing = old.clone();
        trailing.extend_from_slice(&[0; 8]);
        assert!(matches!(
            StateMachine::restore(&trailing),
            Err(SnapshotError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let (sm, _) = rich_state();
        let bytes = sm.snapshot();
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert!(matches!(
            StateMachine::restore(&bad),
            Err(SnapshotError::BadMagic { .. })
        ));
        let mut bad = bytes.clone();
        bad[8] = 1;
        assert!(matches!(
            StateMachine::restore(&bad),
            Err(SnapshotError::UnsupportedVersion { found: 1, .. })
        ));
        let mut bad = bytes.clone();
        bad.push(0);
        assert_eq!(
            StateMachine::restore(&bad).err(),
            Some(SnapshotError::TrailingBytes {
                offset: bytes.len(),
                count: 1
            })
        );
        // The first account's id, zeroed.
        let first_item = HEADER_SIZE_BYTES + COUNT_SIZE_BYTES;
        let mut bad = bytes.clone();
        bad[first_item..first_item + 16].fill(0);
        assert_eq!(
            StateMachine::restore(&bad).err(),
            Some(SnapshotError::InvalidValue {
                offset: first_item,
                what: "account id"
            })
        );
        // A count far past the end.
        let mut bad = bytes.clone();
        bad[HEADER_SIZE_BYTES..first_item].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(StateMachine::restore(&bad).is_err());
        assert!(matches!(
            StateMachine::restore(&bytes[..5]),
            Err(SnapshotError::Truncated { offset: 0, .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (sm, _) = rich_state();
        let bytes = sm.snapshot();
        for cut in 0..bytes.len() {
            assert!(
                StateMachine::restore(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    /// A small deterministic generator for the garbage tests.
    fn next_random(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        super::super::table::mix64(*state)
    }

    /// Restores `bytes`; whatever is accepted must be a machine that works and
    /// snapshots back to the same bytes (the encoding is canonical).
    fn restore_checked(bytes: &[u8]) {
        if let Result::Ok(sm) = StateMachine::restore(bytes) {
            let _ = sm.state_hash();
            assert!(sm.snapshot() == bytes, "an accepted snapshot is canonical");
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let (sm, _) = rich_state();
        let bytes = sm.snapshot();
        // The capacities are allocation hints: a flipped one is a valid config asking for
        // gigabytes, which the checksummed file around a snapshot is there to catch.
        let capacities = 12..36;
        let mut state = 7;
        let mut rejected = 0;
        for _ in 0..3_000 {
            let mut bad = bytes.clone();
            let flips = 1 + next_random(&mut state) % 3;
            for _ in 0..flips {
                let mut at = (next_random(&mut state) % bytes.len() as u64) as usize;
                while capacities.contains(&at) {
                    at = (next_random(&mut state) % bytes.len() as u64) as usize;
                }
                let bit = 1u8 << (next_random(&mut state) % 8);
                bad[at] ^= bit;
            }
            if StateMachine::restore(&bad).is_err() {
                rejected += 1;
            }
            restore_checked(&bad);
        }
        // Most flips land in fields every value of which is valid (balances, user data),
        // but the validation catches a fair share.
        assert!(rejected > 100, "{rejected}");
    }

    #[test]
    fn random_bytes_never_panic() {
        let (sm, _) = rich_state();
        let valid = sm.snapshot();
        let mut state = 11;
        for round in 0..2_000 {
            let len = (next_random(&mut state) % 600) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next_random(&mut state) as u8).collect();
            // Half keep a valid header (with small capacities), so the sections are reached.
            if round % 2 == 0 {
                let header = valid.len().min(HEADER_SIZE_BYTES);
                bytes.splice(0..0, valid[..header].iter().copied());
            }
            restore_checked(&bytes);
        }
    }

    // --- Random command streams. ---

    /// One batch of a random stream. Ids come from small pools so retries, conflicts and
    /// unknown ids are common; timeouts and pulses span "next command" to "most streams".
    #[derive(Clone, Debug)]
    enum Step {
        Single(u8, u8, u8, u64),
        /// Linked pending transfers (id, debit, credit, amount, timeout): a failing member
        /// rolls back the others and leaves stale expiry hints behind.
        Holds(Vec<(u8, u8, u8, u64, u64)>),
        Resolve(u8, u8, u64, bool),
        Reserve(u8, u8, u8, u32, u64),
        Confirm(u8, u8),
        Release(u8, u8),
        Place(u8, u8, u64, u8, u32),
        Pay(u8, u8),
        Cancel(u8, u8),
        Refund(u8, u8, bool),
        Ack(u8),
        Pulse(u64),
    }

    const TIMEOUTS_NS: [u64; 5] = [1, 5, 2_000, 60_000, 5_000_000];
    const PULSES_NS: [u64; 4] = [1, 3_000, 60_000, 6_000_000];

    fn timeout() -> impl Strategy<Value = u64> {
        prop::sample::select(&TIMEOUTS_NS[..])
    }

    /// Mostly accounts 1..=4 (created), now and then 5 (capped) or 6 (never created).
    fn account_index() -> impl Strategy<Value = u8> {
        prop_oneof![8 => 1..=4u8, 1 => 5..=6u8]
    }

    /// Each role draws its transfer ids from its own range, and now and then from all of
    /// them, so ids collide across roles.
    fn transfer_id(home: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = u8> {
        prop_oneof![8 => home, 1 => 1..=44u8]
    }

    fn step() -> impl Strategy<Value = Step> {
        let amount = 1..=400u64;
        let order = 1..=4u8;
        let sku = prop_oneof![8 => 1..=2u8, 1 => Just(3u8)];
        let hold = (
            transfer_id(1..=8),
            account_index(),
            account_index(),
            amount.clone(),
            timeout(),
        );
        prop_oneof![
            2 => (transfer_id(9..=14), account_index(), account_index(), amount)
                .prop_map(|(i, d, c, a)| Step::Single(i, d, c, a)),
            3 => prop::collection::vec(hold, 1..=3).prop_map(Step::Holds),
            2 => (transfer_id(15..=20), 1..=8u8, 0..=300u64, any::<bool>())
                .prop_map(|(i, p, a, post)| Step::Resolve(i, p, a, post)),
            3 => (1..=3u8, sku.clone(), 2..=3u8, 1..=3u32, timeout())
                .prop_map(|(o, s, b, q, t)| Step::Reserve(o, s, b, q, t)),
            1 => (1..=3u8, sku.clone()).prop_map(|(o, s)| Step::Confirm(o, s)),
            1 => (1..=3u8, sku.clone()).prop_map(|(o, s)| Step::Release(o, s)),
            4 => (order.clone(), transfer_id(21..=30), timeout(), sku, 1..=2u32)
                .prop_map(|(o, t, timeout, s, q)| Step::Place(o, t, timeout, s, q)),
            3 => (order.clone(), transfer_id(31..=44)).prop_map(|(o, t)| Step::Pay(o, t)),
            1 => (order.clone(), transfer_id(31..=44)).prop_map(|(o, t)| Step::Cancel(o, t)),
            1 => (order.clone(), transfer_id(31..=44), any::<bool>())
                .prop_map(|(o, t, restock)| Step::Refund(o, t, restock)),
            2 => order.prop_map(Step::Ack),
            2 => prop::sample::select(&PULSES_NS[..]).prop_map(Step::Pulse),
        ]
    }

    impl Step {
        /// The batch and how far past the earliest allowed time it is logged.
        fn batch(&self) -> (BatchBuf, u64) {
            let id = u128::from;
            let batch = match *self {
                Step::Single(i, d, c, a) => {
                    BatchBuf::CreateTransfers(vec![transfer(id(i), id(d), id(c), a)])
                }
                Step::Holds(ref holds) => {
                    let last = holds.len() - 1;
                    let transfers = holds.iter().enumerate().map(|(index, &(i, d, c, a, t))| {
                        let hold = pending(id(i), id(d), id(c), a, t);
                        let linked = if index < last {
                            transfer_flags::LINKED
                        } else {
                            0
                        };
                        Transfer {
                            flags: hold.flags | linked,
                            ..hold
                        }
                    });
                    BatchBuf::CreateTransfers(transfers.collect())
                }
                Step::Resolve(i, p, a, post) => {
                    let (flags, amount) = if post {
                        (transfer_flags::POST_PENDING, a)
                    } else {
                        (transfer_flags::VOID_PENDING, 0)
                    };
                    BatchBuf::CreateTransfers(vec![resolve(id(i), id(p), amount, flags)])
                }
                Step::Reserve(o, s, b, q, t) => {
                    BatchBuf::Reserve(vec![reserve(id(o), id(b), u64::from(s), q, t)])
                }
                Step::Confirm(o, s) => {
                    BatchBuf::ConfirmReservations(vec![key(id(o), u64::from(s))])
                }
                Step::Release(o, s) => {
                    BatchBuf::ReleaseReservations(vec![key(id(o), u64::from(s))])
                }
                Step::Place(o, t, timeout, s, q) => {
                    BatchBuf::PlaceOrders(vec![order(id(o), id(t), timeout, &[(u64::from(s), q)])])
                }
                Step::Pay(o, t) => BatchBuf::PayOrders(vec![action(id(o), id(t), 0)]),
                Step::Cancel(o, t) => BatchBuf::CancelOrders(vec![action(id(o), id(t), 0)]),
                Step::Refund(o, t, restock) => {
                    let flags = if restock {
                        order_action_flags::RESTOCK
                    } else {
                        0
                    };
                    BatchBuf::RefundOrders(vec![action(id(o), id(t), flags)])
                }
                Step::Ack(o) => BatchBuf::AckDispatch(vec![ack(id(o))]),
                Step::Pulse(advance_ns) => return (BatchBuf::Pulse, advance_ns),
            };
            (batch, 0)
        }
    }

    /// Accounts 1 (bank), 2 and 3 (funded wallets), 4 (merchant), 5 (capped); 6 is never
    /// created. SKUs 1 (plenty) and 2 (scarce, two per buyer); 3 is never created.
    fn stream_setup() -> (StateMachine, Clock) {
        let mut sm = StateMachine::new(config());
        let mut clock = Clock::new();
        let wallet = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS;
        let accounts = vec![
            account(BANK, 0),
            account(BUYER, wallet),
            account(BUYER_2, wallet),
            account(MERCHANT, 0),
            account(CAPPED, account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        ];
        run(
            &mut sm,
            &mut clock,
            BatchBuf::CreateAccounts(accounts),
            &[ResultCode::Ok; 5],
        );
        let funding = vec![
            transfer(1_001, BANK, BUYER, 1_000),
            transfer(1_002, BANK, BUYER_2, 1_000),
        ];
        run(
            &mut sm,
            &mut clock,
            BatchBuf::CreateTransfers(funding),
            &[ResultCode::Ok; 2],
        );
        let skus = vec![sku(1, 20, 0), sku(2, 4, 2)];
        run(
            &mut sm,
            &mut clock,
            BatchBuf::CreateSkus(skus),
            &[ResultCode::Ok; 2],
        );
        (sm, clock)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn snapshot_anywhere_then_continue_identically(
            steps in prop::collection::vec(step(), 1..60),
            snap_at in 0..60usize,
        ) {
            let snap_at = snap_at % (steps.len() + 1);
            let (mut original, mut clock) = stream_setup();
            for step in &steps[..snap_at] {
                let (batch, advance_ns) = step.batch();
                let timestamp = clock.take(&batch, advance_ns);
                apply(&mut original, timestamp, &batch);
            }
            let bytes = original.snapshot();
            let mut restored = StateMachine::restore(&bytes).expect("a snapshot restores");
            prop_assert_eq!(restored.state_hash(), original.state_hash());
            prop_assert!(restored.snapshot() == bytes);
            for step in &steps[snap_at..] {
                let (batch, advance_ns) = step.batch();
                let timestamp = clock.take(&batch, advance_ns);
                let codes = apply(&mut original, timestamp, &batch);
                prop_assert_eq!(apply(&mut restored, timestamp, &batch), codes, "{:?}", step);
                prop_assert_eq!(restored.state_hash(), original.state_hash(), "{:?}", step);
                if let Some(restored_next) = restored.expiry_next() {
                    let original_next = original.expiry_next();
                    prop_assert!(original_next.is_some_and(|next| next <= restored_next));
                }
            }
            prop_assert!(original.snapshot() == restored.snapshot());
        }
    }
}
