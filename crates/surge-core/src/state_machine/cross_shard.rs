//! Cross-shard transfers, as each shard's state machine sees them. The engine splits a
//! single-phase transfer whose accounts live on different shards into legs, each a logged
//! command of one shard:
//!
//! 1. **Debit leg** (source shard): every check the source can make (the debit account,
//!    its ledger and balance limit, the id's idempotency), then the funds move from the
//!    debit account into the *transit account* for the destination shard, and the leg
//!    joins the source's **outbox**.
//! 2. **Credit leg** (destination shard): the checks only it can make (the credit account,
//!    its ledger and limit); the funds move from its transit account for the source shard
//!    to the credit account. The transfer id dedupes redeliveries (`exists`).
//! 3. **Resolve** (source shard): the credit leg's code. Success settles (the outbox entry
//!    goes); a failure compensates: the funds move back from transit to the debit account,
//!    and the transfer's outcome becomes that code for good.
//!
//! Per ledger, every leg is a balanced transfer within its shard, so conservation holds on
//! every shard at every log position; a source's transit credits minus its compensations
//! equal the destination's transit debits plus what is in its outbox.

use std::collections::BTreeMap;

use super::{fingerprint, reject, Outcome, StateMachine};
use crate::batch::Operation;
use crate::ids::{AccountId, OrderId, TransferId};
use crate::records::{Account, ShardLeg, ShardOutcome, Transfer};
use crate::result::ResultCode;
use crate::shard::SHARDS_MAX;

/// High 64 bits of every id Surge reserves for its own accounts (transit accounts).
pub const ACCOUNT_ID_RESERVED_HIGH: u64 = u64::MAX;

/// Account code of transit accounts.
pub const TRANSIT_ACCOUNT_CODE: u16 = 0xFFFF;

/// Transfer code of the movement that returns a failed cross-shard transfer's funds.
pub const TRANSFER_CODE_CROSS_SHARD_COMPENSATION: u16 = 0xFF10;

/// Whether clients may not use `id` (Surge's own accounts).
pub const fn is_reserved_account_id(id: AccountId) -> bool {
    (id.0 >> 64) as u64 == ACCOUNT_ID_RESERVED_HIGH
}

/// The transit account for money moving from shard `source` to shard `destination` in
/// `ledger`. The same id names the source's outgoing side and the destination's incoming
/// side; across the two shards they net to what is in flight.
pub const fn transit_account_id(ledger: u32, source: u32, destination: u32) -> AccountId {
    let low = ((ledger as u128) << 32) | ((source as u128) << 16) | destination as u128;
    AccountId(((ACCOUNT_ID_RESERVED_HIGH as u128) << 64) | low)
}

/// A cross-shard transfer that failed on its destination, kept on its source shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Compensated {
    /// The credit leg's failure.
    pub(crate) code: ResultCode,
    /// The movement back from transit, as applied.
    pub(crate) transfer: Transfer,
}

/// The cross-shard state of one shard.
#[derive(Clone, Debug, Default)]
pub(crate) struct CrossShard {
    /// Debit legs applied here whose credit leg has no outcome yet, by transfer id.
    pub(crate) outbox: BTreeMap<TransferId, ShardLeg>,
    /// Debit legs whose credit leg failed, by transfer id: their final outcome.
    pub(crate) compensated: BTreeMap<TransferId, Compensated>,
}

impl StateMachine {
    /// A debit leg (see the module documentation).
    pub(crate) fn shard_debit(&mut self, leg: &ShardLeg, timestamp: u64) -> Outcome {
        let transfer = &leg.transfer;
        if let Some(code) = validate_leg(leg) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(
            Operation::CreateTransfers as u8,
            bytemuck::bytes_of(transfer),
        );
        self.transfer_vacant = None;
        if let Some(existing) = self.transfer_existing(transfer.id, fingerprint) {
            return existing;
        }
        // The checks of one shard, in its order, before the balance checks: the credit
        // account as the engine saw it when routing (the credit leg checks it again).
        let Some(debit) = self.accounts.get(&transfer.debit_account_id.0) else {
            return Outcome::Failed(ResultCode::DebitAccountNotFound);
        };
        if leg.credit_account_ledger == 0 {
            return Outcome::Failed(ResultCode::CreditAccountNotFound);
        }
        if debit.ledger != leg.credit_account_ledger {
            return Outcome::Failed(ResultCode::AccountsMustHaveSameLedger);
        }
        if debit.ledger != transfer.ledger {
            return Outcome::Failed(ResultCode::TransferMustHaveSameLedgerAsAccounts);
        }
        let transit = self.transit_account(
            transfer.ledger,
            leg.source_shard,
            leg.destination_shard,
            timestamp,
        );
        let debit_leg = Transfer {
            credit_account_id: transit,
            ..*transfer
        };
        let outcome = self.move_funds(&debit_leg, timestamp, fingerprint, OrderId::ZERO);
        if outcome == Outcome::Applied {
            // Kept byte for byte as logged: a redelivery must fingerprint as the first
            // delivery did, so the destination dedupes it.
            assert!(self.cross_shard.outbox.insert(transfer.id, *leg).is_none());
        }
        outcome
    }

