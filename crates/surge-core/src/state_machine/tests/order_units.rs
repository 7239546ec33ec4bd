//! Orders whose SKU lines live on several shards, on the state machines of
//! `order_saga`'s world plus a fourth: with a shard count of 4, the order lives on shard 0
//! with its first line, and its other lines on shard 3 and on the buyer's shard 1.

use super::fixtures::{action, order, sku, LEDGER, ORDER_TIMEOUT_NS};
use super::harness::{Harness, BUYER_FUNDS};
use super::order_saga::{World, BUYERS, MERCHANTS, ORDERS};
use crate::constants::ORDER_AUTHORIZE_TIMEOUT_NS;
use crate::records::{
    order_action_flags, unit_step_kind, Order, OrderStatus, SpanningOrder, UnitOutcome, UnitStep,
};
use crate::state_machine::order_units::UnitHoldStatus;
use crate::state_machine::StateMachine;
use crate::{shard_of, Batch, OrderId, OrderLookup, ResultCode, SkuId, TransferId};

pub(super) const SHARD_COUNT: u32 = 4;
/// A snapshot's header: the configuration's capacities, then the sections.
const HEADER_SIZE_BYTES: usize = 108;
/// The fourth state machine: holds only SKU lines.
pub(super) const FAR: usize = 3;

/// The `nth` SKU id living on `shard` (of [`SHARD_COUNT`]).
fn sku_on(shard: usize, nth: usize) -> SkuId {
    (100u64..)
        .filter(|id| shard_of(u128::from(*id), SHARD_COUNT) == shard as u32)
        .nth(nth)
        .map(SkuId)
        .expect("a SKU id on every shard")
}

/// 10 units on the order's shard.
pub(super) fn home_sku() -> SkuId {
    sku_on(ORDERS, 0)
}

/// 5 units on shard 3.
pub(super) fn far_sku() -> SkuId {
    sku_on(FAR, 0)
}

/// 4 units, 2 per buyer, on the buyer's shard.
pub(super) fn near_sku() -> SkuId {
    sku_on(BUYERS, 0)
}

impl World {
    /// `World::new` plus the SKUs above and the fourth state machine.
    pub(super) fn with_line_shards() -> World {
        let mut world = World::new();
        world.shards.push(Harness::new());
        let stock = [
            (ORDERS, sku(home_sku(), 10, 0)),
            (FAR, sku(far_sku(), 5, 0)),
            (BUYERS, sku(near_sku(), 4, 2)),
        ];
        for (shard, stocked) in stock {
            assert_eq!(world.shards[shard].create_sku(stocked), ResultCode::Ok);
        }
        world
    }

    /// Reserves `order` on the order's shard as the engine does when its lines span
    /// shards.
    pub(super) fn place_spread(&mut self, order: Order) -> ResultCode {
        let spanning = SpanningOrder {
            order,
            buyer_shard: BUYERS as u32,
            merchant_shard: MERCHANTS as u32,
            merchant_ledger: LEDGER,
            shard_count: SHARD_COUNT,
        };
        self.shards[ORDERS].apply(Batch::ReserveOrders(&[spanning]))[0]
    }

    /// Applies a unit step on its target once; the outcome the engine's driver logs back.
    pub(super) fn deliver_units(&mut self, step: &UnitStep) -> UnitOutcome {
        let target = step.target_shard as usize;
        let code = match self.shards[target].apply(Batch::OrderUnits(&[*step]))[0] {
            ResultCode::Ok | ResultCode::Exists => ResultCode::Ok,
            failure => failure,
        };
        UnitOutcome {
            order_id: step.order.id,
            target_shard: step.target_shard,
            kind: step.kind,
            code: code.as_u32(),
            reserved: [0; 4],
        }
    }

    /// The unit steps the order's shard sent since the last call.
    fn unit_steps(&mut self) -> Vec<UnitStep> {
        let released = self.shards[ORDERS].sm.take_released_unit_steps();
        released.into_iter().map(|(step, _)| step).collect()
    }

