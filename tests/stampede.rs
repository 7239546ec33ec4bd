//! The flash-sale stampede: 100,000 funded buyers race for one SKU of 1,000 units with a
//! limit of one per buyer, in a seeded random order, some of them trying twice; then every
//! winner pays. Exactly 1,000 orders win, nothing is oversold, nobody holds two, the losers
//! get `sold_out` (or `limit_reached` on a second try while holding one), the merchant is
//! paid exactly 1,000 prices, money is conserved and 1,000 dispatch requests exist.
//!
//! The order of arrival is drawn from one `u64` seed, printed at the start;
//! `SURGE_SEED=<seed>` replays a run exactly.

use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{
    account_flags, Account, AccountId, BatchBuf, Config, Order, OrderAction, OrderId, OrderLine,
    ResultCode, Sku, SkuId, StateMachine, Transfer, TransferId,
};

const BUYERS: u64 = 100_000;
const UNITS_STOCKED: u64 = 1_000;
/// Price of one unit, in minor units.
const PRICE: u64 = 4_999;
/// Every `SECOND_TRY_EVERY`-th buyer places a second order.
const SECOND_TRY_EVERY: u64 = 7;
/// Long enough that no order expires during the test (a batch occupies at most 8,190 ns).
const ORDER_TIMEOUT_NS: u64 = 3_600 * 1_000_000_000;
const SEED_DEFAULT: u64 = 0x1111_2017;

const LEDGER: u32 = 1;
const ACCOUNT_CODE: u16 = 10;
const TRANSFER_CODE: u16 = 20;
const FUNDING: AccountId = AccountId(1);
const MERCHANT: AccountId = AccountId(2);
const SKU: SkuId = SkuId(1);

/// Buyer `index`'s wallet.
fn buyer(index: u64) -> AccountId {
    AccountId(1_000 + u128::from(index))
}

/// Order id of buyer `index`'s first (`attempt` 0) or second (1) order.
fn order_id(index: u64, attempt: u64) -> OrderId {
    OrderId(1 + u128::from(index) + u128::from(attempt) * 1_000_000)
}

/// The order's payment authorization and its capture: disjoint ranges of transfer ids.
fn authorization_id(order: OrderId) -> TransferId {
    TransferId(10_000_000 + order.0)
}

fn payment_id(order: OrderId) -> TransferId {
    TransferId(20_000_000 + order.0)
}

/// splitmix64: a tiny, well-mixed generator; enough for a shuffle, and no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher-Yates. The modulo bias (below 2^-40 here) does not matter for a test order.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let pick = (self.next() % (last as u64 + 1)) as usize;
            items.swap(last, pick);
        }
    }
}

