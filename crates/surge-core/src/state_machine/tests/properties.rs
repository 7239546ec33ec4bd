//! Property tests: random logs over a small id space, so that ids collide, chains fail,
//! stock runs out and things expire. After every batch the harness checks conservation of
//! money and units, holds and the outbox; on top, each log must replay to the same state
//! hash, every command that succeeded must answer a retry with `exists` and no effect, and
//! the form the engine logs a batch in must apply exactly as the batch.

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config as ProptestConfig;

use super::fixtures::*;
use super::harness::Harness;
use crate::batch::{compact_form, decode, BatchBuf};
use crate::ids::{AccountId, SkuId};
use crate::records::{
    order_action_flags, transfer_flags, Order, OrderAction, Reservation, ReservationKey, Transfer,
};
use crate::result::ResultCode;
use crate::state_machine::Config;

/// A SKU the random logs rarely sell out.
const SKU_DEEP: SkuId = SkuId(4);

/// Log time between the batches of a random log, or before a pulse, in ns.
const GAP_NS_MAX: u64 = 3 * ORDER_TIMEOUT_NS / 2;

fn account_id() -> impl Strategy<Value = AccountId> {
    select(vec![BANK, BUYER, BUYER_2, MERCHANT, NOBODY])
}

fn sku_id() -> impl Strategy<Value = SkuId> {
    // Mostly SKUs that exist, and mostly the deep one, so that orders get far enough to be
    // paid; the shallow ones still sell out and hit limits.
    prop_oneof![
        4 => Just(SKU_DEEP),
        3 => Just(SKU_A),
        2 => Just(SKU_B),
        1 => Just(SKU_C),
        1 => Just(SKU_NONE),
    ]
}

fn any_transfer() -> impl Strategy<Value = Transfer> {
    // Few ids, so that posts find their pending transfers and retries collide.
    let ids = (1..15u128, 1..15u128);
    let accounts = (account_id(), account_id());
    let shape = (
        0..4u8,
        0..700u64,
        select(vec![0, 10_000, 400_000]),
        proptest::bool::weighted(0.25),
    );
    (ids, accounts, shape).prop_map(
        |((id, other), (debit, credit), (kind, amount, timeout, link))| {
            let transfer = match kind {
                0 => transfer(id, debit, credit, amount),
                1 => pending(id, debit, credit, amount, timeout),
                2 => post(id, other, amount),
                _ => void(id, other),
            };
            if link {
                linked(transfer)
            } else {
                transfer
            }
        },
    )
}

/// Mostly valid quantities; zero now and then.
fn quantity() -> impl Strategy<Value = u32> {
    prop_oneof![9 => 1..4u32, 1 => Just(0)]
}

fn any_reservation() -> impl Strategy<Value = Reservation> {
    (1..8u128, select(vec![BUYER, BUYER_2]), sku_id(), quantity())
        .prop_map(|(order, buyer, sku, quantity)| reservation(order, buyer, sku, quantity))
}

fn any_key() -> impl Strategy<Value = ReservationKey> {
    (1..8u128, sku_id()).prop_map(|(order, sku)| key(order, sku))
}

fn any_order() -> impl Strategy<Value = Order> {
    let lines = proptest::collection::vec((sku_id(), 1..3u32), 1..3);
    (
        1..8u128,
        100..115u128,
        select(vec![BUYER, BUYER_2]),
        1..600u64,
        lines,
    )
        .prop_map(|(id, transfer_id, buyer, amount, lines)| Order {
            buyer_id: buyer,
            ..order(id, transfer_id, amount, &lines)
        })
}

fn any_action() -> impl Strategy<Value = OrderAction> {
    (1..8u128, 200..260u128, any::<bool>()).prop_map(|(order, transfer_id, restock)| {
        let flags = if restock {
            order_action_flags::RESTOCK
        } else {
            0
        };
        OrderAction {
            flags,
            ..action(order, transfer_id)
        }
    })
}

