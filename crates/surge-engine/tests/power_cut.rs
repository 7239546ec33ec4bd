//! Guarantee 1, "durable before acknowledged", under simulated power cuts of the whole
//! node. Each seed builds a node on two simulated disks (log and checkpoints) with small
//! segments and a small checkpoint interval, drives a random workload of accounts,
//! transfers (failing ones, pending/post/void, linked chains), SKUs, orders, payments and
//! cancels from the seed, stops the simulated machine at a seeded storage operation (in a
//! log write, a sync, a segment rotation, a checkpoint write or rename, or nowhere), cuts
//! the power on both disks (unsynced writes lost or torn), and reopens. After every
//! recovery: every acknowledged batch is in the log in order and its effects are there
//! (transfers, failure codes, accounts, orders), the ledger and inventory invariants hold,
//! the state equals the one observed right after the last surviving record was applied,
//! and it equals a fresh replay of the recovered log from the start. Several cuts per seed.
//!
//! The single-submitter simulation is deterministic: `SURGE_SEED=<n>` replays one seed bit
//! for bit (a test checks that), except where the checkpoints' disk stops: the checkpoint
//! thread's failure halts the log while the next submission may be on its way to it, so
//! whether that one unanswered submission was logged is a race (both outcomes are
//! checked as correct; seen when a change of draws sent seed 101 there).
//! `SURGE_POWER_CUTS=<n>` soaks with at least n power cuts over new seeds drawn from the
//! time (printed). The two-submitter variant exercises
//! groups of several records per sync; its thread interleaving is not replayable.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::{account, action, linked, order, pending, post, sku, transfer, void};
use surge_core::{
    compact_form, AccountId, BatchBuf, OrderId, OrderLookup, ResultCode, StateMachine, TransferId,
    TransferLookup,
};
use surge_engine::{EngineError, Node, NodeConfig, NodeStorage, RecoveryReport};
use surge_wal::storage::split_mix;
use surge_wal::{Clock, LogConfig, LogRetention, ManualClock, Record, SimStorage, Storage};

/// Seeds of a plain `cargo test` run (each with up to `CYCLES_MAX` power cuts).
const SEEDS_DEFAULT: u64 = 300;
/// Seeds of the two-submitter variant.
const SEEDS_CONCURRENT: u64 = 100;
/// Power cuts per seed, at most.
const CYCLES_MAX: u64 = 3;
/// Log time never reaches the clock's fixed reading plus a timeout, so the pulse thread
/// stays idle and the log is a function of the seed alone.
const CLOCK_NS: u64 = 1_000_000_000;
const BANK: u128 = 1;

// ------------------------------------------------------------------------------------
// Storage tracing: which operation the machine stopped in, and segment rotations.

#[derive(Clone, Debug, Default)]
struct TraceState {
    creates: u64,
    /// The first failing mutating operation: (operation, file).
    stopped_in: Option<(&'static str, String)>,
}

/// A `SimStorage` handle that notes its mutating operations.
#[derive(Clone, Default)]
struct Traced {
    inner: SimStorage,
    trace: Arc<Mutex<TraceState>>,
}

impl Traced {
    fn note<T>(&self, operation: &'static str, name: &str, result: &std::io::Result<T>) {
        let mut trace = self.trace.lock().expect("trace lock");
        if result.is_ok() && operation == "create" {
            trace.creates += 1;
        }
        if result.is_err() && trace.stopped_in.is_none() {
            trace.stopped_in = Some((operation, name.to_string()));
        }
    }

    fn take(&self) -> TraceState {
        std::mem::take(&mut *self.trace.lock().expect("trace lock"))
    }
}

impl Storage for Traced {
    fn list(&mut self) -> std::io::Result<Vec<String>> {
        self.inner.list()
    }
    fn list_directory(&mut self, name: &str) -> std::io::Result<Vec<String>> {
        self.inner.list_directory(name)
    }
    fn create_directory(&mut self, name: &str) -> std::io::Result<()> {
        let result = self.inner.create_directory(name);
        self.note("create_directory", name, &result);
        result
    }
    fn try_clone(&self) -> std::io::Result<Box<dyn Storage>> {
        Ok(Box::new(self.clone()))
    }
    fn create(&mut self, name: &str) -> std::io::Result<()> {
        let result = self.inner.create(name);
        self.note("create", name, &result);
        result
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let result = self.inner.write_at(name, offset, bytes);
        self.note("write", name, &result);
        result
    }
    fn sync_data(&mut self, name: &str) -> std::io::Result<()> {
        let result = self.inner.sync_data(name);
        self.note("sync", name, &result);
        result
    }
    fn read_at(&mut self, name: &str, offset: u64, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read_at(name, offset, buffer)
    }
    fn read_all(&mut self, name: &str) -> std::io::Result<Vec<u8>> {
        self.inner.read_all(name)
    }
    fn len(&mut self, name: &str) -> std::io::Result<u64> {
        self.inner.len(name)
    }
    fn set_len(&mut self, name: &str, len: u64) -> std::io::Result<()> {
        let result = self.inner.set_len(name, len);
        self.note("set_len", name, &result);
        result
    }
    fn rename(&mut self, from: &str, to: &str) -> std::io::Result<()> {
        let result = self.inner.rename(from, to);
        self.note("rename", from, &result);
        result
    }
    fn remove(&mut self, name: &str) -> std::io::Result<()> {
        let result = self.inner.remove(name);
        self.note("remove", name, &result);
        result
    }
    fn sync_directory(&mut self) -> std::io::Result<()> {
        let result = self.inner.sync_directory();
        self.note("sync_directory", "", &result);
        result
    }
}

#[derive(Clone, Default)]
struct Machine {
    log: Traced,
    checkpoints: Traced,
}

impl Machine {
    fn try_open(&self, config: &NodeConfig) -> Result<(Node, RecoveryReport), EngineError> {
        let clock: Arc<dyn Clock + Sync> = Arc::new(ManualClock::new(CLOCK_NS));
        let storage = NodeStorage {
            log: Box::new(self.log.clone()),
            checkpoints: Box::new(self.checkpoints.clone()),
        };
        Node::open(config.clone(), storage, clock)
    }

