//! Accounts and transfers: double entry, two-phase holds, balance limits, idempotency.
//!
//! Invariants kept here: per ledger, the sums of debits and credits (pending and posted
//! separately) are equal; for every account `debits_pending + debits_posted` and
//! `credits_pending + credits_posted` fit in a u64; a constrained balance never goes
//! negative.

use std::cmp::Reverse;

use super::cross_shard::is_reserved_account_id;
use super::{
    fail, fingerprint, reject, Outcome, PendingState, PendingStatus, StateMachine, TransferSlot,
};
use crate::batch::Operation;
use crate::constants::TRANSFER_CODE_SURGE_MIN;
use crate::ids::{AccountId, OrderId, TransferId};
use crate::records::{account_flags, transfer_flags, Account, Transfer};
use crate::result::ResultCode;

/// Who may resolve a pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolver {
    /// A client's post/void transfer: refused for an order's authorization.
    Client,
    /// The order that owns the authorization.
    Order(OrderId),
    /// A phase-two leg: the credit side of a cross-shard pending transfer, following
    /// its source.
    Leg,
}

impl StateMachine {
    pub(crate) fn create_account(&mut self, account: &Account, timestamp: u64) -> Outcome {
        if account.timestamp != 0 {
            reject!(TimestampMustBeZero);
        }
        if account.reserved != [0; 48] {
            reject!(ReservedFieldNotZero);
        }
        if account.flags & !account_flags::ALL != 0 {
            reject!(ReservedFlag);
        }
        let both = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
            | account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS;
        if account.flags & both == both {
            reject!(FlagsAreMutuallyExclusive);
        }
        if account.id.is_zero() {
            reject!(IdMustNotBeZero);
        }
        if is_reserved_account_id(account.id) {
            reject!(AccountIdReserved);
        }
        if account.ledger == 0 {
            reject!(LedgerMustNotBeZero);
        }
        if account.code == 0 {
            reject!(CodeMustNotBeZero);
        }
        if account.debits_pending != 0
            || account.debits_posted != 0
            || account.credits_pending != 0
            || account.credits_posted != 0
        {
            reject!(BalancesMustBeZero);
        }
        if let Some(existing) = self.accounts.get(&account.id.0) {
            let same = existing.user_data == account.user_data
                && existing.ledger == account.ledger
                && existing.code == account.code
                && existing.flags == account.flags;
            return Outcome::Existing(if same {
                ResultCode::Exists
            } else {
                ResultCode::ExistsWithDifferentFields
            });
        }
        self.accounts.insert(
            account.id.0,
            Account {
                timestamp,
                ..*account
            },
        );
        Outcome::Applied
    }

    /// Hints the cache with the accounts and id slots `transfer` will touch.
    pub(crate) fn prefetch_transfer(&self, transfer: &Transfer) {
        self.transfers.map.prefetch(&transfer.id.0);
        if transfer.pending_id.is_zero() {
            self.accounts.map.prefetch(&transfer.debit_account_id.0);
            self.accounts.map.prefetch(&transfer.credit_account_id.0);
        } else {
            self.transfers.map.prefetch(&transfer.pending_id.0);
        }
    }

    pub(crate) fn create_transfer(&mut self, transfer: &Transfer, timestamp: u64) -> Outcome {
        if let Some(code) = validate_transfer(transfer) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(
            Operation::CreateTransfers as u8,
            bytemuck::bytes_of(transfer),
        );
        match self.transfers.map.find_slot(&transfer.id.0) {
            Ok(index) => {
                self.transfer_vacant = None;
                if self.shard_compensation(transfer.id).is_some() {
                    // A cross-shard transfer whose credit leg failed: a failed id.
                    return Outcome::Existing(ResultCode::IdAlreadyFailed);
                }
                return self.transfers.map.at(index).existing(fingerprint);
            }
            // Remembered so the insert needs no second probe; nothing else inserts a
            // transfer before this command's own insert.
            Err(vacant) => self.transfer_vacant = Some((transfer.id, vacant)),
        }
        if let Some(outcome) = self
            .recalled_transfer(transfer.id)
            .map(|archived| archived.existing(fingerprint))
        {
            self.transfer_vacant = None;
            return outcome;
        }
        if transfer.flags & (transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING) != 0 {
            self.resolve_pending(transfer, timestamp, fingerprint, Resolver::Client)
        } else {
            self.move_funds(transfer, timestamp, fingerprint, OrderId::ZERO)
        }
    }

