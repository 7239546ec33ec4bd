//! Delivering cross-shard transfers (see `surge_core`'s `cross_shard` module for what each
//! leg does). One driver thread takes debit legs once they are durable and applied on
//! their source shard, logs their credit legs on the destination shards, then logs each
//! credit leg's outcome back on the source (settle or compensate), and only then answers
//! the clients waiting for those transfers.
//!
//! Exactly once: the source keeps every unresolved debit leg in its outbox (in its log and
//! snapshots); after a restart the engine hands the whole outbox to the driver again. A
//! credit leg delivered twice answers `exists` (the transfer id dedupes it), a resolve
//! logged twice changes nothing. Rounds run one at a time; legs arriving meanwhile wait for
//! the next round, so a round carries every leg that became ready while the previous one
//! was on disk. A settled single-phase transfer is answered as soon as its credit leg is
//! durable (its resolve only removes the outbox entry: it changes no balance, and after a
//! crash the redelivery answers `exists` and settles again); a compensated one, and a
//! pending one, only once its resolve is applied (the funds back; the hold the client's
//! post or void will find settled). A round's resolves are on disk while the next round's
//! credit legs are.
//!
//! Phase-two legs (posts, voids and expiries of cross-shard pending transfers) are put in
//! a source's outbox by the source's own commands; each node hands them to the driver as
//! it applies them ([`Node::on_released_legs`]), and they travel like debit legs, with no
//! client waiting on the driver.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{Operation, ResultCode, ShardLeg, ShardOutcome, TransferId, TransferLookup};

use super::completion::Join;
use crate::node::{EngineError, Node, Pending};
use surge_core::transfer_flags;

/// Wait before submitting again to a shard whose log queue is full.
const BUSY_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// How long a driver sleeps when there is nothing to deliver (it is woken on new work),
/// and how often one waiting for legs looks at its stop flag.
pub(super) const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Logs `records` (the engine's own messages) as one record of `operation` on `node`,
/// again after a short wait while its log queue is full. The body is made from the
/// records for each attempt, so the common first attempt copies them once.
pub(super) fn submit_records<T: bytemuck::Pod>(
    node: &Node,
    operation: Operation,
    records: &[T],
) -> Result<Pending, EngineError> {
    loop {
        let body = bytemuck::cast_slice(records).to_vec();
        match node.submit_bytes(operation, body, records.len() as u32) {
            Err(error) if error.is_busy() => std::thread::sleep(BUSY_RETRY_INTERVAL),
            submitted => return submitted,
        }
    }
}

/// How a cross-shard transfer ended, for the clients waiting on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The credit leg succeeded (now or on an earlier delivery).
    Settled,
    /// The credit leg failed with this code; the funds went back.
    Compensated(ResultCode),
}

/// Called once when a watched transfer resolves.
pub(crate) type Watcher = Box<dyn FnOnce(Settled) + Send + 'static>;

/// The client batch waiting for a fresh leg, and the leg's command index in it: answered
/// straight from the round, without a lookup.
pub(crate) type Waiter = (Arc<Join>, u32);

/// Answers a fresh leg's client: `ok`, or the credit leg's failure.
fn answer(waiter: Option<Waiter>, settled: Settled) {
    if let Some((join, index)) = waiter {
        let code = match settled {
            Settled::Settled => ResultCode::Ok,
            Settled::Compensated(code) => code,
        };
        join.resolve_one(index, code);
    }
}

pub(crate) struct Saga {
    shared: Arc<SagaShared>,
    driver: Option<JoinHandle<()>>,
}

struct SagaShared {
    nodes: Arc<Vec<Node>>,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Clients waiting for transfers, by id.
    watchers: Mutex<HashMap<TransferId, Vec<Watcher>>>,
    stopping: AtomicBool,
}

/// A round's resolves being logged, and the outcomes to answer once they are applied.
struct Resolving {
    pendings: Vec<Pending>,
    outcomes: Vec<Delivered>,
}

/// A leg's outcome in a round, and its client.
struct Delivered {
    id: TransferId,
    outcome: Settled,
    waiter: Option<Waiter>,
    /// Answered before its resolve is applied (a settled single-phase transfer).
    early: bool,
}

#[derive(Default)]
struct Queue {
    legs: Vec<(ShardLeg, Option<Waiter>)>,
    /// A round is being delivered.
    busy: bool,
    /// Set when the driver stopped on an error: nothing more will be delivered.
    failed: Option<String>,
}