    fn open(&self, config: &NodeConfig) -> (Node, RecoveryReport) {
        match self.try_open(config) {
            Ok(opened) => opened,
            Err(error) => panic!("the node does not open after a power cut: {error}"),
        }
    }

    /// Stops both disks, cuts the power on both, and forgets the traces.
    fn power_cut(&self, rng: &mut u64, coverage: &mut Coverage) {
        self.log.inner.crash_after_operations(0);
        self.checkpoints.inner.crash_after_operations(0);
        self.log.inner.power_cut(rng);
        self.checkpoints.inner.power_cut(rng);
        coverage.power_cuts += 1;
    }

    /// The machine stops again while the node recovers (cutting a torn tail back, growing
    /// a segment back, or just after), and the power is cut once more.
    fn stop_during_recovery(&self, rng: &mut u64, config: &NodeConfig, coverage: &mut Coverage) {
        self.log.inner.crash_after_operations(split_mix(rng) % 3);
        match self.try_open(config) {
            Ok((node, _)) => node.shutdown(),
            Err(_) => coverage.recoveries_stopped += 1,
        }
        self.log.take();
        self.checkpoints.take();
        self.power_cut(rng, coverage);
    }

    /// A digest of every file on both disks, as a read sees it.
    fn digest(&self) -> u64 {
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for disk in [&self.log.inner, &self.checkpoints.inner] {
            let mut handle = disk.clone();
            let archived = handle.list_directory("archive").expect("list");
            let archived = archived.iter().map(|name| format!("archive/{name}"));
            for name in handle.list().expect("list").into_iter().chain(archived) {
                let bytes = disk.contents(&name).expect("contents");
                for byte in name.bytes().chain(bytes) {
                    digest = (digest ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        digest
    }
}

// ------------------------------------------------------------------------------------
// The workload.

/// What the workload knows from acknowledged answers, to aim later commands.
#[derive(Default)]
struct Known {
    id_next: u128,
    accounts: Vec<u128>,
    wallets: Vec<u128>,
    skus: Vec<u64>,
    orders: Vec<u128>,
    pendings: Vec<u128>,
}

struct Workload {
    rng: u64,
    known: Known,
}

fn pick<T: Copy>(rng: &mut u64, items: &[T]) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        Some(items[(split_mix(rng) % items.len() as u64) as usize])
    }
}

impl Workload {
    fn new(rng: u64, id_base: u128) -> Workload {
        Workload {
            rng,
            known: Known {
                id_next: id_base,
                ..Known::default()
            },
        }
    }

    fn below(&mut self, bound: u64) -> u64 {
        split_mix(&mut self.rng) % bound
    }

    fn id(&mut self) -> u128 {
        self.known.id_next += 1;
        self.known.id_next
    }

    /// An account id: usually a known one, sometimes one nobody created.
    fn some_account(&mut self) -> u128 {
        if self.below(20) == 0 {
            return 999_999;
        }
        let accounts = self.known.accounts.clone();
        pick(&mut self.rng, &accounts).unwrap_or(BANK)
    }

    fn some_wallet(&mut self) -> u128 {
        let wallets = self.known.wallets.clone();
        pick(&mut self.rng, &wallets).unwrap_or_else(|| self.some_account())
    }

    fn amount(&mut self) -> u64 {
        let bound = if self.below(4) == 0 { 5_000 } else { 200 };
        1 + self.below(bound)
    }

    /// A pending hold's timeout in ns of log time: never, soon, or later.
    fn timeout(&mut self) -> u64 {
        let choices = [0, 1 + self.below(300), 1 + self.below(5_000)];
        choices[self.below(3) as usize]
    }

    fn next_batch(&mut self) -> BatchBuf {
        if !self.known.accounts.contains(&BANK) {
            return BatchBuf::CreateAccounts(vec![account(BANK, false)]);
        }
        match self.below(11) {
            0 | 1 => {
                let count = 1 + self.below(4);
                let accounts = (0..count)
                    .map(|_| {
                        if self.below(8) == 0 {
                            let again = self.some_account().max(BANK);
                            return account(again, false); // Exists, or a mismatch.
                        }
                        let constrained = self.below(2) == 0;
                        account(self.id(), constrained)
                    })
                    .collect();
                BatchBuf::CreateAccounts(accounts)
            }
            2 => {
                let count = 1 + self.below(4);
                let funding = (0..count)
                    .map(|_| {
                        let to = self.some_wallet();
                        let amount = 100 + self.below(10_000);
                        transfer(self.id(), BANK, to, amount)
                    })
                    .collect();
                BatchBuf::CreateTransfers(funding)
            }
            3 | 4 => {
                // Now and then a large batch, so a single record fills much of a segment.
                let count = if self.below(8) == 0 {
                    20 + self.below(40)
                } else {
                    1 + self.below(12)
                };
                let transfers = (0..count).map(|_| self.random_transfer()).collect();
                BatchBuf::CreateTransfers(transfers)
            }
            5 => {
                // A linked chain, closed, with a fair chance one member fails.
                let count = 2 + self.below(3);
                let mut chain: Vec<_> = (0..count)
                    .map(|_| {
                        let (from, to) = (self.some_wallet(), self.some_account());
                        let amount = self.amount();
                        linked(transfer(self.id(), from, to, amount))
                    })
                    .collect();
                let last = chain.last_mut().expect("a chain");
                last.flags &= !surge_core::transfer_flags::LINKED;
                BatchBuf::CreateTransfers(chain)
            }
            6 => {
                let count = 1 + self.below(3);
                let skus = (0..count)
                    .map(|_| {
                        let id = u64::try_from(self.id()).expect("small ids");
                        let stocked = 1 + self.below(20);
                        let limit = self.below(4) as u32;
                        sku(id, stocked, limit)
                    })
                    .collect();
                BatchBuf::CreateSkus(skus)
            }
            7 | 8 => {
                let count = 1 + self.below(6);
                let orders = (0..count).map(|_| self.random_order()).collect();
                BatchBuf::PlaceOrders(orders)
            }
            9 => {
                let count = 1 + self.below(4);
                let known = self.known.orders.clone();
                let actions = (0..count)
                    .map(|_| {
                        let order_id = pick(&mut self.rng, &known).unwrap_or(424_242);
                        action(order_id, self.id())
                    })
                    .collect();
                if self.below(4) == 0 {
                    BatchBuf::CancelOrders(actions)
                } else {
                    BatchBuf::PayOrders(actions)
                }
            }
            _ => {
                let count = 1 + self.below(4);
                let known = self.known.pendings.clone();
                let resolutions = (0..count)
                    .map(|_| {
                        let pending_id = pick(&mut self.rng, &known).unwrap_or(434_343);
                        match self.below(3) {
                            0 => void(self.id(), pending_id),
                            1 => post(self.id(), pending_id, 0),
                            _ => {
                                let amount = self.amount();
                                post(self.id(), pending_id, amount)
                            }
                        }
                    })
                    .collect();
                BatchBuf::CreateTransfers(resolutions)
            }
        }
    }

    fn random_transfer(&mut self) -> surge_core::Transfer {
        let from = if self.below(2) == 0 {
            self.some_wallet()
        } else {
            self.some_account()
        };
        let to = self.some_account();
        let amount = self.amount();
        let id = self.id();
        if self.below(3) == 0 {
            let timeout = self.timeout();
            pending(id, from, to, amount, timeout)
        } else {
            transfer(id, from, to, amount)
        }
    }

    fn random_order(&mut self) -> surge_core::Order {
        let skus = self.known.skus.clone();
        let line_count = 1 + self.below(3);
        let mut lines: Vec<(u64, u32)> = Vec::new();
        for _ in 0..line_count {
            let sku_id = pick(&mut self.rng, &skus).unwrap_or(777_777);
            if lines.iter().all(|(id, _)| *id != sku_id) {
                lines.push((sku_id, 1 + self.below(3) as u32));
            }
        }
        let (buyer, merchant) = (self.some_wallet(), self.some_account());
        let (id, transfer_id) = (self.id(), self.id());
        let amount = self.amount();
        let timeout = 1 + self.below(4_000);
        order(id, buyer, merchant, transfer_id, amount, timeout, &lines)
    }

    /// Learns ids from an acknowledged batch.
    fn learn(&mut self, batch: &BatchBuf, codes: &[ResultCode]) {
        let known = &mut self.known;
        match batch {
            BatchBuf::CreateAccounts(accounts) => {
                for (created, code) in accounts.iter().zip(codes) {
                    let id = created.id.0;
                    // `Exists`: another submitter created the same account first.
                    if code.is_success() && !known.accounts.contains(&id) {
                        known.accounts.push(id);
                        if created.flags != 0 {
                            known.wallets.push(id);
                        }
                    }
                }
            }
            BatchBuf::CreateTransfers(transfers) => {
                for (created, code) in transfers.iter().zip(codes) {
                    let is_pending = created.flags & surge_core::transfer_flags::PENDING != 0;
                    if *code == ResultCode::Ok && is_pending {
                        known.pendings.push(created.id.0);
                    }
                }
            }
            BatchBuf::CreateSkus(skus) => {
                for (created, code) in skus.iter().zip(codes) {
                    if *code == ResultCode::Ok {
                        known.skus.push(created.id.0);
                    }
                }
            }
            BatchBuf::PlaceOrders(orders) => {
                for (placed, code) in orders.iter().zip(codes) {
                    if *code == ResultCode::Ok {
                        known.orders.push(placed.id.0);
                    }
                }
            }
            _ => {}
        }
    }
}

// ------------------------------------------------------------------------------------
// What acknowledged answers promise.

/// A transfer lookup without its pending status (which later commands may change).
fn settled(lookup: TransferLookup) -> TransferLookup {
    match lookup {
        TransferLookup::Committed { transfer, .. } => TransferLookup::Committed {
            transfer,
            pending_status: None,
        },
        failed => failed,
    }
}

/// An order lookup without what later commands or expiry may change.
fn placed(lookup: OrderLookup) -> OrderLookup {
    match lookup {
        OrderLookup::Placed(mut view) => {
            view.order.status = 0;
            view.payment_transfer_id = TransferId(0);
            view.closing_transfer_id = TransferId(0);
            OrderLookup::Placed(view)
        }
        failed => failed,
    }
}

/// Effects of acknowledged batches, as observed right after their acknowledgement.
#[derive(Default)]
struct Promises {
    transfers: BTreeMap<u128, TransferLookup>,
    accounts: BTreeMap<u128, surge_core::Account>,
    orders: BTreeMap<u128, OrderLookup>,
    /// Payments and cancels acknowledged Ok: (order, transfer).
    actions: BTreeSet<(u128, u128)>,
}

impl Promises {
    /// Notes what an acknowledged batch did, reading the state right after it.
    fn note(&mut self, state: &StateMachine, batch: &BatchBuf, codes: &[ResultCode]) {
        let mut transfer_ids = Vec::new();
        match batch {
            BatchBuf::CreateAccounts(accounts) => {
                for (created, code) in accounts.iter().zip(codes) {
                    if *code == ResultCode::Ok {
                        let found = state.account(created.id).expect("an Ok account exists");
                        self.accounts.insert(created.id.0, found);
                    }
                }
            }
            BatchBuf::CreateTransfers(transfers) => {
                for (created, code) in transfers.iter().zip(codes) {
                    let lookup = state.transfer(created.id);
                    if *code == ResultCode::Ok {
                        assert!(
                            matches!(lookup, Some(TransferLookup::Committed { .. })),
                            "transfer {} answered Ok but is {lookup:?}",
                            created.id
                        );
                    }
                    transfer_ids.push(created.id);
                }
            }
            BatchBuf::PlaceOrders(orders) => {
                for (placed_order, code) in orders.iter().zip(codes) {
                    if let Some(lookup) = state.order(placed_order.id) {
                        self.orders
                            .entry(placed_order.id.0)
                            .or_insert(placed(lookup));
                    }
                    if *code == ResultCode::Ok {
                        assert!(self.orders.contains_key(&placed_order.id.0));
                    }
                    transfer_ids.push(placed_order.transfer_id);
                }
            }
            BatchBuf::PayOrders(actions) | BatchBuf::CancelOrders(actions) => {
                for (done, code) in actions.iter().zip(codes) {
                    if *code == ResultCode::Ok {
                        self.actions.insert((done.order_id.0, done.transfer_id.0));
                    }
                    transfer_ids.push(done.transfer_id);
                }
            }
            _ => {}
        }
        for id in transfer_ids {
            if let Some(lookup) = state.transfer(id) {
                self.transfers.entry(id.0).or_insert(settled(lookup));
            }
        }
    }

    /// Checks every promise against the recovered state.
    fn check(&self, seed: u64, state: &StateMachine) {
        for (id, promised) in &self.transfers {
            let found = state.transfer(TransferId(*id)).map(settled);
            assert_eq!(found, Some(*promised), "seed {seed}: transfer {id}");
        }
        for (id, promised) in &self.accounts {
            let found = state
                .account(AccountId(*id))
                .expect("an acknowledged account");
            assert_eq!(
                (found.ledger, found.code, found.flags, found.timestamp),
                (
                    promised.ledger,
                    promised.code,
                    promised.flags,
                    promised.timestamp
                ),
                "seed {seed}: account {id}"
            );
        }
        for (id, promised) in &self.orders {
            let found = state.order(OrderId(*id)).map(placed);
            assert_eq!(found, Some(*promised), "seed {seed}: order {id}");
        }
        for (order_id, transfer_id) in &self.actions {
            let Some(OrderLookup::Placed(view)) = state.order(OrderId(*order_id)) else {
                panic!("seed {seed}: order {order_id} of an acknowledged action is gone");
            };
            let closing = [view.payment_transfer_id.0, view.closing_transfer_id.0];
            assert!(
                closing.contains(transfer_id),
                "seed {seed}: action {transfer_id} on order {order_id} is not recorded: {view:?}"
            );
        }
    }
}

// ------------------------------------------------------------------------------------
// The simulation.

/// What the runs covered, so a change that stops the faults from happening fails loudly.
#[derive(Debug, Default)]
struct Coverage {
    power_cuts: u64,
    acknowledged_batches: u64,
    /// (disk, operation) the machine stopped in.
    stopped_in: BTreeMap<String, u64>,
    cuts_after_rotation: u64,
    torn_tails: u64,
    recovered_from_checkpoint: u64,
    damaged_checkpoints_skipped: u64,
    unacknowledged_records_survived: u64,
    unacknowledged_records_lost: u64,
    apply_stopped_by_checkpoint_failure: u64,
    recoveries_stopped: u64,
    process_restarts: u64,
    /// Records that shared a sync with an earlier record of their group.
    records_sharing_a_sync: u64,
    /// Recoveries of a log whose older segments were archived.
    recovered_with_archived_segments: u64,
    /// Apply stages stopped because archiving old segments failed (the log disk stopped).
    apply_stopped_by_retention_failure: u64,
}

fn seed_config(rng: &mut u64) -> NodeConfig {
    // Half the seeds archive old segments after each checkpoint; chosen from the state
    // without a draw, so every other choice of a seed stays what it was.
    let log_retention = if *rng % 2 == 0 {
        LogRetention::Archive
    } else {
        LogRetention::Keep
    };
    // A third of the seeds checkpoint every interval, the others skip checkpoints until the
    // log since the last one is as long as it, or four times as long (also without a draw).
    let checkpoint_log_percent = [0, 100, 400][(*rng / 2 % 3) as usize];
    let segment_size_bytes = [8 * 1024, 16 * 1024, 64 * 1024][(split_mix(rng) % 3) as usize];
    NodeConfig {
        log_retention,
        log: LogConfig {
            segment_size_bytes,
            ..LogConfig::default()
        },
        checkpoint_interval_records: split_mix(rng) % 5,
        checkpoints_kept: 1 + (split_mix(rng) % 3) as usize,
        checkpoint_log_percent,
        ..NodeConfig::default()
    }
}

/// Prints the seed if the test panics while it runs.
struct SeedGuard(&'static str, u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed at seed {}; replay with SURGE_SEED={} cargo test -p surge-engine \
                 --test power_cut -- --include-ignored",
                self.0, self.1, self.1
            );
        }
    }
}

