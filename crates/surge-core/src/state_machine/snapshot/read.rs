//! Reading a snapshot back: a bounds-checked cursor over untrusted bytes, each section
//! decoded and validated (counts against the bytes left, keys sorted and unique,
//! cross-references checked), then the state machine built from it.

use super::*;

mod build;
mod reader;
mod sagas;

pub(super) use reader::Reader;
use sagas::{read_order_saga, OrderSagaSections};

/// A snapshot read and validated, before any table is allocated.
pub(super) struct Decoded {
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
    unit_outbox: Vec<UnitSent>,
    unit_holds: Vec<(OrderId, UnitHold)>,
}

impl Decoded {
    pub(super) fn read(reader: &mut Reader<'_>) -> Result<Self, SnapshotError> {
        let magic: [u8; 8] = reader.array()?;
        if magic != MAGIC {
            return Err(SnapshotError::BadMagic { found: magic });
        }
        // Version 3 (before cross-shard pending transfers) lacks only the last section.
        let version = reader.u16()?;
        let known = [
            SNAPSHOT_FORMAT_VERSION,
            SNAPSHOT_FORMAT_VERSION_5,
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
        let saga = if version >= SNAPSHOT_FORMAT_VERSION_5 {
            read_order_saga(reader, &orders, version)?
        } else {
            OrderSagaSections::default()
        };
        let OrderSagaSections {
            spans: order_spans,
            outbox: order_outbox,
            unit_outbox,
            unit_holds,
        } = saga;
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
            unit_outbox,
            unit_holds,
        })
    }
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