    /// A single-phase transfer or phase one of a two-phase one (`flags & PENDING`), already
    /// validated and known to be new. `order_id` marks an order's authorization.
    pub(crate) fn move_funds(
        &mut self,
        transfer: &Transfer,
        timestamp: u64,
        fingerprint: u64,
        order_id: OrderId,
    ) -> Outcome {
        let Some(debit_index) = self.accounts.map.locate(&transfer.debit_account_id.0) else {
            fail!(DebitAccountNotFound);
        };
        let Some(credit_index) = self.accounts.map.locate(&transfer.credit_account_id.0) else {
            fail!(CreditAccountNotFound);
        };
        let debit = self.accounts.map.at(debit_index);
        let credit = self.accounts.map.at(credit_index);
        if debit.ledger != credit.ledger {
            fail!(AccountsMustHaveSameLedger);
        }
        if transfer.ledger != debit.ledger {
            fail!(TransferMustHaveSameLedgerAsAccounts);
        }
        let pending = transfer.flags & transfer_flags::PENDING != 0;
        let expires_at = if pending && transfer.timeout_ns != 0 {
            match timestamp.checked_add(transfer.timeout_ns) {
                Some(expires_at) => expires_at,
                None => fail!(TimeoutOverflows),
            }
        } else {
            0
        };
        let amount = transfer.amount;
        let debits = debit.debits_pending + debit.debits_posted;
        let credits = credit.credits_pending + credit.credits_posted;
        let (Some(debits_after), Some(credits_after)) =
            (debits.checked_add(amount), credits.checked_add(amount))
        else {
            fail!(Overflows);
        };
        if debit.flags & account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS != 0
            && debits_after > debit.credits_posted
        {
            fail!(ExceedsCredits);
        }
        if credit.flags & account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS != 0
            && credits_after > credit.debits_posted
        {
            fail!(ExceedsDebits);
        }
        let debit = self.accounts.at_mut(debit_index);
        if pending {
            debit.debits_pending += amount;
        } else {
            debit.debits_posted += amount;
        }
        let credit = self.accounts.at_mut(credit_index);
        if pending {
            credit.credits_pending += amount;
        } else {
            credit.credits_posted += amount;
        }
        self.insert_transfer(
            Transfer {
                timestamp,
                ..*transfer
            },
            fingerprint,
        );
        if pending {
            let state = PendingState {
                expires_at,
                order_id,
                status: PendingStatus::Pending,
            };
            self.pendings.insert(transfer.id, state);
            if expires_at != 0 {
                self.pending_expiry.push(Reverse((expires_at, transfer.id)));
            }
        }
        Outcome::Applied
    }

    /// Phase two: post (all or part) or void the pending transfer `transfer.pending_id`.
    pub(crate) fn resolve_pending(
        &mut self,
        transfer: &Transfer,
        timestamp: u64,
        fingerprint: u64,
        resolver: Resolver,
    ) -> Outcome {
        let pending_id = transfer.pending_id;
        if self.shard_compensation(pending_id).is_some() {
            // A cross-shard pending transfer its credit side refused: a failed id.
            fail!(PendingTransferNotFound);
        }
        let Some(slot) = self.transfers.get(&pending_id.0).copied() else {
            // A finished transfer that left memory answers as it would have in memory
            // (only client transfers leave, so the resolver check cannot apply).
            return match self.recalled_transfer(pending_id) {
                Some(archived) => Outcome::Failed(archived.resolve_failure()),
                None => Outcome::Failed(ResultCode::PendingTransferNotFound),
            };
        };
        if slot.failure().is_some() {
            fail!(PendingTransferNotFound);
        }
        let Some(state) = self.pendings.get(&pending_id).copied() else {
            fail!(PendingTransferNotPending);
        };
        match resolver {
            Resolver::Client if !state.order_id.is_zero() => fail!(PendingTransferOwnedByOrder),
            Resolver::Order(order_id) => assert_eq!(state.order_id, order_id),
            Resolver::Client | Resolver::Leg => {}
        }
        match state.status {
            PendingStatus::Pending if state.expires_at != 0 && state.expires_at <= timestamp => {
                fail!(PendingTransferExpired)
            }
            PendingStatus::Pending => {}
            PendingStatus::Posted => fail!(PendingTransferAlreadyPosted),
            PendingStatus::Voided => fail!(PendingTransferAlreadyVoided),
            PendingStatus::Expired => fail!(PendingTransferExpired),
        }
        let pending = *self.record_at(slot.sequence());
        // A cross-shard pending transfer: the source holds the debit side (credit to
        // transit) and resolves it; the destination holds the credit side (debit from
        // transit) and only a phase-two leg resolves that.
        if is_reserved_account_id(pending.debit_account_id) != (resolver == Resolver::Leg) {
            fail!(PendingTransferNotFound);
        }
        let debit_side = is_reserved_account_id(pending.credit_account_id);
        let credit_account_id = if debit_side {
            match self.cross_pending_credit(pending_id) {
                Ok(credit) => credit,
                // Transient: the id stays free for the retry.
                Err(code) => return Outcome::Rejected(code),
            }
        } else {
            pending.credit_account_id
        };
        let differs = |given: u128, expected: u128| given != 0 && given != expected;
        if differs(transfer.debit_account_id.0, pending.debit_account_id.0)
            || differs(transfer.credit_account_id.0, credit_account_id.0)
            || differs(u128::from(transfer.ledger), u128::from(pending.ledger))
            || differs(u128::from(transfer.code), u128::from(pending.code))
        {
            fail!(PendingTransferHasDifferentFields);
        }
        let post = transfer.flags & transfer_flags::POST_PENDING != 0;
        let amount = match (post, transfer.amount) {
            (true, 0) => pending.amount,
            (true, amount) if amount <= pending.amount => amount,
            (false, 0) => pending.amount,
            (false, amount) if amount == pending.amount => amount,
            _ => fail!(ExceedsPendingAmount),
        };
        self.release_hold(&pending);
        if post {
            self.post_funds(pending.debit_account_id, pending.credit_account_id, amount);
        }
        let status = if post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.pendings
            .insert(pending_id, PendingState { status, ..state });
        self.transfers_digest = self
            .transfers_digest
            .wrapping_add(resolution_digest(pending_id, status));
        let record = Transfer {
            debit_account_id: pending.debit_account_id,
            credit_account_id: pending.credit_account_id,
            amount,
            timeout_ns: 0,
            ledger: pending.ledger,
            code: pending.code,
            timestamp,
            ..*transfer
        };
        self.insert_transfer(record, fingerprint);
        if debit_side {
            self.stage_phase_two(&pending, record);
        }
        Outcome::Applied
    }

