//! Linked transfer chains: all or nothing, including holds, posts and the failure record,
//! and chains that never close.

use super::fixtures::*;
use super::harness::{Harness, BUYER_FUNDS};
use crate::batch::Batch;
use crate::ids::TransferId;
use crate::result::ResultCode as R;
use crate::state_machine::{PendingStatus, TransferLookup};

#[test]
fn a_chain_takes_effect_as_a_whole_and_links_see_earlier_links() {
    let mut h = Harness::shop();
    // The buyer can afford the second link only thanks to the first.
    let chain = [
        linked(transfer(10, BANK, BUYER, 500)),
        linked(transfer(11, BUYER, MERCHANT, BUYER_FUNDS + 500)),
        transfer(12, MERCHANT, BANK, 1),
    ];
    assert_eq!(h.apply(Batch::CreateTransfers(&chain)), [R::Ok; 3]);
    assert_eq!(
        h.balances(BUYER),
        (0, BUYER_FUNDS + 500, 0, BUYER_FUNDS + 500)
    );
}

#[test]
fn a_failing_middle_link_undoes_the_links_before_it() {
    let mut h = Harness::shop();
    let before = h.snapshot();
    let chain = [
        linked(transfer(10, BANK, BUYER, 100)),
        linked(pending(11, BUYER, MERCHANT, 50, 0)),
        linked(transfer(12, BUYER, MERCHANT, BUYER_FUNDS + 100)), // 50 short.
        transfer(13, MERCHANT, BANK, 1),
    ];
    let results = h.apply(Batch::CreateTransfers(&chain));
    let expected = [
        R::LinkedEventFailed,
        R::LinkedEventFailed,
        R::ExceedsCredits,
        R::LinkedEventFailed,
    ];
    assert_eq!(results, expected);
    assert_eq!(
        h.snapshot(),
        before,
        "no balance keeps an effect of the chain"
    );
    // Only the failing link's id keeps its outcome; the others were never applied.
    assert_eq!(h.sm.transfer(TransferId(10)), None);
    assert_eq!(h.sm.transfer(TransferId(11)), None);
    assert_eq!(
        h.sm.transfer(TransferId(12)),
        Some(TransferLookup::Failed(R::ExceedsCredits))
    );
    assert_eq!(h.sm.transfer(TransferId(13)), None);
    assert_eq!(h.create_transfer(transfer(10, BANK, BUYER, 100)), R::Ok);
    // `linked` is part of the command, so the retry carries it too, in a closed chain.
    let retry = [chain[2], transfer(14, BANK, MERCHANT, 1)];
    assert_eq!(
        h.apply(Batch::CreateTransfers(&retry)),
        [R::IdAlreadyFailed, R::LinkedEventFailed]
    );
}

#[test]
fn a_malformed_link_fails_the_chain_and_is_not_remembered() {
    let mut h = Harness::shop();
    let before = h.snapshot();
    let chain = [
        linked(transfer(10, BANK, BUYER, 100)),
        transfer(11, BUYER, MERCHANT, 0),
    ];
    let results = h.apply(Batch::CreateTransfers(&chain));
    assert_eq!(results, [R::LinkedEventFailed, R::AmountMustNotBeZero]);
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.sm.transfer(TransferId(11)), None);
}

#[test]
fn a_failing_link_does_not_undo_what_an_earlier_batch_committed() {
    let mut h = Harness::shop();
    let first = [
        linked(transfer(10, BANK, BUYER, 100)),
        transfer(11, BANK, BUYER, 1),
    ];
    assert_eq!(h.apply(Batch::CreateTransfers(&first)), [R::Ok, R::Ok]);
    let before = h.snapshot();
    // The retried link answers `exists`, a success, so the chain goes on and fails later.
    let chain = [
        linked(transfer(10, BANK, BUYER, 100)),
        transfer(12, NOBODY, BANK, 1),
    ];
    let results = h.apply(Batch::CreateTransfers(&chain));
    assert_eq!(results, [R::LinkedEventFailed, R::DebitAccountNotFound]);
    assert_eq!(h.snapshot(), before);
    assert!(matches!(
        h.sm.transfer(TransferId(10)),
        Some(TransferLookup::Committed { .. })
    ));
}

