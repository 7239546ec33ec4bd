//! Property tests of the state machine over random command streams. After every batch:
//! (1) money is conserved per ledger, (2) constrained balances never go negative, (3) no SKU
//! is oversold and no buyer holds more than the limit, (4) exactly the paid orders have a
//! dispatch request, (5) one result per command, and (8) pending balances and reserved units
//! equal the live holds that should make them up. Across runs: (6) replay is deterministic,
//! and (7) resubmitting a prefix of the stream later has no second effect; (9) evicting
//! finished transfers (and recalling them from an archive when a batch names them) changes
//! no result code, no query answer and no state hash.
//!
//! A stream is a list of compact command specs (not raw records), so proptest shrinks it to a
//! short, readable counterexample. Ids come from small pools so that retries, conflicts,
//! unknown ids and id reuse across kinds happen all the time, and pulses jump log time so
//! holds, reservations, unpaid orders and dispatch leases expire mid-stream.
//!
//! `PROPTEST_CASES=…` raises the case count (the default keeps the file fast in debug).
//! Failures are not persisted to a regressions file: a failing run prints the shrunk stream,
//! which is what goes into a bug report.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use surge_core::{
    account_flags, order_action_flags, transfer_flags, Account, AccountId, BatchBuf, Config,
    DispatchAck, DispatchId, DispatchStatus, OrderAction, OrderId, OrderLine, OrderStatus,
    PendingStatus, Reservation, ReservationKey, ReservationLookup, ReservationStatus, ResultCode,
    Sku, SkuId, StateMachine, Transfer, TransferId, TransferLookup,
};
use surge_core::{ArchivedOutcome, ArchivedTransfer};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const CASES_DEFAULT: u32 = 96;
/// Streams the generator guard walks (fixed seed, so the guard is deterministic).
const GUARD_STREAMS: usize = 150;
/// Most batches in one stream, after the setup batches.
const STREAM_BATCHES_MAX: usize = 60;
/// Most commands in one batch.
const BATCH_COMMANDS_MAX: usize = 6;
/// Ledgers in play; accounts alternate between them.
const LEDGERS: u8 = 2;
/// Account indexes per ledger that the setup creates; index 0 is the ledger's "bank".
const ACCOUNT_INDEXES_KNOWN: u8 = 3;
/// Account indexes per ledger that commands name: one more, which is never created.
const ACCOUNT_INDEXES: u8 = ACCOUNT_INDEXES_KNOWN + 1;
/// Transfer ids 1..=this, shared by client transfers, order authorizations and order
/// actions. Each role draws mostly from its own range below, so commands often name the
/// kind of transfer they expect, and sometimes from the whole pool, so ids collide across
/// roles.
const TRANSFER_IDS: u8 = 108;
const PENDING_TRANSFER_IDS: RangeInclusive<u8> = 1..=10;
const SINGLE_TRANSFER_IDS: RangeInclusive<u8> = 11..=24;
const RESOLVE_TRANSFER_IDS: RangeInclusive<u8> = 25..=34;
const ORDER_TRANSFER_IDS: RangeInclusive<u8> = 35..=58;
const ACTION_TRANSFER_IDS: RangeInclusive<u8> = 59..=TRANSFER_IDS;
/// Order ids 1..=this, for orders and dispatch acks.
const ORDER_IDS: u8 = 12;
/// Order ids of direct reservations: fewer, so confirms and releases find them.
const RESERVATION_ORDER_IDS: u8 = 4;
/// SKU ids 1..=this are created; commands also name the next one, which never is.
const SKU_IDS: u8 = 4;
/// Timeouts of holds, reservations and orders: from "expires at the next command" to "lives
/// through most streams".
const TIMEOUTS_NS: [u64; 5] = [2, 50, 2_000, 200_000, 50_000_000];
/// How far a pulse moves log time.
const PULSE_ADVANCES_NS: [u64; 5] = [1, 20, 1_000, 100_000, 5_000_000];
/// Short, so that unacknowledged dispatch requests are redelivered within a stream.
const DISPATCH_REDELIVERY_NS: u64 = 50_000;
/// Account and transfer codes of the commands; `ACCOUNT_CODE_OTHER` provokes conflicts.
const ACCOUNT_CODE: u16 = 10;
const ACCOUNT_CODE_OTHER: u16 = 11;
const TRANSFER_CODE: u16 = 20;

// --- Command specs: what the strategies generate and what a failing case prints. ---

/// Kind of account, by its balance constraint.
#[derive(Clone, Copy, Debug)]
enum Flavor {
    Plain,
    /// `debits_must_not_exceed_credits`: a wallet.
    Wallet,
    /// `credits_must_not_exceed_debits`.
    Capped,
}

#[derive(Clone, Debug)]
struct AccountSpec {
    ledger: u8,
    index: u8,
    flavor: Flavor,
    /// Create it on the other ledger: its transfers then fail on ledger checks.
    foreign_ledger: bool,
    /// A different code, so a second create with the same id conflicts.
    other_code: bool,
    linked: bool,
}

/// A single-phase or pending move of money between two accounts.
#[derive(Clone, Debug)]
struct Move {
    ledger: u8,
    debit: u8,
    credit: u8,
    amount: u64,
    /// Credit an account of the other ledger.
    cross_ledger: bool,
}

#[derive(Clone, Debug)]
enum TransferKind {
    Single(Move),
    /// A hold with this timeout (0 = never expires).
    Pending(Move, u64),
    /// `debit`: now and then name a debit account (ledger 1), which may not be the
    /// pending transfer's.
    Post {
        pending: u8,
        amount: u64,
        debit: Option<u8>,
    },
    Void {
        pending: u8,
        amount: u64,
        debit: Option<u8>,
    },
}

#[derive(Clone, Debug)]
struct TransferSpec {
    id: u8,
    kind: TransferKind,
    linked: bool,
}

#[derive(Clone, Debug)]
struct SkuSpec {
    id: u8,
    stocked: u64,
    limit_per_buyer: u32,
}

#[derive(Clone, Debug)]
struct ReserveSpec {
    order: u8,
    sku: u8,
    buyer: (u8, u8),
    quantity: u32,
    timeout_ns: u64,
}

#[derive(Clone, Debug)]
struct OrderSpec {
    id: u8,
    transfer: u8,
    ledger: u8,
    buyer: u8,
    merchant: u8,
    amount: u64,
    timeout_ns: u64,
    lines: Vec<(u8, u32)>,
}

#[derive(Clone, Debug)]
struct ActionSpec {
    order: u8,
    transfer: u8,
    restock: bool,
}

