//! Placing orders: every line reserved and the payment held, atomically, with every
//! validation and state code. Paying, cancelling and expiry are in `payments.rs`, refunds
//! in `refunds.rs`, the dispatch outbox in `dispatch.rs`.

use super::fixtures::*;
use super::harness::{Harness, BUYER_FUNDS};
use crate::batch::Batch;
use crate::constants::TRANSFER_CODE_ORDER_PAYMENT;
use crate::ids::{AccountId, OrderId, SkuId, TransferId};
use crate::records::{transfer_flags, Order, OrderLine, OrderStatus, Transfer};
use crate::result::ResultCode as R;
use crate::state_machine::{OrderLookup, OrderView, PendingStatus};

/// What the fixture orders cost.
pub(super) const PRICE: u64 = 300;

/// A shop with order 1 placed: 2 × SKU A and 1 × SKU B, authorized by transfer 500;
/// returns the log time it was placed at.
pub(super) fn shop_with_order() -> (Harness, u64) {
    let mut h = Harness::shop();
    let placed_at = h.now();
    assert_eq!(
        h.place(order(1, 500, PRICE, &[(SKU_A, 2), (SKU_B, 1)])),
        R::Ok
    );
    (h, placed_at)
}

#[test]
fn placing_reserves_every_line_and_holds_the_payment() {
    let (h, t) = shop_with_order();
    assert_eq!(h.units(SKU_A), (8, 2, 0));
    assert_eq!(h.units(SKU_B), (2, 1, 0));
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 1);
    assert_eq!(h.balances(BUYER), (PRICE, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, PRICE, 0));
    let placed = order(1, 500, PRICE, &[(SKU_A, 2), (SKU_B, 1)]);
    let expected = OrderView {
        order: Order {
            timestamp: t,
            status: OrderStatus::Reserved as u16,
            ..placed
        },
        expires_at: t + ORDER_TIMEOUT_NS,
        payment_transfer_id: TransferId::ZERO,
        closing_transfer_id: TransferId::ZERO,
    };
    assert_eq!(h.sm.order(OrderId(1)), Some(OrderLookup::Placed(expected)));
    let authorization = Transfer {
        id: TransferId(500),
        debit_account_id: BUYER,
        credit_account_id: MERCHANT,
        user_data: 1,
        amount: PRICE,
        ledger: LEDGER,
        code: TRANSFER_CODE_ORDER_PAYMENT,
        flags: transfer_flags::PENDING,
        timestamp: t,
        ..Transfer::default()
    };
    assert_eq!(
        h.committed(500),
        (authorization, Some(PendingStatus::Pending))
    );
    assert_eq!(h.sm.expiry_next(), Some(t + ORDER_TIMEOUT_NS));
    assert_eq!(h.sm.order(OrderId(2)), None);
    assert_eq!(
        h.sm.dispatch_feed(0, 10),
        [],
        "nothing to ship before payment"
    );
}

#[test]
fn a_sold_out_second_line_rolls_back_the_first_and_holds_no_funds() {
    let mut h = Harness::shop();
    let before = h.snapshot();
    // SKU B is limited, so the first line also moves the buyer's per-SKU count.
    let lines = [(SKU_B, 1), (SKU_C, 2)];
    assert_eq!(h.place(order(1, 500, PRICE, &lines)), R::SoldOut);
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.sm.buyer_units(SKU_B, BUYER), 0);
    assert_eq!(
        h.sm.order(OrderId(1)),
        Some(OrderLookup::Failed(R::SoldOut))
    );
    assert_eq!(
        h.sm.transfer(TransferId(500)),
        None,
        "the authorization was never made"
    );
    // The order id keeps its failure; its transfer id is free for a new order.
    assert_eq!(
        h.place(order(1, 500, PRICE, &[(SKU_A, 1)])),
        R::IdAlreadyFailed
    );
    assert_eq!(h.place(order(2, 500, PRICE, &[(SKU_A, 1)])), R::Ok);
}

