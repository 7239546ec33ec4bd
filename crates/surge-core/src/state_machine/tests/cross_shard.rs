//! Cross-shard legs on two state machines standing for two shards: debit legs move funds
//! into transit and wait in the outbox, credit legs move them out, resolves settle or
//! compensate; every step is idempotent, conserves money on each shard, and survives a
//! snapshot.

use super::fixtures::{account, linked, pending, post, transfer, void, wallet, LEDGER};
use super::harness::Harness;
use crate::records::{account_flags, transfer_flags, ShardLeg, ShardOutcome, Transfer};
use crate::state_machine::{is_reserved_account_id, transit_account_id, StateMachine};
use crate::{AccountId, Batch, PendingStatus, ResultCode, TransferId, TransferLookup};

const SOURCE: u32 = 0;
const DESTINATION: u32 = 1;
const PAYER: AccountId = AccountId(10);
const PAYEE: AccountId = AccountId(20);
const CAPPED: AccountId = AccountId(21);
const BANK: AccountId = AccountId(11);

fn leg(transfer: Transfer) -> ShardLeg {
    ShardLeg {
        transfer,
        source_shard: SOURCE,
        destination_shard: DESTINATION,
        credit_account_ledger: LEDGER,
        reserved: [0; 4],
    }
}

fn outcome(id: u128, code: ResultCode) -> ShardOutcome {
    ShardOutcome {
        transfer_id: TransferId(id),
        code: code.as_u32(),
        reserved: [0; 12],
    }
}

/// Shard 0 holds a funded wallet; shard 1 a payee and an account that accepts no credit
/// beyond its debits.
fn shards() -> (Harness, Harness) {
    let mut source = Harness::new();
    assert_eq!(source.create_account(wallet(PAYER)), ResultCode::Ok);
    assert_eq!(source.create_account(account(BANK)), ResultCode::Ok);
    assert_eq!(
        source.create_transfer(transfer(1, BANK, PAYER, 100)),
        ResultCode::Ok
    );
    let mut destination = Harness::new();
    assert_eq!(destination.create_account(account(PAYEE)), ResultCode::Ok);
    let capped = crate::Account {
        flags: account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ..account(CAPPED)
    };
    assert_eq!(destination.create_account(capped), ResultCode::Ok);
    (source, destination)
}

fn transit() -> AccountId {
    transit_account_id(LEDGER, SOURCE, DESTINATION)
}

#[test]
fn a_settled_transfer_moves_funds_through_transit() {
    let (mut source, mut destination) = shards();
    let paying = leg(transfer(7, PAYER, PAYEE, 30));
    assert_eq!(source.apply(Batch::ShardDebit(&[paying])), [ResultCode::Ok]);
    assert_eq!(source.balances(PAYER), (0, 30, 0, 100));
    assert_eq!(source.balances(transit()), (0, 0, 0, 30));
    assert!(source.sm.shard_in_flight(TransferId(7)));
    assert_eq!(source.sm.shard_outbox().len(), 1);
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[paying])),
        [ResultCode::Ok]
    );
    assert_eq!(destination.balances(PAYEE), (0, 0, 0, 30));
    assert_eq!(destination.balances(transit()), (0, 30, 0, 0));
    // A redelivery dedupes by id.
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[paying])),
        [ResultCode::Exists]
    );
    let settled = outcome(7, ResultCode::Ok);
    assert_eq!(
        source.apply(Batch::ShardResolve(&[settled])),
        [ResultCode::Ok]
    );
    assert!(!source.sm.shard_in_flight(TransferId(7)));
    assert_eq!(
        source.apply(Batch::ShardResolve(&[settled])),
        [ResultCode::Exists]
    );
    // A client retry on the source answers as a retry does.
    assert_eq!(
        source.apply(Batch::ShardDebit(&[paying])),
        [ResultCode::Exists]
    );
    let changed = leg(transfer(7, PAYER, PAYEE, 31));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[changed])),
        [ResultCode::ExistsWithDifferentFields]
    );
    assert_eq!(source.sm.transit_accounts().len(), 1);
}

