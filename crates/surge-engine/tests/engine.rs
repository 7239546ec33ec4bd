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

#[test]
fn one_and_two_shards_apply_local_batches() {
    for shards in [1u32, 2] {
        let directory = tempfile::tempdir().expect("tempdir");
        let (engine, report) =
            Engine::open(config(directory.path(), shards as usize)).expect("open");
        assert_eq!(report.shards.len(), shards as usize);
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
