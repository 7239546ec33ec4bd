//! The node over real files and simulated disks: batches answer with their result codes
//! once durable and applied, reads see them, a restart reproduces the same state (from the
//! log alone or from a checkpoint plus the log's tail), a damaged checkpoint and a torn log
//! tail are skipped or cut back with warnings while a bad record before valid ones refuses
//! the start, the sled history index answers after a restart and is caught up or rebuilt
//! when it is behind, deleted or corrupt, pulses expire orders and time out an order
//! saga's authorization without traffic, and an empty batch is refused.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{account, action, order, pending, sku, transfer, SimDisks};
use surge_core::constants::ORDER_AUTHORIZE_TIMEOUT_NS;
use surge_core::{
    order_message_kind, AccountId, Batch, OrderId, OrderLookup, OrderOutcome, OrderStatus,
    ResultCode, SkuId, SpanningOrder, StateMachine, TransferId, TransferLookup,
};
use surge_engine::{EngineError, Node, NodeConfig, NodeStorage, RecoveryReport};
use surge_history::{HistoryIndex, LsmHistory};
use surge_wal::record::{self, RecordHeader};
use surge_wal::{Clock, FileStorage, Log, LogConfig, ManualClock, Storage};

const BANK: u128 = 1;
const BUYER: u128 = 2;
const MERCHANT: u128 = 3;
const POOR: u128 = 4;
const SKU: u64 = 7;
const CLOCK_START_NS: u64 = 1_000_000_000;

/// Node storage over `DIR/log` and `DIR/checkpoints`.
fn file_storage(directory: &Path) -> NodeStorage {
    NodeStorage {
        log: Box::new(FileStorage::open(&directory.join("log")).expect("log directory")),
        checkpoints: Box::new(
            FileStorage::open(&directory.join("checkpoints")).expect("checkpoint directory"),
        ),
    }
}

fn small_config() -> NodeConfig {
    NodeConfig {
        log: LogConfig {
            segment_size_bytes: 64 * 1024,
            ..LogConfig::default()
        },
        // Checkpoints exactly every interval.
        checkpoint_log_percent: 0,
        ..NodeConfig::default()
    }
}

fn open_files(config: &NodeConfig, directory: &Path) -> (Node, RecoveryReport) {
    let clock: Arc<dyn Clock + Sync> = Arc::new(ManualClock::new(CLOCK_START_NS));
    Node::open(config.clone(), file_storage(directory), clock).expect("the node opens")
}

fn submit(node: &Node, batch: Batch<'_>) -> Vec<ResultCode> {
    node.submit(batch)
        .expect("submitted")
        .wait()
        .expect("durable and applied")
}

fn hash(node: &Node) -> u128 {
    node.read(StateMachine::state_hash)
}

/// Accounts, funding, a transfer that fails for lack of funds, a SKU, an order and its
/// payment: seven records. Checks every code.
fn drive_shop(node: &Node) {
    let accounts = [
        account(BANK, false),
        account(BUYER, true),
        account(MERCHANT, false),
        account(POOR, true),
    ];
    assert_eq!(
        submit(node, Batch::CreateAccounts(&accounts)),
        [ResultCode::Ok; 4]
    );
    let funding = [transfer(10, BANK, BUYER, 1_000)];
    assert_eq!(
        submit(node, Batch::CreateTransfers(&funding)),
        [ResultCode::Ok]
    );
    let transfers = [
        transfer(11, BUYER, MERCHANT, 100),
        transfer(12, POOR, MERCHANT, 1),
        transfer(13, BUYER, BUYER, 1),
    ];
    assert_eq!(
        submit(node, Batch::CreateTransfers(&transfers)),
        [
            ResultCode::Ok,
            ResultCode::ExceedsCredits,
            ResultCode::AccountsMustBeDifferent
        ]
    );
    assert_eq!(
        submit(node, Batch::CreateSkus(&[sku(SKU, 5, 0)])),
        [ResultCode::Ok]
    );
    let orders = [order(
        20,
        BUYER,
        MERCHANT,
        21,
        300,
        1_000_000_000_000,
        &[(SKU, 2)],
    )];
    assert_eq!(submit(node, Batch::PlaceOrders(&orders)), [ResultCode::Ok]);
    assert_eq!(
        submit(node, Batch::PayOrders(&[action(20, 22)])),
        [ResultCode::Ok]
    );
    // A retry of the same funding transfer is answered, not applied twice.
    assert_eq!(
        submit(node, Batch::CreateTransfers(&funding)),
        [ResultCode::Exists]
    );
}

