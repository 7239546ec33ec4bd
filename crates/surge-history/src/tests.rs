//! The index over a small ledger: every derived entry is found again, statements carry the
//! right running balances and page cleanly, and sled and memory answer the same.

use surge_core::{
    account_flags, transfer_flags, Account, AccountId, Batch, BatchBuf, Config, LogPosition,
    Operation, Order, OrderAction, OrderId, OrderLine, ResultCode, Sku, SkuId, StateMachine,
    Transfer, TransferId,
};

use surge_core::{ArchivedOutcome, ArchivedTransfer};

use crate::derive::{Balances, IndexEntry, StatementLine};
use crate::{
    derive_entries, derive_entries_since, HistoryError, HistoryIndex, LsmHistory, MemoryHistory,
    SledHistory, StatementCursor,
};

const LEDGER: u32 = 1;
const BANK: AccountId = AccountId(1);
const BUYER: AccountId = AccountId(2);
const MERCHANT: AccountId = AccountId(3);

fn transfer(id: u128, debit: AccountId, credit: AccountId, amount: u64, flags: u16) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: LEDGER,
        code: 1,
        flags,
        ..Transfer::default()
    }
}

fn log() -> Vec<BatchBuf> {
    let account = |id: AccountId, flags| Account {
        id,
        ledger: LEDGER,
        code: 1,
        flags,
        ..Account::default()
    };
    let mut lines = [OrderLine::default(); 8];
    lines[0] = OrderLine {
        sku_id: SkuId(9),
        quantity: 1,
        reserved: 0,
    };
    let order = Order {
        id: OrderId(500),
        buyer_id: BUYER,
        merchant_id: MERCHANT,
        transfer_id: TransferId(501),
        amount: 30,
        timeout_ns: 1_000_000_000,
        ledger: LEDGER,
        line_count: 1,
        lines,
        ..Order::default()
    };
    let action = |transfer_id| OrderAction {
        order_id: OrderId(500),
        transfer_id: TransferId(transfer_id),
        ..OrderAction::default()
    };
    let post = Transfer {
        id: TransferId(13),
        pending_id: TransferId(12),
        amount: 5,
        flags: transfer_flags::POST_PENDING,
        ..Transfer::default()
    };
    vec![
        BatchBuf::CreateAccounts(vec![
            account(BANK, 0),
            account(BUYER, account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(MERCHANT, 0),
        ]),
        BatchBuf::CreateSkus(vec![Sku {
            id: SkuId(9),
            units_stocked: 5,
            ..Sku::default()
        }]),
        BatchBuf::CreateTransfers(vec![
            transfer(10, BANK, BUYER, 100, 0),
            transfer(11, BUYER, MERCHANT, 7, 0),
            // Fails: the buyer has 93 left. Not indexed.
            transfer(14, BUYER, MERCHANT, 1_000, 0),
            transfer(12, BUYER, MERCHANT, 20, transfer_flags::PENDING),
            post,
        ]),
        // A retry: `exists`, nothing new to index.
        BatchBuf::CreateTransfers(vec![transfer(11, BUYER, MERCHANT, 7, 0)]),
        BatchBuf::PlaceOrders(vec![order]),
        BatchBuf::PayOrders(vec![action(502)]),
        BatchBuf::RefundOrders(vec![action(503)]),
    ]
}

/// Applies the log; the state machine after it and each record's entries.
fn derive_log() -> (StateMachine, Vec<Vec<IndexEntry>>) {
    let mut state_machine = StateMachine::new(Config::default());
    let mut results = Vec::new();
    let mut derived = Vec::new();
    for (record_index, batch) in log().iter().enumerate() {
        let timestamp = state_machine.timestamp_next_min() + 1_000;
        let first_sequence = state_machine.transfer_sequence_next();
        state_machine.apply(timestamp, batch.as_batch(), &mut results);
        let entries = derive_entries(
            &state_machine,
            record_index as u64,
            batch.as_batch(),
            &results,
        );
        // Reading the batch's transfers in commit order finds what looking them up does,
        // also when the walk starts earlier (it skips other transfers) or past the end
        // (nothing to read: every transfer is looked up).
        for from in [first_sequence, 0, u64::MAX] {
            let in_order = derive_entries_since(
                &state_machine,
                Some(from),
                record_index as u64,
                batch.as_batch(),
                &results,
            );
            assert_eq!(in_order, entries, "record {record_index} from {from}");
        }
        derived.push(entries);
    }
    (state_machine, derived)
}

/// Applies the log, indexing each record into every index given.
fn run(indexes: &mut [&mut dyn HistoryIndex]) -> StateMachine {
    let (state_machine, derived) = derive_log();
    for (record_index, entries) in derived.iter().enumerate() {
        for index in indexes.iter_mut() {
            index
                .apply(record_index as u64, entries)
                .expect("index write");
        }
    }
    state_machine
}

fn balances(account: &Account) -> Balances {
    Balances {
        debits_pending: account.debits_pending,
        debits_posted: account.debits_posted,
        credits_pending: account.credits_pending,
        credits_posted: account.credits_posted,
    }
}

fn check_index(index: &dyn HistoryIndex, state_machine: &StateMachine) {
    assert_eq!(index.applied_up_to().unwrap(), Some(log().len() as u64 - 1));
    let (position, stored) = index.transfer(TransferId(13)).unwrap().expect("the post");
    assert_eq!(
        position,
        LogPosition {
            record_index: 2,
            command_index: 4
        }
    );
    assert_eq!(stored.amount, 5);
    assert_eq!(
        stored.debit_account_id, BUYER,
        "a post is stored with its accounts"
    );
    assert!(
        index.transfer(TransferId(14)).unwrap().is_none(),
        "failed: nothing created"
    );
    assert!(
        index.transfer(TransferId(502)).unwrap().is_some(),
        "the order's capture"
    );
    let events: Vec<Operation> = index
        .order_events(OrderId(500))
        .unwrap()
        .into_iter()
        .map(|(_, op)| op)
        .collect();
    assert_eq!(
        events,
        [
            Operation::PlaceOrders,
            Operation::PayOrders,
            Operation::RefundOrders
        ]
    );
    assert!(index.order_events(OrderId(501)).unwrap().is_empty());

    // The buyer's statement: every transfer that touched the wallet, in log order, each
    // with the balances right after it; the last equals the account now.
    let page = index.statement(BUYER, 0, u64::MAX, None, 100).unwrap();
    let ids: Vec<u128> = page.lines.iter().map(|line| line.transfer.id.0).collect();
    assert_eq!(ids, [10, 11, 12, 13, 501, 502, 503]);
    let buyer = state_machine.account(BUYER).unwrap();
    assert_eq!(page.lines.last().unwrap().balances_after, balances(&buyer));
    let after_hold = page.lines[2].balances_after;
    assert_eq!(
        (after_hold.debits_pending, after_hold.debits_posted),
        (20, 7)
    );
    let after_post = page.lines[3].balances_after;
    assert_eq!(
        (after_post.debits_pending, after_post.debits_posted),
        (0, 12)
    );
    assert!(page.next.is_none());

    // Pages of two lines join up to the whole statement.
    let mut joined = Vec::new();
    let mut after = None;
    loop {
        let page = index.statement(BUYER, 0, u64::MAX, after, 2).unwrap();
        assert!(page.lines.len() <= 2);
        joined.extend(page.lines);
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let full = index.statement(BUYER, 0, u64::MAX, None, 100).unwrap();
    assert_eq!(joined, full.lines);

    // A time range selects by log time.
    let first = full.lines[0].transfer.timestamp;
    let only_first = index.statement(BUYER, first, first + 1, None, 100).unwrap();
    assert_eq!(only_first.lines.len(), 1);
    assert!(index
        .statement(AccountId(99), 0, u64::MAX, None, 10)
        .unwrap()
        .lines
        .is_empty());
}

/// sled 0.34 releases its lock from a background thread some time after the last handle
/// is dropped (spacejam/sled#1234): a reopen right after a drop may find it still taken.
fn open_sled_retrying(path: &std::path::Path) -> SledHistory {
    open_sled_result(path).unwrap_or_else(|error| panic!("sled reopens: {error}"))
}

/// [`SledHistory::open`], waiting out sled's late release of its lock (up to 5 s).
fn open_sled_result(path: &std::path::Path) -> Result<SledHistory, HistoryError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledHistory::open(path) {
            Err(error) if error.is_locked() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

#[test]
fn memory_sled_and_lsm_index_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = MemoryHistory::new();
    let mut sled = SledHistory::open(&dir.path().join("history")).unwrap();
    // Memtables of one byte: every record goes to a run of its own.
    let lsm_path = dir.path().join("lsm");
    let mut lsm = LsmHistory::open_with_memtable(&lsm_path, 1).unwrap();
    let state_machine = run(&mut [&mut memory, &mut sled, &mut lsm]);
    check_index(&memory, &state_machine);
    check_index(&sled, &state_machine);
    check_index(&lsm, &state_machine);
    check_index(&lsm.reader(), &state_machine);
    sled.flush().unwrap();
    drop(sled);
    let reopened = open_sled_retrying(&dir.path().join("history"));
    check_index(&reopened, &state_machine);
    lsm.flush().unwrap();
    drop(lsm);
    let reopened = LsmHistory::open(&lsm_path).unwrap();
    assert_eq!(
        reopened.applied_up_to().unwrap(),
        Some(log().len() as u64 - 1)
    );
    check_index(&reopened, &state_machine);
}

/// Many records through small memtables (so runs are written and merged as entries
/// arrive, and reopened): every transfer and every statement page reads as the in-memory
/// index reads it.
#[test]
fn the_lsm_index_answers_as_the_memory_index_through_flushes_and_merges() {
    const ACCOUNTS: u128 = 12;
    const RECORDS: u64 = 90;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lsm");
    let mut lsm = LsmHistory::open_with_memtable(&path, 4_096).unwrap();
    let mut memory = MemoryHistory::new();
    let mut state_machine = StateMachine::new(Config::default());
    let mut results = Vec::new();
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id: AccountId(id),
            ledger: LEDGER,
            code: 1,
            ..Account::default()
        })
        .collect();
    // A fixed sequence of pseudo-random pairs (splitmix64 from seed 7).
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = seed;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    };
    let mut id = 1_000u128;
    for record_index in 0..RECORDS {
        let batch = if record_index == 0 {
            BatchBuf::CreateAccounts(accounts.clone())
        } else {
            let transfers = (0..1 + next() % 9)
                .map(|_| {
                    id += 1 + u128::from(next() % 3);
                    let debit = 1 + u128::from(next()) % ACCOUNTS;
                    let credit = 1 + (debit + u128::from(next()) % (ACCOUNTS - 1)) % ACCOUNTS;
                    transfer(id, AccountId(debit), AccountId(credit), 1 + next() % 50, 0)
                })
                .collect();
            BatchBuf::CreateTransfers(transfers)
        };
        let timestamp = state_machine.timestamp_next_min() + 1_000;
        state_machine.apply(timestamp, batch.as_batch(), &mut results);
        let entries = derive_entries(&state_machine, record_index, batch.as_batch(), &results);
        lsm.apply(record_index, &entries).unwrap();
        memory.apply(record_index, &entries).unwrap();
    }
    let same = |lsm: &dyn HistoryIndex| {
        assert_eq!(lsm.applied_up_to().unwrap(), Some(RECORDS - 1));
        for transfer_id in 1_000..=id {
            let id = TransferId(transfer_id);
            assert_eq!(
                lsm.transfer(id).unwrap(),
                memory.transfer(id).unwrap(),
                "{id}"
            );
        }
        for account in 1..=ACCOUNTS {
            let account = AccountId(account);
            let whole = memory
                .statement(account, 0, u64::MAX, None, 10_000)
                .unwrap();
            assert!(whole.lines.len() > 20, "a busy account");
            assert_eq!(
                lsm.statement(account, 0, u64::MAX, None, 10_000).unwrap(),
                whole
            );
            // A page from the middle, by time and cursor.
            let middle = &whole.lines[whole.lines.len() / 2];
            let after = Some(StatementCursor {
                timestamp: middle.transfer.timestamp,
                transfer_id: middle.transfer.id,
            });
            let to = whole.lines.last().unwrap().transfer.timestamp;
            assert_eq!(
                lsm.statement(account, 0, to, after, 7).unwrap(),
                memory.statement(account, 0, to, after, 7).unwrap()
            );
        }
    };
    same(&lsm);
    lsm.flush().unwrap();
    let stats = lsm.stats();
    assert!(stats.runs > 1 && stats.runs < RECORDS as usize, "{stats:?}");
    same(&lsm);
    drop(lsm);
    same(&LsmHistory::open(&path).unwrap());
}

