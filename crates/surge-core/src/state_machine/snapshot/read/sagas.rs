//! The sections of orders spanning shards (spans, order outbox, unit outbox, unit holds),
//! read and checked against each other and the placed orders.

use super::*;
use crate::records::unit_step_kind;
use crate::shard::SHARDS_MAX;

/// The sections of orders spanning shards, as read.
#[derive(Default)]
pub(super) struct OrderSagaSections {
    pub(super) spans: Vec<(OrderId, OrderSpan)>,
    pub(super) outbox: Vec<OrderMessage>,
    pub(super) unit_outbox: Vec<UnitSent>,
    pub(super) unit_holds: Vec<(OrderId, UnitHold)>,
}

/// The order spans, order outbox and (version 6) unit sections, checked against each
/// other and the placed `orders`: every span names a placed order, every step in flight
/// is in an outbox and names its span's order, every message's kind is known.
pub(super) fn read_order_saga(
    reader: &mut Reader<'_>,
    orders: &[OrderEntry],
    version: u16,
) -> Result<OrderSagaSections, SnapshotError> {
    let current = version == SNAPSHOT_FORMAT_VERSION;
    let span_size = if current {
        ORDER_SPAN_SIZE_BYTES
    } else {
        ORDER_SPAN_5_SIZE_BYTES
    };
    let placed = |id: OrderId| {
        orders
            .binary_search_by_key(&id, |entry| entry.order.id)
            .is_ok()
    };
    let spans = reader.sorted_section(
        span_size,
        "order span order",
        |reader| {
            let id = OrderId(reader.u128()?);
            let buyer_shard = reader.u32()?;
            let merchant_shard = reader.u32()?;
            let in_flight = TransferId(reader.u128()?);
            let (shard_count, units_reserved, merchant_ledger) = if current {
                (reader.u32()?, reader.u32()?, reader.u32()?)
            } else {
                (0, 0, 0)
            };
            if !placed(id) {
                return Err(invalid(reader.offset, "order span of no placed order"));
            }
            if shard_count == 1 || shard_count > SHARDS_MAX || units_reserved > 8 {
                return Err(invalid(reader.offset, "order span"));
            }
            let span = OrderSpan {
                buyer_shard,
                merchant_shard,
                in_flight,
                shard_count,
                units_reserved,
                merchant_ledger,
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
            let in_flight = span.is_some_and(|span| span.in_flight == message.leg.transfer.id)
                && message.flags & order_message_flags::TIMED_OUT == 0;
            let expiry = message.kind == order_message_kind::EXPIRE;
            // An authorization that timed out: its order failed, so it has no span.
            let timed_out = message.kind == order_message_kind::AUTHORIZE
                && message.flags == order_message_flags::TIMED_OUT
                && span.is_none();
            if !known || (!expiry && !in_flight && !timed_out) {
                return Err(invalid(reader.offset, "order step"));
            }
            Ok(message)
        },
        |message| message.leg.transfer.id,
    )?;
    let (unit_outbox, unit_holds) = if current {
        read_units(reader)?
    } else {
        (Vec::new(), Vec::new())
    };
    for sent in &unit_outbox {
        // A reservation not timed out, a sale and a restock belong to their order's step
        // in flight; a release may outlive its order's span (a failed or expired order).
        let step = &sent.step;
        let span = spans
            .binary_search_by_key(&step.order.id, |(id, _)| *id)
            .ok()
            .map(|index| spans[index].1);
        let timed_out = step.flags & order_message_flags::TIMED_OUT != 0;
        let belongs = span.is_some_and(|span| {
            !sent.key.is_zero() && span.in_flight == sent.key && span.shard_count != 0
        });
        let valid = match step.kind {
            unit_step_kind::RESERVE if timed_out => span.is_none(),
            unit_step_kind::RELEASE => !timed_out,
            _ => !timed_out && belongs,
        };
        if !valid {
            return Err(invalid(reader.offset, "unit step of no step in flight"));
        }
    }
    let unit_keys: std::collections::BTreeSet<TransferId> =
        unit_outbox.iter().map(|sent| sent.key).collect();
    for (id, span) in &spans {
        let message_sent = outbox
            .binary_search_by_key(&span.in_flight, |message| message.leg.transfer.id)
            .is_ok();
        let sent = span.in_flight.is_zero() || message_sent || unit_keys.contains(&span.in_flight);
        if !sent {
            return Err(invalid(reader.offset, "order step in flight"));
        }
        let order = &orders[orders
            .binary_search_by_key(id, |entry| entry.order.id)
            .map_err(|_| invalid(reader.offset, "order span of no placed order"))?]
        .order;
        let others = remote_shards(order, span.shard_count);
        if span.units_reserved as usize > others.len() {
            return Err(invalid(reader.offset, "order span"));
        }
        // Still reserving its lines elsewhere: the next shard's reservation is in flight.
        if span.in_flight == order.transfer_id && !message_sent {
            let next = others
                .get(span.units_reserved as usize)
                .ok_or_else(|| invalid(reader.offset, "order span"))?;
            let asked = unit_outbox
                .binary_search_by_key(&(*id, *next), |sent| {
                    (sent.step.order.id, sent.step.target_shard)
                })
                .ok()
                .map(|index| unit_outbox[index]);
            let reserving = asked.is_some_and(|sent| {
                sent.step.kind == unit_step_kind::RESERVE
                    && sent.step.flags == 0
                    && sent.key == span.in_flight
            });
            if !reserving {
                return Err(invalid(reader.offset, "order span"));
            }
        }
    }
    Ok(OrderSagaSections {
        spans,
        outbox,
        unit_outbox,
        unit_holds,
    })
}

/// The unit outbox and unit holds sections (version 6).
fn read_units(reader: &mut Reader<'_>) -> Result<UnitSections, SnapshotError> {
    let unit_outbox = reader.sorted_section(
        UNIT_SENT_SIZE_BYTES,
        "unit outbox order",
        |reader| {
            let step: UnitStep = reader.record()?;
            let key = TransferId(reader.u128()?);
            let known = (unit_step_kind::RESERVE..=unit_step_kind::RESTOCK).contains(&step.kind);
            let flags_known = step.flags & !order_message_flags::TIMED_OUT == 0;
            if !known || !flags_known || step.target_shard >= step.shard_count.min(SHARDS_MAX) {
                return Err(invalid(reader.offset, "unit step"));
            }
            Ok(UnitSent { step, key })
        },
        |sent| (sent.step.order.id, sent.step.target_shard),
    )?;
    let unit_holds = reader.sorted_section(
        UNIT_HOLD_SIZE_BYTES,
        "unit hold order",
        |reader| {
            let id = OrderId(reader.u128()?);
            let fingerprint = reader.u64()?;
            let status = UnitHoldStatus::from_u8(reader.u8()?)
                .ok_or_else(|| invalid(reader.offset, "unit hold status"))?;
            let failure = ResultCode::from_u32(reader.u32()?)
                .ok_or_else(|| invalid(reader.offset, "unit hold failure"))?;
            if (status == UnitHoldStatus::Failed) == failure.is_success() {
                return Err(invalid(reader.offset, "unit hold failure"));
            }
            let hold = UnitHold {
                fingerprint,
                status,
                failure,
            };
            Ok((id, hold))
        },
        |(id, _)| *id,
    )?;
    Ok((unit_outbox, unit_holds))
}

/// The unit outbox and unit holds, as read.
type UnitSections = (Vec<UnitSent>, Vec<(OrderId, UnitHold)>);
