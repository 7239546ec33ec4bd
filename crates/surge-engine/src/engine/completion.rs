//! Completing submitted batches: one thread per shard waits for its parts in log order
//! (they become durable and applied in that order) and hands each part's codes to the
//! batch's [`Join`], which calls the caller's completion when the last part is in.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use surge_core::{ResultCode, ShardLeg};
use surge_wal::SubmitError;

use super::order_saga::{OrderSagaHandle, OrderWait};
use super::saga::{SagaHandle, Settled, Watcher};
use super::Completion;
use crate::node::{EngineError, Pending};

/// Longest latency the histograms record, in µs (a minute).
const LATENCY_US_MAX: u64 = 60_000_000;

/// A shard's admission limit and counters.
pub(crate) struct ShardLoad {
    pub(crate) in_flight: AtomicUsize,
    in_flight_max: usize,
    pub(crate) batches: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) busy: AtomicU64,
    /// Submit to completion of this shard's parts, in µs.
    pub(crate) latency_us: Mutex<Histogram<u64>>,
}

impl ShardLoad {
    pub(crate) fn new(in_flight_max: usize) -> ShardLoad {
        ShardLoad {
            in_flight: AtomicUsize::new(0),
            in_flight_max,
            batches: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).expect("valid constant bounds"),
            ),
        }
    }

    /// Takes an in-flight slot, unless the shard is full.
    pub(crate) fn try_admit(&self) -> bool {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current < self.in_flight_max).then_some(current + 1)
            })
            .is_ok();
        if !admitted {
            self.busy.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Whether any batch is in flight.
    pub(crate) fn busy_now(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Gives an in-flight slot back.
    pub(crate) fn release(&self) {
        let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
        assert!(before >= 1);
    }
}

/// The caller's side of a submitted batch: codes by command index, parts still out.
pub(crate) struct Join {
    inner: Mutex<JoinState>,
}

struct JoinState {
    codes: Vec<ResultCode>,
    parts_left: usize,
    error: Option<EngineError>,
    done: Option<Completion>,
}

impl Join {
    /// `codes` holds the codes already known (refusals); `parts` parts are to come. With no
    /// parts the completion runs at once.
    pub(crate) fn new(codes: Vec<ResultCode>, parts: usize, done: Completion) -> Arc<Join> {
        let join = Arc::new(Join {
            inner: Mutex::new(JoinState {
                codes,
                parts_left: parts,
                error: None,
                done: Some(done),
            }),
        });
        if parts == 0 {
            join.finish();
        }
        join
    }

    /// One more outcome to wait for (a cross-shard transfer's resolution).
    fn expect_one(&self) {
        self.inner.lock().parts_left += 1;
    }

    /// The awaited outcome of command `index`.
    pub(crate) fn resolve_one(&self, index: u32, code: ResultCode) {
        let finished = {
            let mut state = self.inner.lock();
            state.codes[index as usize] = code;
            state.parts_left -= 1;
            state.parts_left == 0
        };
        if finished {
            self.finish();
        }
    }

    fn part_done(&self, indexes: Option<&[u32]>, result: Result<Vec<ResultCode>, EngineError>) {
        let finished = {
            let mut state = self.inner.lock();
            match result {
                Ok(codes) => match indexes {
                    None => {
                        assert_eq!(codes.len(), state.codes.len());
                        state.codes = codes;
                    }
                    Some(indexes) => {
                        assert_eq!(codes.len(), indexes.len());
                        for (&index, code) in indexes.iter().zip(codes) {
                            state.codes[index as usize] = code;
                        }
                    }
                },
                Err(error) => {
                    state.error.get_or_insert(error);
                }
            }
            state.parts_left -= 1;
            state.parts_left == 0
        };
        if finished {
            self.finish();
        }
    }

    fn finish(&self) {
        let (done, result) = {
            let mut state = self.inner.lock();
            let done = state.done.take().expect("a join finishes once");
            let result = match state.error.take() {
                Some(error) => Err(error),
                None => Ok(std::mem::take(&mut state.codes)),
            };
            (done, result)
        };
        done(result);
    }
}

/// One shard's part of a batch: which of the batch's commands it holds (`None`: all).
pub(crate) struct Part {
    join: Arc<Join>,
    indexes: Option<Vec<u32>>,
    /// For a part of debit legs: where they go once applied.
    legs: Option<Legs>,
    /// For a part with posts or voids: each waits for its phase-two leg, if it has one.
    resolutions: Option<Resolutions>,
    /// For a part of order commands: each waits for its order's step, if it sent one.
    order_steps: Option<OrderSteps>,
}

/// The order commands of a part on the orders' shard `home`: one that sent a step to
/// another shard (an order spanning shards) is answered once the step's outcome is logged
/// back here. `keys[i]` is the step key of the part's command `i`, `orders[i]` its order;
/// `placing`: the part places orders (else it acts on them).
pub(crate) struct OrderSteps {
    pub(crate) saga: OrderSagaHandle,
    pub(crate) home: u32,
    pub(crate) keys: Vec<surge_core::TransferId>,
    pub(crate) orders: Vec<surge_core::OrderId>,
    pub(crate) placing: bool,
}

/// The posts and voids of a local part (positions in the part) on `source`: one of a
/// cross-shard pending transfer sends its credit side a phase-two leg, and the client's
/// answer waits until that leg is applied there too, as a cross-shard transfer's answer
/// waits for its credit leg.
pub(crate) struct Resolutions {
    pub(crate) saga: SagaHandle,
    pub(crate) source: u32,
    pub(crate) positions: Vec<u32>,
    pub(crate) ids: Vec<surge_core::TransferId>,
}

/// The debit legs of a part, and the driver that delivers them.
pub(crate) struct Legs {
    pub(crate) saga: SagaHandle,
    pub(crate) source: u32,
    pub(crate) legs: Vec<ShardLeg>,
}

impl Part {
    pub(crate) fn new(join: Arc<Join>, indexes: Option<Vec<u32>>) -> Part {
        Part {
            join,
            indexes,
            legs: None,
            resolutions: None,
            order_steps: None,
        }
    }

    /// A part of order commands that may wait for their orders' steps.
    pub(crate) fn with_order_steps(mut self, order_steps: OrderSteps) -> Part {
        self.order_steps = Some(order_steps);
        self
    }

    /// A local part whose posts and voids wait for their phase-two legs.
    pub(crate) fn with_resolutions(mut self, resolutions: Resolutions) -> Part {
        self.resolutions = Some(resolutions);
        self
    }

    /// A part of debit legs (`indexes[i]` is the batch index of `legs.legs[i]`).
    pub(crate) fn debit_legs(join: Arc<Join>, indexes: Vec<u32>, legs: Legs) -> Part {
        assert_eq!(indexes.len(), legs.legs.len());
        Part {
            join,
            indexes: Some(indexes),
            legs: Some(legs),
            resolutions: None,
            order_steps: None,
        }
    }

    fn complete(self, result: Result<Vec<ResultCode>, EngineError>) {
        if let (Ok(codes), Some(steps), Some(indexes)) = (&result, &self.order_steps, &self.indexes)
        {
            // One look at the order's shard settles every command whose step is done (most
            // of them: an order on one shard sends none); only those still in flight wait.
            let mut codes = codes.clone();
            let in_flight = steps.saga.settle(
                steps.home,
                &steps.keys,
                &steps.orders,
                steps.placing,
                &mut codes,
            );
            // Counted before this part's codes go in, as for debit legs.
            for _ in &in_flight {
                self.join.expect_one();
            }
            let waits: Vec<OrderWait> = in_flight
                .into_iter()
                .map(|position| {
                    let join = self.join.clone();
                    let index = indexes[position];
                    OrderWait {
                        key: steps.keys[position],
                        order: steps.orders[position],
                        placing: steps.placing,
                        code: codes[position],
                        answer: Box::new(move |code| join.resolve_one(index, code)),
                    }
                })
                .collect();
            self.join.part_done(Some(indexes), Ok(codes));
            if !waits.is_empty() {
                steps.saga.watch(steps.home, waits);
            }
            return;
        }
        if let (Ok(codes), Some(resolutions), Some(indexes)) =
            (&result, &self.resolutions, &self.indexes)
        {
            let codes = codes.clone();
            // Counted before this part's codes go in, as for debit legs.
            let waiting: Vec<(u32, surge_core::TransferId, ResultCode)> = resolutions
                .positions
                .iter()
                .zip(&resolutions.ids)
                .filter(|(&position, _)| codes[position as usize].is_success())
                .map(|(&position, &id)| (indexes[position as usize], id, codes[position as usize]))
                .collect();
            for _ in &waiting {
                self.join.expect_one();
            }
            self.join.part_done(Some(indexes), result);
            let watches = waiting
                .into_iter()
                .map(|(index, id, code)| {
                    let join = self.join.clone();
                    let watcher: Watcher = Box::new(move |settled: Settled| {
                        let final_code = match settled {
                            Settled::Settled => code,
                            Settled::Compensated(failure) => failure,
                        };
                        join.resolve_one(index, final_code);
                    });
                    (id, watcher)
                })
                .collect();
            resolutions.saga.watch_many(resolutions.source, watches);
            return;
        }
        let (Ok(codes), Some(legs), Some(indexes)) = (&result, &self.legs, &self.indexes) else {
            self.join.part_done(self.indexes.as_deref(), result);
            return;
        };
        // Count the resolutions to wait for before this part's codes go in, so the batch
        // cannot complete in between; the final codes overwrite the legs' own.
        let watched = codes
            .iter()
            .filter(|code| matches!(code, ResultCode::Ok | ResultCode::Exists))
            .count();
        for _ in 0..watched {
            self.join.expect_one();
        }
        let codes = codes.clone();
        self.join.part_done(Some(indexes), result);
        watch_legs(&self.join, indexes, legs, &codes);
    }

    /// The part could not be completed.
    pub(crate) fn fail(self, error: EngineError) {
        self.complete(Err(error));
    }

    /// The part's submission failed: a full log queue answers `Busy` for its commands
    /// (the other parts went on), anything else fails the batch.
    pub(crate) fn fail_or_busy(self, error: EngineError) {
        match (&error, &self.indexes) {
            (EngineError::Submit(SubmitError::Busy), Some(indexes)) => {
                let codes = vec![ResultCode::Busy; indexes.len()];
                self.complete(Ok(codes));
            }
            _ => self.fail(error),
        }
    }
}

/// Debit legs applied with `codes`: the client's answer for each waits for the transfer's
/// resolution. A new leg (`ok`) ends as `ok` or the credit leg's failure; a retry of one
/// already applied (`exists`) ends as `exists` or `id_already_failed`, as a retry does on
/// one shard. Other codes are final.
fn watch_legs(join: &Arc<Join>, indexes: &[u32], legs: &Legs, codes: &[ResultCode]) {
    let mut fresh = Vec::new();
    let mut retries: Vec<(surge_core::TransferId, Watcher)> = Vec::new();
    for ((&index, leg), &code) in indexes.iter().zip(&legs.legs).zip(codes) {
        let retry = match code {
            ResultCode::Ok => false,
            ResultCode::Exists => true,
            _ => continue,
        };
        if !retry {
            fresh.push((*leg, Some((join.clone(), index))));
            continue;
        }
        let waiting = join.clone();
        let watcher: Watcher = Box::new(move |settled: Settled| {
            let final_code = match settled {
                Settled::Settled => ResultCode::Exists,
                Settled::Compensated(_) => ResultCode::IdAlreadyFailed,
            };
            waiting.resolve_one(index, final_code);
        });
        retries.push((leg.transfer.id, watcher));
    }
    legs.saga.watch_many(legs.source, retries);
    legs.saga.deliver(fresh);
}

/// A submitted part waiting to be durable and applied.
pub(crate) struct Waiting {
    pending: Pending,
    part: Part,
    submitted_at: Instant,
}

impl Waiting {
    pub(crate) fn new(pending: Pending, part: Part) -> Waiting {
        Waiting {
            pending,
            part,
            submitted_at: Instant::now(),
        }
    }

    pub(crate) fn into_inner(self) -> Part {
        self.part
    }
}

/// Starts shard `index`'s completion thread.
pub(crate) fn start(
    index: u32,
    load: Arc<ShardLoad>,
) -> (crossbeam_channel::Sender<Waiting>, JoinHandle<()>) {
    // Unbounded: `ShardLoad` admission bounds what is in flight.
    let (sender, receiver) = crossbeam_channel::unbounded::<Waiting>();
    let thread = std::thread::Builder::new()
        .name(format!("surge-complete-{index}"))
        .spawn(move || {
            for waiting in receiver {
                let result = waiting.pending.wait();
                let elapsed_us = waiting.submitted_at.elapsed().as_micros() as u64;
                if let Ok(codes) = &result {
                    load.batches.fetch_add(1, Ordering::Relaxed);
                    load.commands
                        .fetch_add(codes.len() as u64, Ordering::Relaxed);
                }
                load.latency_us
                    .lock()
                    .saturating_record(elapsed_us.clamp(1, LATENCY_US_MAX));
                load.release();
                waiting.part.complete(result);
            }
        })
        .expect("spawn a completion thread");
    (sender, thread)
}
