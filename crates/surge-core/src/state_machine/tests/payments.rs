//! Paying, cancelling and expiring placed orders: the capture, the void, the release of
//! units, the timing of expiry, and every code these actions can fail with.

use super::fixtures::*;
use super::harness::{Harness, BUYER_FUNDS};
use super::orders::{shop_with_order, PRICE};
use crate::batch::Batch;
use crate::ids::{DispatchId, TransferId};
use crate::records::{order_action_flags, OrderAction, OrderStatus};
use crate::result::ResultCode as R;
use crate::state_machine::{PendingStatus, TransferLookup};

#[test]
fn paying_captures_the_funds_sells_the_units_and_requests_dispatch() {
    let (mut h, _) = shop_with_order();
    let paid_at = h.now();
    assert_eq!(h.pay(action(1, 501)), R::Ok);
    assert_eq!(h.order_status(1), OrderStatus::Paid);
    assert_eq!(h.order(1).payment_transfer_id, TransferId(501));
    assert_eq!(h.balances(BUYER), (0, PRICE, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, PRICE));
    assert_eq!(h.units(SKU_A), (8, 0, 2));
    assert_eq!(h.units(SKU_B), (2, 0, 1));
    assert_eq!(
        h.sm.buyer_units(SKU_B, BUYER),
        1,
        "bought units count towards the limit"
    );
    assert_eq!(h.committed(500).1, Some(PendingStatus::Posted));
    let (capture, _) = h.committed(501);
    assert_eq!(
        (capture.pending_id, capture.amount, capture.timestamp),
        (TransferId(500), PRICE, paid_at)
    );
    let feed = h.sm.dispatch_feed(0, 10);
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].id, DispatchId(1));
    assert_eq!(feed[0].created_at, paid_at);
}

#[test]
fn a_retried_payment_is_exists_and_captures_once() {
    let (mut h, _) = shop_with_order();
    assert_eq!(h.pay(action(1, 501)), R::Ok);
    let before = h.snapshot();
    assert_eq!(h.pay(action(1, 501)), R::Exists);
    assert_eq!(
        h.apply(Batch::PayOrders(&[action(1, 501), action(1, 501)])),
        [R::Exists; 2]
    );
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.sm.dispatch_feed(0, 10).len(), 1, "one dispatch request");
}

#[test]
fn paying_twice_with_another_transfer_id_is_refused() {
    let (mut h, _) = shop_with_order();
    let batch = [action(1, 501), action(1, 502)];
    assert_eq!(
        h.apply(Batch::PayOrders(&batch)),
        [R::Ok, R::OrderAlreadyPaid]
    );
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, PRICE));
    let failed = Some(TransferLookup::Failed(R::OrderAlreadyPaid));
    assert_eq!(h.sm.transfer(TransferId(502)), failed);
    assert_eq!(h.pay(action(1, 502)), R::IdAlreadyFailed);
    assert_eq!(h.cancel(action(1, 503)), R::OrderAlreadyPaid);
}

#[test]
fn paying_an_unknown_order_fails() {
    let mut h = Harness::shop();
    assert_eq!(h.pay(action(7, 501)), R::OrderNotFound);
    assert_eq!(h.cancel(action(7, 502)), R::OrderNotFound);
    assert_eq!(
        h.sm.transfer(TransferId(501)),
        Some(TransferLookup::Failed(R::OrderNotFound))
    );
    // An order whose placement failed is not an order either.
    assert_eq!(h.place(order(8, 503, PRICE, &[(SKU_A, 99)])), R::SoldOut);
    assert_eq!(h.pay(action(8, 504)), R::OrderNotFound);
}

#[test]
fn malformed_order_actions_are_rejected() {
    let (mut h, _) = shop_with_order();
    let mut reserved = action(1, 501);
    reserved.reserved[27] = 1;
    let restock = OrderAction {
        flags: order_action_flags::RESTOCK,
        ..action(1, 501)
    };
    let cases = [
        (reserved, R::ReservedFieldNotZero),
        (restock, R::ReservedFlag), // Only a refund may restock.
        (
            OrderAction {
                flags: 1 << 5,
                ..action(1, 501)
            },
            R::ReservedFlag,
        ),
        (action(0, 501), R::IdMustNotBeZero),
        (action(1, 0), R::IdMustNotBeZero),
    ];
    let before = h.snapshot();
    for (action, expected) in cases {
        assert_eq!(h.pay(action), expected, "pay {action:?}");
        assert_eq!(h.cancel(action), expected, "cancel {action:?}");
    }
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.sm.transfer(TransferId(501)), None);
}

#[test]
fn an_action_reusing_a_transfer_id_gets_that_id_s_answer() {
    let (mut h, _) = shop_with_order();
    let before = h.snapshot();
    // The id of an unrelated transfer, and the id of the order's own authorization.
    assert_eq!(h.pay(action(1, 9_001)), R::ExistsWithDifferentFields);
    assert_eq!(h.pay(action(1, 500)), R::ExistsWithDifferentFields);
    assert_eq!(
        h.create_transfer(transfer(10, BUYER, MERCHANT, 5_000)),
        R::ExceedsCredits
    );
    assert_eq!(h.pay(action(1, 10)), R::IdAlreadyFailed);
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.order_status(1), OrderStatus::Reserved);
}

