//! Refunds of paid orders: money back to the buyer, units back to stock only with
//! `RESTOCK`, the dispatch request withdrawn, and every code a refund can fail with.

use super::fixtures::*;
use super::harness::{Harness, BUYER_FUNDS};
use crate::constants::TRANSFER_CODE_ORDER_REFUND;
use crate::ids::{AccountId, DispatchId, TransferId};
use crate::records::{order_action_flags, Order, OrderAction, OrderStatus, Transfer};
use crate::result::ResultCode as R;
use crate::state_machine::{DispatchStatus, TransferLookup};

/// What the fixture order costs.
const PRICE: u64 = 300;

/// A shop with order 1 (2 × SKU A, 2 × SKU B) placed under transfer 500 and paid by 501.
fn shop_with_paid_order() -> Harness {
    let mut h = Harness::shop();
    assert_eq!(
        h.place(order(1, 500, PRICE, &[(SKU_A, 2), (SKU_B, 2)])),
        R::Ok
    );
    assert_eq!(h.pay(action(1, 501)), R::Ok);
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 2);
    h
}

fn restock(order: u128, transfer_id: u128) -> OrderAction {
    OrderAction {
        flags: order_action_flags::RESTOCK,
        ..action(order, transfer_id)
    }
}

#[test]
fn a_refund_returns_the_money_and_leaves_the_units_sold() {
    let mut h = shop_with_paid_order();
    let t = h.now();
    assert_eq!(h.refund(action(1, 502)), R::Ok);
    assert_eq!(h.order_status(1), OrderStatus::Refunded);
    assert_eq!(h.order(1).closing_transfer_id, TransferId(502));
    assert_eq!(h.order(1).payment_transfer_id, TransferId(501));
    assert_eq!(h.balances(BUYER), (0, PRICE, 0, BUYER_FUNDS + PRICE));
    assert_eq!(h.balances(MERCHANT), (0, PRICE, 0, PRICE));
    // Without RESTOCK the goods are considered gone: units stay sold and still count
    // towards the buyer's limit.
    assert_eq!(h.units(SKU_A), (8, 0, 2));
    assert_eq!(h.units(SKU_B), (1, 0, 2));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 2);
    let expected = Transfer {
        id: TransferId(502),
        debit_account_id: MERCHANT,
        credit_account_id: BUYER,
        user_data: 1,
        amount: PRICE,
        ledger: LEDGER,
        code: TRANSFER_CODE_ORDER_REFUND,
        timestamp: t,
        ..Transfer::default()
    };
    assert_eq!(h.committed(502), (expected, None));
}

#[test]
fn a_refund_with_restock_returns_the_units_and_frees_the_limit() {
    let mut h = shop_with_paid_order();
    assert_eq!(h.refund(restock(1, 502)), R::Ok);
    assert_eq!(h.balances(BUYER), (0, PRICE, 0, BUYER_FUNDS + PRICE));
    assert_eq!(h.units(SKU_A), (10, 0, 0));
    assert_eq!(h.units(SKU_B), (3, 0, 0));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 0);
    assert_eq!(h.place(order(2, 503, 10, &[(SKU_B, 2)])), R::Ok);
}

#[test]
fn a_retried_refund_is_exists_and_refunds_once() {
    let mut h = shop_with_paid_order();
    assert_eq!(h.refund(restock(1, 502)), R::Ok);
    let before = h.snapshot();
    assert_eq!(h.refund(restock(1, 502)), R::Exists);
    // The flags are part of the action: the same id without RESTOCK is another command.
    assert_eq!(h.refund(action(1, 502)), R::ExistsWithDifferentFields);
    assert_eq!(h.refund(action(1, 503)), R::OrderAlreadyRefunded);
    assert_eq!(h.pay(action(1, 504)), R::OrderAlreadyPaid);
    assert_eq!(h.cancel(action(1, 505)), R::OrderAlreadyPaid);
    assert_eq!(h.snapshot(), before);
    let failed = Some(TransferLookup::Failed(R::OrderAlreadyRefunded));
    assert_eq!(h.sm.transfer(TransferId(503)), failed);
}

