//! `surge drive`: a small load driver over the real [`Engine`] (`--shards` shards) in a data
//! directory, for the crash test in `tests/crash.rs`. It prints one `ack` line per batch
//! only after the engine answered it (durable and applied, cross-shard transfers resolved),
//! so a test that kills the process knows exactly which effects must survive; `--verify`
//! reopens the directory, lets the engine deliver what the cross-shard and order outboxes
//! hold (half the orders span shards: a SKU of any shard, the global merchant), and
//! checks every acknowledged command, each shard's ledger invariants, that transit
//! accounts net to zero, and each shard's state hash against a fresh replay of its log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use surge_core::{
    account_flags, decode, shard_of, transfer_flags, Account, AccountId, BatchBuf, Operation,
    Order, OrderAction, OrderId, OrderLine, OrderLookup, ResultCode, Sku, SkuId, StateMachine,
    Transfer, TransferId, TransferLookup,
};
use surge_engine::{Engine, EngineConfig, EngineReport, NodeConfig};
use surge_wal::{Clock, FileStorage, Log, LogConfig, ManualClock, SystemClock};

use crate::rng::SplitMix64;

mod verify;

pub use verify::verify;

/// Ledger of every driven account.
const LEDGER: u32 = 1;
/// Account and transfer code of driven commands.
const CODE: u16 = 1;
/// The account that funds wallets; unconstrained, so it may go negative.
const FUNDING: AccountId = AccountId(1);
/// The merchant paid by wallets; unconstrained. With several shards most wallets pay it
/// across shards.
const MERCHANT: AccountId = AccountId(2);
/// Ids from here on are searched for each shard's own merchant (half the orders stay
/// within a shard; half the pending transfers pay it).
const LOCAL_MERCHANT_FIRST: u128 = 1_000;
/// First wallet id; wallets may never spend more than they hold.
const WALLET_FIRST: u128 = 101;
/// Wallets driven.
const WALLET_COUNT: u64 = 16;
/// Credit each wallet gets at setup, in minor units.
const WALLET_FUNDS: u64 = 1_000_000;
/// An amount no wallet can hold (more than all funding ever), so it fails `ExceedsCredits`.
const AMOUNT_TOO_LARGE: u64 = 1 << 50;
/// Ids from here on are searched for each shard's SKU, which orders buy.
const SKU_FIRST: u64 = 1;
/// Units of the SKU stocked at setup: more than any run sells.
const SKU_UNITS: u64 = 1 << 40;
/// Pending transfers and unpaid orders expire after this much log time, so expiry (by
/// pulses) is part of the crash test.
const EXPIRY_NS: u64 = 2_000_000_000;
/// Commands per driven batch, at most.
const BATCH_COMMANDS_MAX: u64 = 16;
/// Evict finished transfers every this many: small, so crashes hit evictions too.
const EVICT_INTERVAL_TRANSFERS: u64 = 500;

/// Write a checkpoint every this many log records: small, so crashes hit checkpoints.
const CHECKPOINT_INTERVAL_RECORDS: u64 = 50;
/// Log segment size: small, so crashes hit segment rotation.
const SEGMENT_SIZE_BYTES: u64 = 1 << 20;
/// How long to wait before resubmitting a batch the log refused as busy.
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// Options of `surge drive`.
#[derive(Clone, Debug, clap::Args)]
pub struct DriveArgs {
    /// Data directory: `log/`, `checkpoints/` and `history/` live in it (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Seed of the workload. Command ids carry it in their high 64 bits, so every run on
    /// one data directory needs its own seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Batches to drive after setup; 0 drives until killed.
    #[arg(long, default_value_t = 0)]
    pub batches: u64,
    /// Instead of driving: recover, check every acknowledged command (`--acks`), the
    /// invariants and the state hash against a fresh replay of the log, and exit non-zero
    /// with the reason on any mismatch.
    #[arg(long)]
    pub verify: bool,
    /// With `--verify`: a file of `ack` lines printed by earlier runs.
    #[arg(long, requires = "verify")]
    pub acks: Option<PathBuf>,
    /// Shards of the engine (fixed when the data directory is created).
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
}

/// Runs `surge drive` (or `surge drive --verify`).
pub fn run(args: &DriveArgs) -> anyhow::Result<()> {
    if args.verify {
        let acks = match &args.acks {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            None => String::new(),
        };
        let summary = verify(&args.data_dir, args.shards, &acks)?;
        println!("{summary}");
        Ok(())
    } else {
        drive(args)
    }
}

