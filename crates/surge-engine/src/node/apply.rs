//! The apply thread: applies durable records in log order, derives history entries,
//! keeps codes for their submitters, takes checkpoints (written by the checkpoint thread,
//! `checkpointer.rs`) and evicts.
//!
//! A checkpoint's snapshot is the state as of its record, copied a little after each
//! record from there on while the shard goes on applying ([`StateMachine::snapshot_begin`]:
//! a change copies the 4 KiB of table it lands in first, if not yet copied), so the shard
//! never stops for a whole copy: about a second for 0.7–1 GB before, every checkpoint
//! (`docs/PERFORMANCE.md`, "Checkpoint copies spread over records").

use super::*;

pub(super) struct Applier {
    pub(super) shared: Arc<Shared>,
    /// To stop the log when applying cannot go on (weak: the node owns the log).
    pub(super) group_commit: std::sync::Weak<GroupCommit>,
    /// Writes the checkpoints taken here. Declared (so dropped) before `history`: the
    /// checkpoint being written may wait for the index, whose threads `history` stops.
    pub(super) checkpointer: Checkpointer,
    pub(super) history: Option<LsmHistory>,
    pub(super) checkpoint_interval_records: u64,
    /// [`NodeConfig::checkpoint_phase_records`].
    pub(super) checkpoint_phase_records: u64,
    /// [`NodeConfig::checkpoint_log_percent`].
    pub(super) checkpoint_log_percent: u32,
    /// Bytes of the records applied since the last checkpoint's (since the start, before
    /// the first).
    pub(super) log_since_checkpoint_bytes: u64,
    /// Size of the last checkpoint's snapshot (0 before the first since the start).
    pub(super) last_checkpoint_bytes: u64,
    /// The record after which buffers for the first copy since the start are touched: half
    /// way from the first record applied to the first checkpoint's (a shard's phase can put
    /// that checkpoint less than half an interval away). Set at the first record
    /// ([`first_prepare_at`]).
    pub(super) first_prepare_at: Option<u64>,
    /// The record (index, checksum) of the snapshot being copied, if one is.
    pub(super) snapshot_of: Option<(u64, u32)>,
    /// What the state held (`StateMachine::snapshot_held`) when the last snapshot began
    /// (when the node started, before the first): the growth that sizes the next buffers.
    pub(super) held_at_last_snapshot: [usize; 3],
    /// The record of the last snapshot (the first record applied, before the first): the
    /// growth since `held_at_last_snapshot` came over the records since.
    pub(super) record_at_last_snapshot: Option<u64>,
    /// Room for the successor of the snapshot being copied, handed to the checkpoint
    /// thread with it.
    pub(super) next_room: [usize; 3],
    /// Bytes of the snapshot being copied to copy after each record.
    pub(super) copy_budget: usize,
    pub(super) results_uncollected_max: usize,
    /// Finished transfers leaving memory.
    pub(super) eviction: Eviction,
}

/// Bytes of a snapshot in progress copied after each record, at least: at memory speed
/// about 0.1 ms (a 1 GB state is copied over about a thousand records, a second at
/// 256,000 commands/s in batches of 256), besides the table chunks the record's own
/// changes copied. A state so large that this would not finish the copy in half a
/// checkpoint interval copies more per record (`copy_budget`).
const SNAPSHOT_COPY_BYTES_PER_RECORD_MIN: usize = 1 << 20;

/// Bytes to copy after each record so that a copy of a state holding `held` (accounts,
/// records, slots) finishes within half of an `interval` of records even if no write
/// helps; at least [`SNAPSHOT_COPY_BYTES_PER_RECORD_MIN`].
fn copy_budget(held: [usize; 3], interval: u64) -> usize {
    let records_to_copy = (interval / 2).max(1) as usize;
    (SnapshotBuffers::bytes_for(held) / records_to_copy).max(SNAPSHOT_COPY_BYTES_PER_RECORD_MIN)
}

/// Room for a copy taken `ahead` records from now, of a state that holds `held` now and
/// held `before` `behind` records ago: `held`, `margin` times its growth over `ahead`
/// records at the pace of the last `behind`, and 1/8 more, but never more than twice
/// `held` (a node that started empty and was loaded at once is not growing that fast). A
/// copy that outgrows its room takes fresh memory (page faults on the apply thread, as
/// before buffers were kept), so the margin is generous. Scaled by records, not periods:
/// checkpoints skipped for the log's share (`NodeConfig::checkpoint_log_percent`) come
/// several intervals apart, and twice the growth of all that was room for twice the state
/// (two gigabytes touched per shard, in the benchmark).
fn room_for(
    held: [usize; 3],
    before: [usize; 3],
    behind: u64,
    ahead: u64,
    margin: usize,
) -> [usize; 3] {
    std::array::from_fn(|index| {
        let growth = held[index].saturating_sub(before[index]) as u128 * u128::from(ahead)
            / u128::from(behind.max(1));
        let growth = usize::try_from(growth).unwrap_or(usize::MAX);
        held[index]
            .saturating_add(margin.saturating_mul(growth))
            .saturating_add(held[index] / 8)
            .min(held[index].saturating_mul(2).saturating_add(1_024))
    })
}

