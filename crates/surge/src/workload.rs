//! Benchmark workloads: the batches a festival throws at the ledger, generated from a seed
//! before any timing starts. Shared by `surge bench` and `benches/`.

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{
    account_flags, Account, AccountId, BatchBuf, OrderId, Reservation, Sku, SkuId, Transfer,
    TransferId,
};

use crate::rng::SplitMix64;

/// Ledger of every workload account.
pub const LEDGER: u32 = 1;
/// Account code of buyers and merchants in workloads.
pub const ACCOUNT_CODE: u16 = 1;
/// Transfer code of workload payments.
pub const TRANSFER_CODE: u16 = 1;
/// The SKU of the hot-SKU workload.
pub const HOT_SKU: SkuId = SkuId(1);
/// Credit given to each buyer wallet at setup, in minor units.
pub const BUYER_FUNDS: u64 = 1_000_000_000;
/// First transfer id of measured batches; setup transfers count up from 1.
const MEASURED_ID_BASE: u128 = 1 << 64;

/// The shape of the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// Transfers between random pairs of accounts.
    Uniform,
    /// Every transfer pays one merchant account from a random buyer wallet.
    HotMerchant,
    /// Every command reserves a unit of one SKU for a random buyer.
    HotSku,
}

impl WorkloadKind {
    /// Every workload, in report order.
    pub const ALL: [WorkloadKind; 3] = [
        WorkloadKind::Uniform,
        WorkloadKind::HotMerchant,
        WorkloadKind::HotSku,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Uniform => "uniform",
            WorkloadKind::HotMerchant => "hot-merchant",
            WorkloadKind::HotSku => "hot-sku",
        }
    }
}

/// Size of a workload.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadShape {
    /// Accounts (uniform) or buyers (hot workloads).
    pub accounts: u64,
    /// Measured batches.
    pub batches: usize,
    /// Commands per measured batch.
    pub batch_size: usize,
    /// Per-buyer limit on the hot SKU (0 = none).
    pub sku_limit_per_buyer: u32,
    /// Drives every random choice.
    pub seed: u64,
}

impl WorkloadShape {
    /// Commands in the measured part.
    pub fn commands(&self) -> usize {
        self.batches * self.batch_size
    }
}

/// The merchant account of the hot workloads.
pub fn merchant_id(shape: &WorkloadShape) -> AccountId {
    AccountId(u128::from(shape.accounts) + 1)
}

/// The account that funds buyer wallets at setup.
pub fn funding_id(shape: &WorkloadShape) -> AccountId {
    AccountId(u128::from(shape.accounts) + 2)
}

/// Batches that create the accounts (and SKU) a workload needs; not timed.
pub fn setup_batches(kind: WorkloadKind, shape: &WorkloadShape) -> Vec<BatchBuf> {
    let buyer_flags = match kind {
        WorkloadKind::Uniform => 0,
        WorkloadKind::HotMerchant | WorkloadKind::HotSku => {
            account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS
        }
    };
    let mut accounts: Vec<Account> = (1..=shape.accounts)
        .map(|id| account(AccountId(u128::from(id)), buyer_flags))
        .collect();
    accounts.push(account(merchant_id(shape), 0));
    accounts.push(account(funding_id(shape), 0));
    let mut batches: Vec<BatchBuf> = accounts
        .chunks(BATCH_EVENTS_MAX)
        .map(|chunk| BatchBuf::CreateAccounts(chunk.to_vec()))
        .collect();
    if buyer_flags != 0 {
        let funding: Vec<Transfer> = (1..=shape.accounts)
            .map(|id| Transfer {
                id: TransferId(u128::from(id)),
                debit_account_id: funding_id(shape),
                credit_account_id: AccountId(u128::from(id)),
                amount: BUYER_FUNDS,
                ledger: LEDGER,
                code: TRANSFER_CODE,
                ..Transfer::default()
            })
            .collect();
        batches.extend(
            funding
                .chunks(BATCH_EVENTS_MAX)
                .map(|c| BatchBuf::CreateTransfers(c.to_vec())),
        );
    }
    if kind == WorkloadKind::HotSku {
        let sku = Sku {
            id: HOT_SKU,
            units_stocked: shape.commands() as u64,
            limit_per_buyer: shape.sku_limit_per_buyer,
            code: 1,
            ..Sku::default()
        };
        batches.push(BatchBuf::CreateSkus(vec![sku]));
    }
    batches
}

/// The measured batches.
pub fn measured_batches(kind: WorkloadKind, shape: &WorkloadShape) -> Vec<BatchBuf> {
    let mut rng = SplitMix64::new(shape.seed);
    (0..shape.batches)
        .map(|batch_index| {
            let first = batch_index * shape.batch_size;
            let commands = first..first + shape.batch_size;
            match kind {
                WorkloadKind::Uniform => BatchBuf::CreateTransfers(
                    commands
                        .map(|i| uniform_transfer(&mut rng, shape, i))
                        .collect(),
                ),
                WorkloadKind::HotMerchant => BatchBuf::CreateTransfers(
                    commands.map(|i| payment(&mut rng, shape, i)).collect(),
                ),
                WorkloadKind::HotSku => {
                    BatchBuf::Reserve(commands.map(|i| reservation(&mut rng, shape, i)).collect())
                }
            }
        })
        .collect()
}

fn account(id: AccountId, flags: u16) -> Account {
    Account {
        id,
        ledger: LEDGER,
        code: ACCOUNT_CODE,
        flags,
        ..Account::default()
    }
}

fn random_account(rng: &mut SplitMix64, shape: &WorkloadShape) -> AccountId {
    AccountId(u128::from(rng.below(shape.accounts) + 1))
}

fn uniform_transfer(rng: &mut SplitMix64, shape: &WorkloadShape, index: usize) -> Transfer {
    let debit = random_account(rng, shape);
    let mut credit = random_account(rng, shape);
    if credit == debit {
        credit = AccountId(debit.0 % u128::from(shape.accounts) + 1);
    }
    Transfer {
        id: TransferId(MEASURED_ID_BASE + index as u128),
        debit_account_id: debit,
        credit_account_id: credit,
        amount: rng.below(10_000) + 1,
        ledger: LEDGER,
        code: TRANSFER_CODE,
        ..Transfer::default()
    }
}

fn payment(rng: &mut SplitMix64, shape: &WorkloadShape, index: usize) -> Transfer {
    Transfer {
        id: TransferId(MEASURED_ID_BASE + index as u128),
        debit_account_id: random_account(rng, shape),
        credit_account_id: merchant_id(shape),
        amount: rng.below(100) + 1,
        ledger: LEDGER,
        code: TRANSFER_CODE,
        ..Transfer::default()
    }
}

fn reservation(rng: &mut SplitMix64, shape: &WorkloadShape, index: usize) -> Reservation {
    Reservation {
        order_id: OrderId(index as u128 + 1),
        buyer_id: random_account(rng, shape),
        sku_id: HOT_SKU,
        quantity: 1,
        timeout_ns: 15 * 60 * 1_000_000_000,
        ..Reservation::default()
    }
}