fn check_shop(state: &StateMachine) {
    let buyer = state.account(AccountId(BUYER)).expect("buyer");
    assert_eq!(buyer.credits_posted, 1_000);
    assert_eq!(buyer.debits_posted, 400);
    assert_eq!(buyer.debits_pending, 0);
    let merchant = state.account(AccountId(MERCHANT)).expect("merchant");
    assert_eq!(merchant.credits_posted, 400);
    assert_eq!(
        state.transfer(TransferId(12)),
        Some(TransferLookup::Failed(ResultCode::ExceedsCredits))
    );
    // A malformed command is rejected without leaving a trace.
    assert_eq!(state.transfer(TransferId(13)), None);
    let sold = state.sku(SkuId(SKU)).expect("sku");
    assert_eq!((sold.units_available, sold.units_sold), (3, 2));
    match state.order(OrderId(20)) {
        Some(OrderLookup::Placed(view)) => {
            assert_eq!(view.order.status, OrderStatus::Paid as u16)
        }
        other => panic!("order 20: {other:?}"),
    }
    common::check_invariants(state).expect("invariants");
}

#[test]
fn batches_apply_and_a_restart_reproduces_the_state() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = small_config();
    let (node, report) = open_files(&config, directory.path());
    assert_eq!(report.records_replayed, 0);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    drive_shop(&node);
    node.read(check_shop);
    let before = hash(&node);
    let stats = node.commit_stats();
    assert_eq!(stats.records, 7);
    node.shutdown();

    let (node, report) = open_files(&config, directory.path());
    assert_eq!(report.checkpoint_record_index, None);
    assert_eq!(report.records_replayed, 7);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(hash(&node), before);
    node.read(check_shop);
    // It goes on accepting after the restart.
    let more = [transfer(30, BANK, MERCHANT, 5)];
    assert_eq!(
        submit(&node, Batch::CreateTransfers(&more)),
        [ResultCode::Ok]
    );
    node.shutdown();
}

