//! Driving orders spanning shards (see `surge_core`'s `order_saga` module for what each
//! step does on each shard). One driver thread takes the steps an order's shard put in its
//! order outbox once they are durable and applied, logs each on its target shard (an
//! authorization or refund as an order leg, a pay, cancel or expiry as a resolve), waits
//! until the cross-shard legs that causes have settled (through the cross-shard driver),
//! then logs the outcome back on the order's shard and only then answers the clients
//! waiting for those steps.
//!
//! Exactly once: a step stays in its order's shard's outbox (in its log and snapshots)
//! until its outcome is applied there; after a restart the engine hands every outbox to
//! the driver again. The target dedupes a redelivery by transfer id (`exists`, or
//! `id_already_failed` and the stored failure), and an outcome for a step no longer in the
//! outbox changes nothing. The driver starts a round with every step queued (logging them
//! on their targets) and hands it to one of [`ROUND_WORKERS`] workers, which wait for the
//! targets, the cross-shard legs and the outcomes; up to that many rounds overlap, so
//! their log syncs do too. Rounds are independent: an order has one step in flight, and
//! its next step is sent only once the outcome of this one is applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use surge_core::constants::{BATCH_BODY_SIZE_BYTES_MAX, BATCH_EVENTS_MAX};
use surge_core::{
    order_message_kind as kind, Operation, OrderId, OrderLookup, OrderOutcome, ResultCode,
    StateMachine, TransferId, TransferLookup, UnitOutcome, UnitStep,
};

use super::saga::{submit_records, SagaHandle, Settled, IDLE_WAIT};
use crate::node::{EngineError, Node, OrderStep, Pending};

/// Unit steps one log record holds, at most (a unit step is larger than an order).
const UNIT_STEPS_PER_RECORD_MAX: usize =
    BATCH_BODY_SIZE_BYTES_MAX / std::mem::size_of::<UnitStep>();

/// How a round submits a step to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Submission {
    /// An authorization or refund: [`Operation::OrderLegs`].
    Legs,
    /// A post or void of an authorization: [`Operation::OrderResolve`].
    Resolve,
    /// Units on another shard holding the order's lines: [`Operation::OrderUnits`].
    Units,
}

impl OrderStep {
    /// The shard the step is applied on.
    fn target(&self) -> u32 {
        match self {
            OrderStep::Message(message) => message.leg.source_shard,
            OrderStep::Units(step, _) => step.target_shard,
        }
    }

    fn submission(&self) -> Submission {
        match self {
            OrderStep::Message(message)
                if matches!(message.kind, kind::AUTHORIZE | kind::REFUND) =>
            {
                Submission::Legs
            }
            OrderStep::Message(_) => Submission::Resolve,
            OrderStep::Units(..) => Submission::Units,
        }
    }

    /// The key of whoever waits for the step on the order's shard (zero: nobody).
    fn key(&self) -> TransferId {
        match self {
            OrderStep::Message(message) => message.leg.transfer.id,
            OrderStep::Units(_, key) => *key,
        }
    }
}

/// Rounds in flight at once, each finished by its own worker thread.
const ROUND_WORKERS: usize = 4;

/// A round whose steps were submitted to their targets: each submission's step indexes
/// and its pending codes.
struct Round {
    steps: Vec<(u32, OrderStep)>,
    submitted: Vec<(Vec<usize>, Pending)>,
}

/// A client waiting for an order step: the command's own code (`ok`, or `exists` for a
/// retry) becomes the step's outcome once it is settled on the order's shard.
pub(crate) struct OrderWait {
    /// The step's key: the order's authorization id for a placed order, else the
    /// action's transfer id.
    pub(crate) key: TransferId,
    /// The order.
    pub(crate) order: OrderId,
    /// Whether the command placed the order (its outcome is the answer); else it is an
    /// action (the action's transfer id's outcome is).
    pub(crate) placing: bool,
    /// The command's own code.
    pub(crate) code: ResultCode,
    /// Called once with the final code. Must not block.
    pub(crate) answer: Box<dyn FnOnce(ResultCode) + Send + 'static>,
}

impl OrderWait {
    fn final_code(&self, state: &StateMachine) -> ResultCode {
        final_code(state, self.key, self.order, self.placing, self.code)
    }
}