/// A crash loses the memtable: the index reopens at the last record its runs hold, and is
/// caught up from the log after it.
#[test]
fn the_lsm_index_reopens_at_a_record_boundary_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lsm");
    let mut lsm = LsmHistory::open(&path).unwrap();
    let (state_machine, derived) = derive_log();
    for (record_index, entries) in derived.iter().enumerate() {
        lsm.apply(record_index as u64, entries).unwrap();
        if record_index == 3 {
            lsm.flush().unwrap();
        }
    }
    // The crash: what is on disk now, without the memtable (records 4 and later).
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(copy.join("runs")).unwrap();
    for entry in std::fs::read_dir(path.join("runs")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), copy.join("runs").join(entry.file_name())).unwrap();
        }
    }
    let mut reopened = LsmHistory::open(&copy).unwrap();
    assert_eq!(reopened.applied_up_to().unwrap(), Some(3));
    assert!(reopened.transfer(TransferId(11)).unwrap().is_some());
    for (record_index, entries) in derived.iter().enumerate().skip(4) {
        reopened.apply(record_index as u64, entries).unwrap();
    }
    check_index(&reopened, &state_machine);
    check_index(&lsm, &state_machine);
}

/// A line whose transfer is the one under its id stores it once, there; a line whose
/// transfer is not (funds a failed cross-shard transfer returns: its id names the debit
/// leg) carries its own. A line whose transfer went missing is reported, not misread.
#[test]
fn statement_lines_carry_their_transfer_only_when_the_index_does_not_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = LsmHistory::open(&dir.path().join("lsm")).unwrap();
    let mut memory = MemoryHistory::new();
    let debit_leg = Transfer {
        timestamp: 5_000,
        ..transfer(40, BUYER, MERCHANT, 9, 0)
    };
    // The return of the leg's funds: same id and time, the other way round.
    let returned = Transfer {
        debit_account_id: MERCHANT,
        credit_account_id: BUYER,
        ..debit_leg
    };
    let position = LogPosition {
        record_index: 0,
        command_index: 0,
    };
    let line = |account_id, transfer| StatementLine {
        account_id,
        position,
        transfer,
        balances_after: Balances {
            credits_posted: 9,
            ..Balances::default()
        },
    };
    let entries = [
        IndexEntry::Transfer {
            position,
            transfer: debit_leg,
        },
        IndexEntry::Statement {
            line: line(MERCHANT, debit_leg),
            transfer_indexed: true,
        },
        IndexEntry::Statement {
            line: line(BUYER, returned),
            transfer_indexed: false,
        },
    ];
    for index in [&mut lsm as &mut dyn HistoryIndex, &mut memory] {
        index.apply(0, &entries).unwrap();
        let lines = |account| {
            index
                .statement(account, 0, u64::MAX, None, 10)
                .unwrap()
                .lines
        };
        assert_eq!(lines(MERCHANT), vec![line(MERCHANT, debit_leg)]);
        assert_eq!(lines(BUYER), vec![line(BUYER, returned)]);
    }
    // A line whose transfer entry is not there.
    let orphan = IndexEntry::Statement {
        line: line(
            BANK,
            Transfer {
                id: TransferId(41),
                ..debit_leg
            },
        ),
        transfer_indexed: true,
    };
    memory.apply(1, &[orphan]).unwrap();
    let error = memory.statement(BANK, 0, u64::MAX, None, 10).unwrap_err();
    assert!(error.is_corruption(), "{error}");
}