/// One batch of a random log.
fn any_batch() -> impl Strategy<Value = BatchBuf> {
    use proptest::collection::vec;
    let actions = || vec(any_action(), 1..4);
    prop_oneof![
        3 => vec(any_transfer(), 1..5).prop_map(BatchBuf::CreateTransfers),
        2 => vec(any_reservation(), 1..4).prop_map(BatchBuf::Reserve),
        1 => vec(any_key(), 1..3).prop_map(BatchBuf::ConfirmReservations),
        1 => vec(any_key(), 1..3).prop_map(BatchBuf::ReleaseReservations),
        3 => vec(any_order(), 1..4).prop_map(BatchBuf::PlaceOrders),
        // Only a refund accepts RESTOCK; pay and cancel go without, or most would be rejected.
        2 => actions().prop_map(|a| BatchBuf::PayOrders(a.into_iter().map(plain).collect())),
        1 => actions().prop_map(|a| BatchBuf::CancelOrders(a.into_iter().map(plain).collect())),
        1 => actions().prop_map(BatchBuf::RefundOrders),
        1 => vec((1..8u128).prop_map(ack), 1..3).prop_map(BatchBuf::AckDispatch),
        1 => Just(BatchBuf::Pulse),
    ]
}

fn plain(action: OrderAction) -> OrderAction {
    OrderAction { flags: 0, ..action }
}

/// A random log: each batch with the gap of log time before it.
fn any_log() -> impl Strategy<Value = Vec<(u64, BatchBuf)>> {
    // Mostly short gaps, so that orders and holds live long enough to be paid and posted.
    let gap = prop_oneof![3 => 0..2_000u64, 1 => 0..GAP_NS_MAX];
    proptest::collection::vec((gap, any_batch()), 1..40)
}

/// Runs `log` on a fresh shop; returns the harness and each batch's results.
fn run(config: Config, log: &[(u64, BatchBuf)]) -> (Harness, Vec<Vec<ResultCode>>) {
    let mut h = Harness::shop_with_config(config);
    assert_eq!(h.create_sku(sku(SKU_DEEP, 1_000, 0)), ResultCode::Ok);
    let results = log
        .iter()
        .map(|(gap, batch)| h.apply_at(h.now() + gap, batch.as_batch()))
        .collect();
    (h, results)
}

/// The commands of `batch` that answered `Ok`, each as a batch of its own, leaving out
/// linked transfers (alone, they would be an open chain).
fn succeeded(batch: &BatchBuf, results: &[ResultCode]) -> Vec<BatchBuf> {
    fn each<T: Copy>(
        records: &[T],
        results: &[ResultCode],
        wrap: fn(Vec<T>) -> BatchBuf,
    ) -> Vec<BatchBuf> {
        let ok = records
            .iter()
            .zip(results)
            .filter(|(_, code)| **code == ResultCode::Ok);
        ok.map(|(record, _)| wrap(vec![*record])).collect()
    }
    match batch {
        BatchBuf::Pulse | BatchBuf::CreateAccounts(_) | BatchBuf::CreateSkus(_) => Vec::new(),
        BatchBuf::CreateTransfers(r) => {
            let unlinked: Vec<(Transfer, ResultCode)> = r
                .iter()
                .zip(results)
                .filter(|(t, _)| t.flags & transfer_flags::LINKED == 0)
                .map(|(t, code)| (*t, *code))
                .collect();
            let (records, codes): (Vec<_>, Vec<_>) = unlinked.into_iter().unzip();
            each(&records, &codes, BatchBuf::CreateTransfers)
        }
        BatchBuf::Reserve(r) => each(r, results, BatchBuf::Reserve),
        BatchBuf::ConfirmReservations(r) => each(r, results, BatchBuf::ConfirmReservations),
        BatchBuf::ReleaseReservations(r) => each(r, results, BatchBuf::ReleaseReservations),
        BatchBuf::PlaceOrders(r) => each(r, results, BatchBuf::PlaceOrders),
        BatchBuf::PayOrders(r) => each(r, results, BatchBuf::PayOrders),
        BatchBuf::CancelOrders(r) => each(r, results, BatchBuf::CancelOrders),
        BatchBuf::RefundOrders(r) => each(r, results, BatchBuf::RefundOrders),
        BatchBuf::AckDispatch(r) => each(r, results, BatchBuf::AckDispatch),
        BatchBuf::ShardDebit(r) => each(r, results, BatchBuf::ShardDebit),
        BatchBuf::ShardCredit(r) => each(r, results, BatchBuf::ShardCredit),
        BatchBuf::ShardResolve(r) => each(r, results, BatchBuf::ShardResolve),
        BatchBuf::ReserveOrders(r) => each(r, results, BatchBuf::ReserveOrders),
        BatchBuf::OrderLegs(r) => each(r, results, BatchBuf::OrderLegs),
        BatchBuf::OrderResolve(r) => each(r, results, BatchBuf::OrderResolve),
        BatchBuf::OrderConfirm(r) => each(r, results, BatchBuf::OrderConfirm),
        BatchBuf::PlaceOrdersCompact(r) => each(r, results, BatchBuf::PlaceOrdersCompact),
        BatchBuf::OrderUnits(r) => each(r, results, BatchBuf::OrderUnits),
        BatchBuf::UnitConfirm(r) => each(r, results, BatchBuf::UnitConfirm),
    }
}

