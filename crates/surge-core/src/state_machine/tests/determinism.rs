//! Determinism: the state is a pure function of the `(timestamp, batch)` sequence, the
//! state hash tells two states apart, and a rolled-back command leaves no trace in it.

use super::fixtures::*;
use super::harness::{Harness, STEP_NS};
use crate::batch::{Batch, BatchBuf};
use crate::records::Order;
use crate::result::ResultCode;
use crate::state_machine::Config;

/// A log touching every command, both outcomes of most, and every kind of expiry.
fn script(amount: u64) -> Vec<BatchBuf> {
    vec![
        BatchBuf::CreateAccounts(vec![account(BANK), wallet(BUYER), account(MERCHANT)]),
        BatchBuf::CreateTransfers(vec![
            transfer(1, BANK, BUYER, 5_000),
            linked(pending(2, BUYER, MERCHANT, amount, 50_000)),
            post(3, 2, amount / 2),
            pending(4, BUYER, MERCHANT, 100, 20_000),
            transfer(5, BUYER, MERCHANT, 1_000_000), // Fails: insufficient funds.
        ]),
        BatchBuf::CreateSkus(vec![sku(SKU_A, 10, 0), sku(SKU_B, 3, 2)]),
        BatchBuf::Reserve(vec![
            reservation(1, BUYER, SKU_A, 2),
            reservation(2, BUYER, SKU_B, 3), // Fails: over the limit.
            reservation(3, BUYER, SKU_A, 1),
        ]),
        BatchBuf::ConfirmReservations(vec![key(1, SKU_A)]),
        BatchBuf::PlaceOrders(vec![
            order(10, 100, 300, &[(SKU_A, 1), (SKU_B, 1)]),
            order(11, 101, 200, &[(SKU_A, 1)]),
            order(12, 102, 200, &[(SKU_A, 1), (SKU_C, 1)]), // Fails: no SKU C here.
            order(13, 103, 50, &[(SKU_B, 1)]),
            order(14, 104, 50, &[(SKU_A, 1)]), // Never paid: expires.
        ]),
        BatchBuf::PayOrders(vec![action(10, 200), action(11, 201)]),
        BatchBuf::CancelOrders(vec![action(13, 202)]),
        BatchBuf::AckDispatch(vec![ack(11)]),
        BatchBuf::RefundOrders(vec![action(11, 203)]),
        BatchBuf::Pulse, // Everything still pending expires, the dispatch is redelivered.
    ]
}

