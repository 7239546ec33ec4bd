//! The engine: `N` shards, each a [`Node`] with its own log, checkpoints and history index
//! under `<data>/shard-NN/`, behind one submit/read interface. A submitted batch is split
//! by shard ([`crate::router`]); each part is logged and applied by its shard; the caller's
//! completion runs once every part is durable and applied. Admission is bounded per shard:
//! a batch that would push any of its shards past its limit is refused at once (`Busy`)
//! without logging anything, and never stalls other shards.

mod completion;
mod layout;
mod lookups;
mod order_saga;
mod parts;
mod saga;
mod stats;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use surge_core::{
    is_reserved_account_id, shard_of, transfer_flags, transit_shards, Account, AccountId, Batch,
    CompactOrder, DispatchRequest, Operation, Order, OrderId, OrderLookup, ResultCode, ShardLeg,
    Sku, SkuId, SpanningOrder, StateMachine, TransferId, TransferLookup,
};
use surge_history::{HistoryIndex, StatementCursor, StatementPage};
use surge_wal::{Clock, FileStorage, SystemClock};

use crate::node::{EngineError, Node, NodeConfig, NodeStorage, RecoveryReport};
use crate::router::{self, Locate, Route};
use completion::{Join, Legs, OrderSteps, Part, Resolutions, ShardLoad, Waiting};
use order_saga::OrderSaga;
use saga::Saga;
pub use stats::{EngineStats, ShardStats};

/// Default of [`EngineConfig::batches_in_flight_per_shard_max`]: below the group commit's
/// submit queue (1,024 by default), which keeps room for pulses and internal messages.
pub const BATCHES_IN_FLIGHT_PER_SHARD_MAX_DEFAULT: usize = 960;

/// Orders spanning shards one log record holds, at most: each is logged with its shards
/// (a [`SpanningOrder`], larger than an order), within the log's largest record body.
const SPANNING_ORDERS_PER_RECORD_MAX: usize =
    surge_core::constants::BATCH_BODY_SIZE_BYTES_MAX / std::mem::size_of::<SpanningOrder>();

/// At shutdown, how long admitted batches and cross-shard deliveries may take to finish;
/// what is still in an outbox after it is delivered after the next start.
const SHUTDOWN_DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Called exactly once with a submitted batch's result codes (one per command, in the
/// batch's order) or the reason it has none. It runs on an engine thread (or on the
/// submitting thread when nothing needed logging) and must not block.
pub type Completion = Box<dyn FnOnce(Result<Vec<ResultCode>, EngineError>) + Send + 'static>;

/// How to run an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Everything lives below it: `shards` (the shard count, fixed at creation) and one
    /// `shard-NN` directory per shard.
    pub data_directory: PathBuf,
    /// Shards (1..=256). Fixed for a data directory: opening it with another count is
    /// refused (moving ids between shards is a migration, not a restart).
    pub shards: usize,
    /// Every shard's node configuration; `history_directory` is set per shard.
    pub node: NodeConfig,
    /// Keep a history index per shard (statements, lookups of evicted transfers; needed
    /// for eviction).
    pub history: bool,
    /// Batches submitted to one shard and not yet completed, at most; past it `Busy`.
    pub batches_in_flight_per_shard_max: usize,
}

impl EngineConfig {
    /// Defaults: one shard per core, history on.
    pub fn new(data_directory: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            data_directory: data_directory.into(),
            shards: shards_default(),
            node: NodeConfig::default(),
            history: true,
            batches_in_flight_per_shard_max: BATCHES_IN_FLIGHT_PER_SHARD_MAX_DEFAULT,
        }
    }
}

/// One shard per core the process may use.
pub fn shards_default() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(16))
}

/// What opening did, per shard.
#[derive(Debug, Default)]
pub struct EngineReport {
    /// Recovery of each shard, by shard index.
    pub shards: Vec<RecoveryReport>,
}

/// A running engine. `Send + Sync`: share it behind an `Arc`.
pub struct Engine {
    /// The shards' nodes, by index; `None` once stopped.
    nodes: Option<Arc<Vec<Node>>>,
    shards: Vec<Shard>,
    saga: Option<Saga>,
    /// Drives orders spanning shards (over `saga`).
    order_saga: Option<OrderSaga>,
    shard_count: u32,
    stopping: AtomicBool,
}

struct Shard {
    waiting: Option<crossbeam_channel::Sender<Waiting>>,
    completer: Option<JoinHandle<()>>,
    load: Arc<ShardLoad>,
}

