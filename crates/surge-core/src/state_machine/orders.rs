//! Orders: place (reserve every line + authorize payment, atomically), pay (capture, sell,
//! create the dispatch request), cancel, expire, refund.
//!
//! Every order action carries the id of the transfer it creates (post, void or refund):
//! that id is the action's idempotency key, so a retried payment is answered `exists` and
//! never captures twice.
//!
//! Placing an order checks every line and the payment before it writes anything, so it
//! cannot fail half-way and needs no undo log (the hot command of a flash sale).

use std::cmp::Reverse;

use super::inventory::UnitsPlan;
use super::ledger::Resolver;
use super::order_store::StoredOrder;
use super::{fail, fingerprint, Outcome, PendingStatus, StateMachine, PREFETCH_DISTANCE};

/// How many commands ahead of the one executing an order action's order entry is
/// prefetched (its slot was, [`PREFETCH_DISTANCE`] ahead).
const ACTION_ENTRY_DISTANCE: usize = 4;

/// How many commands ahead an order action's authorization and accounts are prefetched
/// (its entry was, [`ACTION_ENTRY_DISTANCE`] ahead).
const ACTION_FUNDS_DISTANCE: usize = 2;

const _: () = assert!(ACTION_FUNDS_DISTANCE < ACTION_ENTRY_DISTANCE);
const _: () = assert!(ACTION_ENTRY_DISTANCE < PREFETCH_DISTANCE);
use crate::batch::Operation;
use crate::constants::{TRANSFER_CODE_ORDER_PAYMENT, TRANSFER_CODE_ORDER_REFUND};
use crate::ids::OrderId;
use crate::records::{
    order_action_flags, order_message_kind, transfer_flags, Order, OrderAction, OrderLine,
    OrderStatus, Transfer, ORDER_LINES_MAX,
};
use crate::result::ResultCode;

impl StateMachine {
    /// Hints the cache with the slots and accounts placing `order` touches.
    pub(crate) fn prefetch_order(&self, order: &Order) {
        self.orders.prefetch(order.id);
        self.transfers.map.prefetch(&order.transfer_id.0);
        self.pendings.map.prefetch(&order.transfer_id);
        self.accounts.map.prefetch(&order.buyer_id.0);
        self.accounts.map.prefetch(&order.merchant_id.0);
        let line_count = usize::from(order.line_count);
        for line in order.lines.iter().take(line_count) {
            // SKUs are few and hot; a buyer's count is one of millions.
            let limited = self
                .skus
                .get(&line.sku_id.0)
                .is_some_and(|sku| sku.limit_per_buyer != 0);
            if limited {
                self.buyer_units
                    .map
                    .prefetch(&(line.sku_id, order.buyer_id));
            }
        }
    }

    /// Hints the cache with what the order actions of a batch touch, in three stages, as
    /// each needs what the one before loaded: called (by `apply_events`) for the action
    /// [`PREFETCH_DISTANCE`] commands ahead of the one executing, it prefetches that
    /// action's order slot and transfer slot; reads the (prefetched) slot of the action
    /// [`ACTION_ENTRY_DISTANCE`] ahead and prefetches its order's entry; and reads the
    /// (prefetched) entry of the action [`ACTION_FUNDS_DISTANCE`] ahead and prefetches its
    /// authorization's slot, pending state and accounts. `action` is an element of
    /// `actions`.
    pub(crate) fn prefetch_order_action(&self, actions: &[OrderAction], action: &OrderAction) {
        self.orders.prefetch(action.order_id);
        self.transfers.map.prefetch(&action.transfer_id.0);
        // The action's place in the batch, from its address (never out of the slice: a
        // stray address gives an index `get` refuses).
        let offset_bytes =
            (action as *const OrderAction as usize).wrapping_sub(actions.as_ptr() as usize);
        let index = offset_bytes / std::mem::size_of::<OrderAction>();
        let ahead = |distance: usize| {
            index
                .checked_sub(PREFETCH_DISTANCE - distance)
                .and_then(|earlier| actions.get(earlier))
        };
        if let Some(nearer) = ahead(ACTION_ENTRY_DISTANCE) {
            if let Some(entry_index) = self.orders.locate(nearer.order_id) {
                self.orders.prefetch_entry(entry_index);
            }
        }
        if let Some(nearest) = ahead(ACTION_FUNDS_DISTANCE) {
            if let Some(stored) = self.orders.get(nearest.order_id) {
                let order = &stored.order;
                self.transfers.map.prefetch(&order.transfer_id.0);
                self.pendings.map.prefetch(&order.transfer_id);
                self.accounts.map.prefetch(&order.buyer_id.0);
                self.accounts.map.prefetch(&order.merchant_id.0);
            }
        }
    }

