//! Orders spanning shards on three state machines standing for three shards: the order
//! (and its SKUs) on shard 0, the buyer on shard 1, the merchant on shard 2. A small
//! driver here plays the engine: it delivers every message of the order's outbox to its
//! target, runs the cross-shard legs that causes, and logs the outcome back.

use super::fixtures::{account, action, order, pending, post, sku, transfer, wallet, LEDGER};
use super::fixtures::{BANK, BUYER, MERCHANT, ORDER_TIMEOUT_NS, SKU_A, SKU_B};
use super::harness::{Harness, BUYER_FUNDS};
use super::order_units::{far_sku, home_sku, near_sku, FAR};
use crate::constants::ORDER_AUTHORIZE_TIMEOUT_NS;
use crate::records::{
    order_action_flags, order_message_flags, order_message_kind, Order, OrderMessage, OrderOutcome,
    OrderStatus, ShardOutcome, SpanningOrder, UnitOutcome, UnitStep,
};
use crate::state_machine::order_units::UnitHoldStatus;
use crate::state_machine::{transit_account_id, StateMachine};
use crate::{
    AccountId, Batch, OrderId, OrderLookup, PendingStatus, ResultCode, TransferId, TransferLookup,
};

pub(super) const ORDERS: usize = 0;
pub(super) const BUYERS: usize = 1;
pub(super) const MERCHANTS: usize = 2;

pub(super) struct World {
    /// Indexed by shard number.
    pub(super) shards: Vec<Harness>,
}

impl World {
    /// SKU A (10 units) and B (3 units, 2 per buyer) on shard 0; the bank and a funded
    /// buyer on shard 1; the merchant on shard 2.
    pub(super) fn new() -> World {
        let mut orders = Harness::new();
        let skus = [sku(SKU_A, 10, 0), sku(SKU_B, 3, 2)];
        assert_eq!(orders.apply(Batch::CreateSkus(&skus)), [ResultCode::Ok; 2]);
        let mut buyers = Harness::new();
        let accounts = [account(BANK), wallet(BUYER)];
        assert_eq!(
            buyers.apply(Batch::CreateAccounts(&accounts)),
            [ResultCode::Ok; 2]
        );
        let funding = transfer(9_001, BANK, BUYER, BUYER_FUNDS);
        assert_eq!(buyers.create_transfer(funding), ResultCode::Ok);
        let mut merchants = Harness::new();
        assert_eq!(merchants.create_account(account(MERCHANT)), ResultCode::Ok);
        World {
            shards: vec![orders, buyers, merchants],
        }
    }

    pub(super) fn place(&mut self, order: Order) -> ResultCode {
        self.place_with(order, MERCHANTS as u32)
    }

    fn place_with(&mut self, order: Order, merchant_shard: u32) -> ResultCode {
        let spanning = SpanningOrder {
            order,
            buyer_shard: BUYERS as u32,
            merchant_shard,
            merchant_ledger: LEDGER,
            shard_count: 0,
        };
        self.shards[ORDERS].apply(Batch::ReserveOrders(&[spanning]))[0]
    }

    /// Delivers everything the order's shard sent until nothing is left; the messages
    /// delivered (unit steps are delivered too, not returned).
    pub(super) fn settle(&mut self) -> Vec<OrderMessage> {
        let mut delivered = Vec::new();
        loop {
            let messages = self.shards[ORDERS].sm.take_released_order_messages();
            let units = self.shards[ORDERS].sm.take_released_unit_steps();
            if messages.is_empty() && units.is_empty() {
                return delivered;
            }
            for message in messages {
                self.deliver_and_confirm(&message);
                delivered.push(message);
            }
            for (step, _) in units {
                let outcome = self.deliver_units(&step);
                // A redelivery answers the same.
                assert_eq!(self.deliver_units(&step), outcome);
                let confirmed = self.shards[ORDERS].apply(Batch::UnitConfirm(&[outcome]));
                assert_eq!(confirmed, [ResultCode::Ok]);
                let again = self.shards[ORDERS].apply(Batch::UnitConfirm(&[outcome]));
                assert_eq!(again, [ResultCode::Exists]);
            }
        }
    }

    /// Delivers the messages the order's shard sent until none is left, leaving its unit
    /// steps undelivered.
    pub(super) fn deliver_messages_only(&mut self) {
        loop {
            let messages = self.shards[ORDERS].sm.take_released_order_messages();
            if messages.is_empty() {
                return;
            }
            for message in messages {
                self.deliver_and_confirm(&message);
            }
        }
    }

