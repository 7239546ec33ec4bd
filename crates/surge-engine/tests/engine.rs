//! The engine over real files: shards, routing, admission, the data directory's shard
//! count, reads.

mod common;

use common::{account, transfer};
use surge_core::{shard_of, AccountId, Batch, ResultCode};
use surge_engine::{DispatchCursor, Engine, EngineConfig, EngineError};

fn config(directory: &std::path::Path, shards: usize) -> EngineConfig {
    let mut config = EngineConfig::new(directory);
    config.shards = shards;
    config.history = false;
    config
}

/// The `nth` account id owned by `shard`.
fn on_shard(shard: u32, shards: u32, nth: usize) -> u128 {
    (1..)
        .filter(|id| shard_of(*id, shards) == shard)
        .nth(nth)
        .expect("ids exist on every shard")
}

/// Creates two accounts on each of the engine's `shards` in one batch; their ids, shard
/// after shard.
fn two_accounts_per_shard(engine: &Engine, shards: u32) -> Vec<u128> {
    let ids: Vec<u128> = (0..shards)
        .flat_map(|shard| (0..2).map(move |nth| on_shard(shard, shards, nth)))
        .collect();
    let accounts: Vec<_> = ids.iter().map(|&id| account(id, false)).collect();
    let codes = engine
        .submit_wait(Batch::CreateAccounts(&accounts))
        .expect("accounts");
    assert!(
        codes.iter().all(|&code| code == ResultCode::Ok),
        "{codes:?}"
    );
    ids
}

#[test]
fn one_and_two_shards_apply_local_batches() {
    for shards in [1u32, 2] {
        let directory = tempfile::tempdir().expect("tempdir");
        let (engine, report) =
            Engine::open(config(directory.path(), shards as usize)).expect("open");
        assert_eq!(report.shards.len(), shards as usize);
        let ids = two_accounts_per_shard(&engine, shards);
        // Transfers within each shard, interleaved in one batch.
        let transfers: Vec<_> = (0..shards as usize)
            .map(|shard| transfer(100 + shard as u128, ids[2 * shard], ids[2 * shard + 1], 7))
            .collect();
        let codes = engine
            .submit_wait(Batch::CreateTransfers(&transfers))
            .expect("transfers");
        assert!(
            codes.iter().all(|&code| code == ResultCode::Ok),
            "{codes:?}"
        );
        for shard in 0..shards as usize {
            let credited = engine
                .account(AccountId(ids[2 * shard + 1]))
                .expect("account");
            assert_eq!(credited.credits_posted, 7);
        }
        let stats = engine.stats();
        assert_eq!(stats.shards.len(), shards as usize);
        assert!(stats.shards.iter().all(|shard| shard.commands >= 2));
        engine.shutdown();
        // Reopened: the state is recovered from each shard's log.
        let (engine, _) = Engine::open(config(directory.path(), shards as usize)).expect("reopen");
        assert_eq!(
            engine
                .account(AccountId(ids[1]))
                .expect("account")
                .credits_posted,
            7
        );
        engine.shutdown();
    }
}

#[test]
fn the_shard_count_cannot_change() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    engine.shutdown();
    let refused = Engine::open(config(directory.path(), 1))
        .err()
        .expect("refused");
    assert!(matches!(refused, EngineError::ShardCount(_)), "{refused}");
    assert!(
        refused.to_string().contains("created with 2 shards"),
        "{refused}"
    );
    let refused = Engine::open(config(directory.path(), 0))
        .err()
        .expect("refused");
    assert!(matches!(refused, EngineError::ShardCount(_)), "{refused}");
}

#[test]
fn empty_batches_and_pulses_are_refused() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let refused = engine.submit_wait(Batch::CreateAccounts(&[])).err();
    assert!(matches!(refused, Some(EngineError::EmptyBatch)));
    let refused = engine.submit_wait(Batch::Pulse).err();
    assert!(matches!(refused, Some(EngineError::EmptyBatch)));
}

