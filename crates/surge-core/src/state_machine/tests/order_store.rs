//! The order store (`order_store.rs`) seen from commands: placements that fail leave
//! nothing behind in a batch of successful ones, the store grows past its configured
//! capacity without an error, and snapshots carry every order, failure and dispatch request
//! across the store's chunks.

use super::fixtures::*;
use super::harness::Harness;
use crate::batch::Batch;
use crate::ids::{OrderId, SkuId};
use crate::records::{Order, OrderAction, OrderStatus};
use crate::result::ResultCode as R;
use crate::state_machine::{Config, OrderLookup, SnapshotError, StateMachine};

/// A shop whose buyers can afford `orders` orders of [`PRICE_EACH`] and whose SKU A
/// never sells out, sized for `orders_capacity` orders.
fn big_shop(orders_capacity: usize) -> Harness {
    let mut h = Harness::shop_with_config(Config {
        orders_capacity,
        ..Config::default()
    });
    assert_eq!(h.create_sku(sku(SkuId(7), 1_000_000, 0)), R::Ok);
    assert_eq!(
        h.create_transfer(transfer(9_100, BANK, BUYER, 1_000_000)),
        R::Ok
    );
    h
}

const PRICE_EACH: u64 = 3;

/// Order `id` of one unit of SKU 7, authorized by transfer `id + 100_000`.
fn cheap_order(id: u128) -> Order {
    order(id, id + 100_000, PRICE_EACH, &[(SkuId(7), 1)])
}

#[test]
fn failed_placements_in_a_batch_leave_only_their_failure() {
    // The same batch twice, once with orders that fail after their first line or at the
    // payment mixed in, once without them: the state differs only by those failures.
    let placed: Vec<Order> = (1..=40).map(cheap_order).collect();
    let mut with_failures = Vec::new();
    for (index, order) in placed.iter().enumerate() {
        with_failures.push(*order);
        if index % 10 == 3 {
            let id = 1_000 + index as u128;
            // The first line fits, the second is sold out: nothing may stay reserved.
            let sold_out = order_with(id, &[(SkuId(7), 1), (SKU_C, 5)], PRICE_EACH);
            // Every line fits, the payment does not.
            let too_dear = order_with(id + 1, &[(SkuId(7), 1)], 5_000_000);
            with_failures.extend([sold_out, too_dear]);
        }
    }
    let mut a = big_shop(8);
    let mut b = big_shop(8);
    let codes = a.apply(Batch::PlaceOrders(&with_failures));
    assert_eq!(codes.iter().filter(|code| **code == R::SoldOut).count(), 4);
    assert_eq!(
        codes
            .iter()
            .filter(|code| **code == R::ExceedsCredits)
            .count(),
        4
    );
    assert_eq!(b.apply(Batch::PlaceOrders(&placed)), vec![R::Ok; 40]);
    // Balances and stock as if the failures never came (the orders' timestamps differ:
    // the failures took log time in between).
    assert_eq!(a.sm.accounts_sorted(), b.sm.accounts_sorted());
    assert_eq!(a.sm.skus_sorted(), b.sm.skus_sorted());
    let placed_in = |h: &Harness| -> Vec<(OrderId, u16, u64)> {
        let views = h.sm.orders_sorted();
        views
            .iter()
            .map(|view| (view.order.id, view.order.status, view.order.amount))
            .collect()
    };
    assert_eq!(placed_in(&a), placed_in(&b));
    assert_eq!(
        a.sm.order(OrderId(1_003)),
        Some(OrderLookup::Failed(R::SoldOut))
    );
    assert_eq!(
        a.sm.order(OrderId(1_004)),
        Some(OrderLookup::Failed(R::ExceedsCredits))
    );
    assert_eq!(a.sm.buyer_units(SkuId(7), BUYER), 0, "SKU 7 has no limit");
    assert_eq!(a.sm.memory_counts().orders, 48);
    assert_eq!(b.sm.memory_counts().orders, 40);
    // The failed ids stay failed, and their transfer ids were never used.
    let retry = order_with(1_003, &[(SkuId(7), 1)], PRICE_EACH);
    assert_eq!(a.place(retry), R::IdAlreadyFailed);
    assert_eq!(
        a.place(order(2_000, 1_003 + 100_000, PRICE_EACH, &[(SkuId(7), 1)])),
        R::Ok
    );
}

/// An order of [`BUYER`] with its own transfer id (`id + 100_000`).
fn order_with(id: u128, lines: &[(SkuId, u32)], amount: u64) -> Order {
    order(id, id + 100_000, amount, lines)
}

#[test]
fn the_store_grows_past_its_capacity_and_answers_as_one_sized_for_everything() {
    // Sized for 1 order, then 300 placed, paid, cancelled and acknowledged: the store
    // allocates more chunks as it goes (no error, no panic), and the state is the one a
    // machine sized for all of them reaches.
    let mut small = big_shop(1);
    let mut large = big_shop(1_000);
    for h in [&mut small, &mut large] {
        let orders: Vec<Order> = (1..=300).map(cheap_order).collect();
        assert_eq!(h.apply(Batch::PlaceOrders(&orders)), vec![R::Ok; 300]);
        let pays: Vec<OrderAction> = (1..=200).map(|id| action(id, id + 200_000)).collect();
        assert_eq!(h.apply(Batch::PayOrders(&pays)), vec![R::Ok; 200]);
        let cancels: Vec<OrderAction> = (201..=250).map(|id| action(id, id + 200_000)).collect();
        assert_eq!(h.apply(Batch::CancelOrders(&cancels)), vec![R::Ok; 50]);
        let acks: Vec<_> = (1..=100).map(ack).collect();
        assert_eq!(h.apply(Batch::AckDispatch(&acks)), vec![R::Ok; 100]);
    }
    assert_eq!(small.snapshot(), large.snapshot());
    assert_eq!(small.sm.state_hash(), large.sm.state_hash());
    assert_eq!(small.order_status(300), OrderStatus::Reserved);
    assert_eq!(small.order_status(250), OrderStatus::Cancelled);
    assert_eq!(small.order_status(150), OrderStatus::Paid);
    assert_eq!(small.order_status(1), OrderStatus::Dispatched);
    assert_eq!(small.sm.dispatch_feed(0, 1_000).len(), 100);
    assert_eq!(small.sm.memory_counts().dispatch_requests, 200);
}

