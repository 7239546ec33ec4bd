//! Random streams of batches (proptest): a snapshot taken anywhere restores a machine that
//! goes on exactly like the original.

use proptest::prelude::*;

use super::*;

/// One batch of a random stream. Ids come from small pools so retries, conflicts and
/// unknown ids are common; timeouts and pulses span "next command" to "most streams".
#[derive(Clone, Debug)]
enum Step {
    Single(u8, u8, u8, u64),
    /// Linked pending transfers (id, debit, credit, amount, timeout): a failing member
    /// rolls back the others and leaves stale expiry hints behind.
    Holds(Vec<(u8, u8, u8, u64, u64)>),
    Resolve(u8, u8, u64, bool),
    Reserve(u8, u8, u8, u32, u64),
    Confirm(u8, u8),
    Release(u8, u8),
    Place(u8, u8, u64, u8, u32),
    Pay(u8, u8),
    Cancel(u8, u8),
    Refund(u8, u8, bool),
    Ack(u8),
    Pulse(u64),
}

const TIMEOUTS_NS: [u64; 5] = [1, 5, 2_000, 60_000, 5_000_000];
const PULSES_NS: [u64; 4] = [1, 3_000, 60_000, 6_000_000];

fn timeout() -> impl Strategy<Value = u64> {
    prop::sample::select(&TIMEOUTS_NS[..])
}

/// Mostly accounts 1..=4 (created), now and then 5 (capped) or 6 (never created).
fn account_index() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 1..=4u8, 1 => 5..=6u8]
}

/// Each role draws its transfer ids from its own range, and now and then from all of
/// them, so ids collide across roles.
fn transfer_id(home: std::ops::RangeInclusive<u8>) -> impl Strategy<Value = u8> {
    prop_oneof![8 => home, 1 => 1..=44u8]
}

fn step() -> impl Strategy<Value = Step> {
    let amount = 1..=400u64;
    let order = 1..=4u8;
    let sku = prop_oneof![8 => 1..=2u8, 1 => Just(3u8)];
    let hold = (
        transfer_id(1..=8),
        account_index(),
        account_index(),
        amount.clone(),
        timeout(),
    );
    prop_oneof![
        2 => (transfer_id(9..=14), account_index(), account_index(), amount)
            .prop_map(|(i, d, c, a)| Step::Single(i, d, c, a)),
        3 => prop::collection::vec(hold, 1..=3).prop_map(Step::Holds),
        2 => (transfer_id(15..=20), 1..=8u8, 0..=300u64, any::<bool>())
            .prop_map(|(i, p, a, post)| Step::Resolve(i, p, a, post)),
        3 => (1..=3u8, sku.clone(), 2..=3u8, 1..=3u32, timeout())
            .prop_map(|(o, s, b, q, t)| Step::Reserve(o, s, b, q, t)),
        1 => (1..=3u8, sku.clone()).prop_map(|(o, s)| Step::Confirm(o, s)),
        1 => (1..=3u8, sku.clone()).prop_map(|(o, s)| Step::Release(o, s)),
        4 => (order.clone(), transfer_id(21..=30), timeout(), sku, 1..=2u32)
            .prop_map(|(o, t, timeout, s, q)| Step::Place(o, t, timeout, s, q)),
        3 => (order.clone(), transfer_id(31..=44)).prop_map(|(o, t)| Step::Pay(o, t)),
        1 => (order.clone(), transfer_id(31..=44)).prop_map(|(o, t)| Step::Cancel(o, t)),
        1 => (order.clone(), transfer_id(31..=44), any::<bool>())
            .prop_map(|(o, t, restock)| Step::Refund(o, t, restock)),
        2 => order.prop_map(Step::Ack),
        2 => prop::sample::select(&PULSES_NS[..]).prop_map(Step::Pulse),
    ]
}