#[test]
fn a_full_shard_answers_busy_at_once() {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut config = config(directory.path(), 1);
    config.batches_in_flight_per_shard_max = 1;
    let (engine, _) = Engine::open(config).expect("open");
    let accounts: Vec<_> = (1..=4096).map(|id| account(id, false)).collect();
    let mut busy = 0;
    let (sender, receiver) = crossbeam_channel::unbounded();
    for chunk in accounts.chunks(8) {
        let sender = sender.clone();
        match engine.submit(
            Batch::CreateAccounts(chunk),
            Box::new(move |result| sender.send(result).expect("send")),
        ) {
            Ok(()) => {}
            Err(error) => {
                assert!(error.is_busy(), "{error}");
                busy += 1;
            }
        }
    }
    drop(sender);
    let completed = receiver.iter().count();
    assert_eq!(completed + busy, accounts.len() / 8);
    assert!(
        busy > 0,
        "512 back-to-back submissions never found the shard full"
    );
    assert_eq!(engine.stats().shards[0].busy, busy as u64);
}

#[test]
fn dispatch_cursors_round_trip() {
    let cursor: DispatchCursor = "12.7".parse().expect("parse");
    assert_eq!(cursor, DispatchCursor(vec![12, 7]));
    assert_eq!(cursor.to_string(), "12.7");
    assert!("12.x".parse::<DispatchCursor>().is_err());
    assert_eq!(
        "".parse::<DispatchCursor>().expect("empty"),
        DispatchCursor::default()
    );
}

/// Opens shard `index` of a 2-shard data directory as a bare node (what the engine runs).
fn bare_node(directory: &std::path::Path, index: u32) -> surge_engine::Node {
    use surge_engine::{Node, NodeConfig, NodeStorage};
    use surge_wal::{FileStorage, SystemClock};
    let shard = directory.join(format!("shard-{index:02}"));
    let storage = NodeStorage {
        log: Box::new(FileStorage::open(&shard.join("log")).expect("log")),
        checkpoints: Box::new(FileStorage::open(&shard.join("checkpoints")).expect("checkpoints")),
    };
    Node::open(
        NodeConfig::default(),
        storage,
        std::sync::Arc::new(SystemClock),
    )
    .expect("open")
    .0
}

fn leg(id: u128, debit: u128, credit: u128, amount: u64) -> surge_core::ShardLeg {
    surge_core::ShardLeg {
        transfer: transfer(id, debit, credit, amount),
        source_shard: shard_of(debit, 2),
        destination_shard: shard_of(credit, 2),
        credit_account_ledger: common::LEDGER,
        reserved: [0; 4],
    }
}

#[test]
fn cross_shard_transfers_settle_compensate_and_answer_retries() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let (bank, payer, payee) = (on_shard(0, 2, 0), on_shard(0, 2, 1), on_shard(1, 2, 0));
    let capped = on_shard(1, 2, 1);
    let mut accounts = vec![
        account(bank, false),
        account(payer, true),
        account(payee, false),
    ];
    accounts.push(surge_core::Account {
        flags: surge_core::account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ..account(capped, false)
    });
    let codes = engine
        .submit_wait(Batch::CreateAccounts(&accounts))
        .expect("accounts");
    assert_eq!(codes, [ResultCode::Ok; 4]);
    let fund = [transfer(1, bank, payer, 100)];
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&fund))
            .expect("fund"),
        [ResultCode::Ok]
    );
    let transfers = [
        transfer(2, payer, payee, 30),
        transfer(3, payer, capped, 5),
        transfer(4, payer, on_shard(1, 2, 7), 5),
        transfer(5, payer, payee, 1_000),
    ];
    let codes = engine
        .submit_wait(Batch::CreateTransfers(&transfers))
        .expect("transfers");
    assert_eq!(
        codes,
        [
            ResultCode::Ok,
            ResultCode::ExceedsDebits,
            ResultCode::CreditAccountNotFound,
            ResultCode::ExceedsCredits,
        ]
    );
    assert_eq!(
        engine
            .account(AccountId(payer))
            .expect("payer")
            .debits_posted,
        35
    );
    assert_eq!(
        engine
            .account(AccountId(payer))
            .expect("payer")
            .credits_posted,
        105
    );
    assert_eq!(
        engine
            .account(AccountId(payee))
            .expect("payee")
            .credits_posted,
        30
    );
    // Retries answer as on one shard.
    let codes = engine
        .submit_wait(Batch::CreateTransfers(&transfers))
        .expect("retry");
    assert_eq!(
        codes,
        [
            ResultCode::Exists,
            ResultCode::IdAlreadyFailed,
            ResultCode::IdAlreadyFailed,
            ResultCode::IdAlreadyFailed,
        ]
    );
    // Lookups show the client's transfer.
    match engine.transfer(surge_core::TransferId(2)).expect("lookup") {
        Some(surge_core::TransferLookup::Committed { transfer, .. }) => {
            assert_eq!(transfer.debit_account_id, AccountId(payer));
            assert_eq!(transfer.credit_account_id, AccountId(payee));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        engine.transfer(surge_core::TransferId(3)).expect("lookup"),
        Some(surge_core::TransferLookup::Failed(
            ResultCode::ExceedsDebits
        ))
    );
    // Clients cannot send the engine's own messages.
    let refused = engine
        .submit_wait(Batch::ShardDebit(&[leg(9, payer, payee, 1)]))
        .err();
    assert!(
        matches!(refused, Some(EngineError::OperationNotAllowed(_))),
        "{refused:?}"
    );
    assert_eq!(engine.cross_shard_in_flight(), 0);
}