    /// Delivers `message` to its target and logs its outcome on the order's shard (twice:
    /// the second changes nothing).
    fn deliver_and_confirm(&mut self, message: &OrderMessage) {
        let code = self.deliver(message);
        let outcome = OrderOutcome {
            transfer_id: message.leg.transfer.id,
            code: code.as_u32(),
            kind: message.kind,
            reserved: [0; 8],
        };
        let confirmed = self.shards[ORDERS].apply(Batch::OrderConfirm(&[outcome]));
        assert_eq!(confirmed, [ResultCode::Ok]);
        let again = self.shards[ORDERS].apply(Batch::OrderConfirm(&[outcome]));
        assert_eq!(again, [ResultCode::Exists]);
    }

    /// Applies one message on its target (twice: the second is a redelivery) and any
    /// cross-shard leg it causes; the step's outcome.
    fn deliver(&mut self, message: &OrderMessage) -> ResultCode {
        let leg = message.leg;
        let target = leg.source_shard as usize;
        let is_leg = matches!(
            message.kind,
            order_message_kind::AUTHORIZE | order_message_kind::REFUND
        );
        let apply = |h: &mut Harness| {
            if is_leg {
                h.apply(Batch::OrderLegs(&[leg]))[0]
            } else {
                h.apply(Batch::OrderResolve(&[leg.transfer]))[0]
            }
        };
        let code = apply(&mut self.shards[target]);
        let again = apply(&mut self.shards[target]);
        match code {
            ResultCode::Ok => assert!(
                matches!(again, ResultCode::Exists),
                "a redelivery dedupes: {again:?}"
            ),
            failed => {
                // A failure is remembered; an id in use answers the same again.
                assert!(again == ResultCode::IdAlreadyFailed || again == failed);
                return failed;
            }
        }
        if is_leg && leg.destination_shard != leg.source_shard {
            let destination = leg.destination_shard as usize;
            let credit = self.shards[destination].apply(Batch::ShardCredit(&[leg]))[0];
            let outcome = ShardOutcome {
                transfer_id: leg.transfer.id,
                code: credit.as_u32(),
                reserved: [0; 12],
            };
            let resolved = self.shards[target].apply(Batch::ShardResolve(&[outcome]));
            assert_eq!(resolved, [ResultCode::Ok]);
            return credit;
        }
        // A post or void of a cross-shard hold sends the merchant's side its own leg.
        for phase_two in self.shards[target].sm.take_released_legs() {
            let destination = phase_two.destination_shard as usize;
            let applied = self.shards[destination].apply(Batch::ShardCredit(&[phase_two]));
            assert_eq!(applied, [ResultCode::Ok]);
            let outcome = ShardOutcome {
                transfer_id: phase_two.transfer.id,
                code: 0,
                reserved: [0; 12],
            };
            let resolved = self.shards[target].apply(Batch::ShardResolve(&[outcome]));
            assert_eq!(resolved, [ResultCode::Ok]);
        }
        ResultCode::Ok
    }

    pub(super) fn orders(&mut self) -> &mut Harness {
        &mut self.shards[ORDERS]
    }

    pub(super) fn pending_status(&self, shard: usize, id: u128) -> Option<PendingStatus> {
        match self.shards[shard].sm.transfer(TransferId(id)) {
            Some(TransferLookup::Committed { pending_status, .. }) => pending_status,
            other => panic!("transfer {id} on shard {shard}: {other:?}"),
        }
    }

    /// Money in transit between the buyer's and the merchant's shards nets to zero once
    /// everything settled, pending and posted.
    pub(super) fn assert_transit_nets_to_zero(&self) {
        for (source, destination) in [(BUYERS, MERCHANTS), (MERCHANTS, BUYERS)] {
            let id = transit_account_id(LEDGER, source as u32, destination as u32);
            let out = self.shards[source].sm.account(id).unwrap_or_default();
            let into = self.shards[destination].sm.account(id).unwrap_or_default();
            assert_eq!(out.credits_pending, into.debits_pending);
            assert_eq!(
                out.credits_posted - out.debits_posted,
                into.debits_posted - into.credits_posted
            );
        }
    }
}