/// Applies `records` in batches of at most `BATCH_EVENTS_MAX`; returns every code in order.
fn apply_all<T: Clone>(
    sm: &mut StateMachine,
    records: &[T],
    batch: impl Fn(Vec<T>) -> BatchBuf,
) -> Vec<ResultCode> {
    let mut codes = Vec::with_capacity(records.len());
    let mut results = Vec::with_capacity(BATCH_EVENTS_MAX);
    for chunk in records.chunks(BATCH_EVENTS_MAX) {
        let buf = batch(chunk.to_vec());
        sm.apply(sm.timestamp_next_min(), buf.as_batch(), &mut results);
        assert_eq!(results.len(), chunk.len(), "one result per command");
        codes.extend_from_slice(&results);
    }
    codes
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

/// Funding, merchant and 100,000 wallets that cannot go negative, each given one price.
fn open_and_fund_accounts(sm: &mut StateMachine) {
    let mut accounts = vec![account(FUNDING, 0), account(MERCHANT, 0)];
    accounts.extend(
        (0..BUYERS).map(|i| account(buyer(i), account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS)),
    );
    let codes = apply_all(sm, &accounts, BatchBuf::CreateAccounts);
    assert!(
        codes.iter().all(|&code| code == ResultCode::Ok),
        "every account is created"
    );

    let deposits: Vec<Transfer> = (0..BUYERS)
        .map(|i| Transfer {
            id: TransferId(1 + u128::from(i)),
            debit_account_id: FUNDING,
            credit_account_id: buyer(i),
            amount: PRICE,
            ledger: LEDGER,
            code: TRANSFER_CODE,
            ..Transfer::default()
        })
        .collect();
    let codes = apply_all(sm, &deposits, BatchBuf::CreateTransfers);
    assert!(
        codes.iter().all(|&code| code == ResultCode::Ok),
        "every buyer is funded"
    );
}

fn order(buyer_index: u64, attempt: u64) -> Order {
    let id = order_id(buyer_index, attempt);
    let mut lines = [OrderLine::default(); surge_core::records::ORDER_LINES_MAX];
    lines[0] = OrderLine {
        sku_id: SKU,
        quantity: 1,
        reserved: 0,
    };
    Order {
        id,
        buyer_id: buyer(buyer_index),
        merchant_id: MERCHANT,
        transfer_id: authorization_id(id),
        amount: PRICE,
        timeout_ns: ORDER_TIMEOUT_NS,
        ledger: LEDGER,
        line_count: 1,
        lines,
        ..Order::default()
    }
}

/// What the state machine must answer to each attempt, in arrival order: a buyer who holds
/// a unit hits the limit (checked before stock), anyone else gets a unit while any is left.
fn expected_codes(attempts: &[(u64, u64)]) -> Vec<ResultCode> {
    let mut holds = vec![false; BUYERS as usize];
    let mut units_left = UNITS_STOCKED;
    attempts
        .iter()
        .map(|&(buyer_index, _)| {
            let held = &mut holds[buyer_index as usize];
            if *held {
                ResultCode::LimitReached
            } else if units_left > 0 {
                *held = true;
                units_left -= 1;
                ResultCode::Ok
            } else {
                ResultCode::SoldOut
            }
        })
        .collect()
}

fn seed() -> u64 {
    match std::env::var("SURGE_SEED") {
        Ok(value) => value.parse().expect("SURGE_SEED is a u64"),
        Err(_) => SEED_DEFAULT,
    }
}

#[test]
fn hundred_thousand_buyers_one_thousand_units() {
    let seed = seed();
    println!("stampede seed: {seed} (replay with SURGE_SEED={seed})");
    let mut sm = StateMachine::new(Config {
        accounts_capacity: BUYERS as usize + 2,
        transfers_capacity: BUYERS as usize + 2 * UNITS_STOCKED as usize,
        orders_capacity: BUYERS as usize * 2,
        ..Config::default()
    });
    open_and_fund_accounts(&mut sm);
    let sku = Sku {
        id: SKU,
        units_stocked: UNITS_STOCKED,
        limit_per_buyer: 1,
        ..Sku::default()
    };
    assert_eq!(
        apply_all(&mut sm, &[sku], BatchBuf::CreateSkus),
        [ResultCode::Ok]
    );

    // (buyer, attempt): everyone once, every 7th buyer twice, all in one shuffled stream.
    let mut attempts: Vec<(u64, u64)> = (0..BUYERS).map(|i| (i, 0)).collect();
    attempts.extend(
        (0..BUYERS)
            .step_by(SECOND_TRY_EVERY as usize)
            .map(|i| (i, 1)),
    );
    SplitMix64(seed).shuffle(&mut attempts);
    let orders: Vec<Order> = attempts
        .iter()
        .map(|&(i, attempt)| order(i, attempt))
        .collect();
    let codes = apply_all(&mut sm, &orders, BatchBuf::PlaceOrders);

    let winners: Vec<&Order> = orders
        .iter()
        .zip(&codes)
        .filter(|(_, &c)| c == ResultCode::Ok)
        .map(|(o, _)| o)
        .collect();
    assert_eq!(
        winners.len() as u64,
        UNITS_STOCKED,
        "seed {seed}: exactly 1,000 orders win"
    );
    assert_eq!(
        codes,
        expected_codes(&attempts),
        "seed {seed}: codes in arrival order"
    );
    check_first_and_second_tries(&attempts, &codes, seed);

    let payments: Vec<OrderAction> = winners
        .iter()
        .map(|o| OrderAction {
            order_id: o.id,
            transfer_id: payment_id(o.id),
            ..OrderAction::default()
        })
        .collect();
    let paid = apply_all(&mut sm, &payments, BatchBuf::PayOrders);
    assert!(
        paid.iter().all(|&c| c == ResultCode::Ok),
        "seed {seed}: every winner pays"
    );

    check_final_state(&sm, seed);
}

/// Each buyer's first try won or found the SKU sold out; a second try hit the limit
/// exactly when the first one had won.
fn check_first_and_second_tries(attempts: &[(u64, u64)], codes: &[ResultCode], seed: u64) {
    let mut first: Vec<Option<ResultCode>> = vec![None; BUYERS as usize];
    let (mut first_sold_out, mut seconds) = (0u64, 0u64);
    for (&(buyer_index, _), &code) in attempts.iter().zip(codes) {
        match first[buyer_index as usize] {
            None => {
                assert!(
                    matches!(code, ResultCode::Ok | ResultCode::SoldOut),
                    "seed {seed}: buyer {buyer_index}'s first try got {code:?}"
                );
                first_sold_out += u64::from(code == ResultCode::SoldOut);
                first[buyer_index as usize] = Some(code);
            }
            Some(earlier) => {
                seconds += 1;
                let expected = if earlier == ResultCode::Ok {
                    ResultCode::LimitReached
                } else {
                    ResultCode::SoldOut
                };
                assert_eq!(
                    code, expected,
                    "seed {seed}: buyer {buyer_index}'s second try"
                );
            }
        }
    }
    assert_eq!(
        first_sold_out,
        BUYERS - UNITS_STOCKED,
        "seed {seed}: every other first try"
    );
    assert_eq!(
        seconds,
        BUYERS.div_ceil(SECOND_TRY_EVERY),
        "seed {seed}: second tries seen"
    );
}

fn check_final_state(sm: &StateMachine, seed: u64) {
    let sku = sm.sku(SKU).expect("the SKU exists");
    assert_eq!(
        sku.units_sold, UNITS_STOCKED,
        "seed {seed}: 1,000 units sold"
    );
    assert_eq!(sku.units_available, 0, "seed {seed}: nothing left");
    assert_eq!(sku.units_reserved, 0, "seed {seed}: every winner paid");
    for i in 0..BUYERS {
        let held = sm.buyer_units(SKU, buyer(i));
        assert!(held <= 1, "seed {seed}: buyer {i} holds {held} units");
    }

    let merchant = sm.account(MERCHANT).expect("the merchant exists");
    assert_eq!(
        merchant.credits_posted,
        UNITS_STOCKED * PRICE,
        "seed {seed}: merchant paid"
    );
    assert_eq!(
        merchant.credits_pending, 0,
        "seed {seed}: no hold left on the merchant"
    );
    let (mut debits_posted, mut credits_posted) = (0u128, 0u128);
    let (mut debits_pending, mut credits_pending) = (0u128, 0u128);
    for account in sm.accounts_sorted() {
        debits_posted += u128::from(account.debits_posted);
        credits_posted += u128::from(account.credits_posted);
        debits_pending += u128::from(account.debits_pending);
        credits_pending += u128::from(account.credits_pending);
        assert!(
            account.flags & account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS == 0
                || account.debits_pending + account.debits_posted <= account.credits_posted,
            "seed {seed}: wallet {} overdrawn",
            account.id
        );
    }
    assert_eq!(
        debits_posted, credits_posted,
        "seed {seed}: posted money is conserved"
    );
    assert_eq!(
        debits_pending, credits_pending,
        "seed {seed}: pending money is conserved"
    );

    let dispatches = sm.dispatches_sorted();
    assert_eq!(
        dispatches.len() as u64,
        UNITS_STOCKED,
        "seed {seed}: one request per sale"
    );
}