#[test]
fn a_crash_between_the_legs_loses_nothing_and_applies_nothing_twice() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (payer, payee, other) = (on_shard(0, 2, 0), on_shard(1, 2, 0), on_shard(1, 2, 1));
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let accounts = [
        account(payer, false),
        account(payee, false),
        account(other, false),
    ];
    assert_eq!(
        engine
            .submit_wait(Batch::CreateAccounts(&accounts))
            .expect("accounts"),
        [ResultCode::Ok; 3]
    );
    engine.shutdown();
    // The state a crash leaves: transfer 7's debit leg durable on shard 0 and nothing on
    // shard 1; transfer 8's debit and credit legs durable, its resolve not.
    let source = bare_node(directory.path(), 0);
    let legs = [leg(7, payer, payee, 11), leg(8, payer, other, 13)];
    let codes = source.submit_bytes(
        surge_core::Operation::ShardDebit,
        bytemuck::cast_slice(&legs).to_vec(),
        2,
    );
    assert_eq!(
        codes.expect("submit").wait().expect("debit legs"),
        [ResultCode::Ok; 2]
    );
    source.shutdown();
    let destination = bare_node(directory.path(), 1);
    let credit = destination.submit_bytes(
        surge_core::Operation::ShardCredit,
        bytemuck::cast_slice(&legs[1..]).to_vec(),
        1,
    );
    assert_eq!(
        credit.expect("submit").wait().expect("credit leg"),
        [ResultCode::Ok]
    );
    destination.shutdown();
    // The engine delivers what the outbox holds; the redelivered leg dedupes.
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("reopen");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.cross_shard_in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never drained"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        engine
            .account(AccountId(payee))
            .expect("payee")
            .credits_posted,
        11
    );
    assert_eq!(
        engine
            .account(AccountId(other))
            .expect("other")
            .credits_posted,
        13
    );
    assert_eq!(
        engine
            .account(AccountId(payer))
            .expect("payer")
            .debits_posted,
        24
    );
    let transit: i128 = engine
        .transit_accounts()
        .iter()
        .map(|(_, a)| i128::from(a.credits_posted) - i128::from(a.debits_posted))
        .sum();
    assert_eq!(transit, 0);
}

/// Posts and voids that name only their pending transfer go to the shard that holds it
/// (found for the whole batch at once), on every shard.
#[test]
fn posts_and_voids_find_their_pending_transfers_shard() {
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let pairs: Vec<(u128, u128)> = (0..2)
        .map(|shard| (on_shard(shard, 2, 0), on_shard(shard, 2, 1)))
        .collect();
    let accounts: Vec<_> = pairs
        .iter()
        .flat_map(|&(a, b)| [account(a, false), account(b, false)])
        .collect();
    assert_eq!(
        engine
            .submit_wait(Batch::CreateAccounts(&accounts))
            .expect("accounts"),
        [ResultCode::Ok; 4]
    );
    let holds: Vec<_> = pairs
        .iter()
        .enumerate()
        .flat_map(|(shard, &(a, b))| {
            let id = 100 + 10 * shard as u128;
            [
                common::pending(id, a, b, 5, 0),
                common::pending(id + 1, a, b, 7, 0),
            ]
        })
        .collect();
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&holds))
            .expect("holds"),
        [ResultCode::Ok; 4]
    );
    // By pending id alone, in one batch spanning both shards.
    let resolve = [
        common::post(200, 100, 0),
        common::void(201, 101),
        common::post(210, 110, 0),
        common::void(211, 111),
    ];
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&resolve))
            .expect("resolve"),
        [ResultCode::Ok; 4]
    );
    for &(_, credit) in &pairs {
        let account = engine.account(AccountId(credit)).expect("credit account");
        assert_eq!((account.credits_posted, account.credits_pending), (5, 0));
    }
}