#[test]
fn records_apply_in_order_only() {
    let mut index = MemoryHistory::new();
    index.apply(0, &[]).unwrap();
    index.apply(3, &[]).unwrap();
    let error = index.apply(3, &[]).unwrap_err();
    assert!(matches!(
        error,
        HistoryError::OutOfOrder {
            record_index: 3,
            applied_up_to: 3
        }
    ));
    assert_eq!(index.applied_up_to().unwrap(), Some(3));
}

#[test]
fn a_corrupt_value_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history");
    let mut sled = SledHistory::open(&path).unwrap();
    let state_machine = run(&mut [&mut sled]);
    let mut key = vec![b'T'];
    key.extend_from_slice(&13u128.to_be_bytes());
    sled.store.db.insert(key, vec![1, 2, 3]).unwrap();
    let error = sled.transfer(TransferId(13)).unwrap_err();
    assert!(
        matches!(
            error,
            HistoryError::Corrupt {
                reason: "value too short",
                ..
            }
        ),
        "{error}"
    );
    // The remedy: recreate and rebuild from the log.
    let mut rebuilt = SledHistory::recreate(&path).unwrap();
    assert_eq!(rebuilt.applied_up_to().unwrap(), None);
    let (replay, derived) = derive_log();
    for (record_index, entries) in derived.iter().enumerate() {
        rebuilt.apply(record_index as u64, entries).unwrap();
    }
    assert_eq!(replay.state_hash(), state_machine.state_hash());
    check_index(&rebuilt, &state_machine);
}

