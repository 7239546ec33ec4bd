//! The state machine: accounts, transfers, inventory, orders and the dispatch outbox.
//!
//! [`StateMachine::apply`] takes a batch and the log timestamp assigned to it and writes
//! one result code per command. It reads no clock, no randomness, no files and no global
//! state: the state is a pure function of the sequence of `(timestamp, batch)` pairs, and
//! [`StateMachine::state_hash`] digests it so replays can be compared bit for bit.
//!
//! Time: a batch of `n` commands logged at `T` occupies timestamps `T..T+n` (command `i`
//! happens at `T + i`), and the next batch must start after that. Before the commands, every
//! hold, reservation, unpaid order and dispatch lease due at or before `T` expires, in a
//! fixed order; a command that names an item due between `T` and its own timestamp sees it
//! as expired. An empty batch (a pulse) only moves time forward.
//!
//! Atomicity: a linked chain runs under a savepoint (its writes go through journals and the
//! order store keeps its appended tail), so a chain that fails is rolled back to exactly
//! the state before it. Other commands check everything before their first write (an
//! order whose third line is sold out writes nothing), so they skip the undo log; debug
//! builds record it anyway and assert that a failing command wrote nothing.

mod archive;
mod cross_shard;
mod dispatch;
mod hash;
mod inventory;
mod journal;
mod ledger;
mod memory;
mod order_saga;
mod order_store;
mod order_units;
mod orders;
mod snapshot;
mod table;

pub use table::prefetch_bytes;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::batch::Batch;
use crate::constants::{BATCH_EVENTS_MAX, DISPATCH_REDELIVERY_NS_DEFAULT};
use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};
use crate::records::{account_flags, transfer_flags, Account, Order, Reservation, Sku, Transfer};
use crate::result::ResultCode;

pub use archive::{
    ArchivedOutcome, ArchivedTransfer, EvictionPlan, IdFilter, ARCHIVED_TRANSFER_SIZE_BYTES,
};
pub use cross_shard::{
    is_reserved_account_id, transit_account_id, transit_shards, ACCOUNT_ID_RESERVED_HIGH,
    TRANSFER_CODE_CROSS_SHARD_COMPENSATION, TRANSIT_ACCOUNT_CODE,
};
pub use dispatch::{DispatchRequest, DispatchStatus};
use journal::{map_with_capacity, Journaled};
use order_store::OrderStore;
pub use order_units::UnitHoldStatus;
pub use snapshot::{SnapshotBuffers, SnapshotError, SnapshotParts};
use table::{PairTable, Table, TableEntry};

/// How many commands ahead [`StateMachine::apply`] prefetches the state a command touches.
const PREFETCH_DISTANCE: usize = 8;

/// Sizing and behaviour of a [`StateMachine`]. Capacities are hints that let the maps be
/// allocated at startup; they are not limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Accounts to allocate room for.
    pub accounts_capacity: usize,
    /// Transfers to allocate room for.
    pub transfers_capacity: usize,
    /// Orders and reservations to allocate room for.
    pub orders_capacity: usize,
    /// An unacknowledged dispatch request is delivered again (with a new feed sequence)
    /// this many ns of log time after its last delivery.
    pub dispatch_redelivery_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            accounts_capacity: 1024,
            transfers_capacity: 1024,
            orders_capacity: 1024,
            dispatch_redelivery_ns: DISPATCH_REDELIVERY_NS_DEFAULT,
        }
    }
}

/// The state of a two-phase (pending) transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
#[serde(rename_all = "snake_case")]
pub enum PendingStatus {
    /// Funds held.
    Pending = 1,
    /// Captured (fully or partly) by a post.
    Posted = 2,
    /// Released by a void (or an order cancel).
    Voided = 3,
    /// Released because its timeout (or its order's) passed.
    Expired = 4,
}

/// What a transfer id refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferLookup {
    /// The transfer took effect. `pending_status` is set for pending transfers.
    Committed {
        /// The transfer as applied (a post carries the amount it captured).
        transfer: Transfer,
        /// For a pending transfer: where it stands now.
        pending_status: Option<PendingStatus>,
    },
    /// The first attempt with this id failed with this code; the id stays failed.
    Failed(ResultCode),
}

