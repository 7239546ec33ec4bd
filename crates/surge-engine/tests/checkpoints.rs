//! Checkpoints are written by a thread of their own: while one is being written (here, held
//! back on its disk), the node goes on applying and answering commands; the next one due
//! waits for it; a shutdown lets it land, and a restart starts from it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{account, transfer, SimDisks};
use surge_core::{Batch, ResultCode};
use surge_engine::{Node, NodeConfig, NodeStorage};
use surge_wal::checkpoint::{self, file_name};
use surge_wal::{Clock, LogConfig, ManualClock, SimStorage, Storage};

/// The checkpoints' disk, whose writes to a checkpoint being written wait while the gate
/// is shut (at most a minute: a test that fails never hangs).
#[derive(Clone)]
struct Gated {
    inner: SimStorage,
    open: Arc<AtomicBool>,
    /// A write is waiting at the gate.
    waiting: Arc<AtomicBool>,
}

impl Storage for Gated {
    fn list(&mut self) -> std::io::Result<Vec<String>> {
        self.inner.list()
    }
    fn list_directory(&mut self, name: &str) -> std::io::Result<Vec<String>> {
        self.inner.list_directory(name)
    }
    fn create_directory(&mut self, name: &str) -> std::io::Result<()> {
        self.inner.create_directory(name)
    }
    fn create(&mut self, name: &str) -> std::io::Result<()> {
        self.inner.create(name)
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while name.ends_with(".tmp") && !self.open.load(Ordering::SeqCst) {
            self.waiting.store(true, Ordering::SeqCst);
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the test's gate stayed shut"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.inner.write_at(name, offset, bytes)
    }
    fn sync_data(&mut self, name: &str) -> std::io::Result<()> {
        self.inner.sync_data(name)
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
        self.inner.set_len(name, len)
    }
    fn rename(&mut self, from: &str, to: &str) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&mut self, name: &str) -> std::io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_directory(&mut self) -> std::io::Result<()> {
        self.inner.sync_directory()
    }
}

/// Submits one transfer from a thread of its own; its codes come back on the channel.
fn submit_transfer(node: &Arc<Node>, id: u128) -> mpsc::Receiver<Vec<ResultCode>> {
    let (sender, receiver) = mpsc::channel();
    let node = Arc::clone(node);
    std::thread::spawn(move || {
        let batch = [transfer(id, 1, 2, 1)];
        let codes = node
            .submit(Batch::CreateTransfers(&batch))
            .and_then(|p| p.wait());
        // The handle goes before the answer, so the test's handle is the only one left.
        drop(node);
        let _ = sender.send(codes.expect("answered"));
    });
    receiver
}

/// Submits `batch` and waits: every command must answer `ok`.
fn submit_all_ok(node: &Node, batch: Batch<'_>) {
    let codes = node.submit(batch).and_then(|p| p.wait()).expect("answered");
    assert!(
        codes.iter().all(|code| *code == ResultCode::Ok),
        "{codes:?}"
    );
}

