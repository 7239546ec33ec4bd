//! Orders: place (reserve every line + authorize payment, atomically), pay (capture, sell,
//! create the dispatch request), cancel, expire, refund.
//!
//! Every order action carries the id of the transfer it creates (post, void or refund):
//! that id is the action's idempotency key, so a retried payment is answered `exists` and
//! never captures twice.

use std::cmp::Reverse;

use super::ledger::Resolver;
use super::{fail, fingerprint, OrderEntry, Outcome, PendingStatus, StateMachine};
use crate::batch::Operation;
use crate::constants::{TRANSFER_CODE_ORDER_PAYMENT, TRANSFER_CODE_ORDER_REFUND};
use crate::ids::{OrderId, TransferId};
use crate::records::{
    order_action_flags, transfer_flags, Order, OrderAction, OrderLine, OrderStatus, Transfer,
    ORDER_LINES_MAX,
};
use crate::result::ResultCode;

impl StateMachine {
    pub(crate) fn place_order(&mut self, order: &Order, timestamp: u64) -> Outcome {
        if let Some(code) = validate_order(order) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(Operation::PlaceOrders as u8, bytemuck::bytes_of(order));
        if self.orders_failed.contains(&order.id) {
            return Outcome::Existing(ResultCode::IdAlreadyFailed);
        }
        if let Some(existing) = self.orders.get(&order.id) {
            return Outcome::Existing(if existing.fingerprint == fingerprint {
                ResultCode::Exists
            } else {
                ResultCode::ExistsWithDifferentFields
            });
        }
        let Some(expires_at) = timestamp.checked_add(order.timeout_ns) else {
            fail!(TimeoutOverflows);
        };
        if self.transfer_id_used(order.transfer_id) {
            fail!(TransferIdInUse);
        }
        for line in &order.lines[..usize::from(order.line_count)] {
            match self.reserve_units(line.sku_id, order.buyer_id, u64::from(line.quantity)) {
                Outcome::Applied => {}
                other => return other, // The caller rolls back the lines already reserved.
            }
        }
        let authorization = Transfer {
            id: order.transfer_id,
            debit_account_id: order.buyer_id,
            credit_account_id: order.merchant_id,
            amount: order.amount,
            ledger: order.ledger,
            code: TRANSFER_CODE_ORDER_PAYMENT,
            flags: transfer_flags::PENDING,
            user_data: order.id.0,
            ..Transfer::default()
        };
        match self.move_funds(&authorization, timestamp, fingerprint, order.id) {
            Outcome::Applied => {}
            other => return other,
        }
        let entry = OrderEntry {
            order: Order {
                timestamp,
                status: OrderStatus::Reserved as u16,
                ..*order
            },
            fingerprint,
            expires_at,
            payment_transfer_id: TransferId::ZERO,
            closing_transfer_id: TransferId::ZERO,
        };
        self.orders.insert(order.id, entry);
        self.order_expiry.push(Reverse((expires_at, order.id)));
        Outcome::Applied
    }

    pub(crate) fn pay_order(&mut self, action: &OrderAction, timestamp: u64) -> Outcome {
        let entry = match self.unpaid_order_for(action, Operation::PayOrders, timestamp) {
            Ok(entry) => entry,
            Err(outcome) => return outcome,
        };
        self.resolve_authorization(&entry, action, Operation::PayOrders, timestamp);
        for line in entry.lines() {
            self.sell_units(line.sku_id, u64::from(line.quantity));
        }
        self.set_order(&entry, OrderStatus::Paid, |stored| {
            stored.payment_transfer_id = action.transfer_id;
        });
        self.create_dispatch(entry.order.id, timestamp);
        Outcome::Applied
    }

    pub(crate) fn cancel_order(&mut self, action: &OrderAction, timestamp: u64) -> Outcome {
        let entry = match self.unpaid_order_for(action, Operation::CancelOrders, timestamp) {
            Ok(entry) => entry,
            Err(outcome) => return outcome,
        };
        self.resolve_authorization(&entry, action, Operation::CancelOrders, timestamp);
        self.release_order_lines(&entry);
        self.set_order(&entry, OrderStatus::Cancelled, |stored| {
            stored.closing_transfer_id = action.transfer_id;
        });
        Outcome::Applied
    }

    /// The order of a pay or cancel, which must still be reserved and not due to expire.
    fn unpaid_order_for(
        &self,
        action: &OrderAction,
        operation: Operation,
        timestamp: u64,
    ) -> Result<OrderEntry, Outcome> {
        let entry = self.order_for_action(action, operation, 0)?;
        let failed = |code| Err(Outcome::Failed(code));
        match entry.status() {
            OrderStatus::Reserved if entry.expires_at <= timestamp => {
                failed(ResultCode::OrderExpired)
            }
            OrderStatus::Reserved => Ok(entry),
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
        entry: &OrderEntry,
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
            pending_id: entry.order.transfer_id,
            flags,
            user_data: entry.order.id.0,
            ..Transfer::default()
        };
        let fingerprint = action_fingerprint(operation, action);
        let resolver = Resolver::Order(entry.order.id);
        let outcome = self.resolve_pending(&transfer, timestamp, fingerprint, resolver);
        assert_eq!(
            outcome,
            Outcome::Applied,
            "a live order's authorization is pending"
        );
    }

