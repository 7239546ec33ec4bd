//! The same workload over 1, 2 and 4 shards ends in the same balances and the same
//! outcomes: every batch's result codes, every client account, every transfer lookup. The
//! workload mixes local and cross-shard transfers (funded and overdrawn wallets, credits
//! refused by a capped account, missing accounts, a wrong ledger), pending transfers later
//! posted (in full or in part) or voided, by posts naming their accounts or only the
//! pending id, client retries of whole batches and retries with changed fields; the
//! sharded engines are restarted halfway with legs possibly still in their outboxes.
//! Orders too: placed (some refused for want of funds), paid, cancelled and refunded, with
//! buyers, merchants and SKUs on any shards (orders spanning shards run as sagas).
//! Balances (posted and pending), pending statuses, order statuses and SKU units must
//! match. Transit accounts net to zero between each pair of shards at the end.
//!
//! Within a batch no account appears twice, and a scarce SKU at most once: commands of one
//! batch are ordered within a shard, but a cross-shard credit lands after the debit
//! shard's batch (and an order spanning shards reserves after the local orders of its
//! batch), so a batch whose commands depend on each other across shards may end
//! differently (documented in docs/ARCHITECTURE.md). Seeded: `SURGE_SEED=<n>` replays
//! one workload.

mod common;

use std::collections::BTreeMap;

use common::{account, action, order, pending, sku, transfer};
use surge_core::{
    account_flags, order_action_flags, shard_of, transfer_flags, AccountId, Batch, BatchBuf,
    OrderId, OrderLookup, PendingStatus, ResultCode, SkuId, Transfer, TransferId, TransferLookup,
};
use surge_engine::{Engine, EngineConfig};
use surge_wal::storage::split_mix;

/// Account 1 is the bank (unconstrained); wallets may not overdraw.
const BANK: u128 = 1;
const WALLETS: u128 = 40;
/// Accounts that accept credits only up to their debits.
const CAPPED: [u128; 2] = [101, 102];
/// Never created.
const MISSING: [u128; 2] = [201, 202];
const BATCHES: usize = 60;
/// SKUs with plenty of stock, and one with four units (at most once per batch).
const SKUS: [u64; 3] = [1, 2, 3];
const SCARCE_SKU: u64 = 3;
/// Unpaid orders never expire within a run (expiry depends on each shard's clock).
const ORDER_TIMEOUT_NS: u64 = 3_600_000_000_000;
const SEED_DEFAULT: u64 = 0x5AA2_D5E1;

