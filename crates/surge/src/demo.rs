//! `surge demo`: a flash sale run in-process against the state machine, printed step by
//! step. It shows the guarantees with real numbers: no oversell under a stampede, one
//! capture per payment however often it is retried, conservation of money, expiry in log
//! time, the dispatch handoff, and a replay of the same batches reproducing the state hash.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{
    account_flags, order_action_flags, Account, AccountId, BatchBuf, DispatchAck, Order,
    OrderAction, OrderId, OrderLine, OrderLookup, OrderStatus, ResultCode, Sku, SkuId,
    StateMachine, Transfer, TransferId,
};

use crate::rng::SplitMix64;

/// Options of the demo.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Buyers racing for the hot SKU.
    #[arg(long, default_value_t = 20_000)]
    pub buyers: u64,
    /// Units of the hot SKU on sale.
    #[arg(long, default_value_t = 1_000)]
    pub stock: u64,
    /// Seed of every random choice (who comes first, who pays, wallet sizes).
    #[arg(long, default_value_t = 1111)]
    pub seed: u64,
}

/// 2026-11-11T00:00:00Z in ns: the festival's midnight, as log time.
const MIDNIGHT_NS: u64 = 1_794_355_200 * 1_000_000_000;
const SECOND_NS: u64 = 1_000_000_000;
const LEDGER_CNY: u32 = 156;
const PRICE: u64 = 19_900;
const SOCKS_PRICE: u64 = 900;
const HOT_SKU: SkuId = SkuId(1111);
const SOCKS_SKU: SkuId = SkuId(2222);
const MERCHANT: AccountId = AccountId(1);
const BANK: AccountId = AccountId(2);
const ORDER_TIMEOUT_NS: u64 = 15 * 60 * SECOND_NS;

/// The log of the demo: every batch with its timestamp, so it can be replayed.
struct Run {
    state_machine: StateMachine,
    log: Vec<(u64, BatchBuf)>,
    now: u64,
    results: Vec<ResultCode>,
}

impl Run {
    fn new() -> Self {
        Self {
            state_machine: StateMachine::new(surge_core::Config::default()),
            log: Vec::new(),
            now: MIDNIGHT_NS - 60 * SECOND_NS,
            results: Vec::new(),
        }
    }

    /// Applies `batches` in order, returning every result code in order.
    fn apply(&mut self, batches: Vec<BatchBuf>) -> Vec<ResultCode> {
        let mut codes = Vec::new();
        for batch in batches {
            let timestamp = self.now.max(self.state_machine.timestamp_next_min());
            self.state_machine
                .apply(timestamp, batch.as_batch(), &mut self.results);
            codes.extend_from_slice(&self.results);
            self.log.push((timestamp, batch));
        }
        codes
    }

    fn advance(&mut self, by_ns: u64) {
        self.now = self.now.max(self.state_machine.timestamp_last()) + by_ns;
    }
}

fn chunked<T: Clone>(items: &[T], wrap: fn(Vec<T>) -> BatchBuf) -> Vec<BatchBuf> {
    items
        .chunks(BATCH_EVENTS_MAX)
        .map(|chunk| wrap(chunk.to_vec()))
        .collect()
}

