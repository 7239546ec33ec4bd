//! The apply thread: applies durable records in log order, derives history entries,
//! keeps codes for their submitters, takes checkpoints (written by the checkpoint thread,
//! `checkpointer.rs`) and evicts.

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
    pub(super) results_uncollected_max: usize,
    /// Finished transfers leaving memory.
    pub(super) eviction: Eviction,
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
        // The checkpoint being written, if any, lands before the node says it stopped.
        let outcome = outcome.and_then(|()| self.checkpointer.finish());
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
        let interval = self.checkpoint_interval_records;
        if interval > 0 && (record_index + 1) % interval == 0 {
            // Copied here (the state must not change while it is read), encoded and written
            // by the checkpoint thread, once the one before is written.
            self.checkpointer.wait()?;
            let parts = self.shared.state.read().snapshot_parts();
            self.checkpointer.write(Job {
                record_index,
                record_checksum: record.header.checksum_header,
                parts,
            })?;
        }
        Ok(())
    }
}
