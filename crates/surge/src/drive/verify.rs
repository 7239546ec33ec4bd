//! `surge drive --verify`: reads the acknowledged commands back from the driver's
//! output, recovers the data directory and checks each of them, every shard's ledger
//! invariants, that transit nets to zero, that the units other shards hold for orders
//! whose lines span shards match those orders, that the history index's statements end at
//! each account's posted balances, and each shard's state hash against a fresh replay of
//! its log.

use super::*;

fn operation_from_name(name: &str) -> Option<Operation> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// One acknowledged command.
#[derive(Clone, Copy, Debug)]
struct Ack {
    operation: Operation,
    id: u128,
    code: ResultCode,
}

/// Parses `ack <operation> <id>:<code>,...` lines; other lines are ignored.
fn parse_acks(text: &str) -> anyhow::Result<Vec<Ack>> {
    let mut acks = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        if words.next() != Some("ack") {
            continue;
        }
        let bad = || format!("acks line {}: {line:?}", number + 1);
        let operation = words
            .next()
            .and_then(operation_from_name)
            .with_context(bad)?;
        let entries = words.next().with_context(bad)?;
        for entry in entries.split(',') {
            let (id, code) = entry.split_once(':').with_context(bad)?;
            let id: u128 = id.parse().with_context(bad)?;
            let code = code
                .parse()
                .ok()
                .and_then(ResultCode::from_u32)
                .with_context(bad)?;
            acks.push(Ack {
                operation,
                id,
                code,
            });
        }
    }
    Ok(acks)
}

/// Why an acknowledged command's effect is not what its code said, if it is not.
/// Transfers are looked up through the engine: finished ones may have left memory for the
/// history index, and cross-shard ones answer as their client sent them.
fn check_ack(engine: &Engine, ack: &Ack) -> Option<String> {
    let took_effect = matches!(ack.code, ResultCode::Ok | ResultCode::Exists);
    // Refused by the engine's router (600..): nothing was logged.
    let refused = ack.code.as_u32() >= 600;
    let (expected, found) = match ack.operation {
        // Accounts and SKUs: a failed create leaves nothing to look up.
        Operation::CreateAccounts => {
            let found = engine.account(AccountId(ack.id));
            (!took_effect || found.is_some(), format!("{found:?}"))
        }
        Operation::CreateSkus => {
            let found = u64::try_from(ack.id)
                .ok()
                .and_then(|id| engine.sku(SkuId(id)));
            (!took_effect || found.is_some(), format!("{found:?}"))
        }
        Operation::CreateTransfers | Operation::PayOrders if refused => {
            let found = engine.transfer(TransferId(ack.id));
            (matches!(found, Ok(None)), format!("{found:?}"))
        }
        Operation::CreateTransfers | Operation::PayOrders => {
            let found = match engine.transfer(TransferId(ack.id)) {
                Ok(found) => found,
                Err(error) => return Some(format!("transfer {} lookup failed: {error}", ack.id)),
            };
            let expected = match found {
                Some(TransferLookup::Committed { .. }) => took_effect,
                Some(TransferLookup::Failed(_)) if ack.code == ResultCode::IdAlreadyFailed => true,
                Some(TransferLookup::Failed(code)) => code == ack.code,
                None => false,
            };
            (expected, format!("{found:?}"))
        }
        Operation::PlaceOrders => {
            let found = engine.order(OrderId(ack.id));
            let expected = match found {
                Some(OrderLookup::Placed(_)) => took_effect,
                Some(OrderLookup::Failed(code)) => code == ack.code,
                None => false,
            };
            (expected, format!("{found:?}"))
        }
        other => return Some(format!("drive never acknowledges {other:?}")),
    };
    (!expected).then(|| {
        format!(
            "{:?} {} acknowledged {:?}, the state holds {found}",
            ack.operation, ack.id, ack.code
        )
    })
}

