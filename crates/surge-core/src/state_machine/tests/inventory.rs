//! SKUs and direct reservations: create, reserve, confirm, release and expire, with stock,
//! per-buyer limits and every result code. The harness checks after every batch that
//! `available + reserved + sold == stocked` and that reserved units match live holds.

use super::fixtures::*;
use super::harness::Harness;
use crate::batch::Batch;
use crate::ids::{AccountId, OrderId, SkuId};
use crate::records::{Reservation, ReservationKey, ReservationStatus, Sku};
use crate::result::ResultCode as R;
use crate::state_machine::ReservationLookup;

/// The stored reservation, which must be held (not failed).
fn held(h: &Harness, order: u128, sku_id: SkuId) -> Reservation {
    match h.sm.reservation(OrderId(order), sku_id) {
        Some(ReservationLookup::Held(reservation)) => reservation,
        other => panic!("reservation ({order}, {sku_id}) is not held: {other:?}"),
    }
}

fn status(h: &Harness, order: u128, sku_id: SkuId) -> Option<ReservationStatus> {
    ReservationStatus::from_u16(held(h, order, sku_id).status)
}

#[test]
fn a_new_sku_has_all_its_units_available() {
    let mut h = Harness::new();
    let t = h.now();
    let new = Sku {
        user_data: 9,
        code: 4,
        ..sku(SKU_A, 10, 2)
    };
    assert_eq!(h.create_sku(new), R::Ok);
    let stored = h.sm.sku(SKU_A).expect("created");
    assert_eq!(
        stored,
        Sku {
            units_available: 10,
            timestamp: t,
            ..new
        }
    );
    assert_eq!(h.sm.sku(SKU_NONE), None);
    // A SKU with nothing in stock is allowed: it is simply sold out.
    assert_eq!(h.create_sku(sku(SKU_B, 0, 0)), R::Ok);
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_B, 1)), R::SoldOut);
}

#[test]
fn malformed_skus_are_rejected() {
    let mut reserved = sku(SKU_A, 10, 0);
    reserved.reserved[55] = 1;
    let cases = [
        (
            Sku {
                timestamp: 1,
                ..sku(SKU_A, 10, 0)
            },
            R::TimestampMustBeZero,
        ),
        (reserved, R::ReservedFieldNotZero),
        (
            Sku {
                flags: 1,
                ..sku(SKU_A, 10, 0)
            },
            R::ReservedFlag,
        ),
        (sku(SkuId(0), 10, 0), R::IdMustNotBeZero),
        (
            Sku {
                units_available: 10,
                ..sku(SKU_A, 10, 0)
            },
            R::UnitCountersMustBeZero,
        ),
        (
            Sku {
                units_reserved: 1,
                ..sku(SKU_A, 10, 0)
            },
            R::UnitCountersMustBeZero,
        ),
        (
            Sku {
                units_sold: 1,
                ..sku(SKU_A, 10, 0)
            },
            R::UnitCountersMustBeZero,
        ),
    ];
    let mut h = Harness::new();
    for (sku, expected) in cases {
        assert_eq!(h.create_sku(sku), expected, "{sku:?}");
    }
    assert_eq!(h.sm.skus_sorted(), []);
}

#[test]
fn recreating_a_sku_is_exists_or_exists_with_different_fields() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 4)), R::Ok);
    let before = h.snapshot();
    // Counters moved since creation; the retry is still the same SKU.
    assert_eq!(h.create_sku(sku(SKU_A, 10, 0)), R::Exists);
    let variants = [
        sku(SKU_A, 11, 0),
        sku(SKU_A, 10, 1),
        Sku {
            code: 1,
            ..sku(SKU_A, 10, 0)
        },
        Sku {
            user_data: 1,
            ..sku(SKU_A, 10, 0)
        },
    ];
    for variant in variants {
        assert_eq!(
            h.create_sku(variant),
            R::ExistsWithDifferentFields,
            "{variant:?}"
        );
    }
    assert_eq!(h.snapshot(), before);
}

#[test]
fn reserving_moves_units_from_available_to_reserved() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 4)), R::Ok);
    assert_eq!(h.units(SKU_A), (6, 4, 0));
    let expected = Reservation {
        status: ReservationStatus::Reserved as u16,
        timestamp: t,
        ..reservation(1, BUYER, SKU_A, 4)
    };
    assert_eq!(held(&h, 1, SKU_A), expected);
    assert_eq!(h.sm.reservation(OrderId(1), SKU_B), None);
    // One order id may hold several SKUs: the key is (order, SKU).
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_C, 1)), R::Ok);
    assert_eq!(h.units(SKU_C), (0, 1, 0));
}