#[test]
fn commands_are_answered_while_a_checkpoint_is_written_and_the_next_one_waits_for_it() {
    let disks = SimDisks::default();
    let gate = Gated {
        inner: disks.checkpoints.clone(),
        open: Arc::new(AtomicBool::new(false)),
        waiting: Arc::new(AtomicBool::new(false)),
    };
    let config = NodeConfig {
        checkpoint_interval_records: 3,
        checkpoint_log_percent: 0,
        ..NodeConfig::default()
    };
    let storage = NodeStorage {
        log: Box::new(disks.log.clone()),
        checkpoints: Box::new(gate.clone()),
    };
    let clock: Arc<dyn Clock + Sync> = Arc::new(ManualClock::new(1_000_000_000));
    let (node, _) = Node::open(config.clone(), storage, clock.clone()).expect("opens");
    let node = Arc::new(node);
    let accounts = [account(1, false), account(2, false)];
    let codes = node
        .submit(Batch::CreateAccounts(&accounts))
        .and_then(|p| p.wait());
    assert_eq!(codes.expect("accounts"), [ResultCode::Ok; 2]);
    // Records 1 and 2: the checkpoint after record 2 starts, and waits at the gate.
    for id in [10, 11] {
        let answer = submit_transfer(&node, id).recv_timeout(Duration::from_secs(30));
        assert_eq!(answer.expect("answered"), [ResultCode::Ok]);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gate.waiting.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "no checkpoint began");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Records 3 and 4 are applied and answered meanwhile.
    for id in [12, 13] {
        let answer = submit_transfer(&node, id).recv_timeout(Duration::from_secs(30));
        let answer = answer.expect("answered while a checkpoint is being written");
        assert_eq!(answer, [ResultCode::Ok]);
    }
    // Record 5 is applied and answered, but the checkpoint after it waits for the one
    // before, and record 6 with it.
    let fifth = submit_transfer(&node, 14).recv_timeout(Duration::from_secs(30));
    assert_eq!(fifth.expect("answered"), [ResultCode::Ok]);
    let sixth = submit_transfer(&node, 15);
    let early = sixth.recv_timeout(Duration::from_millis(300));
    assert!(
        early.is_err(),
        "answered past a checkpoint not yet handed over"
    );
    assert_eq!(disks.checkpoints.contents(&file_name(Some(2))), None);
    gate.open.store(true, Ordering::SeqCst);
    let sixth = sixth.recv_timeout(Duration::from_secs(30));
    assert_eq!(
        sixth.expect("answered once the gate opened"),
        [ResultCode::Ok]
    );
    Arc::into_inner(node).expect("the only handle").shutdown();
    let storage = disks.node_storage();
    let (node, report) = Node::open(config, storage, clock).expect("reopens");
    assert_eq!(report.checkpoint_record_index, Some(5));
    assert_eq!(report.records_replayed, 1);
    node.shutdown();
}

/// A checkpoint of a state too large to copy after one record (its accounts' table alone
/// is 8 MiB; a record copies a third of the state at most, besides what its own changes
/// copy): the copy is spread over the records that follow, which change what it copies
/// meanwhile, and what is left of the last one is finished at shutdown. Each checkpoint is
/// still the state as of its record: its snapshot is the bytes of a replay of the log
/// through that record.
#[test]
fn a_checkpoint_copied_over_the_records_after_it_is_the_state_of_its_record() {
    let disks = SimDisks::default();
    let config = NodeConfig {
        checkpoint_interval_records: 6,
        checkpoint_log_percent: 0,
        ..NodeConfig::default()
    };
    let clock = ManualClock::new(1_000_000_000);
    let (node, _) = disks.open(&config, &clock);
    let accounts_count = 4 * 8_190u128;
    // Records 0–3: the accounts.
    for first in (1..=accounts_count).step_by(8_190) {
        let accounts: Vec<_> = (first..first + 8_190)
            .map(|id| account(id, false))
            .collect();
        submit_all_ok(&node, Batch::CreateAccounts(&accounts));
    }
    // Records 4–19: transfers between accounts spread over the table.
    for round in 0..16u128 {
        let transfers: Vec<_> = (0..2_000u128)
            .map(|index| {
                let n = round * 2_000 + index;
                let debit = 1 + (n * 7_919) % accounts_count;
                let offset = 1 + (n * 104_729) % (accounts_count - 1);
                let credit = 1 + (debit - 1 + offset) % accounts_count;
                transfer(1_000_000 + n, debit, credit, 1 + (n % 5) as u64)
            })
            .collect();
        submit_all_ok(&node, Batch::CreateTransfers(&transfers));
    }
    node.shutdown();
    let records = common::read_log(&disks.log, config.log);
    assert_eq!(records.len(), 20);
    let mut checkpoints = disks.checkpoints.clone();
    // After records 5, 11 and 17 (the last taken at shutdown's end of its copy).
    for record_index in [5u64, 11, 17] {
        let found = checkpoint::read(&mut checkpoints, &file_name(Some(record_index)))
            .unwrap_or_else(|error| panic!("checkpoint {record_index}: {error}"));
        let replayed = common::replay(config.state, &records[..=record_index as usize]);
        assert!(
            found.snapshot == replayed.snapshot(),
            "checkpoint {record_index} is not the state as of its record"
        );
    }
}

