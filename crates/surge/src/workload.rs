//! Benchmark workloads: the batches a festival throws at the ledger, generated from a seed
//! before any timing starts (or, for the engine benchmark, one batch at a time as it is
//! submitted). Shared by `surge bench` and `benches/`.

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::records::ORDER_LINES_MAX;
use surge_core::{
    account_flags, order_action_flags, Account, AccountId, BatchBuf, Order, OrderAction, OrderId,
    OrderLine, Reservation, ResultCode, Sku, SkuId, Transfer, TransferId,
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
pub(crate) const MEASURED_ID_BASE: u128 = 1 << 64;

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
    /// Percent of the mixed workload's orders that are carts: a second line, on another
    /// SKU (which may live on another shard). 0..=100.
    pub cart_percent: u64,
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

/// One measured batch of `size` commands of `kind` whose ids start at command
/// `first_index`, drawn from `rng`. The engine benchmark makes its batches one at a time as
/// it submits them, each submitter from its own range of indexes, so ids are fresh.
pub fn measured_batch(
    kind: WorkloadKind,
    shape: &WorkloadShape,
    rng: &mut SplitMix64,
    first_index: usize,
    size: usize,
) -> BatchBuf {
    let commands = first_index..first_index + size;
    match kind {
        WorkloadKind::Uniform => {
            BatchBuf::CreateTransfers(commands.map(|i| uniform_transfer(rng, shape, i)).collect())
        }
        WorkloadKind::HotMerchant => {
            BatchBuf::CreateTransfers(commands.map(|i| payment(rng, shape, i)).collect())
        }
        WorkloadKind::HotSku => {
            BatchBuf::Reserve(commands.map(|i| reservation(rng, shape, i)).collect())
        }
    }
}

/// First transfer id of the place-order stampede's payment holds (setup transfers count
/// up from 1, the transfer workloads' from 2^64).
const STAMPEDE_TRANSFER_ID_BASE: u128 = 1 << 72;

/// Unpaid-order timeout of the stampede's orders, in ns of log time: none expires during
/// a run, so the state machine only places.
pub const STAMPEDE_ORDER_TIMEOUT_NS: u64 = 15 * 60 * 1_000_000_000;

/// Order `index` of the place-order stampede: one unit of [`HOT_SKU`] for a random funded
/// buyer, paying the merchant (set up as for [`WorkloadKind::HotSku`]). Order `index` has id
/// `index + 1` and its payment hold a transfer id of its own.
pub fn stampede_order(rng: &mut SplitMix64, shape: &WorkloadShape, index: u64) -> Order {
    let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
    lines[0] = OrderLine {
        sku_id: HOT_SKU,
        quantity: 1,
        reserved: 0,
    };
    Order {
        id: OrderId(u128::from(index) + 1),
        buyer_id: random_account(rng, shape),
        merchant_id: merchant_id(shape),
        transfer_id: TransferId(STAMPEDE_TRANSFER_ID_BASE + u128::from(index)),
        amount: rng.below(10_000) + 1,
        timeout_ns: STAMPEDE_ORDER_TIMEOUT_NS,
        ledger: LEDGER,
        line_count: 1,
        lines,
        ..Order::default()
    }
}

/// The measured batches of the place-order stampede ([`stampede_order`]).
pub fn stampede_batches(shape: &WorkloadShape) -> Vec<BatchBuf> {
    let mut rng = SplitMix64::new(shape.seed);
    (0..shape.batches)
        .map(|batch_index| {
            let first = (batch_index * shape.batch_size) as u64;
            let indexes = first..first + shape.batch_size as u64;
            BatchBuf::PlaceOrders(
                indexes
                    .map(|index| stampede_order(&mut rng, shape, index))
                    .collect(),
            )
        })
        .collect()
}

/// SKUs on sale in the mixed workload, ids `1..=MIXED_SKU_COUNT`; half of all orders buy
/// [`HOT_SKU`], the rest spread over the others.
pub const MIXED_SKU_COUNT: u64 = 16;
/// Units stocked of each mixed-workload SKU: more than any run sells, so no order fails
/// `sold_out` (the hot-SKU workload is the stampede on scarce stock).
pub const MIXED_SKU_UNITS: u64 = 1 << 40;
/// Percent of placed mixed-workload orders that are paid.
pub const MIXED_PAY_PERCENT: u64 = 80;
/// Percent of placed orders that are paid and later refunded (part of the paid ones).
pub const MIXED_REFUND_PERCENT: u64 = 4;
/// Percent of placed orders that are cancelled; the rest (10 %) are abandoned and expire.
pub const MIXED_CANCEL_PERCENT: u64 = 10;
/// Unpaid-order timeout of abandoned orders, in ns of log time: short, so they expire
/// during a run (the node's batches and pulses expire them).
pub const MIXED_ABANDONED_TIMEOUT_NS: u64 = 250_000_000;
/// Timeout of the orders that will be paid or cancelled, in ns: long enough that none
/// expires before its payment or cancellation arrives.
pub const MIXED_ORDER_TIMEOUT_NS: u64 = 60_000_000_000;

/// What becomes of a mixed-workload order, fixed by its index and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrderFate {
    /// Paid, then refunded (with restock).
    PaidThenRefunded,
    /// Paid.
    Paid,
    /// Cancelled while reserved.
    Cancelled,
    /// Left unpaid until it expires.
    Abandoned,
}