/// The final code of an order command whose own code was `code` (`ok`, or `exists` for a
/// retry), from the order's shard's state once its step (if it sent one) settled: a failure
/// recorded there, as a first attempt or a retry sees it, else `code`. `key`: the step's
/// key; `placing`: the command placed `order` (else it acted on it).
fn final_code(
    state: &StateMachine,
    key: TransferId,
    order: OrderId,
    placing: bool,
    code: ResultCode,
) -> ResultCode {
    if !placing && !state.order_spans_shards(order) {
        return code; // An order on one shard: its actions' codes are final when applied.
    }
    let failed = if placing {
        match state.order(order) {
            Some(OrderLookup::Failed(failure)) => Some(failure),
            _ => None,
        }
    } else {
        match state.order(order) {
            // The order settled the action under this id.
            Some(OrderLookup::Placed(view))
                if view.payment_transfer_id == key || view.closing_transfer_id == key =>
            {
                None
            }
            // Else the action failed: its failure as recorded here. A client that created
            // another transfer under the very id here while the step travelled leaves no
            // room to record it: the id is in use.
            _ => Some(match state.transfer(key) {
                Some(TransferLookup::Failed(failure)) => failure,
                _ => ResultCode::TransferIdInUse,
            }),
        }
    };
    match (failed, code) {
        (Some(failure), ResultCode::Ok) => failure,
        (Some(_), _) => ResultCode::IdAlreadyFailed,
        (None, code) => code,
    }
}

/// The outcomes a round logs back on one order's shard, and the keys they settle.
#[derive(Default)]
struct Confirmations {
    messages: Vec<OrderOutcome>,
    units: Vec<UnitOutcome>,
    keys: Vec<TransferId>,
}

pub(crate) struct OrderSaga {
    shared: Arc<OrderShared>,
    driver: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

struct OrderShared {
    nodes: Arc<Vec<Node>>,
    saga: SagaHandle,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Clients waiting for steps, by (order's shard, key).
    watchers: Mutex<HashMap<(u32, TransferId), Vec<OrderWait>>>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Queue {
    /// Steps to deliver, with their order's shard.
    steps: Vec<(u32, OrderStep)>,
    /// Rounds started and not yet finished.
    rounds: usize,
    /// Set when the driver stopped on an error: nothing more will be delivered.
    failed: Option<String>,
}

impl OrderSaga {
    /// Starts the driver over `nodes`, delivering first whatever their order outboxes
    /// hold; cross-shard legs go through `saga`.
    pub(crate) fn start(nodes: Arc<Vec<Node>>, saga: SagaHandle) -> OrderSaga {
        let shared = Arc::new(OrderShared {
            nodes: nodes.clone(),
            saga,
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            watchers: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
        });
        // Listening before the outboxes are read: a step released in between is
        // delivered twice, which its idempotency makes harmless, rather than not at all.
        for (home, node) in nodes.iter().enumerate() {
            let weak = Arc::downgrade(&shared);
            node.on_released_order_messages(Arc::new(move |steps: Vec<OrderStep>| {
                if let Some(shared) = weak.upgrade() {
                    shared.enqueue(steps.into_iter().map(|step| (home as u32, step)));
                }
            }));
        }
        let recovered: Vec<(u32, OrderStep)> = nodes
            .iter()
            .enumerate()
            .flat_map(|(home, node)| {
                node.read(OrderStep::outboxes)
                    .into_iter()
                    .map(move |step| (home as u32, step))
            })
            .collect();
        shared.enqueue(recovered);
        // Bounded: the driver waits while every worker is busy and one round waits.
        let (rounds, started) = crossbeam_channel::bounded::<Round>(1);
        let workers = (0..ROUND_WORKERS)
            .map(|index| {
                let shared = shared.clone();
                let started = started.clone();
                std::thread::Builder::new()
                    .name(format!("surge-order-round-{index}"))
                    .spawn(move || {
                        for round in started {
                            shared.finish_round(round);
                        }
                    })
                    .expect("spawn an order saga worker")
            })
            .collect();
        let driver = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("surge-order-saga".to_string())
                .spawn(move || shared.drive(rounds))
                .expect("spawn the order saga driver")
        };
        OrderSaga {
            shared,
            driver: Some(driver),
            workers,
        }
    }

    /// Why delivery stopped, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.shared.queue.lock().failed.clone()
    }