impl Engine {
    /// Opens (or creates) the data directory and recovers every shard, on the system clock.
    pub fn open(config: EngineConfig) -> Result<(Engine, EngineReport), EngineError> {
        Engine::open_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Engine::open`] on a given clock (tests).
    pub fn open_with_clock(
        config: EngineConfig,
        clock: Arc<dyn Clock + Sync>,
    ) -> Result<(Engine, EngineReport), EngineError> {
        assert!(config.batches_in_flight_per_shard_max >= 1);
        let shard_count = layout::prepare(&config.data_directory, config.shards)?;
        let mut shards = Vec::with_capacity(shard_count as usize);
        let mut nodes = Vec::with_capacity(shard_count as usize);
        let mut report = EngineReport::default();
        for index in 0..shard_count {
            let directory = layout::shard_directory(&config.data_directory, index);
            let io = |what: &str, source| EngineError::DataDirectory {
                path: directory.join(what),
                source,
            };
            let storage = NodeStorage {
                log: Box::new(FileStorage::open(&directory.join("log")).map_err(|e| io("log", e))?),
                checkpoints: Box::new(
                    FileStorage::open(&directory.join("checkpoints"))
                        .map_err(|e| io("checkpoints", e))?,
                ),
            };
            let mut node_config = config.node.clone();
            node_config.history_directory = config.history.then(|| directory.join("history"));
            // Shards that log at the same pace write their checkpoints one after the
            // other, not all at once (docs/PERFORMANCE.md, "Checkpoints staggered").
            node_config.checkpoint_phase_records = staggered_phase(
                config.node.checkpoint_phase_records,
                config.node.checkpoint_interval_records,
                index,
                shard_count,
            );
            let (node, recovered) = Node::open(node_config, storage, clock.clone())?;
            report.shards.push(recovered);
            let load = Arc::new(ShardLoad::new(config.batches_in_flight_per_shard_max));
            let (waiting, completer) = completion::start(index, load.clone());
            nodes.push(node);
            shards.push(Shard {
                waiting: Some(waiting),
                completer: Some(completer),
                load,
            });
        }
        let nodes = Arc::new(nodes);
        // Delivers what the outboxes hold from before the restart, then new legs.
        let saga = Saga::start(nodes.clone());
        let order_saga = OrderSaga::start(nodes.clone(), saga.handle());
        let engine = Engine {
            nodes: Some(nodes),
            shards,
            saga: Some(saga),
            order_saga: Some(order_saga),
            shard_count,
            stopping: AtomicBool::new(false),
        };
        Ok((engine, report))
    }

    /// Shards this engine runs.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Submits a client batch: `done` gets its codes once every part is durable and
    /// applied. Refused at once, with nothing logged, when it is empty, a pulse, or would
    /// overfill a shard's queue ([`EngineError::is_busy`]: retry later with the same ids).
    pub fn submit(&self, batch: Batch<'_>, done: Completion) -> Result<(), EngineError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped(
                "the engine is shutting down".to_string(),
            ));
        }
        if batch.is_empty() {
            return Err(EngineError::EmptyBatch);
        }
        if batch.operation().is_internal() {
            return Err(EngineError::OperationNotAllowed(batch.operation()));
        }
        if self.shard_count == 1 {
            return self.submit_whole(0, batch, done);
        }
        if let Batch::PlaceOrdersCompact(compact) = batch {
            // Routed (and, spanning shards, reserved) as the orders they stand for; a
            // shard's part of one-line orders is logged compact again.
            let orders: Vec<Order> = compact.iter().map(CompactOrder::order).collect();
            return self.submit(Batch::PlaceOrders(&orders), done);
        }
        let routes = router::routes(batch, self.shard_count, self);
        let mut codes = vec![ResultCode::Ok; batch.len()];
        let mut local: Vec<Vec<u32>> = vec![Vec::new(); self.shards.len()];
        let mut crossing: Vec<Vec<u32>> = vec![Vec::new(); self.shards.len()];
        let mut spanning: Vec<Vec<u32>> = vec![Vec::new(); self.shards.len()];
        for (index, route) in routes.iter().enumerate() {
            match *route {
                Route::Local(shard) => local[shard as usize].push(index as u32),
                Route::Cross { debit, .. } => crossing[debit as usize].push(index as u32),
                Route::Spanning(shard) => spanning[shard as usize].push(index as u32),
                Route::Refused(code) => codes[index] = code,
            }
        }
        // One admission slot per part: a shard may get local commands, debit legs and
        // orders spanning shards (a record holds fewer of those than a batch may).
        let slots: Vec<usize> = (0..self.shards.len())
            .flat_map(|shard| {
                let parts = usize::from(!local[shard].is_empty())
                    + usize::from(!crossing[shard].is_empty())
                    + spanning[shard]
                        .len()
                        .div_ceil(SPANNING_ORDERS_PER_RECORD_MAX);
                std::iter::repeat_n(shard, parts)
            })
            .collect();
        self.admit(&slots)?;
        let join = Join::new(codes, slots.len(), done);
        for shard in 0..self.shards.len() {
            let indexes = std::mem::take(&mut local[shard]);
            if !indexes.is_empty() {
                self.submit_local(shard, batch, indexes, &join);
            }
            let indexes = std::mem::take(&mut crossing[shard]);
            if !indexes.is_empty() {
                self.submit_debit_legs(shard, batch, &routes, indexes, &join);
            }
            let indexes = std::mem::take(&mut spanning[shard]);
            for chunk in indexes.chunks(SPANNING_ORDERS_PER_RECORD_MAX) {
                self.submit_spanning_orders(shard, batch, chunk.to_vec(), &join);
            }
        }
        Ok(())
    }

    /// Submits and waits for the codes (tests, tools).
    pub fn submit_wait(&self, batch: Batch<'_>) -> Result<Vec<ResultCode>, EngineError> {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        self.submit(
            batch,
            Box::new(move |result| {
                let _ = sender.send(result);
            }),
        )?;
        receiver
            .recv()
            .unwrap_or_else(|_| Err(EngineError::Stopped("completion dropped".to_string())))
    }

    fn submit_whole(
        &self,
        shard: usize,
        batch: Batch<'_>,
        done: Completion,
    ) -> Result<(), EngineError> {
        self.admit(&[shard])?;
        let submitted = self.node(shard).submit(batch);
        let join = Join::new(vec![ResultCode::Ok; batch.len()], 1, done);
        self.enqueue(shard, submitted, Part::new(join, None));
        Ok(())
    }

    /// Takes one in-flight slot on each of `shards`, or none and `Busy`.
    fn admit(&self, shards: &[usize]) -> Result<(), EngineError> {
        for (taken, &shard) in shards.iter().enumerate() {
            if !self.shards[shard].load.try_admit() {
                for &admitted in &shards[..taken] {
                    self.shards[admitted].load.release();
                }
                return Err(EngineError::Busy {
                    shard: shard as u32,
                });
            }
        }
        Ok(())
    }

    /// Hands a submitted part to its shard's completion thread, or completes it at once
    /// when the submission itself failed.
    fn enqueue(&self, shard: usize, submitted: Result<crate::Pending, EngineError>, part: Part) {
        let target = &self.shards[shard];
        match submitted {
            Ok(pending) => {
                let waiting = Waiting::new(pending, part);
                let sender = target.waiting.as_ref().expect("running");
                if let Err(refused) = sender.send(waiting) {
                    refused
                        .into_inner()
                        .into_inner()
                        .fail(EngineError::Stopped("shard stopped".to_string()));
                    target.load.release();
                }
            }
            Err(error) => {
                target.load.release();
                part.fail_or_busy(error);
            }
        }
    }

    /// An account, from its shard (between applied batches).
    pub fn account(&self, id: AccountId) -> Option<Account> {
        self.owner(id.0).read(|state| state.account(id))
    }

    /// A SKU and its unit counters.
    pub fn sku(&self, id: SkuId) -> Option<Sku> {
        self.owner(u128::from(id.0)).read(|state| state.sku(id))
    }

    /// A transfer, resident or archived, from whichever shard holds it.
    /// A cross-shard transfer answers as its client sent it (debit account from its
    /// source shard, credit account from its destination), or failed if its credit leg
    /// failed.
    pub fn transfer(&self, id: TransferId) -> Result<Option<TransferLookup>, EngineError> {
        for node in self.nodes().iter() {
            let Some(found) = node.transfer(id)? else {
                continue;
            };
            let TransferLookup::Committed {
                mut transfer,
                pending_status,
            } = found
            else {
                return Ok(Some(found));
            };
            if is_reserved_account_id(transfer.credit_account_id) {
                // A debit leg: the credit account is the destination's, or in the outbox.
                let (_, destination) = transit_shards(transfer.credit_account_id);
                transfer.credit_account_id = match self.node(destination as usize).transfer(id)? {
                    Some(TransferLookup::Committed {
                        transfer: credit, ..
                    }) => credit.credit_account_id,
                    _ => node.read(|state| {
                        state
                            .shard_outbox()
                            .iter()
                            .find(|leg| leg.transfer.id == id)
                            .map_or(transfer.credit_account_id, |leg| {
                                leg.transfer.credit_account_id
                            })
                    }),
                };
            } else if is_reserved_account_id(transfer.debit_account_id) {
                // A credit leg found first: its source holds the debit side.
                let (source, _) = transit_shards(transfer.debit_account_id);
                if let Some(TransferLookup::Committed {
                    transfer: debit,
                    pending_status: source_status,
                }) = self.node(source as usize).transfer(id)?
                {
                    transfer.debit_account_id = debit.debit_account_id;
                    transfer.timestamp = debit.timestamp;
                    // The source resolves a pending transfer; its side is ahead.
                    return Ok(Some(TransferLookup::Committed {
                        transfer,
                        pending_status: source_status,
                    }));
                }
            }
            return Ok(Some(TransferLookup::Committed {
                transfer,
                pending_status,
            }));
        }
        Ok(None)
    }

    /// Runs `read` against shard `index`'s state (between its applied batches): audits,
    /// verification tools.
    pub fn read_shard<T>(&self, index: usize, read: impl FnOnce(&StateMachine) -> T) -> T {
        self.node(index).read(read)
    }

    /// Every shard's transit accounts, by shard (what conservation audits add in).
    pub fn transit_accounts(&self) -> Vec<(u32, Account)> {
        self.nodes()
            .iter()
            .enumerate()
            .flat_map(|(shard, node)| {
                node.read(|state| state.transit_accounts())
                    .into_iter()
                    .map(move |account| (shard as u32, account))
            })
            .collect()
    }

    /// Cross-shard transfers whose debit leg is applied and whose credit leg has no
    /// outcome yet, over all shards.
    pub fn cross_shard_in_flight(&self) -> usize {
        self.nodes()
            .iter()
            .map(|node| node.read(|state| state.shard_outbox().len()))
            .sum()
    }

    /// An order, from the shard holding it.
    pub fn order(&self, id: OrderId) -> Option<OrderLookup> {
        self.nodes()
            .iter()
            .find_map(|node| node.read(|state| state.order(id)))
    }

    /// Up to `limit` unacknowledged dispatch requests after `cursor`, from every shard
    /// (each shard's requests in feed order), and the cursor to pass next.
    pub fn dispatch_feed(
        &self,
        cursor: &DispatchCursor,
        limit: usize,
    ) -> Result<(Vec<DispatchRequest>, DispatchCursor), EngineError> {
        if cursor.0.len() != self.shards.len() && !cursor.0.is_empty() {
            return Err(EngineError::BadCursor(format!(
                "the cursor names {} shards, the engine runs {}",
                cursor.0.len(),
                self.shards.len()
            )));
        }
        let mut next = cursor.0.clone();
        next.resize(self.shards.len(), 0);
        let mut found = Vec::new();
        for (index, node) in self.nodes().iter().enumerate() {
            let room = limit - found.len();
            if room == 0 {
                break;
            }
            let page = node.read(|state| state.dispatch_feed(next[index], room));
            if let Some(last) = page.last() {
                next[index] = last.sequence;
            }
            found.extend(page);
        }
        Ok((found, DispatchCursor(next)))
    }

    /// One page of an account's statement from its shard's history index.
    pub fn statement(
        &self,
        account_id: AccountId,
        from_ns: u64,
        to_ns: u64,
        after: Option<StatementCursor>,
        limit: usize,
    ) -> Result<StatementPage, EngineError> {
        let node = self.owner(account_id.0);
        let history = node.history().ok_or(EngineError::HistoryDisabled)?;
        Ok(history.statement(account_id, from_ns, to_ns, after, limit)?)
    }

    /// Why the engine can no longer apply commands, if it cannot: a shard's log or apply
    /// stage failed (fail-stop), or cross-shard delivery stopped. Cheap enough to poll.
    pub fn failure(&self) -> Option<String> {
        for (index, node) in self.nodes().iter().enumerate() {
            if let Some(reason) = node.failure() {
                return Some(format!("shard {index}: {reason}"));
            }
        }
        self.saga
            .as_ref()
            .and_then(|saga| saga.failure())
            .or_else(|| self.order_saga.as_ref().and_then(|saga| saga.failure()))
    }

    /// Counters of every shard.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            shards: self
                .nodes()
                .iter()
                .zip(&self.shards)
                .map(|(node, shard)| stats::shard_stats(node, &shard.load))
                .collect(),
        }
    }

    /// Forgets every shard's apply and sync latencies recorded so far
    /// ([`Node::reset_latencies`]): the latency figures of [`Engine::stats`] then cover
    /// what follows (a benchmark's measured window without its set-up).
    pub fn reset_latencies(&self) {
        for node in self.nodes().iter() {
            node.reset_latencies();
        }
    }

    /// Stops accepting, lets everything admitted become durable, applied and completed,
    /// and stops every shard.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if self.nodes.is_none() {
            return;
        }
        // Admitted batches finish (their cross-shard legs need the driver), then the
        // driver stops, then the completion threads, then the nodes.
        let deadline = std::time::Instant::now() + SHUTDOWN_DRAIN_LIMIT;
        while self.shards.iter().any(|shard| shard.load.busy_now())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Order steps first: they may still hand cross-shard legs to the driver.
        if let Some(mut order_saga) = self.order_saga.take() {
            order_saga.stop(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        if let Some(mut saga) = self.saga.take() {
            saga.stop(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        for shard in &mut self.shards {
            drop(shard.waiting.take());
            if let Some(completer) = shard.completer.take() {
                let _ = completer.join();
            }
        }
        if let Some(nodes) = self.nodes.take() {
            let Ok(nodes) = Arc::try_unwrap(nodes) else {
                panic!("every user of the nodes has stopped");
            };
            for node in nodes {
                node.shutdown();
            }
        }
    }

    fn nodes(&self) -> &Arc<Vec<Node>> {
        self.nodes.as_ref().expect("running")
    }

    fn node(&self, shard: usize) -> &Node {
        &self.nodes()[shard]
    }

    fn owner(&self, id: u128) -> &Node {
        self.node(shard_of(id, self.shard_count) as usize)
    }
}

/// The checkpoint phase of shard `index` of `shard_count`: `phase` moved on by the shard's
/// share of the `interval`, within the interval (computed wide: no overflow).
fn staggered_phase(phase: u64, interval: u64, index: u32, shard_count: u32) -> u64 {
    if interval == 0 {
        return phase;
    }
    let interval = u128::from(interval);
    let share = interval * u128::from(index) / u128::from(shard_count.max(1));
    ((u128::from(phase) + share) % interval) as u64
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Locate for Engine {
    fn pending_transfers(&self, ids: &[TransferId]) -> Vec<Option<u32>> {
        // Not the credit side of a cross-shard pending transfer (its debit is transit):
        // the debit side resolves it.
        self.locate(ids, |state, id| match state.transfer(id) {
            Some(TransferLookup::Committed { transfer, .. }) => {
                !is_reserved_account_id(transfer.debit_account_id)
            }
            found => found.is_some(),
        })
    }

    fn orders(&self, ids: &[OrderId]) -> Vec<Option<u32>> {
        self.locate(ids, |state, id| state.order(id).is_some())
    }
}

impl Engine {
    /// For each id, the first shard whose state `holds` it: one read of each shard's
    /// state for the whole batch, not one per id.
    fn locate<Id: Copy>(
        &self,
        ids: &[Id],
        holds: impl Fn(&StateMachine, Id) -> bool,
    ) -> Vec<Option<u32>> {
        let mut found = vec![None; ids.len()];
        for (index, node) in self.nodes().iter().enumerate() {
            if found.iter().all(Option::is_some) {
                break;
            }
            node.read(|state| {
                for (home, &id) in found.iter_mut().zip(ids) {
                    if home.is_none() && holds(state, id) {
                        *home = Some(index as u32);
                    }
                }
            });
        }
        found
    }
}

/// Where a reader of the dispatch feed is, per shard; travels as an opaque string
/// (`"12.7"`: the last sequence seen on each shard; empty = from the start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchCursor(pub Vec<u64>);

impl std::fmt::Display for DispatchCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        write!(f, "{}", parts.join("."))
    }
}

impl std::str::FromStr for DispatchCursor {
    type Err = EngineError;

    fn from_str(text: &str) -> Result<DispatchCursor, EngineError> {
        if text.is_empty() {
            return Ok(DispatchCursor::default());
        }
        text.split('.')
            .map(|part| part.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
            .map(DispatchCursor)
            .map_err(|_| EngineError::BadCursor(format!("not a dispatch cursor: {text:?}")))
    }
}

/// Whether clients may submit `operation` (pulses and the messages between shards are
/// the engine's own).
pub fn is_client_operation(operation: Operation) -> bool {
    !operation.is_internal()
}