#[test]
fn an_order_spanning_shards_is_placed_paid_and_refunded() {
    let mut world = World::new();
    let placing = order(1, 100, 300, &[(SKU_A, 2), (SKU_B, 1)]);
    assert_eq!(world.place(placing), ResultCode::Ok);
    // Reserved, its authorization on its way: no action yet, nothing stored.
    assert_eq!(world.orders().order_status(1), OrderStatus::Reserved);
    assert_eq!(world.orders().units(SKU_A), (8, 2, 0));
    assert!(world.orders().sm.order_step_in_flight(TransferId(100)));
    assert_eq!(
        world.orders().pay(action(1, 200)),
        ResultCode::OrderInFlight
    );
    assert_eq!(world.place(placing), ResultCode::Exists);
    let delivered = world.settle();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        world.shards[BUYERS].balances(BUYER),
        (300, 0, 0, BUYER_FUNDS)
    );
    assert_eq!(world.shards[MERCHANTS].balances(MERCHANT), (0, 0, 300, 0));
    assert_eq!(
        world.pending_status(BUYERS, 100),
        Some(PendingStatus::Pending)
    );
    // The hold is the order's: a client may not post it.
    assert_eq!(
        world.shards[BUYERS].create_transfer(post(150, 100, 0)),
        ResultCode::PendingTransferOwnedByOrder
    );

    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Ok);
    assert_eq!(world.orders().order_status(1), OrderStatus::Reserved);
    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Exists);
    assert_eq!(
        world.orders().cancel(action(1, 200)),
        ResultCode::ExistsWithDifferentFields
    );
    assert_eq!(
        world.orders().cancel(action(1, 201)),
        ResultCode::OrderInFlight
    );
    world.settle();
    let paid = world.orders().order(1);
    assert_eq!(
        OrderStatus::from_u16(paid.order.status),
        Some(OrderStatus::Paid)
    );
    assert_eq!(paid.payment_transfer_id, TransferId(200));
    assert_eq!(world.orders().units(SKU_A), (8, 0, 2));
    assert!(world.orders().sm.dispatch(crate::DispatchId(1)).is_some());
    assert_eq!(
        world.pending_status(BUYERS, 100),
        Some(PendingStatus::Posted)
    );
    assert_eq!(
        world.shards[BUYERS].balances(BUYER),
        (0, 300, 0, BUYER_FUNDS)
    );
    assert_eq!(world.shards[MERCHANTS].balances(MERCHANT), (0, 0, 0, 300));
    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Exists);
    assert_eq!(
        world.orders().pay(action(1, 202)),
        ResultCode::OrderAlreadyPaid
    );

    let restock = crate::OrderAction {
        flags: order_action_flags::RESTOCK,
        ..action(1, 300)
    };
    assert_eq!(world.orders().refund(restock), ResultCode::Ok);
    world.settle();
    assert_eq!(world.orders().order_status(1), OrderStatus::Refunded);
    assert_eq!(world.orders().units(SKU_A), (10, 0, 0));
    assert_eq!(
        world.shards[BUYERS].balances(BUYER),
        (0, 300, 0, BUYER_FUNDS + 300)
    );
    assert_eq!(world.shards[MERCHANTS].balances(MERCHANT), (0, 300, 0, 300));
    assert_eq!(world.orders().refund(restock), ResultCode::Exists);
    world.assert_transit_nets_to_zero();
}

#[test]
fn a_refused_authorization_fails_the_order_and_returns_its_units() {
    let mut world = World::new();
    let too_dear = order(2, 101, BUYER_FUNDS + 1, &[(SKU_A, 3)]);
    assert_eq!(world.place(too_dear), ResultCode::Ok);
    assert_eq!(world.orders().units(SKU_A), (7, 3, 0));
    world.settle();
    assert_eq!(
        world.orders().sm.order(OrderId(2)),
        Some(OrderLookup::Failed(ResultCode::ExceedsCredits))
    );
    assert_eq!(world.orders().units(SKU_A), (10, 0, 0));
    assert_eq!(world.place(too_dear), ResultCode::IdAlreadyFailed);
    assert_eq!(world.orders().sm.spanning_orders(), 0);
    // A merchant the buyer's shard cannot credit: refused by the merchant's shard.
    let nowhere = Order {
        merchant_id: AccountId(77),
        ..order(3, 102, 10, &[(SKU_A, 1)])
    };
    assert_eq!(world.place(nowhere), ResultCode::Ok);
    world.settle();
    assert_eq!(
        world.orders().sm.order(OrderId(3)),
        Some(OrderLookup::Failed(ResultCode::CreditAccountNotFound))
    );
    assert_eq!(world.shards[BUYERS].balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    world.assert_transit_nets_to_zero();
}

#[test]
fn an_unpaid_order_expires_on_its_shard_and_the_hold_is_voided_everywhere() {
    let mut world = World::new();
    assert_eq!(
        world.place(order(4, 103, 50, &[(SKU_B, 2)])),
        ResultCode::Ok
    );
    world.settle();
    let due = world.orders().now() + ORDER_TIMEOUT_NS;
    world.orders().pulse_at(due);
    assert_eq!(world.orders().order_status(4), OrderStatus::Expired);
    assert_eq!(world.orders().units(SKU_B), (3, 0, 0));
    assert_eq!(world.orders().pay(action(4, 203)), ResultCode::OrderExpired);
    let delivered = world.settle();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].kind, order_message_kind::EXPIRE);
    assert_eq!(
        world.pending_status(BUYERS, 103),
        Some(PendingStatus::Expired)
    );
    assert_eq!(world.shards[BUYERS].balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(world.shards[MERCHANTS].balances(MERCHANT), (0, 0, 0, 0));
    world.assert_transit_nets_to_zero();
}