impl Step {
    /// The batch and how far past the earliest allowed time it is logged.
    fn batch(&self) -> (BatchBuf, u64) {
        let id = u128::from;
        let batch = match *self {
            Step::Single(i, d, c, a) => {
                BatchBuf::CreateTransfers(vec![transfer(id(i), id(d), id(c), a)])
            }
            Step::Holds(ref holds) => {
                let last = holds.len() - 1;
                let transfers = holds.iter().enumerate().map(|(index, &(i, d, c, a, t))| {
                    let hold = pending(id(i), id(d), id(c), a, t);
                    let linked = if index < last {
                        transfer_flags::LINKED
                    } else {
                        0
                    };
                    Transfer {
                        flags: hold.flags | linked,
                        ..hold
                    }
                });
                BatchBuf::CreateTransfers(transfers.collect())
            }
            Step::Resolve(i, p, a, post) => {
                let (flags, amount) = if post {
                    (transfer_flags::POST_PENDING, a)
                } else {
                    (transfer_flags::VOID_PENDING, 0)
                };
                BatchBuf::CreateTransfers(vec![resolve(id(i), id(p), amount, flags)])
            }
            Step::Reserve(o, s, b, q, t) => {
                BatchBuf::Reserve(vec![reserve(id(o), id(b), u64::from(s), q, t)])
            }
            Step::Confirm(o, s) => BatchBuf::ConfirmReservations(vec![key(id(o), u64::from(s))]),
            Step::Release(o, s) => BatchBuf::ReleaseReservations(vec![key(id(o), u64::from(s))]),
            Step::Place(o, t, timeout, s, q) => {
                BatchBuf::PlaceOrders(vec![order(id(o), id(t), timeout, &[(u64::from(s), q)])])
            }
            Step::Pay(o, t) => BatchBuf::PayOrders(vec![action(id(o), id(t), 0)]),
            Step::Cancel(o, t) => BatchBuf::CancelOrders(vec![action(id(o), id(t), 0)]),
            Step::Refund(o, t, restock) => {
                let flags = if restock {
                    order_action_flags::RESTOCK
                } else {
                    0
                };
                BatchBuf::RefundOrders(vec![action(id(o), id(t), flags)])
            }
            Step::Ack(o) => BatchBuf::AckDispatch(vec![ack(id(o))]),
            Step::Pulse(advance_ns) => return (BatchBuf::Pulse, advance_ns),
        };
        (batch, 0)
    }
}

/// Accounts 1 (bank), 2 and 3 (funded wallets), 4 (merchant), 5 (capped); 6 is never
/// created. SKUs 1 (plenty) and 2 (scarce, two per buyer); 3 is never created.
fn stream_setup() -> (StateMachine, Clock) {
    let mut sm = StateMachine::new(config());
    let mut clock = Clock::new();
    let wallet = account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let accounts = vec![
        account(BANK, 0),
        account(BUYER, wallet),
        account(BUYER_2, wallet),
        account(MERCHANT, 0),
        account(CAPPED, account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS),
    ];
    run(
        &mut sm,
        &mut clock,
        BatchBuf::CreateAccounts(accounts),
        &[ResultCode::Ok; 5],
    );
    let funding = vec![
        transfer(1_001, BANK, BUYER, 1_000),
        transfer(1_002, BANK, BUYER_2, 1_000),
    ];
    run(
        &mut sm,
        &mut clock,
        BatchBuf::CreateTransfers(funding),
        &[ResultCode::Ok; 2],
    );
    let skus = vec![sku(1, 20, 0), sku(2, 4, 2)];
    run(
        &mut sm,
        &mut clock,
        BatchBuf::CreateSkus(skus),
        &[ResultCode::Ok; 2],
    );
    (sm, clock)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn snapshot_anywhere_then_continue_identically(
        steps in prop::collection::vec(step(), 1..60),
        snap_at in 0..60usize,
    ) {
        let snap_at = snap_at % (steps.len() + 1);
        let (mut original, mut clock) = stream_setup();
        for step in &steps[..snap_at] {
            let (batch, advance_ns) = step.batch();
            let timestamp = clock.take(&batch, advance_ns);
            apply(&mut original, timestamp, &batch);
        }
        let bytes = original.snapshot();
        let mut restored = StateMachine::restore(&bytes).expect("a snapshot restores");
        prop_assert_eq!(restored.state_hash(), original.state_hash());
        prop_assert!(restored.snapshot() == bytes);
        for step in &steps[snap_at..] {
            let (batch, advance_ns) = step.batch();
            let timestamp = clock.take(&batch, advance_ns);
            let codes = apply(&mut original, timestamp, &batch);
            prop_assert_eq!(apply(&mut restored, timestamp, &batch), codes, "{:?}", step);
            prop_assert_eq!(restored.state_hash(), original.state_hash(), "{:?}", step);
            if let Some(restored_next) = restored.expiry_next() {
                let original_next = original.expiry_next();
                prop_assert!(original_next.is_some_and(|next| next <= restored_next));
            }
        }
        prop_assert!(original.snapshot() == restored.snapshot());
    }
}