/// The log as the test knows it: every submitted batch in order; acknowledged ones first.
struct Submitted {
    operation: u8,
    body: Vec<u8>,
    /// The state hash right after this record was applied, if it was acknowledged.
    hash_after: Option<u128>,
}

/// Arms the machine's stop at a seeded operation of the log disk, the checkpoint disk,
/// both, or neither (then the power is cut after the workload, between two syncs).
fn arm(rng: &mut u64, machine: &Machine, steps: u64, checkpointing: bool) {
    let log_budget = split_mix(rng) % (2 * steps + 8);
    let checkpoint_budget = split_mix(rng) % (steps + 4);
    match split_mix(rng) % 8 {
        0..=3 => machine.log.inner.crash_after_operations(log_budget),
        4 | 5 if checkpointing => machine
            .checkpoints
            .inner
            .crash_after_operations(checkpoint_budget),
        4 | 5 => machine.log.inner.crash_after_operations(log_budget),
        6 => {
            machine.log.inner.crash_after_operations(log_budget);
            machine
                .checkpoints
                .inner
                .crash_after_operations(checkpoint_budget);
        }
        _ => {}
    }
}

fn note_stop(coverage: &mut Coverage, disk: &str, trace: &TraceState) {
    if let Some((operation, file)) = &trace.stopped_in {
        let what = if file.ends_with(".tmp") {
            format!("{disk} {operation} (temporary)")
        } else {
            format!("{disk} {operation}")
        };
        *coverage.stopped_in.entry(what).or_default() += 1;
    }
}