    fn confirm_units(&mut self, outcome: UnitOutcome) {
        let confirmed = self.shards[ORDERS].apply(Batch::UnitConfirm(&[outcome]));
        assert_eq!(confirmed, [ResultCode::Ok]);
    }

    /// Where order `id`'s units on `shard` stand.
    pub(super) fn hold(&self, shard: usize, id: u128) -> Option<UnitHoldStatus> {
        let holds = &self.shards[shard].sm.order_saga.unit_holds;
        holds.get(&OrderId(id)).map(|hold| hold.status)
    }

    fn units_everywhere(&self) -> [(u64, u64, u64); 3] {
        [
            self.shards[ORDERS].units(home_sku()),
            self.shards[FAR].units(far_sku()),
            self.shards[BUYERS].units(near_sku()),
        ]
    }
}

fn spread(id: u128, transfer_id: u128, amount: u64, far: u32, near: u32) -> Order {
    order(
        id,
        transfer_id,
        amount,
        &[(home_sku(), 2), (far_sku(), far), (near_sku(), near)],
    )
}

#[test]
fn an_order_whose_lines_span_shards_is_placed_paid_and_refunded_with_restock() {
    let mut world = World::with_line_shards();
    let placing = spread(1, 100, 300, 1, 1);
    assert_eq!(world.place_spread(placing), ResultCode::Ok);
    assert_eq!(world.orders().units(home_sku()), (8, 2, 0));
    assert!(world.orders().sm.order_step_in_flight(TransferId(100)));
    assert_eq!(
        world.orders().pay(action(1, 200)),
        ResultCode::OrderInFlight
    );
    assert_eq!(world.place_spread(placing), ResultCode::Exists);
    // The other shards reserve one at a time, in line order; then the authorization.
    let first = world.unit_steps();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].target_shard, first[0].kind),
        (FAR as u32, unit_step_kind::RESERVE)
    );
    let outcome = world.deliver_units(&first[0]);
    assert_eq!(world.shards[FAR].units(far_sku()), (4, 1, 0));
    assert!(world.orders().sm.take_released_order_messages().is_empty());
    world.confirm_units(outcome);
    let second = world.unit_steps();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].target_shard, BUYERS as u32);
    let outcome = world.deliver_units(&second[0]);
    world.confirm_units(outcome);
    assert!(world.unit_steps().is_empty());
    assert!(world.orders().sm.order_step_in_flight(TransferId(100)));
    let authorization = world.orders().sm.order_outbox();
    assert_eq!(authorization.len(), 1);
    assert_eq!(authorization[0].leg.transfer.id, TransferId(100));
    world.settle();
    assert!(!world.orders().sm.order_step_in_flight(TransferId(100)));
    assert_eq!(world.orders().order_status(1), OrderStatus::Reserved);
    assert_eq!(world.units_everywhere(), [(8, 2, 0), (4, 1, 0), (3, 1, 0)]);
    assert_eq!(
        world.shards[BUYERS]
            .sm
            .buyer_units(near_sku(), placing.buyer_id),
        1
    );

    // Pay: the units are sold everywhere.
    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Ok);
    assert_eq!(world.settle().len(), 1);
    assert_eq!(world.orders().order_status(1), OrderStatus::Paid);
    assert_eq!(world.units_everywhere(), [(8, 0, 2), (4, 0, 1), (3, 0, 1)]);
    assert_eq!(world.hold(FAR, 1), Some(UnitHoldStatus::Sold));
    assert!(!world.orders().sm.order_step_in_flight(TransferId(200)));
    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Exists);

    let restock = crate::OrderAction {
        flags: order_action_flags::RESTOCK,
        ..action(1, 300)
    };
    assert_eq!(world.orders().refund(restock), ResultCode::Ok);
    world.settle();
    assert_eq!(world.orders().order_status(1), OrderStatus::Refunded);
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
    assert_eq!(world.hold(BUYERS, 1), Some(UnitHoldStatus::Restocked));
    assert_eq!(
        world.shards[BUYERS]
            .sm
            .buyer_units(near_sku(), placing.buyer_id),
        0
    );
    assert_eq!(
        world.shards[BUYERS].balances(placing.buyer_id),
        (0, 300, 0, BUYER_FUNDS + 300)
    );
    world.assert_transit_nets_to_zero();
}

