//! The logistics outbox: a request per paid order, read from a cursor, acknowledged once,
//! redelivered under a new sequence while unacknowledged, withdrawn by a refund.

use super::fixtures::*;
use super::harness::Harness;
use crate::batch::Batch;
use crate::ids::{DispatchId, OrderId};
use crate::records::{DispatchAck, OrderLine, OrderStatus};
use crate::result::ResultCode as R;
use crate::state_machine::{Config, DispatchRequest, DispatchStatus};

/// Redelivery period of the tests that exercise redelivery.
const REDELIVERY_NS: u64 = 10_000;

/// A shop with orders `1..=count` placed (one unit of SKU A each) but not paid.
fn shop_with_orders(config: Config, count: u128) -> Harness {
    let mut h = Harness::shop_with_config(config);
    let orders: Vec<_> = (1..=count)
        .map(|id| order(id, 500 + id, 10, &[(SKU_A, 1)]))
        .collect();
    assert!(h
        .apply(Batch::PlaceOrders(&orders))
        .iter()
        .all(|&code| code == R::Ok));
    h
}

fn redelivering() -> Config {
    Config {
        dispatch_redelivery_ns: REDELIVERY_NS,
        ..Config::default()
    }
}

/// `(order id, sequence, attempts)` of each request in the feed after `cursor`.
fn feed(h: &Harness, cursor: u64) -> Vec<(u128, u64, u32)> {
    let requests = h.sm.dispatch_feed(cursor, usize::MAX);
    requests
        .iter()
        .map(|r| (r.order_id.0, r.sequence, r.attempts))
        .collect()
}

#[test]
fn paying_puts_one_request_in_the_feed() {
    let mut h = shop_with_orders(Config::default(), 1);
    let paid_at = h.now();
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    let expected = DispatchRequest {
        id: DispatchId(1),
        sequence: 1,
        order_id: OrderId(1),
        buyer_id: BUYER,
        merchant_id: MERCHANT,
        lines: vec![OrderLine {
            sku_id: SKU_A,
            quantity: 1,
            reserved: 0,
        }],
        created_at: paid_at,
        attempts: 1,
        status: DispatchStatus::Pending,
    };
    assert_eq!(h.sm.dispatch(DispatchId(1)), Some(expected.clone()));
    assert_eq!(h.sm.dispatch_feed(0, 10), [expected]);
    assert_eq!(h.sm.dispatch(DispatchId(2)), None);
}

#[test]
fn an_ack_marks_the_order_dispatched_and_takes_it_off_the_feed() {
    let mut h = shop_with_orders(Config::default(), 1);
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    assert_eq!(h.ack(ack(1)), R::Ok);
    assert_eq!(h.order_status(1), OrderStatus::Dispatched);
    assert_eq!(h.sm.dispatch_feed(0, 10), []);
    let status = h.sm.dispatch(DispatchId(1)).map(|d| d.status);
    assert_eq!(status, Some(DispatchStatus::Acknowledged));
    let before = h.snapshot();
    assert_eq!(h.ack(ack(1)), R::Exists);
    assert_eq!(
        h.apply(Batch::AckDispatch(&[ack(1), ack(1)])),
        [R::Exists; 2]
    );
    assert_eq!(h.snapshot(), before);
    // A dispatched order is still paid: no cancel, no second payment.
    assert_eq!(h.cancel(action(1, 602)), R::OrderAlreadyPaid);
    assert_eq!(h.pay(action(1, 603)), R::OrderAlreadyPaid);
}

#[test]
fn an_ack_needs_a_request() {
    let mut h = shop_with_orders(Config::default(), 1);
    assert_eq!(h.ack(ack(77)), R::DispatchNotFound);
    // An unpaid order has no request yet.
    assert_eq!(h.ack(ack(1)), R::DispatchNotFound);
    assert_eq!(h.order_status(1), OrderStatus::Reserved);
    // Not remembered: once paid, the ack goes through.
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    assert_eq!(h.ack(ack(1)), R::Ok);
}

#[test]
fn malformed_acks_are_rejected() {
    let mut h = shop_with_orders(Config::default(), 1);
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    let mut reserved = ack(1);
    reserved.reserved[15] = 1;
    assert_eq!(h.ack(reserved), R::ReservedFieldNotZero);
    assert_eq!(h.ack(DispatchAck::default()), R::IdMustNotBeZero);
    assert_eq!(h.order_status(1), OrderStatus::Paid);
}

#[test]
fn a_request_refunded_before_its_ack_is_cancelled() {
    let mut h = shop_with_orders(redelivering(), 1);
    let paid_at = h.now();
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    assert_eq!(h.refund(action(1, 602)), R::Ok);
    assert_eq!(h.ack(ack(1)), R::DispatchCancelled);
    assert_eq!(h.sm.dispatch_feed(0, 10), []);
    // A cancelled request is never redelivered.
    h.pulse_at(paid_at + 3 * REDELIVERY_NS);
    assert_eq!(h.sm.dispatch_feed(0, 10), []);
    let request = h.sm.dispatch(DispatchId(1)).expect("kept for lookups");
    assert_eq!(
        (request.status, request.attempts),
        (DispatchStatus::Cancelled, 1)
    );
}