/// Records applied since the last checkpoint's when `record_index` is applied, for
/// checkpoints every `interval` records at `phase` (0 at the checkpoint's own record; 0
/// when `interval` is 0). Computed wide: no interval or phase overflows it.
fn records_since_checkpoint(record_index: u64, interval: u64, phase: u64) -> u64 {
    if interval == 0 {
        return 0;
    }
    let interval = u128::from(interval);
    let since = (u128::from(record_index) + 1 + interval - u128::from(phase) % interval) % interval;
    since as u64
}

/// The record after which buffers for the first copy since a start are touched, when the
/// first record applied is `record_index`, `since` records after the last checkpoint's:
/// half way to the first checkpoint, if that leaves at least an eighth of an interval for
/// the touching (it is waited for at the checkpoint); else never (the first copy then
/// takes fresh memory, page-faulting on the apply thread).
fn first_prepare_at(record_index: u64, since: u64, interval: u64) -> u64 {
    let to_checkpoint = (interval - since) % interval.max(1);
    match to_checkpoint / 2 {
        lead if interval > 0 && lead >= (interval / 8).max(1) => record_index + lead,
        _ => u64::MAX,
    }
}

/// Whether `written` bytes of log since the last checkpoint, `pace` times over, reach
/// `percent` percent of that checkpoint's `checkpoint_bytes` (always with `percent` 0, or
/// before the first checkpoint since the start: `checkpoint_bytes` 0). Computed wide
/// (saturating only past any size a log reaches).
fn log_reaches(written: u64, pace: u64, checkpoint_bytes: u64, percent: u32) -> bool {
    let log = u128::from(written)
        .saturating_mul(u128::from(pace))
        .saturating_mul(100);
    log >= u128::from(checkpoint_bytes) * u128::from(percent)
}

/// The checkpoint thread's own handle on the log directory, and what retention does.
pub(super) type RetentionHandle = (Box<dyn Storage>, LogRetention);

impl Applier {
    pub(super) fn run(&mut self, durable: crossbeam_channel::Receiver<Arc<Record>>) {
        let mut results = Vec::new();
        let outcome = durable.iter().try_for_each(|record| {
            let started = std::time::Instant::now();
            self.step(&record, &mut results)?;
            let elapsed_us = started.elapsed().as_micros() as u64;
            let mut counters = self.shared.apply_counters.lock();
            counters.records += 1;
            counters.commands += u64::from(record.header.count);
            counters
                .latency_us
                .saturating_record(elapsed_us.clamp(1, APPLY_LATENCY_US_MAX));
            Ok::<(), EngineError>(())
        });
        // The checkpoint being copied or written, if any, lands before the node says it
        // stopped.
        let outcome = outcome
            .and_then(|()| self.snapshot_copy(usize::MAX))
            .and_then(|()| self.checkpointer.finish());
        let reason = match outcome {
            Ok(()) => "shut down".to_string(),
            Err(error) => {
                // Fail-stop: nothing more may be logged that cannot be applied and answered.
                let reason = format!("the apply stage failed: {error}");
                if let Some(group_commit) = self.group_commit.upgrade() {
                    group_commit.halt(reason.clone());
                }
                reason
            }
        };
        self.shared.results.lock().stopped = Some(reason);
        self.shared.applied.notify_all();
    }

