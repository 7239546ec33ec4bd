//! One shard's node: log → fdatasync → apply → reply, with checkpoints, the history index,
//! pulses for expiry, and recovery on open.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use surge_core::{
    compact_form, ArchivedOutcome, ArchivedTransfer, Batch, EvictionPlan, Operation, OrderMessage,
    ResultCode, ShardLeg, SnapshotBuffers, SnapshotParts, StateMachine, TransferId, TransferLookup,
    UnitStep,
};
use surge_history::{derive_entries_since, HistoryError, HistoryIndex, LsmHistory};
use surge_wal::checkpoint::{self, Checkpoint};
use surge_wal::{
    retain_segments, Clock, GroupCommit, Log, LogRetention, Record, RetentionError, Storage,
};

use crate::replay::{replay, Commands, ReplayPlan};

mod apply;
mod checkpointer;
mod config;
mod error;
mod eviction;
mod stats;

use apply::{Applier, RetentionHandle};
use checkpointer::{CheckpointFiles, Checkpointer, Job};
pub use config::NodeConfig;
pub use error::EngineError;
pub(crate) use eviction::{evict, eviction_due, recall_lookups};
use eviction::{Archiver, Eviction, EvictionPhase};
pub use eviction::{
    EVICT_TRANSFERS_PER_BATCH, EVICT_TRANSFERS_PER_COMMAND, PLAN_SLOTS_PER_BATCH,
    PLAN_SLOTS_PER_COMMAND,
};
use stats::{ApplyCounters, APPLY_LATENCY_US_MAX};
pub use stats::{ApplyStats, RecoveryReport};

/// How often the pulse thread checks whether something is due to expire.
const PULSE_CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// Where the node's files live: the log and the checkpoints, each through a [`Storage`]
/// (real files, or simulated storage in tests).
pub struct NodeStorage {
    /// The log's segment files.
    pub log: Box<dyn Storage>,
    /// The checkpoint files.
    pub checkpoints: Box<dyn Storage>,
}

struct Shared {
    state: RwLock<StateMachine>,
    apply_counters: Mutex<ApplyCounters>,
    results: Mutex<Results>,
    applied: Condvar,
    stopping: AtomicBool,
    /// Told about phase-two legs as they join the outbox (see [`Node::on_released_legs`]).
    released: Mutex<Option<ReleasedLegs>>,
    /// Told about order steps as they join the order outbox (see
    /// [`Node::on_released_order_messages`]).
    released_orders: Mutex<Option<ReleasedOrderMessages>>,
}

/// Receives the cross-shard legs a shard's own commands put in its outbox (posts, voids
/// and expiries of cross-shard pending transfers), once they are durable and applied.
pub type ReleasedLegs = Arc<dyn Fn(Vec<ShardLeg>) + Send + Sync>;

/// Receives the steps of orders spanning shards that a shard's commands put in its order
/// and unit outboxes, once they are durable and applied.
pub type ReleasedOrderMessages = Arc<dyn Fn(Vec<OrderStep>) + Send + Sync>;

/// A step of an order spanning shards, from one of its shard's outboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStep {
    /// From the order outbox: a transfer on the buyer's or merchant's shard.
    Message(OrderMessage),
    /// From the unit outbox: units on another shard holding some of the order's lines,
    /// and the client key whose answer waits for it (zero: nobody waits).
    Units(UnitStep, TransferId),
}

impl OrderStep {
    /// Every step in `state`'s outboxes (what the engine delivers after a start).
    pub fn outboxes(state: &StateMachine) -> Vec<OrderStep> {
        let messages = state.order_outbox().into_iter().map(OrderStep::Message);
        let units = state.unit_outbox().into_iter();
        messages
            .chain(units.map(|(step, key)| OrderStep::Units(step, key)))
            .collect()
    }

    /// The steps that joined `state`'s outboxes since the last call.
    pub fn take_released(state: &mut StateMachine) -> Vec<OrderStep> {
        let messages = state.take_released_order_messages();
        let units = state.take_released_unit_steps();
        messages
            .into_iter()
            .map(OrderStep::Message)
            .chain(
                units
                    .into_iter()
                    .map(|(step, key)| OrderStep::Units(step, key)),
            )
            .collect()
    }
}