#[test]
fn an_unacknowledged_request_is_redelivered_under_a_larger_sequence() {
    let mut h = shop_with_orders(redelivering(), 1);
    let paid_at = h.now();
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    assert_eq!(feed(&h, 0), [(1, 1, 1)]);
    assert_eq!(h.sm.expiry_next(), Some(paid_at + REDELIVERY_NS));
    h.pulse_at(paid_at + REDELIVERY_NS - 1);
    assert_eq!(feed(&h, 0), [(1, 1, 1)], "not due yet");
    h.pulse_at(paid_at + REDELIVERY_NS);
    // A consumer that read sequence 1 sees the request again, with the same id.
    assert_eq!(feed(&h, 1), [(1, 2, 2)]);
    assert_eq!(feed(&h, 0), [(1, 2, 2)], "the old sequence is gone");
    // The next redelivery counts from this one.
    h.pulse_at(paid_at + 2 * REDELIVERY_NS - 1);
    assert_eq!(feed(&h, 0), [(1, 2, 2)]);
    h.pulse_at(paid_at + 2 * REDELIVERY_NS);
    assert_eq!(feed(&h, 2), [(1, 3, 3)]);
    // Acknowledged: no more deliveries.
    assert_eq!(h.ack(ack(1)), R::Ok);
    h.pulse_at(paid_at + 10 * REDELIVERY_NS);
    assert_eq!(feed(&h, 0), []);
    assert_eq!(h.sm.dispatch(DispatchId(1)).map(|d| d.attempts), Some(3));
}

#[test]
fn the_feed_reads_forward_from_a_cursor() {
    let mut h = shop_with_orders(Config::default(), 3);
    let pay = [action(1, 601), action(2, 602), action(3, 603)];
    assert_eq!(h.apply(Batch::PayOrders(&pay)), [R::Ok; 3]);
    assert_eq!(feed(&h, 0), [(1, 1, 1), (2, 2, 1), (3, 3, 1)]);
    let first_two: Vec<u64> =
        h.sm.dispatch_feed(0, 2)
            .iter()
            .map(|r| r.sequence)
            .collect();
    assert_eq!(first_two, [1, 2]);
    // The cursor is the last sequence seen; reading resumes after it.
    assert_eq!(feed(&h, 2), [(3, 3, 1)]);
    assert_eq!(feed(&h, 3), []);
    assert_eq!(feed(&h, u64::MAX), []);
    assert_eq!(h.sm.dispatch_feed(0, 0), []);
    // An acknowledged request leaves a gap; the others keep their sequence.
    assert_eq!(h.ack(ack(2)), R::Ok);
    assert_eq!(feed(&h, 0), [(1, 1, 1), (3, 3, 1)]);
    assert_eq!(feed(&h, 1), [(3, 3, 1)]);
}

#[test]
fn redeliveries_follow_the_due_order_after_the_cursor() {
    let mut h = shop_with_orders(redelivering(), 3);
    let paid_at = h.now();
    let pay = [action(1, 601), action(2, 602), action(3, 603)];
    assert_eq!(h.apply(Batch::PayOrders(&pay)), [R::Ok; 3]);
    assert_eq!(h.ack(ack(2)), R::Ok);
    // Paid at paid_at, paid_at + 1 and paid_at + 2: all due by paid_at + 2 + period.
    h.pulse_at(paid_at + 2 + REDELIVERY_NS);
    assert_eq!(feed(&h, 3), [(1, 4, 2), (3, 5, 2)]);
}

#[test]
fn sequences_keep_growing_across_orders_and_redeliveries() {
    let mut h = shop_with_orders(redelivering(), 2);
    let paid_at = h.now();
    assert_eq!(h.pay(action(1, 601)), R::Ok);
    h.pulse_at(paid_at + REDELIVERY_NS);
    assert_eq!(h.pay(action(2, 602)), R::Ok);
    assert_eq!(feed(&h, 0), [(1, 2, 2), (2, 3, 1)]);
}

#[test]
fn requests_due_together_are_redelivered_in_id_order() {
    let mut h = shop_with_orders(redelivering(), 2);
    let paid_at = h.now();
    // Order 2 is paid first, so it is first due.
    let pay = [action(2, 602), action(1, 601)];
    assert_eq!(h.apply(Batch::PayOrders(&pay)), [R::Ok, R::Ok]);
    assert_eq!(feed(&h, 0), [(2, 1, 1), (1, 2, 1)]);
    let sweep = paid_at + 1 + REDELIVERY_NS;
    h.pulse_at(sweep);
    assert_eq!(feed(&h, 2), [(2, 3, 2), (1, 4, 2)], "by due time");
    // Both were redelivered by the same sweep, so both are due again at the same time.
    h.pulse_at(sweep + REDELIVERY_NS);
    assert_eq!(feed(&h, 4), [(1, 5, 3), (2, 6, 3)], "same due time: by id");
}