#[test]
fn malformed_orders_are_rejected() {
    let valid = order(1, 500, PRICE, &[(SKU_A, 1), (SKU_B, 1)]);
    let mut reserved = valid;
    reserved.reserved[13] = 1;
    let mut past_count = valid;
    past_count.lines[2] = OrderLine {
        sku_id: SKU_C,
        quantity: 1,
        reserved: 0,
    };
    let mut line_reserved = valid;
    line_reserved.lines[1].reserved = 1;
    let cases = [
        (
            Order {
                timestamp: 1,
                ..valid
            },
            R::TimestampMustBeZero,
        ),
        (
            Order {
                status: OrderStatus::Paid as u16,
                ..valid
            },
            R::ReservedFieldNotZero,
        ),
        (reserved, R::ReservedFieldNotZero),
        (Order { flags: 1, ..valid }, R::ReservedFlag),
        (
            Order {
                id: OrderId::ZERO,
                ..valid
            },
            R::IdMustNotBeZero,
        ),
        (
            Order {
                transfer_id: TransferId::ZERO,
                ..valid
            },
            R::IdMustNotBeZero,
        ),
        (
            Order {
                buyer_id: AccountId::ZERO,
                ..valid
            },
            R::BuyerIdMustNotBeZero,
        ),
        (
            Order {
                merchant_id: AccountId::ZERO,
                ..valid
            },
            R::CreditAccountIdMustNotBeZero,
        ),
        (
            Order {
                merchant_id: BUYER,
                ..valid
            },
            R::BuyerMustNotBeMerchant,
        ),
        (Order { amount: 0, ..valid }, R::AmountMustNotBeZero),
        (
            Order {
                timeout_ns: 0,
                ..valid
            },
            R::TimeoutMustNotBeZero,
        ),
        (Order { ledger: 0, ..valid }, R::LedgerMustNotBeZero),
        (
            Order {
                line_count: 0,
                ..valid
            },
            R::OrderLinesInvalid,
        ),
        (
            Order {
                line_count: 9,
                ..valid
            },
            R::OrderLinesInvalid,
        ),
        (
            Order {
                line_count: 1,
                ..valid
            },
            R::OrderLinesInvalid,
        ), // Line 2 is past the count.
        (past_count, R::OrderLinesInvalid),
        (
            order(1, 500, PRICE, &[(SKU_A, 1), (SkuId(0), 1)]),
            R::SkuIdMustNotBeZero,
        ),
        (
            order(1, 500, PRICE, &[(SKU_A, 1), (SKU_B, 0)]),
            R::QuantityMustNotBeZero,
        ),
        (line_reserved, R::ReservedFieldNotZero),
        (
            order(1, 500, PRICE, &[(SKU_A, 1), (SKU_B, 1), (SKU_A, 2)]),
            R::DuplicateSkuInOrder,
        ),
    ];
    let mut h = Harness::shop();
    let before = h.snapshot();
    for (order, expected) in cases {
        assert_eq!(h.place(order), expected, "{order:?}");
    }
    assert_eq!(h.snapshot(), before);
    assert_eq!(
        h.sm.order(OrderId(1)),
        None,
        "rejections are not remembered"
    );
    assert_eq!(h.place(valid), R::Ok);
}

#[test]
fn an_order_may_have_eight_lines() {
    let mut h = Harness::shop();
    let skus: Vec<(SkuId, u32)> = (10..18).map(|id| (SkuId(id), 1)).collect();
    for &(id, _) in &skus {
        assert_eq!(h.create_sku(sku(id, 1, 0)), R::Ok);
    }
    assert_eq!(h.place(order(1, 500, PRICE, &skus)), R::Ok);
    assert!(h
        .sm
        .skus_sorted()
        .iter()
        .filter(|s| s.id.0 >= 10)
        .all(|s| s.units_reserved == 1));
}

#[test]
fn placing_fails_on_the_state_without_any_effect() {
    let mut h = Harness::shop();
    let poor = AccountId(40);
    assert_eq!(h.create_account(wallet(poor)), R::Ok);
    let before = h.snapshot();
    let cases = [
        (order(1, 9_001, PRICE, &[(SKU_A, 1)]), R::TransferIdInUse),
        (
            order(2, 501, PRICE, &[(SKU_A, 1), (SKU_NONE, 1)]),
            R::SkuNotFound,
        ),
        (
            order(3, 502, BUYER_FUNDS + 1, &[(SKU_A, 1)]),
            R::ExceedsCredits,
        ),
        (
            Order {
                buyer_id: poor,
                ..order(4, 503, 1, &[(SKU_A, 1)])
            },
            R::ExceedsCredits,
        ),
        (
            order(5, 504, PRICE, &[(SKU_A, 1), (SKU_B, 3)]),
            R::LimitReached,
        ),
        (order(6, 505, PRICE, &[(SKU_A, 11)]), R::SoldOut),
        (
            Order {
                buyer_id: NOBODY,
                ..order(7, 506, PRICE, &[(SKU_A, 1)])
            },
            R::DebitAccountNotFound,
        ),
        (
            Order {
                merchant_id: NOBODY,
                ..order(8, 507, PRICE, &[(SKU_A, 1)])
            },
            R::CreditAccountNotFound,
        ),
        (
            Order {
                ledger: 2,
                ..order(9, 508, PRICE, &[(SKU_A, 1)])
            },
            R::TransferMustHaveSameLedgerAsAccounts,
        ),
        (
            Order {
                timeout_ns: u64::MAX,
                ..order(10, 509, PRICE, &[(SKU_A, 1)])
            },
            R::TimeoutOverflows,
        ),
    ];
    for (order, expected) in cases {
        assert_eq!(h.place(order), expected, "{order:?}");
        assert_eq!(h.sm.order(order.id), Some(OrderLookup::Failed(expected)));
        assert_eq!(h.place(order), R::IdAlreadyFailed);
    }
    assert_eq!(h.snapshot(), before);
    // None of the failed orders left an authorization behind.
    for id in 501..=509 {
        assert_eq!(h.sm.transfer(TransferId(id)), None, "transfer {id}");
    }
}