#[test]
fn cancelling_voids_the_hold_and_returns_the_units() {
    let (mut h, _) = shop_with_order();
    assert_eq!(h.cancel(action(1, 501)), R::Ok);
    assert_eq!(h.order_status(1), OrderStatus::Cancelled);
    assert_eq!(h.order(1).closing_transfer_id, TransferId(501));
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 0));
    assert_eq!(h.units(SKU_A), (10, 0, 0));
    assert_eq!(h.units(SKU_B), (3, 0, 0));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 0);
    assert_eq!(h.committed(500).1, Some(PendingStatus::Voided));
    let before = h.snapshot();
    assert_eq!(h.cancel(action(1, 501)), R::Exists);
    assert_eq!(h.cancel(action(1, 502)), R::OrderCancelled);
    assert_eq!(h.pay(action(1, 503)), R::OrderCancelled);
    assert_eq!(h.refund(action(1, 504)), R::OrderNotPaid);
    assert_eq!(h.snapshot(), before);
    // The payment id of a cancel retry answers for the cancel, never as a payment.
    assert_eq!(h.pay(action(1, 501)), R::ExistsWithDifferentFields);
}

#[test]
fn an_unpaid_order_expires_and_releases_its_hold_and_units() {
    let (mut h, t) = shop_with_order();
    let due = t + ORDER_TIMEOUT_NS;
    h.pulse_at(due - 1);
    assert_eq!(h.order_status(1), OrderStatus::Reserved);
    h.pulse_at(due);
    assert_eq!(h.order_status(1), OrderStatus::Expired);
    assert_eq!(h.committed(500).1, Some(PendingStatus::Expired));
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 0));
    assert_eq!(h.units(SKU_A), (10, 0, 0));
    assert_eq!(h.units(SKU_B), (3, 0, 0));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 0);
    assert_eq!(h.pay(action(1, 501)), R::OrderExpired);
    assert_eq!(h.cancel(action(1, 502)), R::OrderExpired);
    assert_eq!(h.refund(action(1, 503)), R::OrderNotPaid);
    assert_eq!(
        h.sm.transfer(TransferId(501)),
        Some(TransferLookup::Failed(R::OrderExpired))
    );
    assert_eq!(h.sm.dispatch_feed(0, 10), []);
}

#[test]
fn a_payment_timestamped_at_the_expiry_is_refused_before_the_sweep() {
    let (mut h, t) = shop_with_order();
    let due = t + ORDER_TIMEOUT_NS;
    // The batch starts one ns before the order is due, so the sweep leaves it; the payment
    // is its second command, timestamped exactly at the due time.
    let batch = [action(2, 501), action(1, 502)];
    let results = h.apply_at(due - 1, Batch::PayOrders(&batch));
    assert_eq!(results, [R::OrderNotFound, R::OrderExpired]);
    assert_eq!(
        h.order_status(1),
        OrderStatus::Reserved,
        "expired by the next sweep"
    );
    assert_eq!(h.balances(MERCHANT), (0, 0, PRICE, 0));
    let batch = [action(1, 503)];
    assert_eq!(h.apply(Batch::CancelOrders(&batch)), [R::OrderExpired]);
    assert_eq!(h.order_status(1), OrderStatus::Expired);
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 0));
}

#[test]
fn a_cancel_timestamped_at_the_expiry_is_refused_before_the_sweep() {
    let (mut h, t) = shop_with_order();
    let batch = [action(2, 501), action(1, 502)];
    let results = h.apply_at(t + ORDER_TIMEOUT_NS - 1, Batch::CancelOrders(&batch));
    assert_eq!(results, [R::OrderNotFound, R::OrderExpired]);
    assert_eq!(h.order_status(1), OrderStatus::Reserved);
}

#[test]
fn a_payment_one_ns_before_the_expiry_is_in_time_and_the_order_never_expires() {
    let (mut h, t) = shop_with_order();
    let due = t + ORDER_TIMEOUT_NS;
    assert_eq!(
        h.apply_at(due - 1, Batch::PayOrders(&[action(1, 501)])),
        [R::Ok]
    );
    h.pulse_at(due + ORDER_TIMEOUT_NS);
    assert_eq!(h.order_status(1), OrderStatus::Paid);
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, PRICE));
}

#[test]
fn an_expired_order_frees_the_buyer_s_limit() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(h.place(order(1, 500, 10, &[(SKU_B, 2)])), R::Ok);
    assert_eq!(h.place(order(2, 501, 10, &[(SKU_B, 1)])), R::LimitReached);
    h.pulse_at(t + ORDER_TIMEOUT_NS);
    assert_eq!(h.place(order(3, 502, 10, &[(SKU_B, 2)])), R::Ok);
}
