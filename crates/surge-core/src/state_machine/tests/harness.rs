//! The test harness: a state machine with a log clock, one-line helpers per command, and
//! the ledger, inventory, order and outbox invariants checked after every batch, so that
//! every test is also a conservation test.
//!
//! The checks use the public queries (the internals are free to change): the harness
//! remembers every id its batches named, and asks the state machine about each. Units
//! held for orders of other shards have no query of their own; the checks read the holds
//! and which lines of an order live here.

use std::collections::{BTreeMap, BTreeSet};

use super::fixtures::*;
use crate::batch::Batch;
use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};
use crate::records::{
    account_flags, order_action_flags, Account, DispatchAck, Order, OrderAction, OrderLine,
    OrderStatus, Reservation, ReservationKey, ReservationStatus, Sku, Transfer, UnitStep,
};
use crate::result::ResultCode;
use crate::state_machine::order_units::{lines_on, UnitHoldStatus};
use crate::state_machine::{
    Config, DispatchRequest, DispatchStatus, OrderLookup, OrderView, PendingStatus,
    ReservationLookup, StateMachine, TransferLookup,
};

/// Log time of the first batch. Far from zero so that "one step earlier" stays positive.
pub(super) const START_NS: u64 = 1_000_000_000;
/// Gap the harness leaves between the end of one batch and the start of the next.
pub(super) const STEP_NS: u64 = 1_000;
/// What [`Harness::shop`] credits to each buyer.
pub(super) const BUYER_FUNDS: u64 = 1_000;

/// A state machine plus the log time of the next batch.
pub(super) struct Harness {
    pub(super) sm: StateMachine,
    next_ns: u64,
    results: Vec<ResultCode>,
    /// Every id the batches named, so the invariant checks can look each one up.
    seen: Seen,
}

/// Ids named by the batches applied so far.
#[derive(Clone, Default)]
struct Seen {
    transfers: BTreeSet<TransferId>,
    reservations: BTreeSet<(OrderId, SkuId)>,
    buyers: BTreeSet<(SkuId, AccountId)>,
    /// Orders refunded with `RESTOCK`: their units went back to stock.
    restocked: BTreeSet<OrderId>,
    /// Orders of other shards whose units a unit step named here: the step (its order's
    /// lines on this shard are the hold's units).
    unit_orders: BTreeMap<OrderId, UnitStep>,
}

/// Everything a command can change that a client can see, for "no effect" checks.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Snapshot {
    accounts: Vec<Account>,
    skus: Vec<Sku>,
    orders: Vec<OrderView>,
    dispatches: Vec<DispatchRequest>,
}

impl Harness {
    /// An empty state machine with the default configuration.
    pub(super) fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub(super) fn with_config(config: Config) -> Self {
        let sm = StateMachine::new(config);
        Self {
            sm,
            next_ns: START_NS,
            results: Vec::new(),
            seen: Seen::default(),
        }
    }

    /// A harness around `sm` (say, this one's state restored from a snapshot) that goes on
    /// from where this one is: the same next log time, the same ids to check.
    pub(super) fn twin(&self, sm: StateMachine) -> Self {
        assert_eq!(sm.timestamp_last(), self.sm.timestamp_last());
        Self {
            sm,
            next_ns: self.next_ns,
            results: Vec::new(),
            seen: self.seen.clone(),
        }
    }

    /// A small shop: [`BANK`], two funded wallets ([`BUYER`], [`BUYER_2`], each holding
    /// [`BUYER_FUNDS`]), an unconstrained [`MERCHANT`], and SKUs A (10 units), B (3 units,
    /// 2 per buyer) and C (1 unit).
    pub(super) fn shop() -> Self {
        Self::shop_with_config(Config::default())
    }

    pub(super) fn shop_with_config(config: Config) -> Self {
        let mut h = Self::with_config(config);
        let accounts = [
            account(BANK),
            wallet(BUYER),
            wallet(BUYER_2),
            account(MERCHANT),
        ];
        assert_eq!(
            h.apply(Batch::CreateAccounts(&accounts)),
            [ResultCode::Ok; 4]
        );
        let funding = [
            transfer(9_001, BANK, BUYER, BUYER_FUNDS),
            transfer(9_002, BANK, BUYER_2, BUYER_FUNDS),
        ];
        assert_eq!(
            h.apply(Batch::CreateTransfers(&funding)),
            [ResultCode::Ok; 2]
        );
        let skus = [sku(SKU_A, 10, 0), sku(SKU_B, 3, 2), sku(SKU_C, 1, 0)];
        assert_eq!(h.apply(Batch::CreateSkus(&skus)), [ResultCode::Ok; 3]);
        h
    }