    /// Adds `amount` to the posted debits of `debit` and the posted credits of `credit`,
    /// both existing accounts whose limits the caller already checked (a post within its
    /// hold, funds returned from transit); a u64 overflow there is a broken invariant.
    pub(crate) fn post_funds(&mut self, debit: AccountId, credit: AccountId, amount: u64) {
        let debit = self
            .accounts
            .get_mut(&debit.0)
            .expect("an existing account");
        debit.debits_posted = debit
            .debits_posted
            .checked_add(amount)
            .expect("posted debits fit a u64");
        let credit = self
            .accounts
            .get_mut(&credit.0)
            .expect("an existing account");
        credit.credits_posted = credit
            .credits_posted
            .checked_add(amount)
            .expect("posted credits fit a u64");
    }

    /// Takes a pending transfer's amount off both accounts' pending balances.
    pub(crate) fn release_hold(&mut self, pending: &Transfer) {
        let debit = self
            .accounts
            .get_mut(&pending.debit_account_id.0)
            .expect("pending's account");
        debit.debits_pending = debit
            .debits_pending
            .checked_sub(pending.amount)
            .expect("hold is in the balance");
        let credit = self
            .accounts
            .get_mut(&pending.credit_account_id.0)
            .expect("pending's account");
        credit.credits_pending = credit
            .credits_pending
            .checked_sub(pending.amount)
            .expect("hold is in the balance");
    }

    /// Releases a pending transfer whose own timeout passed (sweep only).
    pub(crate) fn expire_pending(&mut self, transfer_id: TransferId, due: u64) {
        let Some(state) = self.pendings.get(&transfer_id).copied() else {
            return; // Rolled back after the heap entry was pushed.
        };
        if state.status != PendingStatus::Pending || state.expires_at != due {
            return;
        }
        assert!(
            state.order_id.is_zero(),
            "order authorizations expire with their order"
        );
        let pending = self.committed_transfer(transfer_id);
        if is_reserved_account_id(pending.credit_account_id) {
            // The debit side of a cross-shard pending transfer: if its credit side has not
            // answered yet, it expires when it settles.
            if self.cross_pending_credit(transfer_id).is_ok() {
                self.expire_cross_pending(transfer_id, state);
            }
            return;
        }
        self.expire_pending_now(transfer_id, state);
    }