fn order_fate(seed: u64, index: u64) -> OrderFate {
    let draw = SplitMix64::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64() % 100;
    if draw < MIXED_REFUND_PERCENT {
        OrderFate::PaidThenRefunded
    } else if draw < MIXED_PAY_PERCENT {
        OrderFate::Paid
    } else if draw < MIXED_PAY_PERCENT + MIXED_CANCEL_PERCENT {
        OrderFate::Cancelled
    } else {
        OrderFate::Abandoned
    }
}

/// Setup of the mixed workload: funded buyer wallets, the merchant (as for the hot-merchant
/// workload) and [`MIXED_SKU_COUNT`] SKUs without a per-buyer limit; not timed.
pub fn mixed_setup_batches(shape: &WorkloadShape) -> Vec<BatchBuf> {
    let mut batches = setup_batches(WorkloadKind::HotMerchant, shape);
    let skus = (1..=MIXED_SKU_COUNT)
        .map(|id| Sku {
            id: SkuId(id),
            units_stocked: MIXED_SKU_UNITS,
            code: 1,
            ..Sku::default()
        })
        .collect();
    batches.push(BatchBuf::CreateSkus(skus));
    batches
}

/// The mixed festival workload of one submitter: buyers place orders (reserve a unit and
/// authorize the payment, one command), then most pay, some cancel, some abandon the order
/// to expire, and some paid orders are refunded. Each batch holds one operation, so the
/// generator places orders and queues each follow-up action once the order's placement
/// came back `ok` ([`FestivalMix::completed`]); a queue that holds a full batch goes out
/// before new orders. Order `i` (from the submitter's range) has id `i + 1`; the transfers
/// of its authorization, payment or cancellation, and refund are derived from `i`.
#[derive(Clone, Debug)]
pub struct FestivalMix {
    shape: WorkloadShape,
    rng: SplitMix64,
    index_next: u64,
    pays: Vec<OrderAction>,
    cancels: Vec<OrderAction>,
    refunds: Vec<OrderAction>,
    abandoned: u64,
}

impl FestivalMix {
    /// A generator whose orders have indexes from `first_index` on.
    pub fn new(shape: &WorkloadShape, first_index: u64) -> FestivalMix {
        FestivalMix {
            shape: *shape,
            rng: SplitMix64::new(shape.seed ^ first_index),
            index_next: first_index,
            pays: Vec::new(),
            cancels: Vec::new(),
            refunds: Vec::new(),
            abandoned: 0,
        }
    }

    /// The next batch: a full batch of refunds, cancellations or payments if one is
    /// queued, else `batch_size` new orders.
    pub fn next_batch(&mut self) -> BatchBuf {
        let size = self.shape.batch_size;
        if self.refunds.len() >= size {
            return BatchBuf::RefundOrders(self.refunds.drain(..size).collect());
        }
        if self.cancels.len() >= size {
            return BatchBuf::CancelOrders(self.cancels.drain(..size).collect());
        }
        if self.pays.len() >= size {
            return BatchBuf::PayOrders(self.pays.drain(..size).collect());
        }
        let first = self.index_next;
        self.index_next += size as u64;
        BatchBuf::PlaceOrders(
            (first..first + size as u64)
                .map(|i| self.order(i))
                .collect(),
        )
    }

    /// Takes the codes of a batch this generator made, and queues what follows: for each
    /// order placed `ok`, its payment or cancellation (or nothing: abandoned); for each
    /// payment `ok` whose order is to be refunded, the refund.
    pub fn completed(&mut self, batch: &BatchBuf, codes: &[ResultCode]) {
        assert_eq!(batch.as_batch().len(), codes.len());
        let seed = self.shape.seed;
        match batch {
            BatchBuf::PlaceOrders(orders) => {
                for (order, _) in orders
                    .iter()
                    .zip(codes)
                    .filter(|(_, c)| **c == ResultCode::Ok)
                {
                    let index = order.id.0 as u64 - 1;
                    match order_fate(seed, index) {
                        OrderFate::Paid | OrderFate::PaidThenRefunded => {
                            self.pays.push(order_action(index, 1, 0));
                        }
                        OrderFate::Cancelled => self.cancels.push(order_action(index, 1, 0)),
                        OrderFate::Abandoned => self.abandoned += 1,
                    }
                }
            }
            BatchBuf::PayOrders(actions) => {
                for (action, _) in actions
                    .iter()
                    .zip(codes)
                    .filter(|(_, c)| **c == ResultCode::Ok)
                {
                    let index = action.order_id.0 as u64 - 1;
                    if order_fate(seed, index) == OrderFate::PaidThenRefunded {
                        let restock = order_action_flags::RESTOCK;
                        self.refunds.push(order_action(index, 2, restock));
                    }
                }
            }
            _ => {}
        }
    }