    /// Log time the next batch will start at (its first command's timestamp).
    pub(super) fn now(&self) -> u64 {
        self.next_ns
    }

    /// Applies `batch` at [`Harness::now`].
    pub(super) fn apply(&mut self, batch: Batch<'_>) -> Vec<ResultCode> {
        self.apply_at(self.next_ns, batch)
    }

    /// Applies `batch` at `timestamp`, which must be past the previous batch's last
    /// command, then checks every invariant.
    pub(super) fn apply_at(&mut self, timestamp: u64, batch: Batch<'_>) -> Vec<ResultCode> {
        self.sm.apply(timestamp, batch, &mut self.results);
        assert_eq!(self.results.len(), batch.len(), "one result per command");
        assert_eq!(
            self.sm.timestamp_last(),
            timestamp + batch.len().max(1) as u64 - 1
        );
        self.next_ns = self.sm.timestamp_last() + STEP_NS;
        self.seen.note(batch, &self.results);
        self.check_invariants();
        self.results.clone()
    }

    /// Moves log time to `timestamp` with an empty batch, so due expiries happen.
    pub(super) fn pulse_at(&mut self, timestamp: u64) {
        assert_eq!(self.apply_at(timestamp, Batch::Pulse), []);
    }

    fn one(&mut self, batch: Batch<'_>) -> ResultCode {
        let results = self.apply(batch);
        assert_eq!(results.len(), 1);
        results[0]
    }

    pub(super) fn create_account(&mut self, account: Account) -> ResultCode {
        self.one(Batch::CreateAccounts(&[account]))
    }

    pub(super) fn create_transfer(&mut self, transfer: Transfer) -> ResultCode {
        self.one(Batch::CreateTransfers(&[transfer]))
    }

    pub(super) fn create_sku(&mut self, sku: Sku) -> ResultCode {
        self.one(Batch::CreateSkus(&[sku]))
    }

    pub(super) fn reserve(&mut self, reservation: Reservation) -> ResultCode {
        self.one(Batch::Reserve(&[reservation]))
    }

    pub(super) fn confirm(&mut self, key: ReservationKey) -> ResultCode {
        self.one(Batch::ConfirmReservations(&[key]))
    }

    pub(super) fn release(&mut self, key: ReservationKey) -> ResultCode {
        self.one(Batch::ReleaseReservations(&[key]))
    }

    pub(super) fn place(&mut self, order: Order) -> ResultCode {
        self.one(Batch::PlaceOrders(&[order]))
    }

    pub(super) fn pay(&mut self, action: OrderAction) -> ResultCode {
        self.one(Batch::PayOrders(&[action]))
    }

    pub(super) fn cancel(&mut self, action: OrderAction) -> ResultCode {
        self.one(Batch::CancelOrders(&[action]))
    }

    pub(super) fn refund(&mut self, action: OrderAction) -> ResultCode {
        self.one(Batch::RefundOrders(&[action]))
    }

    pub(super) fn ack(&mut self, ack: DispatchAck) -> ResultCode {
        self.one(Batch::AckDispatch(&[ack]))
    }

    /// The account, which must exist.
    pub(super) fn account(&self, id: AccountId) -> Account {
        self.sm
            .account(id)
            .unwrap_or_else(|| panic!("account {id} exists"))
    }

    /// `(debits_pending, debits_posted, credits_pending, credits_posted)` of an account.
    pub(super) fn balances(&self, id: AccountId) -> (u64, u64, u64, u64) {
        let a = self.account(id);
        (
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted,
        )
    }

    /// `(available, reserved, sold)` units of a SKU, which must exist.
    pub(super) fn units(&self, id: SkuId) -> (u64, u64, u64) {
        let sku = self.sm.sku(id).unwrap_or_else(|| panic!("SKU {id} exists"));
        (sku.units_available, sku.units_reserved, sku.units_sold)
    }

    /// The committed transfer and its two-phase status; panics if not committed.
    pub(super) fn committed(&self, id: u128) -> (Transfer, Option<PendingStatus>) {
        match self.sm.transfer(TransferId(id)) {
            Some(TransferLookup::Committed {
                transfer,
                pending_status,
            }) => (transfer, pending_status),
            other => panic!("transfer {id} is not committed: {other:?}"),
        }
    }

