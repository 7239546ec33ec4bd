//! Two-phase transfers: a pending hold, then a full or partial post, a void, or expiry by
//! log time; and every code a post or void can fail with.

use super::fixtures::*;
use super::harness::{Harness, BUYER_FUNDS};
use crate::batch::Batch;
use crate::constants::TRANSFER_CODE_ORDER_PAYMENT;
use crate::ids::{AccountId, TransferId};
use crate::records::Transfer;
use crate::result::ResultCode as R;
use crate::state_machine::{PendingStatus, TransferLookup};

/// The timeout of the pending transfers that expire in these tests.
const TIMEOUT_NS: u64 = 10_000;

/// A shop where [`BUYER`] holds 400 for [`MERCHANT`] under pending transfer 10 (no timeout).
fn shop_with_hold() -> Harness {
    let mut h = Harness::shop();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 400, 0)),
        R::Ok
    );
    assert_eq!(h.balances(BUYER), (400, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 400, 0));
    assert_eq!(h.committed(10).1, Some(PendingStatus::Pending));
    h
}

#[test]
fn posting_amount_zero_captures_the_whole_hold() {
    let mut h = shop_with_hold();
    let t = h.now();
    assert_eq!(h.create_transfer(post(11, 10, 0)), R::Ok);
    assert_eq!(h.balances(BUYER), (0, 400, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 400));
    assert_eq!(h.committed(10).1, Some(PendingStatus::Posted));
    // The stored post names the pending transfer's accounts and the amount it captured.
    let expected = Transfer {
        debit_account_id: BUYER,
        credit_account_id: MERCHANT,
        amount: 400,
        ledger: LEDGER,
        code: TRANSFER_CODE,
        timestamp: t,
        ..post(11, 10, 0)
    };
    assert_eq!(h.committed(11), (expected, None));
}

#[test]
fn a_partial_post_captures_part_and_releases_the_rest() {
    let mut h = shop_with_hold();
    assert_eq!(h.create_transfer(post(11, 10, 150)), R::Ok);
    assert_eq!(h.balances(BUYER), (0, 150, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 150));
    assert_eq!(h.committed(11).0.amount, 150);
    // The rest of the hold is gone for good: no second post.
    assert_eq!(
        h.create_transfer(post(12, 10, 100)),
        R::PendingTransferAlreadyPosted
    );
}

#[test]
fn posting_exactly_the_pending_amount_is_a_full_post() {
    let mut h = shop_with_hold();
    assert_eq!(h.create_transfer(post(11, 10, 400)), R::Ok);
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 400));
}

#[test]
fn a_void_releases_the_hold() {
    let mut h = shop_with_hold();
    assert_eq!(h.create_transfer(void(11, 10)), R::Ok);
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 0));
    assert_eq!(h.committed(10).1, Some(PendingStatus::Voided));
    assert_eq!(h.committed(11).0.amount, 400);
}

#[test]
fn a_void_may_name_the_pending_amount_but_no_other() {
    let mut h = shop_with_hold();
    let partial_void = Transfer {
        amount: 399,
        ..void(11, 10)
    };
    assert_eq!(h.create_transfer(partial_void), R::ExceedsPendingAmount);
    let over_void = Transfer {
        amount: 401,
        ..void(12, 10)
    };
    assert_eq!(h.create_transfer(over_void), R::ExceedsPendingAmount);
    assert_eq!(
        h.create_transfer(Transfer {
            amount: 400,
            ..void(13, 10)
        }),
        R::Ok
    );
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
}

#[test]
fn posting_more_than_the_hold_fails_and_keeps_it() {
    let mut h = shop_with_hold();
    assert_eq!(
        h.create_transfer(post(11, 10, 401)),
        R::ExceedsPendingAmount
    );
    assert_eq!(h.committed(10).1, Some(PendingStatus::Pending));
    assert_eq!(
        h.sm.transfer(TransferId(11)),
        Some(TransferLookup::Failed(R::ExceedsPendingAmount))
    );
    assert_eq!(h.create_transfer(post(12, 10, 400)), R::Ok);
}