#[derive(Default)]
struct Results {
    /// Codes of applied records that a submitter has not collected yet, at most
    /// `RESULTS_UNCOLLECTED_MAX` (a dropped `Pending` never collects its own).
    by_record: BTreeMap<u64, Vec<ResultCode>>,
    /// Records below this index had their uncollected codes dropped.
    dropped_below: u64,
    /// Set when the apply thread stops, with the reason.
    stopped: Option<String>,
}

/// A running node. See the crate documentation.
pub struct Node {
    shared: Arc<Shared>,
    /// A read handle on the history index, for transfers that left memory.
    history: Option<LsmHistory>,
    group_commit: Option<Arc<GroupCommit>>,
    apply_thread: Option<JoinHandle<()>>,
    pulse_thread: Option<JoinHandle<()>>,
}

/// A submitted batch; [`Pending::wait`] returns its result codes once durable and applied.
pub struct Pending {
    ticket: surge_wal::Ticket,
    shared: Arc<Shared>,
}

impl Pending {
    /// Blocks until the batch is durable and applied; its result codes.
    pub fn wait(self) -> Result<Vec<ResultCode>, EngineError> {
        let record = self.ticket.wait()?;
        let record_index = record.header.record_index;
        let mut results = self.shared.results.lock();
        loop {
            if let Some(codes) = results.by_record.remove(&record_index) {
                return Ok(codes);
            }
            if record_index < results.dropped_below {
                return Err(EngineError::ResultsDropped { record_index });
            }
            if let Some(reason) = &results.stopped {
                return Err(EngineError::Stopped(reason.clone()));
            }
            self.shared.applied.wait(&mut results);
        }
    }
}

