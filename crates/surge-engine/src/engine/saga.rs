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
//! was on disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{Operation, ResultCode, ShardLeg, ShardOutcome, TransferId, TransferLookup};

use crate::node::{EngineError, Node, Pending};

/// Wait before submitting again to a shard whose log queue is full.
const BUSY_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// How long the driver sleeps when there is nothing to deliver (it is woken on new legs).
const IDLE_WAIT: Duration = Duration::from_millis(100);

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

#[derive(Default)]
struct Queue {
    legs: Vec<ShardLeg>,
    /// A round is being delivered.
    busy: bool,
    /// Set when the driver stopped on an error: nothing more will be delivered.
    failed: Option<String>,
}

impl Saga {
    /// Starts the driver over `nodes`, delivering first whatever their outboxes hold.
    pub(crate) fn start(nodes: Arc<Vec<Node>>) -> Saga {
        let recovered: Vec<ShardLeg> = nodes
            .iter()
            .flat_map(|node| node.read(|state| state.shard_outbox()))
            .collect();
        let shared = Arc::new(SagaShared {
            nodes,
            queue: Mutex::new(Queue {
                legs: recovered,
                ..Queue::default()
            }),
            ready: Condvar::new(),
            watchers: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        });
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
    /// Debit legs that are now durable and applied on their source shard.
    pub(crate) fn deliver(&self, legs: impl IntoIterator<Item = ShardLeg>) {
        let mut queue = self.shared.queue.lock();
        queue.legs.extend(legs);
        drop(queue);
        self.shared.ready.notify_all();
    }

    /// Calls `watcher` when transfer `id` (a debit leg on shard `source`) resolves, or at
    /// once if it already has.
    pub(crate) fn watch(&self, source: u32, id: TransferId, watcher: Watcher) {
        // Registered before looking, so a resolve in between cannot be missed.
        self.shared
            .watchers
            .lock()
            .entry(id)
            .or_default()
            .push(watcher);
        let node = &self.shared.nodes[source as usize];
        let resolved = node.read(|state| {
            if state.shard_in_flight(id) {
                None
            } else {
                Some(match state.shard_compensation(id) {
                    Some((code, _)) => Settled::Compensated(code),
                    None => Settled::Settled,
                })
            }
        });
        if let Some(settled) = resolved {
            self.shared.notify(id, settled);
        }
    }
}

impl SagaShared {
    fn drive(&self) {
        loop {
            let legs = {
                let mut queue = self.queue.lock();
                queue.busy = false;
                self.ready.notify_all();
                while queue.legs.is_empty() && !self.stopping.load(Ordering::SeqCst) {
                    self.ready.wait_for(&mut queue, IDLE_WAIT);
                }
                if queue.legs.is_empty() {
                    return;
                }
                queue.busy = true;
                std::mem::take(&mut queue.legs)
            };
            if let Err(error) = self.round(legs) {
                // A shard stopped (fail-stop): the outboxes keep what is undelivered.
                let reason = format!("cross-shard delivery stopped: {error}");
                let mut queue = self.queue.lock();
                queue.failed = Some(reason);
                queue.busy = false;
                self.ready.notify_all();
                return;
            }
        }
    }

    /// Delivers `legs`: credit legs on their destinations, outcomes back on their sources.
    fn round(&self, legs: Vec<ShardLeg>) -> Result<(), EngineError> {
        let mut by_destination: BTreeMap<u32, Vec<ShardLeg>> = BTreeMap::new();
        for leg in legs {
            by_destination
                .entry(leg.destination_shard)
                .or_default()
                .push(leg);
        }
        let mut outcomes: BTreeMap<u32, Vec<ShardOutcome>> = BTreeMap::new();
        let mut credits = Vec::new();
        for (destination, legs) in &by_destination {
            for chunk in legs.chunks(BATCH_EVENTS_MAX) {
                let body = bytemuck::cast_slice(chunk).to_vec();
                let pending =
                    self.submit(*destination, Operation::ShardCredit, body, chunk.len())?;
                credits.push((*destination, chunk, pending));
            }
        }
        let mut settled = Vec::new();
        for (destination, chunk, pending) in credits {
            let codes = pending.wait()?;
            for (leg, code) in chunk.iter().zip(codes) {
                let code = self.credit_outcome(destination, leg.transfer.id, code)?;
                outcomes
                    .entry(leg.source_shard)
                    .or_default()
                    .push(ShardOutcome {
                        transfer_id: leg.transfer.id,
                        code: code.as_u32(),
                        reserved: [0; 12],
                    });
                settled.push((
                    leg.transfer.id,
                    if code.is_success() {
                        Settled::Settled
                    } else {
                        Settled::Compensated(code)
                    },
                ));
            }
        }
        let mut resolves = Vec::new();
        for (source, outcomes) in &outcomes {
            for chunk in outcomes.chunks(BATCH_EVENTS_MAX) {
                let body = bytemuck::cast_slice(chunk).to_vec();
                resolves.push(self.submit(*source, Operation::ShardResolve, body, chunk.len())?);
            }
        }
        for pending in resolves {
            pending.wait()?;
        }
        for (id, outcome) in settled {
            self.notify(id, outcome);
        }
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

    fn submit(
        &self,
        shard: u32,
        operation: Operation,
        body: Vec<u8>,
        count: usize,
    ) -> Result<Pending, EngineError> {
        loop {
            match self.nodes[shard as usize].submit_bytes(operation, body.clone(), count as u32) {
                Err(error) if error.is_busy() => std::thread::sleep(BUSY_RETRY_INTERVAL),
                submitted => return submitted,
            }
        }
    }

    fn notify(&self, id: TransferId, settled: Settled) {
        let watchers = self.watchers.lock().remove(&id);
        for watcher in watchers.into_iter().flatten() {
            watcher(settled);
        }
    }
}
