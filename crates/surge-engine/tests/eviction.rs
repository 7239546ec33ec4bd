//! Bounded memory, end to end: a node that evicts finished transfers at every checkpoint
//! (archiving them in the sled history index first) answers a long stream full of reused
//! ids, retries with changed fields, posts and voids of old holds and order actions on old
//! ids exactly as a plain replay of its log with everything in memory does: every result
//! code of every batch, the state hash, and every transfer lookup. Restarts in the middle
//! recover from checkpoints that no longer hold the evicted transfers.
//!
//! Seeded: `SURGE_SEED=<n>` replays one stream; a failure prints its seed.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{account, action, order, pending, post, read_log, sku, transfer, void, SimDisks};
use surge_core::{
    decode, BatchBuf, OrderAction, ResultCode, StateMachine, Transfer, TransferId, TransferLookup,
};
use surge_engine::{EngineError, Node, NodeConfig};
use surge_wal::storage::split_mix;
use surge_wal::{LogConfig, ManualClock};

const ACCOUNTS: u128 = 8;
/// Account 1 is the bank (unconstrained); the others cannot go below zero.
const BANK: u128 = 1;
const SKU: u64 = 5;
const BATCHES: usize = 240;
const SEED_DEFAULT: u64 = 0xE71C_7104;

fn config(history: &Path) -> NodeConfig {
    NodeConfig {
        log: LogConfig {
            segment_size_bytes: 256 * 1024,
            ..LogConfig::default()
        },
        checkpoint_interval_records: 4,
        checkpoint_log_percent: 0,
        history_directory: Some(history.to_path_buf()),
        evict_finished_transfers: true,
        evict_interval_transfers: 16,
        ..NodeConfig::default()
    }
}

struct Stream {
    rng: u64,
    next_id: u128,
    /// Every transfer id used so far, with the command that used it first.
    used: Vec<Transfer>,
    pendings: Vec<u128>,
    orders: Vec<u128>,
}

impl Stream {
    fn below(&mut self, n: u64) -> u64 {
        split_mix(&mut self.rng) % n
    }

    fn fresh_id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    fn wallet(&mut self) -> u128 {
        2 + u128::from(self.below((ACCOUNTS - 1) as u64))
    }

    fn old_id(&mut self) -> Option<Transfer> {
        if self.used.is_empty() {
            return None;
        }
        let index = self.below(self.used.len() as u64) as usize;
        Some(self.used[index])
    }

    fn transfer_command(&mut self) -> Transfer {
        match self.below(10) {
            // A retry of an old command: the same bytes (exists) or changed (mismatch).
            0 | 1 => match self.old_id() {
                Some(old) if self.below(2) == 0 => old,
                Some(old) => Transfer {
                    amount: old.amount + 1,
                    ..old
                },
                None => self.transfer_command(),
            },
            // A hold, sometimes short enough to expire.
            2 | 3 => {
                let id = self.fresh_id();
                let timeout = [0, 1_000, 50_000_000][self.below(3) as usize];
                let debit = self.wallet();
                let hold = pending(id, debit, BANK, 1 + self.below(30), timeout);
                self.pendings.push(id);
                hold
            }
            // Post or void a hold, old or recent (often already resolved or evicted).
            4 | 5 if !self.pendings.is_empty() => {
                let index = self.below(self.pendings.len() as u64) as usize;
                let pending_id = self.pendings[index];
                let id = self.fresh_id();
                if self.below(2) == 0 {
                    post(id, pending_id, 0)
                } else {
                    void(id, pending_id)
                }
            }
            // A payment a wallet may not afford (fails, and the id stays failed).
            _ => {
                let id = self.fresh_id();
                let (debit, credit) = if self.below(4) == 0 {
                    (BANK, self.wallet())
                } else {
                    (self.wallet(), self.wallet())
                };
                let credit = if credit == debit { BANK } else { credit };
                transfer(id, debit, credit, 1 + self.below(60))
            }
        }
    }

