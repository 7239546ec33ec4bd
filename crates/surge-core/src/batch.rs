//! A batch: one operation and its fixed-size records. The log and the wire carry a batch
//! as an operation byte plus a body of `count × record size` bytes; [`decode`] turns such
//! bytes back into typed records, checking only sizes (field checks yield result codes).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::constants::BATCH_EVENTS_MAX;
use crate::records::{
    Account, CompactOrder, DispatchAck, Order, OrderAction, OrderOutcome, Reservation,
    ReservationKey, ShardLeg, ShardOutcome, Sku, SpanningOrder, Transfer, UnitOutcome, UnitStep,
};

/// What a batch does. The numbers are stable (they are in the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// No commands: only moves log time forward, so that due expiries happen.
    Pulse = 0,
    /// [`Account`] records.
    CreateAccounts = 1,
    /// [`Transfer`] records.
    CreateTransfers = 2,
    /// [`Sku`] records.
    CreateSkus = 3,
    /// [`Reservation`] records.
    Reserve = 4,
    /// [`ReservationKey`] records.
    ConfirmReservations = 5,
    /// [`ReservationKey`] records.
    ReleaseReservations = 6,
    /// [`Order`] records.
    PlaceOrders = 7,
    /// [`OrderAction`] records.
    PayOrders = 8,
    /// [`OrderAction`] records.
    CancelOrders = 9,
    /// [`OrderAction`] records.
    RefundOrders = 10,
    /// [`DispatchAck`] records.
    AckDispatch = 11,
    /// [`ShardLeg`] records: debit legs of cross-shard transfers (the engine's own).
    ShardDebit = 12,
    /// [`ShardLeg`] records: credit legs of cross-shard transfers (the engine's own).
    ShardCredit = 13,
    /// [`ShardOutcome`] records: the credit legs' outcomes, back on the debit shard (the
    /// engine's own).
    ShardResolve = 14,
    /// [`SpanningOrder`] records: orders whose buyer or merchant lives on another shard,
    /// reserved on their lines' shard (the engine's own).
    ReserveOrders = 15,
    /// [`ShardLeg`] records: an order's authorization or refund, on the shard of its debit
    /// account (the engine's own).
    OrderLegs = 16,
    /// [`Transfer`] records: posts and voids of orders' authorizations, on the buyer's
    /// shard (the engine's own).
    OrderResolve = 17,
    /// [`OrderOutcome`] records: the outcomes of an order's steps, back on the order's
    /// shard (the engine's own).
    OrderConfirm = 18,
    /// [`CompactOrder`] records: one-line orders in half the bytes, applied exactly as
    /// `PlaceOrders` of the same orders. Clients may send it, and the engine logs a
    /// `PlaceOrders` batch of one-line orders this way ([`compact_form`]).
    PlaceOrdersCompact = 19,
    /// [`UnitStep`] records: the units an order holds on a shard of its lines other than
    /// its own (the engine's own).
    OrderUnits = 20,
    /// [`UnitOutcome`] records: the outcomes of unit steps, back on the order's shard (the
    /// engine's own).
    UnitConfirm = 21,
}