#[test]
fn an_order_due_while_its_pay_travels_expires_when_the_pay_fails() {
    let mut world = World::new();
    assert_eq!(
        world.place(order(5, 104, 50, &[(SKU_A, 1)])),
        ResultCode::Ok
    );
    world.settle();
    // The pay's id is in use on the buyer's shard: it fails there.
    let taken = pending(205, BANK, BUYER, 1, 0);
    assert_eq!(world.shards[BUYERS].create_transfer(taken), ResultCode::Ok);
    assert_eq!(world.orders().pay(action(5, 205)), ResultCode::Ok);
    let due = world.orders().now() + ORDER_TIMEOUT_NS;
    world.orders().pulse_at(due);
    // Not expired while its pay travels.
    assert_eq!(world.orders().order_status(5), OrderStatus::Reserved);
    world.settle();
    assert_eq!(world.orders().order_status(5), OrderStatus::Expired);
    assert_eq!(
        world.orders().sm.transfer(TransferId(205)),
        Some(TransferLookup::Failed(
            ResultCode::ExistsWithDifferentFields
        ))
    );
    assert_eq!(
        world.pending_status(BUYERS, 104),
        Some(PendingStatus::Expired)
    );
    world.assert_transit_nets_to_zero();
}

#[test]
fn a_merchant_on_the_buyers_shard_is_held_there_and_cancelled() {
    let mut world = World::new();
    let merchant = account(AccountId(40));
    assert_eq!(
        world.shards[BUYERS].create_account(merchant),
        ResultCode::Ok
    );
    let local = Order {
        merchant_id: AccountId(40),
        ..order(6, 106, 70, &[(SKU_A, 1)])
    };
    assert_eq!(world.place_with(local, BUYERS as u32), ResultCode::Ok);
    world.settle();
    assert_eq!(world.shards[BUYERS].balances(AccountId(40)), (0, 0, 70, 0));
    assert_eq!(world.orders().cancel(action(6, 206)), ResultCode::Ok);
    world.settle();
    assert_eq!(world.orders().order_status(6), OrderStatus::Cancelled);
    assert_eq!(
        world.pending_status(BUYERS, 106),
        Some(PendingStatus::Voided)
    );
    assert_eq!(world.shards[BUYERS].balances(AccountId(40)), (0, 0, 0, 0));
    assert_eq!(world.orders().cancel(action(6, 206)), ResultCode::Exists);
    assert_eq!(
        world.orders().refund(action(6, 207)),
        ResultCode::OrderNotPaid
    );
}

#[test]
fn steps_in_flight_survive_a_snapshot() {
    let mut world = World::new();
    assert_eq!(
        world.place(order(7, 107, 10, &[(SKU_A, 1)])),
        ResultCode::Ok
    );
    assert_eq!(
        world.place(order(8, 108, 10, &[(SKU_A, 1)])),
        ResultCode::Ok
    );
    let bytes = world.orders().sm.snapshot();
    let restored = StateMachine::restore(&bytes).expect("restores");
    assert_eq!(restored.state_hash(), world.orders().sm.state_hash());
    assert_eq!(restored.order_outbox(), world.orders().sm.order_outbox());
    assert_eq!(restored.spanning_orders(), 2);
    assert!(restored.snapshot() == bytes);
    // A corrupt step (an unknown kind) is refused, not restored.
    let mut corrupt = bytes.clone();
    let outbox = world.orders().sm.order_outbox();
    let kind_offset = bytes.len() - outbox.len() * 176 + 160;
    corrupt[kind_offset] = 9;
    assert!(StateMachine::restore(&corrupt).is_err());
    // The restored shard times the two authorizations out as the original does.
    let mut restored = restored;
    let due = world.orders().now() + ORDER_AUTHORIZE_TIMEOUT_NS;
    restored.apply(due, Batch::Pulse, &mut Vec::new());
    world.orders().pulse_at(due);
    assert_eq!(world.orders().sm.spanning_orders(), 0);
    assert_eq!(restored.spanning_orders(), 0);
    assert_eq!(restored.state_hash(), world.orders().sm.state_hash());
}