#[test]
fn the_answer_to_a_pay_waits_for_the_units_it_sells() {
    let mut world = World::with_line_shards();
    assert_eq!(world.place_spread(spread(1, 100, 30, 1, 1)), ResultCode::Ok);
    world.settle();
    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Ok);
    // Deliver only the pay's own step: the sells are sent, not yet back.
    world.deliver_messages_only();
    assert_eq!(world.orders().order_status(1), OrderStatus::Paid);
    // Sold here, still held over there: the pay is still in flight, the order takes no
    // other action.
    assert_eq!(world.shards[FAR].units(far_sku()), (4, 1, 0));
    assert!(world.orders().sm.order_step_in_flight(TransferId(200)));
    assert_eq!(
        world.orders().refund(action(1, 300)),
        ResultCode::OrderInFlight
    );
    assert_eq!(world.orders().pay(action(1, 200)), ResultCode::Exists);
    world.settle();
    assert!(!world.orders().sm.order_step_in_flight(TransferId(200)));
    assert_eq!(world.shards[FAR].units(far_sku()), (4, 0, 1));
}

#[test]
fn a_line_failing_elsewhere_fails_the_order_and_every_shard_releases() {
    let mut world = World::with_line_shards();
    // Shard 3 is asked first and has only 5.
    let sold_out = spread(2, 101, 30, 6, 1);
    assert_eq!(world.place_spread(sold_out), ResultCode::Ok);
    world.settle();
    assert_eq!(
        world.orders().sm.order(OrderId(2)),
        Some(OrderLookup::Failed(ResultCode::SoldOut))
    );
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
    assert_eq!(world.place_spread(sold_out), ResultCode::IdAlreadyFailed);
    // The buyer's limit applies where the SKU lives (asked second: shard 3 releases).
    let over_limit = spread(3, 102, 30, 1, 3);
    assert_eq!(world.place_spread(over_limit), ResultCode::Ok);
    world.settle();
    assert_eq!(
        world.orders().sm.order(OrderId(3)),
        Some(OrderLookup::Failed(ResultCode::LimitReached))
    );
    assert_eq!(world.hold(FAR, 3), Some(UnitHoldStatus::Released));
    assert_eq!(world.hold(BUYERS, 3), Some(UnitHoldStatus::Failed));
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
    // A refused authorization releases every shard's units too.
    let too_dear = spread(4, 103, BUYER_FUNDS + 1, 1, 1);
    assert_eq!(world.place_spread(too_dear), ResultCode::Ok);
    world.settle();
    assert_eq!(
        world.orders().sm.order(OrderId(4)),
        Some(OrderLookup::Failed(ResultCode::ExceedsCredits))
    );
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
    assert!(world.orders().sm.unit_outbox().is_empty());
    assert_eq!(world.orders().sm.spanning_orders(), 0);
}

#[test]
fn cancel_and_expiry_release_the_units_everywhere() {
    let mut world = World::with_line_shards();
    assert_eq!(world.place_spread(spread(5, 104, 30, 1, 1)), ResultCode::Ok);
    assert_eq!(world.place_spread(spread(6, 105, 30, 2, 1)), ResultCode::Ok);
    world.settle();
    assert_eq!(world.units_everywhere(), [(6, 4, 0), (2, 3, 0), (2, 2, 0)]);
    assert_eq!(world.orders().cancel(action(5, 204)), ResultCode::Ok);
    world.settle();
    assert_eq!(world.orders().order_status(5), OrderStatus::Cancelled);
    assert_eq!(world.units_everywhere(), [(8, 2, 0), (3, 2, 0), (3, 1, 0)]);
    let due = world.orders().now() + ORDER_TIMEOUT_NS;
    world.orders().pulse_at(due);
    assert_eq!(world.orders().order_status(6), OrderStatus::Expired);
    // Nobody waits for an expiry's releases.
    assert!(world.orders().sm.order_saga.unit_waiting.is_empty());
    world.settle();
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
    world.assert_transit_nets_to_zero();
}