    /// A credit leg (see the module documentation).
    pub(crate) fn shard_credit(&mut self, leg: &ShardLeg, timestamp: u64) -> Outcome {
        let transfer = &leg.transfer;
        if let Some(code) = validate_leg(leg) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(
            Operation::CreateTransfers as u8,
            bytemuck::bytes_of(transfer),
        );
        self.transfer_vacant = None;
        if let Some(existing) = self.transfer_existing(transfer.id, fingerprint) {
            return existing;
        }
        let transit = self.transit_account(
            transfer.ledger,
            leg.source_shard,
            leg.destination_shard,
            timestamp,
        );
        let credit_leg = Transfer {
            debit_account_id: transit,
            ..*transfer
        };
        self.move_funds(&credit_leg, timestamp, fingerprint, OrderId::ZERO)
    }

    /// A credit leg's outcome, back on the source (see the module documentation). Once
    /// the transfer has left the outbox, a repeat changes nothing and answers `exists`.
    pub(crate) fn shard_resolve(&mut self, outcome: &ShardOutcome, timestamp: u64) -> Outcome {
        if outcome.reserved != [0; 12] {
            reject!(ReservedFieldNotZero);
        }
        let Some(code) = ResultCode::from_u32(outcome.code) else {
            reject!(ReservedFieldNotZero);
        };
        let Some(leg) = self.cross_shard.outbox.remove(&outcome.transfer_id) else {
            return Outcome::Existing(ResultCode::Exists);
        };
        if code.is_success() {
            return Outcome::Applied;
        }
        let transfer = leg.transfer;
        let transit = transit_account_id(transfer.ledger, leg.source_shard, leg.destination_shard);
        let back = Transfer {
            debit_account_id: transit,
            credit_account_id: transfer.debit_account_id,
            code: TRANSFER_CODE_CROSS_SHARD_COMPENSATION,
            timestamp,
            ..transfer
        };
        self.post_funds(transit, transfer.debit_account_id, transfer.amount);
        let compensated = Compensated {
            code,
            transfer: back,
        };
        assert!(self
            .cross_shard
            .compensated
            .insert(transfer.id, compensated)
            .is_none());
        Outcome::Applied
    }

    /// The transit account for (`ledger`, `source` → `destination`), created on first use.
    fn transit_account(
        &mut self,
        ledger: u32,
        source: u32,
        destination: u32,
        timestamp: u64,
    ) -> AccountId {
        let id = transit_account_id(ledger, source, destination);
        if self.accounts.get(&id.0).is_none() {
            // Outside the undo journal: a leg is never part of a chain, and if it fails
            // after this the account stays (empty, and the same on every replay), so a leg
            // never needs the undo log.
            let created = Account {
                id,
                ledger,
                code: TRANSIT_ACCOUNT_CODE,
                timestamp,
                ..Account::default()
            };
            assert!(self.accounts.map.insert(created).is_none());
        }
        id
    }

    /// Debit legs applied on this shard whose credit leg has no outcome yet, in id order
    /// (what the engine delivers again after a restart).
    pub fn shard_outbox(&self) -> Vec<ShardLeg> {
        self.cross_shard.outbox.values().copied().collect()
    }

    /// Whether cross-shard transfer `id`'s debit leg waits for its credit leg's outcome.
    pub fn shard_in_flight(&self, id: TransferId) -> bool {
        self.cross_shard.outbox.contains_key(&id)
    }

    /// The movement that returned a failed cross-shard transfer's funds, if `id` is one.
    pub fn shard_compensation(&self, id: TransferId) -> Option<(ResultCode, Transfer)> {
        let found = self.cross_shard.compensated.get(&id)?;
        Some((found.code, found.transfer))
    }

    /// Every transit account on this shard (audits count them in conservation).
    pub fn transit_accounts(&self) -> Vec<Account> {
        let mut found: Vec<Account> = self
            .accounts
            .map
            .iter()
            .filter(|account| is_reserved_account_id(account.id))
            .copied()
            .collect();
        found.sort_unstable_by_key(|account| account.id);
        found
    }
}

/// Checks a leg from its fields alone: its transfer as a client transfer, single-phase,
/// and two different shards.
fn validate_leg(leg: &ShardLeg) -> Option<ResultCode> {
    if leg.reserved != [0; 4] {
        return Some(ResultCode::ReservedFieldNotZero);
    }
    if leg.source_shard == leg.destination_shard
        || leg.source_shard >= SHARDS_MAX
        || leg.destination_shard >= SHARDS_MAX
    {
        return Some(ResultCode::ReservedFieldNotZero);
    }
    if leg.transfer.flags != 0 {
        return Some(ResultCode::CrossShardPendingUnsupported);
    }
    super::ledger::validate_transfer(&leg.transfer)
}