/// Runs `log` with [`STEP_NS`] between batches, except a long gap before the final pulse.
fn run(log: &[BatchBuf]) -> (Harness, Vec<Vec<ResultCode>>, Vec<u128>) {
    let config = Config {
        dispatch_redelivery_ns: 5_000,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    let mut results = Vec::new();
    let mut hashes = Vec::new();
    for batch in log {
        let timestamp = match batch {
            BatchBuf::Pulse => h.now() + 10 * ORDER_TIMEOUT_NS,
            _ => h.now(),
        };
        results.push(h.apply_at(timestamp, batch.as_batch()));
        hashes.push(h.sm.state_hash());
    }
    (h, results, hashes)
}

#[test]
fn the_same_log_gives_the_same_results_and_state_hash() {
    let (first, results_1, hashes_1) = run(&script(400));
    let (second, results_2, hashes_2) = run(&script(400));
    assert_eq!(results_1, results_2);
    assert_eq!(hashes_1, hashes_2);
    assert_eq!(first.snapshot(), second.snapshot());
    // The script does what it says: some commands failed, the rest took effect.
    let all: Vec<ResultCode> = results_1.concat();
    assert!(all.contains(&ResultCode::ExceedsCredits));
    assert!(all.contains(&ResultCode::LimitReached));
    assert!(all.contains(&ResultCode::SkuNotFound));
    assert_eq!(all.iter().filter(|code| !code.is_success()).count(), 3);
}

#[test]
fn a_different_amount_gives_a_different_hash() {
    let (_, results_1, hashes_1) = run(&script(400));
    let (_, results_2, hashes_2) = run(&script(402));
    assert_eq!(results_1, results_2, "same outcomes, different balances");
    assert_eq!(
        hashes_1[0], hashes_2[0],
        "identical until the amounts differ"
    );
    assert_ne!(hashes_1[1], hashes_2[1]);
    assert_ne!(hashes_1.last(), hashes_2.last());
}

#[test]
fn the_same_batch_at_another_time_gives_a_different_hash() {
    let mut early = Harness::new();
    let mut late = Harness::new();
    early.apply_at(10, Batch::CreateAccounts(&[account(BANK)]));
    late.apply_at(11, Batch::CreateAccounts(&[account(BANK)]));
    assert_ne!(early.sm.state_hash(), late.sm.state_hash());
    // A pulse moves log time and so the hash, even with nothing due.
    let before = early.sm.state_hash();
    early.pulse_at(20);
    assert_ne!(early.sm.state_hash(), before);
}

#[test]
fn a_rolled_back_chain_leaves_the_state_a_rejected_batch_leaves() {
    let mut rolled_back = Harness::shop();
    let mut rejected = Harness::shop();
    let t = rolled_back.now();
    assert_eq!(t, rejected.now());
    // The chain makes a hold (with a timeout) and a post before a malformed link undoes
    // them; the other log has three malformed commands and never changes anything.
    let chain = [
        linked(pending(10, BUYER, MERCHANT, 300, 5_000)),
        linked(post(11, 10, 100)),
        transfer(12, BUYER, MERCHANT, 0),
    ];
    let noise = [transfer(13, BUYER, MERCHANT, 0); 3];
    let results = rolled_back.apply_at(t, Batch::CreateTransfers(&chain));
    assert_eq!(results[2], ResultCode::AmountMustNotBeZero);
    let results = rejected.apply_at(t, Batch::CreateTransfers(&noise));
    assert_eq!(results, [ResultCode::AmountMustNotBeZero; 3]);
    assert_eq!(rolled_back.sm.state_hash(), rejected.sm.state_hash());
    // The rolled-back hold's expiry comes due in one log and not the other: no effect.
    rolled_back.pulse_at(t + 10_000);
    rejected.pulse_at(t + 10_000);
    assert_eq!(rolled_back.sm.state_hash(), rejected.sm.state_hash());
}

#[test]
fn a_rolled_back_order_leaves_only_its_failure() {
    let mut two_lines = Harness::shop();
    let mut one_line = Harness::shop();
    // The first line reserves a limited SKU (moving the buyer's count) before the second
    // line sells out; the other log fails on its only line. Both remember order 1 failed
    // with `SoldOut`, and nothing else.
    let t = two_lines.now();
    let failing = order(1, 500, 10, &[(SKU_B, 2), (SKU_C, 2)]);
    let results = two_lines.apply_at(t, Batch::PlaceOrders(&[failing]));
    assert_eq!(results, [ResultCode::SoldOut]);
    let failing = Order {
        line_count: 1,
        ..order(1, 500, 10, &[(SKU_C, 2)])
    };
    let results = one_line.apply_at(t, Batch::PlaceOrders(&[failing]));
    assert_eq!(results, [ResultCode::SoldOut]);
    assert_eq!(two_lines.sm.state_hash(), one_line.sm.state_hash());
}

#[test]
fn a_retry_changes_nothing_but_log_time() {
    let mut retried = Harness::shop();
    let mut pulsed = Harness::shop();
    let payment = transfer(10, BUYER, MERCHANT, 300);
    let t = retried.now();
    retried.apply_at(t, Batch::CreateTransfers(&[payment]));
    pulsed.apply_at(t, Batch::CreateTransfers(&[payment]));
    // An `exists` answer and a pulse at the same log time leave identical states.
    let again = retried.apply_at(t + STEP_NS, Batch::CreateTransfers(&[payment]));
    assert_eq!(again, [ResultCode::Exists]);
    pulsed.pulse_at(t + STEP_NS);
    assert_eq!(retried.sm.state_hash(), pulsed.sm.state_hash());
}
