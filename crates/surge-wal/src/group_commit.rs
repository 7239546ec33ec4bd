//! Group commit: one writer thread owns the [`Log`]. Submitters queue batches through a
//! bounded queue (full: [`SubmitError::Busy`] at once). The writer takes everything queued
//! since its last sync (up to a group size bound), stamps each record with its index,
//! sequence and timestamp, writes the group with one write and one `fdatasync`, and only
//! then completes each submitter, in order, and sends the durable records, in log order,
//! to the apply stage. While it syncs, the next group fills. A failed write or sync fails
//! every waiting and every later submitter: fail-stop.

use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use serde::Serialize;
use surge_core::Operation;
use thiserror::Error;

use crate::clock::Clock;
use crate::constants::{
    GROUP_SIZE_BYTES_MAX_DEFAULT, OUTPUT_QUEUE_DEPTH_MAX_DEFAULT, SUBMIT_QUEUE_DEPTH_MAX_DEFAULT,
    SYNC_LATENCY_US_MAX,
};
use crate::handoff::{Arc, PushError, Queue, Slot};
use crate::log::{check_append, Append, Log, LogConfig, WalError};
use crate::record::Record;

/// Bounds of the group-commit pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Submissions waiting for the writer, at most; past it, `Busy`.
    pub submit_queue_depth_max: usize,
    /// Encoded bytes in one group (one write, one sync), at most; a single larger record
    /// still goes alone.
    pub group_size_bytes_max: usize,
    /// Durable records waiting for the apply stage, at most; the writer waits past it.
    pub output_queue_depth_max: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> GroupCommitConfig {
        GroupCommitConfig {
            submit_queue_depth_max: SUBMIT_QUEUE_DEPTH_MAX_DEFAULT,
            group_size_bytes_max: GROUP_SIZE_BYTES_MAX_DEFAULT,
            output_queue_depth_max: OUTPUT_QUEUE_DEPTH_MAX_DEFAULT,
        }
    }
}

/// Why a submission was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// The submission queue is full: try again later (answer BUSY).
    #[error("busy: the log's submission queue is full")]
    Busy,
    /// The group commit is shutting down.
    #[error("the log is shutting down")]
    Closed,
    /// The log failed (fail-stop): nothing more will be written.
    #[error(transparent)]
    Failed(WalError),
    /// The batch is malformed or too large; nothing was queued.
    #[error("invalid submission: {0}")]
    Invalid(WalError),
}

type Completion = Result<Arc<Record>, WalError>;

/// A submitter's claim on its record: completed once the record is durable, or with the
/// fail-stop error.
#[derive(Debug)]
pub struct Ticket {
    slot: Arc<Slot<Completion>>,
}

impl Ticket {
    /// Waits until the record is durable (or the log failed).
    pub fn wait(self) -> Result<Arc<Record>, WalError> {
        self.slot.wait()
    }

    /// The outcome, if there is one yet (taking it: later calls return `None`).
    pub fn try_take(&self) -> Option<Result<Arc<Record>, WalError>> {
        self.slot.try_take()
    }
}

struct Submission {
    operation: Operation,
    count: u32,
    body: Vec<u8>,
    slot: Arc<Slot<Completion>>,
}

/// Counters of the writer, as of a moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CommitStats {
    /// Group syncs done.
    pub syncs: u64,
    /// Encoded bytes written.
    pub bytes: u64,
    /// Records written.
    pub records: u64,
    /// Commands written.
    pub commands: u64,
    /// Commands per sync, on average.
    pub commands_per_sync: f64,
    /// Median sync latency, in µs.
    pub sync_latency_us_p50: u64,
    /// 99th percentile sync latency, in µs.
    pub sync_latency_us_p99: u64,
    /// 99.9th percentile sync latency, in µs.
    pub sync_latency_us_p999: u64,
    /// Longest sync, in µs.
    pub sync_latency_us_max: u64,
}

struct Counters {
    syncs: u64,
    bytes: u64,
    records: u64,
    commands: u64,
    sync_latency_us: Histogram<u64>,
}

