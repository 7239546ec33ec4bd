//! Fail-stop on I/O errors: a failed fdatasync or a full disk fails the batch in flight and
//! every later one (never an `Ok` for something not durable, never a silent retry), the
//! node keeps answering reads, and after a restart on healthy storage every acknowledged
//! batch is there and the node accepts again. Two tests (ignored: they fail today) show a
//! restart without a power cut, after a failed sync or an ENOSPC inside a segment rotation,
//! building acknowledged records on log state that was never made durable.

mod common;

use common::{account, transfer, SimDisks};
use surge_core::{AccountId, Batch, ResultCode, StateMachine, Transfer, TransferId};
use surge_engine::{EngineError, Node, NodeConfig};
use surge_wal::{LogConfig, ManualClock, SubmitError, WalError};

const BANK: u128 = 1;
const MERCHANT: u128 = 2;
const CLOCK_NS: u64 = 1_000_000_000;
const SEGMENT_SIZE_BYTES: u64 = 16 * 1024;

fn config() -> NodeConfig {
    NodeConfig {
        log: LogConfig {
            segment_size_bytes: SEGMENT_SIZE_BYTES,
            ..LogConfig::default()
        },
        checkpoint_interval_records: 4,
        checkpoint_log_percent: 0,
        ..NodeConfig::default()
    }
}

/// `count` transfers from the bank to the merchant, ids from `first`.
fn transfers(first: u128, count: u128) -> Vec<Transfer> {
    (first..first + count)
        .map(|id| transfer(id, BANK, MERCHANT, 1))
        .collect()
}

fn submit(node: &Node, batch: Batch<'_>) -> Result<Vec<ResultCode>, EngineError> {
    node.submit(batch).and_then(|pending| pending.wait())
}

fn setup(node: &Node) {
    assert_eq!(node.failure(), None, "a running node has not failed");
    let accounts = [account(BANK, false), account(MERCHANT, false)];
    let codes = submit(node, Batch::CreateAccounts(&accounts)).expect("accounts");
    assert_eq!(codes, [ResultCode::Ok; 2]);
}

/// Submits batches of `batch_len` transfers until one fails; returns the ids acknowledged
/// and the error. Every answer before the failure is all `Ok`.
fn until_failure(node: &Node, first: u128, batch_len: u128) -> (Vec<u128>, EngineError) {
    let mut acknowledged = Vec::new();
    let mut next = first;
    for _ in 0..10_000 {
        let batch = transfers(next, batch_len);
        match submit(node, Batch::CreateTransfers(&batch)) {
            Ok(codes) => {
                assert_eq!(codes, vec![ResultCode::Ok; batch.len()]);
                acknowledged.extend(next..next + batch_len);
            }
            Err(error) => return (acknowledged, error),
        }
        next += batch_len;
    }
    panic!("no failure after 10,000 batches");
}

/// Every later submission fails too, at submit or at wait, and never comes back `Ok`.
fn check_everything_fails_from_now(node: &Node, first: u128) {
    // The node says so without a command (what the server polls).
    let reason = node.failure().expect("a failed node reports its failure");
    assert!(!reason.is_empty());
    for attempt in 0..20 {
        let batch = transfers(first + attempt, 1);
        match submit(node, Batch::CreateTransfers(&batch)) {
            Ok(codes) => panic!("attempt {attempt} after fail-stop was answered {codes:?}"),
            Err(EngineError::Submit(SubmitError::Failed(error)) | EngineError::Log(error)) => {
                assert!(error.is_failed(), "{error}")
            }
            Err(error) => panic!("attempt {attempt}: unexpected error {error}"),
        }
    }
}

fn check_acknowledged(state: &StateMachine, acknowledged: &[u128]) {
    for id in acknowledged {
        assert!(
            matches!(
                state.transfer(TransferId(*id)),
                Some(surge_core::TransferLookup::Committed { .. })
            ),
            "acknowledged transfer {id} is missing"
        );
    }
    common::check_invariants(state).expect("invariants");
}