/// Ledger and inventory invariants: what must hold after any prefix of the log.
fn check_invariants(state: &StateMachine) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ledgers: std::collections::BTreeMap<u32, [u128; 4]> = Default::default();
    for account in state.accounts_sorted() {
        let sums = ledgers.entry(account.ledger).or_default();
        sums[0] += u128::from(account.debits_posted);
        sums[1] += u128::from(account.credits_posted);
        sums[2] += u128::from(account.debits_pending);
        sums[3] += u128::from(account.credits_pending);
        let debits = u128::from(account.debits_posted) + u128::from(account.debits_pending);
        let credits = u128::from(account.credits_posted) + u128::from(account.credits_pending);
        if account.flags & account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS != 0
            && debits > u128::from(account.credits_posted)
        {
            problems.push(format!("account {} is negative: {account:?}", account.id.0));
        }
        if account.flags & account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS != 0
            && credits > u128::from(account.debits_posted)
        {
            problems.push(format!("account {} is negative: {account:?}", account.id.0));
        }
    }
    for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in ledgers {
        if debits_posted != credits_posted {
            problems.push(format!(
                "ledger {ledger}: posted debits {debits_posted} != credits {credits_posted}"
            ));
        }
        if debits_pending != credits_pending {
            problems.push(format!(
                "ledger {ledger}: pending debits {debits_pending} != credits {credits_pending}"
            ));
        }
    }
    for sku in state.skus_sorted() {
        let held = u128::from(sku.units_available)
            + u128::from(sku.units_reserved)
            + u128::from(sku.units_sold);
        if held != u128::from(sku.units_stocked) {
            problems.push(format!("sku {}: units not conserved: {sku:?}", sku.id.0));
        }
    }
    problems
}

/// The history index's statements against the balances, for every client account: along
/// an account's lines (in log order) its posted balances never go down, and the last
/// line's posted balances are the account's. (Pending balances also move when a hold
/// expires, which makes no line; transit accounts live on two shards under one id and are
/// checked by their netting instead.)
fn check_statements(engine: &Engine) -> anyhow::Result<Vec<String>> {
    const PAGE_LINES: usize = 1_000;
    let mut problems = Vec::new();
    for shard in 0..engine.shard_count() {
        let accounts = engine.read_shard(shard, |state| state.accounts_sorted());
        for account in accounts {
            if surge_core::is_reserved_account_id(account.id) {
                continue;
            }
            let id = account.id.0;
            let mut after = None;
            let mut last: Option<(u64, u64)> = None;
            loop {
                let page = match engine.statement(account.id, 0, u64::MAX, after, PAGE_LINES) {
                    Ok(page) => page,
                    // Without the index there are no statements to check.
                    Err(surge_engine::EngineError::HistoryDisabled) => return Ok(problems),
                    Err(error) => {
                        return Err(error).context(format!("reading account {id}'s statement"))
                    }
                };
                for line in &page.lines {
                    let balances = &line.balances_after;
                    let posted = (balances.debits_posted, balances.credits_posted);
                    if last.is_some_and(|(debits, credits)| posted.0 < debits || posted.1 < credits)
                    {
                        problems.push(format!(
                            "account {id}: posted balances go down at transfer {} of its \
                             statement: {last:?} then {posted:?}",
                            line.transfer.id.0
                        ));
                    }
                    last = Some(posted);
                }
                match page.next {
                    Some(cursor) => after = Some(cursor),
                    None => break,
                }
            }
            let posted = (account.debits_posted, account.credits_posted);
            if last.unwrap_or((0, 0)) != posted {
                problems.push(format!(
                    "account {id}: its statement ends at posted {last:?}, the account has \
                     {posted:?}"
                ));
            }
        }
    }
    Ok(problems)
}