    /// Releases the hold of a live pending transfer and marks it expired.
    pub(crate) fn expire_pending_now(&mut self, transfer_id: TransferId, state: PendingState) {
        assert_eq!(state.status, PendingStatus::Pending);
        let pending = self.committed_transfer(transfer_id);
        self.release_hold(&pending);
        self.pendings.insert(
            transfer_id,
            PendingState {
                status: PendingStatus::Expired,
                ..state
            },
        );
        self.transfers_digest = self
            .transfers_digest
            .wrapping_add(resolution_digest(transfer_id, PendingStatus::Expired));
    }

    pub(crate) fn pending_state(&self, transfer_id: TransferId) -> Option<PendingState> {
        self.pendings.get(&transfer_id).copied()
    }

    /// The stored record of a committed transfer; the caller knows it exists.
    pub(crate) fn committed_transfer(&self, transfer_id: TransferId) -> Transfer {
        let slot = self.transfers.get(&transfer_id.0).expect("transfer exists");
        assert!(slot.failure().is_none());
        *self.record_at(slot.sequence())
    }

    /// The record with sequence number `sequence` (a committed slot's `index`), which
    /// must be resident: in the window of recent records, or kept because it is live.
    pub(crate) fn record_at(&self, sequence: u64) -> &Transfer {
        match sequence.checked_sub(self.transfer_records_base) {
            Some(offset) => &self.transfer_records[offset as usize],
            None => self
                .transfer_records_kept
                .get(&sequence)
                .expect("a resident slot's record is resident"),
        }
    }

    /// The sequence number the next committed transfer gets: read it before applying a
    /// batch to list the batch's transfers with [`StateMachine::transfers_committed_since`].
    pub fn transfer_sequence_next(&self) -> u64 {
        self.transfer_records_base + self.transfer_records.len() as u64
    }

    /// The transfers committed from sequence number `sequence` on, in the order they were
    /// committed: read in order, not looked up one by one. Empty if any of them left the
    /// window of recent records.
    pub fn transfers_committed_since(
        &self,
        sequence: u64,
    ) -> impl Iterator<Item = &Transfer> + Clone {
        let offset = sequence
            .checked_sub(self.transfer_records_base)
            .and_then(|offset| usize::try_from(offset).ok())
            .filter(|offset| *offset <= self.transfer_records.len())
            .unwrap_or(self.transfer_records.len());
        self.transfer_records.range(offset..)
    }

    /// Hints the cache with the slot of account `id` (the history index reads the
    /// balances a batch left, account by account). Reads nothing.
    pub fn prefetch_account(&self, id: AccountId) {
        self.accounts.map.prefetch(&id.0);
    }

    /// The answer to reusing `transfer_id` for a command with `fingerprint`, if it is used.
    pub(crate) fn transfer_existing(
        &self,
        transfer_id: TransferId,
        fingerprint: u64,
    ) -> Option<Outcome> {
        if self.shard_compensation(transfer_id).is_some() {
            // A cross-shard transfer whose credit leg failed: a failed id.
            return Some(Outcome::Existing(ResultCode::IdAlreadyFailed));
        }
        match self.transfers.get(&transfer_id.0) {
            Some(slot) => Some(slot.existing(fingerprint)),
            None => self
                .recalled_transfer(transfer_id)
                .map(|archived| archived.existing(fingerprint)),
        }
    }

    pub(crate) fn transfer_id_used(&self, transfer_id: TransferId) -> bool {
        self.transfers.contains(&transfer_id.0) || self.recalled_transfer(transfer_id).is_some()
    }

    fn insert_transfer(&mut self, record: Transfer, fingerprint: u64) {
        let sequence = self.transfer_sequence_next();
        let slot = TransferSlot::committed(record.id, sequence, fingerprint, &record);
        self.transfers_digest = self
            .transfers_digest
            .wrapping_add(slot_digest(slot, record.timestamp));
        match self.transfer_vacant.take() {
            Some((id, vacant)) if id == record.id => self.transfers.fill_vacant(vacant, slot),
            _ => self.transfers.insert(record.id.0, slot),
        }
        self.transfer_records.push_back(record);
    }

    /// Remembers that the first attempt with `transfer_id` failed with `code`.
    pub(crate) fn record_transfer_failure(&mut self, transfer_id: TransferId, code: ResultCode) {
        self.transfer_vacant = None;
        assert!(!code.is_success());
        assert!(
            !self.transfers.contains(&transfer_id.0),
            "only new ids fail on the state"
        );
        let slot = TransferSlot::failed(transfer_id, code, self.transfer_sequence_next());
        self.transfers_digest = self.transfers_digest.wrapping_add(slot_digest(slot, 0));
        self.transfers.insert(transfer_id.0, slot);
    }
}