impl Operation {
    /// Every operation, in numeric order.
    pub const ALL: &'static [Operation] = &[
        Operation::Pulse,
        Operation::CreateAccounts,
        Operation::CreateTransfers,
        Operation::CreateSkus,
        Operation::Reserve,
        Operation::ConfirmReservations,
        Operation::ReleaseReservations,
        Operation::PlaceOrders,
        Operation::PayOrders,
        Operation::CancelOrders,
        Operation::RefundOrders,
        Operation::AckDispatch,
        Operation::ShardDebit,
        Operation::ShardCredit,
        Operation::ShardResolve,
        Operation::ReserveOrders,
        Operation::OrderLegs,
        Operation::OrderResolve,
        Operation::OrderConfirm,
        Operation::PlaceOrdersCompact,
        Operation::OrderUnits,
        Operation::UnitConfirm,
    ];

    /// The operation for a byte read from the wire or the log.
    pub fn from_u8(value: u8) -> Option<Operation> {
        Operation::ALL.get(usize::from(value)).copied()
    }

    /// Size of one record of this operation, in bytes (0 for a pulse).
    pub const fn record_size_bytes(self) -> usize {
        use std::mem::size_of;
        match self {
            Operation::Pulse => 0,
            Operation::CreateAccounts => size_of::<Account>(),
            Operation::CreateTransfers => size_of::<Transfer>(),
            Operation::CreateSkus => size_of::<Sku>(),
            Operation::Reserve => size_of::<Reservation>(),
            Operation::ConfirmReservations | Operation::ReleaseReservations => {
                size_of::<ReservationKey>()
            }
            Operation::PlaceOrders => size_of::<Order>(),
            Operation::PayOrders | Operation::CancelOrders | Operation::RefundOrders => {
                size_of::<OrderAction>()
            }
            Operation::AckDispatch => size_of::<DispatchAck>(),
            Operation::ShardDebit | Operation::ShardCredit => size_of::<ShardLeg>(),
            Operation::ShardResolve => size_of::<ShardOutcome>(),
            Operation::ReserveOrders => size_of::<SpanningOrder>(),
            Operation::OrderLegs => size_of::<ShardLeg>(),
            Operation::OrderResolve => size_of::<Transfer>(),
            Operation::OrderConfirm => size_of::<OrderOutcome>(),
            Operation::PlaceOrdersCompact => size_of::<CompactOrder>(),
            Operation::OrderUnits => size_of::<UnitStep>(),
            Operation::UnitConfirm => size_of::<UnitOutcome>(),
        }
    }

    /// Whether only the engine logs this operation (pulses and the messages between
    /// shards); clients never may.
    pub const fn is_internal(self) -> bool {
        matches!(
            self,
            Operation::Pulse
                | Operation::ShardDebit
                | Operation::ShardCredit
                | Operation::ShardResolve
                | Operation::ReserveOrders
                | Operation::OrderLegs
                | Operation::OrderResolve
                | Operation::OrderConfirm
                | Operation::OrderUnits
                | Operation::UnitConfirm
        )
    }
}