#[test]
fn a_failed_sync_stops_all_writes_and_loses_nothing_acknowledged() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_NS);
    let (node, _) = disks.open(&config(), &clock);
    setup(&node);
    let mut acknowledged = Vec::new();
    for first in (100..120).step_by(4) {
        let batch = transfers(first, 4);
        let codes = submit(&node, Batch::CreateTransfers(&batch)).expect("healthy");
        assert_eq!(codes, [ResultCode::Ok; 4]);
        acknowledged.extend(first..first + 4);
    }
    let before = node.read(StateMachine::state_hash);

    disks.log.fail_next_sync();
    let in_flight = transfers(500, 3);
    match submit(&node, Batch::CreateTransfers(&in_flight)) {
        Err(EngineError::Log(WalError::Failed { reason, .. })) => {
            assert!(reason.contains("fdatasync"), "{reason}")
        }
        Ok(codes) => panic!("a batch whose sync failed was answered {codes:?}"),
        Err(error) => panic!("unexpected error {error}"),
    }
    check_everything_fails_from_now(&node, 600);
    // Reads go on, and show nothing of what failed.
    assert_eq!(node.read(StateMachine::state_hash), before);
    assert_eq!(node.read(|state| state.transfer(TransferId(500))), None);
    node.read(|state| check_acknowledged(state, &acknowledged));
    node.shutdown();

    // The power goes (the failed write is lost); on restart everything acknowledged is
    // there and the node accepts again.
    disks.log.power_cut_losing_all_unsynced();
    disks.checkpoints.power_cut_losing_all_unsynced();
    let (node, report) = disks.open(&config(), &clock);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(node.read(StateMachine::state_hash), before);
    node.read(|state| check_acknowledged(state, &acknowledged));
    let batch = transfers(700, 2);
    let codes = submit(&node, Batch::CreateTransfers(&batch)).expect("accepting again");
    assert_eq!(codes, [ResultCode::Ok; 2]);
    node.shutdown();
}

#[test]
fn a_full_log_disk_stops_writes_and_recovery_works_after_space_is_freed() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_NS);
    let (node, _) = disks.open(&config(), &clock);
    setup(&node);
    // Segments are preallocated, so the disk fills when the next segment is created.
    disks
        .log
        .set_capacity_bytes(Some(disks.log.used_bytes() + 1_000));
    let (acknowledged, error) = until_failure(&node, 1_000, 10);
    assert!(
        acknowledged.len() > 50,
        "{} acknowledged",
        acknowledged.len()
    );
    match error {
        EngineError::Log(WalError::Failed { kind, reason }) => {
            assert_eq!(kind, std::io::ErrorKind::StorageFull, "{reason}")
        }
        error => panic!("expected ENOSPC from the log, got {error}"),
    }
    check_everything_fails_from_now(&node, 900_000);
    node.read(|state| check_acknowledged(state, &acknowledged));
    node.shutdown();

    // Space is freed; the power also goes, to be sure only durable records count.
    disks.log.set_capacity_bytes(None);
    disks.log.power_cut_losing_all_unsynced();
    disks.checkpoints.power_cut_losing_all_unsynced();
    let (node, _) = disks.open(&config(), &clock);
    node.read(|state| check_acknowledged(state, &acknowledged));
    // It goes on, through several more segments.
    let (more, error) = {
        disks
            .log
            .set_capacity_bytes(Some(disks.log.used_bytes() + 4 * SEGMENT_SIZE_BYTES));
        until_failure(&node, 2_000_000, 10)
    };
    assert!(
        more.len() > 300,
        "{} acknowledged after the restart",
        more.len()
    );
    assert!(
        matches!(error, EngineError::Log(WalError::Failed { .. })),
        "{error}"
    );
    node.shutdown();
    disks.log.set_capacity_bytes(None);
    let (node, _) = disks.open(&config(), &clock);
    node.read(|state| {
        check_acknowledged(state, &acknowledged);
        check_acknowledged(state, &more);
    });
    node.shutdown();
}

#[test]
fn a_full_checkpoint_disk_stops_answers_but_not_reads_and_recovery_works() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_NS);
    let (node, _) = disks.open(&config(), &clock);
    setup(&node);
    disks
        .checkpoints
        .set_capacity_bytes(Some(disks.checkpoints.used_bytes()));
    let (acknowledged, error) = until_failure(&node, 1_000, 3);
    // The checkpoint after record 3 (the fourth) cannot be written: the apply stage stops.
    // The checkpoint thread writes it, so the records applied meanwhile (durable in the
    // log) were answered before the failure stopped the node; at the latest, the next
    // checkpoint (after record 7, three ids a record) waits for it and stops.
    let answered = acknowledged.len();
    assert!((9..=21).contains(&answered), "{answered} acknowledged");
    // The waiter sees the stop either from the apply stage or from the log it halted.
    match error {
        EngineError::Stopped(reason) => assert!(reason.contains("checkpoint"), "{reason}"),
        EngineError::Log(_) | EngineError::Submit(_) => {
            assert!(error.to_string().contains("checkpoint"), "{error}")
        }
        error => panic!("expected the apply stage to stop, got {error}"),
    }
    node.read(|state| check_acknowledged(state, &acknowledged));
    node.shutdown();

    disks.checkpoints.set_capacity_bytes(None);
    disks.log.power_cut_losing_all_unsynced();
    disks.checkpoints.power_cut_losing_all_unsynced();
    let (node, report) = disks.open(&config(), &clock);
    assert_eq!(report.checkpoint_record_index, None);
    node.read(|state| check_acknowledged(state, &acknowledged));
    let batch = transfers(5_000, 2);
    let codes = submit(&node, Batch::CreateTransfers(&batch)).expect("accepting again");
    assert_eq!(codes, [ResultCode::Ok; 2]);
    node.shutdown();
}