/// One batch of the stream.
#[derive(Clone, Debug)]
enum Step {
    Pulse(u64),
    Accounts(Vec<AccountSpec>),
    Transfers(Vec<TransferSpec>),
    Skus(Vec<SkuSpec>),
    Reserve(Vec<ReserveSpec>),
    Confirm(Vec<(u8, u8)>),
    Release(Vec<(u8, u8)>),
    Place(Vec<OrderSpec>),
    Pay(Vec<ActionSpec>),
    Cancel(Vec<ActionSpec>),
    Refund(Vec<ActionSpec>),
    Ack(Vec<u8>),
}

// --- Strategies. ---

/// Now and then zero (which every command must reject), else mostly from `home`, else
/// from `1..=max`.
fn id_from(home: RangeInclusive<u8>, max: u8) -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(0u8), 6 => 1..=max, 30 => home]
}

fn transfer_id(home: RangeInclusive<u8>) -> impl Strategy<Value = u8> {
    id_from(home, TRANSFER_IDS)
}

/// Mostly the lower half, so that placing and paying often name the same orders.
fn order_id() -> impl Strategy<Value = u8> {
    id_from(1..=ORDER_IDS / 2, ORDER_IDS)
}

/// A created SKU, now and then zero or one that does not exist.
fn sku_id() -> impl Strategy<Value = u8> {
    prop_oneof![1 => Just(0u8), 1 => Just(SKU_IDS + 1), 16 => 1..=SKU_IDS]
}

fn ledger() -> impl Strategy<Value = u8> {
    1..=LEDGERS
}

/// One of `TIMEOUTS_NS`, now and then one that overflows log time.
fn timeout_ns() -> impl Strategy<Value = u64> {
    prop_oneof![40 => prop::sample::select(&TIMEOUTS_NS[..]), 1 => Just(u64::MAX)]
}

/// Rare amounts that overflow a balance on the first or second use.
fn huge_amount() -> impl Strategy<Value = u64> {
    prop::sample::select(&[u64::MAX / 2 + 1, u64::MAX][..])
}

/// A non-zero amount, now and then zero.
fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 40 => 1..=50u64, 1 => huge_amount()]
}

fn flavor() -> impl Strategy<Value = Flavor> {
    prop_oneof![2 => Just(Flavor::Plain), 3 => Just(Flavor::Wallet), 1 => Just(Flavor::Capped)]
}

/// True about one time in `n`.
fn one_in(n: u32) -> impl Strategy<Value = bool> {
    (0..n).prop_map(|draw| draw == 0)
}

/// Two account indexes of one ledger: mostly two different created accounts, now and then
/// the same one twice or one that was never created.
fn account_pair() -> impl Strategy<Value = (u8, u8)> {
    prop_oneof![
        12 => (0..ACCOUNT_INDEXES_KNOWN, 1..ACCOUNT_INDEXES_KNOWN)
            .prop_map(|(first, offset)| (first, (first + offset) % ACCOUNT_INDEXES_KNOWN)),
        1 => (0..ACCOUNT_INDEXES, 0..ACCOUNT_INDEXES),
    ]
}

fn account_index() -> impl Strategy<Value = u8> {
    prop_oneof![12 => 0..ACCOUNT_INDEXES_KNOWN, 1 => Just(ACCOUNT_INDEXES_KNOWN)]
}

fn account_spec() -> impl Strategy<Value = AccountSpec> {
    (
        ledger(),
        0..ACCOUNT_INDEXES_KNOWN,
        flavor(),
        one_in(12),
        one_in(8),
        one_in(4),
    )
        .prop_map(
            |(ledger, index, flavor, foreign_ledger, other_code, linked)| AccountSpec {
                ledger,
                index,
                flavor,
                foreign_ledger,
                other_code,
                linked,
            },
        )
}

fn money_move() -> impl Strategy<Value = Move> {
    (ledger(), account_pair(), amount(), one_in(16)).prop_map(
        |(ledger, (debit, credit), amount, cross_ledger)| Move {
            ledger,
            debit,
            credit,
            amount,
            cross_ledger,
        },
    )
}

fn transfer_spec() -> impl Strategy<Value = TransferSpec> {
    let pending_timeout = prop_oneof![1 => Just(0u64), 2 => timeout_ns()];
    let post_amount = prop_oneof![2 => Just(0u64), 1 => 1..=50u64];
    let void_amount = prop_oneof![3 => Just(0u64), 1 => 1..=50u64];
    let resolve_id = || transfer_id(RESOLVE_TRANSFER_IDS);
    let pending_id = || transfer_id(PENDING_TRANSFER_IDS);
    let debit = || prop_oneof![8 => Just(None), 1 => (0..ACCOUNT_INDEXES_KNOWN).prop_map(Some)];
    let kind_and_id = prop_oneof![
        4 => (money_move(), transfer_id(SINGLE_TRANSFER_IDS))
            .prop_map(|(m, id)| (TransferKind::Single(m), id)),
        3 => (money_move(), pending_timeout, pending_id())
            .prop_map(|(m, timeout, id)| (TransferKind::Pending(m, timeout), id)),
        2 => (pending_id(), post_amount, debit(), resolve_id()).prop_map(
            |(pending, amount, debit, id)| (TransferKind::Post { pending, amount, debit }, id)
        ),
        1 => (pending_id(), void_amount, debit(), resolve_id()).prop_map(
            |(pending, amount, debit, id)| (TransferKind::Void { pending, amount, debit }, id)
        ),
    ];
    (kind_and_id, one_in(6)).prop_map(|((kind, id), linked)| TransferSpec { id, kind, linked })
}

fn sku_spec() -> impl Strategy<Value = SkuSpec> {
    (sku_id(), sku_fields()).prop_map(|(id, (stocked, limit_per_buyer))| SkuSpec {
        id,
        stocked,
        limit_per_buyer,
    })
}

/// Units stocked (mostly enough for a few orders, now and then almost none) and the
/// per-buyer limit (mostly none).
fn sku_fields() -> impl Strategy<Value = (u64, u32)> {
    let stocked = prop_oneof![1 => 0..=2u64, 4 => 5..=40u64];
    (stocked, prop::sample::select(&[0u32, 0, 0, 0, 1, 2, 3][..]))
}

fn reserve_spec() -> impl Strategy<Value = ReserveSpec> {
    let quantity = prop_oneof![1 => Just(0u32), 24 => 1..=3u32, 1 => Just(u32::MAX)];
    let order = id_from(1..=RESERVATION_ORDER_IDS, ORDER_IDS);
    (
        order,
        sku_id(),
        (ledger(), account_index()),
        quantity,
        timeout_ns(),
    )
        .prop_map(|(order, sku, buyer, quantity, timeout_ns)| ReserveSpec {
            order,
            sku,
            buyer,
            quantity,
            timeout_ns,
        })
}