    pub(crate) fn refund_order(&mut self, action: &OrderAction, timestamp: u64) -> Outcome {
        let entry =
            match self.order_for_action(action, Operation::RefundOrders, order_action_flags::ALL) {
                Ok(entry) => entry,
                Err(outcome) => return outcome,
            };
        match entry.status() {
            OrderStatus::Paid | OrderStatus::Dispatched => {}
            OrderStatus::Refunded => fail!(OrderAlreadyRefunded),
            OrderStatus::Reserved | OrderStatus::Cancelled | OrderStatus::Expired => {
                fail!(OrderNotPaid)
            }
        }
        let captured = self.committed_transfer(entry.payment_transfer_id).amount;
        let refund = Transfer {
            id: action.transfer_id,
            debit_account_id: entry.order.merchant_id,
            credit_account_id: entry.order.buyer_id,
            amount: captured,
            ledger: entry.order.ledger,
            code: TRANSFER_CODE_ORDER_REFUND,
            user_data: entry.order.id.0,
            ..Transfer::default()
        };
        let fingerprint = action_fingerprint(Operation::RefundOrders, action);
        match self.move_funds(&refund, timestamp, fingerprint, OrderId::ZERO) {
            Outcome::Applied => {}
            other => return other, // e.g. the merchant's balance cannot cover it.
        }
        if action.flags & order_action_flags::RESTOCK != 0 {
            for line in entry.lines() {
                self.restock_units(line.sku_id, entry.order.buyer_id, u64::from(line.quantity));
            }
        }
        self.cancel_dispatch(entry.order.id);
        self.set_order(&entry, OrderStatus::Refunded, |stored| {
            stored.closing_transfer_id = action.transfer_id;
        });
        Outcome::Applied
    }

    /// Validates an order action and finds its order; `Err` is the command's outcome.
    fn order_for_action(
        &self,
        action: &OrderAction,
        operation: Operation,
        flags_allowed: u32,
    ) -> Result<OrderEntry, Outcome> {
        if action.reserved != [0; 28] {
            return Err(Outcome::Rejected(ResultCode::ReservedFieldNotZero));
        }
        if action.flags & !flags_allowed != 0 {
            return Err(Outcome::Rejected(ResultCode::ReservedFlag));
        }
        if action.order_id.is_zero() || action.transfer_id.is_zero() {
            return Err(Outcome::Rejected(ResultCode::IdMustNotBeZero));
        }
        let fingerprint = action_fingerprint(operation, action);
        if let Some(existing) = self.transfer_existing(action.transfer_id, fingerprint) {
            return Err(existing);
        }
        match self.orders.get(&action.order_id) {
            Some(entry) => Ok(*entry),
            None => Err(Outcome::Failed(ResultCode::OrderNotFound)),
        }
    }

    fn set_order(
        &mut self,
        entry: &OrderEntry,
        status: OrderStatus,
        update: impl FnOnce(&mut OrderEntry),
    ) {
        let stored = self
            .orders
            .get_mut(&entry.order.id)
            .expect("the order exists");
        stored.order.status = status as u16;
        update(stored);
    }

    fn release_order_lines(&mut self, entry: &OrderEntry) {
        for line in entry.lines() {
            self.release_units(line.sku_id, entry.order.buyer_id, u64::from(line.quantity));
        }
    }

    /// Remembers that placing `order_id` failed with `code`.
    pub(crate) fn record_order_failure(&mut self, order_id: OrderId, code: ResultCode) {
        assert!(!code.is_success());
        assert!(
            !self.orders.contains(&order_id),
            "only new ids fail on the state"
        );
        self.orders_failed.insert(order_id, code);
    }

    /// Expires an unpaid order whose time came (sweep only): voids its authorization and
    /// returns its units.
    pub(crate) fn expire_order(&mut self, order_id: OrderId, due: u64) {
        let Some(entry) = self.orders.get(&order_id).copied() else {
            return; // Rolled back after the heap entry was pushed.
        };
        if entry.status() != OrderStatus::Reserved || entry.expires_at != due {
            return;
        }
        let state = self
            .pending_state(entry.order.transfer_id)
            .expect("the order's authorization");
        assert_eq!(state.status, PendingStatus::Pending);
        self.expire_pending_now(entry.order.transfer_id, state);
        self.release_order_lines(&entry);
        self.set_order(&entry, OrderStatus::Expired, |_| {});
    }
}

fn action_fingerprint(operation: Operation, action: &OrderAction) -> u64 {
    fingerprint(operation as u8, bytemuck::bytes_of(action))
}

/// Checks an order from its fields alone; `None` if well formed.
fn validate_order(order: &Order) -> Option<ResultCode> {
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