#[test]
fn malformed_reservations_are_rejected() {
    let valid = reservation(1, BUYER, SKU_A, 1);
    let cases = [
        (
            Reservation {
                timestamp: 1,
                ..valid
            },
            R::TimestampMustBeZero,
        ),
        (Reservation { status: 1, ..valid }, R::ReservedFieldNotZero),
        (Reservation { flags: 1, ..valid }, R::ReservedFlag),
        (
            Reservation {
                order_id: OrderId(0),
                ..valid
            },
            R::IdMustNotBeZero,
        ),
        (
            Reservation {
                sku_id: SkuId(0),
                ..valid
            },
            R::SkuIdMustNotBeZero,
        ),
        (
            Reservation {
                buyer_id: AccountId(0),
                ..valid
            },
            R::BuyerIdMustNotBeZero,
        ),
        (
            Reservation {
                quantity: 0,
                ..valid
            },
            R::QuantityMustNotBeZero,
        ),
        (
            Reservation {
                timeout_ns: 0,
                ..valid
            },
            R::TimeoutMustNotBeZero,
        ),
    ];
    let mut h = Harness::shop();
    let before = h.snapshot();
    for (reservation, expected) in cases {
        assert_eq!(h.reserve(reservation), expected, "{reservation:?}");
    }
    assert_eq!(h.snapshot(), before);
    assert_eq!(
        h.sm.reservation(OrderId(1), SKU_A),
        None,
        "rejections are not remembered"
    );
}

#[test]
fn reserving_an_unknown_sku_fails_and_the_key_stays_failed() {
    let mut h = Harness::shop();
    assert_eq!(
        h.reserve(reservation(1, BUYER, SKU_NONE, 1)),
        R::SkuNotFound
    );
    let failed = Some(ReservationLookup::Failed(R::SkuNotFound));
    assert_eq!(h.sm.reservation(OrderId(1), SKU_NONE), failed);
    assert_eq!(h.create_sku(sku(SKU_NONE, 5, 0)), R::Ok);
    assert_eq!(
        h.reserve(reservation(1, BUYER, SKU_NONE, 1)),
        R::IdAlreadyFailed
    );
    assert_eq!(h.units(SKU_NONE), (5, 0, 0));
}

#[test]
fn a_reservation_past_the_stock_is_sold_out() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 11)), R::SoldOut);
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_A, 10)), R::Ok);
    assert_eq!(h.reserve(reservation(3, BUYER_2, SKU_A, 1)), R::SoldOut);
    assert_eq!(h.units(SKU_A), (0, 10, 0));
    // Freed stock does not revive a failed key.
    assert_eq!(h.release(key(2, SKU_A)), R::Ok);
    assert_eq!(
        h.reserve(reservation(3, BUYER_2, SKU_A, 1)),
        R::IdAlreadyFailed
    );
    assert_eq!(
        h.sm.reservation(OrderId(3), SKU_A),
        Some(ReservationLookup::Failed(R::SoldOut))
    );
    assert_eq!(h.reserve(reservation(4, BUYER_2, SKU_A, 1)), R::Ok);
}

#[test]
fn a_buyer_may_hold_no_more_than_the_limit() {
    let mut h = Harness::shop();
    // SKU B: three units, two per buyer.
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_B, 3)), R::LimitReached);
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_B, 1)), R::Ok);
    assert_eq!(h.reserve(reservation(3, BUYER, SKU_B, 1)), R::Ok);
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 2);
    assert_eq!(h.reserve(reservation(4, BUYER, SKU_B, 1)), R::LimitReached);
    assert_eq!(h.reserve(reservation(5, BUYER_2, SKU_B, 1)), R::Ok);
    assert_eq!(h.reserve(reservation(6, BUYER_2, SKU_B, 1)), R::SoldOut);
    // Releasing frees the limit.
    assert_eq!(h.release(key(2, SKU_B)), R::Ok);
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 1);
    assert_eq!(h.reserve(reservation(7, BUYER, SKU_B, 1)), R::Ok);
    // Unlimited SKUs keep no per-buyer count.
    assert_eq!(h.reserve(reservation(8, BUYER, SKU_A, 5)), R::Ok);
    assert_eq!(h.sm.buyer_units(SKU_A, BUYER), 0);
}