fn reservation_key() -> impl Strategy<Value = (u8, u8)> {
    (id_from(1..=RESERVATION_ORDER_IDS, ORDER_IDS), sku_id())
}

/// Mostly distinct created SKUs; now and then anything (duplicates, unknown SKUs).
fn order_lines() -> impl Strategy<Value = Vec<(u8, u32)>> {
    let skus: Vec<u8> = (1..=SKU_IDS).collect();
    prop_oneof![
        12 => (prop::sample::subsequence(skus, 1..=3), prop::collection::vec(1..=3u32, 3))
            .prop_map(|(skus, quantities)| skus.into_iter().zip(quantities).collect()),
        1 => prop::collection::vec((sku_id(), 1..=3u32), 1..=3),
    ]
}

fn order_spec() -> impl Strategy<Value = OrderSpec> {
    (
        (order_id(), transfer_id(ORDER_TRANSFER_IDS), ledger()),
        (
            account_pair(),
            prop_oneof![40 => 1..=40u64, 1 => huge_amount()],
            timeout_ns(),
        ),
        order_lines(),
    )
        .prop_map(
            |((id, transfer, ledger), ((buyer, merchant), amount, timeout_ns), lines)| OrderSpec {
                id,
                transfer,
                ledger,
                buyer,
                merchant,
                amount,
                timeout_ns,
                lines,
            },
        )
}

fn action_spec() -> impl Strategy<Value = ActionSpec> {
    (order_id(), transfer_id(ACTION_TRANSFER_IDS), any::<bool>()).prop_map(
        |(order, transfer, restock)| ActionSpec {
            order,
            transfer,
            restock,
        },
    )
}

fn batch_of<T: std::fmt::Debug>(spec: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(spec, 1..=BATCH_COMMANDS_MAX)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => prop::sample::select(&PULSE_ADVANCES_NS[..]).prop_map(Step::Pulse),
        1 => batch_of(account_spec()).prop_map(Step::Accounts),
        5 => batch_of(transfer_spec()).prop_map(Step::Transfers),
        1 => batch_of(sku_spec()).prop_map(Step::Skus),
        2 => batch_of(reserve_spec()).prop_map(Step::Reserve),
        1 => batch_of(reservation_key()).prop_map(Step::Confirm),
        1 => batch_of(reservation_key()).prop_map(Step::Release),
        4 => batch_of(order_spec()).prop_map(Step::Place),
        4 => batch_of(action_spec()).prop_map(Step::Pay),
        1 => batch_of(action_spec()).prop_map(Step::Cancel),
        2 => batch_of(action_spec()).prop_map(Step::Refund),
        2 => batch_of(order_id()).prop_map(Step::Ack),
    ]
}

/// The setup batches: every account (each ledger's bank plain, the others of random
/// flavor), every SKU, and a deposit from the bank into each other account, so that most
/// later commands find what they name and wallets can pay. Still plain steps of the
/// stream, so shrinking may drop or change them.
fn setup() -> impl Strategy<Value = Vec<Step>> {
    let others = usize::from(LEDGERS) * usize::from(ACCOUNT_INDEXES_KNOWN - 1);
    (
        prop::collection::vec(flavor(), others),
        prop::collection::vec(sku_fields(), usize::from(SKU_IDS)),
        prop::collection::vec(50..=300u64, others),
    )
        .prop_map(|(flavors, skus, deposits)| {
            let others = (1..=LEDGERS)
                .flat_map(|ledger| (1..ACCOUNT_INDEXES_KNOWN).map(move |index| (ledger, index)));
            let mut accounts = Vec::new();
            let mut transfers = Vec::new();
            let deposit_ids = SINGLE_TRANSFER_IDS;
            for ledger in 1..=LEDGERS {
                accounts.push(AccountSpec {
                    ledger,
                    index: 0,
                    flavor: Flavor::Plain,
                    foreign_ledger: false,
                    other_code: false,
                    linked: false,
                });
            }
            for (((ledger, index), flavor), (amount, id)) in others
                .zip(flavors)
                .zip(deposits.into_iter().zip(deposit_ids))
            {
                accounts.push(AccountSpec {
                    ledger,
                    index,
                    flavor,
                    foreign_ledger: false,
                    other_code: false,
                    linked: false,
                });
                let deposit = Move {
                    ledger,
                    debit: 0,
                    credit: index,
                    amount,
                    cross_ledger: false,
                };
                transfers.push(TransferSpec {
                    id,
                    kind: TransferKind::Single(deposit),
                    linked: false,
                });
            }
            let skus = (1..=SKU_IDS)
                .zip(skus)
                .map(|(id, (stocked, limit_per_buyer))| SkuSpec {
                    id,
                    stocked,
                    limit_per_buyer,
                })
                .collect();
            vec![
                Step::Accounts(accounts),
                Step::Skus(skus),
                Step::Transfers(transfers),
            ]
        })
}

fn stream() -> impl Strategy<Value = Vec<Step>> {
    (
        setup(),
        prop::collection::vec(step(), 1..=STREAM_BATCHES_MAX),
    )
        .prop_map(|(mut setup, body)| {
            setup.extend(body);
            setup
        })
}

// --- From specs to records. ---

/// Account `index` of `ledger`: ledger 1 holds the odd ids, ledger 2 the even ones.
fn account_id(ledger: u8, index: u8) -> AccountId {
    AccountId(u128::from(ledger) + u128::from(LEDGERS) * u128::from(index))
}

/// Every account id a command can name.
fn account_ids() -> impl Iterator<Item = AccountId> {
    (1..=LEDGERS).flat_map(|ledger| (0..ACCOUNT_INDEXES).map(move |i| account_id(ledger, i)))
}

fn other_ledger(ledger: u8) -> u8 {
    LEDGERS + 1 - ledger
}

fn account(spec: &AccountSpec) -> Account {
    let mut flags = match spec.flavor {
        Flavor::Plain => 0,
        Flavor::Wallet => account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        Flavor::Capped => account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS,
    };
    if spec.linked {
        flags |= account_flags::LINKED;
    }
    let ledger = if spec.foreign_ledger {
        other_ledger(spec.ledger)
    } else {
        spec.ledger
    };
    Account {
        id: account_id(spec.ledger, spec.index),
        ledger: u32::from(ledger),
        code: if spec.other_code {
            ACCOUNT_CODE_OTHER
        } else {
            ACCOUNT_CODE
        },
        flags,
        ..Account::default()
    }
}