/// One seed: `cycles` rounds of workload, stop, power cut, recovery and checks. Returns a
/// digest of the disks and the final state, for the replay check. With `process_restarts`,
/// some rounds end with only the process dying (the disks keep unsynced writes).
fn run_seed(seed: u64, coverage: &mut Coverage, process_restarts: bool) -> u64 {
    let _guard = SeedGuard("power_cut", seed);
    let mut rng = seed;
    let config = seed_config(&mut rng);
    let checkpointing = config.checkpoint_interval_records > 0;
    let cycles = 1 + split_mix(&mut rng) % CYCLES_MAX;
    let machine = Machine::default();
    let mut workload = Workload::new(split_mix(&mut rng), 1_000);
    let mut promises = Promises::default();
    let mut submitted: Vec<Submitted> = Vec::new();
    let mut creates_total = 0;
    let (mut node, _) = machine.open(&config);
    let mut final_hash = 0;
    for _ in 0..cycles {
        let steps = 10 + split_mix(&mut rng) % 50;
        arm(&mut rng, &machine, steps, checkpointing);
        for _ in 0..steps {
            let batch = workload.next_batch();
            // As the node logs it (one-line orders compact).
            let (operation, body) =
                compact_form(batch.as_batch().operation(), batch.as_batch().body().into());
            submitted.push(Submitted {
                operation: operation as u8,
                body,
                hash_after: None,
            });
            let answer = node
                .submit(batch.as_batch())
                .and_then(|pending| pending.wait());
            match answer {
                Ok(codes) => {
                    assert_eq!(codes.len(), batch.as_batch().len(), "seed {seed}");
                    workload.learn(&batch, &codes);
                    let hash = node.read(|state| {
                        promises.note(state, &batch, &codes);
                        state.state_hash()
                    });
                    submitted.last_mut().expect("just pushed").hash_after = Some(hash);
                    coverage.acknowledged_batches += 1;
                }
                Err(EngineError::Stopped(reason)) if reason.contains("log retention") => {
                    // The log disk stopped while old segments were being archived.
                    coverage.apply_stopped_by_retention_failure += 1;
                    break;
                }
                Err(EngineError::Stopped(reason)) => {
                    assert!(reason.contains("checkpoint"), "seed {seed}: {reason}");
                    coverage.apply_stopped_by_checkpoint_failure += 1;
                    break;
                }
                Err(EngineError::Log(_) | EngineError::Submit(_)) => break,
                Err(error) => panic!("seed {seed}: unexpected error {error}"),
            }
        }
        // The machine stops: nothing more reaches the log; the apply thread finishes what
        // is durable (its checkpoint disk may stop on its own budget); then the power goes.
        machine.log.inner.crash_after_operations(0);
        node.shutdown();
        machine.checkpoints.inner.crash_after_operations(0);
        let log_trace = machine.log.take();
        let checkpoint_trace = machine.checkpoints.take();
        creates_total += log_trace.creates;
        note_stop(coverage, "log", &log_trace);
        note_stop(coverage, "checkpoint", &checkpoint_trace);
        if creates_total > 1 {
            coverage.cuts_after_rotation += 1;
        }
        if process_restarts && split_mix(&mut rng) % 2 == 0 {
            // Only the process died (`kill -9`, or fail-stop and a restart): the machine
            // keeps everything written, synced or not.
            machine.log.inner.crash_after_operations(u64::MAX);
            machine.checkpoints.inner.crash_after_operations(u64::MAX);
            coverage.process_restarts += 1;
        } else {
            machine.power_cut(&mut rng, coverage);
            if split_mix(&mut rng) % 2 == 0 {
                machine.stop_during_recovery(&mut rng, &config, coverage);
            }
        }

        let (recovered, report) = machine.open(&config);
        note_report(coverage, &report);
        let recovered_hash = recovered.read(|state| {
            promises.check(seed, state);
            common::check_invariants(state).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
            state.state_hash()
        });
        recovered.shutdown();
        let records = common::read_log(&machine.log.inner, config.log);
        if !machine
            .log
            .inner
            .clone()
            .list_directory("archive")
            .expect("list")
            .is_empty()
        {
            coverage.recovered_with_archived_segments += 1;
        }
        check_log(seed, &records, &mut submitted, recovered_hash, coverage);
        let replayed = common::replay(config.state, &records).state_hash();
        assert_eq!(
            replayed, recovered_hash,
            "seed {seed}: recovery differs from replay"
        );
        // The next cycle starts from a clean reopen of the recovered disks.
        machine.log.take();
        machine.checkpoints.take();
        let (reopened, report) = machine.open(&config);
        assert!(
            report.warnings.is_empty(),
            "seed {seed}: {:?}",
            report.warnings
        );
        assert_eq!(
            reopened.read(StateMachine::state_hash),
            recovered_hash,
            "seed {seed}"
        );
        node = reopened;
        final_hash = recovered_hash;
    }
    node.shutdown();
    machine.digest() ^ (final_hash as u64) ^ ((final_hash >> 64) as u64)
}