#[test]
fn a_failed_credit_leg_compensates_the_debit() {
    let (mut source, mut destination) = shards();
    // The capped account has no debits: any credit exceeds them. (A credit account missing
    // on delivery cannot happen through the engine, which checks it when routing; the
    // credit leg checks it again.)
    let refused = leg(transfer(8, PAYER, CAPPED, 40));
    let missing = leg(transfer(9, PAYER, AccountId(99), 10));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[refused, missing])),
        [ResultCode::Ok, ResultCode::Ok]
    );
    assert_eq!(source.balances(PAYER), (0, 50, 0, 100));
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[refused, missing])),
        [ResultCode::ExceedsDebits, ResultCode::CreditAccountNotFound]
    );
    let outcomes = [
        outcome(8, ResultCode::ExceedsDebits),
        outcome(9, ResultCode::CreditAccountNotFound),
    ];
    assert_eq!(
        source.apply(Batch::ShardResolve(&outcomes)),
        [ResultCode::Ok, ResultCode::Ok]
    );
    // The funds are back (as a movement: posted balances only grow).
    assert_eq!(source.balances(PAYER), (0, 50, 0, 150));
    assert_eq!(source.balances(transit()), (0, 50, 0, 50));
    assert_eq!(
        source.sm.transfer(TransferId(8)),
        Some(TransferLookup::Failed(ResultCode::ExceedsDebits))
    );
    assert_eq!(
        source
            .sm
            .shard_compensation(TransferId(9))
            .map(|(code, _)| code),
        Some(ResultCode::CreditAccountNotFound)
    );
    // The destination remembers the failure forever; a redelivery says so.
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[missing])),
        [ResultCode::IdAlreadyFailed]
    );
}

#[test]
fn a_debit_leg_fails_like_a_local_transfer() {
    let (mut source, _) = shards();
    let too_much = leg(transfer(10, PAYER, PAYEE, 1_000));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[too_much])),
        [ResultCode::ExceedsCredits]
    );
    assert_eq!(
        source.apply(Batch::ShardDebit(&[too_much])),
        [ResultCode::IdAlreadyFailed]
    );
    assert!(source.sm.shard_outbox().is_empty());
    // The engine saw no credit account when routing: failed before the balance check,
    // as one shard fails it.
    let unknown = ShardLeg {
        credit_account_ledger: 0,
        ..leg(transfer(15, PAYER, PAYEE, 1_000))
    };
    assert_eq!(
        source.apply(Batch::ShardDebit(&[unknown])),
        [ResultCode::CreditAccountNotFound]
    );
    let other_ledger = ShardLeg {
        credit_account_ledger: LEDGER + 1,
        ..leg(transfer(16, PAYER, PAYEE, 1))
    };
    assert_eq!(
        source.apply(Batch::ShardDebit(&[other_ledger])),
        [ResultCode::AccountsMustHaveSameLedger]
    );
    // Posts and voids travel as phase-two legs only, never as debit legs.
    let posting = leg(Transfer {
        flags: transfer_flags::POST_PENDING,
        pending_id: TransferId(3),
        ..transfer(11, PAYER, PAYEE, 1)
    });
    assert_eq!(
        source.apply(Batch::ShardDebit(&[posting])),
        [ResultCode::CrossShardPendingUnsupported]
    );
    let same_shard = ShardLeg {
        destination_shard: SOURCE,
        ..leg(transfer(12, PAYER, PAYEE, 1))
    };
    assert_eq!(
        source.apply(Batch::ShardDebit(&[same_shard])),
        [ResultCode::ReservedFieldNotZero]
    );
}