    fn batch(&mut self) -> BatchBuf {
        match self.below(12) {
            0 => {
                let id = self.below(40) as u128 + 1_000;
                let transfer_id = match self.old_id() {
                    Some(old) if self.below(3) == 0 => old.id.0,
                    _ => self.fresh_id(),
                };
                self.orders.push(id);
                let timeout = [1_000, 40_000_000][self.below(2) as usize];
                let buyer = self.wallet();
                let placed = order(id, buyer, BANK, transfer_id, 5, timeout, &[(SKU, 1)]);
                BatchBuf::PlaceOrders(vec![placed])
            }
            1 if !self.orders.is_empty() => {
                let index = self.below(self.orders.len() as u64) as usize;
                let order_id = self.orders[index];
                // The action's transfer id: fresh, or reusing an old (maybe evicted) one.
                let transfer_id = match self.old_id() {
                    Some(old) if self.below(2) == 0 => old.id.0,
                    _ => self.fresh_id(),
                };
                let actions: Vec<OrderAction> = vec![action(order_id, transfer_id)];
                match self.below(3) {
                    0 => BatchBuf::PayOrders(actions),
                    1 => BatchBuf::CancelOrders(actions),
                    _ => BatchBuf::RefundOrders(actions),
                }
            }
            _ => {
                let count = 1 + self.below(12) as usize;
                let transfers: Vec<Transfer> =
                    (0..count).map(|_| self.transfer_command()).collect();
                for command in &transfers {
                    if !self.used.iter().any(|used| used.id == command.id) {
                        self.used.push(*command);
                    }
                }
                BatchBuf::CreateTransfers(transfers)
            }
        }
    }
}

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "eviction test failed at seed {0}; replay with SURGE_SEED={0} cargo test -p \
                 surge-engine --test eviction",
                self.0
            );
        }
    }
}

fn submit(node: &Node, batch: &BatchBuf) -> Vec<ResultCode> {
    node.submit(batch.as_batch())
        .expect("submitted")
        .wait()
        .expect("durable and applied")
}

