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
mod chains;
mod cross_shard;
mod dispatch;
mod entries;
mod hash;
mod inventory;
mod journal;
mod ledger;
mod memory;
mod order_saga;
mod order_store;
mod order_units;
mod orders;
mod reads;
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
use crate::records::{account_flags, transfer_flags, Account, Sku, Transfer};
use crate::result::ResultCode;

pub use archive::{
    ArchivedOutcome, ArchivedTransfer, EvictionPlan, IdFilter, ARCHIVED_TRANSFER_SIZE_BYTES,
};
pub use cross_shard::{
    is_reserved_account_id, transit_account_id, transit_shards, ACCOUNT_ID_RESERVED_HIGH,
    TRANSFER_CODE_CROSS_SHARD_COMPENSATION, TRANSIT_ACCOUNT_CODE,
};
pub use dispatch::{DispatchRequest, DispatchStatus};
pub(crate) use entries::{
    BuyerUnits, DispatchEntry, OrderEntry, PendingState, StoredReservation, TransferSlot,
};
use journal::{map_with_capacity, Journaled};
use order_store::OrderStore;
pub use order_units::UnitHoldStatus;
pub use reads::{MemoryCounts, OrderLookup, OrderView, ReservationLookup, TransferLookup};
pub use snapshot::{SnapshotBuffers, SnapshotError, SnapshotParts};
use table::{PairTable, Table};

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
}

/// Fingerprint of a command's bytes, salted with its operation, for idempotency checks.
pub(crate) fn fingerprint(operation: u8, bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, u64::from(operation))
}
