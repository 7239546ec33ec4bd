//! Creating accounts: the stored record, every validation code, idempotent re-creation, and
//! linked account chains.

use super::fixtures::*;
use super::harness::Harness;
use crate::batch::Batch;
use crate::ids::AccountId;
use crate::records::{account_flags, Account};
use crate::result::ResultCode as R;

#[test]
fn created_account_gets_its_command_timestamp_and_zero_balances() {
    let mut h = Harness::new();
    let t = h.now();
    let results = h.apply(Batch::CreateAccounts(&[account(BANK), wallet(BUYER)]));
    assert_eq!(results, [R::Ok, R::Ok]);
    // The second command of a batch happens one nanosecond after the first.
    assert_eq!(h.account(BANK).timestamp, t);
    assert_eq!(h.account(BUYER).timestamp, t + 1);
    assert_eq!(h.balances(BUYER), (0, 0, 0, 0));
    assert_eq!(
        h.account(BUYER).flags,
        account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
    );
    assert_eq!(h.sm.account(NOBODY), None);
}

#[test]
fn malformed_accounts_are_rejected_with_their_code_and_not_stored() {
    let mut reserved = account(BANK);
    reserved.reserved[47] = 1;
    let both = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        | account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;
    let cases = [
        (
            Account {
                timestamp: 1,
                ..account(BANK)
            },
            R::TimestampMustBeZero,
        ),
        (reserved, R::ReservedFieldNotZero),
        (
            Account {
                flags: 1 << 3,
                ..account(BANK)
            },
            R::ReservedFlag,
        ),
        (
            Account {
                flags: 1 << 15,
                ..account(BANK)
            },
            R::ReservedFlag,
        ),
        (
            Account {
                flags: both,
                ..account(BANK)
            },
            R::FlagsAreMutuallyExclusive,
        ),
        (account(AccountId::ZERO), R::IdMustNotBeZero),
        (
            Account {
                ledger: 0,
                ..account(BANK)
            },
            R::LedgerMustNotBeZero,
        ),
        (
            Account {
                code: 0,
                ..account(BANK)
            },
            R::CodeMustNotBeZero,
        ),
        (
            Account {
                debits_pending: 1,
                ..account(BANK)
            },
            R::BalancesMustBeZero,
        ),
        (
            Account {
                debits_posted: 1,
                ..account(BANK)
            },
            R::BalancesMustBeZero,
        ),
        (
            Account {
                credits_pending: 1,
                ..account(BANK)
            },
            R::BalancesMustBeZero,
        ),
        (
            Account {
                credits_posted: 1,
                ..account(BANK)
            },
            R::BalancesMustBeZero,
        ),
    ];
    let mut h = Harness::new();
    for (account, expected) in cases {
        assert_eq!(h.create_account(account), expected, "{account:?}");
    }
    assert_eq!(h.sm.accounts_sorted(), []);
    // A rejection is not remembered: the id is free for a well-formed account.
    assert_eq!(h.create_account(account(BANK)), R::Ok);
}

#[test]
fn recreating_with_the_same_fields_is_exists_and_changes_nothing() {
    let mut h = Harness::shop();
    let before = h.account(BUYER);
    // The stored account has balances by now; a retry carries zero balances and must still
    // be recognised as the same account.
    assert_ne!(before.credits_posted, 0);
    assert_eq!(h.create_account(wallet(BUYER)), R::Exists);
    assert_eq!(h.account(BUYER), before);
}

#[test]
fn recreating_with_other_fields_is_exists_with_different_fields() {
    let mut h = Harness::new();
    assert_eq!(h.create_account(account(BANK)), R::Ok);
    let original = h.account(BANK);
    let variants = [
        Account {
            user_data: 7,
            ..account(BANK)
        },
        Account {
            ledger: 2,
            ..account(BANK)
        },
        Account {
            code: 11,
            ..account(BANK)
        },
        wallet(BANK),
    ];
    for variant in variants {
        assert_eq!(
            h.create_account(variant),
            R::ExistsWithDifferentFields,
            "{variant:?}"
        );
    }
    assert_eq!(h.account(BANK), original);
}