/// An order as stored, with what settled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order record, `status` and `timestamp` filled in.
    pub order: Order,
    /// Log time at which the order expires unless paid.
    pub expires_at: u64,
    /// The post that captured the payment, once paid.
    pub payment_transfer_id: TransferId,
    /// The void (cancel) or the refund transfer, if any.
    pub closing_transfer_id: TransferId,
}

/// What an order id refers to.
#[allow(clippy::large_enum_variant)] // Returned by value from a query; never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderLookup {
    /// The order was placed.
    Placed(OrderView),
    /// Placing it failed with this code; the id stays failed.
    Failed(ResultCode),
}

/// What a direct reservation key refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationLookup {
    /// The reservation was made; `status` says where it stands.
    Held(Reservation),
    /// Making it failed with this code; the key stays failed.
    Failed(ResultCode),
}

/// How one command ended, before it becomes a result code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Malformed input: decided from the command alone, nothing to remember.
    Rejected(ResultCode),
    /// The id already has an outcome (`Exists`, a mismatch, or an earlier failure).
    Existing(ResultCode),
    /// Took effect.
    Applied,
    /// Failed on the state (funds, stock, ...); the id keeps this outcome forever.
    Failed(ResultCode),
}

impl Outcome {
    fn code(self) -> ResultCode {
        match self {
            Outcome::Rejected(code) | Outcome::Existing(code) | Outcome::Failed(code) => code,
            Outcome::Applied => ResultCode::Ok,
        }
    }

    fn is_success(self) -> bool {
        self.code().is_success()
    }
}

/// Lets `?`-style early returns read naturally inside command handlers.
macro_rules! reject {
    ($code:ident) => {
        return $crate::state_machine::Outcome::Rejected($crate::result::ResultCode::$code)
    };
}
macro_rules! fail {
    ($code:ident) => {
        return $crate::state_machine::Outcome::Failed($crate::result::ResultCode::$code)
    };
}
pub(crate) use {fail, reject};

/// Where a transfer's record lives, or how its first attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TransferSlot {
    id: TransferId,
    /// The transfer's sequence number (its place among committed records, see
    /// `record_at`), or, with [`TransferSlot::FAILED_BIT`] set, the sequence number that
    /// was next when its first attempt failed (so failed ids age like committed ones). The
    /// top bits also say whether it is an order's transfer ([`TransferSlot::ORDER_BIT`])
    /// or a phase-one pending transfer ([`TransferSlot::PENDING_BIT`]), so eviction can
    /// tell what may leave from the slot alone.
    index: u64,
    /// Fingerprint of the command that created it, or the failure code.
    fingerprint: u64,
}

impl TransferSlot {
    const FAILED_BIT: u64 = 1 << 63;
    const ORDER_BIT: u64 = 1 << 62;
    const PENDING_BIT: u64 = 1 << 61;
    const SEQUENCE_MASK: u64 = (1 << 61) - 1;