#[test]
fn an_authorization_not_back_in_time_fails_the_order_and_a_late_hold_is_voided() {
    let mut world = World::new();
    let late = order(9, 109, 40, &[(SKU_A, 2)]);
    let refused = order(10, 110, BUYER_FUNDS + 1, &[(SKU_B, 1)]);
    assert_eq!(world.place(late), ResultCode::Ok);
    assert_eq!(world.place(refused), ResultCode::Ok);
    // Sent, and held up somewhere: their outcomes are not logged in time.
    let sent = world.orders().sm.take_released_order_messages();
    assert_eq!(sent.len(), 2);
    let reserved_at = |world: &World, id: u128| world.shards[ORDERS].order(id).order.timestamp;
    let first_due = reserved_at(&world, 9) + ORDER_AUTHORIZE_TIMEOUT_NS;
    let last_due = reserved_at(&world, 10) + ORDER_AUTHORIZE_TIMEOUT_NS;
    world.orders().pulse_at(first_due - 1);
    assert_eq!(world.orders().order_status(9), OrderStatus::Reserved);
    assert_eq!(world.orders().units(SKU_A), (8, 2, 0));
    world.orders().pulse_at(last_due);
    for id in [9, 10] {
        assert_eq!(
            world.orders().sm.order(OrderId(id)),
            Some(OrderLookup::Failed(ResultCode::OrderAuthorizationTimedOut))
        );
    }
    // Units back at once; the ids failed as any failed placement.
    assert_eq!(world.orders().units(SKU_A), (10, 0, 0));
    assert_eq!(world.orders().units(SKU_B), (3, 0, 0));
    assert_eq!(world.place(late), ResultCode::IdAlreadyFailed);
    assert_eq!(world.orders().sm.spanning_orders(), 0);
    assert_eq!(
        world.orders().pay(action(9, 209)),
        ResultCode::OrderNotFound
    );
    // The steps wait for their outcomes, their ids still taken, across a snapshot.
    assert!(world.orders().sm.order_step_in_flight(TransferId(109)));
    assert_eq!(
        world.place(order(11, 109, 1, &[(SKU_A, 1)])),
        ResultCode::TransferIdInUse
    );
    assert_eq!(
        world.orders().pay(action(11, 110)),
        ResultCode::OrderNotFound
    );
    let bytes = world.orders().sm.snapshot();
    let restored = StateMachine::restore(&bytes).expect("restores");
    assert_eq!(restored.state_hash(), world.orders().sm.state_hash());
    assert_eq!(restored.order_outbox(), world.orders().sm.order_outbox());
    assert!(restored.order_outbox().iter().all(|step| {
        step.kind == order_message_kind::AUTHORIZE && step.flags == order_message_flags::TIMED_OUT
    }));
    // The outcomes come back: the hold the buyer's shard made is voided (an expiry
    // step); the refused one needs nothing.
    for message in &sent {
        world.deliver_and_confirm(message);
    }
    let voids = world.settle();
    assert_eq!(voids.len(), 1);
    assert_eq!(voids[0].kind, order_message_kind::EXPIRE);
    assert_eq!(voids[0].leg.transfer.pending_id, TransferId(109));
    assert_eq!(
        world.pending_status(BUYERS, 109),
        Some(PendingStatus::Expired)
    );
    assert!(world.orders().sm.order_outbox().is_empty());
    assert_eq!(
        world.orders().sm.order(OrderId(9)),
        Some(OrderLookup::Failed(ResultCode::OrderAuthorizationTimedOut))
    );
    assert_eq!(world.shards[BUYERS].balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(world.shards[MERCHANTS].balances(MERCHANT), (0, 0, 0, 0));
    world.assert_transit_nets_to_zero();
}

#[test]
fn an_authorization_back_in_time_is_not_timed_out_later() {
    let mut world = World::new();
    assert_eq!(
        world.place(order(12, 112, 40, &[(SKU_A, 1)])),
        ResultCode::Ok
    );
    world.settle();
    let reserved_at = world.orders().order(12).order.timestamp;
    world
        .orders()
        .pulse_at(reserved_at + ORDER_AUTHORIZE_TIMEOUT_NS);
    // Placed, then expired by its own (shorter) timeout, as before: never failed.
    assert_eq!(world.orders().order_status(12), OrderStatus::Expired);
    world.settle();
    assert_eq!(
        world.pending_status(BUYERS, 112),
        Some(PendingStatus::Expired)
    );
}

#[test]
fn an_action_may_not_take_another_orders_authorization_id() {
    let mut world = World::new();
    assert_eq!(
        world.place(order(9, 109, 10, &[(SKU_A, 1)])),
        ResultCode::Ok
    );
    assert_eq!(
        world.place(order(10, 110, 10, &[(SKU_A, 1)])),
        ResultCode::Ok
    );
    world.settle();
    // Order 10 paid with order 9's authorization id: refused as one shard refuses a used
    // id, though that transfer lives on the buyer's shard.
    assert_eq!(
        world.orders().pay(action(10, 109)),
        ResultCode::ExistsWithDifferentFields
    );
    assert!(world.orders().sm.order_outbox().is_empty());
    // Nor may a new order take it.
    assert_eq!(
        world.place(order(11, 109, 10, &[(SKU_A, 1)])),
        ResultCode::TransferIdInUse
    );
    // Order 9 then expires with its authorization's id as its void's: no clash.
    let due = world.orders().now() + ORDER_TIMEOUT_NS;
    world.orders().pulse_at(due);
    world.settle();
    assert_eq!(world.orders().order_status(9), OrderStatus::Expired);
    assert_eq!(
        world.pending_status(BUYERS, 109),
        Some(PendingStatus::Expired)
    );
    // Restored, the shard still knows the authorization ids.
    let restored = StateMachine::restore(&world.orders().sm.snapshot()).expect("restores");
    let mut twin = world.orders().twin(restored);
    assert_eq!(
        twin.pay(action(10, 109)),
        ResultCode::ExistsWithDifferentFields
    );
}

// --- Property: any interleaving of client actions, deliveries, late and repeated
// outcomes, redeliveries and expiries ends consistent on every shard. ---

use proptest::prelude::*;

/// A merchant living with the buyer (on shard 1).
const MERCHANT_WITH_BUYER: AccountId = AccountId(40);

#[derive(Clone, Debug)]
enum Move {
    Place {
        amount: u64,
        quantity: u32,
        sku_b: bool,
        merchant_with_buyer: bool,
        /// Lines on three shards (`order_units`' world) instead of one.
        spread: bool,
    },
    Pay(usize),
    Cancel(usize),
    Refund(usize, bool),
    /// Deliver a step the order's shard sent (its chain of cross-shard legs at once).
    Deliver(usize),
    /// Log a delivered step's outcome on the order's shard (maybe late, maybe again).
    Confirm(usize),
    /// Deliver an already delivered step again (a restart's redelivery).
    Redeliver(usize),
    /// The same three for unit steps.
    DeliverUnits(usize),
    ConfirmUnits(usize),
    RedeliverUnits(usize),
    /// Move the order's shard's clock (orders expire after `ORDER_TIMEOUT_NS`).
    Pulse(u64),
}

fn any_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        3 => (1..400u64, 1..3u32, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(amount, quantity, sku_b, merchant_with_buyer, spread)| Move::Place {
                amount,
                quantity,
                sku_b,
                merchant_with_buyer,
                spread,
            }
        ),
        2 => any::<usize>().prop_map(Move::Pay),
        1 => any::<usize>().prop_map(Move::Cancel),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, restock)| Move::Refund(i, restock)),
        4 => any::<usize>().prop_map(Move::Deliver),
        4 => any::<usize>().prop_map(Move::Confirm),
        1 => any::<usize>().prop_map(Move::Redeliver),
        3 => any::<usize>().prop_map(Move::DeliverUnits),
        3 => any::<usize>().prop_map(Move::ConfirmUnits),
        1 => any::<usize>().prop_map(Move::RedeliverUnits),
        1 => (0..2 * ORDER_TIMEOUT_NS).prop_map(Move::Pulse),
        // Past the authorization timeout: steps still travelling time out.
        1 => Just(Move::Pulse(ORDER_AUTHORIZE_TIMEOUT_NS)),
    ]
}