/// The engine configuration `drive` and `--verify` share.
fn engine_config(data_dir: &Path, shards: usize) -> EngineConfig {
    EngineConfig {
        shards,
        node: NodeConfig {
            log: log_config(),
            checkpoint_interval_records: CHECKPOINT_INTERVAL_RECORDS,
            // Every interval, not only once the log has grown by the last checkpoint's
            // size: crashes hit checkpoints often.
            checkpoint_log_percent: 0,
            evict_interval_transfers: EVICT_INTERVAL_TRANSFERS,
            ..NodeConfig::default()
        },
        history: true,
        ..EngineConfig::new(data_dir)
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        ..LogConfig::default()
    }
}

fn open_engine(
    data_dir: &Path,
    shards: usize,
    clock: Arc<dyn Clock + Sync>,
) -> anyhow::Result<(Engine, EngineReport)> {
    let (engine, report) = Engine::open_with_clock(engine_config(data_dir, shards), clock)
        .with_context(|| format!("recovering {}", data_dir.display()))?;
    for (index, shard) in report.shards.iter().enumerate() {
        eprintln!(
            "recovered shard={index} checkpoint={} replayed={}",
            shard
                .checkpoint_record_index
                .map_or_else(|| "none".to_string(), |index| index.to_string()),
            shard.records_replayed
        );
        for warning in &shard.warnings {
            eprintln!("warning: shard {index}: {warning}");
        }
    }
    Ok((engine, report))
}

/// Each shard's own merchant and SKU, by shard index: the first ids from
/// [`LOCAL_MERCHANT_FIRST`] and [`SKU_FIRST`] that the shard owns.
fn local_ids(shards: usize) -> (Vec<AccountId>, Vec<SkuId>) {
    let count = shards as u32;
    let merchants = (0..count)
        .map(|shard| {
            let id = (LOCAL_MERCHANT_FIRST..)
                .find(|id| shard_of(*id, count) == shard)
                .expect("every shard owns ids");
            AccountId(id)
        })
        .collect();
    let skus = (0..count)
        .map(|shard| {
            let id = (SKU_FIRST..)
                .find(|id| shard_of(u128::from(*id), count) == shard)
                .expect("every shard owns ids");
            SkuId(id)
        })
        .collect();
    (merchants, skus)
}

fn drive(args: &DriveArgs) -> anyhow::Result<()> {
    let (engine, _report) = open_engine(&args.data_dir, args.shards, Arc::new(SystemClock))?;
    let (local_merchants, skus) = local_ids(args.shards);
    let mut driver = Driver {
        engine: &engine,
        shards: args.shards as u32,
        local_merchants,
        skus,
        rng: SplitMix64::new(args.seed),
        id_high: (u128::from(args.seed) + 1) << 64,
        id_count: 0,
        pendings: Vec::new(),
    };
    let first = driver.id_high | 1;
    let used = engine
        .transfer(TransferId(first))
        .context("looking up the seed's first id")?
        .is_some()
        || engine.order(OrderId(first)).is_some();
    if used {
        bail!(
            "seed {} was already driven on {}: pass another --seed",
            args.seed,
            args.data_dir.display()
        );
    }
    driver.setup()?;
    let mut batch_index = 0;
    while args.batches == 0 || batch_index < args.batches {
        driver.step()?;
        batch_index += 1;
    }
    drop(driver);
    engine.shutdown();
    Ok(())
}

/// Generates the workload and prints the acknowledgements.
struct Driver<'a> {
    engine: &'a Engine,
    shards: u32,
    /// Each shard's merchant, by shard index.
    local_merchants: Vec<AccountId>,
    /// Each shard's SKU, by shard index.
    skus: Vec<SkuId>,
    rng: SplitMix64,
    /// The seed's high 64 bits of every id this run makes.
    id_high: u128,
    /// Ids made so far by this run.
    id_count: u64,
    /// Acknowledged pending transfers not yet posted or voided by this run.
    pendings: Vec<TransferId>,
}