/// Every order whose lines live on several shards against the units the other shards hold
/// for it, once no step is in flight: a reserved order's units are held there, a paid (or
/// dispatched) one's sold, a refunded one's sold or restocked, a cancelled or expired
/// one's released; a hold whose order is not placed (it failed) holds nothing.
fn check_unit_holds(engine: &Engine) -> Vec<String> {
    use surge_core::{OrderStatus, UnitHoldStatus as Hold};
    let shards = engine.shard_count();
    let mut holds: std::collections::BTreeMap<(u128, usize), Hold> = Default::default();
    for shard in 0..shards {
        for (id, status) in engine.read_shard(shard, |state| state.unit_holds_sorted()) {
            holds.insert((id.0, shard), status);
        }
    }
    let line_shard = |line: &OrderLine| shard_of(u128::from(line.sku_id.0), shards as u32);
    let mut problems = Vec::new();
    for shard in 0..shards {
        for view in engine.read_shard(shard, |state| state.orders_sorted()) {
            let order = view.order;
            let lines = &order.lines[..usize::from(order.line_count)];
            let Some(home) = lines.first().map(line_shard) else {
                continue;
            };
            let status = OrderStatus::from_u16(order.status);
            let allowed: &[Hold] = match status {
                Some(OrderStatus::Reserved) => &[Hold::Held],
                Some(OrderStatus::Paid | OrderStatus::Dispatched) => &[Hold::Sold],
                Some(OrderStatus::Refunded) => &[Hold::Sold, Hold::Restocked],
                Some(OrderStatus::Cancelled | OrderStatus::Expired) => &[Hold::Released],
                None => &[],
            };
            let others: std::collections::BTreeSet<usize> = lines
                .iter()
                .map(|line| line_shard(line) as usize)
                .filter(|other| *other != home as usize)
                .collect();
            for other in others {
                let found = holds.remove(&(order.id.0, other));
                if !found.is_some_and(|hold| allowed.contains(&hold)) {
                    problems.push(format!(
                        "order {} ({status:?}) on shard {shard}: its units on shard {other} \
                         are {found:?}",
                        order.id.0
                    ));
                }
            }
        }
    }
    for ((id, shard), hold) in holds {
        if !matches!(hold, Hold::Released | Hold::Failed) {
            problems.push(format!(
                "shard {shard} holds units ({hold:?}) for order {id}, which is not placed"
            ));
        }
    }
    problems
}

/// The state hash after applying every record of one shard's log (in `shard_dir`) to a new
/// state machine, from record 0 (reading archived segments if retention moved them), and
/// the number of records.
fn replay_log(shard_dir: &Path, config: surge_core::Config) -> anyhow::Result<(u128, usize)> {
    let storage = FileStorage::open(&shard_dir.join("log")).context("opening the log")?;
    let (mut log, _) =
        Log::open(Box::new(storage), log_config()).context("reading the log for a replay")?;
    let mut state = StateMachine::new(config);
    let mut results = Vec::new();
    let mut records = 0;
    for record in log.read_from(0).context("reading the log for a replay")? {
        let record = record.context("reading the log for a replay")?;
        let header = &record.header;
        let batch = decode(header.operation as u8, &record.body).map_err(|error| {
            anyhow::anyhow!(
                "log record {} does not decode: {error}",
                header.record_index
            )
        })?;
        state.apply(header.timestamp_ns, batch.as_batch(), &mut results);
        records += 1;
    }
    Ok((state.state_hash(), records))
}

