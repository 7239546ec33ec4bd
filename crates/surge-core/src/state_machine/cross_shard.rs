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
//!
//! **Pending (two-phase) transfers** between shards take the same three steps, each leg a
//! pending transfer of its shard: the source holds the funds (debit account to transit,
//! `debits_pending`), the destination holds the credit (transit to credit account,
//! `credits_pending`, without a timeout of its own), and the resolve settles or releases
//! the source's hold. The source owns the transfer from then on: a post or void, or the
//! timeout (in the source's log time), resolves it there, and a **phase-two leg** (the
//! post's or void's id, the pending id, the amount resolved) joins the outbox for the
//! destination to resolve its side the same way. Expiry sends a void whose id is the
//! pending id itself. The destination's side can fail no check once it holds the
//! credit, so a phase-two leg's outcome only settles it. A post or void before the
//! pending transfer settled fails with `pending_transfer_in_flight`.

use std::collections::BTreeMap;

use super::ledger::Resolver;
use super::{fingerprint, reject, Outcome, PendingStatus, StateMachine};
use crate::batch::Operation;
use crate::ids::{AccountId, OrderId, TransferId};
use crate::records::{transfer_flags, Account, ShardLeg, ShardOutcome, Transfer};
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

/// The (source, destination) shards a transit account id names.
pub const fn transit_shards(id: AccountId) -> (u32, u32) {
    let low = id.0 as u64;
    (((low >> 16) & 0xFFFF) as u32, (low & 0xFFFF) as u32)
}

/// The phase-two flags (post or void).
const PHASE_TWO: u16 = transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING;

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
    /// Cross-shard pending transfers settled on both shards and still pending, by id:
    /// their debit leg as logged (it names the credit account a post or void may repeat).
    pub(crate) pendings: BTreeMap<TransferId, ShardLeg>,
    /// Phase-two legs of the commands applied since the last flush: they join the outbox
    /// when the batch is done, unless a failed linked chain rolls their command back.
    /// Empty between batches (not state).
    pub(crate) staged: Vec<ShardLeg>,
    /// Phase-two legs that joined the outbox, until the engine takes them to deliver
    /// (not state: after a restart the engine delivers the whole outbox).
    pub(crate) released: Vec<ShardLeg>,
}