/// The test's stand-in for the engine's order driver.
#[derive(Default)]
struct Mail {
    sent: Vec<OrderMessage>,
    outcomes: Vec<OrderOutcome>,
    delivered: Vec<OrderMessage>,
    units_sent: Vec<UnitStep>,
    unit_outcomes: Vec<UnitOutcome>,
    units_delivered: Vec<UnitStep>,
}

impl World {
    /// Applies `message` on its target once, then the cross-shard legs it causes; the
    /// outcome the engine's driver would log back (its mapping of redeliveries included).
    fn deliver_once(&mut self, message: &OrderMessage) -> OrderOutcome {
        let leg = message.leg;
        let target = leg.source_shard as usize;
        let is_leg = matches!(
            message.kind,
            order_message_kind::AUTHORIZE | order_message_kind::REFUND
        );
        let code = if is_leg {
            self.shards[target].apply(Batch::OrderLegs(&[leg]))[0]
        } else {
            self.shards[target].apply(Batch::OrderResolve(&[leg.transfer]))[0]
        };
        let crosses = is_leg && leg.destination_shard != leg.source_shard;
        let outcome = match code {
            ResultCode::Ok if crosses => {
                let destination = leg.destination_shard as usize;
                let credit = self.shards[destination].apply(Batch::ShardCredit(&[leg]))[0];
                let resolve = ShardOutcome {
                    transfer_id: leg.transfer.id,
                    code: credit.as_u32(),
                    reserved: [0; 12],
                };
                self.shards[target].apply(Batch::ShardResolve(&[resolve]));
                credit
            }
            // Applied before: settled or compensated then.
            ResultCode::Exists if crosses => self.shards[target]
                .sm
                .shard_compensation(leg.transfer.id)
                .map_or(ResultCode::Ok, |(code, _)| code),
            ResultCode::Ok | ResultCode::Exists => {
                for phase_two in self.shards[target].sm.take_released_legs() {
                    let destination = phase_two.destination_shard as usize;
                    self.shards[destination].apply(Batch::ShardCredit(&[phase_two]));
                    let resolve = ShardOutcome {
                        transfer_id: phase_two.transfer.id,
                        code: 0,
                        reserved: [0; 12],
                    };
                    self.shards[target].apply(Batch::ShardResolve(&[resolve]));
                }
                ResultCode::Ok
            }
            ResultCode::IdAlreadyFailed if is_leg => {
                match self.shards[target].sm.transfer(leg.transfer.id) {
                    Some(TransferLookup::Failed(code)) => code,
                    _ => code,
                }
            }
            ResultCode::ExistsWithDifferentFields if is_leg => ResultCode::TransferIdInUse,
            failure => failure,
        };
        OrderOutcome {
            transfer_id: leg.transfer.id,
            code: outcome.as_u32(),
            kind: message.kind,
            reserved: [0; 8],
        }
    }