impl Driver<'_> {
    fn id_next(&mut self) -> u128 {
        self.id_count += 1;
        self.id_high | u128::from(self.id_count)
    }

    fn wallet(&mut self) -> AccountId {
        AccountId(WALLET_FIRST + u128::from(self.rng.below(WALLET_COUNT)))
    }

    /// The merchant on `wallet`'s shard.
    fn local_merchant(&self, wallet: AccountId) -> AccountId {
        self.local_merchants[shard_of(wallet.0, self.shards) as usize]
    }

    /// The SKU on `wallet`'s shard.
    fn local_sku(&self, wallet: AccountId) -> SkuId {
        self.skus[shard_of(wallet.0, self.shards) as usize]
    }

    fn amount(&mut self) -> u64 {
        // One in eight is more than any wallet holds: a failure that must stay failed.
        if self.rng.below(8) == 0 {
            AMOUNT_TOO_LARGE
        } else {
            self.rng.below(5_000) + 1
        }
    }

    fn commands(&mut self) -> u64 {
        self.rng.below(BATCH_COMMANDS_MAX) + 1
    }

    /// Accounts, wallet funding and the SKU, with fixed ids: `exists` after a restart.
    fn setup(&mut self) -> anyhow::Result<()> {
        let mut accounts = vec![account(FUNDING, 0), account(MERCHANT, 0)];
        accounts.extend(self.local_merchants.iter().map(|id| account(*id, 0)));
        accounts.extend((0..WALLET_COUNT).map(|index| {
            let id = AccountId(WALLET_FIRST + u128::from(index));
            account(id, account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        }));
        self.submit(BatchBuf::CreateAccounts(accounts))?;
        let funding = (0..WALLET_COUNT)
            .map(|index| Transfer {
                id: TransferId(u128::from(index) + 1),
                debit_account_id: FUNDING,
                credit_account_id: AccountId(WALLET_FIRST + u128::from(index)),
                amount: WALLET_FUNDS,
                ledger: LEDGER,
                code: CODE,
                ..Transfer::default()
            })
            .collect();
        self.submit(BatchBuf::CreateTransfers(funding))?;
        let skus = self
            .skus
            .iter()
            .map(|id| Sku {
                id: *id,
                units_stocked: SKU_UNITS,
                code: CODE,
                ..Sku::default()
            })
            .collect();
        self.submit(BatchBuf::CreateSkus(skus))?;
        Ok(())
    }

    /// One random batch (an order step is two: place, then pay most of them).
    fn step(&mut self) -> anyhow::Result<()> {
        match self.rng.below(5) {
            0 | 1 => self.transfers(),
            2 => self.pendings(),
            3 => self.resolve_pendings(),
            _ => self.orders(),
        }
    }

    fn transfers(&mut self) -> anyhow::Result<()> {
        let count = self.commands();
        let transfers = (0..count)
            .map(|_| {
                let id = TransferId(self.id_next());
                let (debit, credit, amount) = match self.rng.below(6) {
                    // Top-ups keep the wallets spending.
                    0 => (FUNDING, self.wallet(), 10_000),
                    1 => (self.wallet(), MERCHANT, self.amount()),
                    _ => {
                        let debit = self.wallet();
                        let mut credit = self.wallet();
                        if credit == debit {
                            credit = MERCHANT;
                        }
                        (debit, credit, self.amount())
                    }
                };
                transfer(id, debit, credit, amount)
            })
            .collect();
        self.submit(BatchBuf::CreateTransfers(transfers))?;
        Ok(())
    }

    fn pendings(&mut self) -> anyhow::Result<()> {
        let count = self.commands();
        let transfers: Vec<Transfer> = (0..count)
            .map(|_| {
                let id = TransferId(self.id_next());
                let debit = self.wallet();
                let amount = self.amount();
                // Half pay the shared merchant: across shards for most wallets when
                // there are several, so crashes hit both legs and phase-two legs.
                let credit = if self.rng.below(2) == 0 {
                    MERCHANT
                } else {
                    self.local_merchant(debit)
                };
                Transfer {
                    flags: transfer_flags::PENDING,
                    // Half never expire; the rest expire after a while unless resolved.
                    timeout_ns: if self.rng.below(2) == 0 { 0 } else { EXPIRY_NS },
                    ..transfer(id, debit, credit, amount)
                }
            })
            .collect();
        let codes = self.submit(BatchBuf::CreateTransfers(transfers.clone()))?;
        for (transfer, code) in transfers.iter().zip(codes) {
            if code == ResultCode::Ok {
                self.pendings.push(transfer.id);
            }
        }
        Ok(())
    }

    fn resolve_pendings(&mut self) -> anyhow::Result<()> {
        if self.pendings.is_empty() {
            return self.transfers();
        }
        self.rng.shuffle(&mut self.pendings);
        let count = (self.commands() as usize).min(self.pendings.len());
        let resolved: Vec<TransferId> = self.pendings.drain(..count).collect();
        let transfers = resolved
            .into_iter()
            .map(|pending_id| {
                let flags = if self.rng.below(3) == 0 {
                    transfer_flags::VOID_PENDING
                } else {
                    transfer_flags::POST_PENDING
                };
                Transfer {
                    id: TransferId(self.id_next()),
                    pending_id,
                    flags,
                    ..Transfer::default()
                }
            })
            .collect();
        self.submit(BatchBuf::CreateTransfers(transfers))?;
        Ok(())
    }

    fn orders(&mut self) -> anyhow::Result<()> {
        let count = self.commands();
        let orders: Vec<Order> = (0..count)
            .map(|_| {
                let buyer = self.wallet();
                // Half the orders span shards (with several): any shard's SKU, the merchant
                // of shard 0's or the global one; a third of those add a line on the next
                // shard's SKU (their lines then live on two shards).
                let spanning = self.rng.below(2) == 0;
                let mut sku_index = None;
                let (sku_id, merchant_id) = if spanning {
                    let index = self.rng.below(self.skus.len() as u64) as usize;
                    sku_index = Some(index);
                    (self.skus[index], MERCHANT)
                } else {
                    (self.local_sku(buyer), self.local_merchant(buyer))
                };
                let mut lines = [OrderLine::default(); surge_core::records::ORDER_LINES_MAX];
                lines[0] = OrderLine {
                    sku_id,
                    quantity: self.rng.below(3) as u32 + 1,
                    reserved: 0,
                };
                let mut line_count = 1;
                if let Some(index) = sku_index.filter(|_| self.skus.len() > 1) {
                    if self.rng.below(3) == 0 {
                        lines[1] = OrderLine {
                            sku_id: self.skus[(index + 1) % self.skus.len()],
                            quantity: 1,
                            reserved: 0,
                        };
                        line_count = 2;
                    }
                }
                Order {
                    id: OrderId(self.id_next()),
                    buyer_id: buyer,
                    merchant_id,
                    transfer_id: TransferId(self.id_next()),
                    amount: self.amount(),
                    timeout_ns: EXPIRY_NS,
                    ledger: LEDGER,
                    line_count,
                    lines,
                    ..Order::default()
                }
            })
            .collect();
        let codes = self.submit(BatchBuf::PlaceOrders(orders.clone()))?;
        // Pay three in four of the placed orders; the rest expire by pulses.
        let placed: Vec<OrderId> = orders
            .iter()
            .zip(codes)
            .filter(|(_, code)| *code == ResultCode::Ok)
            .map(|(order, _)| order.id)
            .collect();
        let mut actions = Vec::new();
        for order_id in placed {
            if self.rng.below(4) != 0 {
                actions.push(OrderAction {
                    order_id,
                    transfer_id: TransferId(self.id_next()),
                    ..OrderAction::default()
                });
            }
        }
        if !actions.is_empty() {
            self.submit(BatchBuf::PayOrders(actions))?;
        }
        Ok(())
    }

    /// Submits `batch` (again while the log is busy), waits until it is durable and
    /// applied, and only then prints its `ack` line.
    fn submit(&mut self, batch: BatchBuf) -> anyhow::Result<Vec<ResultCode>> {
        let codes = loop {
            match self.engine.submit_wait(batch.as_batch()) {
                Err(error) if error.is_busy() => std::thread::sleep(BUSY_RETRY),
                other => break other.context("submitting a batch")?,
            }
        };
        let ids = command_ids(&batch);
        assert_eq!(ids.len(), codes.len());
        let entries: Vec<String> = ids
            .iter()
            .zip(&codes)
            .map(|(id, code)| format!("{id}:{}", code.as_u32()))
            .collect();
        let line = format!(
            "ack {} {}\n",
            operation_name(batch.as_batch().operation()),
            entries.join(",")
        );
        // One write per line, flushed at once: the acknowledgement goes out now.
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(line.as_bytes())?;
        stdout.flush()?;
        Ok(codes)
    }
}