fn move_transfer(id: u8, spec: &Move, flags: u16, timeout_ns: u64) -> Transfer {
    let credit_ledger = if spec.cross_ledger {
        other_ledger(spec.ledger)
    } else {
        spec.ledger
    };
    Transfer {
        id: TransferId(u128::from(id)),
        debit_account_id: account_id(spec.ledger, spec.debit),
        credit_account_id: account_id(credit_ledger, spec.credit),
        amount: spec.amount,
        timeout_ns,
        ledger: u32::from(spec.ledger),
        code: TRANSFER_CODE,
        flags,
        ..Transfer::default()
    }
}

fn transfer(spec: &TransferSpec) -> Transfer {
    let linked = if spec.linked {
        transfer_flags::LINKED
    } else {
        0
    };
    let resolve = |flag: u16, pending: u8, amount: u64, debit: Option<u8>| Transfer {
        id: TransferId(u128::from(spec.id)),
        debit_account_id: debit.map_or(AccountId(0), |index| account_id(1, index)),
        pending_id: TransferId(u128::from(pending)),
        amount,
        flags: flag | linked,
        ..Transfer::default()
    };
    match &spec.kind {
        TransferKind::Single(m) => move_transfer(spec.id, m, linked, 0),
        TransferKind::Pending(m, timeout_ns) => {
            move_transfer(spec.id, m, transfer_flags::PENDING | linked, *timeout_ns)
        }
        TransferKind::Post {
            pending,
            amount,
            debit,
        } => resolve(transfer_flags::POST_PENDING, *pending, *amount, *debit),
        TransferKind::Void {
            pending,
            amount,
            debit,
        } => resolve(transfer_flags::VOID_PENDING, *pending, *amount, *debit),
    }
}

fn sku(spec: &SkuSpec) -> Sku {
    Sku {
        id: SkuId(u64::from(spec.id)),
        units_stocked: spec.stocked,
        limit_per_buyer: spec.limit_per_buyer,
        ..Sku::default()
    }
}

fn reservation(spec: &ReserveSpec) -> Reservation {
    Reservation {
        order_id: OrderId(u128::from(spec.order)),
        buyer_id: account_id(spec.buyer.0, spec.buyer.1),
        sku_id: SkuId(u64::from(spec.sku)),
        quantity: spec.quantity,
        timeout_ns: spec.timeout_ns,
        ..Reservation::default()
    }
}

fn reservation_key_record(&(order, sku): &(u8, u8)) -> ReservationKey {
    ReservationKey {
        order_id: OrderId(u128::from(order)),
        sku_id: SkuId(u64::from(sku)),
        ..ReservationKey::default()
    }
}

fn order(spec: &OrderSpec) -> surge_core::Order {
    let mut lines = [OrderLine::default(); surge_core::records::ORDER_LINES_MAX];
    for (line, &(sku, quantity)) in lines.iter_mut().zip(&spec.lines) {
        *line = OrderLine {
            sku_id: SkuId(u64::from(sku)),
            quantity,
            reserved: 0,
        };
    }
    surge_core::Order {
        id: OrderId(u128::from(spec.id)),
        buyer_id: account_id(spec.ledger, spec.buyer),
        merchant_id: account_id(spec.ledger, spec.merchant),
        transfer_id: TransferId(u128::from(spec.transfer)),
        amount: spec.amount,
        timeout_ns: spec.timeout_ns,
        ledger: u32::from(spec.ledger),
        line_count: u16::try_from(spec.lines.len()).expect("at most three lines"),
        lines,
        ..surge_core::Order::default()
    }
}

fn action(spec: &ActionSpec, flags: u32) -> OrderAction {
    OrderAction {
        order_id: OrderId(u128::from(spec.order)),
        transfer_id: TransferId(u128::from(spec.transfer)),
        flags,
        ..OrderAction::default()
    }
}

fn batch(step: &Step) -> BatchBuf {
    match step {
        Step::Pulse(_) => BatchBuf::Pulse,
        Step::Accounts(specs) => BatchBuf::CreateAccounts(specs.iter().map(account).collect()),
        Step::Transfers(specs) => BatchBuf::CreateTransfers(specs.iter().map(transfer).collect()),
        Step::Skus(specs) => BatchBuf::CreateSkus(specs.iter().map(sku).collect()),
        Step::Reserve(specs) => BatchBuf::Reserve(specs.iter().map(reservation).collect()),
        Step::Confirm(keys) => {
            BatchBuf::ConfirmReservations(keys.iter().map(reservation_key_record).collect())
        }
        Step::Release(keys) => {
            BatchBuf::ReleaseReservations(keys.iter().map(reservation_key_record).collect())
        }
        Step::Place(specs) => BatchBuf::PlaceOrders(specs.iter().map(order).collect()),
        Step::Pay(specs) => BatchBuf::PayOrders(specs.iter().map(|s| action(s, 0)).collect()),
        Step::Cancel(specs) => BatchBuf::CancelOrders(specs.iter().map(|s| action(s, 0)).collect()),
        Step::Refund(specs) => BatchBuf::RefundOrders(
            specs
                .iter()
                .map(|s| {
                    action(
                        s,
                        if s.restock {
                            order_action_flags::RESTOCK
                        } else {
                            0
                        },
                    )
                })
                .collect(),
        ),
        Step::Ack(ids) => BatchBuf::AckDispatch(
            ids.iter()
                .map(|&id| DispatchAck {
                    dispatch_id: DispatchId(u128::from(id)),
                    ..DispatchAck::default()
                })
                .collect(),
        ),
    }
}

// --- Running streams. ---

/// A state machine sized far below what a stream stores, so its tables grow, and rolled
/// back inserts shift probe runs, mid-stream.
fn state_machine() -> StateMachine {
    StateMachine::new(Config {
        accounts_capacity: 1,
        transfers_capacity: 1,
        orders_capacity: 1,
        dispatch_redelivery_ns: DISPATCH_REDELIVERY_NS,
    })
}

/// The same behaviour with roomy tables: capacities are hints, so the state must not
/// depend on them.
fn state_machine_roomy() -> StateMachine {
    StateMachine::new(Config {
        dispatch_redelivery_ns: DISPATCH_REDELIVERY_NS,
        ..Config::default()
    })
}

/// Log time of the next batch: a pulse jumps ahead, any other batch follows at once.
fn timestamp_for(sm: &StateMachine, step: &Step) -> u64 {
    match step {
        Step::Pulse(advance_ns) => sm.timestamp_last() + advance_ns,
        _ => sm.timestamp_next_min(),
    }
}

fn apply(sm: &mut StateMachine, timestamp: u64, batch: &BatchBuf) -> Vec<ResultCode> {
    let mut results = Vec::new();
    sm.apply(timestamp, batch.as_batch(), &mut results);
    results
}

/// Applies the whole stream to a fresh state machine; returns it and each batch's codes.
fn run(stream: &[Step]) -> (StateMachine, Vec<Vec<ResultCode>>) {
    let mut sm = state_machine();
    let results = stream
        .iter()
        .map(|step| {
            let timestamp = timestamp_for(&sm, step);
            apply(&mut sm, timestamp, &batch(step))
        })
        .collect();
    (sm, results)
}