/// Digest of one transfer slot, summed (order-independently) into the state hash. The
/// fingerprint already covers the command's bytes; everything else in the stored record
/// (resolved amounts and accounts of a post) is a function of state the hash covers too.
/// A replay check needs a digest that differs when any input differs, not a
/// cryptographic one, so two rounds of multiply-fold per half suffice.
pub(crate) fn slot_digest(slot: TransferSlot, timestamp: u64) -> u128 {
    use super::table::mix64;
    let id_low = slot.id.0 as u64;
    let id_high = (slot.id.0 >> 64) as u64;
    let low = mix64(id_low ^ mix64(slot.fingerprint ^ mix64(timestamp)));
    let high = mix64(id_high ^ mix64(slot.index ^ low));
    (u128::from(high) << 64) | u128::from(low)
}

/// Digest of a pending transfer's final status, added to the transfers digest when it
/// resolves: the state hash covers how every two-phase transfer ended without walking
/// resolved ones (which may have left memory).
pub(crate) fn resolution_digest(id: TransferId, status: PendingStatus) -> u128 {
    use super::table::mix64;
    let low = mix64((id.0 as u64) ^ mix64(0x5245_534f_4c56_4544 ^ status as u64));
    let high = mix64(((id.0 >> 64) as u64) ^ low);
    (u128::from(high) << 64) | u128::from(low)
}

/// Checks a client transfer from its fields alone; `None` if well formed.
/// [`validate_transfer`] for a transfer the engine made for an order (an authorization or
/// a refund, whose codes are Surge's own): any other reserved code is refused.
pub(crate) fn validate_order_transfer(transfer: &Transfer) -> Option<ResultCode> {
    use crate::constants::{TRANSFER_CODE_ORDER_PAYMENT, TRANSFER_CODE_ORDER_REFUND};
    let expected = if transfer.flags & transfer_flags::PENDING != 0 {
        TRANSFER_CODE_ORDER_PAYMENT
    } else {
        TRANSFER_CODE_ORDER_REFUND
    };
    if transfer.code != expected {
        return Some(ResultCode::CodeReserved);
    }
    validate_transfer(&Transfer {
        code: 1,
        ..*transfer
    })
}

pub(crate) fn validate_transfer(transfer: &Transfer) -> Option<ResultCode> {
    use ResultCode as R;
    let flags = transfer.flags;
    if transfer.timestamp != 0 {
        return Some(R::TimestampMustBeZero);
    }
    if transfer.reserved != [0; 16] {
        return Some(R::ReservedFieldNotZero);
    }
    if flags & !transfer_flags::ALL != 0 {
        return Some(R::ReservedFlag);
    }
    if transfer.id.is_zero() {
        return Some(R::IdMustNotBeZero);
    }
    let phase_bits = flags
        & (transfer_flags::PENDING | transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING);
    if phase_bits.count_ones() > 1 {
        return Some(R::FlagsAreMutuallyExclusive);
    }
    if phase_bits & (transfer_flags::POST_PENDING | transfer_flags::VOID_PENDING) != 0 {
        if transfer.pending_id.is_zero() {
            return Some(R::PendingIdMustNotBeZero);
        }
        if transfer.pending_id == transfer.id {
            return Some(R::PendingIdMustBeDifferent);
        }
        if transfer.timeout_ns != 0 {
            return Some(R::TimeoutReservedForPendingTransfer);
        }
        return None;
    }
    if !transfer.pending_id.is_zero() {
        return Some(R::PendingIdMustBeZero);
    }
    if phase_bits & transfer_flags::PENDING == 0 && transfer.timeout_ns != 0 {
        return Some(R::TimeoutReservedForPendingTransfer);
    }
    if transfer.debit_account_id.is_zero() {
        return Some(R::DebitAccountIdMustNotBeZero);
    }
    if transfer.credit_account_id.is_zero() {
        return Some(R::CreditAccountIdMustNotBeZero);
    }
    if transfer.debit_account_id == transfer.credit_account_id {
        return Some(R::AccountsMustBeDifferent);
    }
    if is_reserved_account_id(transfer.debit_account_id)
        || is_reserved_account_id(transfer.credit_account_id)
    {
        return Some(R::AccountIdReserved);
    }
    if transfer.amount == 0 {
        return Some(R::AmountMustNotBeZero);
    }
    if transfer.ledger == 0 {
        return Some(R::LedgerMustNotBeZero);
    }
    if transfer.code == 0 {
        return Some(R::CodeMustNotBeZero);
    }
    if transfer.code >= TRANSFER_CODE_SURGE_MIN {
        return Some(R::CodeReserved);
    }
    None
}