#[test]
fn a_placement_not_back_in_time_releases_what_was_reserved() {
    let mut world = World::with_line_shards();
    assert_eq!(world.place_spread(spread(7, 106, 30, 1, 1)), ResultCode::Ok);
    let first = world.unit_steps();
    let outcome = world.deliver_units(&first[0]);
    world.confirm_units(outcome);
    // The second reservation is applied over there but its outcome is late.
    let second = world.unit_steps();
    let late = world.deliver_units(&second[0]);
    assert_eq!(world.units_everywhere(), [(8, 2, 0), (4, 1, 0), (3, 1, 0)]);
    let at = world.orders().now() + ORDER_AUTHORIZE_TIMEOUT_NS;
    world.orders().pulse_at(at);
    assert_eq!(
        world.orders().sm.order(OrderId(7)),
        Some(OrderLookup::Failed(ResultCode::OrderAuthorizationTimedOut))
    );
    assert_eq!(world.orders().units(home_sku()), (10, 0, 0));
    // The client is answered once the shard holding units released them and the late
    // reservation came back.
    assert!(world.orders().sm.order_step_in_flight(TransferId(106)));
    let kinds: Vec<(u32, u32)> = world
        .orders()
        .sm
        .unit_outbox()
        .iter()
        .map(|(step, _)| (step.target_shard, step.kind))
        .collect();
    // The buyer's shard is told to release; shard 3's late reservation is still out.
    assert_eq!(
        kinds,
        [
            (BUYERS as u32, unit_step_kind::RESERVE),
            (FAR as u32, unit_step_kind::RELEASE)
        ]
    );
    world.confirm_units(late);
    world.settle();
    assert!(!world.orders().sm.order_step_in_flight(TransferId(106)));
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
    assert!(world.orders().sm.order_outbox().is_empty());
    assert!(world.orders().sm.unit_outbox().is_empty());
}

#[test]
fn unit_steps_in_flight_survive_a_snapshot() {
    let mut world = World::with_line_shards();
    assert_eq!(world.place_spread(spread(8, 107, 30, 1, 1)), ResultCode::Ok);
    let first = world.unit_steps();
    let outcome = world.deliver_units(&first[0]);
    // Both sides restored from snapshots mid-way, then the rest delivered from the outbox.
    for shard in [ORDERS, FAR] {
        let bytes = world.shards[shard].sm.snapshot();
        let restored = StateMachine::restore(&bytes).expect("a snapshot");
        assert_eq!(restored.state_hash(), world.shards[shard].sm.state_hash());
        assert!(restored.snapshot() == bytes);
        world.shards[shard] = world.shards[shard].twin(restored);
    }
    let outbox = world.orders().sm.unit_outbox();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].1, TransferId(107));
    assert_eq!(world.deliver_units(&outbox[0].0), outcome);
    world.confirm_units(outcome);
    world.settle();
    assert_eq!(world.orders().order_status(8), OrderStatus::Reserved);
    assert_eq!(world.units_everywhere(), [(8, 2, 0), (4, 1, 0), (3, 1, 0)]);
}