#[test]
fn failed_and_existing_commands_index_nothing() {
    let state_machine = StateMachine::new(Config::default());
    let transfers = [transfer(1, BANK, BUYER, 1, 0)];
    let entries = derive_entries(
        &state_machine,
        0,
        Batch::CreateTransfers(&transfers),
        &[ResultCode::Exists],
    );
    assert!(entries.is_empty());
}

#[test]
fn archive_entries_survive_a_reopen_and_corruption_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history");
    let mut state_machine = run(&mut []);
    let below = state_machine.transfer_sequence();
    let plan = state_machine.eviction_plan(below);
    let mut candidates = plan.entries.clone();
    candidates.sort_unstable_by_key(|entry| entry.id);
    assert!(!candidates.is_empty(), "the log leaves finished transfers");
    let mut memory = MemoryHistory::new();
    let mut sled = SledHistory::open(&path).unwrap();
    for index in [&mut memory as &mut dyn HistoryIndex, &mut sled] {
        index.archive(&candidates).unwrap();
        // Storing the same entries again is harmless.
        index.archive(&candidates[..1]).unwrap();
    }
    state_machine.evict(plan);
    drop(sled);
    let sled = open_sled_retrying(&path);
    for index in [&memory as &dyn HistoryIndex, &sled] {
        for entry in &candidates {
            assert_eq!(index.archived(entry.id).unwrap(), Some(*entry));
            assert_eq!(state_machine.transfer(entry.id), None, "left memory");
        }
        assert_eq!(index.archived(TransferId(999_999)).unwrap(), None);
    }
    // A flipped byte in a chunk is reported when a lookup reads it, not misread.
    drop(sled);
    let run = path.join("archive").join("archive-00000000.run");
    let mut bytes = std::fs::read(&run).unwrap();
    bytes[3] ^= 0x40;
    std::fs::write(&run, &bytes).unwrap();
    let sled = open_sled_retrying(&path);
    let error = sled.archived(candidates[1].id).unwrap_err();
    assert!(error.is_corruption(), "{error}");
    // A damaged footer, filter or fence refuses the open: the index is rebuilt.
    drop(sled);
    let last = bytes.len() - 10;
    bytes[3] ^= 0x40;
    bytes[last] ^= 0x01;
    std::fs::write(&run, &bytes).unwrap();
    let error = open_sled_result(&path).unwrap_err();
    assert!(error.is_corruption(), "{error}");
}