#[test]
fn a_resolved_hold_cannot_be_resolved_again() {
    let mut h = shop_with_hold();
    assert_eq!(h.create_transfer(post(11, 10, 0)), R::Ok);
    assert_eq!(
        h.create_transfer(post(12, 10, 0)),
        R::PendingTransferAlreadyPosted
    );
    assert_eq!(
        h.create_transfer(void(13, 10)),
        R::PendingTransferAlreadyPosted
    );

    assert_eq!(
        h.create_transfer(pending(20, BUYER, MERCHANT, 100, 0)),
        R::Ok
    );
    assert_eq!(h.create_transfer(void(21, 20)), R::Ok);
    assert_eq!(
        h.create_transfer(void(22, 20)),
        R::PendingTransferAlreadyVoided
    );
    assert_eq!(
        h.create_transfer(post(23, 20, 0)),
        R::PendingTransferAlreadyVoided
    );
    assert_eq!(h.balances(BUYER), (0, 400, 0, BUYER_FUNDS));
}

#[test]
fn a_retried_post_is_exists_and_captures_once() {
    let mut h = shop_with_hold();
    assert_eq!(h.create_transfer(post(11, 10, 100)), R::Ok);
    let before = h.snapshot();
    assert_eq!(h.create_transfer(post(11, 10, 100)), R::Exists);
    assert_eq!(
        h.create_transfer(post(11, 10, 200)),
        R::ExistsWithDifferentFields
    );
    assert_eq!(h.snapshot(), before);
}

#[test]
fn a_retried_pending_transfer_holds_once() {
    let mut h = shop_with_hold();
    let before = h.snapshot();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 400, 0)),
        R::Exists
    );
    assert_eq!(h.snapshot(), before);
}

#[test]
fn post_and_void_need_an_existing_pending_transfer() {
    let mut h = shop_with_hold();
    assert_eq!(
        h.create_transfer(post(11, 777, 0)),
        R::PendingTransferNotFound
    );
    assert_eq!(h.create_transfer(void(12, 777)), R::PendingTransferNotFound);
    // A failed id is not a transfer either.
    assert_eq!(
        h.create_transfer(pending(13, NOBODY, MERCHANT, 1, 0)),
        R::DebitAccountNotFound
    );
    assert_eq!(
        h.create_transfer(post(14, 13, 0)),
        R::PendingTransferNotFound
    );
    // A single-phase transfer has nothing to resolve.
    assert_eq!(
        h.create_transfer(post(15, 9_001, 0)),
        R::PendingTransferNotPending
    );
    assert_eq!(
        h.create_transfer(void(16, 9_001)),
        R::PendingTransferNotPending
    );
    // A post is not pending either.
    assert_eq!(h.create_transfer(post(17, 10, 1)), R::Ok);
    assert_eq!(
        h.create_transfer(void(18, 17)),
        R::PendingTransferNotPending
    );
    assert_eq!(
        h.sm.transfer(TransferId(11)),
        Some(TransferLookup::Failed(R::PendingTransferNotFound))
    );
}

#[test]
fn a_post_may_repeat_the_pending_fields_but_not_change_them() {
    let mut h = shop_with_hold();
    let other = AccountId(80);
    assert_eq!(h.create_account(account(other)), R::Ok);
    let cases = [
        Transfer {
            debit_account_id: other,
            ..post(11, 10, 0)
        },
        Transfer {
            credit_account_id: other,
            ..post(12, 10, 0)
        },
        Transfer {
            ledger: LEDGER + 1,
            ..post(13, 10, 0)
        },
        Transfer {
            code: TRANSFER_CODE + 1,
            ..void(14, 10)
        },
        Transfer {
            debit_account_id: MERCHANT,
            credit_account_id: BUYER,
            ..void(15, 10)
        },
    ];
    for transfer in cases {
        assert_eq!(
            h.create_transfer(transfer),
            R::PendingTransferHasDifferentFields
        );
    }
    assert_eq!(h.committed(10).1, Some(PendingStatus::Pending));
    let explicit = Transfer {
        debit_account_id: BUYER,
        credit_account_id: MERCHANT,
        ledger: LEDGER,
        code: TRANSFER_CODE,
        ..post(16, 10, 0)
    };
    assert_eq!(h.create_transfer(explicit), R::Ok);
}