    fn collect(&mut self, mail: &mut Mail) {
        mail.sent
            .extend(self.shards[ORDERS].sm.take_released_order_messages());
        let units = self.shards[ORDERS].sm.take_released_unit_steps();
        mail.units_sent
            .extend(units.into_iter().map(|(step, _)| step));
    }

    /// Delivers and confirms everything, in order, until nothing is left.
    fn drain(&mut self, mail: &mut Mail) {
        loop {
            self.collect(mail);
            let units_idle = mail.units_sent.is_empty() && mail.unit_outcomes.is_empty();
            if mail.sent.is_empty() && mail.outcomes.is_empty() && units_idle {
                return;
            }
            for message in std::mem::take(&mut mail.sent) {
                let outcome = self.deliver_once(&message);
                mail.outcomes.push(outcome);
            }
            for outcome in std::mem::take(&mut mail.outcomes) {
                self.shards[ORDERS].apply(Batch::OrderConfirm(&[outcome]));
            }
            for step in std::mem::take(&mut mail.units_sent) {
                let outcome = self.deliver_units(&step);
                mail.unit_outcomes.push(outcome);
            }
            for outcome in std::mem::take(&mut mail.unit_outcomes) {
                self.shards[ORDERS].apply(Batch::UnitConfirm(&[outcome]));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        cases: 96,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_interleaving_of_steps_ends_consistent_on_every_shard(
        moves in proptest::collection::vec(any_move(), 1..60)
    ) {
        let mut world = World::with_line_shards();
        let merchant = account(MERCHANT_WITH_BUYER);
        prop_assert_eq!(world.shards[BUYERS].create_account(merchant), ResultCode::Ok);
        let mut mail = Mail::default();
        // (order, authorization, amount, lines spread over shards)
        let mut orders: Vec<(u128, u128, u64, bool)> = Vec::new();
        let mut next_id = 1_000u128;
        let mut id = || {
            next_id += 1;
            next_id
        };
        for step in moves {
            match step {
                Move::Place { amount, quantity, sku_b, merchant_with_buyer, spread } => {
                    let (order_id, authorization) = (id(), id());
                    let sku = if sku_b { SKU_B } else { SKU_A };
                    let lines = if spread {
                        vec![(home_sku(), quantity), (far_sku(), quantity), (near_sku(), 1)]
                    } else {
                        vec![(sku, quantity)]
                    };
                    let mut placing = order(order_id, authorization, amount, &lines);
                    if spread {
                        world.place_spread(placing);
                    } else {
                        let merchant_shard = if merchant_with_buyer {
                            placing.merchant_id = MERCHANT_WITH_BUYER;
                            BUYERS
                        } else {
                            MERCHANTS
                        };
                        world.place_with(placing, merchant_shard as u32);
                    }
                    orders.push((order_id, authorization, amount, spread));
                }
                Move::Pay(i) | Move::Cancel(i) | Move::Refund(i, _) if !orders.is_empty() => {
                    let (order_id, _, _, _) = orders[i % orders.len()];
                    let made = action(order_id, id());
                    let code = match step {
                        Move::Pay(_) => world.orders().pay(made),
                        Move::Cancel(_) => world.orders().cancel(made),
                        Move::Refund(_, restock) => world.orders().refund(crate::OrderAction {
                            flags: if restock { order_action_flags::RESTOCK } else { 0 },
                            ..made
                        }),
                        _ => unreachable!(),
                    };
                    // Never a code only an engine bug could cause.
                    prop_assert!(code != ResultCode::ReservedFieldNotZero, "{:?}", code);
                }
                Move::Deliver(i) if !mail.sent.is_empty() => {
                    let message = mail.sent.remove(i % mail.sent.len());
                    let outcome = world.deliver_once(&message);
                    mail.outcomes.push(outcome);
                    mail.delivered.push(message);
                }
                Move::Confirm(i) if !mail.outcomes.is_empty() => {
                    let outcome = mail.outcomes.remove(i % mail.outcomes.len());
                    let code = world.orders().apply(Batch::OrderConfirm(&[outcome]))[0];
                    prop_assert!(code.is_success(), "{:?}", code);
                    // A repeat changes nothing.
                    let again = world.orders().apply(Batch::OrderConfirm(&[outcome]))[0];
                    prop_assert_eq!(again, ResultCode::Exists);
                }
                Move::Redeliver(i) if !mail.delivered.is_empty() => {
                    let message = mail.delivered[i % mail.delivered.len()];
                    let outcome = world.deliver_once(&message);
                    mail.outcomes.push(outcome);
                }
                Move::DeliverUnits(i) if !mail.units_sent.is_empty() => {
                    let step = mail.units_sent.remove(i % mail.units_sent.len());
                    let outcome = world.deliver_units(&step);
                    mail.unit_outcomes.push(outcome);
                    mail.units_delivered.push(step);
                }
                Move::ConfirmUnits(i) if !mail.unit_outcomes.is_empty() => {
                    let outcome = mail.unit_outcomes.remove(i % mail.unit_outcomes.len());
                    let code = world.orders().apply(Batch::UnitConfirm(&[outcome]))[0];
                    prop_assert!(code.is_success(), "{:?}", code);
                    let again = world.orders().apply(Batch::UnitConfirm(&[outcome]))[0];
                    prop_assert_eq!(again, ResultCode::Exists);
                }
                Move::RedeliverUnits(i) if !mail.units_delivered.is_empty() => {
                    let step = mail.units_delivered[i % mail.units_delivered.len()];
                    let outcome = world.deliver_units(&step);
                    mail.unit_outcomes.push(outcome);
                }
                Move::Pulse(advance) => {
                    let at = world.orders().now() + advance;
                    world.orders().pulse_at(at);
                }
                _ => {}
            }
            world.collect(&mut mail);
        }
        world.drain(&mut mail);
        prop_assert!(world.orders().sm.order_outbox().is_empty());
        prop_assert!(world.orders().sm.unit_outbox().is_empty());
        world.assert_transit_nets_to_zero();
        // Every order as its shard sees it matches its hold on the buyer's shard, and the
        // buyer's balances add up.
        let (mut held, mut captured, mut refunded) = (0u64, 0u64, 0u64);
        for (order_id, authorization, amount, spread) in orders {
            // Where its units on shard 3 stand, for an order with lines there.
            let far_hold = world.hold(FAR, order_id);
            let view = match world.orders().sm.order(OrderId(order_id)) {
                Some(OrderLookup::Placed(view)) => view,
                failed => {
                    // Nothing is held or sold for a failed order.
                    prop_assert!(
                        !matches!(far_hold, Some(UnitHoldStatus::Held | UnitHoldStatus::Sold)),
                        "order {} is {:?}, units {:?}", order_id, failed, far_hold
                    );
                    // A failed order holds nothing, even if its hold was made late.
                    let hold = match world.shards[BUYERS].sm.transfer(TransferId(authorization)) {
                        Some(TransferLookup::Committed { pending_status, .. }) => pending_status,
                        _ => None,
                    };
                    prop_assert!(
                        hold != Some(PendingStatus::Pending),
                        "order {} is {:?}", order_id, failed
                    );
                    continue;
                }
            };
            let status = OrderStatus::from_u16(view.order.status).expect("a status");
            let expected = match status {
                OrderStatus::Reserved => PendingStatus::Pending,
                OrderStatus::Paid | OrderStatus::Dispatched | OrderStatus::Refunded => {
                    PendingStatus::Posted
                }
                OrderStatus::Cancelled => PendingStatus::Voided,
                OrderStatus::Expired => PendingStatus::Expired,
            };
            prop_assert_eq!(
                world.pending_status(BUYERS, authorization),
                Some(expected),
                "order {} is {:?}", order_id, status
            );
            if spread {
                let units_ok = match status {
                    OrderStatus::Reserved => far_hold == Some(UnitHoldStatus::Held),
                    OrderStatus::Paid | OrderStatus::Dispatched => {
                        far_hold == Some(UnitHoldStatus::Sold)
                    }
                    OrderStatus::Refunded => matches!(
                        far_hold,
                        Some(UnitHoldStatus::Sold | UnitHoldStatus::Restocked)
                    ),
                    OrderStatus::Cancelled | OrderStatus::Expired => {
                        far_hold == Some(UnitHoldStatus::Released)
                    }
                };
                prop_assert!(units_ok, "order {} is {:?}, units {:?}", order_id, status, far_hold);
            }
            match status {
                OrderStatus::Reserved => held += amount,
                OrderStatus::Paid | OrderStatus::Dispatched => captured += amount,
                OrderStatus::Refunded => {
                    captured += amount;
                    refunded += amount;
                }
                OrderStatus::Cancelled | OrderStatus::Expired => {}
            }
        }
        prop_assert_eq!(
            world.shards[BUYERS].balances(BUYER),
            (held, captured, 0, BUYER_FUNDS + refunded)
        );
    }
}