// --- Invariants. ---

/// Per ledger, debits equal credits, pending and posted separately.
fn check_conservation(sm: &StateMachine) -> Result<(), TestCaseError> {
    // (debits_pending, credits_pending, debits_posted, credits_posted) per ledger.
    let mut sums: BTreeMap<u32, [u128; 4]> = BTreeMap::new();
    for a in sm.accounts_sorted() {
        let sum = sums.entry(a.ledger).or_default();
        sum[0] += u128::from(a.debits_pending);
        sum[1] += u128::from(a.credits_pending);
        sum[2] += u128::from(a.debits_posted);
        sum[3] += u128::from(a.credits_posted);
    }
    for (ledger, [debits_pending, credits_pending, debits_posted, credits_posted]) in sums {
        prop_assert_eq!(
            debits_posted,
            credits_posted,
            "invariant 1 (conservation): ledger {} posted debits != posted credits",
            ledger
        );
        prop_assert_eq!(
            debits_pending,
            credits_pending,
            "invariant 1 (conservation): ledger {} pending debits != pending credits",
            ledger
        );
    }
    Ok(())
}

/// Constrained balances never go negative.
fn check_no_overdraft(sm: &StateMachine) -> Result<(), TestCaseError> {
    for a in sm.accounts_sorted() {
        let debits = u128::from(a.debits_pending) + u128::from(a.debits_posted);
        let credits = u128::from(a.credits_pending) + u128::from(a.credits_posted);
        if a.flags & account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS != 0 {
            prop_assert!(
                debits <= u128::from(a.credits_posted),
                "invariant 2 (no overdraft): account {:?} debits {} exceed posted credits",
                a,
                debits
            );
        }
        if a.flags & account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS != 0 {
            prop_assert!(
                credits <= u128::from(a.debits_posted),
                "invariant 2 (no overdraft): account {:?} credits {} exceed posted debits",
                a,
                credits
            );
        }
    }
    Ok(())
}

/// Units are conserved per SKU, no buyer is over the limit, and the per-buyer counts add
/// up to what the SKU has reserved or sold.
fn check_no_oversell(sm: &StateMachine) -> Result<(), TestCaseError> {
    for sku in sm.skus_sorted() {
        let accounted = u128::from(sku.units_available)
            + u128::from(sku.units_reserved)
            + u128::from(sku.units_sold);
        prop_assert_eq!(
            accounted,
            u128::from(sku.units_stocked),
            "invariant 3 (no oversell): available + reserved + sold != stocked for {:?}",
            sku
        );
        if sku.limit_per_buyer == 0 {
            continue;
        }
        let mut held_total = 0u128;
        for buyer in account_ids() {
            let held = sm.buyer_units(sku.id, buyer);
            held_total += u128::from(held);
            prop_assert!(
                held <= u64::from(sku.limit_per_buyer),
                "invariant 3 (per-buyer limit): buyer {} holds {} of {:?}",
                buyer,
                held,
                sku
            );
        }
        // Held = reserved + bought, and every buyer a command can name is walked above.
        prop_assert_eq!(
            held_total,
            u128::from(sku.units_reserved) + u128::from(sku.units_sold),
            "invariant 3 (per-buyer counts): buyers' units != reserved + sold for {:?}",
            sku
        );
    }
    Ok(())
}

/// Exactly the orders that were ever paid have a dispatch request, and its status agrees
/// with the order's.
fn check_dispatch_outbox(sm: &StateMachine) -> Result<(), TestCaseError> {
    let mut requests: BTreeMap<OrderId, Vec<DispatchStatus>> = BTreeMap::new();
    for request in sm.dispatches_sorted() {
        requests
            .entry(request.order_id)
            .or_default()
            .push(request.status);
    }
    for view in sm.orders_sorted() {
        let id = view.order.id;
        let status = OrderStatus::from_u16(view.order.status);
        let statuses = requests.remove(&id).unwrap_or_default();
        let paid = matches!(
            status,
            Some(OrderStatus::Paid | OrderStatus::Dispatched | OrderStatus::Refunded)
        );
        prop_assert_eq!(
            statuses.len(),
            usize::from(paid),
            "invariant 4 (dispatch): order {} in status {:?} has requests {:?}",
            id,
            status,
            statuses
        );
        let expected: &[DispatchStatus] = match status {
            Some(OrderStatus::Paid) => &[DispatchStatus::Pending],
            Some(OrderStatus::Dispatched) => &[DispatchStatus::Acknowledged],
            Some(OrderStatus::Refunded) => {
                &[DispatchStatus::Acknowledged, DispatchStatus::Cancelled]
            }
            _ => &[],
        };
        for request_status in &statuses {
            prop_assert!(
                expected.contains(request_status),
                "invariant 4 (dispatch): order {} in status {:?} has a {:?} request",
                id,
                status,
                request_status
            );
        }
    }
    prop_assert!(
        requests.is_empty(),
        "invariant 4 (dispatch): requests without a placed order: {:?}",
        requests
    );
    Ok(())
}

/// Every pending balance is the sum of the live holds, and every reserved unit belongs to a
/// live reservation or an unpaid order. Catches a hold or a unit that leaks on a path
/// (expiry, rollback) that still balances in total.
fn check_holds_add_up(sm: &StateMachine) -> Result<(), TestCaseError> {
    let mut debits_pending: BTreeMap<AccountId, u64> = BTreeMap::new();
    let mut credits_pending: BTreeMap<AccountId, u64> = BTreeMap::new();
    for id in 1..=u128::from(TRANSFER_IDS) {
        if let Some(TransferLookup::Committed {
            transfer,
            pending_status: Some(PendingStatus::Pending),
        }) = sm.transfer(TransferId(id))
        {
            *debits_pending.entry(transfer.debit_account_id).or_default() += transfer.amount;
            *credits_pending
                .entry(transfer.credit_account_id)
                .or_default() += transfer.amount;
        }
    }
    for a in sm.accounts_sorted() {
        prop_assert_eq!(
            a.debits_pending,
            debits_pending.get(&a.id).copied().unwrap_or(0),
            "invariant 8 (holds): debits_pending of account {} != its live holds",
            a.id
        );
        prop_assert_eq!(
            a.credits_pending,
            credits_pending.get(&a.id).copied().unwrap_or(0),
            "invariant 8 (holds): credits_pending of account {} != its live holds",
            a.id
        );
    }
    let mut reserved: BTreeMap<SkuId, u64> = BTreeMap::new();
    for order in 1..=u128::from(ORDER_IDS) {
        for sku in 1..=u64::from(SKU_IDS) + 1 {
            if let Some(ReservationLookup::Held(r)) = sm.reservation(OrderId(order), SkuId(sku)) {
                if r.status == ReservationStatus::Reserved as u16 {
                    *reserved.entry(r.sku_id).or_default() += u64::from(r.quantity);
                }
            }
        }
    }
    for view in sm.orders_sorted() {
        if view.order.status == OrderStatus::Reserved as u16 {
            // An unpaid order holds its authorization; its lines hold units.
            let authorization = sm.transfer(view.order.transfer_id);
            prop_assert!(
                matches!(
                    authorization,
                    Some(TransferLookup::Committed {
                        pending_status: Some(PendingStatus::Pending),
                        ..
                    })
                ),
                "invariant 8 (holds): unpaid order {} has authorization {:?}",
                view.order.id,
                authorization
            );
            let lines = &view.order.lines[..usize::from(view.order.line_count)];
            for line in lines {
                *reserved.entry(line.sku_id).or_default() += u64::from(line.quantity);
            }
        }
    }
    for sku in sm.skus_sorted() {
        prop_assert_eq!(
            sku.units_reserved,
            reserved.get(&sku.id).copied().unwrap_or(0),
            "invariant 8 (holds): units_reserved of SKU {} != live reservations + unpaid lines",
            sku.id
        );
    }
    Ok(())
}