#[test]
fn an_order_authorization_is_resolved_only_through_its_order() {
    let mut h = Harness::shop();
    assert_eq!(h.place(order(1, 500, 100, &[(SKU_A, 1)])), R::Ok);
    assert_eq!(h.committed(500).0.code, TRANSFER_CODE_ORDER_PAYMENT);
    assert_eq!(
        h.create_transfer(post(11, 500, 0)),
        R::PendingTransferOwnedByOrder
    );
    assert_eq!(
        h.create_transfer(void(12, 500)),
        R::PendingTransferOwnedByOrder
    );
    assert_eq!(h.committed(500).1, Some(PendingStatus::Pending));
    assert_eq!(h.pay(action(1, 13)), R::Ok);
    // Still the order's after it is paid: the client is told who owns it, not its state.
    assert_eq!(
        h.create_transfer(void(14, 500)),
        R::PendingTransferOwnedByOrder
    );
}

#[test]
fn a_hold_expires_by_a_later_batch_and_releases_the_funds() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 400, TIMEOUT_NS)),
        R::Ok
    );
    assert_eq!(h.sm.expiry_next(), Some(t + TIMEOUT_NS));
    h.pulse_at(t + TIMEOUT_NS - 1);
    assert_eq!(
        h.committed(10).1,
        Some(PendingStatus::Pending),
        "not due yet"
    );
    h.pulse_at(t + TIMEOUT_NS);
    assert_eq!(h.committed(10).1, Some(PendingStatus::Expired));
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 0));
    assert_eq!(
        h.create_transfer(post(11, 10, 0)),
        R::PendingTransferExpired
    );
    assert_eq!(h.create_transfer(void(12, 10)), R::PendingTransferExpired);
    assert_eq!(
        h.sm.transfer(TransferId(11)),
        Some(TransferLookup::Failed(R::PendingTransferExpired))
    );
}

#[test]
fn any_batch_not_only_a_pulse_expires_due_holds() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 1_000, TIMEOUT_NS)),
        R::Ok
    );
    // The hold takes all the buyer's funds; the spend is applied after the sweep.
    let spend = [transfer(11, BUYER, MERCHANT, 1_000)];
    assert_eq!(
        h.apply_at(t + TIMEOUT_NS, Batch::CreateTransfers(&spend)),
        [R::Ok]
    );
    assert_eq!(h.committed(10).1, Some(PendingStatus::Expired));
}

#[test]
fn a_post_timestamped_at_the_timeout_sees_the_hold_expired_before_the_sweep() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 400, TIMEOUT_NS)),
        R::Ok
    );
    let due = t + TIMEOUT_NS;
    // The batch starts one ns before the hold is due, so the sweep leaves it; its second
    // command is timestamped exactly at the due time.
    let batch = [transfer(11, BANK, MERCHANT, 1), post(12, 10, 0)];
    let results = h.apply_at(due - 1, Batch::CreateTransfers(&batch));
    assert_eq!(results, [R::Ok, R::PendingTransferExpired]);
    assert_eq!(
        h.balances(BUYER),
        (400, 0, 0, BUYER_FUNDS),
        "released by the next sweep"
    );
    h.pulse_at(due + 1);
    assert_eq!(h.committed(10).1, Some(PendingStatus::Expired));
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
}

#[test]
fn a_post_one_ns_before_the_timeout_captures_and_nothing_expires_later() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 400, TIMEOUT_NS)),
        R::Ok
    );
    let batch = [post(11, 10, 0)];
    assert_eq!(
        h.apply_at(t + TIMEOUT_NS - 1, Batch::CreateTransfers(&batch)),
        [R::Ok]
    );
    h.pulse_at(t + 10 * TIMEOUT_NS);
    assert_eq!(h.committed(10).1, Some(PendingStatus::Posted));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 400));
}

#[test]
fn a_hold_without_timeout_never_expires() {
    let mut h = shop_with_hold();
    assert_eq!(h.sm.expiry_next(), None);
    h.pulse_at(u64::MAX / 2);
    assert_eq!(h.committed(10).1, Some(PendingStatus::Pending));
}

#[test]
fn a_timeout_past_the_end_of_log_time_fails() {
    let mut h = Harness::shop();
    let forever = pending(10, BUYER, MERCHANT, 1, u64::MAX);
    assert_eq!(h.create_transfer(forever), R::TimeoutOverflows);
    assert_eq!(
        h.sm.transfer(TransferId(10)),
        Some(TransferLookup::Failed(R::TimeoutOverflows))
    );
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    // The largest timeout that still fits is fine.
    let latest = pending(11, BUYER, MERCHANT, 1, u64::MAX - h.now());
    assert_eq!(h.create_transfer(latest), R::Ok);
}