#[test]
fn a_snapshot_carries_every_order_failure_and_request_across_chunks() {
    let mut h = big_shop(1);
    let orders: Vec<Order> = (1..=150).map(cheap_order).collect();
    assert_eq!(h.apply(Batch::PlaceOrders(&orders)), vec![R::Ok; 150]);
    let failing = [order_with(500, &[(SKU_NONE, 1)], 1), cheap_order(1)];
    assert_eq!(
        h.apply(Batch::PlaceOrders(&failing)),
        [R::SkuNotFound, R::Exists]
    );
    let pays: Vec<OrderAction> = (1..=90).map(|id| action(id, id + 200_000)).collect();
    assert_eq!(h.apply(Batch::PayOrders(&pays)), vec![R::Ok; 90]);
    let refunds: Vec<OrderAction> = (1..=5).map(|id| action(id, id + 300_000)).collect();
    assert_eq!(h.apply(Batch::RefundOrders(&refunds)), vec![R::Ok; 5]);
    assert_eq!(h.apply(Batch::AckDispatch(&[ack(80)])), [R::Ok]);

    let bytes = h.sm.snapshot();
    let restored = StateMachine::restore(&bytes).expect("a snapshot restores");
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.state_hash(), h.sm.state_hash());
    assert_eq!(restored.orders_sorted(), h.sm.orders_sorted());
    assert_eq!(restored.dispatches_sorted(), h.sm.dispatches_sorted());
    assert_eq!(
        restored.dispatch_feed(0, 1_000),
        h.sm.dispatch_feed(0, 1_000)
    );
    assert_eq!(restored.memory_counts(), h.sm.memory_counts());
    assert_eq!(
        restored.order(OrderId(500)),
        Some(OrderLookup::Failed(R::SkuNotFound))
    );

    // The restored machine goes on exactly like the original: more orders (into new
    // chunks), payments of restored ones, and the expiry of the unpaid rest.
    let mut twin = h.twin(restored);
    for machine in [&mut h, &mut twin] {
        let more: Vec<Order> = (151..=400).map(cheap_order).collect();
        assert_eq!(machine.apply(Batch::PlaceOrders(&more)), vec![R::Ok; 250]);
        let pays: Vec<OrderAction> = (91..=120).map(|id| action(id, id + 200_000)).collect();
        assert_eq!(machine.apply(Batch::PayOrders(&pays)), vec![R::Ok; 30]);
        machine.pulse_at(machine.now() + ORDER_TIMEOUT_NS);
    }
    assert_eq!(twin.sm.state_hash(), h.sm.state_hash());
    assert_eq!(twin.snapshot(), h.snapshot());
    assert_eq!(twin.order_status(400), OrderStatus::Expired);
}

#[test]
fn a_snapshot_whose_order_expiry_disagrees_is_refused() {
    let mut h = big_shop(4);
    assert_eq!(h.place(cheap_order(1)), R::Ok);
    let bytes = h.sm.snapshot();
    // The order's `expires_at` follows its 256-byte record and its fingerprint, at the
    // end of the snapshot's orders section; find it by value.
    let expires_at = h.order(1).expires_at.to_le_bytes();
    let at = bytes
        .windows(8)
        .rposition(|window| window == expires_at)
        .expect("the expiry is in the snapshot");
    let mut damaged = bytes.clone();
    damaged[at] ^= 1;
    match StateMachine::restore(&damaged) {
        Err(SnapshotError::InvalidValue { what, .. }) => assert_eq!(what, "order expiry"),
        other => panic!(
            "expected an invalid order expiry, got {:?}",
            other.map(|_| ())
        ),
    }
    assert!(StateMachine::restore(&bytes).is_ok());
}

#[test]
fn dispatch_requests_live_in_their_orders() {
    let mut h = big_shop(4);
    assert_eq!(h.place(cheap_order(1)), R::Ok);
    // An order that is not paid has no request; an id that is no order has none either.
    assert_eq!(h.ack(ack(1)), R::DispatchNotFound);
    assert_eq!(h.ack(ack(2)), R::DispatchNotFound);
    assert_eq!(h.pay(action(1, 200_001)), R::Ok);
    assert_eq!(h.ack(ack(1)), R::Ok);
    assert_eq!(h.ack(ack(1)), R::Exists);
    let request = h.sm.dispatch(crate::ids::DispatchId(1)).expect("paid");
    assert_eq!(request.order_id, OrderId(1));
    assert_eq!(request.buyer_id, BUYER);
    assert_eq!(request.merchant_id, MERCHANT);
    assert_eq!(h.sm.memory_counts().dispatch_requests, 1);
}