fn note_report(coverage: &mut Coverage, report: &RecoveryReport) {
    if report.checkpoint_record_index.is_some() {
        coverage.recovered_from_checkpoint += 1;
    }
    for warning in &report.warnings {
        if warning.contains("torn tail") {
            coverage.torn_tails += 1;
        } else if warning.starts_with("skipped") {
            coverage.damaged_checkpoints_skipped += 1;
        } else {
            panic!("unexpected recovery warning: {warning}");
        }
    }
}

/// The recovered log is what was submitted, in order: every acknowledged batch, then at
/// most the one batch whose answer was an error. The state equals the one observed after
/// the last surviving record, if that record was acknowledged.
fn check_log(
    seed: u64,
    records: &[Record],
    submitted: &mut Vec<Submitted>,
    recovered_hash: u128,
    coverage: &mut Coverage,
) {
    let acknowledged = submitted.iter().filter(|s| s.hash_after.is_some()).count();
    assert!(
        submitted[..acknowledged]
            .iter()
            .all(|s| s.hash_after.is_some()),
        "seed {seed}: only the last submission of a cycle may go unanswered"
    );
    assert!(
        records.len() >= acknowledged,
        "seed {seed}: {} acknowledged batches, {} records recovered",
        acknowledged,
        records.len()
    );
    assert!(
        records.len() <= submitted.len(),
        "seed {seed}: records from nowhere"
    );
    for (index, (record, batch)) in records.iter().zip(submitted.iter()).enumerate() {
        assert_eq!(record.header.record_index, index as u64, "seed {seed}");
        assert_eq!(
            record.header.operation as u8, batch.operation,
            "seed {seed}: {index}"
        );
        assert_eq!(record.body, batch.body, "seed {seed}: record {index}");
    }
    match records.last().map(|_| &submitted[records.len() - 1]) {
        Some(Submitted {
            hash_after: Some(hash),
            ..
        }) => assert_eq!(*hash, recovered_hash, "seed {seed}: state after recovery"),
        Some(_) => coverage.unacknowledged_records_survived += 1,
        None => {}
    }
    if submitted.len() > records.len() {
        coverage.unacknowledged_records_lost += 1;
    }
    // Whatever survived is durable now; the rest is gone for good.
    submitted.truncate(records.len());
    if let Some(last) = submitted.last_mut() {
        last.hash_after = Some(recovered_hash);
    }
}