#[test]
fn a_duplicate_inside_one_batch_is_answered_like_a_retry() {
    let mut h = Harness::new();
    let batch = [
        account(BANK),
        account(BANK),
        Account {
            code: 2,
            ..account(BANK)
        },
    ];
    let results = h.apply(Batch::CreateAccounts(&batch));
    assert_eq!(results, [R::Ok, R::Exists, R::ExistsWithDifferentFields]);
}

#[test]
fn linked_accounts_are_created_together() {
    let mut h = Harness::new();
    let chain = [
        linked_account(account(BANK)),
        linked_account(wallet(BUYER)),
        account(MERCHANT),
    ];
    assert_eq!(h.apply(Batch::CreateAccounts(&chain)), [R::Ok; 3]);
    assert_eq!(h.sm.accounts_sorted().len(), 3);
    // The flag is stored as sent.
    assert_ne!(h.account(BANK).flags & account_flags::LINKED, 0);
}

#[test]
fn a_failing_link_creates_no_account_of_its_chain() {
    let mut h = Harness::new();
    let chain = [
        account(NOBODY), // A chain of one before the linked chain: unaffected.
        linked_account(account(BANK)),
        linked_account(Account {
            ledger: 0,
            ..wallet(BUYER)
        }),
        account(MERCHANT),
    ];
    let results = h.apply(Batch::CreateAccounts(&chain));
    assert_eq!(
        results,
        [
            R::Ok,
            R::LinkedEventFailed,
            R::LedgerMustNotBeZero,
            R::LinkedEventFailed
        ]
    );
    let ids: Vec<AccountId> = h.sm.accounts_sorted().iter().map(|a| a.id).collect();
    assert_eq!(ids, [NOBODY]);
    // Nothing of the failed chain is remembered: resubmitting it fixed succeeds.
    let fixed = [
        linked_account(account(BANK)),
        linked_account(wallet(BUYER)),
        account(MERCHANT),
    ];
    assert_eq!(h.apply(Batch::CreateAccounts(&fixed)), [R::Ok; 3]);
}

#[test]
fn an_existing_account_with_other_fields_fails_its_chain() {
    let mut h = Harness::new();
    assert_eq!(h.create_account(account(BANK)), R::Ok);
    let chain = [
        linked_account(wallet(BUYER)),
        Account {
            code: 3,
            ..account(BANK)
        },
    ];
    let results = h.apply(Batch::CreateAccounts(&chain));
    assert_eq!(
        results,
        [R::LinkedEventFailed, R::ExistsWithDifferentFields]
    );
    assert_eq!(h.sm.account(BUYER), None);
}

#[test]
fn a_chain_left_open_at_the_end_of_the_batch_fails_whole() {
    let mut h = Harness::new();
    let batch = [
        account(BANK),
        linked_account(wallet(BUYER)),
        linked_account(account(MERCHANT)),
    ];
    let results = h.apply(Batch::CreateAccounts(&batch));
    assert_eq!(
        results,
        [R::Ok, R::LinkedEventFailed, R::LinkedEventChainOpen]
    );
    assert_eq!(h.sm.account(BUYER), None);
    assert_eq!(h.sm.account(MERCHANT), None);
    // A batch of one linked command is a chain that never closes.
    let lone = [linked_account(wallet(BUYER))];
    assert_eq!(
        h.apply(Batch::CreateAccounts(&lone)),
        [R::LinkedEventChainOpen]
    );
}

#[test]
fn a_retried_chain_is_exists_for_every_member() {
    let mut h = Harness::new();
    let chain = [
        linked_account(account(BANK)),
        linked_account(wallet(BUYER)),
        account(MERCHANT),
    ];
    assert_eq!(h.apply(Batch::CreateAccounts(&chain)), [R::Ok; 3]);
    let before = h.snapshot();
    assert_eq!(h.apply(Batch::CreateAccounts(&chain)), [R::Exists; 3]);
    assert_eq!(h.snapshot(), before);
}
