//! Log retention through the node: after each checkpoint, segments entirely below the
//! oldest kept checkpoint's record are archived or deleted; a restart recovers the same
//! state from a log that starts later; with `Archive`, a deleted history index is rebuilt
//! from the archived segments; with `Delete`, a start that needs deleted records (a
//! history rebuild, or no usable checkpoint) is refused with an error naming the record.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{account, transfer, SimDisks};
use surge_core::{Batch, ResultCode, StateMachine};
use surge_engine::{EngineError, Node, NodeConfig, RecoveryReport};
use surge_wal::checkpoint;
use surge_wal::{Clock, LogConfig, LogRetention, ManualClock, Storage};

const BANK: u128 = 1;
const SHOP: u128 = 2;
const BATCHES: u128 = 120;

fn config(retention: LogRetention, history: Option<&Path>) -> NodeConfig {
    NodeConfig {
        log: LogConfig {
            segment_size_bytes: 4096,
            ..LogConfig::default()
        },
        checkpoint_interval_records: 10,
        checkpoint_log_percent: 0,
        checkpoints_kept: 2,
        history_directory: history.map(Path::to_path_buf),
        log_retention: retention,
        ..NodeConfig::default()
    }
}

fn try_open(disks: &SimDisks, config: &NodeConfig) -> Result<(Node, RecoveryReport), EngineError> {
    let clock: Arc<dyn Clock + Sync> = Arc::new(ManualClock::new(1_000_000_000));
    Node::open(config.clone(), disks.node_storage(), clock)
}

/// Two accounts, then `BATCHES` single transfers: about 20 records per 4 KiB segment.
fn drive(node: &Node) -> u128 {
    let accounts = [account(BANK, false), account(SHOP, false)];
    let codes = node
        .submit(Batch::CreateAccounts(&accounts))
        .expect("submit");
    assert_eq!(codes.wait().expect("applied"), [ResultCode::Ok; 2]);
    for id in 0..BATCHES {
        let one = [transfer(100 + id, BANK, SHOP, 1)];
        let codes = node.submit(Batch::CreateTransfers(&one)).expect("submit");
        assert_eq!(codes.wait().expect("applied"), [ResultCode::Ok]);
    }
    node.read(StateMachine::state_hash)
}

/// Runs the workload on fresh disks and shuts down; the state hash.
fn run(disks: &SimDisks, config: &NodeConfig) -> u128 {
    let (node, _) = try_open(disks, config).expect("opens");
    let hash = drive(&node);
    node.shutdown();
    hash
}

fn live_segments(disks: &SimDisks) -> Vec<String> {
    let mut log = disks.log.clone();
    log.list().expect("list")
}

fn archived_segments(disks: &SimDisks) -> Vec<String> {
    let mut log = disks.log.clone();
    log.list_directory("archive").expect("list")
}

/// The record index of the oldest kept checkpoint.
fn oldest_checkpoint(disks: &SimDisks) -> u64 {
    let mut checkpoints = disks.checkpoints.clone();
    let names = checkpoint::list(&mut checkpoints).expect("list");
    checkpoint::record_index_of(&names[0])
        .flatten()
        .expect("a checkpoint of a record")
}

#[test]
fn archived_segments_recover_the_same_state_and_rebuild_a_deleted_history_index() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = config(LogRetention::Archive, Some(&history));
    let disks = SimDisks::default();
    let before = run(&disks, &config);
    let archived = archived_segments(&disks);
    assert!(archived.len() >= 3, "archived {archived:?}");
    assert!(archived.contains(&"segment-00000000.log".to_string()));
    assert!(!live_segments(&disks).contains(&"segment-00000000.log".to_string()));
    // The oldest kept checkpoint's record is still live: recovery checks it there.
    let (mut log, recovered) =
        surge_wal::Log::open(Box::new(disks.log.clone()), config.log).expect("opens");
    assert!(recovered.record_indexes.start > 0);
    assert!(recovered.record_indexes.start <= oldest_checkpoint(&disks));
    assert_eq!(
        log.read_from(0).expect("reads").count() as u128,
        BATCHES + 1
    );
    drop(log);

    let (node, report) = try_open(&disks, &config).expect("reopens");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert!(report.checkpoint_record_index.is_some());
    assert_eq!(node.read(StateMachine::state_hash), before);
    node.shutdown();

    // The history index deleted: rebuilt from record 0, read from archive/.
    std::fs::remove_dir_all(&history).expect("delete the index");
    let (node, report) = try_open(&disks, &config).expect("rebuilds from the archive");
    assert_eq!(report.checkpoint_record_index, None);
    assert_eq!(u128::from(report.records_replayed), BATCHES + 1);
    assert_eq!(node.read(StateMachine::state_hash), before);
    node.shutdown();
}

#[test]
fn deleted_segments_refuse_a_history_rebuild_naming_the_missing_record() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = config(LogRetention::Delete, Some(&history));
    let disks = SimDisks::default();
    let before = run(&disks, &config);
    assert!(archived_segments(&disks).is_empty());
    assert!(!live_segments(&disks).contains(&"segment-00000000.log".to_string()));

    let (node, report) = try_open(&disks, &config).expect("reopens from the checkpoint");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(node.read(StateMachine::state_hash), before);
    node.shutdown();

    std::fs::remove_dir_all(&history).expect("delete the index");
    match try_open(&disks, &config) {
        Err(
            error @ EngineError::LogRecordsMissing {
                record_index: 0, ..
            },
        ) => {
            let text = error.to_string();
            assert!(text.contains("history index"), "{text}");
            assert!(text.contains("log records from 0 on"), "{text}");
            assert!(text.contains("deleted"), "{text}");
        }
        Err(other) => panic!("expected LogRecordsMissing, got {other}"),
        Ok(_) => panic!("the node started without the records a rebuild needs"),
    }
}

#[test]
fn deleted_segments_refuse_a_start_without_a_usable_checkpoint() {
    let config = config(LogRetention::Delete, None);
    let disks = SimDisks::default();
    run(&disks, &config);
    let mut checkpoints = disks.checkpoints.clone();
    for name in checkpoint::list(&mut checkpoints).expect("list") {
        disks
            .checkpoints
            .corrupt(&name, 70, b"\xFF")
            .expect("damage");
    }
    match try_open(&disks, &config) {
        Err(
            error @ EngineError::LogRecordsMissing {
                record_index: 0, ..
            },
        ) => {
            assert!(
                error.to_string().contains("no usable checkpoint"),
                "{error}"
            );
        }
        Err(other) => panic!("expected LogRecordsMissing, got {other}"),
        Ok(_) => panic!("the node started without the records it needs"),
    }
}
