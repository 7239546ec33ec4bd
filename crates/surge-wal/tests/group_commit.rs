//! Group commit: nothing is acknowledged before its sync returned, a full queue answers
//! Busy at once, and a failed write or sync is fail-stop — every waiting and later
//! submitter gets the error, and recovery returns exactly what was synced.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use surge_core::Operation;
use surge_wal::{
    GroupCommit, GroupCommitConfig, Log, LogConfig, ManualClock, Record, SimStorage, Storage,
    SubmitError, WalError,
};

const SEGMENT_SIZE_BYTES: u64 = 8192;

fn config() -> LogConfig {
    LogConfig {
        shard: 0,
        segment_size_bytes: SEGMENT_SIZE_BYTES,
    }
}

/// Shared between a test and its [`GatedStorage`].
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    syncs_entered: AtomicU64,
    syncs_returned: AtomicU64,
}

impl Gate {
    fn set_open(&self, open: bool) {
        *self.open.lock() = open;
        self.changed.notify_all();
    }

    fn wait_for_syncs_entered(&self, count: u64) {
        while self.syncs_entered.load(Ordering::SeqCst) < count {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Storage whose `sync_data` waits until the test opens the gate.
struct GatedStorage {
    inner: SimStorage,
    gate: Arc<Gate>,
}

impl Storage for GatedStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        self.inner.list()
    }
    fn list_directory(&mut self, name: &str) -> io::Result<Vec<String>> {
        self.inner.list_directory(name)
    }
    fn create_directory(&mut self, name: &str) -> io::Result<()> {
        self.inner.create_directory(name)
    }
    fn create(&mut self, name: &str) -> io::Result<()> {
        self.inner.create(name)
    }
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_at(name, offset, bytes)
    }
    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        self.gate.syncs_entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.gate.open.lock();
        while !*open {
            self.gate.changed.wait(&mut open);
        }
        drop(open);
        let result = self.inner.sync_data(name);
        self.gate.syncs_returned.fetch_add(1, Ordering::SeqCst);
        result
    }
    fn read_at(&mut self, name: &str, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        self.inner.read_at(name, offset, buffer)
    }
    fn read_all(&mut self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read_all(name)
    }
    fn len(&mut self, name: &str) -> io::Result<u64> {
        self.inner.len(name)
    }
    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.inner.set_len(name, len)
    }
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.inner.remove(name)
    }
    fn sync_directory(&mut self) -> io::Result<()> {
        self.inner.sync_directory()
    }
}

fn submit(group_commit: &GroupCommit, seed: u64) -> surge_wal::Ticket {
    let body = common::body(Operation::CreateTransfers, 2, seed);
    group_commit
        .submit(Operation::CreateTransfers, body, 2)
        .expect("queued")
}

#[test]
fn nothing_is_acknowledged_before_its_sync_returned() {
    let gate = Arc::new(Gate::default());
    gate.set_open(true);
    let storage = GatedStorage {
        inner: SimStorage::new(),
        gate: gate.clone(),
    };
    let (log, _) = Log::open(Box::new(storage), config()).unwrap();
    let clock = ManualClock::new(1_000);
    let group_config = GroupCommitConfig {
        submit_queue_depth_max: 2,
        ..Default::default()
    };
    let (group_commit, output) = GroupCommit::start(log, Box::new(clock.clone()), group_config);
    gate.set_open(false);
    let syncs_before = gate.syncs_entered.load(Ordering::SeqCst);

    let first = submit(&group_commit, 1);
    gate.wait_for_syncs_entered(syncs_before + 1);
    // The writer is inside the first sync: the next group fills meanwhile.
    clock.set_ns(500);
    let second = submit(&group_commit, 2);
    let third = submit(&group_commit, 3);
    let refused = group_commit.submit(Operation::Pulse, Vec::new(), 0);
    assert_eq!(refused.unwrap_err(), SubmitError::Busy);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        first.try_take().is_none(),
        "acknowledged before its sync returned"
    );
    assert!(second.try_take().is_none());
    assert!(
        output.try_recv().is_err(),
        "applied before its sync returned"
    );

    gate.set_open(true);
    let first = first.wait().unwrap();
    assert!(gate.syncs_returned.load(Ordering::SeqCst) > syncs_before);
    let (second, third) = (second.wait().unwrap(), third.wait().unwrap());
    let indexes: Vec<u64> = [&first, &second, &third]
        .iter()
        .map(|r| r.header.record_index)
        .collect();
    assert_eq!(indexes, vec![0, 1, 2]);
    assert_eq!(first.header.timestamp_ns, 1_000);
    // The clock went back; log time did not. Record 0 holds two commands at 1000 and 1001.
    assert_eq!(second.header.timestamp_ns, 1_002);
    assert_eq!(third.header.timestamp_ns, 1_004);
    assert_eq!(third.header.sequence_first, 4);
    let stats = group_commit.stats();
    assert_eq!(stats.syncs, 2, "the two queued batches share one sync");
    assert_eq!(stats.records, 3);
    assert_eq!(stats.commands, 6);
    // The apply stage is fed after the tickets complete: join the writer before looking.
    drop(group_commit);
    let applied: Vec<u64> = output.try_iter().map(|r| r.header.record_index).collect();
    assert_eq!(applied, vec![0, 1, 2]);
}

