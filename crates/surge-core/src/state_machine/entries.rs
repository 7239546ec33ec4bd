//! The entries the state machine's tables hold (a transfer id's slot, a pending
//! transfer's state, a direct reservation, a buyer's units of a SKU) and the shapes orders
//! and dispatch requests take in snapshots and the state hash. Their sizes are part of
//! the memory budget (`docs/MEMORY.md`), asserted at the end.

use super::table::TableEntry;
use super::{DispatchStatus, Outcome, PendingStatus};
use crate::ids::{AccountId, OrderId, SkuId, TransferId};
use crate::records::{transfer_flags, Account, Order, Reservation, Sku, Transfer};
use crate::result::ResultCode;

/// Where a transfer's record lives, or how its first attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransferSlot {
    pub(super) id: TransferId,
    /// The transfer's sequence number (its place among committed records, see
    /// `record_at`), or, with [`TransferSlot::FAILED_BIT`] set, the sequence number that
    /// was next when its first attempt failed (so failed ids age like committed ones). The
    /// top bits also say whether it is an order's transfer ([`TransferSlot::ORDER_BIT`])
    /// or a phase-one pending transfer ([`TransferSlot::PENDING_BIT`]), so eviction can
    /// tell what may leave from the slot alone.
    pub(super) index: u64,
    /// Fingerprint of the command that created it, or the failure code.
    pub(super) fingerprint: u64,
}

impl TransferSlot {
    pub(super) const FAILED_BIT: u64 = 1 << 63;
    const ORDER_BIT: u64 = 1 << 62;
    const PENDING_BIT: u64 = 1 << 61;
    const SEQUENCE_MASK: u64 = (1 << 61) - 1;

    pub(super) fn committed(
        id: TransferId,
        sequence: u64,
        fingerprint: u64,
        record: &Transfer,
    ) -> Self {
        assert!(sequence & !Self::SEQUENCE_MASK == 0);
        let mut index = sequence;
        if record.code >= crate::constants::TRANSFER_CODE_SURGE_MIN {
            index |= Self::ORDER_BIT;
        }
        if record.flags & transfer_flags::PENDING != 0 {
            index |= Self::PENDING_BIT;
        }
        Self {
            id,
            index,
            fingerprint,
        }
    }

    pub(super) fn failed(id: TransferId, code: ResultCode, sequence: u64) -> Self {
        assert!(sequence & !Self::SEQUENCE_MASK == 0);
        Self {
            id,
            index: Self::FAILED_BIT | sequence,
            fingerprint: u64::from(code.as_u32()),
        }
    }

    pub(super) fn failure(self) -> Option<ResultCode> {
        if self.index & Self::FAILED_BIT != 0 {
            let code = u32::try_from(self.fingerprint)
                .ok()
                .and_then(ResultCode::from_u32);
            Some(code.expect("a failed slot holds a result code"))
        } else {
            None
        }
    }

    /// The sequence number (see the field): where a committed transfer's record is, and
    /// the age eviction goes by.
    pub(super) fn sequence(self) -> u64 {
        self.index & Self::SEQUENCE_MASK
    }

    /// Whether this is an order's transfer (code from `TRANSFER_CODE_SURGE_MIN` up).
    pub(super) fn is_order_transfer(self) -> bool {
        self.index & Self::ORDER_BIT != 0
    }

    /// Whether this is a phase-one pending transfer (it has a pending state).
    pub(super) fn is_pending(self) -> bool {
        self.index & Self::PENDING_BIT != 0
    }

    /// The answer to a command reusing this id with `fingerprint`.
    pub(super) fn existing(self, fingerprint: u64) -> Outcome {
        Outcome::Existing(match self.failure() {
            Some(_) => ResultCode::IdAlreadyFailed,
            None if self.fingerprint == fingerprint => ResultCode::Exists,
            None => ResultCode::ExistsWithDifferentFields,
        })
    }
}

impl TableEntry for TransferSlot {
    type Key = u128;
    fn key(&self) -> u128 {
        self.id.0
    }
    fn vacant() -> Self {
        Self {
            id: TransferId::ZERO,
            index: 0,
            fingerprint: 0,
        }
    }
}

impl TableEntry for Sku {
    type Key = u64;
    fn key(&self) -> u64 {
        self.id.0
    }
    fn vacant() -> Self {
        Sku::default()
    }
}

impl TableEntry for Account {
    type Key = u128;
    fn key(&self) -> u128 {
        self.id.0
    }
    fn vacant() -> Self {
        Account::default()
    }
}

