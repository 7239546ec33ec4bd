//! Single-phase transfers: balances, every validation code, the balance limits
//! (insufficient funds, credit limits, 64-bit overflow), ledgers, and idempotency by id.

use super::fixtures::*;
use super::harness::{Harness, BUYER_FUNDS};
use crate::batch::Batch;
use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};
use crate::records::{account_flags, transfer_flags, Account, Transfer};
use crate::result::ResultCode as R;
use crate::state_machine::TransferLookup;

#[test]
fn a_transfer_moves_posted_balances_and_is_stored_with_its_timestamp() {
    let mut h = Harness::shop();
    let t = h.now();
    assert_eq!(h.create_transfer(transfer(10, BUYER, MERCHANT, 300)), R::Ok);
    assert_eq!(h.balances(BUYER), (0, 300, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 300));
    let (stored, pending_status) = h.committed(10);
    assert_eq!(
        stored,
        Transfer {
            timestamp: t,
            ..transfer(10, BUYER, MERCHANT, 300)
        }
    );
    assert_eq!(
        pending_status, None,
        "a single-phase transfer has no two-phase state"
    );
}

#[test]
fn an_unknown_id_looks_up_as_none() {
    let h = Harness::shop();
    assert_eq!(h.sm.transfer(TransferId(12_345)), None);
}

#[test]
fn malformed_transfers_are_rejected_and_leave_no_trace() {
    let mut reserved = transfer(10, BUYER, MERCHANT, 1);
    reserved.reserved[15] = 1;
    let valid = transfer(10, BUYER, MERCHANT, 1);
    let cases = [
        (
            Transfer {
                timestamp: 1,
                ..valid
            },
            R::TimestampMustBeZero,
        ),
        (reserved, R::ReservedFieldNotZero),
        (
            Transfer {
                flags: 1 << 4,
                ..valid
            },
            R::ReservedFlag,
        ),
        (
            Transfer {
                id: TransferId::ZERO,
                ..valid
            },
            R::IdMustNotBeZero,
        ),
        (
            Transfer {
                flags: transfer_flags::PENDING | transfer_flags::POST_PENDING,
                ..valid
            },
            R::FlagsAreMutuallyExclusive,
        ),
        (
            Transfer {
                flags: transfer_flags::PENDING | transfer_flags::VOID_PENDING,
                ..valid
            },
            R::FlagsAreMutuallyExclusive,
        ),
        (
            Transfer {
                flags: transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING,
                ..void(10, 5)
            },
            R::FlagsAreMutuallyExclusive,
        ),
        (
            Transfer {
                pending_id: TransferId(5),
                ..valid
            },
            R::PendingIdMustBeZero,
        ),
        (
            Transfer {
                pending_id: TransferId(5),
                ..pending(10, BUYER, MERCHANT, 1, 0)
            },
            R::PendingIdMustBeZero,
        ),
        (post(10, 0, 0), R::PendingIdMustNotBeZero),
        (void(10, 0), R::PendingIdMustNotBeZero),
        (post(10, 10, 0), R::PendingIdMustBeDifferent),
        (void(10, 10), R::PendingIdMustBeDifferent),
        (
            Transfer {
                timeout_ns: 5,
                ..valid
            },
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            Transfer {
                timeout_ns: 5,
                ..post(10, 5, 0)
            },
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            Transfer {
                timeout_ns: 5,
                ..void(10, 5)
            },
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            transfer(10, AccountId::ZERO, MERCHANT, 1),
            R::DebitAccountIdMustNotBeZero,
        ),
        (
            transfer(10, BUYER, AccountId::ZERO, 1),
            R::CreditAccountIdMustNotBeZero,
        ),
        (transfer(10, BUYER, BUYER, 1), R::AccountsMustBeDifferent),
        (transfer(10, BUYER, MERCHANT, 0), R::AmountMustNotBeZero),
        (Transfer { ledger: 0, ..valid }, R::LedgerMustNotBeZero),
        (Transfer { code: 0, ..valid }, R::CodeMustNotBeZero),
    ];
    let mut h = Harness::shop();
    let before = h.snapshot();
    for (transfer, expected) in cases {
        assert_eq!(h.create_transfer(transfer), expected, "{transfer:?}");
    }
    assert_eq!(h.snapshot(), before);
    // Rejections are decided from the command alone and not remembered.
    assert_eq!(h.sm.transfer(TransferId(10)), None);
    assert_eq!(h.create_transfer(valid), R::Ok);
}

#[test]
fn missing_accounts_fail_and_the_id_keeps_the_failure() {
    let mut h = Harness::shop();
    assert_eq!(
        h.create_transfer(transfer(10, NOBODY, MERCHANT, 1)),
        R::DebitAccountNotFound
    );
    assert_eq!(
        h.create_transfer(transfer(11, BUYER, NOBODY, 1)),
        R::CreditAccountNotFound
    );
    assert_eq!(
        h.sm.transfer(TransferId(10)),
        Some(TransferLookup::Failed(R::DebitAccountNotFound))
    );
    assert_eq!(
        h.sm.transfer(TransferId(11)),
        Some(TransferLookup::Failed(R::CreditAccountNotFound))
    );
    // Creating the account afterwards does not revive the id.
    assert_eq!(h.create_account(account(NOBODY)), R::Ok);
    assert_eq!(
        h.create_transfer(transfer(11, BUYER, NOBODY, 1)),
        R::IdAlreadyFailed
    );
}