fn run_until_failure(storage: &SimStorage, fail: impl FnOnce(&SimStorage)) -> Vec<Record> {
    let (log, _) = Log::open(Box::new(storage.clone()), config()).unwrap();
    let (group_commit, _output) = GroupCommit::start(
        log,
        Box::new(ManualClock::new(7)),
        GroupCommitConfig::default(),
    );
    let acknowledged: Vec<Record> = (0..3)
        .map(|seed| (*submit(&group_commit, seed).wait().unwrap()).clone())
        .collect();
    fail(storage);
    let failed = submit(&group_commit, 10).wait().unwrap_err();
    assert!(matches!(failed, WalError::Failed { .. }), "{failed}");
    // Fail-stop: every later submission fails with the same reason, none is retried.
    for seed in 11..14 {
        match group_commit.submit(
            Operation::CreateTransfers,
            common::body(Operation::CreateTransfers, 2, seed),
            2,
        ) {
            Err(SubmitError::Failed(error)) => assert_eq!(error, failed),
            Ok(ticket) => assert_eq!(ticket.wait().unwrap_err(), failed),
            Err(other) => panic!("expected the fail-stop error, got {other}"),
        }
    }
    let log = group_commit.shutdown();
    assert_eq!(log.failure(), Some(&failed));
    acknowledged
}

#[test]
fn a_failed_sync_is_fail_stop_and_recovery_returns_what_was_synced() {
    let storage = SimStorage::new();
    let acknowledged = run_until_failure(&storage, SimStorage::fail_next_sync);
    storage.power_cut_losing_all_unsynced();
    let (_, _, records) = common::open_all(Box::new(storage.clone()), config()).unwrap();
    assert_eq!(records, acknowledged);
}

#[test]
fn a_failed_sync_without_a_power_cut_keeps_every_acknowledged_record() {
    let storage = SimStorage::new();
    let acknowledged = run_until_failure(&storage, SimStorage::fail_next_sync);
    // The unsynced record may still be readable: it was never acknowledged, so either is
    // right, but the acknowledged ones must all be there, first.
    let (_, _, records) = common::open_all(Box::new(storage.clone()), config()).unwrap();
    assert!(records.len() <= acknowledged.len() + 1);
    assert_eq!(records[..acknowledged.len()], acknowledged[..]);
}

#[test]
fn a_failed_write_is_fail_stop() {
    let storage = SimStorage::new();
    let acknowledged = run_until_failure(&storage, SimStorage::fail_next_write);
    let (_, _, records) = common::open_all(Box::new(storage.clone()), config()).unwrap();
    assert_eq!(records, acknowledged);
}

#[test]
fn malformed_submissions_are_refused_and_the_log_stays_healthy() {
    let (log, _) = Log::open(Box::new(SimStorage::new()), config()).unwrap();
    let (group_commit, _output) = GroupCommit::start(
        log,
        Box::new(ManualClock::new(0)),
        GroupCommitConfig::default(),
    );
    let wrong_size = group_commit.submit(Operation::CreateTransfers, vec![0; 100], 1);
    assert!(matches!(
        wrong_size,
        Err(SubmitError::Invalid(WalError::Invalid { .. }))
    ));
    let body = common::body(Operation::CreateTransfers, 64, 0);
    let too_large = group_commit.submit(Operation::CreateTransfers, body, 64);
    assert!(matches!(
        too_large,
        Err(SubmitError::Invalid(WalError::TooLarge { .. }))
    ));
    assert!(submit(&group_commit, 1).wait().is_ok());
}

#[test]
fn many_submitters_rotate_segments_and_recover_in_order() {
    let storage = SimStorage::new();
    let (log, _) = Log::open(Box::new(storage.clone()), config()).unwrap();
    let (group_commit, output) = GroupCommit::start(
        log,
        Box::new(ManualClock::new(0)),
        GroupCommitConfig::default(),
    );
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let (group_commit, acknowledged) = (&group_commit, &acknowledged);
            scope.spawn(move || {
                for i in 0..50 {
                    let ticket = loop {
                        let body = common::body(Operation::CreateTransfers, 2, thread * 100 + i);
                        match group_commit.submit(Operation::CreateTransfers, body, 2) {
                            Ok(ticket) => break ticket,
                            Err(SubmitError::Busy) => std::thread::yield_now(),
                            Err(other) => panic!("{other}"),
                        }
                    };
                    acknowledged.lock().push((*ticket.wait().unwrap()).clone());
                }
            });
        }
    });
    drop(group_commit);
    let applied: Vec<Record> = output.try_iter().map(|r| (*r).clone()).collect();
    let mut acknowledged = acknowledged.into_inner();
    acknowledged.sort_by_key(|r| r.header.record_index);
    assert_eq!(applied, acknowledged);
    assert!(storage.clone().list().unwrap().len() > 2, "the log rotated");
    storage.power_cut_losing_all_unsynced();
    let (_, _, records) = common::open_all(Box::new(storage), config()).unwrap();
    assert_eq!(records, acknowledged);
}

/// A clock that breaks: stands in for any bug that panics the writer thread.
struct PanickingClock;

impl surge_wal::Clock for PanickingClock {
    fn now_ns(&self) -> u64 {
        panic!("test clock broke on purpose");
    }
}

#[test]
fn a_panicking_writer_fails_its_submitters_instead_of_hanging_them() {
    let (log, _) = Log::open(Box::new(SimStorage::new()), config()).unwrap();
    let (group_commit, _output) =
        GroupCommit::start(log, Box::new(PanickingClock), GroupCommitConfig::default());
    let error = submit(&group_commit, 1).wait().unwrap_err();
    assert!(error.to_string().contains("panicked"), "{error}");
    let later = group_commit
        .submit(Operation::Pulse, Vec::new(), 0)
        .unwrap_err();
    assert_eq!(later, SubmitError::Failed(error));
    let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        group_commit.shutdown();
    }));
    assert!(joined.is_err(), "shutdown passes the writer's panic on");
}
