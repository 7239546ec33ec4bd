//! Reads: what a caller may ask of the state between batches (an account, a transfer, an
//! order, a reservation, sorted listings, memory counts) and the answers' types. Nothing
//! here writes the state or is logged.

use serde::{Deserialize, Serialize};

use super::{OrderEntry, PendingStatus, StateMachine};
use crate::ids::{AccountId, OrderId, SkuId, TransferId};
use crate::records::{Account, Order, Reservation, Sku, Transfer};
use crate::result::ResultCode;

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

impl StateMachine {
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