impl Counters {
    fn new() -> Counters {
        let sync_latency_us = Histogram::new_with_bounds(1, SYNC_LATENCY_US_MAX, 3)
            .expect("the latency bounds are valid constants");
        Counters {
            syncs: 0,
            bytes: 0,
            records: 0,
            commands: 0,
            sync_latency_us,
        }
    }

    fn stats(&self) -> CommitStats {
        let histogram = &self.sync_latency_us;
        CommitStats {
            syncs: self.syncs,
            bytes: self.bytes,
            records: self.records,
            commands: self.commands,
            commands_per_sync: self.commands as f64 / self.syncs.max(1) as f64,
            sync_latency_us_p50: histogram.value_at_quantile(0.5),
            sync_latency_us_p99: histogram.value_at_quantile(0.99),
            sync_latency_us_p999: histogram.value_at_quantile(0.999),
            sync_latency_us_max: histogram.max(),
        }
    }
}

/// The group-commit pipeline: submit from any thread; one writer thread owns the log.
pub struct GroupCommit {
    queue: Arc<Queue<Submission>>,
    counters: std::sync::Arc<parking_lot::Mutex<Counters>>,
    writer: Option<JoinHandle<Log>>,
    log_config: LogConfig,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("log_config", &self.log_config)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer thread over `log`. The receiver yields every durable record in log
    /// order, for the apply stage; drain it, or drop it to discard them.
    pub fn start(
        log: Log,
        clock: Box<dyn Clock>,
        config: GroupCommitConfig,
    ) -> (GroupCommit, Receiver<Arc<Record>>) {
        assert!(config.group_size_bytes_max > 0);
        let queue = Arc::new(Queue::new(config.submit_queue_depth_max));
        let counters = std::sync::Arc::new(parking_lot::Mutex::new(Counters::new()));
        let (output_sender, output_receiver) =
            crossbeam_channel::bounded(config.output_queue_depth_max);
        let log_config = *log.config();
        let writer = Writer {
            log,
            clock,
            queue: queue.clone(),
            output: output_sender,
            counters: counters.clone(),
            group_size_bytes_max: config.group_size_bytes_max,
        };
        let handle = std::thread::Builder::new()
            .name("surge-wal-writer".to_string())
            .spawn(move || writer.run())
            .expect("spawn the log writer thread");
        let group_commit = GroupCommit {
            queue,
            counters,
            writer: Some(handle),
            log_config,
        };
        (group_commit, output_receiver)
    }

    /// Queues one batch of `count` commands. Never blocks: a full queue is `Busy`.
    pub fn submit(
        &self,
        operation: Operation,
        body: Vec<u8>,
        count: u32,
    ) -> Result<Ticket, SubmitError> {
        let append = Append {
            operation,
            count,
            body: &body,
        };
        let size_bytes = check_append(&append, &self.log_config).map_err(SubmitError::Invalid)?;
        let slot = Arc::new(Slot::new());
        let submission = Submission {
            operation,
            count,
            body,
            slot: slot.clone(),
        };
        let size_bytes = usize::try_from(size_bytes).unwrap_or(usize::MAX);
        match self.queue.push(submission, size_bytes) {
            Ok(()) => Ok(Ticket { slot }),
            Err(PushError::Busy) => Err(SubmitError::Busy),
            Err(PushError::Closed) => Err(SubmitError::Closed),
            Err(PushError::Failed(error)) => Err(SubmitError::Failed(error)),
        }
    }

    /// Why the log failed (fail-stop), if it did: nothing more will be written.
    pub fn failure(&self) -> Option<WalError> {
        self.queue.failure()
    }

    /// Forgets the sync latencies recorded so far (the counts stay), so the latency
    /// figures of [`GroupCommit::stats`] cover what follows: a benchmark's measured window
    /// without its set-up.
    pub fn reset_latencies(&self) {
        self.counters.lock().sync_latency_us.reset();
    }

    /// The writer's counters now.
    pub fn stats(&self) -> CommitStats {
        self.counters.lock().stats()
    }