fn check_invariants(sm: &StateMachine) -> Result<(), TestCaseError> {
    check_conservation(sm)?;
    check_no_overdraft(sm)?;
    check_no_oversell(sm)?;
    check_dispatch_outbox(sm)?;
    check_holds_add_up(sm)
}

/// Prefixes a failure with where it happened, so the shrunk case reads in context.
fn context(prefix: &str, check: Result<(), TestCaseError>) -> Result<(), TestCaseError> {
    check.map_err(|error| match error {
        TestCaseError::Fail(reason) => TestCaseError::fail(format!("{prefix}{reason}")),
        reject => reject,
    })
}

// --- Comparing two states without the log time (see `resubmission_has_no_second_effect`).

/// Everything a client can observe, by id, over every id a command can name.
///
/// The one exception: `fresh_links`, the ids of resubmitted transfers whose first result was
/// `LinkedEventFailed`. A rolled-back link keeps no outcome (its code's documented remedy is
/// "fix the failing link and resubmit the whole chain", which needs the id still free), so
/// a resubmitted chain is a fresh attempt at it, and the state may have moved on meanwhile.
/// Found by this property: `[post of pending 6 (linked), transfer with id 0]` fails on the
/// zero id and rolls the post back; resubmitted after pending 6 expired, the post itself
/// fails with `PendingTransferExpired`, and that failure is recorded under its id. Such an
/// id may therefore go from unknown to failed, never to committed (the link that failed the
/// chain fails it again), and balances must not move. Nothing else may differ.
fn assert_same_state(
    a: &StateMachine,
    b: &StateMachine,
    fresh_links: &BTreeSet<TransferId>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.accounts_sorted(), b.accounts_sorted(), "accounts differ");
    prop_assert_eq!(a.skus_sorted(), b.skus_sorted(), "SKUs differ");
    prop_assert_eq!(a.orders_sorted(), b.orders_sorted(), "orders differ");
    prop_assert_eq!(
        a.dispatches_sorted(),
        b.dispatches_sorted(),
        "dispatch requests differ"
    );
    prop_assert_eq!(
        a.dispatch_feed(0, usize::MAX),
        b.dispatch_feed(0, usize::MAX),
        "feeds"
    );
    let mut fresh_failures = 0;
    for id in 1..=u128::from(TRANSFER_IDS) {
        let id = TransferId(id);
        let (before, after) = (a.transfer(id), b.transfer(id));
        if fresh_links.contains(&id) && before.is_none() {
            if let Some(TransferLookup::Failed(_)) = after {
                fresh_failures += 1;
                continue;
            }
        }
        prop_assert_eq!(before, after, "transfer {} differs", id);
    }
    for order in 1..=u128::from(ORDER_IDS) {
        let order = OrderId(order);
        prop_assert_eq!(
            a.order(order),
            b.order(order),
            "order lookup {} differs",
            order
        );
        for sku in 1..=u64::from(SKU_IDS) + 1 {
            let sku = SkuId(sku);
            prop_assert_eq!(
                a.reservation(order, sku),
                b.reservation(order, sku),
                "reservation ({}, {}) differs",
                order,
                sku
            );
        }
    }
    for sku in 1..=u64::from(SKU_IDS) + 1 {
        for buyer in account_ids() {
            let sku = SkuId(sku);
            prop_assert_eq!(
                a.buyer_units(sku, buyer),
                b.buyer_units(sku, buyer),
                "buyer units ({}, {}) differ",
                sku,
                buyer
            );
        }
    }
    // A catch-all for entries under ids the loops above do not name.
    let mut counts = b.memory_counts();
    counts.transfers -= fresh_failures;
    prop_assert_eq!(a.memory_counts(), counts, "map sizes differ");
    Ok(())
}

/// The commands of `step` to resubmit, with their indexes in the original batch.
///
/// Confirm, release and ack carry no id of their own: they name a reservation or a
/// dispatch request. When their first result was a not-found code they named nothing that
/// existed, so they have no outcome to keep, and resubmitting them once the reservation or
/// request exists is a new command that may take effect. Exactly those are left out; every
/// other command is resubmitted and must change nothing (save the one documented exception
/// for rolled-back links, see [`assert_same_state`]).
fn resubmitted(step: &Step, first: &[ResultCode]) -> (BatchBuf, Vec<usize>) {
    let keep = |not_found: ResultCode| -> Vec<usize> {
        (0..first.len())
            .filter(|&i| first[i] != not_found)
            .collect()
    };
    let pick = |indexes: &[usize], keys: &[(u8, u8)]| -> Vec<ReservationKey> {
        indexes
            .iter()
            .map(|&i| reservation_key_record(&keys[i]))
            .collect()
    };
    match step {
        Step::Confirm(keys) => {
            let kept = keep(ResultCode::ReservationNotFound);
            (BatchBuf::ConfirmReservations(pick(&kept, keys)), kept)
        }
        Step::Release(keys) => {
            let kept = keep(ResultCode::ReservationNotFound);
            (BatchBuf::ReleaseReservations(pick(&kept, keys)), kept)
        }
        Step::Ack(ids) => {
            let kept = keep(ResultCode::DispatchNotFound);
            let ids: Vec<u8> = kept.iter().map(|&i| ids[i]).collect();
            (batch(&Step::Ack(ids)), kept)
        }
        _ => (batch(step), (0..first.len()).collect()),
    }
}