    pub(crate) fn place_order(&mut self, order: &Order, timestamp: u64) -> Outcome {
        if let Some(code) = validate_order(order) {
            return Outcome::Rejected(code);
        }
        let fingerprint = order_fingerprint(order);
        let order_vacant = match self.orders.find(order.id) {
            Ok(existing) => return Outcome::Existing(existing.existing(fingerprint)),
            Err(vacant) => vacant,
        };
        let Some(expires_at) = timestamp.checked_add(order.timeout_ns) else {
            fail!(TimeoutOverflows);
        };
        if self.transfer_id_used(order.transfer_id) || self.order_step_id_taken(order.transfer_id) {
            fail!(TransferIdInUse);
        }
        let first_plan = match self.order_lines_plan(order) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        let authorization = authorization(order);
        // Found once here (the probe above loaded it), so the insert needs no probe of its
        // own; nothing but this command's insert adds a transfer slot before it.
        let transfer_vacant = self
            .transfers
            .map
            .find_slot(&order.transfer_id.0)
            .expect_err("the id is unused");
        self.transfer_vacant = Some((order.transfer_id, transfer_vacant));
        // Checks everything before its first write: a failure here wrote nothing.
        match self.move_funds(&authorization, timestamp, fingerprint, order.id) {
            Outcome::Applied => {}
            other => {
                self.transfer_vacant = None;
                return other;
            }
        }
        // The first line's plan still holds: nothing wrote a SKU or a buyer's count since.
        self.take_order_lines(order, first_plan);
        let placed = Order {
            timestamp,
            status: OrderStatus::Reserved as u16,
            ..*order
        };
        // `order_vacant` is still the id's slot: nothing above inserts an order slot.
        self.orders.place(order_vacant, placed, fingerprint);
        self.order_expiry.push(Reverse((expires_at, order.id)));
        Outcome::Applied
    }

    /// Checks every line of `order` before anything is written; the first line's plan.
    /// The lines name distinct SKUs, so reserving one never changes what another may
    /// reserve, and the payment touches accounts only: the checks give the codes reserving
    /// line by line would.
    pub(crate) fn order_lines_plan(&self, order: &Order) -> Result<UnitsPlan, Outcome> {
        let lines = &order.lines[..usize::from(order.line_count)];
        let mut first_plan = None;
        for line in lines {
            let quantity = u64::from(line.quantity);
            let plan = self.units_plan(line.sku_id, order.buyer_id, quantity)?;
            first_plan = first_plan.or(Some(plan));
        }
        Ok(first_plan.expect("an order has a line"))
    }

    /// Reserves every line of a checked order; `first_plan` (from
    /// [`StateMachine::order_lines_plan`]) must still hold: nothing wrote a SKU or a
    /// buyer's count since. Reserving the first line may take a slot a later line's plan
    /// found vacant, so those plan again.
    pub(crate) fn take_order_lines(&mut self, order: &Order, first_plan: UnitsPlan) {
        let lines = &order.lines[..usize::from(order.line_count)];
        let (first, rest) = lines.split_first().expect("an order has a line");
        self.take_units(
            first.sku_id,
            order.buyer_id,
            u64::from(first.quantity),
            first_plan,
        );
        for line in rest {
            let outcome = self.reserve_units(line.sku_id, order.buyer_id, u64::from(line.quantity));
            assert_eq!(outcome, Outcome::Applied, "the line was checked");
        }
    }