    pub(super) fn step(
        &mut self,
        record: &Record,
        results: &mut Vec<ResultCode>,
    ) -> Result<(), EngineError> {
        let record_index = record.header.record_index;
        // The commands straight from the record's body (no copy when it is aligned).
        let commands = Commands::of(record)?;
        let batch = commands.batch();
        // Ids the batch names that left memory: looked up without holding the state lock
        // (only this thread writes the state, so the answer cannot go stale).
        let found = match &self.history {
            Some(index) => recall_lookups(&self.shared.state.read(), index, batch)?,
            None => Vec::new(),
        };
        let (entries, released, released_orders) = {
            let mut state = self.shared.state.write();
            state.recall(&found);
            let first_sequence = state.transfer_sequence_next();
            state.apply(record.header.timestamp_ns, batch, results);
            // Derived from the state right after this record (in memory, under the lock);
            // written to the index after the lock is released, so reads never wait on it.
            let entries = self.history.is_some().then(|| {
                derive_entries_since(&state, Some(first_sequence), record_index, batch, results)
            });
            let released_orders = super::OrderStep::take_released(&mut state);
            (entries, state.take_released_legs(), released_orders)
        };
        if !released.is_empty() {
            let deliver = self.shared.released.lock().clone();
            if let Some(deliver) = deliver {
                deliver(released);
            }
        }
        if !released_orders.is_empty() {
            let deliver = self.shared.released_orders.lock().clone();
            if let Some(deliver) = deliver {
                deliver(released_orders);
            }
        }
        if let (Some(index), Some(entries)) = (self.history.as_mut(), entries) {
            index.apply(record_index, &entries)?;
        }
        if record.header.count > 0 {
            let mut uncollected = self.shared.results.lock();
            uncollected.by_record.insert(record_index, results.clone());
            while uncollected.by_record.len() > self.results_uncollected_max {
                let (oldest, _) = uncollected.by_record.pop_first().expect("over the limit");
                uncollected.dropped_below = oldest + 1;
            }
            drop(uncollected);
            self.shared.applied.notify_all();
        }
        self.eviction
            .step(&self.shared.state, record.header.count as usize)?;
        // The failure of the checkpoint written last, once known, stops the node here.
        self.checkpointer.check()?;
        self.snapshot_copy(self.copy_budget)?;
        let interval = self.checkpoint_interval_records;
        let since = records_since_checkpoint(record_index, interval, self.checkpoint_phase_records);
        let first_prepare_at = *self
            .first_prepare_at
            .get_or_insert_with(|| first_prepare_at(record_index, since, interval));
        let record_at_last_snapshot = *self.record_at_last_snapshot.get_or_insert(record_index);
        self.log_since_checkpoint_bytes = self
            .log_since_checkpoint_bytes
            .saturating_add(record.header.record_size_bytes() as u64);
        // Whether the log since the last checkpoint is long enough, `pace` times over.
        let log_reaches = |pace| {
            log_reaches(
                self.log_since_checkpoint_bytes,
                pace,
                self.last_checkpoint_bytes,
                self.checkpoint_log_percent,
            )
        };
        if interval > 0 && since == 0 && log_reaches(1) {
            // Copied here (the state as of this record), encoded and written by the
            // checkpoint thread. One at a time: the last one, if its copy is not done
            // (the state grew faster than the copy budget planned for), is finished
            // first, and written (its buffers are the next copy's).
            self.snapshot_copy(usize::MAX)?;
            let waited = std::time::Instant::now();
            self.checkpointer.wait()?;
            self.note_checkpoint_wait(waited);
            let buffers = self.checkpointer.take_buffers();
            let mut state = self.shared.state.write();
            let held = state.snapshot_held();
            self.last_checkpoint_bytes = state.snapshot_size_bytes() as u64;
            self.log_since_checkpoint_bytes = 0;
            state.snapshot_begin(buffers);
            drop(state);
            // The next copy is an interval away at least: room for twice its growth (a
            // copy further away has its buffers grown half way to it, below).
            let behind = record_index - record_at_last_snapshot;
            self.next_room = room_for(held, self.held_at_last_snapshot, behind, interval, 2);
            self.held_at_last_snapshot = held;
            self.record_at_last_snapshot = Some(record_index);
            self.copy_budget = copy_budget(held, interval);
            self.snapshot_of = Some((record_index, record.header.checksum_header));
            self.snapshot_copy(self.copy_budget)?;
        } else if interval > 1
            && ((since == interval / 2 && log_reaches(3)) || record_index == first_prepare_at)
            && self.snapshot_of.is_none()
        {
            // Half way to the next checkpoint (to the first one, from the start): buffers
            // for its copy are touched ahead on the checkpoint thread (the last
            // checkpoint's, grown if the state outgrew them: checkpoints skipped for the
            // log's share can be far apart), so the copy does not page-fault on this
            // thread. Not while the log is so far short of its share that three times what
            // it holds since the last checkpoint would not reach it (buffers grown an
            // interval or two early only hold their memory a little longer).
            let held = self.shared.state.read().snapshot_held();
            // Room for twice the growth until the checkpoint.
            let behind = record_index - record_at_last_snapshot;
            let room = room_for(
                held,
                self.held_at_last_snapshot,
                behind,
                interval - since,
                2,
            );
            self.checkpointer.prepare(room)?;
        }
        Ok(())
    }

    /// Copies up to `budget_bytes` more of the snapshot in progress, if any, and hands it
    /// to the checkpoint thread once it is whole.
    fn snapshot_copy(&mut self, budget_bytes: usize) -> Result<(), EngineError> {
        let Some((record_index, record_checksum)) = self.snapshot_of else {
            return Ok(());
        };
        let Some(parts) = self.shared.state.write().snapshot_advance(budget_bytes) else {
            return Ok(());
        };
        self.snapshot_of = None;
        let waited = std::time::Instant::now();
        self.checkpointer.write(Job {
            record_index,
            record_checksum,
            next_room: self.next_room,
            parts,
        })?;
        self.note_checkpoint_wait(waited);
        Ok(())
    }