    fn committed(id: TransferId, sequence: u64, fingerprint: u64, record: &Transfer) -> Self {
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

    fn failed(id: TransferId, code: ResultCode, sequence: u64) -> Self {
        assert!(sequence & !Self::SEQUENCE_MASK == 0);
        Self {
            id,
            index: Self::FAILED_BIT | sequence,
            fingerprint: u64::from(code.as_u32()),
        }
    }

    fn failure(self) -> Option<ResultCode> {
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
    fn sequence(self) -> u64 {
        self.index & Self::SEQUENCE_MASK
    }

    /// Whether this is an order's transfer (code from `TRANSFER_CODE_SURGE_MIN` up).
    fn is_order_transfer(self) -> bool {
        self.index & Self::ORDER_BIT != 0
    }

    /// Whether this is a phase-one pending transfer (it has a pending state).
    fn is_pending(self) -> bool {
        self.index & Self::PENDING_BIT != 0
    }

    /// The answer to a command reusing this id with `fingerprint`.
    fn existing(self, fingerprint: u64) -> Outcome {
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
    expires_at: u64,
    /// The order whose authorization this is; zero for a direct pending transfer.
    order_id: OrderId,
    status: PendingStatus,
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
    reservation: Reservation,
    fingerprint: u64,
    /// 0 while the reservation exists; else the number of the code its first attempt got.
    failure: u32,
}

impl StoredReservation {
    fn held(reservation: Reservation, fingerprint: u64) -> Self {
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

    fn failed(order_id: OrderId, sku_id: SkuId, code: ResultCode) -> Self {
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

    fn failure(&self) -> Option<ResultCode> {
        if self.failure == 0 {
            None
        } else {
            Some(ResultCode::from_u32(self.failure).expect("a stored failure is a code"))
        }
    }

    /// Log time at which the hold lapses (checked not to overflow when it was made).
    fn expires_at(&self) -> u64 {
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
    buyer_low: u64,
    buyer_high: u64,
    sku_id: SkuId,
    units: u64,
}

impl BuyerUnits {
    fn new(sku_id: SkuId, buyer_id: AccountId, units: u64) -> Self {
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
    order: Order,
    fingerprint: u64,
    expires_at: u64,
    payment_transfer_id: TransferId,
    closing_transfer_id: TransferId,
}

/// A dispatch request as snapshots and the state hash see it (kept in its order's entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DispatchEntry {
    order_id: OrderId,
    sequence: u64,
    created_at: u64,
    redeliver_at: u64,
    attempts: u32,
    status: DispatchStatus,
}

/// Lengths of every undo log: where a rollback returns to.
#[derive(Clone, Copy, Debug)]
struct Savepoint {
    accounts: usize,
    transfers: usize,
    transfer_records: usize,
    transfers_digest: u128,
    pendings: usize,
    skus: usize,
    reservations: usize,
    buyer_units: usize,
    orders: usize,
    dispatch_feed: usize,
    dispatch_sequence_next: u64,
    cross_staged: usize,
}

/// Direct reservations by `(order, sku)`.
type ReservationTable = Journaled<(OrderId, SkuId), StoredReservation, Table<StoredReservation>>;

/// Units held per `(sku, buyer)`, for SKUs with a per-buyer limit.
type BuyerUnitsTable = Journaled<(SkuId, AccountId), BuyerUnits, Table<BuyerUnits>>;

/// The deterministic core. See the module documentation.
pub struct StateMachine {
    config: Config,
    /// Timestamp of the last command (or pulse) applied; 0 before the first batch.
    timestamp_last: u64,
    accounts: Journaled<u128, Account, Table<Account>>,
    transfers: Journaled<u128, TransferSlot, Table<TransferSlot>>,
    /// Committed transfers in log order from sequence number `transfer_records_base` on;
    /// a [`TransferSlot`] holds its record's sequence number (see `record_at`).
    /// A ring buffer, so eviction drops a prefix without moving the rest.
    transfer_records: VecDeque<Transfer>,
    /// Sequence number of `transfer_records[0]`: records before it were evicted, or moved
    /// to `transfer_records_kept` because they are still live.
    transfer_records_base: u64,
    /// Records before the base that stay resident (live pending transfers and order
    /// transfers), by sequence number.
    transfer_records_kept: BTreeMap<u64, Transfer>,
    /// A snapshot being copied while the state moves on ([`StateMachine::snapshot_begin`]).
    snapshot_copy: Option<snapshot::SnapshotCopy>,
    /// Order-independent sum of every transfer slot's digest and of every resolved pending
    /// transfer's final status: lets the state hash cover the transfer history without
    /// walking it, resident or not.
    transfers_digest: u128,
    /// The part of `transfers_digest` contributed by transfers that left memory.
    transfers_evicted_digest: u128,
    /// Transfer ids (committed or failed) that left memory.
    transfers_evicted: u64,
    /// Which ids left memory (no false negatives).
    evicted_filter: archive::EvictedFilter,
    /// Finished transfers made resident for the batch being applied (see
    /// [`StateMachine::recall`]); emptied after every batch.
    recalled: journal::Map<u128, ArchivedTransfer>,
    pendings: Journaled<TransferId, PendingState, PairTable<TransferId, PendingState>>,
    pending_expiry: BinaryHeap<Reverse<(u64, TransferId)>>,
    skus: Journaled<u64, Sku, Table<Sku>>,
    reservations: ReservationTable,
    reservation_expiry: BinaryHeap<Reverse<(u64, OrderId, SkuId)>>,
    /// Units held (reserved + bought) per (SKU, buyer), for SKUs with a per-buyer limit.
    buyer_units: BuyerUnitsTable,
    /// Placed and failed orders, with their dispatch requests.
    orders: OrderStore,
    order_expiry: BinaryHeap<Reverse<(u64, OrderId)>>,
    /// Unacknowledged requests by feed sequence: what consumers read from a cursor.
    dispatch_feed: Journaled<u64, DispatchId, BTreeMap<u64, DispatchId>>,
    dispatch_sequence_next: u64,
    dispatch_redelivery: BinaryHeap<Reverse<(u64, DispatchId)>>,
    /// Cross-shard transfers: the outbox of debit legs and the compensated ones.
    cross_shard: cross_shard::CrossShard,
    /// Orders spanning shards: where their parties live and the outbox of their steps.
    order_saga: order_saga::OrderSaga,
    /// Scratch space for the codes of one linked chain.
    chain_codes: Vec<ResultCode>,
    /// Whether the journals record undo entries (see `apply_events`).
    recording: bool,
    /// The vacant slot found for the transfer id being created, if any (one probe).
    transfer_vacant: Option<(TransferId, usize)>,
}

impl StateMachine {
    /// An empty state machine.
    pub fn new(config: Config) -> Self {
        // Touch the record buffer's pages now, so the first hours of traffic do not pay a
        // page fault every 32 transfers on the hot path.
        let mut transfer_records =
            memory::filled_vec(config.transfers_capacity, Transfer::default());
        transfer_records.clear();
        Self {
            config,
            timestamp_last: 0,
            accounts: Journaled::new(Table::with_capacity(config.accounts_capacity)),
            transfers: Journaled::new(Table::with_capacity(config.transfers_capacity)),
            transfer_records: VecDeque::from(transfer_records),
            transfer_records_base: 0,
            transfer_records_kept: BTreeMap::new(),
            snapshot_copy: None,
            transfers_digest: 0,
            transfers_evicted_digest: 0,
            transfers_evicted: 0,
            evicted_filter: archive::EvictedFilter::default(),
            recalled: map_with_capacity(0),
            pendings: Journaled::new(PairTable::with_capacity(config.orders_capacity)),
            pending_expiry: BinaryHeap::with_capacity(config.orders_capacity),
            skus: Journaled::new(Table::with_capacity(64)),
            reservations: Journaled::new(Table::with_capacity(config.orders_capacity)),
            reservation_expiry: BinaryHeap::with_capacity(config.orders_capacity),
            buyer_units: Journaled::new(Table::with_capacity(config.orders_capacity)),
            orders: OrderStore::with_capacity(config.orders_capacity),
            order_expiry: memory::touched_heap(config.orders_capacity, Reverse((0, OrderId::ZERO))),
            dispatch_feed: Journaled::new(BTreeMap::new()),
            dispatch_sequence_next: 1,
            dispatch_redelivery: memory::touched_heap(
                config.orders_capacity,
                Reverse((0, DispatchId(0))),
            ),
            cross_shard: cross_shard::CrossShard::default(),
            order_saga: order_saga::OrderSaga::default(),
            chain_codes: Vec::with_capacity(BATCH_EVENTS_MAX),
            recording: true,
            transfer_vacant: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Timestamp of the last command applied (0 before the first batch).
    pub fn timestamp_last(&self) -> u64 {
        self.timestamp_last
    }

    /// The smallest timestamp the next batch may carry.
    pub fn timestamp_next_min(&self) -> u64 {
        self.timestamp_last + 1
    }

    /// Applies `batch` at log time `timestamp_ns`, writing one code per command into
    /// `results` (cleared first). The caller (the log) guarantees
    /// `timestamp_ns >= timestamp_next_min()` and at most [`BATCH_EVENTS_MAX`] commands.
    pub fn apply(&mut self, timestamp_ns: u64, batch: Batch<'_>, results: &mut Vec<ResultCode>) {
        assert!(
            timestamp_ns > self.timestamp_last,
            "log time must move forward"
        );
        assert!(
            batch.len() <= BATCH_EVENTS_MAX,
            "the decoder enforces the batch limit"
        );
        let occupied = batch.len().max(1) as u64;
        let timestamp_end = timestamp_ns
            .checked_add(occupied - 1)
            .expect("log time overflow");
        results.clear();
        self.expire_due(timestamp_ns);
        match batch {
            Batch::Pulse => {}
            Batch::CreateAccounts(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |a| a.flags & account_flags::LINKED != 0,
                false,
                |_, _| {},
                Self::create_account,
                |_, _, _| {},
            ),
            Batch::CreateTransfers(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |t| t.flags & transfer_flags::LINKED != 0,
                false,
                Self::prefetch_transfer,
                Self::create_transfer,
                |sm, t, code| sm.record_transfer_failure(t.id, code),
            ),
            Batch::CreateSkus(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::create_sku,
                |_, _, _| {},
            ),
            Batch::Reserve(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                Self::prefetch_reservation,
                Self::reserve,
                Self::record_reservation_failure,
            ),
            Batch::ConfirmReservations(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::confirm_reservation,
                |_, _, _| {},
            ),
            Batch::ReleaseReservations(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::release_reservation,
                |_, _, _| {},
            ),
            Batch::PlaceOrders(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                Self::prefetch_order,
                Self::place_order,
                |sm, order, code| sm.record_order_failure(order.id, code),
            ),
            Batch::PlaceOrdersCompact(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, compact| sm.prefetch_order(&compact.order()),
                |sm, compact, timestamp| {
                    if compact.reserved != [0; 14] {
                        return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
                    }
                    sm.place_order(&compact.order(), timestamp)
                },
                |sm, order, code| sm.record_order_failure(order.id, code),
            ),
            Batch::PayOrders(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, action| sm.prefetch_order_action(records, action),
                Self::pay_order,
                |sm, action, code| sm.record_transfer_failure(action.transfer_id, code),
            ),
            Batch::CancelOrders(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, action| sm.prefetch_order_action(records, action),
                Self::cancel_order,
                |sm, action, code| sm.record_transfer_failure(action.transfer_id, code),
            ),
            Batch::RefundOrders(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, action| sm.prefetch_order_action(records, action),
                Self::refund_order,
                |sm, action, code| sm.record_transfer_failure(action.transfer_id, code),
            ),
            Batch::AckDispatch(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, ack| sm.orders.prefetch(OrderId(ack.dispatch_id.0)),
                Self::ack_dispatch,
                |_, _, _| {},
            ),
            Batch::ShardDebit(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, leg| sm.prefetch_transfer(&leg.transfer),
                Self::shard_debit,
                |sm, leg, code| sm.record_transfer_failure(leg.transfer.id, code),
            ),
            Batch::ShardCredit(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, leg| sm.prefetch_transfer(&leg.transfer),
                Self::shard_credit,
                |sm, leg, code| sm.record_transfer_failure(leg.transfer.id, code),
            ),
            Batch::ShardResolve(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::shard_resolve,
                |_, _, _| {},
            ),
            Batch::ReserveOrders(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, spanning| sm.prefetch_order(&spanning.order),
                Self::reserve_spanning_order,
                |sm, spanning, code| sm.record_order_failure(spanning.order.id, code),
            ),
            Batch::OrderLegs(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |sm, leg| sm.prefetch_transfer(&leg.transfer),
                Self::order_leg,
                |sm, leg, code| sm.record_transfer_failure(leg.transfer.id, code),
            ),
            Batch::OrderResolve(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                Self::prefetch_transfer,
                Self::order_resolve,
                |sm, transfer, code| sm.record_transfer_failure(transfer.id, code),
            ),
            Batch::OrderConfirm(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::order_confirm,
                |_, _, _| {},
            ),
            Batch::OrderUnits(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::order_units,
                Self::record_unit_failure,
            ),
            Batch::UnitConfirm(records) => self.apply_events(
                timestamp_ns,
                records,
                results,
                |_| false,
                false,
                |_, _| {},
                Self::unit_confirm,
                |_, _, _| {},
            ),
        }
        assert_eq!(results.len(), batch.len());
        self.flush_phase_two();
        self.timestamp_last = timestamp_end;
        if !self.recalled.is_empty() {
            self.recalled.clear();
        }
    }

    /// Runs `execute` on every event, honouring linked chains: a chain is a run of events
    /// with `linked` set, closed by the first event without it, and succeeds or fails as one.
    // One closure per aspect of an operation keeps the chain logic in one place.
    #[allow(clippy::too_many_arguments)]
    fn apply_events<T>(
        &mut self,
        timestamp_ns: u64,
        events: &[T],
        results: &mut Vec<ResultCode>,
        linked: impl Fn(&T) -> bool,
        journal_always: bool,
        prefetch: impl Fn(&Self, &T),
        execute: impl Fn(&mut Self, &T, u64) -> Outcome,
        record_failure: impl Fn(&mut Self, &T, ResultCode),
    ) {
        for ahead in events.iter().take(PREFETCH_DISTANCE) {
            prefetch(self, ahead);
        }
        let mut index = 0;
        while index < events.len() {
            let mut chain_last = index;
            while chain_last < events.len() && linked(&events[chain_last]) {
                chain_last += 1;
            }
            if chain_last == events.len() {
                // The chain never closes: every member fails, the last one says why.
                for member in index..events.len() {
                    results.push(if member + 1 == events.len() {
                        ResultCode::LinkedEventChainOpen
                    } else {
                        ResultCode::LinkedEventFailed
                    });
                }
                return;
            }
            // Only a linked chain or a multi-step command can fail after a write; everything
            // else checks before it writes and needs no undo log. Debug builds record
            // always and check that claim on every failure.
            let needs_undo = journal_always || chain_last > index;
            let recording = needs_undo || cfg!(debug_assertions);
            if recording != self.recording {
                self.set_recording(recording);
            }
            if !recording {
                // The hot path: one command, nothing to undo.
                if let Some(ahead) = events.get(index + PREFETCH_DISTANCE) {
                    prefetch(self, ahead);
                }
                let outcome = execute(self, &events[index], timestamp_ns + index as u64);
                if let Outcome::Failed(code) = outcome {
                    record_failure(self, &events[index], code);
                }
                results.push(outcome.code());
                index += 1;
                continue;
            }
            let savepoint = self.savepoint();
            self.chain_codes.clear();
            let mut failure = None;
            for (member, event) in events.iter().enumerate().take(chain_last + 1).skip(index) {
                // Start loading the state a later command touches, so cache misses of
                // consecutive commands overlap instead of queueing.
                if let Some(ahead) = events.get(member + PREFETCH_DISTANCE) {
                    prefetch(self, ahead);
                }
                let outcome = execute(self, event, timestamp_ns + member as u64);
                if !outcome.is_success() {
                    failure = Some((member, outcome));
                    break;
                }
                self.chain_codes.push(outcome.code());
            }
            match failure {
                None => results.extend_from_slice(&self.chain_codes),
                Some((failed_member, outcome)) => {
                    if !needs_undo {
                        assert!(self.is_clean(), "a command failed after it wrote state");
                        assert_eq!(self.transfer_records.len(), savepoint.transfer_records);
                    }
                    self.rollback(savepoint);
                    if let Outcome::Failed(code) = outcome {
                        record_failure(self, &events[failed_member], code);
                    }
                    for member in index..=chain_last {
                        results.push(if member == failed_member {
                            outcome.code()
                        } else {
                            ResultCode::LinkedEventFailed
                        });
                    }
                }
            }
            self.commit();
            index = chain_last + 1;
        }
    }

    fn savepoint(&self) -> Savepoint {
        Savepoint {
            accounts: self.accounts.savepoint(),
            transfers: self.transfers.savepoint(),
            transfer_records: self.transfer_records.len(),
            transfers_digest: self.transfers_digest,
            pendings: self.pendings.savepoint(),
            skus: self.skus.savepoint(),
            reservations: self.reservations.savepoint(),
            buyer_units: self.buyer_units.savepoint(),
            orders: self.orders.savepoint(),
            dispatch_feed: self.dispatch_feed.savepoint(),
            dispatch_sequence_next: self.dispatch_sequence_next,
            cross_staged: self.cross_shard.staged.len(),
        }
    }

    fn rollback(&mut self, savepoint: Savepoint) {
        self.accounts.rollback(savepoint.accounts);
        self.transfers.rollback(savepoint.transfers);
        assert!(savepoint.transfer_records <= self.transfer_records.len());
        self.transfer_records.truncate(savepoint.transfer_records);
        self.transfers_digest = savepoint.transfers_digest;
        self.pendings.rollback(savepoint.pendings);
        self.skus.rollback(savepoint.skus);
        self.reservations.rollback(savepoint.reservations);
        self.buyer_units.rollback(savepoint.buyer_units);
        self.orders.rollback(savepoint.orders);
        self.dispatch_feed.rollback(savepoint.dispatch_feed);
        self.dispatch_sequence_next = savepoint.dispatch_sequence_next;
        self.cross_shard.staged.truncate(savepoint.cross_staged);
        // Expiry heaps are not journaled: an entry is acted on only if the item it names
        // still exists, is still live and still has the same expiry, so entries left by a
        // rolled-back command are skipped when they come due.
    }

    fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
        self.accounts.set_recording(recording);
        self.transfers.set_recording(recording);
        self.pendings.set_recording(recording);
        self.skus.set_recording(recording);
        self.reservations.set_recording(recording);
        self.buyer_units.set_recording(recording);
        self.dispatch_feed.set_recording(recording);
    }

    /// Whether no journaled write happened since the last commit.
    fn is_clean(&self) -> bool {
        self.accounts.is_clean()
            && self.transfers.is_clean()
            && self.pendings.is_clean()
            && self.skus.is_clean()
            && self.reservations.is_clean()
            && self.buyer_units.is_clean()
            && self.orders.is_clean()
            && self.dispatch_feed.is_clean()
    }

    fn commit(&mut self) {
        self.accounts.commit();
        self.transfers.commit();
        self.pendings.commit();
        self.skus.commit();
        self.reservations.commit();
        self.buyer_units.commit();
        self.orders.commit();
        self.dispatch_feed.commit();
    }

    /// Expires everything due at or before `now`, in a fixed order: orders, authorizations
    /// of orders spanning shards that timed out, direct reservations, direct pending
    /// transfers, then dispatch redeliveries; within each, by due time, then id.
    fn expire_due(&mut self, now: u64) {
        while let Some(&Reverse((due, order_id))) = self.order_expiry.peek() {
            if due > now {
                break;
            }
            self.order_expiry.pop();
            self.expire_order(order_id, due);
        }
        while let Some(&(due, order_id)) = self.order_saga.authorize_deadlines.front() {
            if due > now {
                break;
            }
            self.order_saga.authorize_deadlines.pop_front();
            self.time_out_authorization(order_id, due);
        }
        while let Some(&Reverse((due, order_id, sku_id))) = self.reservation_expiry.peek() {
            if due > now {
                break;
            }
            self.reservation_expiry.pop();
            self.expire_reservation((order_id, sku_id), due);
        }
        while let Some(&Reverse((due, transfer_id))) = self.pending_expiry.peek() {
            if due > now {
                break;
            }
            self.pending_expiry.pop();
            self.expire_pending(transfer_id, due);
        }
        while let Some(&Reverse((due, dispatch_id))) = self.dispatch_redelivery.peek() {
            if due > now {
                break;
            }
            self.dispatch_redelivery.pop();
            self.redeliver_dispatch(dispatch_id, due, now);
        }
        self.commit();
    }

    /// The earliest log time at which something may expire: when the engine should log a
    /// pulse if no traffic arrives. May name an item that has since resolved (a harmless
    /// early pulse).
    pub fn expiry_next(&self) -> Option<u64> {
        [
            self.order_expiry.peek().map(|Reverse((due, _))| *due),
            self.order_saga
                .authorize_deadlines
                .front()
                .map(|(due, _)| *due),
            self.reservation_expiry
                .peek()
                .map(|Reverse((due, _, _))| *due),
            self.pending_expiry.peek().map(|Reverse((due, _))| *due),
            self.dispatch_redelivery
                .peek()
                .map(|Reverse((due, _))| *due),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // --- Queries: read-only, never logged. ---

    /// An account and its balances.
    pub fn account(&self, id: AccountId) -> Option<Account> {
        self.accounts.get(&id.0).copied()
    }

    /// A resident transfer, or how its first attempt failed. `None` also for a finished
    /// transfer that left memory (see [`StateMachine::evict`]): the history index has it.
    pub fn transfer(&self, id: TransferId) -> Option<TransferLookup> {
        if let Some((code, _)) = self.shard_compensation(id) {
            // A cross-shard transfer whose credit leg failed: that is its outcome.
            return Some(TransferLookup::Failed(code));
        }
        let slot = self.transfers.get(&id.0)?;
        Some(match slot.failure() {
            Some(code) => TransferLookup::Failed(code),
            None => TransferLookup::Committed {
                transfer: *self.record_at(slot.sequence()),
                pending_status: self.pendings.get(&id).map(|pending| pending.status),
            },
        })
    }

    /// A SKU and its unit counters.
    pub fn sku(&self, id: SkuId) -> Option<Sku> {
        self.skus.get(&id.0).copied()
    }

    /// A direct reservation, or how making it failed.
    pub fn reservation(&self, order_id: OrderId, sku_id: SkuId) -> Option<ReservationLookup> {
        let stored = self.reservations.get(&(order_id, sku_id))?;
        Some(match stored.failure() {
            Some(code) => ReservationLookup::Failed(code),
            None => ReservationLookup::Held(stored.reservation),
        })
    }

    /// An order, or how placing it failed.
    pub fn order(&self, id: OrderId) -> Option<OrderLookup> {
        self.orders.lookup(id)
    }

    /// Units of `sku_id` that `buyer_id` holds (reserved + bought), for SKUs with a limit.
    pub fn buyer_units(&self, sku_id: SkuId, buyer_id: AccountId) -> u64 {
        self.buyer_units
            .get(&(sku_id, buyer_id))
            .map_or(0, |held| held.units)
    }

    /// Every account, by id (for audits and tests; walks the whole map).
    pub fn accounts_sorted(&self) -> Vec<Account> {
        let mut accounts: Vec<Account> = self.accounts.map.iter().copied().collect();
        accounts.sort_unstable_by_key(|account| account.id);
        accounts
    }

    /// Every SKU, by id.
    pub fn skus_sorted(&self) -> Vec<Sku> {
        let mut skus: Vec<Sku> = self.skus.map.iter().copied().collect();
        skus.sort_unstable_by_key(|sku| sku.id);
        skus
    }

    /// Every placed order, by id.
    pub fn orders_sorted(&self) -> Vec<OrderView> {
        self.orders
            .entries_sorted()
            .into_iter()
            .map(OrderEntry::into_view)
            .collect()
    }

    /// Counts of what is held in memory (for sizing and the memory documentation).
    pub fn memory_counts(&self) -> MemoryCounts {
        MemoryCounts {
            accounts: self.accounts.map.len(),
            transfers: self.transfers.map.len(),
            transfer_records: self.transfer_records.len() + self.transfer_records_kept.len(),
            transfers_evicted: self.transfers_evicted,
            evicted_filter_bytes: self.evicted_filter.size_bytes(),
            pending_transfers: self.pendings.map.len(),
            skus: self.skus.map.len(),
            reservations: self.reservations.map.len(),
            buyer_limits: self.buyer_units.map.len(),
            orders: self.orders.len() + self.orders.failed_len(),
            dispatch_requests: self.orders.dispatches_len(),
        }
    }
}

/// Entry counts of the state machine's maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryCounts {
    /// Accounts.
    pub accounts: usize,
    /// Resident transfer ids (committed and failed).
    pub transfers: usize,
    /// Full transfer records held in memory.
    pub transfer_records: usize,
    /// Transfer ids that left memory (their outcomes are in the history index).
    pub transfers_evicted: u64,
    /// Bytes of the filter over the ids that left memory.
    pub evicted_filter_bytes: usize,
    /// Two-phase transfers (live and resolved).
    pub pending_transfers: usize,
    /// SKUs.
    pub skus: usize,
    /// Direct reservations (held, resolved and failed).
    pub reservations: usize,
    /// (SKU, buyer) pairs tracked for per-buyer limits.
    pub buyer_limits: usize,
    /// Orders (placed and failed).
    pub orders: usize,
    /// Dispatch requests.
    pub dispatch_requests: usize,
}

/// Fingerprint of a command's bytes, salted with its operation, for idempotency checks.
pub(crate) fn fingerprint(operation: u8, bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, u64::from(operation))
}

// Entry sizes quoted in docs/MEMORY.md; a change here changes the memory budget.
const _: () = assert!(std::mem::size_of::<TransferSlot>() == 32);
const _: () = assert!(std::mem::size_of::<PendingState>() == 32);
const _: () = assert!(std::mem::size_of::<OrderEntry>() == 304);
const _: () = assert!(std::mem::size_of::<StoredReservation>() == 80);
const _: () = assert!(std::mem::size_of::<BuyerUnits>() == 32);
const _: () = assert!(std::mem::size_of::<DispatchEntry>() == 48);