fn seeds_from_env(seeds_default: u64) -> (Vec<u64>, Option<u64>) {
    if let Ok(seed) = std::env::var("SURGE_SEED") {
        let seed = seed.parse().expect("SURGE_SEED is a u64");
        return (vec![seed], None);
    }
    if let Ok(cuts) = std::env::var("SURGE_POWER_CUTS") {
        let cuts: u64 = cuts.parse().expect("SURGE_POWER_CUTS is a count");
        let base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        eprintln!("power_cut soak: {cuts} power cuts from seed {base} upward");
        return ((base..base.saturating_add(cuts)).collect(), Some(cuts));
    }
    ((0..seeds_default).collect(), None)
}

#[test]
fn every_acknowledged_batch_survives_power_cuts() {
    let (seeds, cuts_wanted) = seeds_from_env(SEEDS_DEFAULT);
    let single = seeds.len() == 1;
    let mut coverage = Coverage::default();
    for seed in seeds {
        if cuts_wanted.is_some_and(|wanted| coverage.power_cuts >= wanted) {
            break;
        }
        run_seed(seed, &mut coverage, false);
    }
    eprintln!("power_cut coverage: {coverage:#?}");
    if single || cuts_wanted.is_some() {
        return;
    }
    let stopped = |what: &str| coverage.stopped_in.get(what).copied().unwrap_or(0);
    assert!(coverage.power_cuts >= SEEDS_DEFAULT, "{coverage:?}");
    assert!(coverage.acknowledged_batches > 1_000, "{coverage:?}");
    assert!(stopped("log write") > 0, "{coverage:?}");
    assert!(stopped("log sync") > 0, "{coverage:?}");
    assert!(
        stopped("log create") + stopped("log set_len") > 0,
        "{coverage:?}"
    );
    assert!(stopped("checkpoint write (temporary)") > 0, "{coverage:?}");
    assert!(stopped("checkpoint rename (temporary)") > 0, "{coverage:?}");
    assert!(stopped("checkpoint sync_directory") > 0, "{coverage:?}");
    assert!(coverage.cuts_after_rotation > 10, "{coverage:?}");
    assert!(coverage.torn_tails > 0, "{coverage:?}");
    assert!(coverage.recovered_from_checkpoint > 10, "{coverage:?}");
    assert!(
        coverage.recovered_with_archived_segments > 10,
        "{coverage:?}"
    );
    assert!(coverage.unacknowledged_records_survived > 0, "{coverage:?}");
    assert!(coverage.unacknowledged_records_lost > 0, "{coverage:?}");
    assert!(
        coverage.apply_stopped_by_checkpoint_failure > 0,
        "{coverage:?}"
    );
}