#[test]
fn a_unit_step_is_checked_on_its_target() {
    let mut world = World::with_line_shards();
    let placing = spread(9, 108, 30, 1, 1);
    let step = |target: usize, kind: u32| UnitStep {
        order: placing,
        shard_count: SHARD_COUNT,
        target_shard: target as u32,
        kind,
        flags: 0,
    };
    let far = &mut world.shards[FAR];
    assert_eq!(
        far.apply(Batch::OrderUnits(&[step(
            MERCHANTS,
            unit_step_kind::RESERVE
        )])),
        [ResultCode::OrderLinesInvalid]
    );
    assert_eq!(
        far.apply(Batch::OrderUnits(&[step(FAR, unit_step_kind::SELL)])),
        [ResultCode::OrderNotFound]
    );
    let bad = [
        UnitStep {
            shard_count: 1,
            ..step(FAR, unit_step_kind::RESERVE)
        },
        UnitStep {
            kind: 9,
            ..step(FAR, unit_step_kind::RESERVE)
        },
        UnitStep {
            flags: 1,
            ..step(FAR, unit_step_kind::RESERVE)
        },
    ];
    assert_eq!(
        far.apply(Batch::OrderUnits(&bad)),
        [
            ResultCode::ReservedFieldNotZero,
            ResultCode::ReservedFieldNotZero,
            ResultCode::ReservedFlag
        ]
    );
    assert_eq!(
        far.apply(Batch::OrderUnits(&[step(FAR, unit_step_kind::RESERVE)])),
        [ResultCode::Ok]
    );
    // A step of another order under the same id changes nothing.
    let other = UnitStep {
        order: Order {
            amount: 31,
            ..placing
        },
        ..step(FAR, unit_step_kind::RELEASE)
    };
    assert_eq!(
        far.apply(Batch::OrderUnits(&[other])),
        [ResultCode::ExistsWithDifferentFields]
    );
    // Restock before a sale: refused, nothing changes.
    assert_eq!(
        far.apply(Batch::OrderUnits(&[step(FAR, unit_step_kind::RESTOCK)])),
        [ResultCode::ExistsWithDifferentFields]
    );
    assert_eq!(far.units(far_sku()), (4, 1, 0));
    // An outcome of no step in flight changes nothing on the order's shard.
    let stray = UnitOutcome {
        order_id: OrderId(9),
        target_shard: FAR as u32,
        kind: unit_step_kind::RESERVE,
        code: 0,
        reserved: [0; 4],
    };
    let orders = &mut world.shards[ORDERS];
    assert_eq!(
        orders.apply(Batch::UnitConfirm(&[stray])),
        [ResultCode::Exists]
    );
    let malformed = UnitOutcome {
        reserved: [1; 4],
        ..stray
    };
    assert_eq!(
        orders.apply(Batch::UnitConfirm(&[malformed])),
        [ResultCode::ReservedFieldNotZero]
    );
}

#[test]
fn snapshots_with_unit_steps_refuse_every_truncation_and_survive_garbage() {
    let mut world = World::with_line_shards();
    // Order 10 paid (its sells out), order 11 reserving its lines, order 12 failed.
    assert_eq!(
        world.place_spread(spread(10, 110, 30, 1, 1)),
        ResultCode::Ok
    );
    world.settle();
    assert_eq!(world.orders().pay(action(10, 210)), ResultCode::Ok);
    world.deliver_messages_only();
    assert_eq!(
        world.place_spread(spread(11, 111, 30, 1, 1)),
        ResultCode::Ok
    );
    assert_eq!(
        world.place_spread(spread(12, 112, 30, 9, 1)),
        ResultCode::Ok
    );
    assert!(world.orders().sm.unit_outbox().len() >= 3);
    let mut seed = 0x5EED_u64;
    for shard in [ORDERS, FAR, BUYERS] {
        let bytes = world.shards[shard].sm.snapshot();
        for cut in 0..bytes.len() {
            assert!(
                StateMachine::restore(&bytes[..cut]).is_err(),
                "shard {shard}, cut at {cut}"
            );
        }
        // Flipped bytes past the header (whose capacities are allocated as given: restore
        // reads only checksummed files), most in the last sections (the order saga's and
        // the units'): refused, or a machine that works and snapshots back to the same
        // bytes.
        let tail = bytes.len().saturating_sub(2_000).max(HEADER_SIZE_BYTES);
        for _ in 0..2_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let at = tail + (seed >> 33) as usize % (bytes.len() - tail);
            let mut bad = bytes.clone();
            bad[at] ^= 1 << ((seed >> 29) % 8);
            if let Ok(restored) = StateMachine::restore(&bad) {
                let _ = restored.state_hash();
                assert!(restored.snapshot() == bad, "shard {shard}, byte {at}");
            }
        }
    }
}