    /// Orders placed `ok` and left to expire so far.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    fn order(&mut self, index: u64) -> Order {
        let sku_id = if self.rng.below(2) == 0 {
            HOT_SKU
        } else {
            SkuId(2 + self.rng.below(MIXED_SKU_COUNT - 1))
        };
        let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
        lines[0] = OrderLine {
            sku_id,
            quantity: 1,
            reserved: 0,
        };
        // Drawn only for carts, so that runs without them keep their orders.
        let mut line_count = 1;
        if self.shape.cart_percent > 0 && self.rng.below(100) < self.shape.cart_percent {
            let other = 1 + (sku_id.0 + self.rng.below(MIXED_SKU_COUNT - 1)) % MIXED_SKU_COUNT;
            lines[1] = OrderLine {
                sku_id: SkuId(other),
                quantity: 1,
                reserved: 0,
            };
            line_count = 2;
        }
        let timeout_ns = match order_fate(self.shape.seed, index) {
            OrderFate::Abandoned => MIXED_ABANDONED_TIMEOUT_NS,
            _ => MIXED_ORDER_TIMEOUT_NS,
        };
        Order {
            id: OrderId(u128::from(index) + 1),
            buyer_id: random_account(&mut self.rng, &self.shape),
            merchant_id: merchant_id(&self.shape),
            transfer_id: mixed_transfer_id(index, 0),
            amount: self.rng.below(10_000) + 1,
            timeout_ns,
            ledger: LEDGER,
            line_count,
            lines,
            ..Order::default()
        }
    }
}

/// The measured batches of the festival mix for one submitter, made ahead of time on the
/// assumption that every command succeeds (as it does against a state machine set up
/// with [`mixed_setup_batches`]; the caller checks the codes).
pub fn mixed_batches(shape: &WorkloadShape) -> Vec<BatchBuf> {
    let mut mix = FestivalMix::new(shape, 0);
    let mut ok = Vec::with_capacity(shape.batch_size);
    (0..shape.batches)
        .map(|_| {
            let batch = mix.next_batch();
            ok.clear();
            ok.resize(batch.as_batch().len(), ResultCode::Ok);
            mix.completed(&batch, &ok);
            batch
        })
        .collect()
}

/// The `step`th transfer of mixed-workload order `index`: 0 authorizes it, 1 pays or
/// cancels it, 2 refunds it.
fn mixed_transfer_id(index: u64, step: u128) -> TransferId {
    TransferId(MEASURED_ID_BASE + u128::from(index) * 4 + step)
}

