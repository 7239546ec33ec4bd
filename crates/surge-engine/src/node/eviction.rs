//! Finished transfers leaving memory: recall of archived ids a batch names, the
//! synchronous eviction of recovery, and the live eviction cycle with its archiver thread.

use super::*;

/// The archive entries of the transfers `batch` names that left memory, to recall before
/// applying it. A filter false positive finds nothing; an id the filter names that the
/// archive lacks is expected only then.
pub(crate) fn recall_lookups(
    state_machine: &StateMachine,
    history: &LsmHistory,
    batch: Batch<'_>,
) -> Result<Vec<ArchivedTransfer>, EngineError> {
    let mut found = Vec::new();
    for id in state_machine.archive_lookups(batch) {
        if let Some(archived) = history.archived(id)? {
            found.push(archived);
        }
    }
    Ok(found)
}

/// Evicts the finished transfers committed before `mark`: archives them durably in the
/// history index first, then removes them (recovery's synchronous form of [`Eviction`]).
pub(crate) fn evict(
    state_machine: &mut StateMachine,
    history: &mut LsmHistory,
    mark: u64,
) -> Result<(), EngineError> {
    let plan = state_machine.eviction_plan(mark);
    history.archive(&plan.entries)?;
    state_machine.evict(plan);
    Ok(())
}

/// The running node's eviction, spread over batches so no batch waits long: every
/// `interval` committed transfers the apply thread plans what leaves (what was committed
/// before the previous cycle), walking a slice of the id table after each batch (sized by
/// the batch, [`PLAN_SLOTS_PER_BATCH`]); the archiver thread writes the plan's entries as
/// an archive run (sorting, writing, `fdatasync`) while batches go on; then the apply
/// thread evicts a slice of them after each batch ([`EVICT_TRANSFERS_PER_BATCH`]). What a
/// plan lists is finished and cannot change, so batches applied in between change nothing
/// about it.
pub(super) struct Eviction {
    /// `None` when nothing is evicted (no history index, or switched off).
    pub(super) archiver: Option<Archiver>,
    pub(super) phase: EvictionPhase,
    /// Transfer sequence number at the previous cycle: what came before it may leave.
    pub(super) mark: u64,
    /// Committed transfers between cycles.
    pub(super) interval: u64,
}

/// Where the current eviction cycle is.
pub(super) enum EvictionPhase {
    Idle,
    Planning(EvictionPlan),
    /// The plan's entries are with the archiver.
    Archiving(EvictionPlan),
    Evicting(EvictionPlan),
}

/// Id-table slots the apply thread walks after each batch while planning an eviction, at
/// least; plus [`PLAN_SLOTS_PER_COMMAND`] per command of the batch, so eviction keeps pace
/// with what is committed (the table holds ~1.3–2.7 slots per resident transfer).
pub const PLAN_SLOTS_PER_BATCH: usize = 1 << 10;

/// See [`PLAN_SLOTS_PER_BATCH`].
pub const PLAN_SLOTS_PER_COMMAND: usize = 4;

/// Transfers the apply thread evicts after each batch, at least; plus
/// [`EVICT_TRANSFERS_PER_COMMAND`] per command of the batch.
pub const EVICT_TRANSFERS_PER_BATCH: usize = 1 << 9;

/// See [`EVICT_TRANSFERS_PER_BATCH`].
pub const EVICT_TRANSFERS_PER_COMMAND: usize = 2;

impl Eviction {
    /// One slice of the current cycle (or the start of one, when due): a phase that only
    /// starts or hands over goes straight on to the next in the same call.
    /// `commands` is the size of the batch just applied: the slice grows with it.
    pub(super) fn step(
        &mut self,
        state: &RwLock<StateMachine>,
        commands: usize,
    ) -> Result<(), EngineError> {
        loop {
            let before = std::mem::discriminant(&self.phase);
            let started = matches!(
                self.phase,
                EvictionPhase::Idle | EvictionPhase::Archiving(_)
            );
            self.advance(state, commands)?;
            let moved_on = std::mem::discriminant(&self.phase) != before;
            // Starting a plan or taking an archived one back is cheap: do the next slice now.
            if !(started && moved_on) || matches!(self.phase, EvictionPhase::Idle) {
                return Ok(());
            }
        }
    }