impl Saga {
    /// Starts the driver over `nodes`, delivering first whatever their outboxes hold.
    pub(crate) fn start(nodes: Arc<Vec<Node>>) -> Saga {
        let shared = Arc::new(SagaShared {
            nodes: nodes.clone(),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            watchers: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        });
        // Listening before the outboxes are read: a leg released in between is delivered
        // twice, which its idempotency makes harmless, rather than not at all.
        for node in nodes.iter() {
            let weak = Arc::downgrade(&shared);
            node.on_released_legs(Arc::new(move |legs: Vec<ShardLeg>| {
                if let Some(shared) = weak.upgrade() {
                    (SagaHandle { shared }).deliver(legs.into_iter().map(|leg| (leg, None)));
                }
            }));
        }
        let recovered: Vec<(ShardLeg, Option<Waiter>)> = nodes
            .iter()
            .flat_map(|node| node.read(|state| state.shard_outbox()))
            .map(|leg| (leg, None))
            .collect();
        if !recovered.is_empty() {
            shared.handle_deliver(recovered);
        }
        let driver = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("surge-cross-shard".to_string())
                .spawn(move || shared.drive())
                .expect("spawn the cross-shard driver")
        };
        Saga {
            shared,
            driver: Some(driver),
        }
    }

    /// Why delivery stopped, if it did (a shard failed under it).
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.queue.lock().failed.clone()
    }

    pub(crate) fn handle(&self) -> SagaHandle {
        SagaHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits (at most `limit`) until nothing is queued or being delivered, then stops the
    /// driver. What is still in an outbox is delivered after the next start.
    pub(crate) fn stop(&mut self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        {
            let mut queue = self.shared.queue.lock();
            while (queue.busy || !queue.legs.is_empty()) && queue.failed.is_none() {
                if self
                    .shared
                    .ready
                    .wait_until(&mut queue, deadline)
                    .timed_out()
                {
                    break;
                }
            }
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.ready.notify_all();
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }
}

/// What the rest of the engine uses: hand over legs, watch transfers.
#[derive(Clone)]
pub(crate) struct SagaHandle {
    shared: Arc<SagaShared>,
}

impl SagaHandle {
    /// Debit legs that are now durable and applied on their source shard, each with the
    /// client batch waiting for it.
    pub(crate) fn deliver(&self, legs: impl IntoIterator<Item = (ShardLeg, Option<Waiter>)>) {
        self.shared.handle_deliver(legs);
    }

    /// Calls each watcher when its transfer (a debit leg on shard `source` applied
    /// earlier: a client retry, or a leg delivered by someone else) resolves, or at once
    /// if it already has; one look at the shard's state for them all.
    pub(crate) fn watch_many(&self, source: u32, watches: Vec<(TransferId, Watcher)>) {
        if watches.is_empty() {
            return;
        }
        let ids: Vec<TransferId> = watches.iter().map(|(id, _)| *id).collect();
        {
            // Registered before looking, so a resolve in between cannot be missed.
            let mut watchers = self.shared.watchers.lock();
            for (id, watcher) in watches {
                watchers.entry(id).or_default().push(watcher);
            }
        }
        let node = &self.shared.nodes[source as usize];
        let resolved: Vec<(TransferId, Settled)> = node.read(|state| {
            ids.iter()
                .filter(|id| !state.shard_in_flight(**id))
                .map(|&id| {
                    let settled = match state.shard_compensation(id) {
                        Some((code, _)) => Settled::Compensated(code),
                        None => Settled::Settled,
                    };
                    (id, settled)
                })
                .collect()
        });
        self.shared.notify_all(resolved);
    }
}

impl SagaShared {
    fn handle_deliver(&self, legs: impl IntoIterator<Item = (ShardLeg, Option<Waiter>)>) {
        let mut queue = self.queue.lock();
        queue.legs.extend(legs);
        drop(queue);
        self.ready.notify_all();
    }

    fn drive(&self) {
        // The previous round's resolves, still being logged.
        let mut resolving: Option<Resolving> = None;
        loop {
            if self.queue.lock().legs.is_empty() {
                if let Err(error) = self.finish(resolving.take()) {
                    self.fail(error);
                    return;
                }
            }
            let legs = {
                let mut queue = self.queue.lock();
                if resolving.is_none() {
                    queue.busy = false;
                    self.ready.notify_all();
                }
                while queue.legs.is_empty() && !self.stopping.load(Ordering::SeqCst) {
                    self.ready.wait_for(&mut queue, IDLE_WAIT);
                }
                if queue.legs.is_empty() {
                    return;
                }
                queue.busy = true;
                std::mem::take(&mut queue.legs)
            };
            if let Err(error) = self.round(legs, &mut resolving) {
                self.fail(error);
                return;
            }
        }
    }

    /// A shard stopped (fail-stop): the outboxes keep what is undelivered.
    fn fail(&self, error: EngineError) {
        let reason = format!("cross-shard delivery stopped: {error}");
        let mut queue = self.queue.lock();
        queue.failed = Some(reason);
        queue.busy = false;
        self.ready.notify_all();
    }

    /// Waits for a round's resolves, then answers its compensated transfers, and answers
    /// again anyone who started watching a settled one after it was answered.
    fn finish(&self, resolving: Option<Resolving>) -> Result<(), EngineError> {
        let Some(resolving) = resolving else {
            return Ok(());
        };
        for pending in resolving.pendings {
            pending.wait()?;
        }
        let mut resolved = Vec::with_capacity(resolving.outcomes.len());
        for delivered in resolving.outcomes {
            if !delivered.early || delivered.outcome != Settled::Settled {
                answer(delivered.waiter, delivered.outcome);
            }
            resolved.push((delivered.id, delivered.outcome));
        }
        self.notify_all(resolved);
        Ok(())
    }

    /// Delivers `legs`: credit legs on their destinations, outcomes back on their sources.
    /// The previous round's resolves (`resolving`) are finished once this round's credit
    /// legs are durable; this round's take their place.
    fn round(
        &self,
        legs: Vec<(ShardLeg, Option<Waiter>)>,
        resolving: &mut Option<Resolving>,
    ) -> Result<(), EngineError> {
        type Bound = (Vec<ShardLeg>, Vec<Option<Waiter>>);
        let mut by_destination: BTreeMap<u32, Bound> = BTreeMap::new();
        for (leg, waiter) in legs {
            let bound = by_destination.entry(leg.destination_shard).or_default();
            bound.0.push(leg);
            bound.1.push(waiter);
        }
        let mut outcomes: BTreeMap<u32, Vec<ShardOutcome>> = BTreeMap::new();
        let mut credits = Vec::new();
        for (destination, (legs, waiters)) in &mut by_destination {
            let mut waiters = waiters.drain(..);
            for chunk in legs.chunks(BATCH_EVENTS_MAX) {
                let node = &self.nodes[*destination as usize];
                let pending = submit_records(node, Operation::ShardCredit, chunk)?;
                let chunk_waiters: Vec<Option<Waiter>> =
                    waiters.by_ref().take(chunk.len()).collect();
                credits.push((*destination, chunk, chunk_waiters, pending));
            }
        }
        let mut settled = Vec::new();
        let credits_submitted = credits.len();
        for (destination, chunk, waiters, pending) in credits {
            let codes = pending.wait()?;
            for ((leg, code), waiter) in chunk.iter().zip(codes).zip(waiters) {
                let code = self.credit_outcome(destination, leg.transfer.id, code)?;
                outcomes
                    .entry(leg.source_shard)
                    .or_default()
                    .push(ShardOutcome {
                        transfer_id: leg.transfer.id,
                        code: code.as_u32(),
                        reserved: [0; 12],
                    });
                let outcome = if code.is_success() {
                    Settled::Settled
                } else {
                    Settled::Compensated(code)
                };
                let early = leg.transfer.flags & transfer_flags::PENDING == 0;
                settled.push(Delivered {
                    id: leg.transfer.id,
                    outcome,
                    waiter,
                    early,
                });
            }
        }
        debug_assert!(credits_submitted > 0);
        self.finish(resolving.take())?;
        let mut resolves = Vec::new();
        for (source, outcomes) in &outcomes {
            for chunk in outcomes.chunks(BATCH_EVENTS_MAX) {
                let node = &self.nodes[*source as usize];
                resolves.push(submit_records(node, Operation::ShardResolve, chunk)?);
            }
        }
        let mut early = Vec::new();
        for delivered in &mut settled {
            if delivered.early && delivered.outcome == Settled::Settled {
                answer(delivered.waiter.take(), delivered.outcome);
                early.push((delivered.id, delivered.outcome));
            }
        }
        self.notify_all(early);
        *resolving = Some(Resolving {
            pendings: resolves,
            outcomes: settled,
        });
        Ok(())
    }

    /// The code a credit leg's delivery stands for: a redelivery of a failed one answers
    /// `id_already_failed`, and the failure it stands for is the one stored.
    fn credit_outcome(
        &self,
        destination: u32,
        id: TransferId,
        code: ResultCode,
    ) -> Result<ResultCode, EngineError> {
        if code != ResultCode::IdAlreadyFailed {
            return Ok(code);
        }
        Ok(match self.nodes[destination as usize].transfer(id)? {
            Some(TransferLookup::Failed(original)) => original,
            _ => code,
        })
    }

    /// Calls the watchers of every resolved transfer (one lock for them all).
    fn notify_all(&self, resolved: Vec<(TransferId, Settled)>) {
        let called: Vec<(Watcher, Settled)> = {
            let mut watchers = self.watchers.lock();
            if watchers.is_empty() {
                return;
            }
            resolved
                .into_iter()
                .filter_map(|(id, settled)| watchers.remove(&id).map(|found| (found, settled)))
                .flat_map(|(found, settled)| found.into_iter().map(move |w| (w, settled)))
                .collect()
        };
        for (watcher, settled) in called {
            watcher(settled);
        }
    }
}