#[test]
fn a_seed_replays_bit_identically() {
    for seed in [3, 17, 101] {
        let mut coverage = Coverage::default();
        let first = run_seed(seed, &mut coverage, false);
        let second = run_seed(seed, &mut Coverage::default(), false);
        assert_eq!(first, second, "seed {seed} did not replay bit for bit");
        // Not a seed whose checkpoints' disk stops: that one is a race (module docs). A
        // change of draws that sends one of these seeds there fails here, every time.
        assert!(
            !coverage
                .stopped_in
                .keys()
                .any(|what| what.starts_with("checkpoint")),
            "seed {seed} stops the checkpoints' disk: pick another seed ({coverage:?})"
        );
    }
}

// ------------------------------------------------------------------------------------
// Two submitters: groups of several records per sync, acknowledged together.

/// One submitter's workload, promises and submissions (with whether each was answered).
struct Submitter {
    workload: Workload,
    promises: Promises,
    submitted: Vec<((u8, Vec<u8>), bool)>,
}

impl Submitter {
    fn run(&mut self, seed: u64, node: &Node, steps: u64) {
        for _ in 0..steps {
            let batch = self.workload.next_batch();
            let (operation, body) =
                compact_form(batch.as_batch().operation(), batch.as_batch().body().into());
            let key = (operation as u8, body);
            match node
                .submit(batch.as_batch())
                .and_then(|pending| pending.wait())
            {
                Ok(codes) => {
                    assert_eq!(codes.len(), batch.as_batch().len(), "seed {seed}");
                    self.workload.learn(&batch, &codes);
                    node.read(|state| self.promises.note(state, &batch, &codes));
                    self.submitted.push((key, true));
                }
                // Another submitter filled the queue: that batch was never logged.
                Err(EngineError::Submit(surge_wal::SubmitError::Busy)) => {}
                Err(EngineError::Stopped(_) | EngineError::Log(_) | EngineError::Submit(_)) => {
                    self.submitted.push((key, false));
                    return;
                }
                Err(error) => panic!("seed {seed}: unexpected error {error}"),
            }
        }
    }
}