/// An archive entry for transfer `id`, committed or failed by its parity.
fn archived(id: u128) -> ArchivedTransfer {
    ArchivedTransfer {
        id: TransferId(id),
        outcome: if id % 2 == 0 {
            ArchivedOutcome::Committed {
                fingerprint: id as u64 ^ 0xABCD,
                pending_status: None,
            }
        } else {
            ArchivedOutcome::Failed(ResultCode::ExceedsCredits)
        },
    }
}

#[test]
fn archive_runs_find_every_entry_across_chunks_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history");
    let mut sled = SledHistory::open(&path).unwrap();
    // Ids spread over the key space, so chunk boundaries fall between them.
    let spread = |i: u128| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1 << 127;
    let first: Vec<ArchivedTransfer> = (1..=5_000).map(|i| archived(spread(i))).collect();
    let second: Vec<ArchivedTransfer> = (5_001..=5_300).map(|i| archived(spread(i))).collect();
    sled.archive(&first).unwrap();
    let reader = sled.reader();
    sled.archive(&second).unwrap();
    let mut memory = MemoryHistory::new();
    memory.archive(&first).unwrap();
    memory.archive(&second).unwrap();
    let check = |index: &dyn HistoryIndex| {
        for entry in first.iter().chain(&second) {
            assert_eq!(index.archived(entry.id).unwrap(), Some(*entry));
        }
        let missing = (6_000..7_000).map(spread).map(TransferId);
        let found = missing.filter(|id| index.archived(*id).unwrap().is_some());
        assert_eq!(found.count(), 0);
    };
    // A reader made before the second run sees it too.
    check(&reader);
    check(&memory);
    drop((sled, reader));
    // A temporary file a crash left mid-write is removed, never read.
    let temporary = path.join("archive").join("archive-00000002.run.tmp");
    std::fs::write(&temporary, b"half a run").unwrap();
    check(&open_sled_retrying(&path));
    assert!(!temporary.exists());
}
