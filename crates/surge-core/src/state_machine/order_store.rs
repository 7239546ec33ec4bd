//! Orders as stored: a table of 32-byte slots (order id → entry, or how placing it failed)
//! over append-only, fixed-size 320-byte entries, each holding the order, what settled it
//! and its dispatch request.
//!
//! Why this shape: placing an order is the festival's hot command, and every map it wrote
//! was a standard hash map of ~330-byte values, touched for the first time (a page fault)
//! at a random place per order and impossible to prefetch. Here the only random access is
//! one small slot, prefetched a few commands ahead like an account; the entry is appended
//! where the previous one ended, into pages touched when the state machine was sized (up
//! to `orders_capacity`) or, past that, into chunks that never move once allocated, so the
//! store grows without copying what it holds. The dispatch request lives in its order's
//! entry (its id is the order's), so paying an order writes no second map.
//!
//! Undo: entries are only appended by placing an order, and an entry changes in place only
//! in commands that cannot fail after their first write (pay, cancel, refund, acknowledge,
//! the expiry sweep). So a rollback truncates the appended tail (and removes its slots),
//! and asserts that nothing changed in place since the savepoint; no value is copied into
//! an undo log.

use super::table::{Table, TableEntry};
use super::{DispatchEntry, DispatchStatus, OrderEntry, OrderLookup};
use crate::ids::{DispatchId, OrderId, TransferId};
use crate::records::{Order, OrderStatus};
use crate::result::ResultCode;

/// The smallest first chunk, in entries.
const CHUNK_ENTRIES_MIN: usize = 64;

/// Where an order id's entry is, or how placing it failed. 32 bytes: two to a cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderSlot {
    id: OrderId,
    /// The entry's index, or [`OrderSlot::FAILED`].
    entry: u64,
    /// Fingerprint of the command that placed it, or the failure's code.
    fingerprint: u64,
}

impl OrderSlot {
    const FAILED: u64 = u64::MAX;

    fn failure(&self) -> Option<ResultCode> {
        if self.entry == Self::FAILED {
            let code = u32::try_from(self.fingerprint)
                .ok()
                .and_then(ResultCode::from_u32);
            Some(code.expect("a failed slot holds a result code"))
        } else {
            None
        }
    }

    /// The answer to placing this id again with `fingerprint`.
    pub(crate) fn existing(&self, fingerprint: u64) -> ResultCode {
        match self.failure() {
            Some(_) => ResultCode::IdAlreadyFailed,
            None if self.fingerprint == fingerprint => ResultCode::Exists,
            None => ResultCode::ExistsWithDifferentFields,
        }
    }
}

impl TableEntry for OrderSlot {
    type Key = OrderId;
    fn key(&self) -> OrderId {
        self.id
    }
    fn vacant() -> Self {
        Self {
            id: OrderId::ZERO,
            entry: 0,
            fingerprint: 0,
        }
    }
}

/// A dispatch request as kept in its order's entry (its id is the order's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct DispatchState {
    sequence: u64,
    created_at: u64,
    redeliver_at: u64,
    attempts: u32,
    /// `None` until the order is paid.
    status: Option<DispatchStatus>,
}

/// A placed order. 320 bytes (five cache lines, aligned to one): the order's unpaid
/// expiry is `order.timestamp + order.timeout_ns` (checked not to overflow when it was
/// placed) and its fingerprint is in its slot, so neither is stored twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct StoredOrder {
    /// The order, `status` and `timestamp` filled in.
    pub(crate) order: Order,
    /// The post that captured the payment, once paid.
    pub(crate) payment_transfer_id: TransferId,
    /// The void (cancel) or the refund transfer, if any.
    pub(crate) closing_transfer_id: TransferId,
    dispatch: DispatchState,
}

impl StoredOrder {
    fn vacant() -> StoredOrder {
        StoredOrder {
            order: Order::default(),
            payment_transfer_id: TransferId::ZERO,
            closing_transfer_id: TransferId::ZERO,
            dispatch: DispatchState {
                sequence: 0,
                created_at: 0,
                redeliver_at: 0,
                attempts: 0,
                status: None,
            },
        }
    }

    pub(crate) fn status(&self) -> OrderStatus {
        OrderStatus::from_u16(self.order.status).expect("a stored order has a valid status")
    }

    /// The order's lines in use.
    pub(crate) fn lines(&self) -> &[crate::records::OrderLine] {
        &self.order.lines[..usize::from(self.order.line_count)]
    }