#[test]
fn bought_units_still_count_towards_the_limit() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_B, 2)), R::Ok);
    assert_eq!(h.confirm(key(1, SKU_B)), R::Ok);
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 2);
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_B, 1)), R::LimitReached);
}

#[test]
fn a_retried_reservation_is_exists_and_holds_once() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 4)), R::Ok);
    let before = h.snapshot();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 4)), R::Exists);
    assert_eq!(
        h.reserve(reservation(1, BUYER, SKU_A, 5)),
        R::ExistsWithDifferentFields
    );
    assert_eq!(
        h.reserve(reservation(1, BUYER_2, SKU_A, 4)),
        R::ExistsWithDifferentFields
    );
    assert_eq!(h.snapshot(), before);
    // The answer to a retry does not depend on what happened to the reservation since.
    assert_eq!(h.confirm(key(1, SKU_A)), R::Ok);
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 4)), R::Exists);
    assert_eq!(h.units(SKU_A), (6, 0, 4));
}

#[test]
fn confirming_sells_the_units_once() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 4)), R::Ok);
    assert_eq!(h.confirm(key(1, SKU_A)), R::Ok);
    assert_eq!(h.units(SKU_A), (6, 0, 4));
    assert_eq!(status(&h, 1, SKU_A), Some(ReservationStatus::Confirmed));
    assert_eq!(h.confirm(key(1, SKU_A)), R::Exists);
    assert_eq!(h.release(key(1, SKU_A)), R::ReservationAlreadyConfirmed);
    assert_eq!(h.units(SKU_A), (6, 0, 4));
}

#[test]
fn releasing_returns_the_units_once() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_B, 2)), R::Ok);
    assert_eq!(h.release(key(1, SKU_B)), R::Ok);
    assert_eq!(h.units(SKU_B), (3, 0, 0));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 0);
    assert_eq!(status(&h, 1, SKU_B), Some(ReservationStatus::Released));
    assert_eq!(h.release(key(1, SKU_B)), R::Exists);
    assert_eq!(h.confirm(key(1, SKU_B)), R::ReservationAlreadyReleased);
    assert_eq!(h.units(SKU_B), (3, 0, 0));
}

#[test]
fn confirm_and_release_need_a_held_reservation() {
    let mut h = Harness::shop();
    assert_eq!(h.confirm(key(1, SKU_A)), R::ReservationNotFound);
    assert_eq!(h.release(key(1, SKU_A)), R::ReservationNotFound);
    // A key whose reservation failed holds nothing either.
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_A, 50)), R::SoldOut);
    assert_eq!(h.confirm(key(2, SKU_A)), R::ReservationNotFound);
    assert_eq!(h.release(key(2, SKU_A)), R::ReservationNotFound);
    // Same order id, other SKU.
    assert_eq!(h.reserve(reservation(3, BUYER, SKU_A, 1)), R::Ok);
    assert_eq!(h.confirm(key(3, SKU_B)), R::ReservationNotFound);
}

#[test]
fn malformed_reservation_keys_are_rejected() {
    let mut h = Harness::shop();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 1)), R::Ok);
    let mut reserved = key(1, SKU_A);
    reserved.reserved[7] = 1;
    let cases = [
        (reserved, R::ReservedFieldNotZero),
        (
            ReservationKey {
                order_id: OrderId(0),
                ..key(1, SKU_A)
            },
            R::IdMustNotBeZero,
        ),
        (key(1, SkuId(0)), R::SkuIdMustNotBeZero),
    ];
    for (key, expected) in cases {
        assert_eq!(h.confirm(key), expected, "confirm {key:?}");
        assert_eq!(h.release(key), expected, "release {key:?}");
    }
    assert_eq!(status(&h, 1, SKU_A), Some(ReservationStatus::Reserved));
}

#[test]
fn an_expired_reservation_returns_its_units_and_frees_the_limit() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_B, 2)), R::Ok);
    assert_eq!(h.sm.expiry_next(), Some(t + RESERVATION_TIMEOUT_NS));
    h.pulse_at(t + RESERVATION_TIMEOUT_NS - 1);
    assert_eq!(status(&h, 1, SKU_B), Some(ReservationStatus::Reserved));
    h.pulse_at(t + RESERVATION_TIMEOUT_NS);
    assert_eq!(status(&h, 1, SKU_B), Some(ReservationStatus::Expired));
    assert_eq!(h.units(SKU_B), (3, 0, 0));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 0);
    assert_eq!(h.confirm(key(1, SKU_B)), R::ReservationExpired);
    assert_eq!(h.release(key(1, SKU_B)), R::ReservationExpired);
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_B, 2)), R::Ok);
}