/// With `checkpoint_log_percent`, a checkpoint that falls due is skipped until the log
/// written since the last one (whole records, in bytes) is at least that percent of the
/// last one's snapshot; the first is never skipped. A model over the log's record sizes
/// and the sizes of the snapshots written gives exactly the checkpoints on disk.
#[test]
fn checkpoints_wait_for_the_log_to_grow_by_a_share_of_the_last_one() {
    let mut counts = Vec::new();
    for percent in [0u32, 50, 100, 250] {
        let disks = SimDisks::default();
        let config = NodeConfig {
            checkpoint_interval_records: 2,
            checkpoint_log_percent: percent,
            checkpoints_kept: 1_000,
            // Small segments: the simulated disk holds each whole.
            log: LogConfig {
                segment_size_bytes: 64 * 1024,
                ..LogConfig::default()
            },
            ..NodeConfig::default()
        };
        let clock = ManualClock::new(1_000_000_000);
        let (node, _) = disks.open(&config, &clock);
        // Record 0: 500 accounts, a snapshot of 64 KB; then transfers, 1 to 40 a record.
        let accounts: Vec<_> = (1..=500u128).map(|id| account(id, false)).collect();
        submit_all_ok(&node, Batch::CreateAccounts(&accounts));
        for round in 0..120u128 {
            let transfers: Vec<_> = (0..1 + (round * 7) % 40)
                .map(|index| {
                    let debit = 1 + (round + index) % 500;
                    let credit = 1 + (round + index + 1) % 500;
                    transfer(1_000_000 + round * 100 + index, debit, credit, 1)
                })
                .collect();
            submit_all_ok(&node, Batch::CreateTransfers(&transfers));
        }
        node.shutdown();
        let records = common::read_log(&disks.log, config.log);
        assert_eq!(records.len(), 121);
        let mut expected = Vec::new();
        let (mut since, mut last) = (0u64, 0u64);
        for (index, record) in records.iter().enumerate() {
            since += record.header.record_size_bytes() as u64;
            if index % 2 == 1 && since * 100 >= last * u64::from(percent) {
                expected.push(index as u64);
                // The size of the snapshot written (its content is checked elsewhere).
                let name = file_name(Some(index as u64));
                last = checkpoint::read(&mut disks.checkpoints.clone(), &name)
                    .unwrap_or_else(|error| panic!("percent {percent}, {name}: {error}"))
                    .snapshot
                    .len() as u64;
                since = 0;
            }
        }
        let found: Vec<u64> = checkpoint::list(&mut disks.checkpoints.clone())
            .expect("list")
            .iter()
            .filter_map(|name| checkpoint::record_index_of(name).flatten())
            .collect();
        assert_eq!(found, expected, "percent {percent}");
        counts.push(found.len());
        // The first checkpoint after a restart is never skipped: one more record (121, at
        // the phase) is checkpointed however short the log since the last one.
        let (node, _) = disks.open(&config, &clock);
        submit_all_ok(
            &node,
            Batch::CreateTransfers(&[transfer(2_000_000, 1, 2, 1)]),
        );
        node.shutdown();
        let names = checkpoint::list(&mut disks.checkpoints.clone()).expect("list");
        assert_eq!(
            names.last().map(String::as_str),
            Some(file_name(Some(121)).as_str()),
            "percent {percent}"
        );
    }
    // Every interval without a share; fewer and fewer the larger the share.
    assert_eq!(counts[0], 60, "{counts:?}");
    assert!(
        counts.windows(2).all(|pair| pair[1] < pair[0]) && counts[3] > 1,
        "{counts:?}"
    );
}