#[test]
fn money_moves_only_within_one_ledger() {
    let mut h = Harness::shop();
    let euro = AccountId(50);
    assert_eq!(
        h.create_account(Account {
            ledger: 2,
            ..account(euro)
        }),
        R::Ok
    );
    let across = transfer(10, BANK, euro, 1);
    assert_eq!(h.create_transfer(across), R::AccountsMustHaveSameLedger);
    let wrong_ledger = Transfer {
        ledger: 2,
        ..transfer(11, BANK, BUYER, 1)
    };
    assert_eq!(
        h.create_transfer(wrong_ledger),
        R::TransferMustHaveSameLedgerAsAccounts
    );
    let on_euro_ledger = Transfer {
        ledger: 2,
        ..transfer(12, BANK, euro, 1)
    };
    assert_eq!(
        h.create_transfer(on_euro_ledger),
        R::AccountsMustHaveSameLedger
    );
}

#[test]
fn a_wallet_cannot_spend_more_than_its_posted_credits() {
    let mut h = Harness::shop();
    let too_much = transfer(10, BUYER, MERCHANT, BUYER_FUNDS + 1);
    assert_eq!(h.create_transfer(too_much), R::ExceedsCredits);
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(
        h.create_transfer(transfer(11, BUYER, MERCHANT, BUYER_FUNDS)),
        R::Ok
    );
    assert_eq!(
        h.create_transfer(transfer(12, BUYER, MERCHANT, 1)),
        R::ExceedsCredits
    );
}

#[test]
fn held_funds_count_against_the_wallet_and_pending_credits_do_not_fund_it() {
    let mut h = Harness::shop();
    assert_eq!(
        h.create_transfer(pending(10, BUYER, MERCHANT, 600, 0)),
        R::Ok
    );
    assert_eq!(
        h.create_transfer(transfer(11, BUYER, MERCHANT, 401)),
        R::ExceedsCredits
    );
    assert_eq!(h.create_transfer(transfer(12, BUYER, MERCHANT, 400)), R::Ok);
    // A pending credit is not spendable until posted.
    assert_eq!(h.create_transfer(pending(13, BANK, BUYER_2, 500, 0)), R::Ok);
    let spend = transfer(14, BUYER_2, MERCHANT, BUYER_FUNDS + 1);
    assert_eq!(h.create_transfer(spend), R::ExceedsCredits);
}

#[test]
fn a_credit_limited_account_is_credited_only_up_to_its_debits() {
    let mut h = Harness::shop();
    let limited = AccountId(60);
    let flags = account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;
    assert_eq!(
        h.create_account(Account {
            flags,
            ..account(limited)
        }),
        R::Ok
    );
    assert_eq!(
        h.create_transfer(transfer(10, BANK, limited, 1)),
        R::ExceedsDebits
    );
    assert_eq!(h.create_transfer(transfer(11, limited, BANK, 100)), R::Ok);
    assert_eq!(h.create_transfer(pending(12, BANK, limited, 60, 0)), R::Ok);
    // Pending credits count: 60 held + 41 would pass the 100 debited.
    assert_eq!(
        h.create_transfer(transfer(13, BANK, limited, 41)),
        R::ExceedsDebits
    );
    assert_eq!(h.create_transfer(transfer(14, BANK, limited, 40)), R::Ok);
    assert_eq!(h.balances(limited), (0, 100, 60, 40));
}

#[test]
fn balances_never_wrap_past_u64_max() {
    let mut h = Harness::shop();
    let (big, other) = (AccountId(70), AccountId(71));
    assert_eq!(
        h.apply(Batch::CreateAccounts(&[account(big), account(other)])),
        [R::Ok; 2]
    );
    assert_eq!(h.create_transfer(transfer(10, other, big, u64::MAX)), R::Ok);
    // `other`'s debits and `big`'s credits are both at the top.
    assert_eq!(
        h.create_transfer(transfer(11, other, BANK, 1)),
        R::Overflows
    );
    assert_eq!(h.create_transfer(transfer(12, BANK, big, 1)), R::Overflows);
    assert_eq!(
        h.create_transfer(pending(13, BANK, big, 1, 0)),
        R::Overflows
    );
    assert_eq!(
        h.sm.transfer(TransferId(13)),
        Some(TransferLookup::Failed(R::Overflows))
    );
    // Money leaving `big` is fine: its debits are zero.
    assert_eq!(h.create_transfer(transfer(14, big, BANK, u64::MAX)), R::Ok);
}