/// Waits until `done` holds (a cross-shard phase-two leg settles after the client's
/// answer), at most 10 s.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn cross_shard_pending_transfers_post_void_expire_and_compensate() {
    use surge_core::{PendingStatus, TransferId, TransferLookup};
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let (payer, payee) = (on_shard(0, 2, 0), on_shard(1, 2, 0));
    let capped = on_shard(1, 2, 1);
    let accounts = [
        account(payer, false),
        account(payee, false),
        surge_core::Account {
            flags: surge_core::account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ..account(capped, false)
        },
    ];
    assert_eq!(
        engine
            .submit_wait(Batch::CreateAccounts(&accounts))
            .expect("accounts"),
        [ResultCode::Ok; 3]
    );
    let balances = |id: u128| {
        let account = engine.account(AccountId(id)).expect("account");
        (
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        )
    };
    let status = |id: u128| match engine.transfer(TransferId(id)).expect("lookup") {
        Some(TransferLookup::Committed { pending_status, .. }) => pending_status,
        other => panic!("transfer {id}: {other:?}"),
    };
    // Four holds across the shards; the capped account refuses its credit side. The
    // answers come once each hold is settled (or refused) on both shards.
    let holds = [
        common::pending(10, payer, payee, 30, 0),
        common::pending(11, payer, payee, 7, 0),
        common::pending(12, payer, payee, 5, 200_000_000),
        common::pending(13, payer, capped, 9, 0),
    ];
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&holds))
            .expect("holds"),
        [
            ResultCode::Ok,
            ResultCode::Ok,
            ResultCode::Ok,
            ResultCode::ExceedsDebits
        ]
    );
    assert_eq!(
        engine.transfer(TransferId(13)).expect("lookup"),
        Some(TransferLookup::Failed(ResultCode::ExceedsDebits))
    );
    // A partial post by pending id alone, a void naming both accounts; a post of the
    // refused one finds nothing.
    let resolve = [
        common::post(20, 10, 25),
        surge_core::Transfer {
            debit_account_id: AccountId(payer),
            credit_account_id: AccountId(payee),
            ..common::void(21, 11)
        },
        common::post(22, 13, 0),
    ];
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&resolve))
            .expect("resolve"),
        [
            ResultCode::Ok,
            ResultCode::Ok,
            ResultCode::PendingTransferNotFound
        ]
    );
    // Answered once both sides are resolved: no wait needed for the credit side.
    assert_eq!(balances(payee), (0, 0, 5, 25));
    assert_eq!(status(10), Some(PendingStatus::Posted));
    assert_eq!(status(11), Some(PendingStatus::Voided));
    // The 200 ms hold expires on both shards without traffic (pulses).
    eventually("hold 12 expires", || {
        status(12) == Some(PendingStatus::Expired) && balances(payee) == (0, 0, 0, 25)
    });
    assert_eq!(balances(payer), (0, 25, 0, 0));
    assert_eq!(balances(capped), (0, 0, 0, 0));
    // Retries answer as on one shard; a late post of the expired hold fails.
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&resolve[..2]))
            .expect("retry"),
        [ResultCode::Exists, ResultCode::Exists]
    );
    assert_eq!(
        engine
            .submit_wait(Batch::CreateTransfers(&[common::post(23, 12, 0)]))
            .expect("late post"),
        [ResultCode::PendingTransferExpired]
    );
    eventually("outboxes empty", || engine.cross_shard_in_flight() == 0);
    // Transit between the shards nets to zero, and holds nothing, once all is resolved.
    let transit = engine.transit_accounts();
    assert_eq!(transit.len(), 2, "{transit:?}");
    let posted: i128 = transit
        .iter()
        .map(|(_, a)| i128::from(a.credits_posted) - i128::from(a.debits_posted))
        .sum();
    assert_eq!(posted, 0);
    assert!(transit
        .iter()
        .all(|(_, a)| a.debits_pending == 0 && a.credits_pending == 0));
}

/// The accounts and SKU of [`two_shard_shop`].
struct TwoShardShop {
    sku: u64,
    buyer_0: u128,
    buyer_1: u128,
    merchant_0: u128,
    merchant_1: u128,
}