    pub(crate) fn pay_order(&mut self, action: &OrderAction, timestamp: u64) -> Outcome {
        let (index, stored) = match self.unpaid_order_for(action, Operation::PayOrders, timestamp) {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        if self.order_span(stored.order.id).is_some() {
            return self.send_order_action(&stored, action, order_message_kind::PAY);
        }
        self.resolve_authorization(&stored, action, Operation::PayOrders, timestamp);
        for line in stored.lines() {
            self.sell_units(line.sku_id, u64::from(line.quantity));
        }
        let paid = self.orders.at_mut(index);
        paid.order.status = OrderStatus::Paid as u16;
        paid.payment_transfer_id = action.transfer_id;
        self.create_dispatch(index, timestamp);
        Outcome::Applied
    }

    pub(crate) fn cancel_order(&mut self, action: &OrderAction, timestamp: u64) -> Outcome {
        let (index, stored) =
            match self.unpaid_order_for(action, Operation::CancelOrders, timestamp) {
                Ok(found) => found,
                Err(outcome) => return outcome,
            };
        if self.order_span(stored.order.id).is_some() {
            return self.send_order_action(&stored, action, order_message_kind::CANCEL);
        }
        self.resolve_authorization(&stored, action, Operation::CancelOrders, timestamp);
        self.release_order_lines(&stored);
        let cancelled = self.orders.at_mut(index);
        cancelled.order.status = OrderStatus::Cancelled as u16;
        cancelled.closing_transfer_id = action.transfer_id;
        Outcome::Applied
    }

    /// The order of a pay or cancel, which must still be reserved and not due to expire.
    fn unpaid_order_for(
        &self,
        action: &OrderAction,
        operation: Operation,
        timestamp: u64,
    ) -> Result<(usize, StoredOrder), Outcome> {
        let (index, stored) = self.order_for_action(action, operation, 0)?;
        let failed = |code| Err(Outcome::Failed(code));
        match stored.status() {
            OrderStatus::Reserved if stored.expires_at() <= timestamp => {
                failed(ResultCode::OrderExpired)
            }
            OrderStatus::Reserved => Ok((index, stored)),
            OrderStatus::Expired => failed(ResultCode::OrderExpired),
            OrderStatus::Cancelled => failed(ResultCode::OrderCancelled),
            OrderStatus::Paid | OrderStatus::Dispatched | OrderStatus::Refunded => {
                failed(ResultCode::OrderAlreadyPaid)
            }
        }
    }

    /// Posts (pay) or voids (cancel) a live order's authorization under the action's
    /// transfer id; cannot fail once the order is known to be unpaid.
    fn resolve_authorization(
        &mut self,
        stored: &StoredOrder,
        action: &OrderAction,
        operation: Operation,
        timestamp: u64,
    ) {
        let flags = match operation {
            Operation::PayOrders => transfer_flags::POST_PENDING,
            Operation::CancelOrders => transfer_flags::VOID_PENDING,
            _ => unreachable!("only pay and cancel resolve an authorization"),
        };
        let transfer = Transfer {
            id: action.transfer_id,
            pending_id: stored.order.transfer_id,
            flags,
            user_data: stored.order.id.0,
            ..Transfer::default()
        };
        let fingerprint = action_fingerprint(operation, action);
        let resolver = Resolver::Order(stored.order.id);
        let outcome = self.resolve_pending(&transfer, timestamp, fingerprint, resolver);
        assert_eq!(
            outcome,
            Outcome::Applied,
            "a live order's authorization is pending"
        );
    }

    pub(crate) fn refund_order(&mut self, action: &OrderAction, timestamp: u64) -> Outcome {
        let (index, stored) =
            match self.order_for_action(action, Operation::RefundOrders, order_action_flags::ALL) {
                Ok(found) => found,
                Err(outcome) => return outcome,
            };
        match stored.status() {
            OrderStatus::Paid | OrderStatus::Dispatched => {}
            OrderStatus::Refunded => fail!(OrderAlreadyRefunded),
            OrderStatus::Reserved | OrderStatus::Cancelled | OrderStatus::Expired => {
                fail!(OrderNotPaid)
            }
        }
        if self.order_span(stored.order.id).is_some() {
            return self.send_order_action(&stored, action, order_message_kind::REFUND);
        }
        let captured = self.committed_transfer(stored.payment_transfer_id).amount;
        let refund = Transfer {
            id: action.transfer_id,
            debit_account_id: stored.order.merchant_id,
            credit_account_id: stored.order.buyer_id,
            amount: captured,
            ledger: stored.order.ledger,
            code: TRANSFER_CODE_ORDER_REFUND,
            user_data: stored.order.id.0,
            ..Transfer::default()
        };
        let fingerprint = action_fingerprint(Operation::RefundOrders, action);
        match self.move_funds(&refund, timestamp, fingerprint, OrderId::ZERO) {
            Outcome::Applied => {}
            other => return other, // e.g. the merchant's balance cannot cover it.
        }
        if action.flags & order_action_flags::RESTOCK != 0 {
            for line in stored.lines() {
                let quantity = u64::from(line.quantity);
                self.restock_units(line.sku_id, stored.order.buyer_id, quantity);
            }
        }
        self.cancel_dispatch(index);
        let refunded = self.orders.at_mut(index);
        refunded.order.status = OrderStatus::Refunded as u16;
        refunded.closing_transfer_id = action.transfer_id;
        Outcome::Applied
    }

    /// Validates an order action and finds its order (its entry's index and a copy);
    /// `Err` is the command's outcome.
    fn order_for_action(
        &self,
        action: &OrderAction,
        operation: Operation,
        flags_allowed: u32,
    ) -> Result<(usize, StoredOrder), Outcome> {
        if action.reserved != [0; 28] {
            return Err(Outcome::Rejected(ResultCode::ReservedFieldNotZero));
        }
        if action.flags & !flags_allowed != 0 {
            return Err(Outcome::Rejected(ResultCode::ReservedFlag));
        }
        if action.order_id.is_zero() || action.transfer_id.is_zero() {
            return Err(Outcome::Rejected(ResultCode::IdMustNotBeZero));
        }
        // An order spanning shards answers for its own steps first: their transfers live
        // on other shards, or here under another command's fingerprint. (With none on this
        // shard, the hot path, no extra probe.)
        if self.order_saga.is_active() {
            if let Some(stored) = self.orders.get(action.order_id) {
                if let Some(answer) = self.spanning_action_answer(stored, action, operation) {
                    return Err(answer);
                }
            }
        }
        let fingerprint = action_fingerprint(operation, action);
        if let Some(existing) = self.transfer_existing(action.transfer_id, fingerprint) {
            return Err(existing);
        }
        let Some(index) = self.orders.locate(action.order_id) else {
            return Err(Outcome::Failed(ResultCode::OrderNotFound));
        };
        Ok((index, *self.orders.at(index)))
    }

    /// Releases the units of an order's lines held on this shard (all of its lines,
    /// unless they span shards).
    pub(crate) fn release_order_lines(&mut self, stored: &StoredOrder) {
        let local = self.local_lines(&stored.order);
        let local = local.as_ref().unwrap_or(&stored.order);
        for line in local.lines.iter().take(usize::from(local.line_count)) {
            self.release_units(line.sku_id, stored.order.buyer_id, u64::from(line.quantity));
        }
    }

    /// Remembers that placing `order_id` failed with `code`.
    pub(crate) fn record_order_failure(&mut self, order_id: OrderId, code: ResultCode) {
        self.orders.record_failure(order_id, code);
    }

    /// Expires an unpaid order whose time came (sweep only): voids its authorization and
    /// returns its units.
    pub(crate) fn expire_order(&mut self, order_id: OrderId, due: u64) {
        let Some(index) = self.orders.locate(order_id) else {
            return; // Rolled back after the heap entry was pushed.
        };
        let stored = *self.orders.at(index);
        if stored.status() != OrderStatus::Reserved || stored.expires_at() != due {
            return;
        }
        if let Some(span) = self.order_span(order_id) {
            // With a step in flight, the step's outcome expires it.
            if span.in_flight.is_zero() {
                self.expire_spanning_order(index);
            }
            return;
        }
        let state = self
            .pending_state(stored.order.transfer_id)
            .expect("the order's authorization");
        assert_eq!(state.status, PendingStatus::Pending);
        self.expire_pending_now(stored.order.transfer_id, state);
        self.release_order_lines(&stored);
        self.orders.at_mut(index).order.status = OrderStatus::Expired as u16;
    }
}

/// An order's authorization: the pending transfer holding its amount, owned by the order
/// (no timeout of its own: the order's expiry governs).
pub(crate) fn authorization(order: &Order) -> Transfer {
    Transfer {
        id: order.transfer_id,
        debit_account_id: order.buyer_id,
        credit_account_id: order.merchant_id,
        amount: order.amount,
        ledger: order.ledger,
        code: TRANSFER_CODE_ORDER_PAYMENT,
        flags: transfer_flags::PENDING,
        user_data: order.id.0,
        ..Transfer::default()
    }
}

/// The secret xxh3 derives from the seed of [`fingerprint`] for placing orders, derived once
/// at compile time instead of for every order.
const PLACE_ORDERS_SECRET: [u8; 192] =
    xxhash_rust::const_xxh3::const_custom_default_secret(Operation::PlaceOrders as u64);

/// `fingerprint(Operation::PlaceOrders, order bytes)`, the same number (a test checks it):
/// for inputs longer than 240 bytes, xxh3 with a seed is xxh3 with the secret derived from
/// that seed, and an order is 256 bytes.
pub(crate) fn order_fingerprint(order: &Order) -> u64 {
    const _: () = assert!(std::mem::size_of::<Order>() > 240);
    xxhash_rust::xxh3::xxh3_64_with_secret(bytemuck::bytes_of(order), &PLACE_ORDERS_SECRET)
}

pub(crate) fn action_fingerprint(operation: Operation, action: &OrderAction) -> u64 {
    fingerprint(operation as u8, bytemuck::bytes_of(action))
}

/// Checks an order from its fields alone; `None` if well formed.
pub(crate) fn validate_order(order: &Order) -> Option<ResultCode> {
    use ResultCode as R;
    if order.timestamp != 0 {
        return Some(R::TimestampMustBeZero);
    }
    if order.status != 0 || order.reserved != [0; 14] {
        return Some(R::ReservedFieldNotZero);
    }
    if order.flags != 0 {
        return Some(R::ReservedFlag);
    }
    if order.id.is_zero() || order.transfer_id.is_zero() {
        return Some(R::IdMustNotBeZero);
    }
    if order.buyer_id.is_zero() {
        return Some(R::BuyerIdMustNotBeZero);
    }
    if order.merchant_id.is_zero() {
        return Some(R::CreditAccountIdMustNotBeZero);
    }
    if order.buyer_id == order.merchant_id {
        return Some(R::BuyerMustNotBeMerchant);
    }
    if order.amount == 0 {
        return Some(R::AmountMustNotBeZero);
    }
    if order.timeout_ns == 0 {
        return Some(R::TimeoutMustNotBeZero);
    }
    if order.ledger == 0 {
        return Some(R::LedgerMustNotBeZero);
    }
    let line_count = usize::from(order.line_count);
    if line_count == 0 || line_count > ORDER_LINES_MAX {
        return Some(R::OrderLinesInvalid);
    }
    if order.lines[line_count..]
        .iter()
        .any(|line| *line != OrderLine::default())
    {
        return Some(R::OrderLinesInvalid);
    }
    let lines = &order.lines[..line_count];
    for (index, line) in lines.iter().enumerate() {
        if line.sku_id.is_zero() {
            return Some(R::SkuIdMustNotBeZero);
        }
        if line.quantity == 0 {
            return Some(R::QuantityMustNotBeZero);
        }
        if line.reserved != 0 {
            return Some(R::ReservedFieldNotZero);
        }
        if lines[..index]
            .iter()
            .any(|earlier| earlier.sku_id == line.sku_id)
        {
            return Some(R::DuplicateSkuInOrder);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_fingerprint_is_the_seeded_one() {
        let mut state = 7u64;
        let mut next = || {
            state = super::super::table::mix64(state.wrapping_add(1));
            state
        };
        for _ in 0..1_000 {
            let mut bytes = [0u8; std::mem::size_of::<Order>()];
            for chunk in bytes.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            let order: Order = bytemuck::pod_read_unaligned(&bytes);
            assert_eq!(
                order_fingerprint(&order),
                fingerprint(Operation::PlaceOrders as u8, &bytes)
            );
        }
        let order = Order::default();
        assert_eq!(
            order_fingerprint(&order),
            fingerprint(Operation::PlaceOrders as u8, bytemuck::bytes_of(&order))
        );
    }
}