    fn advance(
        &mut self,
        state: &RwLock<StateMachine>,
        commands: usize,
    ) -> Result<(), EngineError> {
        let plan_slots = PLAN_SLOTS_PER_BATCH + PLAN_SLOTS_PER_COMMAND * commands;
        let evict_transfers = EVICT_TRANSFERS_PER_BATCH + EVICT_TRANSFERS_PER_COMMAND * commands;
        let Some(archiver) = &self.archiver else {
            return Ok(());
        };
        self.phase = match std::mem::replace(&mut self.phase, EvictionPhase::Idle) {
            EvictionPhase::Idle => {
                let state = state.read();
                let sequence = state.transfer_sequence();
                if !eviction_due(self.mark, sequence, self.interval) {
                    return Ok(());
                }
                let plan = state.eviction_plan_start(self.mark);
                self.mark = sequence;
                EvictionPhase::Planning(plan)
            }
            EvictionPhase::Planning(mut plan) => {
                if !state.read().eviction_plan_continue(&mut plan, plan_slots) {
                    EvictionPhase::Planning(plan)
                } else if plan.entries.is_empty() {
                    EvictionPhase::Idle
                } else {
                    let entries = std::mem::take(&mut plan.entries);
                    archiver
                        .plans
                        .send(entries)
                        .map_err(|_| archiver_stopped())?;
                    EvictionPhase::Archiving(plan)
                }
            }
            EvictionPhase::Archiving(mut plan) => match archiver.archived.try_recv() {
                Ok(archived) => {
                    plan.entries = archived?;
                    EvictionPhase::Evicting(plan)
                }
                Err(crossbeam_channel::TryRecvError::Empty) => EvictionPhase::Archiving(plan),
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    return Err(archiver_stopped())
                }
            },
            EvictionPhase::Evicting(mut plan) => {
                if state.write().evict_continue(&mut plan, evict_transfers) {
                    EvictionPhase::Idle
                } else {
                    EvictionPhase::Evicting(plan)
                }
            }
        };
        Ok(())
    }
}

fn archiver_stopped() -> EngineError {
    EngineError::Stopped("the archiver thread stopped".to_string())
}

/// Whether an eviction cycle is due: `interval` transfers committed since the last one.
pub(crate) fn eviction_due(mark: u64, sequence: u64, interval: u64) -> bool {
    sequence.saturating_sub(mark) >= interval.max(1)
}

/// The archiver thread: writes each plan's entries as a durable archive run and hands
/// them back.
pub(super) struct Archiver {
    plans: crossbeam_channel::Sender<Vec<ArchivedTransfer>>,
    pub(super) archived: crossbeam_channel::Receiver<Result<Vec<ArchivedTransfer>, HistoryError>>,
    pub(super) thread: Option<JoinHandle<()>>,
}

impl Archiver {
    pub(super) fn start(mut index: LsmHistory) -> Archiver {
        let (plans, plans_received) = crossbeam_channel::bounded::<Vec<ArchivedTransfer>>(1);
        let (archived_sender, archived) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("surge-archiver".to_string())
            .spawn(move || {
                for entries in plans_received {
                    let outcome = index.archive(&entries).map(|()| entries);
                    let failed = outcome.is_err();
                    if archived_sender.send(outcome).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawn the archiver thread");
        Archiver {
            plans,
            archived,
            thread: Some(thread),
        }
    }
}

impl Drop for Archiver {
    fn drop(&mut self) {
        // Closing the plan channel ends the thread after the run it is writing, if any.
        let (closed, _) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.plans, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