/// Resetting the latencies forgets the apply and sync times recorded so far (a benchmark's
/// set-up) and keeps the counts; what follows is recorded again.
#[test]
fn latencies_reset_leave_the_counts() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (node, _) = open_files(&small_config(), directory.path());
    drive_shop(&node);
    // A submitter has its codes before the apply thread counts the record: wait for it.
    let settled = |node: &Node| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.apply_stats().records < node.commit_stats().records {
            assert!(
                Instant::now() < deadline,
                "the apply thread counts every record"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    settled(&node);
    let (applied, committed) = (node.apply_stats(), node.commit_stats());
    assert!(applied.apply_latency_us_max > 0 && committed.sync_latency_us_max > 0);
    node.reset_latencies();
    let (reset_applied, reset_committed) = (node.apply_stats(), node.commit_stats());
    assert_eq!(reset_applied.apply_latency_us_max, 0);
    assert_eq!(reset_committed.sync_latency_us_max, 0);
    assert_eq!(reset_applied.records, applied.records);
    assert_eq!(reset_committed.records, committed.records);
    let more = [transfer(30, BANK, MERCHANT, 5)];
    assert_eq!(
        submit(&node, Batch::CreateTransfers(&more)),
        [ResultCode::Ok]
    );
    settled(&node);
    assert!(node.apply_stats().apply_latency_us_max > 0);
    assert!(node.commit_stats().sync_latency_us_max > 0);
    node.shutdown();
}

#[test]
fn a_restart_loads_the_newest_checkpoint_and_replays_only_the_tail() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = NodeConfig {
        checkpoint_interval_records: 3,
        checkpoints_kept: 2,
        ..small_config()
    };
    let (node, _) = open_files(&config, directory.path());
    drive_shop(&node);
    let before = hash(&node);
    node.shutdown();
    // Seven records (0..=6): checkpoints after records 2 and 5, both kept.
    let checkpoints = directory.path().join("checkpoints");
    let mut names: Vec<String> = std::fs::read_dir(&checkpoints)
        .expect("checkpoint directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");

    let (node, report) = open_files(&config, directory.path());
    assert_eq!(report.checkpoint_record_index, Some(5));
    assert_eq!(report.records_replayed, 1);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(hash(&node), before);
    node.read(check_shop);
    node.shutdown();

    // Flip a byte in the middle of the newest checkpoint: it is skipped with a warning
    // naming it, the older one is loaded, and the state is the same.
    let newest = checkpoints.join(names.last().expect("a checkpoint"));
    let mut bytes = std::fs::read(&newest).expect("checkpoint bytes");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&newest, &bytes).expect("damage the checkpoint");
    let (node, report) = open_files(&config, directory.path());
    assert_eq!(report.checkpoint_record_index, Some(2));
    assert_eq!(report.records_replayed, 4);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains(names.last().expect("a checkpoint")),
        "{:?}",
        report.warnings
    );
    assert_eq!(hash(&node), before);
    node.read(check_shop);
    node.shutdown();
}

#[test]
fn a_torn_log_tail_is_cut_back_with_a_warning() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_START_NS);
    let config = small_config();
    let (node, _) = disks.open(&config, &clock);
    drive_shop(&node);
    let before = hash(&node);
    node.shutdown();

    // Write the next record as a crash leaves it: all but its last bytes reached the disk.
    let (log, recovered) =
        Log::open(Box::new(disks.log.clone()), config.log).expect("the log opens");
    let tail = log.tail();
    drop(log);
    assert_eq!(recovered.record_indexes, 0..7);
    let header = RecordHeader {
        shard: config.log.shard,
        record_index: tail.record_index,
        sequence_first: tail.sequence,
        timestamp_ns: tail.timestamp_ns_min,
        count: 1,
        operation: surge_core::Operation::CreateTransfers,
        body_size_bytes: 0,
        checksum_previous: tail.checksum_previous,
        checksum_body: 0,
        checksum_header: 0,
    };
    let body = [transfer(40, BANK, MERCHANT, 7)];
    let mut encoded = Vec::new();
    record::encode(&header, Batch::CreateTransfers(&body).body(), &mut encoded);
    let segment = surge_wal::segment::segment_name(tail.segment_index);
    // Cut inside the body's non-zero bytes (the tail of a transfer is zeros, which the
    // preallocated segment already holds).
    let torn = &encoded[..64 + 40];
    disks
        .log
        .corrupt(&segment, tail.offset, torn)
        .expect("write the torn record");

    let (node, report) = disks.open(&config, &clock);
    assert_eq!(report.records_replayed, 7);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let warning = &report.warnings[0];
    assert!(warning.contains("torn tail"), "{warning}");
    assert!(warning.contains(&segment), "{warning}");
    assert!(
        warning.contains(&format!("offset {}", tail.offset)),
        "{warning}"
    );
    assert_eq!(hash(&node), before);
    assert_eq!(node.read(|state| state.transfer(TransferId(40))), None);
    // The cut-back tail takes the next record.
    let next = [transfer(41, BANK, MERCHANT, 7)];
    assert_eq!(
        submit(&node, Batch::CreateTransfers(&next)),
        [ResultCode::Ok]
    );
    node.shutdown();
    let records = common::read_log(&disks.log, config.log);
    assert_eq!(records.len(), 8);
    assert_eq!(records[7].header.record_index, 7);
}