    /// Log time at which the order expires unless paid.
    pub(crate) fn expires_at(&self) -> u64 {
        self.order.timestamp + self.order.timeout_ns
    }

    /// The order's dispatch request, once it was paid.
    pub(crate) fn dispatch(&self) -> Option<DispatchEntry> {
        let dispatch = &self.dispatch;
        dispatch.status.map(|status| DispatchEntry {
            order_id: self.order.id,
            sequence: dispatch.sequence,
            created_at: dispatch.created_at,
            redeliver_at: dispatch.redeliver_at,
            attempts: dispatch.attempts,
            status,
        })
    }

    /// Creates or replaces the order's dispatch request.
    pub(crate) fn set_dispatch(&mut self, entry: &DispatchEntry) {
        assert_eq!(entry.order_id, self.order.id);
        self.dispatch = DispatchState {
            sequence: entry.sequence,
            created_at: entry.created_at,
            redeliver_at: entry.redeliver_at,
            attempts: entry.attempts,
            status: Some(entry.status),
        };
    }

    /// The order with what settled it and its fingerprint, as snapshots and the state hash
    /// have always seen it.
    fn view(&self, fingerprint: u64) -> OrderEntry {
        OrderEntry {
            order: self.order,
            fingerprint,
            expires_at: self.expires_at(),
            payment_transfer_id: self.payment_transfer_id,
            closing_transfer_id: self.closing_transfer_id,
        }
    }
}

/// See the module documentation.
pub(crate) struct OrderStore {
    slots: Table<OrderSlot>,
    /// Entries in placement order: chunk 0 holds `chunk_entries_first` of them, chunk
    /// `k >= 1` the next `chunk_entries_first << (k - 1)`, so the store doubles without
    /// moving an entry. A chunk is allocated (never shrunk) when the first entry reaches it.
    chunks: Vec<Vec<StoredOrder>>,
    /// A power of two.
    chunk_entries_first: usize,
    /// Entries appended (placed orders, and entries orphaned by a failure).
    len: usize,
    /// Entries whose order later failed (see [`OrderStore::fail_placed`]).
    orphaned: usize,
    /// Slots holding a failure.
    failed_len: usize,
    /// Entries holding a dispatch request.
    dispatches_len: usize,
    /// `len` at the last commit.
    len_committed: usize,
    /// Whether an entry changed in place since the last commit (see the module
    /// documentation: such changes are never undone).
    changed: bool,
}