#[test]
fn pending_and_posted_debits_together_may_not_overflow() {
    let mut h = Harness::shop();
    let (spender, sink) = (AccountId(70), AccountId(71));
    assert_eq!(
        h.apply(Batch::CreateAccounts(&[account(spender), account(sink)])),
        [R::Ok; 2]
    );
    assert_eq!(
        h.create_transfer(pending(10, spender, sink, u64::MAX - 1, 0)),
        R::Ok
    );
    assert_eq!(
        h.create_transfer(transfer(11, spender, BANK, 2)),
        R::Overflows
    );
    assert_eq!(h.create_transfer(transfer(12, spender, BANK, 1)), R::Ok);
    assert_eq!(h.balances(spender), (u64::MAX - 1, 1, 0, 0));
}

#[test]
fn a_retry_with_the_same_fields_is_exists_with_no_second_effect() {
    let mut h = Harness::shop();
    let payment = transfer(10, BUYER, MERCHANT, 300);
    assert_eq!(h.create_transfer(payment), R::Ok);
    let (first, _) = h.committed(10);
    let before = h.snapshot();
    assert_eq!(h.create_transfer(payment), R::Exists);
    assert_eq!(
        h.apply(Batch::CreateTransfers(&[payment, payment])),
        [R::Exists; 2]
    );
    assert_eq!(h.snapshot(), before);
    assert_eq!(
        h.committed(10).0,
        first,
        "the stored record keeps its first timestamp"
    );
}

#[test]
fn a_repeat_inside_one_batch_takes_effect_once() {
    let mut h = Harness::shop();
    let payment = transfer(10, BUYER, MERCHANT, 300);
    assert_eq!(
        h.apply(Batch::CreateTransfers(&[payment, payment])),
        [R::Ok, R::Exists]
    );
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 300));
}

#[test]
fn reusing_an_id_with_other_fields_is_exists_with_different_fields() {
    let mut h = Harness::shop();
    let payment = transfer(10, BUYER, MERCHANT, 300);
    assert_eq!(h.create_transfer(payment), R::Ok);
    let before = h.snapshot();
    let variants = [
        Transfer {
            amount: 301,
            ..payment
        },
        Transfer {
            user_data: 1,
            ..payment
        },
        Transfer {
            credit_account_id: BANK,
            ..payment
        },
        Transfer {
            code: 21,
            ..payment
        },
        pending(10, BUYER, MERCHANT, 300, 0),
        post(10, 9_001, 0),
    ];
    for variant in variants {
        assert_eq!(
            h.create_transfer(variant),
            R::ExistsWithDifferentFields,
            "{variant:?}"
        );
    }
    assert_eq!(h.snapshot(), before);
}

#[test]
fn an_id_that_failed_stays_failed_even_after_funds_arrive() {
    let mut h = Harness::shop();
    let payment = transfer(10, BUYER, MERCHANT, BUYER_FUNDS + 500);
    assert_eq!(h.create_transfer(payment), R::ExceedsCredits);
    assert_eq!(h.create_transfer(transfer(11, BANK, BUYER, 10_000)), R::Ok);
    let before = h.snapshot();
    assert_eq!(h.create_transfer(payment), R::IdAlreadyFailed);
    // Whatever the fields: the id's first outcome was a failure.
    assert_eq!(
        h.create_transfer(transfer(10, BANK, MERCHANT, 1)),
        R::IdAlreadyFailed
    );
    assert_eq!(
        h.create_transfer(pending(10, BANK, MERCHANT, 1, 0)),
        R::IdAlreadyFailed
    );
    assert_eq!(h.snapshot(), before);
    assert_eq!(
        h.sm.transfer(TransferId(10)),
        Some(TransferLookup::Failed(R::ExceedsCredits))
    );
}

#[test]
fn zero_ids_look_up_as_nothing() {
    // Zero is never a valid id, so no query may find anything under it, however the
    // state is stored. Queries come from clients, so they must not panic either.
    let mut h = Harness::shop();
    assert_eq!(h.place(order(1, 500, 10, &[(SKU_B, 1)])), R::Ok);
    assert_eq!(h.reserve(reservation(2, BUYER, SKU_B, 1)), R::Ok);
    let lookups = std::panic::catch_unwind(|| {
        let found = [
            ("transfer", h.sm.transfer(TransferId::ZERO).is_some()),
            ("account", h.sm.account(AccountId::ZERO).is_some()),
            ("sku", h.sm.sku(SkuId(0)).is_some()),
            ("order", h.sm.order(OrderId::ZERO).is_some()),
            (
                "reservation",
                h.sm.reservation(OrderId::ZERO, SkuId(0)).is_some(),
            ),
            (
                "buyer_units",
                h.sm.buyer_units(SkuId(0), AccountId::ZERO) != 0,
            ),
            ("dispatch", h.sm.dispatch(DispatchId::ZERO).is_some()),
        ];
        found
            .iter()
            .filter(|(_, found)| *found)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
    });
    assert_eq!(
        lookups.ok(),
        Some(vec![]),
        "lookups that panicked (None) or found something"
    );
}