fn order_action(index: u64, step: u128, flags: u32) -> OrderAction {
    OrderAction {
        order_id: OrderId(u128::from(index) + 1),
        transfer_id: mixed_transfer_id(index, step),
        flags,
        ..OrderAction::default()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch_size: usize) -> WorkloadShape {
        WorkloadShape {
            accounts: 1_000,
            batches: 2,
            batch_size,
            sku_limit_per_buyer: 0,
            cart_percent: 0,
            seed: 7,
        }
    }

    #[test]
    fn one_batch_at_a_time_matches_the_pregenerated_batches() {
        let shape = shape(50);
        for kind in WorkloadKind::ALL {
            let mut rng = SplitMix64::new(shape.seed);
            let first = measured_batch(kind, &shape, &mut rng, 0, 50);
            let second = measured_batch(kind, &shape, &mut rng, 50, 50);
            let all = measured_batches(kind, &shape);
            assert_eq!(first.as_batch().body(), all[0].as_batch().body());
            assert_eq!(second.as_batch().body(), all[1].as_batch().body());
        }
    }

    /// Applies `setup`, then `measured` (batches `log_time_ns` apart), and returns the codes
    /// of the measured batches that were not `ok`.
    fn apply_all(setup: &[BatchBuf], measured: &[BatchBuf], log_time_ns: u64) -> Vec<ResultCode> {
        let mut state_machine = surge_core::StateMachine::new(surge_core::Config::default());
        let mut results = Vec::new();
        for batch in setup {
            let timestamp = state_machine.timestamp_next_min();
            state_machine.apply(timestamp, batch.as_batch(), &mut results);
            assert!(results.iter().all(|code| *code == ResultCode::Ok));
        }
        let mut not_ok = Vec::new();
        for (index, batch) in measured.iter().enumerate() {
            let timestamp = state_machine
                .timestamp_next_min()
                .max(1_000 + index as u64 * log_time_ns);
            state_machine.apply(timestamp, batch.as_batch(), &mut results);
            not_ok.extend(results.iter().filter(|code| **code != ResultCode::Ok));
        }
        not_ok
    }

    #[test]
    fn the_stampede_and_the_mix_made_ahead_succeed_command_by_command() {
        let shape = WorkloadShape {
            sku_limit_per_buyer: 1,
            batches: 40,
            ..shape(100)
        };
        let stampede = stampede_batches(&shape);
        assert!(matches!(&stampede[0], BatchBuf::PlaceOrders(orders) if orders.len() == 100));
        // One unit per buyer: a buyer who bought once is refused after that.
        let refused = apply_all(&setup_batches(WorkloadKind::HotSku, &shape), &stampede, 0);
        assert!(!refused.is_empty());
        assert!(refused.iter().all(|code| *code == ResultCode::LimitReached));
        let shape = WorkloadShape {
            accounts: 10_000,
            batches: 80,
            ..shape
        };
        let refused = apply_all(
            &setup_batches(WorkloadKind::HotSku, &shape),
            &stampede_batches(&shape),
            0,
        );
        assert!(refused.iter().all(|code| *code == ResultCode::LimitReached));
        // The mix: every placement, payment, cancellation and refund succeeds, also while
        // abandoned orders expire between batches.
        let mix = mixed_batches(&shape);
        let operations: std::collections::BTreeSet<u8> = mix
            .iter()
            .map(|batch| batch.as_batch().operation() as u8)
            .collect();
        assert_eq!(operations.len(), 4, "place, pay, cancel and refund");
        let not_ok = apply_all(&mixed_setup_batches(&shape), &mix, 100_000_000);
        assert_eq!(not_ok, []);
        // With carts: a fifth of the orders have a second line on another SKU, and all
        // still succeed.
        let carts = WorkloadShape {
            cart_percent: 20,
            ..shape
        };
        let mix = mixed_batches(&carts);
        let orders: Vec<Order> = mix
            .iter()
            .filter_map(|batch| match batch {
                BatchBuf::PlaceOrders(orders) => Some(orders.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let two_lines = orders.iter().filter(|o| o.line_count == 2).count();
        assert!(
            (orders.len() / 7..orders.len() / 3).contains(&two_lines),
            "{two_lines} carts of {} orders",
            orders.len()
        );
        assert!(orders
            .iter()
            .filter(|o| o.line_count == 2)
            .all(|o| o.lines[0].sku_id != o.lines[1].sku_id && o.lines[1].sku_id.0 >= 1));
        let not_ok = apply_all(&mixed_setup_batches(&carts), &mix, 100_000_000);
        assert_eq!(not_ok, []);
    }

    #[test]
    fn the_festival_mix_follows_each_placed_order() {
        let shape = shape(1_000);
        let mut mix = FestivalMix::new(&shape, 0);
        let placed = mix.next_batch();
        let BatchBuf::PlaceOrders(orders) = &placed else {
            panic!("the first batch places orders");
        };
        assert_eq!(orders.len(), 1_000);
        mix.completed(&placed, &vec![ResultCode::Ok; 1_000]);
        // Not a full batch of any action yet: the next batch places new orders.
        let BatchBuf::PlaceOrders(next) = mix.next_batch() else {
            panic!("no action queue is full yet");
        };
        assert_eq!(next[0].id, OrderId(1_001));
        let (pays, cancels) = (mix.pays.len() as u64, mix.cancels.len() as u64);
        assert_eq!(pays + cancels + mix.abandoned(), 1_000);
        assert!((700..=900).contains(&pays), "{pays} paid of 1,000");
        assert!(
            (50..=150).contains(&cancels),
            "{cancels} cancelled of 1,000"
        );
        // Every payment names its order and that order's own payment transfer.
        let action = mix.pays[0];
        let index = action.order_id.0 as u64 - 1;
        assert_eq!(action.transfer_id, mixed_transfer_id(index, 1));
        let order = orders
            .iter()
            .find(|o| o.id == action.order_id)
            .expect("placed");
        assert_eq!(order.transfer_id, mixed_transfer_id(index, 0));
        assert_eq!(order.timeout_ns, MIXED_ORDER_TIMEOUT_NS);
    }
}