/// Two-phase state of a pending transfer, kept after it resolves (for "already posted").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingState {
    /// Log time at which the hold expires; 0 = never (or: the order's expiry governs).
    pub(super) expires_at: u64,
    /// The order whose authorization this is; zero for a direct pending transfer.
    pub(super) order_id: OrderId,
    pub(super) status: PendingStatus,
}

impl Default for PendingState {
    /// A vacant slot's value in the pending-state table.
    fn default() -> Self {
        Self {
            expires_at: 0,
            order_id: OrderId::ZERO,
            status: PendingStatus::Pending,
        }
    }
}

/// A direct reservation as stored, or (with `failure` set) how making it failed. 80 bytes:
/// the record carries its own key, and the expiry is `timestamp + timeout_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct StoredReservation {
    /// For a failure only the key fields are set.
    pub(super) reservation: Reservation,
    pub(super) fingerprint: u64,
    /// 0 while the reservation exists; else the number of the code its first attempt got.
    pub(super) failure: u32,
}

impl StoredReservation {
    pub(super) fn held(reservation: Reservation, fingerprint: u64) -> Self {
        assert!(reservation
            .timestamp
            .checked_add(reservation.timeout_ns)
            .is_some());
        Self {
            reservation,
            fingerprint,
            failure: 0,
        }
    }

    pub(super) fn failed(order_id: OrderId, sku_id: SkuId, code: ResultCode) -> Self {
        assert!(!code.is_success());
        let reservation = Reservation {
            order_id,
            sku_id,
            ..Reservation::default()
        };
        Self {
            reservation,
            fingerprint: 0,
            failure: code.as_u32(),
        }
    }

    pub(super) fn failure(&self) -> Option<ResultCode> {
        if self.failure == 0 {
            None
        } else {
            Some(ResultCode::from_u32(self.failure).expect("a stored failure is a code"))
        }
    }

    /// Log time at which the hold lapses (checked not to overflow when it was made).
    pub(super) fn expires_at(&self) -> u64 {
        self.reservation.timestamp + self.reservation.timeout_ns
    }
}

impl TableEntry for StoredReservation {
    type Key = (OrderId, SkuId);
    fn key(&self) -> (OrderId, SkuId) {
        (self.reservation.order_id, self.reservation.sku_id)
    }
    fn vacant() -> Self {
        Self {
            reservation: Reservation::default(),
            fingerprint: 0,
            failure: 0,
        }
    }
}

/// Units one buyer holds of one SKU (reserved + bought). 32 bytes: the buyer id is split
/// into halves so the entry packs two to a cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct BuyerUnits {
    pub(super) buyer_low: u64,
    pub(super) buyer_high: u64,
    pub(super) sku_id: SkuId,
    pub(super) units: u64,
}

impl BuyerUnits {
    pub(super) fn new(sku_id: SkuId, buyer_id: AccountId, units: u64) -> Self {
        Self {
            buyer_low: buyer_id.0 as u64,
            buyer_high: (buyer_id.0 >> 64) as u64,
            sku_id,
            units,
        }
    }
}

impl TableEntry for BuyerUnits {
    type Key = (SkuId, AccountId);
    fn key(&self) -> (SkuId, AccountId) {
        (
            self.sku_id,
            AccountId(u128::from(self.buyer_high) << 64 | u128::from(self.buyer_low)),
        )
    }
    fn vacant() -> Self {
        Self {
            buyer_low: 0,
            buyer_high: 0,
            sku_id: SkuId(0),
            units: 0,
        }
    }
}

/// A placed order as snapshots and the state hash see it (`order_store.rs` keeps it in
/// another shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderEntry {
    pub(super) order: Order,
    pub(super) fingerprint: u64,
    pub(super) expires_at: u64,
    pub(super) payment_transfer_id: TransferId,
    pub(super) closing_transfer_id: TransferId,
}

/// A dispatch request as snapshots and the state hash see it (kept in its order's entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DispatchEntry {
    pub(super) order_id: OrderId,
    pub(super) sequence: u64,
    pub(super) created_at: u64,
    pub(super) redeliver_at: u64,
    pub(super) attempts: u32,
    pub(super) status: DispatchStatus,
}

// Entry sizes quoted in docs/MEMORY.md; a change here changes the memory budget.
const _: () = assert!(std::mem::size_of::<TransferSlot>() == 32);
const _: () = assert!(std::mem::size_of::<PendingState>() == 32);
const _: () = assert!(std::mem::size_of::<OrderEntry>() == 304);
const _: () = assert!(std::mem::size_of::<StoredReservation>() == 80);
const _: () = assert!(std::mem::size_of::<BuyerUnits>() == 32);
const _: () = assert!(std::mem::size_of::<DispatchEntry>() == 48);