    /// Stops the log from outside, fail-stop (the apply stage could not go on): queued
    /// and later submissions get `Failed` with `reason`; the writer stops after the group
    /// it is writing, if any.
    pub fn halt(&self, reason: String) {
        let error = WalError::Failed {
            reason,
            kind: std::io::ErrorKind::Other,
        };
        for submission in self.queue.fail(error.clone()) {
            submission.slot.fill_if_empty(Err(error.clone()));
        }
    }

    /// Stops taking submissions, lets the writer finish what is queued, and returns the
    /// log (failed, if it failed).
    pub fn shutdown(mut self) -> Log {
        self.stop().expect("the writer runs until shutdown")
    }

    fn stop(&mut self) -> Option<Log> {
        self.queue.close();
        let handle = self.writer.take()?;
        match handle.join() {
            Ok(log) => Some(log),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop();
        } else {
            self.queue.close();
        }
    }
}

struct Writer {
    log: Log,
    clock: Box<dyn Clock>,
    queue: Arc<Queue<Submission>>,
    output: Sender<Arc<Record>>,
    counters: std::sync::Arc<parking_lot::Mutex<Counters>>,
    group_size_bytes_max: usize,
}

impl Writer {
    fn run(mut self) -> Log {
        let mut group = Vec::new();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_groups(&mut group);
        }));
        if let Err(panic) = outcome {
            // A broken invariant stops the writer; no submitter may wait forever for it.
            let error = WalError::Failed {
                reason: "the log writer thread panicked".to_string(),
                kind: std::io::ErrorKind::Other,
            };
            let drained = self.queue.fail(error.clone());
            for submission in group.drain(..).chain(drained) {
                submission.slot.fill_if_empty(Err(error.clone()));
            }
            std::panic::resume_unwind(panic);
        }
        self.log
    }

    fn run_groups(&mut self, group: &mut Vec<Submission>) {
        while self.queue.take_group(self.group_size_bytes_max, group) {
            match self.commit(group) {
                Ok(records) => {
                    // Durable: complete the submitters in order, then feed the apply stage.
                    for (submission, record) in group.drain(..).zip(&records) {
                        submission.slot.fill(Ok(record.clone()));
                    }
                    for record in records {
                        // A dropped receiver means nobody applies: the records stay durable.
                        let _ = self.output.send(record);
                    }
                }
                Err(error) => {
                    assert!(error.is_failed());
                    let drained = self.queue.fail(error.clone());
                    for submission in group.drain(..).chain(drained) {
                        submission.slot.fill(Err(error.clone()));
                    }
                    break;
                }
            }
        }
    }

    /// Writes and syncs one group; returns its durable records in order.
    fn commit(&mut self, group: &mut [Submission]) -> Result<Vec<Arc<Record>>, WalError> {
        let appends: Vec<Append<'_>> = group
            .iter()
            .map(|s| Append {
                operation: s.operation,
                count: s.count,
                body: &s.body,
            })
            .collect();
        let tail_before = self.log.tail();
        let headers = self.log.append(self.clock.now_ns(), &appends)?;
        let sync_start = Instant::now();
        self.log.sync()?;
        let sync_latency_us = u64::try_from(sync_start.elapsed().as_micros()).unwrap_or(u64::MAX);
        assert_eq!(headers.len(), group.len());
        let mut counters = self.counters.lock();
        counters.syncs += 1;
        counters.records += headers.len() as u64;
        counters.bytes += headers
            .iter()
            .map(|h| h.record_size_bytes() as u64)
            .sum::<u64>();
        counters.commands += self.log.tail().sequence - tail_before.sequence;
        let clamped = sync_latency_us.clamp(1, SYNC_LATENCY_US_MAX);
        counters
            .sync_latency_us
            .record(clamped)
            .expect("clamped into the histogram's range");
        drop(counters);
        let records = headers
            .into_iter()
            .zip(group.iter_mut())
            .map(|(header, s)| {
                Arc::new(Record {
                    header,
                    body: std::mem::take(&mut s.body),
                })
            })
            .collect();
        Ok(records)
    }
}