impl StateMachine {
    /// A debit leg (see the module documentation).
    pub(crate) fn shard_debit(&mut self, leg: &ShardLeg, timestamp: u64) -> Outcome {
        let transfer = &leg.transfer;
        if let Some(code) = validate_leg(leg, transfer_flags::PENDING) {
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
        self.debit_to_transit(leg, timestamp, fingerprint, OrderId::ZERO)
    }

    /// A debit leg known to be new: the funds (or, for a pending transfer, the hold owned
    /// by `owner`, if any) move from the debit account to the transit account, and the leg
    /// joins the outbox.
    pub(crate) fn debit_to_transit(
        &mut self,
        leg: &ShardLeg,
        timestamp: u64,
        fingerprint: u64,
        owner: OrderId,
    ) -> Outcome {
        let transfer = &leg.transfer;
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
        let outcome = self.move_funds(&debit_leg, timestamp, fingerprint, owner);
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
        if transfer.flags & PHASE_TWO != 0 {
            return self.shard_credit_phase_two(leg, timestamp);
        }
        // An order's authorization or refund carries Surge's own code.
        let order_leg = transfer.code >= crate::constants::TRANSFER_CODE_SURGE_MIN;
        let invalid = if order_leg {
            validate_leg_shards(leg)
                .or_else(|| super::ledger::validate_order_transfer(transfer))
                .or_else(|| (transfer.timeout_ns != 0).then_some(ResultCode::ReservedFlag))
        } else {
            validate_leg(leg, transfer_flags::PENDING)
        };
        if let Some(code) = invalid {
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
            // The source's timeout governs: it voids this side when it expires.
            timeout_ns: 0,
            ..*transfer
        };
        self.move_funds(&credit_leg, timestamp, fingerprint, OrderId::ZERO)
    }

    /// A phase-two leg on the destination: resolves its side of a cross-shard pending
    /// transfer as the source resolved its own. Deduped by the post's or void's id; an
    /// expiry (id = pending id) by the pending transfer's status.
    fn shard_credit_phase_two(&mut self, leg: &ShardLeg, timestamp: u64) -> Outcome {
        let transfer = &leg.transfer;
        if let Some(code) = validate_leg_shards(leg) {
            return Outcome::Rejected(code);
        }
        let flags = transfer.flags;
        if flags != transfer_flags::POST_PENDING && flags != transfer_flags::VOID_PENDING {
            return Outcome::Rejected(ResultCode::CrossShardPendingUnsupported);
        }
        self.transfer_vacant = None;
        if transfer.id == transfer.pending_id {
            if flags != transfer_flags::VOID_PENDING {
                return Outcome::Rejected(ResultCode::CrossShardPendingUnsupported);
            }
            return self.expire_credit_side(transfer.pending_id);
        }
        if let Some(code) = super::ledger::validate_transfer(transfer) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(
            Operation::CreateTransfers as u8,
            bytemuck::bytes_of(transfer),
        );
        if let Some(existing) = self.transfer_existing(transfer.id, fingerprint) {
            return existing;
        }
        self.resolve_pending(transfer, timestamp, fingerprint, Resolver::Leg)
    }

    /// The source's pending transfer `id` expired: release this (credit) side's hold.
    /// Never `Failed`: the id is the pending transfer's own, which exists here.
    fn expire_credit_side(&mut self, id: TransferId) -> Outcome {
        let Some(state) = self.pending_state(id) else {
            return Outcome::Rejected(ResultCode::PendingTransferNotFound);
        };
        let record = self.committed_transfer(id);
        if !is_reserved_account_id(record.debit_account_id) {
            return Outcome::Rejected(ResultCode::PendingTransferNotFound);
        }
        if state.status != PendingStatus::Pending {
            return Outcome::Existing(ResultCode::Exists);
        }
        self.expire_pending_now(id, state);
        Outcome::Applied
    }

    /// Called when this shard resolved (posted, voided, expired) its debit side of the
    /// cross-shard pending transfer `pending` as `resolution` (id, flags, amount): stages
    /// the phase-two leg for the destination.
    pub(crate) fn stage_phase_two(&mut self, pending: &Transfer, resolution: Transfer) {
        let (source, destination) = transit_shards(pending.credit_account_id);
        let leg = ShardLeg {
            transfer: Transfer {
                id: resolution.id,
                pending_id: pending.id,
                amount: resolution.amount,
                flags: resolution.flags & PHASE_TWO,
                ..Transfer::default()
            },
            source_shard: source,
            destination_shard: destination,
            credit_account_ledger: pending.ledger,
            reserved: [0; 4],
        };
        self.cross_shard.staged.push(leg);
    }

    /// Moves the staged phase-two legs into the outbox (end of a batch).
    pub(crate) fn flush_phase_two(&mut self) {
        if self.cross_shard.staged.is_empty() {
            return;
        }
        for leg in std::mem::take(&mut self.cross_shard.staged) {
            self.cross_shard.pendings.remove(&leg.transfer.pending_id);
            assert!(self
                .cross_shard
                .outbox
                .insert(leg.transfer.id, leg)
                .is_none());
            self.cross_shard.released.push(leg);
        }
    }

    /// Phase-two legs that joined the outbox since the last call (the engine delivers
    /// them).
    pub fn take_released_legs(&mut self) -> Vec<ShardLeg> {
        std::mem::take(&mut self.cross_shard.released)
    }

    /// The credit account of cross-shard pending transfer `id` held here (its debit
    /// side), if it settled and is still pending; `Err` if it has not settled yet.
    pub(crate) fn cross_pending_credit(&self, id: TransferId) -> Result<AccountId, ResultCode> {
        if self.cross_shard.outbox.contains_key(&id) {
            return Err(ResultCode::PendingTransferInFlight);
        }
        self.cross_shard
            .pendings
            .get(&id)
            .map(|leg| leg.transfer.credit_account_id)
            .ok_or(ResultCode::PendingTransferInFlight)
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
        let transfer = leg.transfer;
        if transfer.flags & PHASE_TWO != 0 {
            // The destination held the credit: resolving it cannot fail.
            debug_assert!(code.is_success(), "phase-two leg failed: {code:?}");
            return Outcome::Applied;
        }
        let pending = transfer.flags & transfer_flags::PENDING != 0;
        if code.is_success() {
            if pending {
                self.settle_cross_pending(leg, timestamp);
            }
            return Outcome::Applied;
        }
        let transit = transit_account_id(transfer.ledger, leg.source_shard, leg.destination_shard);
        if pending {
            // Release the hold; nothing was posted.
            let state = self
                .pending_state(transfer.id)
                .expect("a pending debit leg's state");
            assert_eq!(state.status, PendingStatus::Pending);
            self.void_cross_pending(transfer.id, state);
            // The void of the hold, as a statement shows it (the pending amounts back off
            // the debit account and the transit account).
            let record = Transfer {
                pending_id: transfer.id,
                credit_account_id: transit,
                code: TRANSFER_CODE_CROSS_SHARD_COMPENSATION,
                flags: transfer_flags::VOID_PENDING,
                timeout_ns: 0,
                timestamp,
                ..transfer
            };
            let compensated = Compensated {
                code,
                transfer: record,
            };
            assert!(self
                .cross_shard
                .compensated
                .insert(transfer.id, compensated)
                .is_none());
            return Outcome::Applied;
        }
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

    /// A pending debit leg's credit side accepted: the transfer is the source's to
    /// resolve from now on; if its timeout passed while it was in flight (the sweep skips
    /// unsettled ones), it expires now.
    fn settle_cross_pending(&mut self, leg: ShardLeg, timestamp: u64) {
        let id = leg.transfer.id;
        let state = self.pending_state(id).expect("a pending debit leg's state");
        assert_eq!(state.status, PendingStatus::Pending);
        assert!(self.cross_shard.pendings.insert(id, leg).is_none());
        if state.expires_at != 0 && state.expires_at <= timestamp {
            self.expire_cross_pending(id, state);
        }
    }

    /// Expires the debit side of cross-shard pending transfer `id` and stages the void of
    /// its credit side (whose id is the pending id: expiry has none of its own).
    pub(crate) fn expire_cross_pending(&mut self, id: TransferId, state: super::PendingState) {
        let pending = self.committed_transfer(id);
        self.expire_pending_now(id, state);
        let void = Transfer {
            id,
            amount: pending.amount,
            flags: transfer_flags::VOID_PENDING,
            ..Transfer::default()
        };
        self.stage_phase_two(&pending, void);
    }

    /// Releases the hold of a pending debit leg whose credit side refused it.
    fn void_cross_pending(&mut self, id: TransferId, state: super::PendingState) {
        let pending = self.committed_transfer(id);
        self.release_hold(&pending);
        let status = PendingStatus::Voided;
        self.pendings
            .insert(id, super::PendingState { status, ..state });
        self.transfers_digest = self
            .transfers_digest
            .wrapping_add(super::ledger::resolution_digest(id, status));
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

/// Checks a debit or credit leg from its fields alone: its transfer as a client transfer
/// with no flags but `flags_allowed`, between two different shards.
fn validate_leg(leg: &ShardLeg, flags_allowed: u16) -> Option<ResultCode> {
    if let Some(code) = validate_leg_shards(leg) {
        return Some(code);
    }
    if leg.transfer.flags & !flags_allowed != 0 {
        return Some(ResultCode::CrossShardPendingUnsupported);
    }
    super::ledger::validate_transfer(&leg.transfer)
}

/// Checks a leg's own fields: reserved bytes, two different shards.
fn validate_leg_shards(leg: &ShardLeg) -> Option<ResultCode> {
    if leg.reserved != [0; 4] {
        return Some(ResultCode::ReservedFieldNotZero);
    }
    if leg.source_shard == leg.destination_shard
        || leg.source_shard >= SHARDS_MAX
        || leg.destination_shard >= SHARDS_MAX
    {
        return Some(ResultCode::ReservedFieldNotZero);
    }
    None
}