fn tally(codes: &[ResultCode]) -> String {
    let mut counts: BTreeMap<ResultCode, usize> = BTreeMap::new();
    for code in codes {
        *counts.entry(*code).or_default() += 1;
    }
    counts
        .iter()
        .map(|(code, n)| format!("{} × {n}", code.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn buyer(index: u64) -> AccountId {
    AccountId(1_000 + u128::from(index))
}

/// Runs the demo and returns the printed report.
pub fn run(args: &DemoArgs) -> anyhow::Result<String> {
    anyhow::ensure!(args.buyers >= 1, "--buyers must be at least 1");
    anyhow::ensure!(args.stock >= 1, "--stock must be at least 1");
    let mut out = String::new();
    let mut rng = SplitMix64::new(args.seed);
    let mut run = Run::new();
    writeln!(
        out,
        "Surge flash-sale demo (seed {}; replay with --seed {})",
        args.seed, args.seed
    )?;
    writeln!(
        out,
        "{} buyers race for {} units of SKU {} at 00:00:00, limit 1 per buyer.\n",
        args.buyers, args.stock, HOT_SKU
    )?;

    // Accounts: a merchant that cannot be refunded past its takings, a bank that funds
    // wallets, and buyer wallets that cannot go negative.
    let mut accounts = vec![
        account(MERCHANT, account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(BANK, 0),
    ];
    accounts.extend(
        (0..args.buyers).map(|i| account(buyer(i), account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS)),
    );
    let codes = run.apply(chunked(&accounts, BatchBuf::CreateAccounts));
    writeln!(
        out,
        "23:59:00  create {} accounts: {}",
        accounts.len(),
        tally(&codes)
    )?;
    // One buyer in ten has less in the wallet than the price.
    let top_ups: Vec<Transfer> = (0..args.buyers)
        .map(|i| {
            let amount = if rng.below(10) == 0 {
                PRICE / 2
            } else {
                PRICE * 2 + rng.below(PRICE)
            };
            transfer(
                TransferId(1_000_000 + u128::from(i)),
                BANK,
                buyer(i),
                amount,
            )
        })
        .collect();
    let codes = run.apply(chunked(&top_ups, BatchBuf::CreateTransfers));
    writeln!(
        out,
        "23:59:00  top up {} wallets: {}",
        top_ups.len(),
        tally(&codes)
    )?;
    let skus = vec![
        Sku {
            id: HOT_SKU,
            units_stocked: args.stock,
            limit_per_buyer: 1,
            code: 1,
            ..Sku::default()
        },
        Sku {
            id: SOCKS_SKU,
            units_stocked: args.buyers * 2,
            code: 2,
            ..Sku::default()
        },
    ];
    let codes = run.apply(vec![BatchBuf::CreateSkus(skus)]);
    writeln!(out, "23:59:00  create 2 SKUs: {}\n", tally(&codes))?;

    // Midnight: every buyer places an order, in a random arrival order; one in four adds
    // socks to the basket. Some impatient buyers click twice (a second order id).
    run.now = MIDNIGHT_NS;
    let mut arrivals: Vec<u64> = (0..args.buyers).collect();
    rng.shuffle(&mut arrivals);
    let mut orders: Vec<Order> = arrivals
        .iter()
        .map(|&i| order(i, OrderId(u128::from(i) + 1), rng.below(4) == 0))
        .collect();
    let double_clickers: Vec<Order> = arrivals
        .iter()
        .take((args.buyers / 20) as usize)
        .map(|&i| order(i, OrderId(u128::from(i) + 1 + 10_000_000), false))
        .collect();
    orders.extend(double_clickers);
    let codes = run.apply(chunked(&orders, BatchBuf::PlaceOrders));
    writeln!(
        out,
        "00:00:00  {} orders placed: {}",
        orders.len(),
        tally(&codes)
    )?;
    let placed: Vec<Order> = orders
        .iter()
        .zip(&codes)
        .filter(|(_, c)| **c == ResultCode::Ok)
        .map(|(o, _)| *o)
        .collect();
    print_sku(&mut out, &run.state_machine, HOT_SKU)?;

    // Payment: most pay within a minute, some cancel, the rest walk away.
    run.advance(30 * SECOND_NS);
    let mut pays = Vec::new();
    let mut cancels = Vec::new();
    for (n, placed_order) in placed.iter().enumerate() {
        let action = OrderAction {
            order_id: placed_order.id,
            transfer_id: TransferId(placed_order.id.0 + (1 << 64)),
            ..OrderAction::default()
        };
        match rng.below(20) {
            0 => cancels.push(action),
            1 | 2 => {} // Never pays: the order expires.
            _ => pays.push(action),
        }
        let _ = n;
    }
    let codes = run.apply(chunked(&pays, BatchBuf::PayOrders));
    writeln!(out, "00:00:30  {} payments: {}", pays.len(), tally(&codes))?;
    let codes = run.apply(chunked(&pays, BatchBuf::PayOrders));
    writeln!(
        out,
        "00:00:30  the same {} payments retried (timeouts on the client side): {}",
        pays.len(),
        tally(&codes)
    )?;
    let codes = run.apply(chunked(&cancels, BatchBuf::CancelOrders));
    writeln!(
        out,
        "00:00:30  {} cancellations: {}",
        cancels.len(),
        tally(&codes)
    )?;
    print_sku(&mut out, &run.state_machine, HOT_SKU)?;

    // Log time passes the order timeout: a pulse expires the unpaid orders.
    run.advance(ORDER_TIMEOUT_NS);
    run.apply(vec![BatchBuf::Pulse]);
    let expired = run
        .state_machine
        .orders_sorted()
        .iter()
        .filter(|v| v.order.status == OrderStatus::Expired as u16)
        .count();
    writeln!(
        out,
        "00:15:30  pulse: {expired} unpaid orders expired, their holds and units released"
    )?;
    print_sku(&mut out, &run.state_machine, HOT_SKU)?;

    // Late buyers get the released units.
    let late: Vec<Order> = arrivals
        .iter()
        .rev()
        .take(200)
        .map(|&i| order(i, OrderId(u128::from(i) + 1 + 20_000_000), false))
        .collect();
    let codes = run.apply(chunked(&late, BatchBuf::PlaceOrders));
    writeln!(
        out,
        "00:15:30  {} late orders: {}",
        late.len(),
        tally(&codes)
    )?;

    // Customer service refunds two paid orders, one with the unit back on sale.
    if pays.len() >= 2 {
        let refunds = vec![
            OrderAction {
                order_id: pays[0].order_id,
                transfer_id: TransferId(pays[0].order_id.0 + (2 << 64)),
                flags: order_action_flags::RESTOCK,
                ..OrderAction::default()
            },
            OrderAction {
                order_id: pays[1].order_id,
                transfer_id: TransferId(pays[1].order_id.0 + (2 << 64)),
                ..OrderAction::default()
            },
        ];
        let codes = run.apply(vec![BatchBuf::RefundOrders(refunds)]);
        writeln!(
            out,
            "00:16:00  2 refunds (one restocked): {}",
            tally(&codes)
        )?;
    }

    // Logistics reads the dispatch feed from its cursor and acknowledges half of it.
    let feed = run.state_machine.dispatch_feed(0, usize::MAX);
    let acks: Vec<DispatchAck> = feed
        .iter()
        .step_by(2)
        .map(|request| DispatchAck {
            dispatch_id: request.id,
            ..DispatchAck::default()
        })
        .collect();
    let codes = run.apply(chunked(&acks, BatchBuf::AckDispatch));
    writeln!(
        out,
        "00:16:00  logistics read {} dispatch requests, acknowledged {}: {}",
        feed.len(),
        acks.len(),
        tally(&codes)
    )?;

    writeln!(out, "\nFinal state")?;
    print_sku(&mut out, &run.state_machine, HOT_SKU)?;
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for view in run.state_machine.orders_sorted() {
        let status = OrderStatus::from_u16(view.order.status)
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        *by_status.entry(status).or_default() += 1;
    }
    writeln!(out, "  orders by status: {by_status:?}")?;
    let merchant = run
        .state_machine
        .account(MERCHANT)
        .expect("merchant exists");
    writeln!(
        out,
        "  merchant: credits posted {} debits posted {} (net {})",
        merchant.credits_posted,
        merchant.debits_posted,
        merchant.credits_posted - merchant.debits_posted
    )?;
    let accounts = run.state_machine.accounts_sorted();
    let debits: u128 = accounts.iter().map(|a| u128::from(a.debits_posted)).sum();
    let credits: u128 = accounts.iter().map(|a| u128::from(a.credits_posted)).sum();
    let pending_debits: u128 = accounts.iter().map(|a| u128::from(a.debits_pending)).sum();
    let pending_credits: u128 = accounts.iter().map(|a| u128::from(a.credits_pending)).sum();
    writeln!(
        out,
        "  money: debits posted {debits} = credits posted {credits}; \
         pending {pending_debits} = {pending_credits}"
    )?;
    anyhow::ensure!(
        debits == credits && pending_debits == pending_credits,
        "money was not conserved"
    );
    let sku = run.state_machine.sku(HOT_SKU).expect("hot SKU exists");
    anyhow::ensure!(
        sku.units_available + sku.units_reserved + sku.units_sold == sku.units_stocked,
        "units were not conserved"
    );
    anyhow::ensure!(
        sku.units_sold + sku.units_reserved <= args.stock,
        "oversold"
    );
    let paid_ever = run
        .state_machine
        .orders_sorted()
        .iter()
        .filter(|v| !v.payment_transfer_id.is_zero())
        .count();
    let dispatches = run.state_machine.dispatches_sorted().len();
    writeln!(
        out,
        "  dispatch requests: {dispatches} for {paid_ever} orders ever paid"
    )?;
    anyhow::ensure!(
        paid_ever == dispatches,
        "a paid order lacks its dispatch request"
    );

    // Determinism: replay the same batches at the same timestamps into a fresh machine.
    let hash = run.state_machine.state_hash();
    let mut replay = StateMachine::new(surge_core::Config::default());
    let mut results = Vec::new();
    for (timestamp, batch) in &run.log {
        replay.apply(*timestamp, batch.as_batch(), &mut results);
    }
    let replay_hash = replay.state_hash();
    writeln!(
        out,
        "  state hash {hash:032x}; replay of {} batches gives {replay_hash:032x} ({})",
        run.log.len(),
        if hash == replay_hash {
            "identical"
        } else {
            "DIFFERENT"
        }
    )?;
    anyhow::ensure!(hash == replay_hash, "replay diverged");
    if let Some(OrderLookup::Placed(view)) = run
        .state_machine
        .order(placed.first().map(|o| o.id).unwrap_or(OrderId(1)))
    {
        writeln!(
            out,
            "  e.g. order {}: {:?}, payment transfer {}",
            view.order.id,
            OrderStatus::from_u16(view.order.status),
            view.payment_transfer_id
        )?;
    }
    Ok(out)
}

fn account(id: AccountId, flags: u16) -> Account {
    Account {
        id,
        ledger: LEDGER_CNY,
        code: 1,
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
        ledger: LEDGER_CNY,
        code: 1,
        ..Transfer::default()
    }
}

fn order(buyer_index: u64, id: OrderId, with_socks: bool) -> Order {
    let mut lines = [OrderLine::default(); surge_core::records::ORDER_LINES_MAX];
    lines[0] = OrderLine {
        sku_id: HOT_SKU,
        quantity: 1,
        reserved: 0,
    };
    let mut amount = PRICE;
    if with_socks {
        lines[1] = OrderLine {
            sku_id: SOCKS_SKU,
            quantity: 2,
            reserved: 0,
        };
        amount += 2 * SOCKS_PRICE;
    }
    Order {
        id,
        buyer_id: buyer(buyer_index),
        merchant_id: MERCHANT,
        transfer_id: TransferId(id.0 + (3 << 64)),
        amount,
        timeout_ns: ORDER_TIMEOUT_NS,
        ledger: LEDGER_CNY,
        line_count: if with_socks { 2 } else { 1 },
        lines,
        ..Order::default()
    }
}

fn print_sku(out: &mut String, state_machine: &StateMachine, id: SkuId) -> anyhow::Result<()> {
    let sku = state_machine.sku(id).expect("SKU exists");
    writeln!(
        out,
        "          SKU {id}: stocked {} = available {} + reserved {} + sold {}",
        sku.units_stocked, sku.units_available, sku.units_reserved, sku.units_sold
    )?;
    Ok(())
}