/// Builds two copies of the state after `stream`; into one, resubmits the first
/// `prefix_len` batches at fresh log times, into the other, pulses at the same times.
/// Checks the codes of the resubmitted commands, then that the two states agree.
fn resubmit_prefix(stream: &[Step], prefix_len: usize, gaps: &[u64]) -> Result<(), TestCaseError> {
    let (mut pulsed, first_results) = run(stream);
    let (mut resubmitted_to, _) = run(stream);
    let mut fresh_links = BTreeSet::new();
    let mut timestamp = resubmitted_to.timestamp_next_min();
    for (index, step) in stream[..prefix_len].iter().enumerate() {
        let first_codes = &first_results[index];
        let (batch, kept) = resubmitted(step, first_codes);
        let results = apply(&mut resubmitted_to, timestamp, &batch);
        apply(&mut pulsed, timestamp, &BatchBuf::Pulse);
        for (&original, &now) in kept.iter().zip(&results) {
            let first = first_codes[original];
            if first.is_success() {
                prop_assert_eq!(
                    now,
                    ResultCode::Exists,
                    "batch {} command {} first succeeded",
                    index,
                    original
                );
            } else {
                prop_assert!(
                    !now.is_success(),
                    "batch {} command {} first failed with {:?}, now {:?}",
                    index,
                    original,
                    first,
                    now
                );
            }
            if let (Step::Transfers(specs), ResultCode::LinkedEventFailed) = (step, first) {
                fresh_links.insert(TransferId(u128::from(specs[original].id)));
            }
        }
        timestamp = resubmitted_to.timestamp_next_min() + gaps[index % gaps.len()];
    }
    assert_same_state(&pulsed, &resubmitted_to, &fresh_links)
}

// The crate's clippy.toml bans reading the environment because the state machine must not;
// this is the test harness choosing how many cases to run, which no state depends on.
#[allow(clippy::disallowed_methods)]
fn config() -> ProptestConfig {
    // An explicit `cases` would override PROPTEST_CASES, so set it only when unset.
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        default.cases
    } else {
        CASES_DEFAULT
    };
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..default
    }
}

proptest! {
    #![proptest_config(config())]

    /// Invariants 1-5 (and 8) hold after every batch of any stream.
    #[test]
    fn invariants_hold_after_every_batch(stream in stream()) {
        let mut sm = state_machine();
        for (index, step) in stream.iter().enumerate() {
            let batch = batch(step);
            let timestamp = timestamp_for(&sm, step);
            let results = apply(&mut sm, timestamp, &batch);
            prop_assert_eq!(
                results.len(),
                batch.as_batch().len(),
                "invariant 5 (one result per command): after batch {}",
                index
            );
            context(&format!("after batch {index}: "), check_invariants(&sm))?;
        }
    }

    /// Invariant 6: the state is a pure function of the log: two fresh state machines (one
    /// with tiny tables that grow, one with roomy ones) answer the same codes and hash the
    /// same after every batch.
    #[test]
    fn replay_is_deterministic(stream in stream()) {
        let mut first = state_machine();
        let mut second = state_machine_roomy();
        for (index, step) in stream.iter().enumerate() {
            let batch = batch(step);
            let timestamp = timestamp_for(&first, step);
            let results_first = apply(&mut first, timestamp, &batch);
            let results_second = apply(&mut second, timestamp, &batch);
            prop_assert_eq!(
                &results_first,
                &results_second,
                "invariant 6 (determinism): result codes differ after batch {}",
                index
            );
            prop_assert_eq!(
                first.state_hash(),
                second.state_hash(),
                "invariant 6 (determinism): state hashes differ after batch {}",
                index
            );
        }
    }

    /// Invariant 7: resubmitting a prefix of the stream later (at fresh log times) has the
    /// same effect as letting that time pass with pulses: none.
    #[test]
    fn resubmission_has_no_second_effect(
        stream in stream(),
        prefix in any::<Index>(),
        gaps in prop::collection::vec(prop::sample::select(&PULSE_ADVANCES_NS[..]), 1..8),
    ) {
        let prefix_len = prefix.index(stream.len() + 1);
        context(
            &format!("invariant 7 (idempotence), resubmitting {prefix_len} batches: "),
            resubmit_prefix(&stream, prefix_len, &gaps),
        )?;
    }
}

/// Applies one batch to a state machine that evicts: recalls from `archive` whatever the
/// batch names that left memory, as the engine does with the history index.
fn apply_recalling(
    sm: &mut StateMachine,
    archive: &BTreeMap<TransferId, ArchivedTransfer>,
    timestamp: u64,
    batch: &BatchBuf,
) -> Vec<ResultCode> {
    let found: Vec<ArchivedTransfer> = sm
        .archive_lookups(batch.as_batch())
        .iter()
        .filter_map(|id| archive.get(id).copied())
        .collect();
    sm.recall(&found);
    apply(sm, timestamp, batch)
}

/// What a transfer query answers with everything in memory, as the archive can tell it.
fn archived_view(lookup: Option<TransferLookup>) -> Option<ArchivedOutcome> {
    match lookup? {
        TransferLookup::Failed(code) => Some(ArchivedOutcome::Failed(code)),
        TransferLookup::Committed { pending_status, .. } => Some(ArchivedOutcome::Committed {
            fingerprint: 0,
            pending_status,
        }),
    }
}