    /// The placed order; panics if it was never placed.
    pub(super) fn order(&self, id: u128) -> OrderView {
        match self.sm.order(OrderId(id)) {
            Some(OrderLookup::Placed(view)) => view,
            other => panic!("order {id} is not placed: {other:?}"),
        }
    }

    pub(super) fn order_status(&self, id: u128) -> OrderStatus {
        OrderStatus::from_u16(self.order(id).order.status).expect("a valid status")
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            accounts: self.sm.accounts_sorted(),
            skus: self.sm.skus_sorted(),
            orders: self.sm.orders_sorted(),
            dispatches: self.sm.dispatches_sorted(),
        }
    }
}

impl Seen {
    /// Remembers the ids `batch` named. Zero ids are left out: they are never stored, and
    /// `zero_ids_look_up_as_nothing` covers their lookups.
    fn note(&mut self, batch: Batch<'_>, results: &[ResultCode]) {
        self.note_all(batch, results);
        self.transfers.remove(&TransferId::ZERO);
        self.reservations
            .retain(|(order_id, sku_id)| !order_id.is_zero() && !sku_id.is_zero());
        self.buyers
            .retain(|(sku_id, buyer_id)| !sku_id.is_zero() && !buyer_id.is_zero());
    }

    fn note_all(&mut self, batch: Batch<'_>, results: &[ResultCode]) {
        match batch {
            Batch::CreateTransfers(transfers) => {
                self.transfers.extend(transfers.iter().map(|t| t.id));
            }
            Batch::Reserve(reservations) => {
                for r in reservations {
                    self.reservations.insert((r.order_id, r.sku_id));
                    self.buyers.insert((r.sku_id, r.buyer_id));
                }
            }
            Batch::PlaceOrders(orders) => {
                for order in orders {
                    self.transfers.insert(order.transfer_id);
                    for line in order.lines.iter().filter(|line| !line.sku_id.is_zero()) {
                        self.buyers.insert((line.sku_id, order.buyer_id));
                    }
                }
            }
            Batch::PlaceOrdersCompact(orders) => {
                for order in orders {
                    self.transfers.insert(order.transfer_id);
                    self.buyers.insert((order.sku_id, order.buyer_id));
                }
            }
            Batch::ReserveOrders(orders) => {
                for spanning in orders {
                    let order = &spanning.order;
                    for line in order.lines.iter().filter(|line| !line.sku_id.is_zero()) {
                        self.buyers.insert((line.sku_id, order.buyer_id));
                    }
                }
            }
            Batch::OrderResolve(transfers) => {
                self.transfers.extend(transfers.iter().map(|t| t.id));
            }
            Batch::OrderUnits(steps) => {
                for (step, code) in steps.iter().zip(results) {
                    let order = &step.order;
                    if code.is_success() {
                        self.unit_orders.insert(order.id, *step);
                    }
                    for line in order.lines.iter().filter(|line| !line.sku_id.is_zero()) {
                        self.buyers.insert((line.sku_id, order.buyer_id));
                    }
                }
            }
            Batch::ShardDebit(legs) | Batch::ShardCredit(legs) | Batch::OrderLegs(legs) => {
                self.transfers
                    .extend(legs.iter().map(|leg| leg.transfer.id));
            }
            Batch::PayOrders(actions) | Batch::CancelOrders(actions) => {
                self.transfers.extend(actions.iter().map(|a| a.transfer_id));
            }
            Batch::RefundOrders(actions) => {
                for (action, code) in actions.iter().zip(results) {
                    self.transfers.insert(action.transfer_id);
                    let restock = action.flags & order_action_flags::RESTOCK != 0;
                    if *code == ResultCode::Ok && restock {
                        self.restocked.insert(action.order_id);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Harness {
    /// Every invariant the state machine promises, checked through its public queries.
    pub(super) fn check_invariants(&self) {
        check_money(&self.sm);
        self.check_holds();
        self.check_units();
        self.check_orders();
        check_dispatch(&self.sm);
    }

    /// Every account's pending balances are exactly the holds of its live pending
    /// transfers.
    fn check_holds(&self) {
        let mut debits: BTreeMap<AccountId, u64> = BTreeMap::new();
        let mut credits: BTreeMap<AccountId, u64> = BTreeMap::new();
        for &id in &self.seen.transfers {
            let Some(TransferLookup::Committed {
                transfer,
                pending_status,
            }) = self.sm.transfer(id)
            else {
                continue;
            };
            assert_eq!(transfer.id, id);
            if pending_status == Some(PendingStatus::Pending) {
                *debits.entry(transfer.debit_account_id).or_default() += transfer.amount;
                *credits.entry(transfer.credit_account_id).or_default() += transfer.amount;
            }
        }
        for a in self.sm.accounts_sorted() {
            let held = (debits.get(&a.id).copied(), credits.get(&a.id).copied());
            let held = (held.0.unwrap_or(0), held.1.unwrap_or(0));
            assert_eq!(
                (a.debits_pending, a.credits_pending),
                held,
                "account {} holds",
                a.id
            );
        }
    }

    /// Units are conserved per SKU; reserved and sold units, and each buyer's count under a
    /// limit, are exactly what the reservations and orders account for.
    fn check_units(&self) {
        // Per SKU: (reserved, sold); per (SKU, buyer): units held or bought.
        let mut units: BTreeMap<SkuId, (u64, u64)> = BTreeMap::new();
        let mut held: BTreeMap<(SkuId, AccountId), u64> = BTreeMap::new();
        let mut count = |sku_id: SkuId, buyer_id: AccountId, quantity: u32, sold: bool| {
            let entry = units.entry(sku_id).or_default();
            let counter = if sold { &mut entry.1 } else { &mut entry.0 };
            *counter += u64::from(quantity);
            *held.entry((sku_id, buyer_id)).or_default() += u64::from(quantity);
        };
        for &(order_id, sku_id) in &self.seen.reservations {
            let Some(ReservationLookup::Held(r)) = self.sm.reservation(order_id, sku_id) else {
                continue;
            };
            assert_eq!((r.order_id, r.sku_id), (order_id, sku_id));
            match ReservationStatus::from_u16(r.status).expect("a valid status") {
                ReservationStatus::Reserved => count(r.sku_id, r.buyer_id, r.quantity, false),
                ReservationStatus::Confirmed => count(r.sku_id, r.buyer_id, r.quantity, true),
                ReservationStatus::Released | ReservationStatus::Expired => {}
            }
        }
        for view in self.sm.orders_sorted() {
            let order = view.order;
            let status = OrderStatus::from_u16(order.status).expect("a valid status");
            let sold = match status {
                OrderStatus::Reserved => false,
                OrderStatus::Paid | OrderStatus::Dispatched => true,
                OrderStatus::Refunded if !self.seen.restocked.contains(&order.id) => true,
                OrderStatus::Refunded | OrderStatus::Cancelled | OrderStatus::Expired => continue,
            };
            // Only the lines living here, if they span shards.
            let here = self.sm.local_lines(&order).unwrap_or(order);
            for line in lines(&here) {
                count(line.sku_id, order.buyer_id, line.quantity, sold);
            }
        }
        // Units held here for orders of other shards.
        for (id, hold) in self.sm.order_saga.unit_holds.iter() {
            let sold = match hold.status {
                UnitHoldStatus::Held => false,
                UnitHoldStatus::Sold => true,
                _ => continue,
            };
            let step = self
                .seen
                .unit_orders
                .get(id)
                .expect("a hold's step was applied");
            let here = lines_on(&step.order, step.shard_count, Some(step.target_shard));
            for line in lines(&here) {
                count(line.sku_id, step.order.buyer_id, line.quantity, sold);
            }
        }
        for sku in self.sm.skus_sorted() {
            let total = u128::from(sku.units_available)
                + u128::from(sku.units_reserved)
                + u128::from(sku.units_sold);
            assert_eq!(total, u128::from(sku.units_stocked), "SKU {} units", sku.id);
            let expected = units.get(&sku.id).copied().unwrap_or_default();
            assert_eq!(
                (sku.units_reserved, sku.units_sold),
                expected,
                "SKU {} units",
                sku.id
            );
        }
        for &(sku_id, buyer_id) in &self.seen.buyers {
            let Some(sku) = self.sm.sku(sku_id) else {
                assert_eq!(self.sm.buyer_units(sku_id, buyer_id), 0);
                continue;
            };
            let expected = match sku.limit_per_buyer {
                0 => 0, // Unlimited SKUs keep no count.
                _ => held.get(&(sku_id, buyer_id)).copied().unwrap_or(0),
            };
            let actual = self.sm.buyer_units(sku_id, buyer_id);
            assert_eq!(actual, expected, "buyer {buyer_id} units of SKU {sku_id}");
            assert!(sku.limit_per_buyer == 0 || actual <= u64::from(sku.limit_per_buyer));
        }
    }

    /// An order's status matches its payment authorization and its dispatch request.
    fn check_orders(&self) {
        for view in self.sm.orders_sorted() {
            let order = view.order;
            let status = OrderStatus::from_u16(order.status).expect("a valid status");
            if self.sm.order_span(order.id).is_some() {
                continue; // Its authorization lives on the buyer's shard.
            }
            let authorization = self.sm.transfer(order.transfer_id);
            let Some(TransferLookup::Committed {
                transfer,
                pending_status,
            }) = authorization
            else {
                panic!("order {} has no authorization: {authorization:?}", order.id);
            };
            assert_eq!(transfer.user_data, order.id.0);
            assert_eq!(transfer.amount, order.amount);
            let expected = match status {
                OrderStatus::Reserved => PendingStatus::Pending,
                OrderStatus::Paid | OrderStatus::Dispatched | OrderStatus::Refunded => {
                    PendingStatus::Posted
                }
                OrderStatus::Cancelled => PendingStatus::Voided,
                OrderStatus::Expired => PendingStatus::Expired,
            };
            assert_eq!(
                pending_status,
                Some(expected),
                "order {} authorization",
                order.id
            );
            let dispatch = self
                .sm
                .dispatch(DispatchId::from(order.id))
                .map(|d| d.status);
            let expected = match status {
                OrderStatus::Reserved | OrderStatus::Cancelled | OrderStatus::Expired => None,
                OrderStatus::Paid => Some(DispatchStatus::Pending),
                OrderStatus::Dispatched => Some(DispatchStatus::Acknowledged),
                // Refunded before or after logistics took it.
                OrderStatus::Refunded => match dispatch {
                    Some(DispatchStatus::Acknowledged) => Some(DispatchStatus::Acknowledged),
                    _ => Some(DispatchStatus::Cancelled),
                },
            };
            assert_eq!(dispatch, expected, "order {} dispatch", order.id);
        }
    }
}

/// The lines in use of an order.
fn lines(order: &Order) -> &[OrderLine] {
    &order.lines[..usize::from(order.line_count)]
}

/// Per ledger, debits equal credits (pending and posted apart); constrained accounts
/// respect their limit; no balance sum passes 64 bits.
fn check_money(sm: &StateMachine) {
    let mut ledgers: BTreeMap<u32, [u128; 4]> = BTreeMap::new();
    for a in sm.accounts_sorted() {
        let sums = ledgers.entry(a.ledger).or_default();
        sums[0] += u128::from(a.debits_pending);
        sums[1] += u128::from(a.credits_pending);
        sums[2] += u128::from(a.debits_posted);
        sums[3] += u128::from(a.credits_posted);
        let debits = u128::from(a.debits_pending) + u128::from(a.debits_posted);
        let credits = u128::from(a.credits_pending) + u128::from(a.credits_posted);
        assert!(
            debits <= u128::from(u64::MAX),
            "account {} debits overflow",
            a.id
        );
        assert!(
            credits <= u128::from(u64::MAX),
            "account {} credits overflow",
            a.id
        );
        if a.flags & account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS != 0 {
            assert!(
                debits <= u128::from(a.credits_posted),
                "account {} overdrawn",
                a.id
            );
        }
        if a.flags & account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS != 0 {
            assert!(
                credits <= u128::from(a.debits_posted),
                "account {} over-credited",
                a.id
            );
        }
    }
    for (ledger, [debits_pending, credits_pending, debits_posted, credits_posted]) in ledgers {
        assert_eq!(
            debits_pending, credits_pending,
            "ledger {ledger} pending unbalanced"
        );
        assert_eq!(
            debits_posted, credits_posted,
            "ledger {ledger} posted unbalanced"
        );
    }
}

/// The feed lists exactly the pending requests, in sequence order, each once.
fn check_dispatch(sm: &StateMachine) {
    let feed = sm.dispatch_feed(0, usize::MAX);
    let mut pending: Vec<DispatchRequest> = sm
        .dispatches_sorted()
        .into_iter()
        .filter(|request| request.status == DispatchStatus::Pending)
        .collect();
    pending.sort_by_key(|request| request.sequence);
    assert_eq!(feed, pending, "the feed is the pending requests");
    assert!(feed
        .windows(2)
        .all(|pair| pair[0].sequence < pair[1].sequence));
    for request in sm.dispatches_sorted() {
        assert_eq!(
            request.id.0, request.order_id.0,
            "a dispatch id is its order id"
        );
        assert!(request.attempts >= 1);
    }
}