impl OrderStore {
    /// A store with slots for `capacity` orders and the first `capacity` entries' memory
    /// touched now, so placing them takes no page fault.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let chunk_entries_first = capacity.max(CHUNK_ENTRIES_MIN).next_power_of_two();
        let mut first = super::memory::reserved_vec(chunk_entries_first);
        super::memory::touch(&mut first, capacity.max(1), StoredOrder::vacant());
        Self {
            slots: Table::with_capacity(capacity),
            chunks: vec![first],
            chunk_entries_first,
            len: 0,
            orphaned: 0,
            failed_len: 0,
            dispatches_len: 0,
            len_committed: 0,
            changed: false,
        }
    }

    /// Placed orders.
    pub(crate) fn len(&self) -> usize {
        self.len - self.orphaned
    }

    /// Order ids whose placement failed.
    pub(crate) fn failed_len(&self) -> usize {
        self.failed_len
    }

    /// Dispatch requests (orders ever paid).
    pub(crate) fn dispatches_len(&self) -> usize {
        self.dispatches_len
    }

    /// Chunk and offset of entry `index`.
    fn position(&self, index: usize) -> (usize, usize) {
        let first_shift = self.chunk_entries_first.trailing_zeros();
        let above = index >> first_shift;
        if above == 0 {
            return (0, index);
        }
        // `above` is in `2^(k-1) .. 2^k` for chunk `k`, which starts at `first << (k - 1)`.
        let chunk = (usize::BITS - above.leading_zeros()) as usize;
        (chunk, index - (self.chunk_entries_first << (chunk - 1)))
    }

    fn chunk_entries(&self, chunk: usize) -> usize {
        match chunk {
            0 => self.chunk_entries_first,
            _ => self.chunk_entries_first << (chunk - 1),
        }
    }

    /// The entry at `index` (from [`OrderStore::find`]).
    pub(crate) fn at(&self, index: usize) -> &StoredOrder {
        assert!(index < self.len);
        let (chunk, offset) = self.position(index);
        &self.chunks[chunk][offset]
    }

    /// The entry at `index`, to change in place (see the module documentation).
    pub(crate) fn at_mut(&mut self, index: usize) -> &mut StoredOrder {
        assert!(index < self.len);
        self.changed = true;
        let (chunk, offset) = self.position(index);
        &mut self.chunks[chunk][offset]
    }

    /// `Ok` with the slot of `id`, or `Err` with the vacant slot index where it would go
    /// (valid until the next slot is inserted or removed).
    pub(crate) fn find(&self, id: OrderId) -> Result<OrderSlot, usize> {
        match self.slots.find_slot(&id) {
            Ok(index) => Ok(*self.slots.at(index)),
            Err(vacant) => Err(vacant),
        }
    }

    /// The entry index of a placed order.
    pub(crate) fn locate(&self, id: OrderId) -> Option<usize> {
        let slot = self.slots.get(&id)?;
        (slot.failure().is_none()).then_some(slot.entry as usize)
    }

    /// The entry of a placed order.
    pub(crate) fn get(&self, id: OrderId) -> Option<&StoredOrder> {
        self.locate(id).map(|index| self.at(index))
    }

    /// Hints the CPU to start loading `id`'s slot.
    #[inline]
    pub(crate) fn prefetch(&self, id: OrderId) {
        self.slots.prefetch(&id);
    }

    /// Hints the CPU to start loading entry `index` (from [`OrderStore::locate`]).
    #[inline]
    pub(crate) fn prefetch_entry(&self, index: usize) {
        if index < self.len {
            let (chunk, offset) = self.position(index);
            super::table::prefetch_value(&self.chunks[chunk][offset]);
        }
    }

    /// Stores a newly placed order in the vacant slot `vacant` (from [`OrderStore::find`])
    /// and appends its entry; returns the entry's index.
    pub(crate) fn place(&mut self, vacant: usize, order: Order, fingerprint: u64) -> usize {
        assert!(!order.id.is_zero());
        let index = self.len;
        self.append(StoredOrder {
            order,
            ..StoredOrder::vacant()
        });
        let slot = OrderSlot {
            id: order.id,
            entry: index as u64,
            fingerprint,
        };
        self.slots.fill_vacant(vacant, slot);
        index
    }

    fn append(&mut self, stored: StoredOrder) {
        let (chunk, offset) = self.position(self.len);
        if chunk == self.chunks.len() {
            let entries = self.chunk_entries(chunk);
            self.chunks.push(super::memory::reserved_vec(entries));
        }
        let entries = &mut self.chunks[chunk];
        assert_eq!(entries.len(), offset, "entries are appended in order");
        entries.push(stored);
        self.len += 1;
    }

    /// Remembers that placing `id` failed with `code`.
    pub(crate) fn record_failure(&mut self, id: OrderId, code: ResultCode) {
        assert!(!code.is_success());
        let slot = OrderSlot {
            id,
            entry: OrderSlot::FAILED,
            fingerprint: u64::from(code.as_u32()),
        };
        let previous = self.slots.insert(slot);
        assert!(previous.is_none(), "only new ids fail on the state");
        self.failed_len += 1;
    }

    /// An order placed while its authorization travelled to another shard, refused
    /// there: the id fails with `code` as if placing it had failed. Its entry stays
    /// (entries are append-only) but no slot names it any more. Never undone: the
    /// command doing it cannot fail.
    pub(crate) fn fail_placed(&mut self, id: OrderId, code: ResultCode) {
        assert!(!code.is_success());
        let index = self.locate(id).expect("the order was placed");
        assert_eq!(
            self.at(index).dispatch.status,
            None,
            "only an unpaid order fails"
        );
        let slot = self.slots.get_mut(&id).expect("the order was placed");
        *slot = OrderSlot {
            id,
            entry: OrderSlot::FAILED,
            fingerprint: u64::from(code.as_u32()),
        };
        self.changed = true;
        self.orphaned += 1;
        self.failed_len += 1;
    }

    /// Notes that entry `index` now holds a dispatch request (once per order).
    pub(crate) fn count_dispatch(&mut self, index: usize) {
        assert!(self.at(index).dispatch.status.is_some());
        self.dispatches_len += 1;
    }

    /// What an order id refers to.
    pub(crate) fn lookup(&self, id: OrderId) -> Option<OrderLookup> {
        let slot = self.slots.get(&id)?;
        Some(match slot.failure() {
            Some(code) => OrderLookup::Failed(code),
            None => {
                let stored = self.at(slot.entry as usize);
                OrderLookup::Placed(stored.view(slot.fingerprint).into_view())
            }
        })
    }

    /// Every placed order, by id, as snapshots and the state hash see it.
    pub(crate) fn entries_sorted(&self) -> Vec<OrderEntry> {
        let mut slots: Vec<OrderSlot> = self
            .slots
            .iter()
            .filter(|slot| slot.failure().is_none())
            .copied()
            .collect();
        slots.sort_unstable_by_key(|slot| slot.id);
        slots
            .iter()
            .map(|slot| self.at(slot.entry as usize).view(slot.fingerprint))
            .collect()
    }

    /// Every failed order id and its code, by id.
    pub(crate) fn failures_sorted(&self) -> Vec<(OrderId, ResultCode)> {
        let mut failures: Vec<(OrderId, ResultCode)> = self
            .slots
            .iter()
            .filter_map(|slot| slot.failure().map(|code| (slot.id, code)))
            .collect();
        failures.sort_unstable_by_key(|(id, _)| *id);
        failures
    }

    /// Every dispatch request, by id.
    pub(crate) fn dispatches_sorted(&self) -> Vec<(DispatchId, DispatchEntry)> {
        let mut dispatches: Vec<(DispatchId, DispatchEntry)> = self
            .slots
            .iter()
            .filter(|slot| slot.failure().is_none())
            .filter_map(|slot| self.at(slot.entry as usize).dispatch())
            .map(|entry| (DispatchId::from(entry.order_id), entry))
            .collect();
        dispatches.sort_unstable_by_key(|(id, _)| *id);
        dispatches
    }

    /// Adds a placed order read from a snapshot (ids checked unique and non-zero).
    pub(crate) fn restore(&mut self, entry: &OrderEntry) {
        assert_eq!(
            entry.order.timestamp.checked_add(entry.order.timeout_ns),
            Some(entry.expires_at),
            "a restored order's expiry is checked when it is read"
        );
        let vacant = self
            .find(entry.order.id)
            .expect_err("restored orders have unique ids");
        let index = self.place(vacant, entry.order, entry.fingerprint);
        let stored = self.restored_mut(index);
        stored.payment_transfer_id = entry.payment_transfer_id;
        stored.closing_transfer_id = entry.closing_transfer_id;
        self.commit();
    }

    /// Adds a dispatch request read from a snapshot to its (restored) order.
    pub(crate) fn restore_dispatch(&mut self, entry: &DispatchEntry) {
        let index = self
            .locate(entry.order_id)
            .expect("a restored request's order is checked when it is read");
        let stored = self.restored_mut(index);
        assert!(stored.dispatch.status.is_none(), "one request per order");
        stored.set_dispatch(entry);
        self.count_dispatch(index);
    }

    /// An entry being restored: part of the state the store starts from, not a change.
    fn restored_mut(&mut self, index: usize) -> &mut StoredOrder {
        assert!(index < self.len);
        let (chunk, offset) = self.position(index);
        &mut self.chunks[chunk][offset]
    }

    /// Position to roll back to.
    pub(crate) fn savepoint(&self) -> usize {
        self.len
    }

    /// Undoes the orders placed after `savepoint`: removes their slots (newest first, which
    /// leaves the slot table as it was, or, if it grew meanwhile, with the same slots) and
    /// truncates their entries.
    pub(crate) fn rollback(&mut self, savepoint: usize) {
        assert!(savepoint <= self.len);
        assert!(
            !self.changed,
            "an order changed in place in a command that failed after writing"
        );
        while self.len > savepoint {
            let index = self.len - 1;
            let (chunk, offset) = self.position(index);
            let stored = self.chunks[chunk].pop().expect("the entry exists");
            assert_eq!(self.chunks[chunk].len(), offset);
            assert_eq!(stored.dispatch.status, None, "only new orders roll back");
            let removed = self.slots.remove(&stored.order.id);
            assert_eq!(removed.map(|slot| slot.entry), Some(index as u64));
            self.len = index;
        }
    }

    /// Whether nothing was placed or changed since the last commit.
    pub(crate) fn is_clean(&self) -> bool {
        self.len == self.len_committed && !self.changed
    }

    /// Forgets what changed: everything written so far stays.
    pub(crate) fn commit(&mut self) {
        self.len_committed = self.len;
        self.changed = false;
    }
}