    pub(crate) fn handle(&self) -> OrderSagaHandle {
        OrderSagaHandle {
            shared: self.shared.clone(),
        }
    }

    /// Waits (at most `limit`) until nothing is queued or being delivered, then stops the
    /// driver. What is still in an outbox is delivered after the next start.
    pub(crate) fn stop(&mut self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        {
            let mut queue = self.shared.queue.lock();
            while (queue.rounds > 0 || !queue.steps.is_empty()) && queue.failed.is_none() {
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
        // The driver drops the round channel as it stops, which stops the workers.
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// What the rest of the engine uses: wait for order steps.
#[derive(Clone)]
pub(crate) struct OrderSagaHandle {
    shared: Arc<OrderShared>,
}

impl OrderSagaHandle {
    /// Settles, with one look at shard `home`, the commands of a part (their step keys,
    /// orders, whether they place them, their codes) whose step is not in flight there:
    /// each successful one's code becomes its final code. Returns the positions still in
    /// flight, to [`OrderSagaHandle::watch`].
    pub(crate) fn settle(
        &self,
        home: u32,
        keys: &[TransferId],
        orders: &[OrderId],
        placing: bool,
        codes: &mut [ResultCode],
    ) -> Vec<usize> {
        self.shared.nodes[home as usize].read(|state| {
            let mut in_flight = Vec::new();
            for (position, code) in codes.iter_mut().enumerate() {
                if !code.is_success() {
                    continue;
                }
                let (key, order) = (keys[position], orders[position]);
                if state.order_step_in_flight(key) {
                    in_flight.push(position);
                } else {
                    *code = final_code(state, key, order, placing, *code);
                }
            }
            in_flight
        })
    }

    /// Answers each wait (a command whose step was in flight on shard `home`) once its
    /// step is settled there.
    pub(crate) fn watch(&self, home: u32, waits: Vec<OrderWait>) {
        self.shared.watch(home, waits);
    }
}

impl OrderShared {
    /// Answers each wait once its step is settled on shard `home`.
    fn watch(&self, home: u32, waits: Vec<OrderWait>) {
        let keys: Vec<TransferId> = waits.iter().map(|wait| wait.key).collect();
        {
            // Registered before looking again, so a settle in between cannot be missed.
            let mut watchers = self.watchers.lock();
            for wait in waits {
                watchers.entry((home, wait.key)).or_default().push(wait);
            }
        }
        let node = &self.nodes[home as usize];
        let settled: Vec<TransferId> = node.read(|state| {
            keys.into_iter()
                .filter(|key| !state.order_step_in_flight(*key))
                .collect()
        });
        self.notify(home, settled);
    }

    fn enqueue(&self, steps: impl IntoIterator<Item = (u32, OrderStep)>) {
        let mut queue = self.queue.lock();
        let before = queue.steps.len();
        queue.steps.extend(steps);
        let added = queue.steps.len() > before;
        drop(queue);
        if added {
            self.ready.notify_all();
        }
    }

    /// Starts rounds of every queued step and hands them to the workers, until stopped
    /// or failed.
    fn drive(&self, rounds: crossbeam_channel::Sender<Round>) {
        loop {
            let steps = {
                let mut queue = self.queue.lock();
                while queue.steps.is_empty()
                    && queue.failed.is_none()
                    && !self.stopping.load(Ordering::SeqCst)
                {
                    self.ready.wait_for(&mut queue, IDLE_WAIT);
                }
                if queue.steps.is_empty() || queue.failed.is_some() {
                    return;
                }
                queue.rounds += 1;
                std::mem::take(&mut queue.steps)
            };
            let round = match self.start_round(steps) {
                Ok(round) => round,
                Err(error) => {
                    self.fail(error);
                    return;
                }
            };
            if rounds.send(round).is_err() {
                return;
            }
        }
    }

    /// Stops delivery for good: the outboxes keep what is undelivered.
    fn fail(&self, error: EngineError) {
        let mut queue = self.queue.lock();
        queue.failed = Some(format!("order saga delivery stopped: {error}"));
        self.ready.notify_all();
    }

    /// Finishes a round on a worker; a round ends (counted) however it ends.
    fn finish_round(&self, round: Round) {
        if let Err(error) = self.finish(round) {
            self.fail(error);
        }
        let mut queue = self.queue.lock();
        queue.rounds -= 1;
        self.ready.notify_all();
    }

    /// Waits for a round's targets, then for the cross-shard legs its steps caused, logs
    /// their outcomes on their orders' shards and answers who waits. Stopping while
    /// waiting leaves the rest to the outboxes.
    fn finish(&self, round: Round) -> Result<(), EngineError> {
        let steps = &round.steps;
        let mut codes = Vec::with_capacity(steps.len());
        for (chunk, pending) in round.submitted {
            codes.extend(chunk.into_iter().zip(pending.wait()?));
        }
        let mut outcomes: Vec<Option<ResultCode>> = vec![None; steps.len()];
        let (settled_sender, settled) = crossbeam_channel::unbounded::<(usize, ResultCode)>();
        let mut waiting = 0usize;
        let mut fresh = Vec::new();
        let mut watches: BTreeMap<u32, Vec<(TransferId, super::saga::Watcher)>> = BTreeMap::new();
        for (index, code) in codes {
            let step = match &steps[index].1 {
                OrderStep::Message(message) => message,
                OrderStep::Units(..) => {
                    // Nothing else moves: a repeat's `exists` is a success.
                    outcomes[index] = Some(match code {
                        ResultCode::Ok | ResultCode::Exists => ResultCode::Ok,
                        failure => failure,
                    });
                    continue;
                }
            };
            let leg = step.leg;
            let is_leg = matches!(step.kind, kind::AUTHORIZE | kind::REFUND);
            let crosses = is_leg && leg.source_shard != leg.destination_shard;
            let outcome = match code {
                // A post or void may have sent the merchant's side its own leg: wait for
                // it (at once if there is none).
                ResultCode::Ok | ResultCode::Exists if crosses || !is_leg => {
                    if code == ResultCode::Ok && crosses {
                        fresh.push((leg, None));
                    }
                    let sender = settled_sender.clone();
                    waiting += 1;
                    let watcher: super::saga::Watcher = Box::new(move |settled: Settled| {
                        let code = match settled {
                            Settled::Settled => ResultCode::Ok,
                            Settled::Compensated(code) => code,
                        };
                        let _ = sender.send((index, code));
                    });
                    watches
                        .entry(leg.source_shard)
                        .or_default()
                        .push((leg.transfer.id, watcher));
                    continue;
                }
                ResultCode::Ok | ResultCode::Exists => ResultCode::Ok,
                ResultCode::IdAlreadyFailed if is_leg => {
                    self.stored_failure(leg.source_shard, leg.transfer.id)?
                }
                ResultCode::ExistsWithDifferentFields if is_leg => ResultCode::TransferIdInUse,
                failure => failure,
            };
            outcomes[index] = Some(outcome);
        }
        for (source, watches) in watches {
            self.saga.watch_many(source, watches);
        }
        self.saga.deliver(fresh);
        while waiting > 0 {
            match settled.recv_timeout(IDLE_WAIT) {
                Ok((index, code)) => {
                    outcomes[index] = Some(code);
                    waiting -= 1;
                }
                Err(_) if self.stopping.load(Ordering::SeqCst) => return Ok(()),
                Err(_) => {}
            }
        }
        self.confirm(steps, &outcomes)
    }

    /// Logs every step on its target shard (not waiting for them).
    fn start_round(&self, steps: Vec<(u32, OrderStep)>) -> Result<Round, EngineError> {
        let mut by_target: BTreeMap<(u32, Submission), Vec<usize>> = BTreeMap::new();
        for (index, (_, step)) in steps.iter().enumerate() {
            by_target
                .entry((step.target(), step.submission()))
                .or_default()
                .push(index);
        }
        let message = |index: usize| match steps[index].1 {
            OrderStep::Message(message) => message,
            OrderStep::Units(..) => unreachable!("grouped with messages"),
        };
        let mut submitted = Vec::new();
        for ((target, submission), indexes) in &by_target {
            let chunk_size = match submission {
                Submission::Units => UNIT_STEPS_PER_RECORD_MAX.min(BATCH_EVENTS_MAX),
                _ => BATCH_EVENTS_MAX,
            };
            for chunk in indexes.chunks(chunk_size) {
                let node = &self.nodes[*target as usize];
                let pending = match submission {
                    Submission::Legs => {
                        let legs: Vec<_> = chunk.iter().map(|&i| message(i).leg).collect();
                        submit_records(node, Operation::OrderLegs, &legs)?
                    }
                    Submission::Resolve => {
                        let transfers: Vec<_> =
                            chunk.iter().map(|&i| message(i).leg.transfer).collect();
                        submit_records(node, Operation::OrderResolve, &transfers)?
                    }
                    Submission::Units => {
                        let units: Vec<UnitStep> = chunk
                            .iter()
                            .map(|&i| match steps[i].1 {
                                OrderStep::Units(step, _) => step,
                                OrderStep::Message(_) => unreachable!("grouped with units"),
                            })
                            .collect();
                        submit_records(node, Operation::OrderUnits, &units)?
                    }
                };
                submitted.push((chunk.to_vec(), pending));
            }
        }
        Ok(Round { steps, submitted })
    }

    /// Logs the outcomes on the orders' shards, then answers who waits for them.
    fn confirm(
        &self,
        steps: &[(u32, OrderStep)],
        outcomes: &[Option<ResultCode>],
    ) -> Result<(), EngineError> {
        let mut by_home: BTreeMap<u32, Confirmations> = BTreeMap::new();
        for ((home, step), outcome) in steps.iter().zip(outcomes) {
            let code = outcome.expect("every step has an outcome");
            let confirmations = by_home.entry(*home).or_default();
            match step {
                OrderStep::Message(message) => confirmations.messages.push(OrderOutcome {
                    transfer_id: message.leg.transfer.id,
                    code: code.as_u32(),
                    kind: message.kind,
                    reserved: [0; 8],
                }),
                OrderStep::Units(unit, _) => confirmations.units.push(UnitOutcome {
                    order_id: unit.order.id,
                    target_shard: unit.target_shard,
                    kind: unit.kind,
                    code: code.as_u32(),
                    reserved: [0; 4],
                }),
            }
            if !step.key().is_zero() {
                confirmations.keys.push(step.key());
            }
        }
        let mut confirming = Vec::new();
        for (home, confirmations) in &by_home {
            let node = &self.nodes[*home as usize];
            for chunk in confirmations.messages.chunks(BATCH_EVENTS_MAX) {
                confirming.push(submit_records(node, Operation::OrderConfirm, chunk)?);
            }
            for chunk in confirmations.units.chunks(BATCH_EVENTS_MAX) {
                confirming.push(submit_records(node, Operation::UnitConfirm, chunk)?);
            }
        }
        for pending in confirming {
            pending.wait()?;
        }
        for (home, confirmations) in by_home {
            self.notify(home, confirmations.keys);
        }
        Ok(())
    }

    /// The failure stored for an order leg's transfer on its target.
    fn stored_failure(&self, target: u32, id: TransferId) -> Result<ResultCode, EngineError> {
        Ok(match self.nodes[target as usize].transfer(id)? {
            Some(TransferLookup::Failed(code)) => code,
            _ => ResultCode::IdAlreadyFailed,
        })
    }

    /// Answers whoever waits for the steps `keys` of shard `home` (one look at its state).
    fn notify(&self, home: u32, keys: impl IntoIterator<Item = TransferId>) {
        let waits: Vec<OrderWait> = {
            let mut watchers = self.watchers.lock();
            if watchers.is_empty() {
                return;
            }
            keys.into_iter()
                .filter_map(|key| watchers.remove(&(home, key)))
                .flatten()
                .collect()
        };
        self.answer(home, waits);
    }

    /// Computes the waits' final codes from `home`'s state, then answers them (outside the
    /// state's lock: an answer may run a client's completion).
    /// A wait whose key is in flight again (an outcome that sent the order's next step
    /// under the same key: its units elsewhere) is watched again.
    fn answer(&self, home: u32, waits: Vec<OrderWait>) {
        if waits.is_empty() {
            return;
        }
        let codes: Vec<Option<ResultCode>> = self.nodes[home as usize].read(|state| {
            waits
                .iter()
                .map(|wait| {
                    let in_flight = state.order_step_in_flight(wait.key);
                    (!in_flight).then(|| wait.final_code(state))
                })
                .collect()
        });
        let mut again = Vec::new();
        for (wait, code) in waits.into_iter().zip(codes) {
            match code {
                Some(code) => (wait.answer)(code),
                None => again.push(wait),
            }
        }
        if !again.is_empty() {
            self.watch(home, again);
        }
    }
}

#[cfg(test)]
mod tests {
    use surge_core::records::ORDER_LINES_MAX;
    use surge_core::{
        order_message_kind, Account, AccountId, Batch, Config, Order, OrderAction, OrderLine,
        OrderOutcome, Sku, SkuId, SpanningOrder, Transfer,
    };

    use super::*;

    /// One state machine standing for an order's shard (its buyer on shard 1).
    struct Shard {
        state: StateMachine,
        now: u64,
    }

    impl Shard {
        fn apply(&mut self, batch: Batch<'_>) -> Vec<ResultCode> {
            let mut results = Vec::new();
            self.now += 1_000;
            self.state.apply(self.now, batch, &mut results);
            results
        }
    }

    #[test]
    fn an_action_whose_id_was_taken_here_while_it_travelled_is_answered_as_failed() {
        let mut shard = Shard {
            state: StateMachine::new(Config::default()),
            now: 1_000_000,
        };
        let accounts: Vec<Account> = [5, 6]
            .map(|id| Account {
                id: AccountId(id),
                ledger: 1,
                code: 1,
                ..Account::default()
            })
            .to_vec();
        let ok = |codes: Vec<ResultCode>| codes.iter().all(|code| *code == ResultCode::Ok);
        assert!(ok(shard.apply(Batch::CreateAccounts(&accounts))));
        let sku = Sku {
            id: SkuId(9),
            units_stocked: 5,
            ..Sku::default()
        };
        assert!(ok(shard.apply(Batch::CreateSkus(&[sku]))));
        let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
        lines[0] = OrderLine {
            sku_id: SkuId(9),
            quantity: 1,
            reserved: 0,
        };
        let order = Order {
            id: OrderId(1),
            buyer_id: AccountId(100),
            merchant_id: AccountId(5),
            transfer_id: TransferId(11),
            amount: 10,
            timeout_ns: 60_000_000_000,
            ledger: 1,
            line_count: 1,
            lines,
            ..Order::default()
        };
        let spanning = SpanningOrder {
            order,
            buyer_shard: 1,
            merchant_shard: 0,
            merchant_ledger: 1,
            shard_count: 0,
        };
        assert!(ok(shard.apply(Batch::ReserveOrders(&[spanning]))));
        let outcome = |id: u128, kind: u32, code: ResultCode| OrderOutcome {
            transfer_id: TransferId(id),
            code: code.as_u32(),
            kind,
            reserved: [0; 8],
        };
        let authorized = outcome(11, order_message_kind::AUTHORIZE, ResultCode::Ok);
        assert!(ok(shard.apply(Batch::OrderConfirm(&[authorized]))));
        let pay = OrderAction {
            order_id: OrderId(1),
            transfer_id: TransferId(12),
            ..OrderAction::default()
        };
        assert!(ok(shard.apply(Batch::PayOrders(&[pay]))));
        // While the pay travels, a client creates another transfer under its id here; the
        // buyer's shard refuses the pay (the id is in use there too).
        let other = Transfer {
            id: TransferId(12),
            debit_account_id: AccountId(5),
            credit_account_id: AccountId(6),
            amount: 1,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        };
        assert!(ok(shard.apply(Batch::CreateTransfers(&[other]))));
        let refused = outcome(
            12,
            order_message_kind::PAY,
            ResultCode::ExistsWithDifferentFields,
        );
        assert!(ok(shard.apply(Batch::OrderConfirm(&[refused]))));
        let key = TransferId(12);
        assert!(!shard.state.order_step_in_flight(key));
        let answer = final_code(&shard.state, key, OrderId(1), false, ResultCode::Ok);
        assert_eq!(answer, ResultCode::TransferIdInUse);
        // A pay that did go through is answered ok.
        let pay = OrderAction {
            transfer_id: TransferId(13),
            ..pay
        };
        assert!(ok(shard.apply(Batch::PayOrders(&[pay]))));
        let paid = outcome(13, order_message_kind::PAY, ResultCode::Ok);
        assert!(ok(shard.apply(Batch::OrderConfirm(&[paid]))));
        let answer = final_code(
            &shard.state,
            TransferId(13),
            OrderId(1),
            false,
            ResultCode::Ok,
        );
        assert_eq!(answer, ResultCode::Ok);
    }
}