#[test]
fn eviction_answers_every_command_as_a_full_replay_does() {
    let seed = std::env::var("SURGE_SEED")
        .map(|seed| seed.parse().expect("SURGE_SEED is a u64"))
        .unwrap_or(SEED_DEFAULT);
    let _guard = SeedGuard(seed);
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = config(&history);
    let disks = SimDisks::default();
    let clock = ManualClock::new(1_000_000_000);
    let (mut node, _) = disks.open(&config, &clock);

    let accounts: Vec<_> = (1..=ACCOUNTS).map(|id| account(id, id != BANK)).collect();
    let setup = [
        BatchBuf::CreateAccounts(accounts),
        BatchBuf::CreateSkus(vec![sku(SKU, 1_000_000, 0)]),
        BatchBuf::CreateTransfers(
            (2..=ACCOUNTS)
                .map(|id| transfer(10_000 + id, BANK, id, 500))
                .collect(),
        ),
    ];
    let mut submitted: Vec<(BatchBuf, Vec<ResultCode>)> = Vec::new();
    for batch in setup {
        let codes = submit(&node, &batch);
        submitted.push((batch, codes));
    }
    let mut stream = Stream {
        rng: seed,
        next_id: 0,
        used: Vec::new(),
        pendings: Vec::new(),
        orders: Vec::new(),
    };
    let mut evicted_most = 0;
    for index in 0..BATCHES {
        let batch = stream.batch();
        let codes = submit(&node, &batch);
        submitted.push((batch, codes));
        clock.advance_ns(1 + stream.below(3_000));
        evicted_most = evicted_most.max(node.read(|state| state.memory_counts().transfers_evicted));
        if index % 97 == 96 {
            // Restart: recovery loads a checkpoint without the evicted transfers and
            // replays the tail, recalling what it names from the index.
            node.shutdown();
            let (reopened, report) = disks.open(&config, &clock);
            assert!(report.checkpoint_record_index.is_some(), "{report:?}");
            node = reopened;
        }
    }
    assert!(evicted_most > 50, "transfers left memory ({evicted_most})");

    // The same log, replayed with everything in memory.
    let records = read_log(&disks.log, config.log);
    let mut replay = StateMachine::new(surge_core::Config::default());
    let mut replayed: Vec<Vec<ResultCode>> = Vec::new();
    let mut results = Vec::new();
    for record in &records {
        let batch = decode(record.header.operation as u8, &record.body).expect("decodes");
        replay.apply(record.header.timestamp_ns, batch.as_batch(), &mut results);
        if record.header.count > 0 {
            replayed.push(results.clone());
        }
    }
    assert_eq!(
        replayed.len(),
        submitted.len(),
        "one record per submitted batch"
    );
    for (index, ((batch, codes), expected)) in submitted.iter().zip(&replayed).enumerate() {
        assert_eq!(
            codes,
            expected,
            "batch {index} ({:?}) answered differently than a full replay",
            batch.as_batch().operation()
        );
    }
    let reuse = submitted
        .iter()
        .flat_map(|(_, codes)| codes)
        .filter(|code| {
            matches!(
                code,
                ResultCode::Exists
                    | ResultCode::ExistsWithDifferentFields
                    | ResultCode::IdAlreadyFailed
                    | ResultCode::PendingTransferAlreadyPosted
                    | ResultCode::PendingTransferAlreadyVoided
            )
        })
        .count();
    assert!(reuse > 100, "the stream reuses ids ({reuse} answers)");
    assert_eq!(node.read(StateMachine::state_hash), replay.state_hash());

    // Every id answers the same through the node (resident or archived) as in memory.
    let ids: BTreeSet<u128> = (1..=stream.next_id).chain(10_002..=10_008).collect();
    let mut archived_seen = 0;
    for id in ids.into_iter().map(TransferId) {
        let expected = replay.transfer(id);
        if node.read(|state| state.transfer(id)).is_none() && expected.is_some() {
            archived_seen += 1;
        }
        let found: Option<TransferLookup> = node.transfer(id).expect("lookup");
        assert_eq!(found, expected, "transfer {id:?}");
    }
    assert!(
        archived_seen > 0,
        "some lookups were answered from the archive"
    );
    node.shutdown();
}

#[test]
fn a_checkpoint_with_evicted_transfers_needs_its_history_index() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = NodeConfig {
        checkpoint_interval_records: 2,
        evict_interval_transfers: 2,
        ..config(&history)
    };
    let disks = SimDisks::default();
    let clock = ManualClock::new(1_000_000_000);
    let (node, _) = disks.open(&config, &clock);
    submit(
        &node,
        &BatchBuf::CreateAccounts(vec![account(1, false), account(2, false)]),
    );
    // Evictions finish asynchronously (the archiver writes the run): go on until one has,
    // then two more batches, so a checkpoint (every 2 records) is written after it.
    let mut id = 0u128;
    let submit_transfer = |id: u128| {
        submit(
            &node,
            &BatchBuf::CreateTransfers(vec![transfer(id, 1, 2, 1)]),
        )
    };
    while node.read(|state| state.memory_counts().transfers_evicted) == 0 {
        id += 1;
        assert!(id < 10_000, "no eviction after {id} transfers");
        submit_transfer(id);
    }
    submit_transfer(id + 1);
    submit_transfer(id + 2);
    node.shutdown();
    let without = NodeConfig {
        history_directory: None,
        ..config.clone()
    };
    let clock_arc: std::sync::Arc<dyn surge_wal::Clock + Sync> = std::sync::Arc::new(clock);
    let error = Node::open(without, disks.node_storage(), clock_arc)
        .err()
        .expect("refused");
    assert!(
        matches!(error, EngineError::HistoryRequired { evicted } if evicted > 0),
        "{error}"
    );
}