#[test]
fn clients_cannot_touch_reserved_accounts() {
    let (mut source, _) = shards();
    let paying = leg(transfer(7, PAYER, PAYEE, 30));
    assert_eq!(source.apply(Batch::ShardDebit(&[paying])), [ResultCode::Ok]);
    assert!(is_reserved_account_id(transit()));
    assert_eq!(
        source.create_account(account(AccountId(u128::MAX))),
        ResultCode::AccountIdReserved
    );
    assert_eq!(
        source.create_transfer(transfer(13, transit(), PAYER, 1)),
        ResultCode::AccountIdReserved
    );
    assert_eq!(
        source.create_transfer(transfer(14, PAYER, transit(), 1)),
        ResultCode::AccountIdReserved
    );
}

#[test]
fn the_outbox_and_compensations_survive_a_snapshot() {
    let (mut source, _) = shards();
    let legs = [
        leg(transfer(7, PAYER, PAYEE, 30)),
        leg(transfer(8, PAYER, CAPPED, 5)),
    ];
    assert_eq!(source.apply(Batch::ShardDebit(&legs)), [ResultCode::Ok; 2]);
    let refused = [outcome(8, ResultCode::ExceedsDebits)];
    assert_eq!(
        source.apply(Batch::ShardResolve(&refused)),
        [ResultCode::Ok]
    );
    let restored = StateMachine::restore(&source.sm.snapshot()).expect("restores");
    assert_eq!(restored.state_hash(), source.sm.state_hash());
    assert_eq!(restored.shard_outbox(), source.sm.shard_outbox());
    assert_eq!(
        restored.transfer(TransferId(8)),
        Some(TransferLookup::Failed(ResultCode::ExceedsDebits))
    );
    // The hash sees the outbox: settling changes it.
    let mut settled = restored;
    let before = settled.state_hash();
    let mut results = Vec::new();
    let next = settled.timestamp_last() + 1;
    settled.apply(
        next,
        Batch::ShardResolve(&[outcome(7, ResultCode::Ok)]),
        &mut results,
    );
    assert_eq!(results, [ResultCode::Ok]);
    assert_ne!(settled.state_hash(), before);
}

/// Where pending transfer `id` stands on the shard `h`.
fn pending_status(h: &Harness, id: u128) -> Option<PendingStatus> {
    match h.sm.transfer(TransferId(id)) {
        Some(TransferLookup::Committed { pending_status, .. }) => pending_status,
        other => panic!("transfer {id}: {other:?}"),
    }
}

/// Holds `amount` on both shards through the three steps, settled.
fn hold(source: &mut Harness, destination: &mut Harness, id: u128, amount: u64, timeout: u64) {
    let holding = leg(pending(id, PAYER, PAYEE, amount, timeout));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[holding])),
        [ResultCode::Ok]
    );
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[holding])),
        [ResultCode::Ok]
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(id, ResultCode::Ok)])),
        [ResultCode::Ok]
    );
}