/// The last sections of a snapshot of the order's shard with `spans` order spans (52
/// bytes each), no order outbox entry, `units` unit steps (288 bytes each) and no hold:
/// where the spans begin.
fn spans_offset(bytes: &[u8], spans: usize, units: usize) -> usize {
    let tail = 8 + spans * 52 + 8 + 8 + units * 288 + 8;
    let start = bytes.len() - tail;
    let count = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(count(start), spans as u64);
    assert_eq!(count(start + 8 + spans * 52), 0, "no order outbox entry");
    assert_eq!(count(start + 8 + spans * 52 + 8), units as u64);
    start + 8
}

#[test]
fn a_format_5_snapshot_of_orders_spanning_shards_restores_to_the_same_hash() {
    let mut world = World::new();
    let placing = order(13, 113, 30, &[(super::fixtures::SKU_A, 1)]);
    assert_eq!(world.place(placing), ResultCode::Ok);
    world.settle();
    let sm = &world.shards[ORDERS].sm;
    assert_eq!(sm.spanning_orders(), 1);
    let bytes = sm.snapshot();
    // Version 5: 40-byte spans (the first 40 bytes of version 6's), no unit sections.
    let at = spans_offset(&bytes, 1, 0);
    let mut v5 = bytes[..at].to_vec();
    v5.extend_from_slice(&bytes[at..at + 40]);
    v5.extend_from_slice(&0u64.to_le_bytes());
    v5[8..10].copy_from_slice(&5u16.to_le_bytes());
    let restored = StateMachine::restore(&v5).expect("version 5");
    assert_eq!(restored.state_hash(), sm.state_hash());
}

#[test]
fn a_snapshot_whose_reservations_do_not_match_its_span_is_refused() {
    let mut world = World::with_line_shards();
    assert_eq!(
        world.place_spread(spread(14, 114, 30, 1, 1)),
        ResultCode::Ok
    );
    let bytes = world.shards[ORDERS].sm.snapshot();
    let at = spans_offset(&bytes, 1, 1);
    assert!(StateMachine::restore(&bytes).is_ok());
    // Lines reserved elsewhere (at 44 in the span): 0 of 2; 1 names another shard than
    // the one asked, 3 more than there are.
    for reserved in [1u32, 3] {
        let mut bad = bytes.clone();
        bad[at + 44..at + 48].copy_from_slice(&reserved.to_le_bytes());
        assert!(
            matches!(
                StateMachine::restore(&bad),
                Err(crate::SnapshotError::InvalidValue { .. })
            ),
            "{reserved} reserved"
        );
    }
}

#[test]
fn failing_lines_on_two_shards_answer_the_first_shard_asked() {
    // As docs/SHARDS.md says: one shard would answer `sold_out` (the second line fails
    // first); the order's shard checks its own lines first and answers `sku_not_found`.
    let mut world = World::with_line_shards();
    let missing = sku_on(ORDERS, 5);
    let placing = order(
        15,
        115,
        30,
        &[(home_sku(), 1), (far_sku(), 9), (missing, 1)],
    );
    assert_eq!(world.place_spread(placing), ResultCode::SkuNotFound);
    assert!(world.orders().sm.unit_outbox().is_empty());
    assert_eq!(world.units_everywhere(), [(10, 0, 0), (5, 0, 0), (4, 0, 0)]);
}