fn check_history(directory: &Path) {
    let index = LsmHistory::open(directory).expect("the history index opens");
    assert_eq!(index.applied_up_to().expect("applied up to"), Some(6));
    let (position, found) = index
        .transfer(TransferId(11))
        .expect("lookup")
        .expect("transfer 11 is indexed");
    assert_eq!(position.record_index, 2);
    assert_eq!(position.command_index, 0);
    assert_eq!(found.amount, 100);
    assert_eq!(index.transfer(TransferId(12)).expect("lookup"), None);
    let page = index
        .statement(AccountId(BUYER), 0, u64::MAX, None, 100)
        .expect("statement");
    // Funding, the transfer to the merchant, the order's hold and its capture.
    let ids: Vec<u128> = page.lines.iter().map(|line| line.transfer.id.0).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(&ids[..2], &[10, 11]);
    let last = page.lines.last().expect("a line");
    assert_eq!(last.balances_after.debits_posted, 400);
    assert_eq!(last.balances_after.credits_posted, 1_000);
    drop(index);
}

#[test]
fn the_history_index_answers_after_a_restart_and_is_rebuilt_when_deleted() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = NodeConfig {
        history_directory: Some(history.clone()),
        checkpoint_interval_records: 3,
        ..small_config()
    };
    let (node, _) = open_files(&config, directory.path());
    drive_shop(&node);
    let before = hash(&node);
    node.shutdown();
    check_history(&history);

    let (node, report) = open_files(&config, directory.path());
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.checkpoint_record_index, Some(5));
    assert_eq!(hash(&node), before);
    node.shutdown();
    check_history(&history);

    // Deleted while the node is down: rebuilt from the whole log on the next start.
    std::fs::remove_dir_all(&history).expect("delete the index");
    let (node, report) = open_files(&config, directory.path());
    assert_eq!(report.checkpoint_record_index, None);
    assert_eq!(report.records_replayed, 7);
    assert_eq!(hash(&node), before);
    node.shutdown();
    check_history(&history);
}

#[test]
fn pulses_expire_an_unpaid_order_without_traffic() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_START_NS);
    let (node, _) = disks.open(&small_config(), &clock);
    let accounts = [
        account(BANK, false),
        account(BUYER, true),
        account(MERCHANT, false),
    ];
    assert_eq!(
        submit(&node, Batch::CreateAccounts(&accounts)),
        [ResultCode::Ok; 3]
    );
    let funding = [transfer(10, BANK, BUYER, 1_000)];
    assert_eq!(
        submit(&node, Batch::CreateTransfers(&funding)),
        [ResultCode::Ok]
    );
    assert_eq!(
        submit(&node, Batch::CreateSkus(&[sku(SKU, 5, 0)])),
        [ResultCode::Ok]
    );
    let timeout_ns = 1_000_000;
    let orders = [order(20, BUYER, MERCHANT, 21, 300, timeout_ns, &[(SKU, 2)])];
    assert_eq!(submit(&node, Batch::PlaceOrders(&orders)), [ResultCode::Ok]);
    // A direct pending transfer with a timeout expires the same way.
    let hold = [pending(30, BUYER, MERCHANT, 50, timeout_ns)];
    assert_eq!(
        submit(&node, Batch::CreateTransfers(&hold)),
        [ResultCode::Ok]
    );
    let held = node.read(|state| state.account(AccountId(BUYER)).expect("buyer"));
    assert_eq!(held.debits_pending, 350);
    let records_before = node.commit_stats().records;
    // Nothing is due yet, so nothing is logged.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(node.commit_stats().records, records_before);

    clock.advance_ns(2 * timeout_ns);
    let deadline = Instant::now() + Duration::from_secs(2);
    let expired = |state: &StateMachine| {
        let status = match state.order(OrderId(20)) {
            Some(OrderLookup::Placed(view)) => view.order.status,
            _ => 0,
        };
        status == OrderStatus::Expired as u16
    };
    while !node.read(expired) {
        assert!(
            Instant::now() < deadline,
            "the order did not expire within 2 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    node.read(|state| {
        let buyer = state.account(AccountId(BUYER)).expect("buyer");
        assert_eq!(buyer.debits_pending, 0);
        assert_eq!(buyer.debits_posted, 0);
        let stock = state.sku(SkuId(SKU)).expect("sku");
        assert_eq!((stock.units_available, stock.units_reserved), (5, 0));
        common::check_invariants(state).expect("invariants");
    });
    assert!(node.commit_stats().records > records_before);
    let after = hash(&node);
    node.shutdown();
    // The pulse is in the log: a restart reaches the same state.
    let (node, _) = disks.open(&small_config(), &clock);
    assert_eq!(hash(&node), after);
    node.shutdown();
}