/// How long `--verify` waits for the engine to deliver what the outboxes held.
const OUTBOX_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Checks the data directory against the acknowledgements in `acks`; the summary, or an
/// error naming every mismatch found (the first few of each kind).
pub fn verify(data_dir: &Path, shards: usize, acks: &str) -> anyhow::Result<String> {
    const SHOWN_MAX: usize = 20;
    let acks = parse_acks(acks)?;
    // A clock stopped at 0: nothing is ever due, so no pulse is logged while we look. The
    // engine does deliver what the cross-shard outboxes hold (a crash between the legs):
    // wait for that, so each shard's log holds everything its state reflects.
    let (engine, report) = open_engine(data_dir, shards, Arc::new(ManualClock::new(0)))?;
    let started = std::time::Instant::now();
    let order_steps = |engine: &Engine| -> usize {
        (0..engine.shard_count())
            .map(|shard| {
                engine.read_shard(shard, |state| {
                    state.order_outbox().len() + state.unit_outbox().len()
                })
            })
            .sum()
    };
    while engine.cross_shard_in_flight() > 0 || order_steps(&engine) > 0 {
        if started.elapsed() > OUTBOX_DRAIN_LIMIT {
            bail!(
                "{} cross-shard transfers and {} order steps still in flight after \
                 {OUTBOX_DRAIN_LIMIT:?}",
                engine.cross_shard_in_flight(),
                order_steps(&engine)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let lost: Vec<String> = acks
        .iter()
        .filter_map(|ack| check_ack(&engine, ack))
        .collect();
    let mut problems = Vec::new();
    let mut hashes = Vec::new();
    let mut evicted = 0;
    for shard in 0..engine.shard_count() {
        engine.read_shard(shard, |state| {
            evicted += state.memory_counts().transfers_evicted;
            problems.extend(
                check_invariants(state)
                    .into_iter()
                    .map(|problem| format!("shard {shard}: {problem}")),
            );
            hashes.push(state.state_hash());
        });
    }
    problems.extend(check_unit_holds(&engine));
    problems.extend(check_statements(&engine)?);
    let mut transit: std::collections::BTreeMap<u128, i128> = Default::default();
    for (_, account) in engine.transit_accounts() {
        *transit.entry(account.id.0).or_default() +=
            i128::from(account.credits_posted) - i128::from(account.debits_posted);
    }
    problems.extend(
        transit
            .iter()
            .filter(|(_, net)| **net != 0)
            .map(|(id, net)| format!("transit account {id:x} nets to {net}, not 0")),
    );
    let config = engine_config(data_dir, shards);
    engine.shutdown();
    if !lost.is_empty() {
        bail!(
            "{} of {} acknowledged commands are not as acknowledged:\n{}",
            lost.len(),
            acks.len(),
            lost[..lost.len().min(SHOWN_MAX)].join("\n")
        );
    }
    if !problems.is_empty() {
        bail!(
            "{} invariant violations:\n{}",
            problems.len(),
            problems[..problems.len().min(SHOWN_MAX)].join("\n")
        );
    }
    let mut records_total = 0;
    for (shard, node_hash) in hashes.iter().enumerate() {
        let shard_dir = data_dir.join(format!("shard-{shard:02}"));
        let (replay_hash, records) = replay_log(&shard_dir, config.node.state)?;
        let recovered = &report.shards[shard];
        if replay_hash != *node_hash {
            bail!(
                "shard {shard}: state hash {node_hash:032x} after recovery (checkpoint {:?}, \
                 {} records replayed) differs from {replay_hash:032x} of a fresh replay of \
                 {records} records",
                recovered.checkpoint_record_index,
                recovered.records_replayed
            );
        }
        records_total += records;
    }
    Ok(format!(
        "verified acks={} shards={shards} records={records_total} evicted={evicted} \
         transit_accounts={} state hashes identical to fresh replays of every shard's log",
        acks.len(),
        transit.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_round_trip_through_their_text() {
        let text = "recovered\nack create_transfers 5:0,18446744073709551617:208\n\
                    ack place_orders 7:8\n";
        let acks = parse_acks(text).expect("parses");
        assert_eq!(acks.len(), 3);
        assert_eq!(acks[0].operation, Operation::CreateTransfers);
        assert_eq!(acks[1].id, (1 << 64) + 1);
        assert_eq!(acks[1].code, ResultCode::ExceedsCredits);
        assert_eq!(acks[2].operation, Operation::PlaceOrders);
        assert!(parse_acks("ack nonsense 1:0").is_err());
    }
}
