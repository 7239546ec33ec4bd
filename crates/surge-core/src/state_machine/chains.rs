//! Linked chains: how a batch's events are applied one chain at a time, a chain that
//! fails rolled back to a savepoint (every journal's length, `Savepoint`) and a chain that
//! succeeds committed.

use super::{Outcome, StateMachine, PREFETCH_DISTANCE};
use crate::result::ResultCode;

/// Lengths of every undo log: where a rollback returns to.
#[derive(Clone, Copy, Debug)]
struct Savepoint {
    accounts: usize,
    transfers: usize,
    transfer_records: usize,
    transfers_digest: u128,
    pendings: usize,
    skus: usize,
    reservations: usize,
    buyer_units: usize,
    orders: usize,
    dispatch_feed: usize,
    dispatch_sequence_next: u64,
    cross_staged: usize,
}

impl StateMachine {
    /// Runs `execute` on every event, honouring linked chains: a chain is a run of events
    /// with `linked` set, closed by the first event without it, and succeeds or fails as one.
    // One closure per aspect of an operation keeps the chain logic in one place.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn apply_events<T>(
        &mut self,
        timestamp_ns: u64,
        events: &[T],
        results: &mut Vec<ResultCode>,
        linked: impl Fn(&T) -> bool,
        journal_always: bool,
        prefetch: impl Fn(&Self, &T),
        execute: impl Fn(&mut Self, &T, u64) -> Outcome,
        record_failure: impl Fn(&mut Self, &T, ResultCode),
    ) {
        for ahead in events.iter().take(PREFETCH_DISTANCE) {
            prefetch(self, ahead);
        }
        let mut index = 0;
        while index < events.len() {
            let mut chain_last = index;
            while chain_last < events.len() && linked(&events[chain_last]) {
                chain_last += 1;
            }
            if chain_last == events.len() {
                // The chain never closes: every member fails, the last one says why.
                for member in index..events.len() {
                    results.push(if member + 1 == events.len() {
                        ResultCode::LinkedEventChainOpen
                    } else {
                        ResultCode::LinkedEventFailed
                    });
                }
                return;
            }
            // Only a linked chain or a multi-step command can fail after a write; everything
            // else checks before it writes and needs no undo log. Debug builds record
            // always and check that claim on every failure.
            let needs_undo = journal_always || chain_last > index;
            let recording = needs_undo || cfg!(debug_assertions);
            if recording != self.recording {
                self.set_recording(recording);
            }
            if !recording {
                // The hot path: one command, nothing to undo.
                if let Some(ahead) = events.get(index + PREFETCH_DISTANCE) {
                    prefetch(self, ahead);
                }
                let outcome = execute(self, &events[index], timestamp_ns + index as u64);
                if let Outcome::Failed(code) = outcome {
                    record_failure(self, &events[index], code);
                }
                results.push(outcome.code());
                index += 1;
                continue;
            }
            let savepoint = self.savepoint();
            self.chain_codes.clear();
            let mut failure = None;
            for (member, event) in events.iter().enumerate().take(chain_last + 1).skip(index) {
                // Start loading the state a later command touches, so cache misses of
                // consecutive commands overlap instead of queueing.
                if let Some(ahead) = events.get(member + PREFETCH_DISTANCE) {
                    prefetch(self, ahead);
                }
                let outcome = execute(self, event, timestamp_ns + member as u64);
                if !outcome.is_success() {
                    failure = Some((member, outcome));
                    break;
                }
                self.chain_codes.push(outcome.code());
            }
            match failure {
                None => results.extend_from_slice(&self.chain_codes),
                Some((failed_member, outcome)) => {
                    if !needs_undo {
                        assert!(self.is_clean(), "a command failed after it wrote state");
                        assert_eq!(self.transfer_records.len(), savepoint.transfer_records);
                    }
                    self.rollback(savepoint);
                    if let Outcome::Failed(code) = outcome {
                        record_failure(self, &events[failed_member], code);
                    }
                    for member in index..=chain_last {
                        results.push(if member == failed_member {
                            outcome.code()
                        } else {
                            ResultCode::LinkedEventFailed
                        });
                    }
                }
            }
            self.commit();
            index = chain_last + 1;
        }
    }

    fn savepoint(&self) -> Savepoint {
        Savepoint {
            accounts: self.accounts.savepoint(),
            transfers: self.transfers.savepoint(),
            transfer_records: self.transfer_records.len(),
            transfers_digest: self.transfers_digest,
            pendings: self.pendings.savepoint(),
            skus: self.skus.savepoint(),
            reservations: self.reservations.savepoint(),
            buyer_units: self.buyer_units.savepoint(),
            orders: self.orders.savepoint(),
            dispatch_feed: self.dispatch_feed.savepoint(),
            dispatch_sequence_next: self.dispatch_sequence_next,
            cross_staged: self.cross_shard.staged.len(),
        }
    }

    fn rollback(&mut self, savepoint: Savepoint) {
        self.accounts.rollback(savepoint.accounts);
        self.transfers.rollback(savepoint.transfers);
        assert!(savepoint.transfer_records <= self.transfer_records.len());
        self.transfer_records.truncate(savepoint.transfer_records);
        self.transfers_digest = savepoint.transfers_digest;
        self.pendings.rollback(savepoint.pendings);
        self.skus.rollback(savepoint.skus);
        self.reservations.rollback(savepoint.reservations);
        self.buyer_units.rollback(savepoint.buyer_units);
        self.orders.rollback(savepoint.orders);
        self.dispatch_feed.rollback(savepoint.dispatch_feed);
        self.dispatch_sequence_next = savepoint.dispatch_sequence_next;
        self.cross_shard.staged.truncate(savepoint.cross_staged);
        // Expiry heaps are not journaled: an entry is acted on only if the item it names
        // still exists, is still live and still has the same expiry, so entries left by a
        // rolled-back command are skipped when they come due.
    }

    fn set_recording(&mut self, recording: bool) {
        self.recording = recording;
        self.accounts.set_recording(recording);
        self.transfers.set_recording(recording);
        self.pendings.set_recording(recording);
        self.skus.set_recording(recording);
        self.reservations.set_recording(recording);
        self.buyer_units.set_recording(recording);
        self.dispatch_feed.set_recording(recording);
    }

    /// Whether no journaled write happened since the last commit.
    fn is_clean(&self) -> bool {
        self.accounts.is_clean()
            && self.transfers.is_clean()
            && self.pendings.is_clean()
            && self.skus.is_clean()
            && self.reservations.is_clean()
            && self.buyer_units.is_clean()
            && self.orders.is_clean()
            && self.dispatch_feed.is_clean()
    }

    pub(super) fn commit(&mut self) {
        self.accounts.commit();
        self.transfers.commit();
        self.pendings.commit();
        self.skus.commit();
        self.reservations.commit();
        self.buyer_units.commit();
        self.orders.commit();
        self.dispatch_feed.commit();
    }
}