#[test]
fn pulses_time_out_an_authorization_that_does_not_come_back() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_START_NS);
    let (node, _) = disks.open(&small_config(), &clock);
    assert_eq!(
        submit(&node, Batch::CreateAccounts(&[account(MERCHANT, false)])),
        [ResultCode::Ok]
    );
    assert_eq!(
        submit(&node, Batch::CreateSkus(&[sku(SKU, 5, 0)])),
        [ResultCode::Ok]
    );
    // This node is the order's shard; the buyer lives on shard 1, which never answers.
    let long = 3_600_000_000_000;
    let spanning = SpanningOrder {
        order: order(20, BUYER, MERCHANT, 21, 300, long, &[(SKU, 2)]),
        buyer_shard: 1,
        merchant_shard: 0,
        merchant_ledger: common::LEDGER,
        shard_count: 0,
    };
    assert_eq!(
        submit(&node, Batch::ReserveOrders(&[spanning])),
        [ResultCode::Ok]
    );
    assert_eq!(node.read(StateMachine::order_outbox).len(), 1);
    let units = |node: &Node| {
        node.read(|state| {
            let stock = state.sku(SkuId(SKU)).expect("sku");
            (stock.units_available, stock.units_reserved)
        })
    };
    assert_eq!(units(&node), (3, 2));
    clock.advance_ns(ORDER_AUTHORIZE_TIMEOUT_NS + 1_000_000);
    let deadline = Instant::now() + Duration::from_secs(2);
    let timed_out = |state: &StateMachine| {
        state.order(OrderId(20))
            == Some(OrderLookup::Failed(ResultCode::OrderAuthorizationTimedOut))
    };
    while !node.read(timed_out) {
        assert!(
            Instant::now() < deadline,
            "the authorization did not time out within 2 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(units(&node), (5, 0));
    // The hold was made after all: its outcome sends the void.
    let outcome = OrderOutcome {
        transfer_id: TransferId(21),
        code: ResultCode::Ok.as_u32(),
        kind: order_message_kind::AUTHORIZE,
        reserved: [0; 8],
    };
    assert_eq!(
        submit(&node, Batch::OrderConfirm(&[outcome])),
        [ResultCode::Ok]
    );
    let outbox = node.read(StateMachine::order_outbox);
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].kind, order_message_kind::EXPIRE);
    node.read(|state| common::check_invariants(state).expect("invariants"));
    let after = hash(&node);
    node.shutdown();
    // The timeout's pulse is in the log: a restart reaches the same state.
    let (node, _) = disks.open(&small_config(), &clock);
    assert_eq!(hash(&node), after);
    assert!(node.read(timed_out));
    assert_eq!(node.read(StateMachine::order_outbox), outbox);
    node.shutdown();
}