/// Runs `stream` on a plain state machine and on one that evicts every finished transfer
/// older than `lag` sequence numbers, starting a cycle after every `every`-th batch; with
/// `slice` set, a cycle's planning walks `slice` table slots per batch and its eviction
/// removes `slice` transfers per batch (as the node spreads it), else each is done at once.
/// Round-trips the evicting machine's snapshot after every `snapshot_every`-th batch
/// (which drops a cycle in progress, as a restart does). Compares codes, hashes, queries.
fn check_eviction(
    stream: &[Step],
    every: usize,
    lag: u64,
    snapshot_every: usize,
    slice: Option<usize>,
) -> Result<(), TestCaseError> {
    let mut plain = state_machine();
    let mut evicting = state_machine();
    let mut archive: BTreeMap<TransferId, ArchivedTransfer> = BTreeMap::new();
    let mut cycle: Option<surge_core::EvictionPlan> = None;
    let budget = slice.unwrap_or(usize::MAX);
    for (index, step) in stream.iter().enumerate() {
        let batch = batch(step);
        let timestamp = timestamp_for(&plain, step);
        let expected = apply(&mut plain, timestamp, &batch);
        let results = apply_recalling(&mut evicting, &archive, timestamp, &batch);
        prop_assert_eq!(&expected, &results, "codes differ at batch {}", index);
        prop_assert_eq!(
            plain.state_hash(),
            evicting.state_hash(),
            "state hashes differ after batch {}",
            index
        );
        if cycle.is_none() && index % every == 0 {
            let below = evicting.transfer_sequence().saturating_sub(lag);
            cycle = Some(evicting.eviction_plan_start(below));
        }
        if let Some(plan) = cycle.as_mut() {
            if !plan.is_planned() {
                if evicting.eviction_plan_continue(plan, budget) {
                    // Archived durably before anything leaves, as the engine does.
                    for entry in &plan.entries {
                        prop_assert!(archive.insert(entry.id, *entry).is_none(), "twice");
                    }
                }
            } else if evicting.evict_continue(plan, budget) {
                cycle = None;
            }
            prop_assert_eq!(plain.state_hash(), evicting.state_hash(), "while evicting");
        }
        if index % snapshot_every == 0 {
            let bytes = evicting.snapshot();
            evicting = StateMachine::restore(&bytes).expect("a snapshot restores");
            prop_assert_eq!(&bytes, &evicting.snapshot(), "snapshot round trip");
            // A restart loses the cycle in progress; what was archived stays archived.
            if cycle.as_ref().is_some_and(|plan| plan.is_planned()) {
                let plan = cycle.take().expect("a cycle");
                for entry in &plan.entries {
                    if evicting.transfer(entry.id).is_some() {
                        archive.remove(&entry.id);
                    }
                }
            } else {
                cycle = None;
            }
        }
    }
    for id in (1..=u128::from(TRANSFER_IDS)).map(TransferId) {
        let expected = plain.transfer(id);
        match evicting.transfer(id) {
            Some(found) => prop_assert_eq!(Some(found), expected, "transfer {:?}", id),
            None => {
                let archived = archive.get(&id).map(|entry| match entry.outcome {
                    ArchivedOutcome::Committed { pending_status, .. } => {
                        ArchivedOutcome::Committed {
                            fingerprint: 0,
                            pending_status,
                        }
                    }
                    failed => failed,
                });
                prop_assert_eq!(archived, archived_view(expected), "archived {:?}", id);
            }
        }
    }
    let counts = evicting.memory_counts();
    prop_assert_eq!(
        counts.transfers as u64 + counts.transfers_evicted,
        plain.memory_counts().transfers as u64
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Invariant 9: eviction is invisible. A stream applied with everything in memory and
    /// with finished transfers evicted (and recalled when named) gives the same codes, the
    /// same state hash after every batch, and the same query answers at the end.
    #[test]
    fn eviction_changes_no_result(
        stream in stream(),
        every in 1..4usize,
        lag in prop::sample::select(&[0u64, 1, 5][..]),
        snapshot_every in 2..9usize,
        slice in prop::option::of(1..6usize),
    ) {
        check_eviction(&stream, every, lag, snapshot_every, slice)?;
    }
}

/// Guards the generator: if a change to the strategies stopped streams from reaching some
/// state, the properties above would pass vacuously for it. Over a fixed set of streams,
/// every lifecycle state must occur.
#[test]
fn streams_reach_every_lifecycle_state() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for _ in 0..GUARD_STREAMS {
        let stream = stream().new_tree(&mut runner).expect("a stream").current();
        let (sm, results) = run(&stream);
        for code in results.iter().flatten() {
            seen.insert(format!("code {code:?}"));
        }
        for view in sm.orders_sorted() {
            seen.insert(format!(
                "order {:?}",
                OrderStatus::from_u16(view.order.status)
            ));
        }
        for request in sm.dispatches_sorted() {
            seen.insert(format!("dispatch {:?}", request.status));
            if request.attempts > 1 {
                seen.insert("dispatch redelivered".to_owned());
            }
        }
        for id in 1..=u128::from(TRANSFER_IDS) {
            if let Some(TransferLookup::Committed {
                pending_status: Some(status),
                ..
            }) = sm.transfer(TransferId(id))
            {
                seen.insert(format!("pending {status:?}"));
            }
        }
        for order in 1..=u128::from(RESERVATION_ORDER_IDS) {
            for sku in 1..=u64::from(SKU_IDS) {
                if let Some(ReservationLookup::Held(r)) = sm.reservation(OrderId(order), SkuId(sku))
                {
                    seen.insert(format!(
                        "reservation {:?}",
                        ReservationStatus::from_u16(r.status)
                    ));
                }
            }
        }
    }
    let required = [
        "order Some(Reserved)",
        "order Some(Paid)",
        "order Some(Dispatched)",
        "order Some(Cancelled)",
        "order Some(Expired)",
        "order Some(Refunded)",
        "dispatch Pending",
        "dispatch Acknowledged",
        "dispatch Cancelled",
        "dispatch redelivered",
        "pending Pending",
        "pending Posted",
        "pending Voided",
        "pending Expired",
        "reservation Some(Reserved)",
        "reservation Some(Confirmed)",
        "reservation Some(Released)",
        "reservation Some(Expired)",
        "code LinkedEventFailed",
        "code LinkedEventChainOpen",
        "code Exists",
        "code ExistsWithDifferentFields",
        "code IdAlreadyFailed",
        "code ExceedsCredits",
        "code ExceedsDebits",
        "code Overflows",
        "code SoldOut",
        "code LimitReached",
        "code TransferIdInUse",
        "code PendingTransferExpired",
        "code OrderExpired",
        "code ReservationExpired",
    ];
    let missing: Vec<&str> = required
        .into_iter()
        .filter(|s| !seen.contains(*s))
        .collect();
    assert!(
        missing.is_empty(),
        "no generated stream reached {missing:?}"
    );
}

/// Looking up id zero (never a valid id) finds nothing. A regression test: the table once
/// treated the zero key, its vacant-slot marker, as found, so `account(0)` answered a
/// phantom all-zero account and `transfer(0)` the first committed transfer (or panicked,
/// index out of bounds, on an empty state machine). Commands validate ids before any
/// lookup; queries come from outside, e.g. an HTTP lookup of `/transfers/0`.
#[test]
fn lookups_of_id_zero_find_nothing() {
    let mut sm = state_machine();
    assert_eq!(
        sm.account(AccountId::ZERO),
        None,
        "account 0 on an empty state machine"
    );
    assert_eq!(
        sm.transfer(TransferId::ZERO),
        None,
        "transfer 0 on an empty state machine"
    );
    let accounts = [account(&AccountSpec {
        ledger: 1,
        index: 0,
        flavor: Flavor::Plain,
        foreign_ledger: false,
        other_code: false,
        linked: false,
    })];
    apply(&mut sm, 1, &BatchBuf::CreateAccounts(accounts.to_vec()));
    assert_eq!(
        sm.account(AccountId::ZERO),
        None,
        "account 0 beside account 1"
    );
}