#[test]
fn a_confirm_one_ns_before_the_expiry_is_in_time() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 2)), R::Ok);
    let keys = [key(1, SKU_A)];
    let due = t + RESERVATION_TIMEOUT_NS;
    assert_eq!(
        h.apply_at(due - 1, Batch::ConfirmReservations(&keys)),
        [R::Ok]
    );
    h.pulse_at(due);
    assert_eq!(h.units(SKU_A), (8, 0, 2));
}

#[test]
fn a_command_timestamped_at_the_expiry_sees_it_expired_before_the_sweep() {
    let mut h = Harness::shop();
    let due_1 = h.now() + RESERVATION_TIMEOUT_NS;
    assert_eq!(h.reserve(reservation(1, BUYER, SKU_A, 1)), R::Ok);
    let due_2 = h.now() + RESERVATION_TIMEOUT_NS;
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_A, 2)), R::Ok);
    // Each batch starts one ns before its reservation is due, so the sweep leaves it; the
    // second command is timestamped exactly at the due time.
    let keys = [key(99, SKU_A), key(1, SKU_A)];
    let results = h.apply_at(due_1 - 1, Batch::ConfirmReservations(&keys));
    assert_eq!(results, [R::ReservationNotFound, R::ReservationExpired]);
    assert_eq!(h.units(SKU_A), (7, 3, 0), "still held until the sweep");
    let keys = [key(99, SKU_A), key(2, SKU_A)];
    let results = h.apply_at(due_2 - 1, Batch::ReleaseReservations(&keys));
    assert_eq!(results, [R::ReservationNotFound, R::ReservationExpired]);
    assert_eq!(status(&h, 1, SKU_A), Some(ReservationStatus::Expired));
    assert_eq!(status(&h, 2, SKU_A), Some(ReservationStatus::Reserved));
    assert_eq!(h.units(SKU_A), (8, 2, 0));
    h.pulse_at(due_2 + 1);
    assert_eq!(status(&h, 2, SKU_A), Some(ReservationStatus::Expired));
    assert_eq!(h.units(SKU_A), (10, 0, 0));
}

#[test]
fn resolved_reservations_do_not_expire() {
    let mut h = Harness::shop();
    let t = h.now();
    let batch = [
        reservation(1, BUYER, SKU_A, 2),
        reservation(2, BUYER, SKU_A, 3),
    ];
    assert_eq!(h.apply(Batch::Reserve(&batch)), [R::Ok, R::Ok]);
    assert_eq!(h.confirm(key(1, SKU_A)), R::Ok);
    assert_eq!(h.release(key(2, SKU_A)), R::Ok);
    h.pulse_at(t + 2 * RESERVATION_TIMEOUT_NS);
    assert_eq!(status(&h, 1, SKU_A), Some(ReservationStatus::Confirmed));
    assert_eq!(status(&h, 2, SKU_A), Some(ReservationStatus::Released));
    assert_eq!(h.units(SKU_A), (8, 0, 2));
}

#[test]
fn a_reservation_timeout_past_the_end_of_log_time_fails() {
    let mut h = Harness::shop();
    let forever = Reservation {
        timeout_ns: u64::MAX,
        ..reservation(1, BUYER, SKU_A, 1)
    };
    assert_eq!(h.reserve(forever), R::TimeoutOverflows);
    let failed = Some(ReservationLookup::Failed(R::TimeoutOverflows));
    assert_eq!(h.sm.reservation(OrderId(1), SKU_A), failed);
    assert_eq!(h.units(SKU_A), (10, 0, 0));
}

#[test]
fn one_batch_reserves_in_order_until_the_stock_runs_out() {
    let mut h = Harness::shop();
    let stampede: Vec<Reservation> = (1..=5)
        .map(|order| reservation(order, AccountId(order + 100), SKU_B, 1))
        .collect();
    let results = h.apply(Batch::Reserve(&stampede));
    assert_eq!(results, [R::Ok, R::Ok, R::Ok, R::SoldOut, R::SoldOut]);
    assert_eq!(h.units(SKU_B), (0, 3, 0));
}