fn account(id: AccountId, flags: u16) -> Account {
    Account {
        id,
        ledger: LEDGER,
        code: CODE,
        flags,
        ..Account::default()
    }
}

fn transfer(id: TransferId, debit: AccountId, credit: AccountId, amount: u64) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: LEDGER,
        code: CODE,
        ..Transfer::default()
    }
}

/// The id an acknowledgement names for each command: the account, transfer, SKU or
/// order id, and for order actions the id of the transfer the action creates.
fn command_ids(batch: &BatchBuf) -> Vec<u128> {
    match batch {
        BatchBuf::CreateAccounts(accounts) => accounts.iter().map(|a| a.id.0).collect(),
        BatchBuf::CreateTransfers(transfers) => transfers.iter().map(|t| t.id.0).collect(),
        BatchBuf::CreateSkus(skus) => skus.iter().map(|s| u128::from(s.id.0)).collect(),
        BatchBuf::PlaceOrders(orders) => orders.iter().map(|o| o.id.0).collect(),
        BatchBuf::PayOrders(actions) => actions.iter().map(|a| a.transfer_id.0).collect(),
        other => unreachable!("drive never submits {:?}", other.as_batch().operation()),
    }
}

/// The operation's snake_case name, as in the API.
fn operation_name(operation: Operation) -> String {
    match serde_json::to_value(operation) {
        Ok(serde_json::Value::String(name)) => name,
        _ => unreachable!("operations serialize as strings"),
    }
}