/// The process stops after writing a record and before its fdatasync returned (a failed
/// sync, or `kill -9`); the machine keeps running, so the record is still readable. The
/// restarted node recovers it and builds on it. If the first thing it does is rotate to a
/// new segment, it must first make the old segment durable, or a later power cut loses
/// that record under acknowledged ones and the log no longer opens.
#[test]
fn a_recovered_but_unsynced_record_is_made_durable_before_the_log_builds_on_it() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_NS);
    let (node, _) = disks.open(&config(), &clock);
    setup(&node);
    // Fill the first segment to within one small record of its end.
    let mut next = 100;
    while SEGMENT_SIZE_BYTES - node.commit_stats().bytes > 1_000 {
        let batch = transfers(next, 2);
        submit(&node, Batch::CreateTransfers(&batch)).expect("healthy");
        next += 2;
    }
    disks.log.fail_next_sync();
    let unsynced = transfers(50_000, 1);
    assert!(submit(&node, Batch::CreateTransfers(&unsynced)).is_err());
    node.shutdown();

    // The process restarts; the machine did not lose power, so the record reads back.
    let (node, _) = disks.open(&config(), &clock);
    let recovered = node.read(|state| state.transfer(TransferId(50_000)));
    assert!(recovered.is_some(), "the written record is recovered");
    // A batch that does not fit the rest of the segment: the log rotates, then syncs it.
    let big = transfers(60_000, 20);
    let codes = submit(&node, Batch::CreateTransfers(&big)).expect("acknowledged");
    assert_eq!(codes, [ResultCode::Ok; 20]);
    node.shutdown();

    disks.log.power_cut_losing_all_unsynced();
    disks.checkpoints.power_cut_losing_all_unsynced();
    let clock_arc: std::sync::Arc<dyn surge_wal::Clock + Sync> = std::sync::Arc::new(clock);
    let reopened = Node::open(config(), disks.node_storage(), clock_arc);
    let (node, _) = match reopened {
        Ok(opened) => opened,
        Err(error) => panic!("acknowledged batch 60_000.. is unrecoverable: {error}"),
    };
    node.read(|state| {
        check_acknowledged(state, &(60_000..60_020).collect::<Vec<_>>());
        assert!(state.account(AccountId(BANK)).is_some());
    });
    node.shutdown();
}

/// The disk fills while the log creates its next segment (the file is created, growing it
/// fails with ENOSPC): fail-stop. Space is freed and the process restarts without a power
/// cut, as the issue asks. The restarted log finds the new, empty segment and appends to
/// it; its directory entry must be made durable before anything in it is acknowledged.
#[test]
fn after_enospc_in_a_rotation_a_restart_loses_nothing_it_acknowledges() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_NS);
    let (node, _) = disks.open(&config(), &clock);
    setup(&node);
    disks
        .log
        .set_capacity_bytes(Some(disks.log.used_bytes() + 1_000));
    let (acknowledged, error) = until_failure(&node, 1_000, 10);
    assert!(
        matches!(&error, EngineError::Log(WalError::Failed { kind, .. })
            if *kind == std::io::ErrorKind::StorageFull),
        "{error}"
    );
    node.shutdown();

    disks.log.set_capacity_bytes(None);
    let (node, _) = disks.open(&config(), &clock);
    let after = transfers(3_000_000, 5);
    let codes = submit(&node, Batch::CreateTransfers(&after)).expect("accepting again");
    assert_eq!(codes, [ResultCode::Ok; 5]);
    node.shutdown();

    disks.log.power_cut_losing_all_unsynced();
    disks.checkpoints.power_cut_losing_all_unsynced();
    let (node, _) = disks.open(&config(), &clock);
    node.read(|state| {
        check_acknowledged(state, &acknowledged);
        check_acknowledged(state, &(3_000_000..3_000_005).collect::<Vec<_>>());
    });
    node.shutdown();
}

/// A checkpoint write that fails (here ENOSPC) stops the apply stage, and the apply stage
/// halts the log: the fail-stop rule says an I/O error stops all writes.
#[test]
fn a_failed_checkpoint_write_stops_all_writes() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_NS);
    let (node, _) = disks.open(&config(), &clock);
    setup(&node);
    disks
        .checkpoints
        .set_capacity_bytes(Some(disks.checkpoints.used_bytes()));
    let (_, error) = until_failure(&node, 1_000, 3);
    // Depending on timing the waiter hears it from the apply stage, from the halted log, or
    // is refused at submission by the halted log.
    assert!(
        matches!(
            error,
            EngineError::Stopped(_) | EngineError::Log(_) | EngineError::Submit(_)
        ),
        "{error}"
    );
    let records_at_failure = node.commit_stats().records;
    for attempt in 0..5 {
        let batch = transfers(10_000 + attempt, 1);
        assert!(submit(&node, Batch::CreateTransfers(&batch)).is_err());
    }
    assert_eq!(
        node.commit_stats().records,
        records_at_failure,
        "the log kept writing after the node failed"
    );
    node.shutdown();
}