#[test]
fn a_cross_shard_pending_transfer_holds_then_posts_on_both_shards() {
    let (mut source, mut destination) = shards();
    let holding = leg(pending(20, PAYER, PAYEE, 30, 0));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[holding])),
        [ResultCode::Ok]
    );
    assert_eq!(source.balances(PAYER), (30, 0, 0, 100));
    assert_eq!(source.balances(transit()), (0, 0, 30, 0));
    // Not postable until the credit side answered; the id stays free for the retry.
    assert_eq!(
        source.create_transfer(post(21, 20, 0)),
        ResultCode::PendingTransferInFlight
    );
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[holding])),
        [ResultCode::Ok]
    );
    assert_eq!(destination.balances(PAYEE), (0, 0, 30, 0));
    assert_eq!(destination.balances(transit()), (30, 0, 0, 0));
    // The credit side is not a client's to resolve.
    assert_eq!(
        destination.create_transfer(post(22, 20, 0)),
        ResultCode::PendingTransferNotFound
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(20, ResultCode::Ok)])),
        [ResultCode::Ok]
    );
    assert!(source.sm.shard_outbox().is_empty());
    // A post may name the credit account, which lives on the other shard.
    let elsewhere = Transfer {
        credit_account_id: CAPPED,
        ..post(23, 20, 0)
    };
    assert_eq!(
        source.create_transfer(elsewhere),
        ResultCode::PendingTransferHasDifferentFields
    );
    let capture = Transfer {
        credit_account_id: PAYEE,
        ..post(21, 20, 25)
    };
    assert_eq!(source.create_transfer(capture), ResultCode::Ok);
    assert_eq!(source.balances(PAYER), (0, 25, 0, 100));
    assert_eq!(source.balances(transit()), (0, 0, 0, 25));
    assert_eq!(pending_status(&source, 20), Some(PendingStatus::Posted));
    let released = source.sm.take_released_legs();
    assert_eq!(released.len(), 1);
    assert!(source.sm.take_released_legs().is_empty());
    assert_eq!(source.sm.shard_outbox(), released);
    let phase_two = released[0];
    assert_eq!(phase_two.transfer.id, TransferId(21));
    assert_eq!(phase_two.transfer.pending_id, TransferId(20));
    assert_eq!(phase_two.transfer.amount, 25);
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[phase_two])),
        [ResultCode::Ok]
    );
    assert_eq!(destination.balances(PAYEE), (0, 0, 0, 25));
    assert_eq!(destination.balances(transit()), (0, 25, 0, 0));
    assert_eq!(
        pending_status(&destination, 20),
        Some(PendingStatus::Posted)
    );
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[phase_two])),
        [ResultCode::Exists]
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(21, ResultCode::Ok)])),
        [ResultCode::Ok]
    );
    assert!(source.sm.shard_outbox().is_empty());
    // Retries answer as on one shard.
    assert_eq!(source.create_transfer(capture), ResultCode::Exists);
    assert_eq!(
        source.create_transfer(void(25, 20)),
        ResultCode::PendingTransferAlreadyPosted
    );
}

#[test]
fn voids_and_timeouts_release_both_sides() {
    let (mut source, mut destination) = shards();
    hold(&mut source, &mut destination, 30, 10, 0);
    assert_eq!(source.create_transfer(void(31, 30)), ResultCode::Ok);
    let released = source.sm.take_released_legs();
    assert_eq!(
        destination.apply(Batch::ShardCredit(&released)),
        [ResultCode::Ok]
    );
    assert_eq!(
        pending_status(&destination, 30),
        Some(PendingStatus::Voided)
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(31, ResultCode::Ok)])),
        [ResultCode::Ok]
    );

    // A timeout runs in the source's log time; the void of the credit side carries the
    // pending id as its own.
    let timeout = 50_000;
    hold(&mut source, &mut destination, 32, 20, timeout);
    assert_eq!(destination.balances(PAYEE), (0, 0, 20, 0));
    source.pulse_at(source.now() + timeout);
    assert_eq!(pending_status(&source, 32), Some(PendingStatus::Expired));
    assert_eq!(source.balances(PAYER), (0, 0, 0, 100));
    let expiry = source.sm.take_released_legs();
    assert_eq!(expiry.len(), 1);
    assert_eq!(expiry[0].transfer.id, TransferId(32));
    assert_eq!(
        destination.apply(Batch::ShardCredit(&expiry)),
        [ResultCode::Ok]
    );
    assert_eq!(destination.balances(PAYEE), (0, 0, 0, 0));
    assert_eq!(
        pending_status(&destination, 32),
        Some(PendingStatus::Expired)
    );
    assert_eq!(
        destination.apply(Batch::ShardCredit(&expiry)),
        [ResultCode::Exists]
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(32, ResultCode::Ok)])),
        [ResultCode::Ok]
    );
    assert!(source.sm.shard_outbox().is_empty());
}