fn seed() -> u64 {
    std::env::var("SURGE_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(SEED_DEFAULT)
}

struct Workload {
    setup: Vec<BatchBuf>,
    batches: Vec<BatchBuf>,
    transfer_ids: Vec<u128>,
    order_ids: Vec<u128>,
}

/// A batch of orders (distinct buyers and merchants) or of actions on earlier orders
/// (distinct orders; refunds from distinct merchants).
fn order_batch(
    rng: &mut u64,
    next_id: &mut u128,
    placed: &mut Vec<(u128, u128)>,
    order_ids: &mut Vec<u128>,
) -> BatchBuf {
    let pick = |rng: &mut u64, range: u64| split_mix(rng) % range;
    match pick(rng, 4) {
        0 | 1 if !placed.is_empty() => {
            let mut actions = Vec::new();
            let mut merchants = Vec::new();
            let refund = pick(rng, 2) == 0;
            for _ in 0..6 {
                let (order_id, merchant) = placed[pick(rng, placed.len() as u64) as usize];
                if actions
                    .iter()
                    .any(|a: &surge_core::OrderAction| a.order_id == OrderId(order_id))
                    || (refund && merchants.contains(&merchant))
                {
                    continue;
                }
                merchants.push(merchant);
                *next_id += 1;
                let mut made = action(order_id, *next_id);
                if refund && pick(rng, 2) == 0 {
                    made.flags = order_action_flags::RESTOCK;
                }
                actions.push(made);
            }
            match (refund, pick(rng, 3)) {
                (true, _) => BatchBuf::RefundOrders(actions),
                (false, 0) => BatchBuf::CancelOrders(actions),
                _ => BatchBuf::PayOrders(actions),
            }
        }
        _ => {
            let mut free: Vec<u128> = (2..2 + WALLETS).collect();
            let mut orders = Vec::new();
            let mut scarce_used = false;
            for _ in 0..6 {
                let mut take = |rng: &mut u64| {
                    let index = pick(rng, free.len() as u64) as usize;
                    free.swap_remove(index)
                };
                let buyer = take(rng);
                let merchant = if pick(rng, 3) == 0 { BANK } else { take(rng) };
                let mut sku_id = SKUS[pick(rng, SKUS.len() as u64) as usize];
                if sku_id == SCARCE_SKU && std::mem::replace(&mut scarce_used, true) {
                    sku_id = SKUS[0];
                }
                *next_id += 1;
                let (id, authorization) = (*next_id, *next_id + 1);
                *next_id += 1;
                let amount = 1 + pick(rng, 400);
                let quantity = 1 + pick(rng, 2) as u32;
                let mut lines = vec![(sku_id, quantity)];
                // A third of the orders have a second line (on another shard or not).
                let second = SKUS[(sku_id as usize) % SKUS.len()];
                let second_allowed = second != SCARCE_SKU || !scarce_used;
                if pick(rng, 3) == 0 && second_allowed {
                    scarce_used |= second == SCARCE_SKU;
                    lines.push((second, 1));
                }
                orders.push(order(
                    id,
                    buyer,
                    merchant,
                    authorization,
                    amount,
                    ORDER_TIMEOUT_NS,
                    &lines,
                ));
                placed.push((id, merchant));
                order_ids.push(id);
            }
            BatchBuf::PlaceOrders(orders)
        }
    }
}

fn workload(seed: u64) -> Workload {
    let mut rng = seed;
    let mut accounts = vec![account(BANK, false)];
    accounts.extend((2..2 + WALLETS).map(|id| account(id, true)));
    accounts.extend(CAPPED.iter().map(|&id| surge_core::Account {
        flags: account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ..account(id, false)
    }));
    let funding: Vec<_> = (2..2 + WALLETS)
        .map(|id| transfer(1_000 + id, BANK, id, 500))
        .collect();
    let skus = SKUS
        .iter()
        .map(|&id| sku(id, if id == SCARCE_SKU { 4 } else { 10_000 }, 0))
        .collect();
    let setup = vec![
        BatchBuf::CreateAccounts(accounts),
        BatchBuf::CreateTransfers(funding),
        BatchBuf::CreateSkus(skus),
    ];
    let mut placed = Vec::new();
    let mut order_ids = Vec::new();
    let mut batches: Vec<BatchBuf> = Vec::new();
    let mut transfer_ids = Vec::new();
    let mut next_id = 10_000u128;
    let mut sent = Vec::new();
    // Pending transfers of earlier batches not resolved by the workload yet.
    let mut holds: Vec<Transfer> = Vec::new();
    for _ in 0..BATCHES {
        let roll = split_mix(&mut rng) % 10;
        if roll == 0 && !batches.is_empty() {
            // A client retries a whole earlier batch.
            let again = (split_mix(&mut rng) % batches.len() as u64) as usize;
            batches.push(batches[again].clone());
            continue;
        }
        if (2..=4).contains(&roll) {
            let batch = order_batch(&mut rng, &mut next_id, &mut placed, &mut order_ids);
            batches.push(batch);
            continue;
        }
        // Each account at most once per batch.
        let mut free: Vec<u128> = (2..2 + WALLETS).collect();
        let mut transfers = Vec::new();
        let mut holding = Vec::new();
        // Posts and voids of earlier holds whose accounts are still free in this batch.
        for _ in 0..2 {
            if holds.is_empty() || split_mix(&mut rng) % 2 == 0 {
                continue;
            }
            let held = holds.swap_remove((split_mix(&mut rng) % holds.len() as u64) as usize);
            let accounts = [held.debit_account_id.0, held.credit_account_id.0];
            let wallets: Vec<u128> = accounts
                .into_iter()
                .filter(|id| (2..2 + WALLETS).contains(id))
                .collect();
            if !wallets.iter().all(|id| free.contains(id)) {
                holds.push(held);
                continue;
            }
            free.retain(|id| !wallets.contains(id));
            next_id += 1;
            let mut resolve = Transfer {
                id: TransferId(next_id),
                pending_id: held.id,
                ..Transfer::default()
            };
            match split_mix(&mut rng) % 4 {
                0 => resolve.flags = transfer_flags::VOID_PENDING,
                1 => {
                    resolve.flags = transfer_flags::POST_PENDING;
                    resolve.amount = 1 + split_mix(&mut rng) % held.amount;
                }
                _ => resolve.flags = transfer_flags::POST_PENDING,
            }
            // Sometimes named in full (routed by its debit account), sometimes by the
            // pending id alone (located).
            if split_mix(&mut rng) % 2 == 0 {
                resolve.debit_account_id = held.debit_account_id;
                resolve.credit_account_id = held.credit_account_id;
            }
            transfer_ids.push(next_id);
            transfers.push(resolve);
        }
        let mut take = |rng: &mut u64| {
            if free.is_empty() {
                return None;
            }
            let index = (split_mix(rng) % free.len() as u64) as usize;
            Some(free.swap_remove(index))
        };
        for _ in 0..8 {
            let (Some(debit), Some(other)) = (take(&mut rng), take(&mut rng)) else {
                break;
            };
            next_id += 1;
            let amount = 1 + split_mix(&mut rng) % 300;
            let kind = split_mix(&mut rng) % 20;
            let mut made = match kind {
                0 => transfer(next_id, debit, CAPPED[(next_id % 2) as usize], amount),
                1 => transfer(next_id, debit, MISSING[(next_id % 2) as usize], amount),
                2 => transfer(next_id, MISSING[0], debit, amount),
                // Holds, later posted or voided: most between wallets, some refused by a
                // capped account.
                4..=7 => pending(next_id, debit, other, amount, 0),
                8 => pending(next_id, debit, CAPPED[0], amount, 0),
                _ => transfer(next_id, debit, other, amount),
            };
            if kind == 3 {
                made.ledger = 2;
            }
            if made.flags & transfer_flags::PENDING != 0 {
                holding.push(made);
            }
            transfer_ids.push(next_id);
            transfers.push(made);
        }
        if roll == 1 && !sent.is_empty() {
            // An earlier transfer retried with a changed amount (same debit account).
            let mut changed: surge_core::Transfer =
                sent[(split_mix(&mut rng) % sent.len() as u64) as usize];
            changed.amount += 1;
            transfers.push(changed);
        }
        sent.extend(transfers.iter().filter(|t| t.pending_id.0 == 0).copied());
        holds.extend(holding);
        batches.push(BatchBuf::CreateTransfers(transfers));
    }
    Workload {
        setup,
        batches,
        transfer_ids,
        order_ids,
    }
}

/// A transfer lookup: debit, credit, amount (or failure code), committed, pending status.
type Lookup = (u128, u128, u64, bool, Option<PendingStatus>);

/// What a run ends with.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    codes: Vec<Vec<ResultCode>>,
    /// Client accounts: (debits posted - credits posted) as a signed net, debits pending,
    /// credits pending, per id.
    balances: BTreeMap<u128, (i128, u64, u64)>,
    lookups: Vec<Option<Lookup>>,
    /// Per order: its status, or its failure's code (+ 1,000).
    orders: Vec<Option<u32>>,
    /// Per SKU: available, reserved, sold.
    units: Vec<(u64, u64, u64)>,
}

