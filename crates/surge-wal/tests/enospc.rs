//! A full disk: writes stop with a clear error (fail-stop, kind `StorageFull`), every
//! acknowledged record is recovered once space is freed, and the log goes on. Runs on
//! [`SimStorage`] with a capacity limit, and on a real 16 MiB tmpfs when the test may mount
//! one (it prints why it skips otherwise).

mod common;

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use surge_core::Operation;
use surge_wal::{
    FileStorage, GroupCommit, GroupCommitConfig, Log, LogConfig, ManualClock, Record, SimStorage,
    Storage, SubmitError, WalError,
};

/// Submits batches of `count` transfers until the log fails; returns what was
/// acknowledged and the failure.
fn fill(storage: Box<dyn Storage>, config: LogConfig, count: u32) -> (Vec<Record>, WalError) {
    let (log, _) = Log::open(storage, config).expect("open");
    let (group_commit, _output) = GroupCommit::start(
        log,
        Box::new(ManualClock::new(0)),
        GroupCommitConfig::default(),
    );
    let mut acknowledged = Vec::new();
    for seed in 0.. {
        let body = common::body(Operation::CreateTransfers, count, seed);
        let outcome = match group_commit.submit(Operation::CreateTransfers, body, count) {
            Ok(ticket) => ticket.wait(),
            Err(SubmitError::Failed(error)) => Err(error),
            Err(other) => panic!("unexpected refusal: {other}"),
        };
        match outcome {
            Ok(record) => acknowledged.push((*record).clone()),
            Err(error) => {
                // Fail-stop: the next submission is refused with the same error.
                let again = group_commit
                    .submit(Operation::Pulse, Vec::new(), 0)
                    .unwrap_err();
                assert_eq!(again, SubmitError::Failed(error.clone()));
                return (acknowledged, error);
            }
        }
    }
    unreachable!("the disk never fills")
}

fn assert_storage_full(error: &WalError) {
    match error {
        WalError::Failed { kind, reason } => {
            assert_eq!(*kind, ErrorKind::StorageFull, "{reason}");
            assert!(
                reason.contains("segment-"),
                "the error names the segment: {reason}"
            );
        }
        other => panic!("expected the fail-stop error, got {other}"),
    }
}

/// Reopens after space was freed: every acknowledged record is there, and appends work.
fn reopen_and_go_on(storage: Box<dyn Storage>, config: LogConfig, acknowledged: &[Record]) {
    let (mut log, _, records) =
        common::open_all(storage, config).expect("recovery after freeing space");
    assert!(records.len() >= acknowledged.len());
    assert_eq!(records[..acknowledged.len()], acknowledged[..]);
    let body = common::body(Operation::CreateAccounts, 1, 99);
    let placed = common::append_synced(&mut log, Operation::CreateAccounts, 1, body);
    assert_eq!(placed.record.header.record_index, records.len() as u64);
}

#[test]
fn a_full_simulated_disk_stops_writes_and_loses_nothing_acknowledged() {
    let config = LogConfig {
        shard: 0,
        segment_size_bytes: 8192,
    };
    for capacity_bytes in [20_000, 24_576, 30_000] {
        let storage = SimStorage::new();
        storage.set_capacity_bytes(Some(capacity_bytes));
        let (acknowledged, error) = fill(Box::new(storage.clone()), config, 5);
        assert_storage_full(&error);
        assert!(!acknowledged.is_empty());
        storage.power_cut_losing_all_unsynced();
        storage.set_capacity_bytes(None);
        reopen_and_go_on(Box::new(storage), config, &acknowledged);
    }
}

#[test]
fn a_full_tmpfs_stops_writes_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    if let Err(why) = mount_tmpfs(&mount_point, "size=16m") {
        println!(
            "skipped: cannot mount a 16 MiB tmpfs at {}: {why}",
            mount_point.display()
        );
        return;
    }
    let outcome = std::panic::catch_unwind(|| {
        let config = LogConfig {
            shard: 0,
            segment_size_bytes: 1024 * 1024,
        };
        let storage = FileStorage::for_data_directory(&mount_point).unwrap();
        let (acknowledged, error) = fill(Box::new(storage), config, 512);
        assert_storage_full(&error);
        assert!(
            acknowledged.len() > 100,
            "16 MiB holds more than 100 batches"
        );
        // Free space by growing the filesystem, then recover and go on.
        mount_tmpfs(&mount_point, "remount,size=64m").expect("remount larger");
        let storage = FileStorage::for_data_directory(&mount_point).unwrap();
        reopen_and_go_on(Box::new(storage), config, &acknowledged);
    });
    let unmounted = Command::new("umount").arg(&mount_point).status();
    assert!(
        unmounted.is_ok_and(|status| status.success()),
        "umount {}",
        mount_point.display()
    );
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn mount_tmpfs(mount_point: &Path, options: &str) -> Result<(), String> {
    let output = Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(mount_point)
        .output()
        .map_err(|error| format!("cannot run mount: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}