#[test]
fn an_empty_batch_is_refused() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_START_NS);
    let (node, _) = disks.open(&small_config(), &clock);
    let refused = node.submit(Batch::CreateTransfers(&[])).map(|_| ());
    assert!(matches!(refused, Err(EngineError::EmptyBatch)));
    let refused = node.submit(Batch::Pulse).map(|_| ());
    assert!(matches!(refused, Err(EngineError::EmptyBatch)));
    assert_eq!(node.commit_stats().records, 0);
    node.shutdown();
    let mut log: Box<dyn Storage> = Box::new(disks.log.clone());
    assert_eq!(log.list().expect("list").len(), 1);
}

fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the directory") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_directory(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Record 0: the accounts `BANK` and `MERCHANT`.
fn create_bank_and_merchant(node: &Node) {
    let accounts = [account(BANK, false), account(MERCHANT, false)];
    assert_eq!(
        submit(node, Batch::CreateAccounts(&accounts)),
        [ResultCode::Ok; 2]
    );
}

/// Seven records of one transfer each, ids 100 to 106, amount = id.
fn pay_merchant_seven_times(node: &Node) {
    for id in 100..107 {
        let batch = [transfer(id, BANK, MERCHANT, id as u64)];
        assert_eq!(
            submit(node, Batch::CreateTransfers(&batch)),
            [ResultCode::Ok]
        );
    }
}

/// The index keeps its newest entries in memory; a crash loses them. It is written out
/// before every checkpoint, so after a crash it is never behind the newest checkpoint:
/// recovery starts there, not from record 0, and catches the index up from the log.
#[test]
fn after_a_crash_recovery_starts_at_the_checkpoint_and_catches_the_index_up() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let running = directory.path().join("running");
    let config = NodeConfig {
        history_directory: Some(running.join("history")),
        checkpoint_interval_records: 3,
        ..small_config()
    };
    let (node, _) = open_files(&config, &running);
    create_bank_and_merchant(&node);
    pay_merchant_seven_times(&node);
    let before = hash(&node);
    // The checkpoint thread writes the checkpoint after record 5: wait for it.
    let newest = running
        .join("checkpoints")
        .join(surge_wal::checkpoint::file_name(Some(5)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !newest.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after record 5"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // The crash: the files as they are now, without what the index holds in memory.
    let crashed = directory.path().join("crashed");
    for part in ["log", "checkpoints", "history"] {
        copy_directory(&running.join(part), &crashed.join(part));
    }
    node.shutdown();
    let config = NodeConfig {
        history_directory: Some(crashed.join("history")),
        ..config
    };
    // Records 0..=7, checkpoints after records 2 and 5.
    let (node, report) = open_files(&config, &crashed);
    assert_eq!(report.checkpoint_record_index, Some(5));
    assert_eq!(report.records_replayed, 2);
    assert_eq!(hash(&node), before);
    node.shutdown();
    check_seven_payments_indexed(&crashed.join("history"));
}

/// The index at `history` holds the records of [`create_bank_and_merchant`] and
/// [`pay_merchant_seven_times`]: up to record 7, each payment at its record.
fn check_seven_payments_indexed(history: &Path) {
    let index = LsmHistory::open(history).expect("the history index opens");
    assert_eq!(index.applied_up_to().expect("applied up to"), Some(7));
    for id in 100..107u128 {
        let (position, found) = index
            .transfer(TransferId(id))
            .expect("lookup")
            .expect("indexed after catching up");
        assert_eq!(position.record_index, (id - 99) as u64);
        assert_eq!(found.amount, id as u64);
    }
}

#[test]
fn a_history_index_behind_the_checkpoint_is_caught_up_from_the_log() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = NodeConfig {
        history_directory: Some(history.clone()),
        checkpoint_interval_records: 3,
        ..small_config()
    };
    let (node, _) = open_files(&config, directory.path());
    create_bank_and_merchant(&node);
    node.shutdown();
    // The index as a crash long ago left it: at record 0, before any checkpoint.
    let stale = directory.path().join("history-stale");
    copy_directory(&history, &stale);

    let (node, _) = open_files(&config, directory.path());
    pay_merchant_seven_times(&node);
    let before = hash(&node);
    node.shutdown();
    std::fs::remove_dir_all(&history).expect("drop the current index");
    std::fs::rename(&stale, &history).expect("put the stale index back");

    // Records 0..=7; the newest checkpoint is at record 5, the index is behind it: the
    // node replays the whole log and catches the index up.
    let (node, report) = open_files(&config, directory.path());
    assert_eq!(report.checkpoint_record_index, None);
    assert_eq!(report.records_replayed, 8);
    assert_eq!(hash(&node), before);
    node.shutdown();
    check_seven_payments_indexed(&history);
}