fn run(shards: usize, workload: &Workload) -> Outcome {
    let directory = tempfile::tempdir().expect("tempdir");
    let mut config = EngineConfig::new(directory.path());
    config.shards = shards;
    config.history = shards == 2;
    let open = || Engine::open(config.clone()).expect("open").0;
    let mut engine = open();
    for batch in &workload.setup {
        let codes = engine.submit_wait(batch.as_batch()).expect("setup");
        assert!(
            codes.iter().all(|code| *code == ResultCode::Ok),
            "{codes:?}"
        );
    }
    let mut codes = Vec::new();
    for (index, batch) in workload.batches.iter().enumerate() {
        if index == workload.batches.len() / 2 {
            engine.shutdown();
            engine = open();
        }
        codes.push(engine.submit_wait(batch.as_batch()).expect("batch"));
    }
    // A settled transfer is answered before its resolve empties the outbox entry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let order_steps = |engine: &Engine| -> usize {
        (0..shards)
            .map(|shard| engine.read_shard(shard, |state| state.order_outbox().len()))
            .sum()
    };
    while engine.cross_shard_in_flight() > 0 || order_steps(&engine) > 0 {
        assert!(std::time::Instant::now() < deadline, "legs left unresolved");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    check_transit(&engine, shards);
    let ids = std::iter::once(BANK)
        .chain(2..2 + WALLETS)
        .chain(CAPPED)
        .chain(MISSING);
    let balances = ids
        .filter_map(|id| {
            let account = engine.account(AccountId(id))?;
            Some((
                id,
                (
                    i128::from(account.debits_posted) - i128::from(account.credits_posted),
                    account.debits_pending,
                    account.credits_pending,
                ),
            ))
        })
        .collect();
    let lookups = workload
        .transfer_ids
        .iter()
        .map(
            |&id| match engine.transfer(TransferId(id)).expect("lookup") {
                Some(TransferLookup::Committed {
                    transfer,
                    pending_status,
                }) => Some((
                    transfer.debit_account_id.0,
                    transfer.credit_account_id.0,
                    transfer.amount,
                    true,
                    pending_status,
                )),
                Some(TransferLookup::Failed(code)) => {
                    Some((0, 0, u64::from(code.as_u32()), false, None))
                }
                None => None,
            },
        )
        .collect();
    let orders = workload
        .order_ids
        .iter()
        .map(|&id| match engine.order(OrderId(id))? {
            OrderLookup::Placed(view) => Some(u32::from(view.order.status)),
            OrderLookup::Failed(code) => Some(1_000 + code.as_u32()),
        })
        .collect();
    let units = SKUS
        .iter()
        .map(|&id| {
            let sku = engine.sku(SkuId(id)).expect("sku");
            (sku.units_available, sku.units_reserved, sku.units_sold)
        })
        .collect();
    engine.shutdown();
    Outcome {
        codes,
        balances,
        lookups,
        orders,
        units,
    }
}