fn run_concurrent_seed(seed: u64, coverage: &mut Coverage) {
    let _guard = SeedGuard("power_cut (two submitters, not replayable)", seed);
    let mut rng = seed ^ 0x5eed_0000_0000_0000;
    let config = seed_config(&mut rng);
    let checkpointing = config.checkpoint_interval_records > 0;
    let machine = Machine::default();
    let mut submitters: Vec<Submitter> = (0..2u128)
        .map(|index| Submitter {
            workload: Workload::new(split_mix(&mut rng), 1_000 + index * 1_000_000_000),
            promises: Promises::default(),
            submitted: Vec::new(),
        })
        .collect();
    let mut durable: Vec<Record> = Vec::new();
    let (mut node, _) = machine.open(&config);
    for _ in 0..1 + split_mix(&mut rng) % CYCLES_MAX {
        let steps = 10 + split_mix(&mut rng) % 50;
        arm(&mut rng, &machine, steps, checkpointing);
        std::thread::scope(|scope| {
            for submitter in submitters.iter_mut() {
                let node = &node;
                scope.spawn(move || submitter.run(seed, node, steps));
            }
        });
        machine.log.inner.crash_after_operations(0);
        let stats = node.commit_stats();
        coverage.records_sharing_a_sync += stats.records - stats.syncs;
        node.shutdown();
        machine.power_cut(&mut rng, coverage);
        let (recovered, report) = machine.open(&config);
        note_report(coverage, &report);
        let recovered_hash = recovered.read(|state| {
            for submitter in &submitters {
                submitter.promises.check(seed, state);
            }
            common::check_invariants(state).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
            state.state_hash()
        });
        recovered.shutdown();
        let records = common::read_log(&machine.log.inner, config.log);
        // What was durable stays, in place; every acknowledged batch is there; every other
        // record is one that was submitted.
        assert!(
            records.len() >= durable.len(),
            "seed {seed}: durable records lost"
        );
        assert_eq!(records[..durable.len()], durable[..], "seed {seed}");
        let fresh: BTreeSet<(u8, Vec<u8>)> = records[durable.len()..]
            .iter()
            .map(|record| (record.header.operation as u8, record.body.clone()))
            .collect();
        let mut sent = BTreeSet::new();
        for submitter in submitters.iter_mut() {
            for (key, answered) in submitter.submitted.drain(..) {
                assert!(
                    !answered || fresh.contains(&key),
                    "seed {seed}: lost {key:?}"
                );
                coverage.acknowledged_batches += u64::from(answered);
                sent.insert(key);
            }
        }
        assert!(fresh.is_subset(&sent), "seed {seed}: records from nowhere");
        let replayed = common::replay(config.state, &records).state_hash();
        assert_eq!(
            replayed, recovered_hash,
            "seed {seed}: recovery differs from replay"
        );
        durable = records;
        node = machine.open(&config).0;
    }
    node.shutdown();
}

#[test]
fn acknowledged_groups_of_two_submitters_survive_power_cuts() {
    let (seeds, cuts_wanted) = seeds_from_env(SEEDS_CONCURRENT);
    let replaying = seeds.len() == 1 || cuts_wanted.is_some();
    let mut coverage = Coverage::default();
    for seed in seeds {
        if cuts_wanted.is_some_and(|wanted| coverage.power_cuts >= wanted) {
            break;
        }
        run_concurrent_seed(seed, &mut coverage);
    }
    eprintln!("power_cut (two submitters) coverage: {coverage:#?}");
    if replaying {
        return;
    }
    assert!(coverage.acknowledged_batches > 500, "{coverage:?}");
    assert!(coverage.records_sharing_a_sync > 0, "{coverage:?}");
}

#[test]
fn every_acknowledged_batch_survives_process_restarts_and_power_cuts() {
    let (seeds, _) = seeds_from_env(SEEDS_DEFAULT);
    let mut coverage = Coverage::default();
    for seed in seeds {
        run_seed(seed, &mut coverage, true);
    }
    eprintln!("power_cut (with process restarts) coverage: {coverage:#?}");
    assert!(coverage.process_restarts > 0, "{coverage:?}");
}