#[test]
fn a_corrupt_history_index_is_rebuilt_from_the_log_with_a_warning() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = NodeConfig {
        history_directory: Some(history.clone()),
        ..small_config()
    };
    let (node, _) = open_files(&config, directory.path());
    drive_shop(&node);
    let before = hash(&node);
    node.shutdown();
    // Garbage over every run of the index (the shutdown wrote what was in memory).
    let mut damaged = 0;
    for entry in std::fs::read_dir(history.join("runs")).expect("read the index directory") {
        let entry = entry.expect("entry");
        if entry.file_name() != "LOCK" {
            damaged += 1;
            let len = entry.metadata().expect("metadata").len() as usize;
            std::fs::write(entry.path(), vec![0xA5; len.max(64)]).expect("damage");
        }
    }
    assert!(damaged > 0, "the index has runs");
    let (node, report) = open_files(&config, directory.path());
    assert!(
        report
            .warnings
            .iter()
            .any(|warning| warning.contains("history index rebuilt")),
        "{:?}",
        report.warnings
    );
    assert_eq!(hash(&node), before);
    node.shutdown();
    check_history(&history);
}

#[test]
fn a_bad_record_before_valid_ones_refuses_to_start_naming_segment_and_offset() {
    let disks = SimDisks::default();
    let clock = ManualClock::new(CLOCK_START_NS);
    let config = small_config();
    let (node, _) = disks.open(&config, &clock);
    drive_shop(&node);
    node.shutdown();
    let records = common::read_log(&disks.log, config.log);
    let offset: u64 = records[..2]
        .iter()
        .map(|record| record.header.record_size_bytes() as u64)
        .sum();
    let segment = surge_wal::segment::segment_name(0);
    let mut byte = disks.log.contents(&segment).expect("segment")[offset as usize + 70];
    byte ^= 0x01;
    disks
        .log
        .corrupt(&segment, offset + 70, &[byte])
        .expect("flip a bit of record 2's body");
    let clock: Arc<dyn Clock + Sync> = Arc::new(clock);
    match Node::open(config, disks.node_storage(), clock) {
        Err(EngineError::Recovery(surge_wal::RecoveryError::Corrupt {
            segment: found,
            offset: at,
            ..
        })) => assert_eq!((found, at), (segment, offset)),
        Err(error) => panic!("expected log corruption, got {error}"),
        Ok(_) => panic!("a node started on a log with a bad record in the middle"),
    }
}