impl Node {
    /// Recovers the node's state from `storage` and starts it.
    pub fn open(
        config: NodeConfig,
        mut storage: NodeStorage,
        clock: Arc<dyn Clock + Sync>,
    ) -> Result<(Node, RecoveryReport), EngineError> {
        assert!(config.checkpoints_kept >= 1);
        assert!(config.results_uncollected_max >= 1);
        let mut report = RecoveryReport::default();
        let (newest, damaged) = checkpoint::read_newest(&mut *storage.checkpoints)?;
        report
            .warnings
            .extend(damaged.iter().map(|error| format!("skipped {error}")));
        let mut history = open_history(&config, &mut report)?;
        let history_applied = match &history {
            Some(index) => index.applied_up_to()?,
            None => None,
        };
        // Start from the checkpoint unless the history index is behind it: the index is
        // derived from the state right after each record, so then replay from the start.
        let newest_record_index = newest.as_ref().and_then(|found| found.record_index);
        let checkpoint = newest.filter(|found| match (&history, found.record_index) {
            (None, _) | (_, None) => true,
            (Some(_), Some(index)) => history_applied.is_some_and(|applied| applied >= index),
        });
        let plan_checkpoint = checkpoint.as_ref().and_then(|found| {
            let index = found.record_index?;
            Some((index, found.record_checksum))
        });
        let needed_for = replay_from_zero_reason(&checkpoint, newest_record_index, history_applied);
        let log_retention = retention_handle(config.log_retention, &*storage.log)?;
        // Restore (or size) the state machine while the log is read: for a large state both
        // take seconds, and neither needs the other until the replay.
        let state_config = config.state;
        let preparing = std::thread::Builder::new()
            .name("surge-recover-state".to_string())
            .spawn(move || match &checkpoint {
                Some(found) => StateMachine::restore(&found.snapshot).map_err(EngineError::from),
                None => Ok(StateMachine::new(state_config)),
            })
            .expect("spawn the state recovery thread");
        let prepared = move || match preparing.join() {
            Ok(prepared) => prepared,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let (mut log, recovered) = match Log::open(storage.log, config.log) {
            Ok(opened) => opened,
            Err(error) => {
                drop(prepared());
                return Err(error.into());
            }
        };
        if let Some(torn) = &recovered.torn_tail {
            report.warnings.push(torn.to_string());
        }
        report.checkpoint_record_index = plan_checkpoint.map(|(index, _)| index);
        let plan = ReplayPlan {
            checkpoint: plan_checkpoint,
            records: recovered.record_indexes.clone(),
            needed_for,
            history_applied,
            evicting: config.evict_finished_transfers && history.is_some(),
            evict_interval_transfers: config.evict_interval_transfers,
        };
        let replayed = replay(&mut log, &plan, prepared, history.as_mut())?;
        report.records_replayed = replayed.records_replayed;
        let mut state_machine = replayed.state_machine;
        // Legs released during the replay are in the outbox, which the engine delivers
        // whole after a start.
        drop(state_machine.take_released_legs());
        drop(OrderStep::take_released(&mut state_machine));
        let eviction_mark = replayed.eviction_mark;
        let evicting = plan.evicting;
        let history_reader = history.as_ref().map(LsmHistory::reader);
        let shared = Arc::new(Shared {
            state: RwLock::new(state_machine),
            apply_counters: Mutex::new(ApplyCounters::new()),
            results: Mutex::new(Results::default()),
            applied: Condvar::new(),
            stopping: AtomicBool::new(false),
            released: Mutex::new(None),
            released_orders: Mutex::new(None),
        });
        let (group_commit, durable) = GroupCommit::start(
            log,
            Box::new(SharedClock(clock.clone())),
            config.group_commit,
        );
        let group_commit = Arc::new(group_commit);
        let apply_thread = {
            let shared = shared.clone();
            let held_at_start = shared.state.read().snapshot_held();
            let checkpointer = Checkpointer::start(CheckpointFiles {
                checkpoints: storage.checkpoints,
                checkpoints_kept: config.checkpoints_kept,
                history: history.as_ref().map(LsmHistory::reader),
                log_retention,
                group_commit: Arc::downgrade(&group_commit),
            });
            let mut applier = Applier {
                shared,
                group_commit: Arc::downgrade(&group_commit),
                checkpointer,
                history,
                checkpoint_interval_records: config.checkpoint_interval_records,
                checkpoint_phase_records: config.checkpoint_phase_records,
                checkpoint_log_percent: config.checkpoint_log_percent,
                log_since_checkpoint_bytes: 0,
                last_checkpoint_bytes: 0,
                first_prepare_at: None,
                snapshot_of: None,
                held_at_last_snapshot: held_at_start,
                record_at_last_snapshot: None,
                next_room: held_at_start,
                copy_budget: 0,
                results_uncollected_max: config.results_uncollected_max,
                eviction: Eviction {
                    archiver: match (&history_reader, evicting) {
                        (Some(index), true) => Some(Archiver::start(index.reader())),
                        _ => None,
                    },
                    phase: EvictionPhase::Idle,
                    mark: eviction_mark,
                    interval: config.evict_interval_transfers,
                },
            };
            std::thread::Builder::new()
                .name("surge-apply".to_string())
                .spawn(move || applier.run(durable))
                .expect("spawn the apply thread")
        };
        let mut node = Node {
            shared,
            history: history_reader,
            group_commit: Some(group_commit),
            apply_thread: Some(apply_thread),
            pulse_thread: None,
        };
        node.pulse_thread = Some(node.start_pulses(clock));
        Ok((node, report))
    }

    /// Logs `batch`; wait on the returned [`Pending`] for its result codes. `Busy` when the
    /// log's queue is full: retry later with the same ids.
    pub fn submit(&self, batch: Batch<'_>) -> Result<Pending, EngineError> {
        if batch.is_empty() {
            // Pulses are the node's own business; an empty batch has nothing to answer.
            return Err(EngineError::EmptyBatch);
        }
        let group_commit = self.group_commit.as_ref().expect("running");
        let (operation, body) = compact_form(batch.operation(), batch.body().into());
        let ticket = group_commit.submit(operation, body, batch.len() as u32)?;
        Ok(Pending {
            ticket,
            shared: self.shared.clone(),
        })
    }

    /// Why this node stopped taking commands (its log or apply stage failed: fail-stop),
    /// if it did; `None` while it runs and after a clean shutdown.
    pub fn failure(&self) -> Option<String> {
        let group_commit = self.group_commit.as_ref()?;
        group_commit.failure().map(|error| error.to_string())
    }

    /// Logs a batch given as its operation and body (`count` records of the operation's
    /// size, already checked by the caller); see [`Node::submit`].
    pub fn submit_bytes(
        &self,
        operation: Operation,
        body: Vec<u8>,
        count: u32,
    ) -> Result<Pending, EngineError> {
        assert_eq!(body.len(), count as usize * operation.record_size_bytes());
        if count == 0 {
            return Err(EngineError::EmptyBatch);
        }
        let group_commit = self.group_commit.as_ref().expect("running");
        let (operation, body) = compact_form(operation, body.into());
        let ticket = group_commit.submit(operation, body, count)?;
        Ok(Pending {
            ticket,
            shared: self.shared.clone(),
        })
    }

    /// A read handle on the node's history index, if it has one.
    pub fn history(&self) -> Option<&LsmHistory> {
        self.history.as_ref()
    }

    /// Runs `read` against the current state (between applied batches). Finished
    /// transfers may have left memory: look transfers up with [`Node::transfer`].
    pub fn read<T>(&self, read: impl FnOnce(&StateMachine) -> T) -> T {
        read(&self.shared.state.read())
    }

    /// Hands every phase-two leg this node's commands put in its outbox from now on to
    /// `deliver` (on the apply thread, after the record is durable and applied). Legs
    /// released before this call are in the outbox ([`StateMachine::shard_outbox`]).
    pub fn on_released_legs(&self, deliver: ReleasedLegs) {
        *self.shared.released.lock() = Some(deliver);
    }

    /// Hands every order step this node's commands put in its order outbox from now on to
    /// `deliver` (on the apply thread, after the record is durable and applied). Steps
    /// released before this call are in the outbox ([`StateMachine::order_outbox`]).
    pub fn on_released_order_messages(&self, deliver: ReleasedOrderMessages) {
        *self.shared.released_orders.lock() = Some(deliver);
    }

    /// A transfer, resident or archived in the history index (which is asked only when
    /// the state machine no longer holds it).
    pub fn transfer(&self, id: TransferId) -> Result<Option<TransferLookup>, EngineError> {
        if let Some(found) = self.shared.state.read().transfer(id) {
            return Ok(Some(found));
        }
        // Archived before it was evicted: if the state missed it, the archive has it.
        let Some(index) = &self.history else {
            return Ok(None);
        };
        let Some(archived) = index.archived(id)? else {
            return Ok(None);
        };
        Ok(Some(match archived.outcome {
            ArchivedOutcome::Failed(code) => TransferLookup::Failed(code),
            ArchivedOutcome::Committed { pending_status, .. } => {
                let (_, transfer) = index.transfer(id)?.ok_or_else(|| {
                    EngineError::History(HistoryError::Corrupt {
                        key: id.0.to_be_bytes().to_vec(),
                        reason: "an archived committed transfer has no transfer entry",
                    })
                })?;
                TransferLookup::Committed {
                    transfer,
                    pending_status,
                }
            }
        }))
    }

    /// Apply-thread counters.
    pub fn apply_stats(&self) -> ApplyStats {
        let counters = self.shared.apply_counters.lock();
        ApplyStats {
            records: counters.records,
            commands: counters.commands,
            apply_latency_us_p50: counters.latency_us.value_at_quantile(0.5),
            apply_latency_us_p99: counters.latency_us.value_at_quantile(0.99),
            apply_latency_us_max: counters.latency_us.max(),
            checkpoint_wait_us_max: counters.checkpoint_wait_us_max,
        }
    }

    /// Forgets the apply and sync latencies (and the longest checkpoint wait) recorded so
    /// far, so the latency figures of [`Node::apply_stats`] and [`Node::commit_stats`]
    /// cover what follows: a benchmark's measured window without its set-up. The counts
    /// stay.
    pub fn reset_latencies(&self) {
        let mut counters = self.shared.apply_counters.lock();
        counters.latency_us.reset();
        counters.checkpoint_wait_us_max = 0;
        drop(counters);
        if let Some(group_commit) = &self.group_commit {
            group_commit.reset_latencies();
        }
    }

    /// Group-commit counters.
    pub fn commit_stats(&self) -> surge_wal::CommitStats {
        self.group_commit.as_ref().expect("running").stats()
    }

    /// Stops accepting, lets everything submitted become durable and applied, and stops.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(pulses) = self.pulse_thread.take() {
            let _ = pulses.join();
        }
        if let Some(mut group_commit) = self.group_commit.take() {
            // The pulse thread has been joined; the apply thread holds the log only for the
            // moment it takes to halt it, so wait that moment out.
            loop {
                match Arc::try_unwrap(group_commit) {
                    Ok(owned) => {
                        drop(owned.shutdown());
                        break;
                    }
                    Err(shared) => {
                        group_commit = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        if let Some(apply) = self.apply_thread.take() {
            let _ = apply.join();
        }
    }

    /// Logs an empty pulse whenever something is due, so expiries happen in log time even
    /// without traffic.
    fn start_pulses(&self, clock: Arc<dyn Clock + Sync>) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let queue = self.group_commit.as_ref().expect("running").clone();
        std::thread::Builder::new()
            .name("surge-pulse".to_string())
            .spawn(move || {
                while !shared.stopping.load(Ordering::SeqCst) {
                    let due = shared.state.read().expiry_next();
                    if due.is_some_and(|due| due <= clock.now_ns()) {
                        // Busy or failed: the next check tries again, or the node stops.
                        if let Ok(ticket) = queue.submit(Operation::Pulse, Vec::new(), 0) {
                            let _ = ticket.wait();
                        }
                    }
                    std::thread::sleep(PULSE_CHECK_INTERVAL);
                }
            })
            .expect("spawn the pulse thread")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

struct SharedClock(Arc<dyn Clock + Sync>);

impl Clock for SharedClock {
    fn now_ns(&self) -> u64 {
        self.0.now_ns()
    }
}

fn open_history(
    config: &NodeConfig,
    report: &mut RecoveryReport,
) -> Result<Option<LsmHistory>, EngineError> {
    let Some(directory) = &config.history_directory else {
        return Ok(None);
    };
    let opened = LsmHistory::open(directory).and_then(|index| index.applied_up_to().map(|_| index));
    match opened {
        Ok(index) => Ok(Some(index)),
        // Only corruption deletes it: an index another handle holds (a second node on the
        // same directories, `Locked`) or a failing disk is the operator's to see.
        Err(error) if error.is_corruption() => {
            // Derived data: start it over and rebuild it from the log.
            report
                .warnings
                .push(format!("history index rebuilt from the log after: {error}"));
            Ok(Some(LsmHistory::recreate(directory)?))
        }
        Err(error) => Err(error.into()),
    }
}

/// Why recovery replays from record 0, for the error if that record is no longer kept.
fn replay_from_zero_reason(
    checkpoint: &Option<Checkpoint>,
    newest_record_index: Option<u64>,
    history_applied: Option<u64>,
) -> String {
    match (checkpoint, newest_record_index) {
        (Some(_), _) => "replay the log after the checkpoint of the empty state".to_string(),
        (None, Some(index)) => {
            let applied = history_applied.map_or_else(
                || "empty".to_string(),
                |i| format!("applied up to record {i}"),
            );
            format!(
                "rebuild the history index (it is {applied}, behind the newest checkpoint at \
                 record {index})"
            )
        }
        (None, None) => "replay the whole log (no usable checkpoint)".to_string(),
    }
}

/// A second handle on the log directory for the apply thread's retention, unless it keeps
/// every segment.
fn retention_handle(
    retention: LogRetention,
    log: &dyn Storage,
) -> Result<Option<RetentionHandle>, EngineError> {
    if retention == LogRetention::Keep {
        return Ok(None);
    }
    let handle = log.try_clone().map_err(|source| RetentionError::Io {
        what: "open a second handle on the log directory".to_string(),
        source,
    })?;
    Ok(Some((handle, retention)))
}

/// Checks that `record`, the log's record at the checkpoint's index, is the one the
/// checkpoint reflects (same `checksum_header`).
pub(crate) fn check_checkpoint(
    record_index: u64,
    checksum: u32,
    record: &Record,
) -> Result<(), EngineError> {
    assert_eq!(record.header.record_index, record_index);
    if record.header.checksum_header != checksum {
        return Err(EngineError::CheckpointMismatch {
            record_index,
            reason: format!(
                "record checksum {:08x}, checkpoint says {checksum:08x}",
                record.header.checksum_header
            ),
        });
    }
    Ok(())
}