#[test]
fn an_order_transfer_id_is_in_use_by_any_transfer_or_order() {
    let mut h = Harness::shop();
    assert_eq!(
        h.create_transfer(transfer(600, BUYER, MERCHANT, 10_000)),
        R::ExceedsCredits
    );
    assert_eq!(
        h.place(order(1, 600, PRICE, &[(SKU_A, 1)])),
        R::TransferIdInUse
    );
    let batch = [
        order(2, 601, PRICE, &[(SKU_A, 1)]),
        order(3, 601, PRICE, &[(SKU_A, 1)]),
    ];
    assert_eq!(
        h.apply(Batch::PlaceOrders(&batch)),
        [R::Ok, R::TransferIdInUse]
    );
    // The authorization id is taken for client transfers too.
    let reuse = transfer(601, BANK, MERCHANT, 1);
    assert_eq!(h.create_transfer(reuse), R::ExistsWithDifferentFields);
}

#[test]
fn a_retried_order_is_exists_and_holds_once() {
    let (mut h, _) = shop_with_order();
    let before = h.snapshot();
    let placed = order(1, 500, PRICE, &[(SKU_A, 2), (SKU_B, 1)]);
    assert_eq!(h.place(placed), R::Exists);
    assert_eq!(
        h.place(Order {
            amount: PRICE + 1,
            ..placed
        }),
        R::ExistsWithDifferentFields
    );
    assert_eq!(
        h.place(order(1, 501, PRICE, &[(SKU_A, 2)])),
        R::ExistsWithDifferentFields
    );
    assert_eq!(h.snapshot(), before);
}

#[test]
fn the_hold_of_an_order_is_not_spendable() {
    let mut h = Harness::shop();
    assert_eq!(h.place(order(1, 500, 800, &[(SKU_A, 1)])), R::Ok);
    assert_eq!(
        h.create_transfer(transfer(10, BUYER, BANK, 201)),
        R::ExceedsCredits
    );
    assert_eq!(
        h.place(order(2, 501, 201, &[(SKU_A, 1)])),
        R::ExceedsCredits
    );
    assert_eq!(h.create_transfer(transfer(11, BUYER, BANK, 200)), R::Ok);
}

#[test]
fn orders_in_one_batch_compete_for_the_stock_in_log_order() {
    let mut h = Harness::shop();
    let buyer_2 = |o: Order| Order {
        buyer_id: BUYER_2,
        ..o
    };
    let batch = [
        order(1, 500, 10, &[(SKU_C, 1)]),
        buyer_2(order(2, 501, 10, &[(SKU_C, 1)])),
        buyer_2(order(3, 502, 10, &[(SKU_A, 1)])),
    ];
    assert_eq!(
        h.apply(Batch::PlaceOrders(&batch)),
        [R::Ok, R::SoldOut, R::Ok]
    );
    assert_eq!(h.units(SKU_C), (0, 1, 0));
    let pay = [action(1, 600), action(3, 601)];
    assert_eq!(h.apply(Batch::PayOrders(&pay)), [R::Ok, R::Ok]);
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 20));
}

#[test]
fn an_order_that_would_overflow_the_merchant_s_balance_fails() {
    let mut h = Harness::shop();
    // A fresh, unconstrained source, so only the merchant's side is near the top.
    let source = AccountId(50);
    assert_eq!(h.create_account(account(source)), R::Ok);
    assert_eq!(
        h.create_transfer(transfer(10, source, MERCHANT, u64::MAX)),
        R::Ok
    );
    let before = h.snapshot();
    assert_eq!(h.place(order(1, 500, 1, &[(SKU_A, 1)])), R::Overflows);
    assert_eq!(
        h.snapshot(),
        before,
        "the line reserved before the payment is rolled back"
    );
}