/// On a 2-shard engine: a SKU of 10 units on shard 0, a funded buyer (1,000) and a
/// merchant on each shard.
fn two_shard_shop(engine: &Engine) -> TwoShardShop {
    let sku = on_shard(0, 2, 0) as u64;
    let (bank_0, bank_1) = (on_shard(0, 2, 0), on_shard(1, 2, 0));
    let (buyer_0, buyer_1) = (on_shard(0, 2, 1), on_shard(1, 2, 1));
    let (merchant_0, merchant_1) = (on_shard(0, 2, 2), on_shard(1, 2, 2));
    let accounts = [
        account(bank_0, false),
        account(bank_1, false),
        account(buyer_0, true),
        account(buyer_1, true),
        account(merchant_0, false),
        account(merchant_1, false),
    ];
    let codes = engine.submit_wait(Batch::CreateAccounts(&accounts));
    assert_eq!(codes.expect("accounts"), [ResultCode::Ok; 6]);
    let funding = [
        transfer(1, bank_0, buyer_0, 1_000),
        transfer(2, bank_1, buyer_1, 1_000),
    ];
    let codes = engine.submit_wait(Batch::CreateTransfers(&funding));
    assert_eq!(codes.expect("funding"), [ResultCode::Ok; 2]);
    let skus = [common::sku(sku, 10, 0)];
    let codes = engine.submit_wait(Batch::CreateSkus(&skus));
    assert_eq!(codes.expect("sku"), [ResultCode::Ok]);
    TwoShardShop {
        sku,
        buyer_0,
        buyer_1,
        merchant_0,
        merchant_1,
    }
}

#[test]
fn orders_spanning_shards_are_placed_paid_cancelled_expired_refunded_and_failed() {
    use surge_core::{
        order_action_flags, OrderAction, OrderId, OrderLookup, OrderStatus, PendingStatus,
        TransferId, TransferLookup,
    };
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let TwoShardShop {
        sku,
        buyer_0,
        buyer_1,
        merchant_0,
        merchant_1,
    } = two_shard_shop(&engine);
    let long = 60_000_000_000;
    let orders = [
        // Buyer elsewhere, merchant with the SKU: a hold across shards.
        common::order(1, buyer_1, merchant_0, 101, 100, long, &[(sku, 2)]),
        // Buyer and merchant together on the other shard.
        common::order(2, buyer_1, merchant_1, 102, 50, long, &[(sku, 1)]),
        // Buyer with the SKU, merchant elsewhere; expires in 200 ms.
        common::order(3, buyer_0, merchant_1, 103, 70, 200_000_000, &[(sku, 1)]),
        // More than the buyer holds: refused on the buyer's shard.
        common::order(4, buyer_1, merchant_0, 104, 5_000, long, &[(sku, 3)]),
    ];
    let codes = engine.submit_wait(Batch::PlaceOrders(&orders));
    assert_eq!(
        codes.expect("orders"),
        [
            ResultCode::Ok,
            ResultCode::Ok,
            ResultCode::Ok,
            ResultCode::ExceedsCredits
        ]
    );
    assert_eq!(
        engine.order(OrderId(4)),
        Some(OrderLookup::Failed(ResultCode::ExceedsCredits))
    );
    let units = |engine: &Engine| {
        let sku = engine.sku(surge_core::SkuId(sku)).expect("sku");
        (sku.units_available, sku.units_reserved, sku.units_sold)
    };
    assert_eq!(units(&engine), (6, 4, 0));
    let balances = |engine: &Engine, id: u128| {
        let account = engine.account(AccountId(id)).expect("account");
        (
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        )
    };
    // Answered once the holds are in place on every shard.
    assert_eq!(balances(&engine, buyer_1), (150, 0, 0, 1_000));
    assert_eq!(balances(&engine, merchant_0), (0, 0, 100, 0));
    assert_eq!(balances(&engine, merchant_1), (0, 0, 120, 0));
    // A retry waits for nothing and answers as on one shard.
    let codes = engine.submit_wait(Batch::PlaceOrders(&orders));
    assert_eq!(
        codes.expect("retry"),
        [
            ResultCode::Exists,
            ResultCode::Exists,
            ResultCode::Exists,
            ResultCode::IdAlreadyFailed
        ]
    );
    let codes = engine.submit_wait(Batch::PayOrders(&[common::action(1, 201)]));
    assert_eq!(codes.expect("pay"), [ResultCode::Ok]);
    let codes = engine.submit_wait(Batch::CancelOrders(&[common::action(2, 202)]));
    assert_eq!(codes.expect("cancel"), [ResultCode::Ok]);
    let status = |engine: &Engine, id: u128| match engine.order(OrderId(id)) {
        Some(OrderLookup::Placed(view)) => OrderStatus::from_u16(view.order.status),
        other => panic!("order {id}: {other:?}"),
    };
    assert_eq!(status(&engine, 1), Some(OrderStatus::Paid));
    assert_eq!(status(&engine, 2), Some(OrderStatus::Cancelled));
    assert_eq!(balances(&engine, buyer_1), (0, 100, 0, 1_000));
    assert_eq!(balances(&engine, merchant_0), (0, 0, 0, 100));
    eventually("order 3 expires on every shard", || {
        status(&engine, 3) == Some(OrderStatus::Expired)
            && balances(&engine, merchant_1) == (0, 0, 0, 0)
    });
    assert_eq!(balances(&engine, buyer_0), (0, 0, 0, 1_000));
    let hold = |engine: &Engine, id: u128| match engine.transfer(TransferId(id)).expect("lookup") {
        Some(TransferLookup::Committed { pending_status, .. }) => pending_status,
        other => panic!("transfer {id}: {other:?}"),
    };
    assert_eq!(hold(&engine, 101), Some(PendingStatus::Posted));
    assert_eq!(hold(&engine, 102), Some(PendingStatus::Voided));
    assert_eq!(hold(&engine, 103), Some(PendingStatus::Expired));
    // A refund travels from the merchant's shard to the buyer's.
    let refund = OrderAction {
        flags: order_action_flags::RESTOCK,
        ..common::action(1, 301)
    };
    let codes = engine.submit_wait(Batch::RefundOrders(&[refund]));
    assert_eq!(codes.expect("refund"), [ResultCode::Ok]);
    assert_eq!(status(&engine, 1), Some(OrderStatus::Refunded));
    assert_eq!(balances(&engine, buyer_1), (0, 100, 0, 1_100));
    assert_eq!(units(&engine), (10, 0, 0));
    let codes = engine.submit_wait(Batch::RefundOrders(&[refund]));
    assert_eq!(codes.expect("refund retry"), [ResultCode::Exists]);
    engine.shutdown();
    // Reopened: the same, and nothing left in flight.
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("reopen");
    assert_eq!(status(&engine, 1), Some(OrderStatus::Refunded));
    assert_eq!(balances(&engine, buyer_1), (0, 100, 0, 1_100));
    let in_flight: usize = (0..2)
        .map(|shard| engine.read_shard(shard, |state| state.order_outbox().len()))
        .sum();
    assert_eq!(in_flight, 0);
    eventually("outboxes empty", || engine.cross_shard_in_flight() == 0);
    let transit = engine.transit_accounts();
    let posted: i128 = transit
        .iter()
        .map(|(_, a)| i128::from(a.credits_posted) - i128::from(a.debits_posted))
        .sum();
    assert_eq!(posted, 0);
    assert!(transit
        .iter()
        .all(|(_, a)| a.debits_pending == 0 && a.credits_pending == 0));
}