/// Checkpoints of one log over another log: the record a checkpoint reflects is checked
/// against the log (read as a stream) before anything is applied.
#[test]
fn a_checkpoint_whose_record_the_log_does_not_hold_refuses_to_start() {
    let clock = ManualClock::new(CLOCK_START_NS);
    let config = NodeConfig {
        checkpoint_interval_records: 3,
        checkpoints_kept: 1,
        ..small_config()
    };
    let shop = SimDisks::default();
    let (node, _) = shop.open(&config, &clock);
    drive_shop(&node);
    node.shutdown();
    // Seven other records (the newest checkpoint is at record 5), or just two.
    for (batches, expected) in [(7u128, "checkpoint says"), (2, "the log holds 2 records")] {
        let other = SimDisks::default();
        let (node, _) = other.open(&small_config(), &clock);
        let accounts = [account(BANK, false), account(MERCHANT, false)];
        submit(&node, Batch::CreateAccounts(&accounts));
        for id in 1..batches {
            submit(
                &node,
                Batch::CreateTransfers(&[transfer(id, BANK, MERCHANT, 1)]),
            );
        }
        node.shutdown();
        let mixed = SimDisks {
            log: other.log.clone(),
            checkpoints: shop.checkpoints.clone(),
        };
        let clock: Arc<dyn Clock + Sync> = Arc::new(clock.clone());
        match Node::open(config.clone(), mixed.node_storage(), clock) {
            Err(
                error @ EngineError::CheckpointMismatch {
                    record_index: 5, ..
                },
            ) => {
                assert!(error.to_string().contains(expected), "{error}");
            }
            Err(error) => panic!("expected a checkpoint mismatch, got {error}"),
            Ok(_) => panic!("a node started from a checkpoint of another log"),
        }
    }
}

/// Another holder of the history index (a second node started on the same directories by
/// mistake) is lock contention, not corruption: the node must not delete the index under
/// it.
#[test]
fn a_locked_history_index_is_not_deleted_as_corrupt() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let history = directory.path().join("history");
    let config = NodeConfig {
        history_directory: Some(history.clone()),
        ..small_config()
    };
    let (node, _) = open_files(&config, directory.path());
    drive_shop(&node);
    node.shutdown();
    // Someone else holds the index's lock.
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(history.join("runs").join("LOCK"))
        .expect("the index's lock file");
    fs2::FileExt::try_lock_exclusive(&holder).expect("take the index's lock");
    let runs = |path: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .expect("the index's directory")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        names.sort();
        names
    };
    let before = runs(&history.join("runs"));
    assert!(before.len() > 1, "the shutdown wrote a run: {before:?}");
    let clock: Arc<dyn Clock + Sync> = Arc::new(ManualClock::new(CLOCK_START_NS));
    let opened = Node::open(config.clone(), file_storage(directory.path()), clock);
    let after = runs(&history.join("runs"));
    match opened {
        Ok((node, report)) => {
            node.shutdown();
            panic!("the node opened over a locked index: {:?}", report.warnings);
        }
        Err(error) => assert!(error.to_string().contains("in use"), "{error}"),
    }
    assert_eq!(before, after, "the locked index was touched");
    drop(holder);
}

#[test]
fn uncollected_result_codes_are_bounded() {
    // Bounded everything: codes nobody collects (a dropped `Pending`) must not pile up.
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = NodeConfig {
        results_uncollected_max: 2,
        ..small_config()
    };
    let (node, _) = open_files(&config, directory.path());
    let batches: Vec<[surge_core::Account; 1]> =
        (1..=4).map(|id| [account(100 + id, false)]).collect();
    let pendings: Vec<_> = batches
        .iter()
        .map(|batch| node.submit(Batch::CreateAccounts(batch)).expect("accepted"))
        .collect();
    let mut pendings = pendings.into_iter();
    let first = pendings.next().expect("four");
    let last = pendings.next_back().expect("four");
    // Records apply in order: once the last one answers, all four were applied.
    assert_eq!(
        last.wait().expect("the newest codes are kept"),
        [ResultCode::Ok]
    );
    match first.wait() {
        Err(EngineError::ResultsDropped { record_index }) => assert_eq!(record_index, 0),
        other => panic!("expected the oldest codes to be dropped, got {other:?}"),
    }
    // The batch itself took effect: only its answer was dropped.
    node.read(|state| assert!(state.account(AccountId(101)).is_some()));
    node.shutdown();
}