    /// Counts the time since `waited` as a wait for the checkpoint thread.
    fn note_checkpoint_wait(&self, waited: std::time::Instant) {
        let waited_us = waited.elapsed().as_micros() as u64;
        let mut counters = self.shared.apply_counters.lock();
        counters.checkpoint_wait_us_max = counters.checkpoint_wait_us_max.max(waited_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_fall_at_the_phase_of_every_interval() {
        for record_index in 0..40u64 {
            // Phase 0: at the interval's multiples, as before phases existed.
            let since = records_since_checkpoint(record_index, 8, 0);
            assert_eq!(since, (record_index + 1) % 8);
            // A phase is taken modulo the interval.
            for phase in [3, 11, 8 * 1_000 + 3] {
                let since = records_since_checkpoint(record_index, 8, phase);
                assert_eq!(
                    since == 0,
                    (record_index + 1) % 8 == 3,
                    "{record_index} {phase}"
                );
            }
        }
        assert_eq!(records_since_checkpoint(5, 0, 3), 0);
        // No overflow at the extremes.
        let huge = u64::MAX;
        assert_eq!(records_since_checkpoint(huge - 1, huge, 0), 0);
        assert_eq!(records_since_checkpoint(huge - 1, huge, huge - 1), 1);
        assert_eq!(records_since_checkpoint(huge, huge, huge), 1);
    }

    #[test]
    fn room_is_held_plus_twice_the_growth_ahead_at_the_pace_behind() {
        let held = [1_000, 8_000, 0];
        let before = [1_000, 4_000, 0];
        // 4,000 records over 100 records behind: 40 a record; 50 ahead grow 2,000, room
        // for twice that, and 1/8 of what is held.
        assert_eq!(room_for(held, before, 100, 50, 2), [1_125, 13_000, 0]);
        // As far ahead as behind: twice the growth behind.
        assert_eq!(room_for(held, before, 100, 100, 2), [1_125, 17_000, 0]);
        // Far ahead: never more than twice what is held (and a little for an empty state).
        assert_eq!(room_for(held, before, 100, 1_000, 2), [1_125, 17_024, 0]);
        // Nothing behind counts as one record; a state that shrank needs what it holds.
        assert_eq!(room_for(held, before, 0, 1, 2), [1_125, 17_000, 0]);
        assert_eq!(room_for(before, held, 100, 100, 2), [1_125, 4_500, 0]);
        // No overflow at the extremes.
        let huge = [usize::MAX; 3];
        assert_eq!(room_for(huge, [0; 3], 1, u64::MAX, usize::MAX), huge);
    }

    #[test]
    fn the_log_reaches_a_percent_of_the_last_checkpoint() {
        // 100 %: once the log is as long as the checkpoint.
        assert!(!log_reaches(999, 1, 1_000, 100));
        assert!(log_reaches(1_000, 1, 1_000, 100));
        // At a pace: three times 334 is past 1,000, three times 333 is not.
        assert!(log_reaches(334, 3, 1_000, 100));
        assert!(!log_reaches(333, 3, 1_000, 100));
        // Other shares.
        assert!(!log_reaches(2_499, 1, 1_000, 250));
        assert!(log_reaches(2_500, 1, 1_000, 250));
        assert!(log_reaches(500, 1, 1_000, 50));
        // Always with no share, and before the first checkpoint since the start.
        assert!(log_reaches(0, 1, 1_000, 0));
        assert!(log_reaches(0, 1, 0, 100));
        // No overflow at the extremes.
        assert!(log_reaches(u64::MAX, u64::MAX, u64::MAX, u32::MAX));
        assert!(!log_reaches(u64::MAX / 100, 1, u64::MAX, 100));
    }

    #[test]
    fn the_first_copy_is_prepared_half_way_if_that_leaves_time() {
        // From the start of an interval of 10,000: half way.
        assert_eq!(first_prepare_at(0, 1, 10_000), 4_999);
        // Half an interval away (a staggered shard): a quarter of an interval ahead.
        assert_eq!(first_prepare_at(0, 5_001, 10_000), 2_499);
        // Too close to touch in time, no interval, or at the checkpoint itself: never.
        assert_eq!(first_prepare_at(100, 9_000, 10_000), u64::MAX);
        assert_eq!(first_prepare_at(100, 0, 0), u64::MAX);
        assert_eq!(first_prepare_at(100, 0, 10_000), u64::MAX);
        assert_eq!(first_prepare_at(100, 0, 1), u64::MAX);
    }
}