#[test]
fn orders_whose_lines_live_on_two_shards_are_answered_with_both_in_step() {
    use surge_core::{OrderId, OrderLookup, OrderStatus};
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let TwoShardShop {
        sku,
        buyer_0,
        buyer_1,
        merchant_0,
        ..
    } = two_shard_shop(&engine);
    // A second SKU, on shard 1: 3 units.
    let other = on_shard(1, 2, 0) as u64;
    let shard = |id: u64| surge_core::shard_of(u128::from(id), 2);
    assert_eq!((shard(sku), shard(other)), (0, 1));
    let codes = engine.submit_wait(Batch::CreateSkus(&[common::sku(other, 3, 0)]));
    assert_eq!(codes.expect("sku"), [ResultCode::Ok]);
    let units = |engine: &Engine, id: u64| {
        let sku = engine.sku(surge_core::SkuId(id)).expect("sku");
        (sku.units_available, sku.units_reserved, sku.units_sold)
    };
    let long = 60_000_000_000;
    let orders = [
        // Lines on both shards, everyone on the first line's shard.
        common::order(
            1,
            buyer_0,
            merchant_0,
            101,
            100,
            long,
            &[(sku, 2), (other, 1)],
        ),
        // Lines on both shards, the buyer on the second's.
        common::order(
            2,
            buyer_1,
            merchant_0,
            102,
            50,
            long,
            &[(other, 1), (sku, 1)],
        ),
        // The second line sold out: the first line's units come back.
        common::order(
            3,
            buyer_0,
            merchant_0,
            103,
            10,
            long,
            &[(sku, 1), (other, 5)],
        ),
    ];
    let codes = engine.submit_wait(Batch::PlaceOrders(&orders));
    assert_eq!(
        codes.expect("orders"),
        [ResultCode::Ok, ResultCode::Ok, ResultCode::SoldOut]
    );
    // Answered with every shard's units in place (and order 3's released).
    assert_eq!(units(&engine, sku), (7, 3, 0));
    assert_eq!(units(&engine, other), (1, 2, 0));
    assert_eq!(
        engine.order(OrderId(3)),
        Some(OrderLookup::Failed(ResultCode::SoldOut))
    );
    let codes = engine.submit_wait(Batch::PayOrders(&[common::action(1, 201)]));
    assert_eq!(codes.expect("pay"), [ResultCode::Ok]);
    let codes = engine.submit_wait(Batch::CancelOrders(&[common::action(2, 202)]));
    assert_eq!(codes.expect("cancel"), [ResultCode::Ok]);
    assert_eq!(units(&engine, sku), (8, 0, 2));
    assert_eq!(units(&engine, other), (2, 0, 1));
    let codes = engine.submit_wait(Batch::PlaceOrders(&orders));
    assert_eq!(
        codes.expect("retry"),
        [
            ResultCode::Exists,
            ResultCode::Exists,
            ResultCode::IdAlreadyFailed
        ]
    );
    engine.shutdown();
    // Reopened: the same, and nothing left in flight.
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("reopen");
    assert_eq!(units(&engine, sku), (8, 0, 2));
    assert_eq!(units(&engine, other), (2, 0, 1));
    let status = |engine: &Engine, id: u128| match engine.order(OrderId(id)) {
        Some(OrderLookup::Placed(view)) => OrderStatus::from_u16(view.order.status),
        other => panic!("order {id}: {other:?}"),
    };
    assert_eq!(status(&engine, 1), Some(OrderStatus::Paid));
    assert_eq!(status(&engine, 2), Some(OrderStatus::Cancelled));
    let in_flight: usize = (0..2)
        .map(|shard| engine.read_shard(shard, |state| state.unit_outbox().len()))
        .sum();
    assert_eq!(in_flight, 0);
    engine.shutdown();
}