/// Per pair of shards, what left the source through transit equals what arrived.
fn check_transit(engine: &Engine, shards: usize) {
    let transit = engine.transit_accounts();
    if shards == 1 {
        assert!(transit.is_empty());
        return;
    }
    // Posted and held amounts both net to zero (holds still pending are held on both
    // sides: credits pending at the source, debits pending at the destination).
    let mut net: BTreeMap<u128, (i128, i128)> = BTreeMap::new();
    for (_, account) in &transit {
        let entry = net.entry(account.id.0).or_default();
        entry.0 += i128::from(account.credits_posted) - i128::from(account.debits_posted);
        entry.1 += i128::from(account.credits_pending) - i128::from(account.debits_pending);
    }
    for (id, sums) in net {
        assert_eq!(sums, (0, 0), "transit account {id:x} nets to {sums:?}");
    }
    assert!(!transit.is_empty(), "the workload crossed shards");
}

#[test]
fn one_two_and_four_shards_end_the_same() {
    let seed = seed();
    let workload = workload(seed);
    // The workload must actually cross shards under 2 and 4.
    let crossing = workload
        .batches
        .iter()
        .filter_map(|batch| match batch.as_batch() {
            Batch::CreateTransfers(transfers) => Some(transfers.to_vec()),
            _ => None,
        })
        .flatten()
        .filter(|t| shard_of(t.debit_account_id.0, 2) != shard_of(t.credit_account_id.0, 2))
        .count();
    assert!(
        crossing > 50,
        "seed {seed}: only {crossing} cross-shard transfers"
    );
    let resolving = workload
        .batches
        .iter()
        .filter_map(|batch| match batch.as_batch() {
            Batch::CreateTransfers(transfers) => Some(transfers.to_vec()),
            _ => None,
        })
        .flatten()
        .filter(|t| t.pending_id.0 != 0)
        .count();
    assert!(
        resolving > 20,
        "seed {seed}: only {resolving} posts and voids"
    );
    let spanning = workload
        .batches
        .iter()
        .filter_map(|batch| match batch.as_batch() {
            Batch::PlaceOrders(orders) => Some(orders.to_vec()),
            _ => None,
        })
        .flatten()
        .filter(|o| {
            let home = shard_of(u128::from(o.lines[0].sku_id.0), 2);
            shard_of(o.buyer_id.0, 2) != home || shard_of(o.merchant_id.0, 2) != home
        })
        .count();
    assert!(
        spanning > 20,
        "seed {seed}: only {spanning} orders spanning shards"
    );
    let lines_spread = workload
        .batches
        .iter()
        .filter_map(|batch| match batch.as_batch() {
            Batch::PlaceOrders(orders) => Some(orders.to_vec()),
            _ => None,
        })
        .flatten()
        .filter(|o| {
            let lines = &o.lines[..usize::from(o.line_count)];
            let home = shard_of(u128::from(lines[0].sku_id.0), 2);
            lines
                .iter()
                .any(|line| shard_of(u128::from(line.sku_id.0), 2) != home)
        })
        .count();
    assert!(
        lines_spread > 10,
        "seed {seed}: only {lines_spread} orders with lines on both shards"
    );
    let single = run(1, &workload);
    for shards in [2, 4] {
        let sharded = run(shards, &workload);
        for (index, (one, many)) in single.codes.iter().zip(&sharded.codes).enumerate() {
            assert_eq!(one, many, "seed {seed}: batch {index} with {shards} shards");
        }
        assert_eq!(
            single.balances, sharded.balances,
            "seed {seed}, {shards} shards"
        );
        assert_eq!(
            single.lookups, sharded.lookups,
            "seed {seed}, {shards} shards"
        );
        assert_eq!(
            single.orders, sharded.orders,
            "seed {seed}, {shards} shards"
        );
        assert_eq!(single.units, sharded.units, "seed {seed}, {shards} shards");
    }
}