impl OrderEntry {
    /// The query answer for this order.
    pub(crate) fn into_view(self) -> super::OrderView {
        super::OrderView {
            order: self.order,
            expires_at: self.expires_at,
            payment_transfer_id: self.payment_transfer_id,
            closing_transfer_id: self.closing_transfer_id,
        }
    }
}

// The sizes the module documentation and docs/MEMORY.md quote.
const _: () = assert!(std::mem::size_of::<OrderSlot>() == 32);
const _: () = assert!(std::mem::size_of::<StoredOrder>() == 320);
const _: () = assert!(std::mem::size_of::<DispatchState>() == 32);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::OrderLine;

    fn order(id: u128) -> Order {
        let mut order = Order {
            id: OrderId(id),
            timestamp: 1_000 + id as u64,
            timeout_ns: 50,
            status: OrderStatus::Reserved as u16,
            line_count: 1,
            ..Order::default()
        };
        order.lines[0] = OrderLine {
            sku_id: crate::ids::SkuId(1),
            quantity: 1,
            reserved: 0,
        };
        order
    }

    fn place(store: &mut OrderStore, id: u128) -> usize {
        let vacant = store.find(OrderId(id)).expect_err("a new id");
        store.place(vacant, order(id), id as u64 * 3)
    }

    #[test]
    fn entries_are_found_where_they_were_appended_across_chunks() {
        let mut store = OrderStore::with_capacity(1);
        assert_eq!(store.chunk_entries_first, CHUNK_ENTRIES_MIN);
        for id in 1..=1_000u128 {
            assert_eq!(place(&mut store, id), id as usize - 1);
        }
        // Chunks of 64, 64, 128, 256, 512 entries: none was moved or reallocated.
        let sizes: Vec<usize> = store.chunks.iter().map(Vec::capacity).collect();
        assert_eq!(sizes.len(), 5);
        for (chunk, capacity) in sizes.iter().enumerate() {
            assert!(*capacity >= store.chunk_entries(chunk));
        }
        for id in 1..=1_000u128 {
            let index = store.locate(OrderId(id)).expect("placed");
            assert_eq!(store.at(index).order.id, OrderId(id));
            assert_eq!(store.at(index).expires_at(), 1_050 + id as u64);
        }
        assert_eq!(store.position(63), (0, 63));
        assert_eq!(store.position(64), (1, 0));
        assert_eq!(store.position(128), (2, 0));
        assert_eq!(store.position(255), (2, 127));
        assert_eq!(store.position(256), (3, 0));
        assert_eq!(store.len(), 1_000);
        assert_eq!(store.entries_sorted().len(), 1_000);
    }

    #[test]
    fn a_rollback_removes_the_orders_placed_after_the_savepoint() {
        let mut store = OrderStore::with_capacity(1);
        for id in 1..=50u128 {
            place(&mut store, id);
        }
        store.record_failure(OrderId(900), ResultCode::SoldOut);
        store.commit();
        let before = store.entries_sorted();
        let savepoint = store.savepoint();
        // Past the first chunk's end, so the rollback empties a whole chunk too.
        for id in 51..=200u128 {
            place(&mut store, id);
        }
        assert!(!store.is_clean());
        store.rollback(savepoint);
        store.commit();
        assert!(store.is_clean());
        assert_eq!(store.len(), 50);
        assert_eq!(store.entries_sorted(), before);
        assert_eq!(store.lookup(OrderId(51)), None);
        assert_eq!(store.lookup(OrderId(200)), None);
        assert_eq!(
            store.lookup(OrderId(900)),
            Some(OrderLookup::Failed(ResultCode::SoldOut))
        );
        // The ids are free again and go where the rolled-back ones were.
        assert_eq!(place(&mut store, 200), 50);
        assert_eq!(store.at(50).order.id, OrderId(200));
    }

    #[test]
    fn a_change_in_place_is_seen_until_the_commit() {
        let mut store = OrderStore::with_capacity(4);
        let index = place(&mut store, 1);
        store.commit();
        assert!(store.is_clean());
        store.at_mut(index).order.status = OrderStatus::Paid as u16;
        assert!(
            !store.is_clean(),
            "a failing command must not have written this"
        );
        store.commit();
        assert!(store.is_clean());
    }
}