#[test]
fn compact_orders_place_as_the_orders_they_stand_for_on_two_shards() {
    use surge_core::CompactOrder;
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let TwoShardShop {
        sku,
        buyer_0,
        buyer_1,
        merchant_0,
        ..
    } = two_shard_shop(&engine);
    let long = 60_000_000_000;
    let orders = [
        // All on the SKU's shard.
        common::order(1, buyer_0, merchant_0, 101, 100, long, &[(sku, 2)]),
        // The buyer elsewhere: reserved on shard 0, held on shard 1.
        common::order(2, buyer_1, merchant_0, 102, 50, long, &[(sku, 1)]),
        // More than the buyer holds.
        common::order(3, buyer_1, merchant_0, 103, 5_000, long, &[(sku, 1)]),
    ];
    let compact: Vec<CompactOrder> = orders
        .iter()
        .map(|order| CompactOrder::of(order).expect("one line"))
        .collect();
    let codes = engine.submit_wait(Batch::PlaceOrdersCompact(&compact));
    let placed = [ResultCode::Ok, ResultCode::Ok, ResultCode::ExceedsCredits];
    assert_eq!(codes.expect("orders"), placed);
    // The same orders in the full form are the same commands.
    let codes = engine.submit_wait(Batch::PlaceOrders(&orders));
    let retried = [
        ResultCode::Exists,
        ResultCode::Exists,
        ResultCode::IdAlreadyFailed,
    ];
    assert_eq!(codes.expect("retries"), retried);
    let codes = engine.submit_wait(Batch::PlaceOrdersCompact(&compact));
    assert_eq!(codes.expect("compact retries"), retried);
    let units = engine.sku(surge_core::SkuId(sku)).expect("sku");
    assert_eq!((units.units_available, units.units_reserved), (7, 3));
    let buyer = engine.account(AccountId(buyer_1)).expect("buyer");
    assert_eq!(buyer.debits_pending, 50);
    engine.shutdown();
}