#[test]
fn only_a_paid_order_can_be_refunded() {
    let mut h = Harness::shop();
    assert_eq!(h.refund(action(1, 502)), R::OrderNotFound);
    assert_eq!(h.place(order(2, 500, PRICE, &[(SKU_A, 1)])), R::Ok);
    assert_eq!(h.refund(action(2, 503)), R::OrderNotPaid);
    assert_eq!(h.refund(restock(2, 504)), R::OrderNotPaid);
    assert_eq!(h.order_status(2), OrderStatus::Reserved);
    assert_eq!(h.balances(BUYER), (PRICE, 0, 0, BUYER_FUNDS));
}

#[test]
fn malformed_refunds_are_rejected() {
    let mut h = shop_with_paid_order();
    let before = h.snapshot();
    let mut reserved = action(1, 502);
    reserved.reserved[0] = 1;
    let cases = [
        (reserved, R::ReservedFieldNotZero),
        (
            OrderAction {
                flags: 1 << 1,
                ..action(1, 502)
            },
            R::ReservedFlag,
        ),
        (action(0, 502), R::IdMustNotBeZero),
        (action(1, 0), R::IdMustNotBeZero),
    ];
    for (action, expected) in cases {
        assert_eq!(h.refund(action), expected, "{action:?}");
    }
    assert_eq!(h.snapshot(), before);
}

#[test]
fn a_refund_fails_when_a_constrained_merchant_cannot_cover_it() {
    let mut h = Harness::shop();
    let merchant = wallet(AccountId(45));
    assert_eq!(h.create_account(merchant), R::Ok);
    let placed = Order {
        merchant_id: merchant.id,
        ..order(1, 500, PRICE, &[(SKU_A, 1)])
    };
    assert_eq!(h.place(placed), R::Ok);
    assert_eq!(h.pay(action(1, 501)), R::Ok);
    // The merchant pays its takings out, so it holds nothing to refund from.
    assert_eq!(
        h.create_transfer(transfer(10, merchant.id, BANK, PRICE)),
        R::Ok
    );
    let before = h.snapshot();
    assert_eq!(h.refund(restock(1, 502)), R::ExceedsCredits);
    assert_eq!(
        h.snapshot(),
        before,
        "no money, no units, no dispatch change"
    );
    assert_eq!(h.order_status(1), OrderStatus::Paid);
    assert_eq!(
        h.sm.dispatch(DispatchId(1)).map(|d| d.status),
        Some(DispatchStatus::Pending)
    );
    assert_eq!(
        h.sm.transfer(TransferId(502)),
        Some(TransferLookup::Failed(R::ExceedsCredits))
    );
    // Once topped up, a refund with a new id goes through; the failed id stays failed.
    assert_eq!(
        h.create_transfer(transfer(11, BANK, merchant.id, PRICE)),
        R::Ok
    );
    assert_eq!(h.refund(restock(1, 502)), R::IdAlreadyFailed);
    assert_eq!(h.refund(restock(1, 503)), R::Ok);
}

#[test]
fn refunding_before_dispatch_withdraws_the_request() {
    let mut h = shop_with_paid_order();
    assert_eq!(h.sm.dispatch_feed(0, 10).len(), 1);
    assert_eq!(h.refund(action(1, 502)), R::Ok);
    assert_eq!(h.sm.dispatch_feed(0, 10), []);
    assert_eq!(
        h.sm.dispatch(DispatchId(1)).map(|d| d.status),
        Some(DispatchStatus::Cancelled)
    );
    assert_eq!(h.ack(ack(1)), R::DispatchCancelled);
    assert_eq!(h.order_status(1), OrderStatus::Refunded);
}

#[test]
fn a_dispatched_order_can_still_be_refunded() {
    let mut h = shop_with_paid_order();
    assert_eq!(h.ack(ack(1)), R::Ok);
    assert_eq!(h.order_status(1), OrderStatus::Dispatched);
    assert_eq!(h.refund(restock(1, 502)), R::Ok);
    assert_eq!(h.order_status(1), OrderStatus::Refunded);
    assert_eq!(h.balances(MERCHANT), (0, PRICE, 0, PRICE));
    // Logistics already took it: the request stays acknowledged, a repeat ack is a retry.
    let status = h.sm.dispatch(DispatchId(1)).map(|d| d.status);
    assert_eq!(status, Some(DispatchStatus::Acknowledged));
    assert_eq!(h.ack(ack(1)), R::Exists);
}