#[test]
fn a_timeout_passing_in_flight_expires_at_settlement() {
    let (mut source, mut destination) = shards();
    let timeout = 10_000;
    let holding = leg(pending(40, PAYER, PAYEE, 15, timeout));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[holding])),
        [ResultCode::Ok]
    );
    source.pulse_at(source.now() + 2 * timeout);
    // Still held: the credit side has not answered.
    assert_eq!(source.balances(PAYER), (15, 0, 0, 100));
    assert_eq!(pending_status(&source, 40), Some(PendingStatus::Pending));
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[holding])),
        [ResultCode::Ok]
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(40, ResultCode::Ok)])),
        [ResultCode::Ok]
    );
    assert_eq!(pending_status(&source, 40), Some(PendingStatus::Expired));
    assert_eq!(source.balances(PAYER), (0, 0, 0, 100));
    let expiry = source.sm.take_released_legs();
    assert_eq!(
        destination.apply(Batch::ShardCredit(&expiry)),
        [ResultCode::Ok]
    );
    assert_eq!(destination.balances(PAYEE), (0, 0, 0, 0));
}

#[test]
fn a_refused_credit_side_releases_the_hold_and_fails_the_id() {
    let (mut source, mut destination) = shards();
    let holding = leg(pending(50, PAYER, CAPPED, 15, 0));
    assert_eq!(
        source.apply(Batch::ShardDebit(&[holding])),
        [ResultCode::Ok]
    );
    assert_eq!(
        destination.apply(Batch::ShardCredit(&[holding])),
        [ResultCode::ExceedsDebits]
    );
    assert_eq!(
        source.apply(Batch::ShardResolve(&[outcome(
            50,
            ResultCode::ExceedsDebits
        )])),
        [ResultCode::Ok]
    );
    assert_eq!(source.balances(PAYER), (0, 0, 0, 100));
    assert_eq!(
        source.sm.transfer(TransferId(50)),
        Some(TransferLookup::Failed(ResultCode::ExceedsDebits))
    );
    assert_eq!(
        source.create_transfer(post(51, 50, 0)),
        ResultCode::PendingTransferNotFound
    );
    assert_eq!(
        source.apply(Batch::ShardDebit(&[holding])),
        [ResultCode::IdAlreadyFailed]
    );
    assert!(source.sm.take_released_legs().is_empty());
}

#[test]
fn a_rolled_back_chain_sends_no_phase_two_leg() {
    let (mut source, mut destination) = shards();
    hold(&mut source, &mut destination, 60, 10, 0);
    let chain = [
        linked(post(61, 60, 0)),
        transfer(62, PAYER, BANK, 1_000), // exceeds the payer's credits
    ];
    assert_eq!(
        source.apply(Batch::CreateTransfers(&chain)),
        [ResultCode::LinkedEventFailed, ResultCode::ExceedsCredits]
    );
    assert!(source.sm.take_released_legs().is_empty());
    assert!(source.sm.shard_outbox().is_empty());
    assert_eq!(pending_status(&source, 60), Some(PendingStatus::Pending));
    // Still postable, once, and the leg goes out then.
    assert_eq!(source.create_transfer(post(63, 60, 0)), ResultCode::Ok);
    assert_eq!(source.sm.take_released_legs().len(), 1);
}

#[test]
fn settled_cross_shard_pendings_survive_a_snapshot() {
    let (mut source, mut destination) = shards();
    hold(&mut source, &mut destination, 70, 10, 0);
    let restored = StateMachine::restore(&source.sm.snapshot()).expect("restores");
    assert_eq!(restored.state_hash(), source.sm.state_hash());
    let mut results = Vec::new();
    let mut restored = restored;
    let next = restored.timestamp_last() + 1;
    let capture = Transfer {
        credit_account_id: PAYEE,
        ..post(71, 70, 0)
    };
    restored.apply(next, Batch::CreateTransfers(&[capture]), &mut results);
    assert_eq!(results, [ResultCode::Ok]);
    assert_eq!(restored.take_released_legs().len(), 1);
}