#[test]
fn a_hold_and_its_post_in_one_chain_roll_back_together() {
    let mut h = Harness::shop();
    let before = h.snapshot();
    let chain = [
        linked(pending(10, BUYER, MERCHANT, 300, 0)),
        linked(post(11, 10, 200)),
        post(12, 10, 0), // Already posted by the link before it.
    ];
    let results = h.apply(Batch::CreateTransfers(&chain));
    assert_eq!(
        results,
        [
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::PendingTransferAlreadyPosted
        ]
    );
    assert_eq!(h.snapshot(), before);
    assert_eq!(h.sm.transfer(TransferId(10)), None);
    // The same chain without the bad link succeeds.
    let fixed = [
        linked(pending(10, BUYER, MERCHANT, 300, 0)),
        post(11, 10, 200),
    ];
    assert_eq!(h.apply(Batch::CreateTransfers(&fixed)), [R::Ok, R::Ok]);
    assert_eq!(h.balances(BUYER), (0, 200, 0, BUYER_FUNDS));
}

#[test]
fn a_rolled_back_hold_never_expires_later() {
    let mut h = Harness::shop();
    let t = h.now();
    let chain = [
        linked(pending(10, BUYER, MERCHANT, 300, 5_000)),
        transfer(11, NOBODY, BANK, 1),
    ];
    let results = h.apply(Batch::CreateTransfers(&chain));
    assert_eq!(results, [R::LinkedEventFailed, R::DebitAccountNotFound]);
    // The id is free again; reuse it for a hold due at exactly the rolled-back one's time,
    // so the stale expiry entry and the live one coincide.
    let t2 = h.now();
    let again = pending(10, BUYER, MERCHANT, 300, t + 5_000 - t2);
    assert_eq!(h.create_transfer(again), R::Ok);
    h.pulse_at(t + 5_000);
    assert_eq!(h.committed(10).1, Some(PendingStatus::Expired));
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    h.pulse_at(t + 50_000);
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
}

#[test]
fn a_chain_still_open_at_the_end_of_the_batch_fails_whole() {
    let mut h = Harness::shop();
    let batch = [
        transfer(10, BANK, BUYER, 1),
        linked(transfer(11, BANK, BUYER, 2)),
        linked(transfer(12, BANK, BUYER, 3)),
    ];
    let results = h.apply(Batch::CreateTransfers(&batch));
    assert_eq!(
        results,
        [R::Ok, R::LinkedEventFailed, R::LinkedEventChainOpen]
    );
    assert_eq!(
        h.balances(BUYER),
        (0, 0, 0, BUYER_FUNDS + 1),
        "only the chain of one"
    );
    assert_eq!(h.sm.transfer(TransferId(11)), None);
    assert_eq!(h.sm.transfer(TransferId(12)), None);
}

#[test]
fn chains_in_one_batch_succeed_or_fail_independently() {
    let mut h = Harness::shop();
    let batch = [
        linked(transfer(10, BANK, BUYER, 1)),
        transfer(11, BUYER, MERCHANT, BUYER_FUNDS * 2), // Fails chain one.
        linked(transfer(12, BANK, BUYER_2, 5)),
        transfer(13, BUYER_2, MERCHANT, 5),
        transfer(14, BANK, MERCHANT, 7), // A chain of one.
    ];
    let results = h.apply(Batch::CreateTransfers(&batch));
    assert_eq!(
        results,
        [R::LinkedEventFailed, R::ExceedsCredits, R::Ok, R::Ok, R::Ok]
    );
    assert_eq!(h.balances(BUYER), (0, 0, 0, BUYER_FUNDS));
    assert_eq!(h.balances(MERCHANT), (0, 0, 0, 12));
}

#[test]
fn a_retried_chain_is_exists_for_every_member_with_no_second_effect() {
    let mut h = Harness::shop();
    let chain = [
        linked(pending(10, BUYER, MERCHANT, 300, 0)),
        linked(post(11, 10, 0)),
        transfer(12, MERCHANT, BANK, 100),
    ];
    assert_eq!(h.apply(Batch::CreateTransfers(&chain)), [R::Ok; 3]);
    let before = h.snapshot();
    assert_eq!(h.apply(Batch::CreateTransfers(&chain)), [R::Exists; 3]);
    assert_eq!(h.snapshot(), before);
}

#[test]
fn the_linked_flag_is_part_of_what_a_retry_must_repeat() {
    let mut h = Harness::shop();
    let chain = [
        linked(transfer(10, BANK, BUYER, 1)),
        transfer(11, BANK, BUYER, 2),
    ];
    assert_eq!(h.apply(Batch::CreateTransfers(&chain)), [R::Ok, R::Ok]);
    // The same transfer without `linked` is a different command under the same id.
    let alone = transfer(10, BANK, BUYER, 1);
    assert_eq!(h.create_transfer(alone), R::ExistsWithDifferentFields);
}