#[test]
fn lookups_of_many_ids_answer_as_lookups_of_one_do() {
    use surge_core::{OrderId, OrderLookup, SkuId};
    let directory = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(config(directory.path(), 2)).expect("open");
    let TwoShardShop {
        sku,
        buyer_0,
        buyer_1,
        merchant_0,
        merchant_1,
    } = two_shard_shop(&engine);
    let other_sku = on_shard(1, 2, 7) as u64;
    let codes = engine.submit_wait(Batch::CreateSkus(&[common::sku(other_sku, 4, 0)]));
    assert_eq!(codes.expect("sku"), [ResultCode::Ok]);
    let long = 60_000_000_000;
    let orders = [
        // On shard 0, on shard 0 spanning to shard 1, on shard 1, and refused.
        common::order(1, buyer_0, merchant_0, 101, 100, long, &[(sku, 2)]),
        common::order(2, buyer_1, merchant_0, 102, 50, long, &[(sku, 1)]),
        common::order(3, buyer_1, merchant_1, 103, 10, long, &[(other_sku, 1)]),
        common::order(4, buyer_0, merchant_0, 104, 5_000, long, &[(sku, 1)]),
    ];
    let codes = engine.submit_wait(Batch::PlaceOrders(&orders));
    let placed = [
        ResultCode::Ok,
        ResultCode::Ok,
        ResultCode::Ok,
        ResultCode::ExceedsCredits,
    ];
    assert_eq!(codes.expect("orders"), placed);
    // Ids on both shards, unknown ones, and one twice.
    let accounts: Vec<AccountId> = [buyer_1, 999_999, buyer_0, merchant_1, merchant_0, buyer_1]
        .into_iter()
        .map(AccountId)
        .collect();
    let one_by_one: Vec<_> = accounts.iter().map(|id| engine.account(*id)).collect();
    assert_eq!(engine.accounts(&accounts), one_by_one);
    assert_eq!(one_by_one.iter().filter(|found| found.is_none()).count(), 1);
    let skus = [SkuId(other_sku), SkuId(sku), SkuId(5_555), SkuId(other_sku)];
    let one_by_one: Vec<_> = skus.iter().map(|id| engine.sku(*id)).collect();
    assert_eq!(engine.skus(&skus), one_by_one);
    assert_eq!(one_by_one.iter().filter(|found| found.is_some()).count(), 3);
    let ids = [3, 7, 1, 4, 2, 3].map(OrderId);
    let one_by_one: Vec<_> = ids.iter().map(|id| engine.order(*id)).collect();
    assert_eq!(engine.orders(&ids), one_by_one);
    assert!(matches!(one_by_one[0], Some(OrderLookup::Placed(_))));
    assert_eq!(one_by_one[1], None);
    assert_eq!(
        one_by_one[3],
        Some(OrderLookup::Failed(ResultCode::ExceedsCredits))
    );
    assert!(engine.accounts(&[]).is_empty() && engine.orders(&[]).is_empty());
    engine.shutdown();
}

/// The record indexes of the checkpoints in shard `index`'s directory.
fn checkpoint_records(directory: &std::path::Path, index: u32) -> Vec<Option<u64>> {
    use surge_wal::{checkpoint, FileStorage};
    let shard = directory.join(format!("shard-{index:02}"));
    let mut checkpoints = FileStorage::open(&shard.join("checkpoints")).expect("checkpoints");
    checkpoint::list(&mut checkpoints)
        .expect("listed")
        .iter()
        .map(|name| checkpoint::record_index_of(name).expect("a checkpoint's name"))
        .collect()
}

/// Shards that log at the same pace write their checkpoints at different records (each
/// shard's phase is its share of the interval), not all at once.
#[test]
fn shards_checkpoint_at_staggered_records() {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut config = config(directory.path(), 2);
    config.node.checkpoint_interval_records = 4;
    config.node.checkpoint_log_percent = 0;
    config.node.checkpoints_kept = 16;
    let (engine, _) = Engine::open(config).expect("open");
    let ids = two_accounts_per_shard(&engine, 2);
    // Seven more batches, each one record on each shard: records 0..=7 on both.
    for step in 0..7u128 {
        let transfers = [
            transfer(100 + 2 * step, ids[0], ids[1], 1),
            transfer(101 + 2 * step, ids[2], ids[3], 1),
        ];
        let codes = engine
            .submit_wait(Batch::CreateTransfers(&transfers))
            .expect("transfers");
        assert!(
            codes.iter().all(|&code| code == ResultCode::Ok),
            "{codes:?}"
        );
    }
    engine.shutdown();
    // Shard 0 at the interval's multiples, shard 1 half an interval later.
    assert_eq!(checkpoint_records(directory.path(), 0), [Some(3), Some(7)]);
    assert_eq!(checkpoint_records(directory.path(), 1), [Some(1), Some(5)]);
}