proptest! {
    // Failures print the shrunk log; nothing is written next to the sources.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_logs_keep_every_invariant_and_replay_identically(log in any_log()) {
        // The harness checks the invariants after every batch of both runs.
        // Redeliver often, so that redeliveries happen within a log.
        let config = Config { dispatch_redelivery_ns: 200_000, ..Config::default() };
        let (first, results_1) = run(config, &log);
        let (second, results_2) = run(config, &log);
        prop_assert_eq!(results_1, results_2);
        prop_assert_eq!(first.sm.state_hash(), second.sm.state_hash());
    }

    #[test]
    fn the_logged_form_of_every_batch_applies_as_the_batch(log in any_log()) {
        // One-line orders go to the log compact; the answers, the state after every batch
        // and the retries (in either form: the same fingerprint) must not tell.
        let logged: Vec<(u64, BatchBuf)> = log
            .iter()
            .map(|(gap, batch)| {
                let batch = batch.as_batch();
                let (operation, body) = compact_form(batch.operation(), batch.body().into());
                (*gap, decode(operation as u8, &body).expect("the log form decodes"))
            })
            .collect();
        let compacted = |(_, batch): &(u64, BatchBuf)| {
            matches!(batch, BatchBuf::PlaceOrdersCompact(_))
        };
        prop_assume!(logged.iter().any(compacted));
        let (mut given, results_given) = run(Config::default(), &log);
        let (mut compact, results_compact) = run(Config::default(), &logged);
        prop_assert_eq!(results_given, results_compact);
        prop_assert_eq!(given.sm.state_hash(), compact.sm.state_hash());
        for ((_, batch), (_, form)) in log.iter().zip(&logged) {
            // Each form retried on the state the other made.
            prop_assert_eq!(given.apply(form.as_batch()), compact.apply(batch.as_batch()));
        }
        prop_assert_eq!(given.sm.state_hash(), compact.sm.state_hash());
    }

    #[test]
    fn every_success_answers_a_retry_with_exists_and_no_effect(log in any_log()) {
        // The default redelivery period is far longer than the retries take, so the
        // outbox stands still while they run.
        let (mut h, results) = run(Config::default(), &log);
        let retries: Vec<BatchBuf> = log
            .iter()
            .zip(&results)
            .flat_map(|((_, batch), codes)| succeeded(batch, codes))
            .collect();
        // Retry long after everything expired: a first outcome never changes with time.
        h.pulse_at(h.now() + 10 * ORDER_TIMEOUT_NS);
        let before = h.snapshot();
        for retry in &retries {
            prop_assert_eq!(h.apply(retry.as_batch()), vec![ResultCode::Exists], "{:?}", retry);
        }
        prop_assert_eq!(h.snapshot(), before);
    }
}