/// A borrowed batch of typed records: what [`crate::StateMachine::apply`] takes.
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    /// Only advances log time.
    Pulse,
    /// Create accounts.
    CreateAccounts(&'a [Account]),
    /// Create transfers (single-phase, pending, post, void).
    CreateTransfers(&'a [Transfer]),
    /// Create SKUs.
    CreateSkus(&'a [Sku]),
    /// Reserve units directly.
    Reserve(&'a [Reservation]),
    /// Confirm direct reservations.
    ConfirmReservations(&'a [ReservationKey]),
    /// Release direct reservations.
    ReleaseReservations(&'a [ReservationKey]),
    /// Place orders.
    PlaceOrders(&'a [Order]),
    /// Pay orders.
    PayOrders(&'a [OrderAction]),
    /// Cancel orders.
    CancelOrders(&'a [OrderAction]),
    /// Refund orders.
    RefundOrders(&'a [OrderAction]),
    /// Acknowledge dispatch requests.
    AckDispatch(&'a [DispatchAck]),
    /// Debit legs of cross-shard transfers.
    ShardDebit(&'a [ShardLeg]),
    /// Credit legs of cross-shard transfers.
    ShardCredit(&'a [ShardLeg]),
    /// Outcomes of credit legs, on the debit shard.
    ShardResolve(&'a [ShardOutcome]),
    /// Reserve orders spanning shards.
    ReserveOrders(&'a [SpanningOrder]),
    /// Orders' authorizations and refunds.
    OrderLegs(&'a [ShardLeg]),
    /// Posts and voids of orders' authorizations.
    OrderResolve(&'a [Transfer]),
    /// Outcomes of orders' steps.
    OrderConfirm(&'a [OrderOutcome]),
    /// Place one-line orders, in their compact form (see [`compact_form`]).
    PlaceOrdersCompact(&'a [CompactOrder]),
    /// Steps on the units orders hold on other shards than their own.
    OrderUnits(&'a [UnitStep]),
    /// Outcomes of unit steps.
    UnitConfirm(&'a [UnitOutcome]),
}

impl Batch<'_> {
    /// The batch's operation.
    pub fn operation(&self) -> Operation {
        match self {
            Batch::Pulse => Operation::Pulse,
            Batch::CreateAccounts(_) => Operation::CreateAccounts,
            Batch::CreateTransfers(_) => Operation::CreateTransfers,
            Batch::CreateSkus(_) => Operation::CreateSkus,
            Batch::Reserve(_) => Operation::Reserve,
            Batch::ConfirmReservations(_) => Operation::ConfirmReservations,
            Batch::ReleaseReservations(_) => Operation::ReleaseReservations,
            Batch::PlaceOrders(_) => Operation::PlaceOrders,
            Batch::PayOrders(_) => Operation::PayOrders,
            Batch::CancelOrders(_) => Operation::CancelOrders,
            Batch::RefundOrders(_) => Operation::RefundOrders,
            Batch::AckDispatch(_) => Operation::AckDispatch,
            Batch::ShardDebit(_) => Operation::ShardDebit,
            Batch::ShardCredit(_) => Operation::ShardCredit,
            Batch::ShardResolve(_) => Operation::ShardResolve,
            Batch::ReserveOrders(_) => Operation::ReserveOrders,
            Batch::OrderLegs(_) => Operation::OrderLegs,
            Batch::OrderResolve(_) => Operation::OrderResolve,
            Batch::OrderConfirm(_) => Operation::OrderConfirm,
            Batch::PlaceOrdersCompact(_) => Operation::PlaceOrdersCompact,
            Batch::OrderUnits(_) => Operation::OrderUnits,
            Batch::UnitConfirm(_) => Operation::UnitConfirm,
        }
    }

    /// Number of commands.
    pub fn len(&self) -> usize {
        match self {
            Batch::Pulse => 0,
            Batch::CreateAccounts(r) => r.len(),
            Batch::CreateTransfers(r) => r.len(),
            Batch::CreateSkus(r) => r.len(),
            Batch::Reserve(r) => r.len(),
            Batch::ConfirmReservations(r) | Batch::ReleaseReservations(r) => r.len(),
            Batch::PlaceOrders(r) => r.len(),
            Batch::PayOrders(r) | Batch::CancelOrders(r) | Batch::RefundOrders(r) => r.len(),
            Batch::AckDispatch(r) => r.len(),
            Batch::ShardDebit(r) | Batch::ShardCredit(r) => r.len(),
            Batch::ShardResolve(r) => r.len(),
            Batch::ReserveOrders(r) => r.len(),
            Batch::OrderLegs(r) => r.len(),
            Batch::OrderResolve(r) => r.len(),
            Batch::OrderConfirm(r) => r.len(),
            Batch::PlaceOrdersCompact(r) => r.len(),
            Batch::OrderUnits(r) => r.len(),
            Batch::UnitConfirm(r) => r.len(),
        }
    }

    /// Whether the batch has no commands (a pulse, or an empty batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body bytes: the records back to back, little-endian.
    pub fn body(&self) -> &[u8] {
        match self {
            Batch::Pulse => &[],
            Batch::CreateAccounts(r) => bytemuck::cast_slice(r),
            Batch::CreateTransfers(r) => bytemuck::cast_slice(r),
            Batch::CreateSkus(r) => bytemuck::cast_slice(r),
            Batch::Reserve(r) => bytemuck::cast_slice(r),
            Batch::ConfirmReservations(r) | Batch::ReleaseReservations(r) => {
                bytemuck::cast_slice(r)
            }
            Batch::PlaceOrders(r) => bytemuck::cast_slice(r),
            Batch::PayOrders(r) | Batch::CancelOrders(r) | Batch::RefundOrders(r) => {
                bytemuck::cast_slice(r)
            }
            Batch::AckDispatch(r) => bytemuck::cast_slice(r),
            Batch::ShardDebit(r) | Batch::ShardCredit(r) => bytemuck::cast_slice(r),
            Batch::ShardResolve(r) => bytemuck::cast_slice(r),
            Batch::ReserveOrders(r) => bytemuck::cast_slice(r),
            Batch::OrderLegs(r) => bytemuck::cast_slice(r),
            Batch::OrderResolve(r) => bytemuck::cast_slice(r),
            Batch::OrderConfirm(r) => bytemuck::cast_slice(r),
            Batch::PlaceOrdersCompact(r) => bytemuck::cast_slice(r),
            Batch::OrderUnits(r) => bytemuck::cast_slice(r),
            Batch::UnitConfirm(r) => bytemuck::cast_slice(r),
        }
    }
}

/// An owned batch, as decoded from bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchBuf {
    /// See [`Batch::Pulse`].
    Pulse,
    /// See [`Batch::CreateAccounts`].
    CreateAccounts(Vec<Account>),
    /// See [`Batch::CreateTransfers`].
    CreateTransfers(Vec<Transfer>),
    /// See [`Batch::CreateSkus`].
    CreateSkus(Vec<Sku>),
    /// See [`Batch::Reserve`].
    Reserve(Vec<Reservation>),
    /// See [`Batch::ConfirmReservations`].
    ConfirmReservations(Vec<ReservationKey>),
    /// See [`Batch::ReleaseReservations`].
    ReleaseReservations(Vec<ReservationKey>),
    /// See [`Batch::PlaceOrders`].
    PlaceOrders(Vec<Order>),
    /// See [`Batch::PayOrders`].
    PayOrders(Vec<OrderAction>),
    /// See [`Batch::CancelOrders`].
    CancelOrders(Vec<OrderAction>),
    /// See [`Batch::RefundOrders`].
    RefundOrders(Vec<OrderAction>),
    /// See [`Batch::AckDispatch`].
    AckDispatch(Vec<DispatchAck>),
    /// See [`Batch::ShardDebit`].
    ShardDebit(Vec<ShardLeg>),
    /// See [`Batch::ShardCredit`].
    ShardCredit(Vec<ShardLeg>),
    /// See [`Batch::ShardResolve`].
    ShardResolve(Vec<ShardOutcome>),
    /// See [`Batch::ReserveOrders`].
    ReserveOrders(Vec<SpanningOrder>),
    /// See [`Batch::OrderLegs`].
    OrderLegs(Vec<ShardLeg>),
    /// See [`Batch::OrderResolve`].
    OrderResolve(Vec<Transfer>),
    /// See [`Batch::OrderConfirm`].
    OrderConfirm(Vec<OrderOutcome>),
    /// See [`Batch::PlaceOrdersCompact`].
    PlaceOrdersCompact(Vec<CompactOrder>),
    /// See [`Batch::OrderUnits`].
    OrderUnits(Vec<UnitStep>),
    /// See [`Batch::UnitConfirm`].
    UnitConfirm(Vec<UnitOutcome>),
}

impl BatchBuf {
    /// Borrows the batch for [`crate::StateMachine::apply`].
    pub fn as_batch(&self) -> Batch<'_> {
        match self {
            BatchBuf::Pulse => Batch::Pulse,
            BatchBuf::CreateAccounts(r) => Batch::CreateAccounts(r),
            BatchBuf::CreateTransfers(r) => Batch::CreateTransfers(r),
            BatchBuf::CreateSkus(r) => Batch::CreateSkus(r),
            BatchBuf::Reserve(r) => Batch::Reserve(r),
            BatchBuf::ConfirmReservations(r) => Batch::ConfirmReservations(r),
            BatchBuf::ReleaseReservations(r) => Batch::ReleaseReservations(r),
            BatchBuf::PlaceOrders(r) => Batch::PlaceOrders(r),
            BatchBuf::PayOrders(r) => Batch::PayOrders(r),
            BatchBuf::CancelOrders(r) => Batch::CancelOrders(r),
            BatchBuf::RefundOrders(r) => Batch::RefundOrders(r),
            BatchBuf::AckDispatch(r) => Batch::AckDispatch(r),
            BatchBuf::ShardDebit(r) => Batch::ShardDebit(r),
            BatchBuf::ShardCredit(r) => Batch::ShardCredit(r),
            BatchBuf::ShardResolve(r) => Batch::ShardResolve(r),
            BatchBuf::ReserveOrders(r) => Batch::ReserveOrders(r),
            BatchBuf::OrderLegs(r) => Batch::OrderLegs(r),
            BatchBuf::OrderResolve(r) => Batch::OrderResolve(r),
            BatchBuf::OrderConfirm(r) => Batch::OrderConfirm(r),
            BatchBuf::PlaceOrdersCompact(r) => Batch::PlaceOrdersCompact(r),
            BatchBuf::OrderUnits(r) => Batch::OrderUnits(r),
            BatchBuf::UnitConfirm(r) => Batch::UnitConfirm(r),
        }
    }
}

/// Why bytes are not a batch.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The operation byte names no operation.
    #[error("unknown operation {operation}")]
    UnknownOperation {
        /// The byte found.
        operation: u8,
    },
    /// The body is not a whole number of records.
    #[error("body of {body_size} bytes is not a multiple of the {record_size}-byte record")]
    PartialRecord {
        /// Body size in bytes.
        body_size: usize,
        /// Record size of the operation in bytes.
        record_size: usize,
    },
    /// More records than [`BATCH_EVENTS_MAX`].
    #[error("batch of {count} commands is over the limit of {max}")]
    TooManyCommands {
        /// Commands in the body.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A pulse with a body.
    #[error("a pulse carries no body, found {body_size} bytes")]
    PulseWithBody {
        /// Body size in bytes.
        body_size: usize,
    },
}

fn records<T: bytemuck::Pod>(body: &[u8]) -> Vec<T> {
    body.chunks_exact(std::mem::size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}

/// Decodes `body` as records of `operation`. Checks sizes only; never panics on input.
pub fn decode(operation: u8, body: &[u8]) -> Result<BatchBuf, DecodeError> {
    let operation =
        Operation::from_u8(operation).ok_or(DecodeError::UnknownOperation { operation })?;
    let record_size = operation.record_size_bytes();
    if record_size == 0 {
        if !body.is_empty() {
            return Err(DecodeError::PulseWithBody {
                body_size: body.len(),
            });
        }
        return Ok(BatchBuf::Pulse);
    }
    if body.len() % record_size != 0 {
        return Err(DecodeError::PartialRecord {
            body_size: body.len(),
            record_size,
        });
    }
    let count = body.len() / record_size;
    if count > BATCH_EVENTS_MAX {
        return Err(DecodeError::TooManyCommands {
            count,
            max: BATCH_EVENTS_MAX,
        });
    }
    Ok(match operation {
        Operation::Pulse => BatchBuf::Pulse,
        Operation::CreateAccounts => BatchBuf::CreateAccounts(records(body)),
        Operation::CreateTransfers => BatchBuf::CreateTransfers(records(body)),
        Operation::CreateSkus => BatchBuf::CreateSkus(records(body)),
        Operation::Reserve => BatchBuf::Reserve(records(body)),
        Operation::ConfirmReservations => BatchBuf::ConfirmReservations(records(body)),
        Operation::ReleaseReservations => BatchBuf::ReleaseReservations(records(body)),
        Operation::PlaceOrders => BatchBuf::PlaceOrders(records(body)),
        Operation::PayOrders => BatchBuf::PayOrders(records(body)),
        Operation::CancelOrders => BatchBuf::CancelOrders(records(body)),
        Operation::RefundOrders => BatchBuf::RefundOrders(records(body)),
        Operation::AckDispatch => BatchBuf::AckDispatch(records(body)),
        Operation::ShardDebit => BatchBuf::ShardDebit(records(body)),
        Operation::ShardCredit => BatchBuf::ShardCredit(records(body)),
        Operation::ShardResolve => BatchBuf::ShardResolve(records(body)),
        Operation::ReserveOrders => BatchBuf::ReserveOrders(records(body)),
        Operation::OrderLegs => BatchBuf::OrderLegs(records(body)),
        Operation::OrderResolve => BatchBuf::OrderResolve(records(body)),
        Operation::OrderConfirm => BatchBuf::OrderConfirm(records(body)),
        Operation::PlaceOrdersCompact => BatchBuf::PlaceOrdersCompact(records(body)),
        Operation::OrderUnits => BatchBuf::OrderUnits(records(body)),
        Operation::UnitConfirm => BatchBuf::UnitConfirm(records(body)),
    })
}

/// The smallest form of a batch of `operation` with `body` (whole records, as
/// [`Batch::body`]), the same commands: a `PlaceOrders` batch whose every order has the
/// compact form ([`CompactOrder::of`]) becomes `PlaceOrdersCompact` in half the bytes; any
/// other batch stays as it is. The engine logs batches in this form (the log's writer and
/// its `fdatasync` are what a stampede of orders waits on), and the Rust client sends them
/// in it (the socket and the frame checksums). An owned `body` that stays as it is is
/// returned without a copy.
pub fn compact_form(operation: Operation, body: Cow<'_, [u8]>) -> (Operation, Vec<u8>) {
    if operation == Operation::PlaceOrders {
        let size = std::mem::size_of::<Order>();
        let mut compact = Vec::with_capacity(body.len() / 2);
        let packed = body.chunks_exact(size).all(|bytes| {
            let order: Order = bytemuck::pod_read_unaligned(bytes);
            CompactOrder::of(&order)
                .map(|record| compact.extend_from_slice(bytemuck::bytes_of(&record)))
                .is_some()
        });
        if packed && !body.is_empty() {
            return (Operation::PlaceOrdersCompact, compact);
        }
    }
    (operation, body.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TransferId;

    #[test]
    fn encode_decode_round_trip() {
        let transfers = vec![
            Transfer {
                id: TransferId(1),
                amount: 5,
                ..Default::default()
            },
            Transfer {
                id: TransferId(2),
                amount: 6,
                ..Default::default()
            },
        ];
        let batch = Batch::CreateTransfers(&transfers);
        let decoded = decode(batch.operation() as u8, batch.body()).unwrap();
        assert_eq!(decoded, BatchBuf::CreateTransfers(transfers));
    }

    #[test]
    fn decode_rejects_bad_input_without_panicking() {
        assert_eq!(
            decode(200, &[]),
            Err(DecodeError::UnknownOperation { operation: 200 })
        );
        assert_eq!(
            decode(Operation::CreateTransfers as u8, &[0; 129]),
            Err(DecodeError::PartialRecord {
                body_size: 129,
                record_size: 128
            })
        );
        assert_eq!(
            decode(0, &[1]),
            Err(DecodeError::PulseWithBody { body_size: 1 })
        );
        let too_many = vec![0u8; (BATCH_EVENTS_MAX + 1) * 32];
        assert_eq!(
            decode(Operation::AckDispatch as u8, &too_many),
            Err(DecodeError::TooManyCommands {
                count: BATCH_EVENTS_MAX + 1,
                max: BATCH_EVENTS_MAX
            })
        );
        // Unaligned bodies decode too.
        let bytes = [0u8; 129];
        assert!(decode(Operation::CreateTransfers as u8, &bytes[1..]).is_ok());
    }
}
