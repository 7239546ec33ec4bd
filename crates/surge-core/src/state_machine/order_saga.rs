//! Orders whose buyer or merchant lives on another shard than their SKU lines, as each
//! shard's state machine sees them. The order lives on its lines' shard (the *order's
//! shard*); its authorization (a pending transfer owned by the order) lives on the buyer's
//! shard, where the funds are. Every step that needs the other shard is an
//! [`OrderMessage`] in the order's shard's **order outbox**, delivered by the engine,
//! applied on its target shard (deduped by transfer id) and settled by an
//! [`OrderOutcome`] logged back on the order's shard:
//!
//! 1. **Reserve** (order's shard, [`Operation::ReserveOrders`]): the checks and the units
//!    of a placed order; the order is `reserved` with its *authorize* step in flight.
//! 2. **Authorize** (buyer's shard, [`Operation::OrderLegs`]): the hold, owned by the
//!    order, with no timeout of its own. If the merchant lives on a third shard it is a
//!    cross-shard pending transfer (debit leg here; the engine waits until it settled).
//! 3. **Confirm** ([`Operation::OrderConfirm`]): success places the order (the client's
//!    answer); a failure releases the units and the order id fails with that code, as
//!    placing it on one shard would have. **Timeout**: if the outcome is not logged within
//!    [`ORDER_AUTHORIZE_TIMEOUT_NS`] of this shard's log time, the order fails with
//!    `order_authorization_timed_out` and its units are released at once; the step stays
//!    in the outbox marked [`order_message_flags::TIMED_OUT`], and when its outcome comes
//!    back a successful hold is voided (an expiry step), a failed one needs nothing.
//! 4. **Pay / cancel** work the same way: the order's shard sends the post or void of the
//!    authorization ([`Operation::OrderResolve`]) and changes the order only when the
//!    outcome comes back (sell the units and create the dispatch request, or release
//!    them); a failure (the transfer id is in use on the buyer's shard) fails the action's
//!    id and leaves the order as it was.
//! 5. **Expire**: the order's shard expires the order (units back) and sends a void whose
//!    id is the authorization's own; its outcome only clears the outbox.
//! 6. **Refund**: the refund transfer (merchant to buyer) goes to the merchant's shard as
//!    an order leg (a cross-shard transfer if the buyer lives elsewhere); success refunds
//!    the order, a failure (the merchant cannot cover it) fails the refund's id.
//!
//! An order whose SKU lines live on several shards also runs here (the router sends it to
//! its first line's shard with `shard_count` set): before step 2 the other shards holding
//! its lines reserve their units, and after a pay, cancel, expiry or restocking refund
//! they sell, release or restock them (`order_units`).
//!
//! While a step is in flight the order takes no other action (`order_in_flight`, nothing
//! stored) and does not expire; the step's outcome expires it if its time passed. Every
//! message stays in the outbox until its outcome is logged, so a crash anywhere delivers
//! it again and its target answers `exists`.

use std::collections::{BTreeMap, VecDeque};

use super::journal::{map_with_capacity, sorted, Map};
use super::ledger::Resolver;
use super::order_store::StoredOrder;
use super::orders::{authorization, order_fingerprint, validate_order};
use super::{fingerprint, Outcome, PendingStatus, StateMachine};
use crate::batch::Operation;
use crate::constants::{ORDER_AUTHORIZE_TIMEOUT_NS, TRANSFER_CODE_ORDER_REFUND};
use crate::ids::{OrderId, TransferId};
use crate::records::{
    order_action_flags, order_message_flags, order_message_kind as kind, transfer_flags,
    OrderAction, OrderMessage, OrderOutcome, OrderStatus, ShardLeg, SpanningOrder, Transfer,
};
use crate::result::ResultCode;
use crate::shard::SHARDS_MAX;

use super::cross_shard::is_reserved_account_id;
use super::order_units::{lines_on, remote_shards, UnitHold, UnitSent};
use crate::records::unit_step_kind;

/// Where an order's other parties live, and its step in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderSpan {
    pub(crate) buyer_shard: u32,
    pub(crate) merchant_shard: u32,
    /// The key (transfer id) of the order's step in flight, or zero: of its message in
    /// the outbox, or of the unit steps it waits for (`order_units`).
    pub(crate) in_flight: TransferId,
    /// Zero if every line lives on this shard; else the shard count by which the lines
    /// living elsewhere are found (`order_units`).
    pub(crate) shard_count: u32,
    /// While the order is placed: how many of the other shards holding its lines have
    /// reserved their units (they are asked one at a time, in line order).
    pub(crate) units_reserved: u32,
    /// The merchant's ledger as the engine saw it when routing, until the authorization
    /// (sent once every line is reserved) carries it; zero from then on, as in the spans
    /// of snapshot format 5, which did not keep it.
    pub(crate) merchant_ledger: u32,
}

/// The state of orders spanning shards on one shard. `spans` and `authorizations` grow
/// with every such order, so they are hash maps (a fixed hasher; walked in key order
/// only by snapshots and the state hash); the outbox holds only steps in flight.
#[derive(Clone, Debug)]
pub(crate) struct OrderSaga {
    /// Orders of this shard whose buyer or merchant lives on another one, by id.
    pub(crate) spans: Map<OrderId, OrderSpan>,
    /// Steps sent and not yet settled, by transfer id.
    pub(crate) outbox: BTreeMap<TransferId, OrderMessage>,
    /// The authorization id of every order in `spans` (derived from `spans` and the
    /// orders: rebuilt on restore, not in snapshots). That transfer lives on the buyer's
    /// shard, so this shard's transfer ids cannot tell that its id is taken.
    pub(crate) authorizations: Map<TransferId, OrderId>,
    /// When each order whose authorization is in flight times out, earliest first
    /// (derived from `spans` and the orders: rebuilt on restore, not in snapshots). Log
    /// time only moves forward and every order's timeout is the same, so a reservation's
    /// deadline is never before an earlier one's: a queue, pushed at the back and due at
    /// the front, each in O(1). An entry whose order moved on is skipped when it comes due.
    pub(crate) authorize_deadlines: VecDeque<(u64, OrderId)>,
    /// Messages that joined the outbox since the engine last took them (not state: after
    /// a restart the engine delivers the whole outbox).
    pub(crate) released: Vec<OrderMessage>,
    /// Unit steps sent and not yet settled, by (order, target shard): at most one per
    /// order and shard at a time (`order_units`).
    pub(crate) unit_outbox: BTreeMap<(OrderId, u32), UnitSent>,
    /// How many unit steps each client key (a place's authorization id, a pay's, cancel's
    /// or refund's transfer id) still waits for (derived from `unit_outbox`).
    pub(crate) unit_waiting: Map<TransferId, u32>,
    /// Unit steps that joined the unit outbox since the engine last took them.
    pub(crate) released_units: Vec<UnitSent>,
    /// Units this shard holds for orders of other shards, by order id (`order_units`).
    pub(crate) unit_holds: Map<OrderId, UnitHold>,
}

impl Default for OrderSaga {
    fn default() -> Self {
        OrderSaga {
            spans: map_with_capacity(0),
            outbox: BTreeMap::new(),
            authorizations: map_with_capacity(0),
            authorize_deadlines: VecDeque::new(),
            released: Vec::new(),
            unit_outbox: BTreeMap::new(),
            unit_waiting: map_with_capacity(0),
            released_units: Vec::new(),
            unit_holds: map_with_capacity(0),
        }
    }
}

impl OrderSaga {
    /// Whether anything here concerns orders spanning shards (else a shard skips every
    /// check of them: one shard, the hot path). A timed-out step may outlive its span.
    pub(crate) fn is_active(&self) -> bool {
        !self.spans.is_empty() || !self.outbox.is_empty() || !self.unit_outbox.is_empty()
    }

    /// The spans in order id order (snapshots, the state hash).
    pub(crate) fn spans_sorted(&self) -> Vec<(OrderId, OrderSpan)> {
        sorted(self.spans.iter())
    }
}

impl StateMachine {
    /// Reserves an order spanning shards on its lines' shard (see the module
    /// documentation). Checks everything this shard can before its first write.
    pub(crate) fn reserve_spanning_order(
        &mut self,
        spanning: &SpanningOrder,
        timestamp: u64,
    ) -> Outcome {
        let order = &spanning.order;
        if let Some(code) = validate_order(order) {
            return Outcome::Rejected(code);
        }
        if spanning.buyer_shard >= SHARDS_MAX
            || spanning.merchant_shard >= SHARDS_MAX
            || spanning.shard_count == 1
            || spanning.shard_count > SHARDS_MAX
        {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        }
        let fingerprint = order_fingerprint(order);
        let order_vacant = match self.orders.find(order.id) {
            Ok(existing) => return Outcome::Existing(existing.existing(fingerprint)),
            Err(vacant) => vacant,
        };
        if timestamp.checked_add(order.timeout_ns).is_none() {
            return Outcome::Failed(ResultCode::TimeoutOverflows);
        }
        if self.transfer_id_used(order.transfer_id) || self.order_step_id_taken(order.transfer_id) {
            return Outcome::Failed(ResultCode::TransferIdInUse);
        }
        // The lines living here; the others are reserved on their shards afterwards.
        let local = lines_on(order, spanning.shard_count, None);
        let first_plan = match self.order_lines_plan(&local) {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        self.take_order_lines(&local, first_plan);
        let placed = crate::records::Order {
            timestamp,
            status: OrderStatus::Reserved as u16,
            ..*order
        };
        self.orders.place(order_vacant, placed, fingerprint);
        let expires_at = timestamp + order.timeout_ns;
        self.order_expiry
            .push(std::cmp::Reverse((expires_at, order.id)));
        let span = OrderSpan {
            buyer_shard: spanning.buyer_shard,
            merchant_shard: spanning.merchant_shard,
            in_flight: order.transfer_id,
            shard_count: spanning.shard_count,
            units_reserved: 0,
            merchant_ledger: spanning.merchant_ledger,
        };
        assert!(self.order_saga.spans.insert(order.id, span).is_none());
        self.order_saga
            .authorizations
            .insert(order.transfer_id, order.id);
        let deadline = authorize_deadline(&placed);
        let deadlines = &mut self.order_saga.authorize_deadlines;
        debug_assert!(deadlines.back().is_none_or(|(last, _)| *last <= deadline));
        deadlines.push_back((deadline, order.id));
        match remote_shards(order, spanning.shard_count).first() {
            Some(&first) => {
                let key = order.transfer_id;
                self.send_unit_step(order, span.shard_count, first, unit_step_kind::RESERVE, key);
            }
            None => self.send_authorization(order, span),
        }
        Outcome::Applied
    }

    /// Sends the authorization of a reserved order spanning shards (every line held).
    pub(crate) fn send_authorization(&mut self, order: &crate::records::Order, span: OrderSpan) {
        let leg = ShardLeg {
            transfer: authorization(order),
            source_shard: span.buyer_shard,
            destination_shard: span.merchant_shard,
            credit_account_ledger: span.merchant_ledger,
            reserved: [0; 4],
        };
        self.send_order_message(order.id, kind::AUTHORIZE, leg, 0);
        if let Some(span) = self.order_saga.spans.get_mut(&order.id) {
            span.merchant_ledger = 0;
        }
    }

    fn send_order_message(&mut self, order_id: OrderId, kind: u32, leg: ShardLeg, flags: u32) {
        let message = OrderMessage {
            leg,
            order_id,
            kind,
            flags,
            reserved: [0; 8],
        };
        let previous = self.order_saga.outbox.insert(leg.transfer.id, message);
        assert!(previous.is_none(), "a step's id is checked unused");
        self.order_saga.released.push(message);
    }

    /// The span of `order_id`, if its buyer or merchant lives on another shard.
    pub(crate) fn order_span(&self, order_id: OrderId) -> Option<OrderSpan> {
        if self.order_saga.spans.is_empty() {
            return None; // One shard, or no order spans: the hot path.
        }
        self.order_saga.spans.get(&order_id).copied()
    }

    /// The answer to an action on an order spanning shards that this shard's transfer ids
    /// cannot give (the action's transfer lives on another shard): a retry of the step in
    /// flight or of a settled one, another action while one is in flight, or an id this
    /// shard's outbox uses. `None`: go on. Only called when some order here spans shards.
    pub(crate) fn spanning_action_answer(
        &self,
        stored: &StoredOrder,
        action: &OrderAction,
        operation: Operation,
    ) -> Option<Outcome> {
        let id = action.transfer_id;
        let Some(span) = self.order_span(stored.order.id) else {
            // A local order's action may not take the id of a step of an order spanning
            // shards (whose transfers live elsewhere).
            if self.order_saga.authorizations.contains_key(&id) {
                return Some(Outcome::Existing(ResultCode::ExistsWithDifferentFields));
            }
            let taken = self.order_saga.outbox.contains_key(&id)
                || self.order_saga.unit_waiting.contains_key(&id);
            return taken.then_some(Outcome::Rejected(ResultCode::TransferIdInUse));
        };
        let same_kind = |message_kind: u32| {
            matches!(
                (operation, message_kind),
                (Operation::PayOrders, kind::PAY)
                    | (Operation::CancelOrders, kind::CANCEL)
                    | (Operation::RefundOrders, kind::REFUND)
            )
        };
        let existing = |same: bool| {
            Some(Outcome::Existing(if same {
                ResultCode::Exists
            } else {
                ResultCode::ExistsWithDifferentFields
            }))
        };
        if !span.in_flight.is_zero() {
            if span.in_flight != id {
                return Some(Outcome::Rejected(ResultCode::OrderInFlight));
            }
            let in_flight_kind = match self.order_saga.outbox.get(&id) {
                Some(message) => message.kind,
                // Its units travel (`order_units`): the order says which step it was.
                None if id == stored.order.transfer_id => kind::AUTHORIZE,
                None if id == stored.payment_transfer_id => kind::PAY,
                None if stored.status() == OrderStatus::Cancelled => kind::CANCEL,
                None => kind::REFUND,
            };
            return existing(same_kind(in_flight_kind));
        }
        if id == stored.payment_transfer_id {
            return existing(operation == Operation::PayOrders);
        }
        if id == stored.closing_transfer_id {
            let same = match stored.status() {
                OrderStatus::Cancelled => operation == Operation::CancelOrders,
                OrderStatus::Refunded => operation == Operation::RefundOrders,
                _ => false,
            };
            return existing(same);
        }
        if id == stored.order.transfer_id || self.order_saga.authorizations.contains_key(&id) {
            // An authorization of this shard's orders (as one shard answers a used id).
            return existing(false);
        }
        if self.order_saga.outbox.contains_key(&id)
            || self.order_saga.unit_waiting.contains_key(&id)
        {
            // Another order's step uses it; the id stays free.
            return Some(Outcome::Rejected(ResultCode::TransferIdInUse));
        }
        None
    }

    /// Sends a pay, cancel or refund of an order spanning shards (checked by the caller);
    /// the order changes when its outcome comes back.
    pub(crate) fn send_order_action(
        &mut self,
        stored: &StoredOrder,
        action: &OrderAction,
        message_kind: u32,
    ) -> Outcome {
        let order = &stored.order;
        let span = self.order_span(order.id).expect("an order spanning shards");
        let (leg, flags) = match message_kind {
            kind::PAY | kind::CANCEL => {
                let flags = if message_kind == kind::PAY {
                    transfer_flags::POST_PENDING
                } else {
                    transfer_flags::VOID_PENDING
                };
                (resolution_leg(order, action.transfer_id, flags, span), 0)
            }
            kind::REFUND => {
                let refund = Transfer {
                    id: action.transfer_id,
                    debit_account_id: order.merchant_id,
                    credit_account_id: order.buyer_id,
                    amount: order.amount,
                    ledger: order.ledger,
                    code: TRANSFER_CODE_ORDER_REFUND,
                    user_data: order.id.0,
                    ..Transfer::default()
                };
                let leg = ShardLeg {
                    transfer: refund,
                    source_shard: span.merchant_shard,
                    destination_shard: span.buyer_shard,
                    credit_account_ledger: order.ledger,
                    reserved: [0; 4],
                };
                (leg, action.flags & order_action_flags::ALL)
            }
            _ => unreachable!("only pay, cancel and refund are actions"),
        };
        self.order_saga
            .spans
            .get_mut(&order.id)
            .expect("the span")
            .in_flight = action.transfer_id;
        self.send_order_message(order.id, message_kind, leg, flags);
        Outcome::Applied
    }

    /// Expires an order spanning shards now: its units back, and the void of its
    /// authorization sent (id = the authorization's own).
    pub(crate) fn expire_spanning_order(&mut self, index: usize) {
        let stored = *self.orders.at(index);
        let span = self
            .order_span(stored.order.id)
            .expect("an order spanning shards");
        assert!(span.in_flight.is_zero());
        self.release_order_lines(&stored);
        self.orders.at_mut(index).order.status = OrderStatus::Expired as u16;
        let id = stored.order.transfer_id;
        let leg = resolution_leg(&stored.order, id, transfer_flags::VOID_PENDING, span);
        self.send_order_message(stored.order.id, kind::EXPIRE, leg, 0);
        // Nobody waits for an expiry.
        let everywhere = remote_shards(&stored.order, span.shard_count);
        let release = unit_step_kind::RELEASE;
        let count = span.shard_count;
        self.send_unit_steps(&stored.order, count, &everywhere, release, TransferId::ZERO);
    }

    /// Fails an order whose authorization did not come back by `due` (sweep only; see the
    /// module documentation): its units back, its id failed with
    /// `order_authorization_timed_out`, its step marked timed out. Nothing if the
    /// authorization came back meanwhile.
    pub(crate) fn time_out_authorization(&mut self, order_id: OrderId, due: u64) {
        let Some(index) = self.orders.locate(order_id) else {
            return; // Failed already.
        };
        let stored = *self.orders.at(index);
        let key = stored.order.transfer_id;
        let Some(span) = self.order_span(order_id) else {
            return;
        };
        if span.in_flight != key
            || stored.status() != OrderStatus::Reserved
            || authorize_deadline(&stored.order) != due
        {
            return;
        }
        self.release_order_lines(&stored);
        self.orders
            .fail_placed(order_id, ResultCode::OrderAuthorizationTimedOut);
        self.order_saga.spans.remove(&order_id);
        self.order_saga.authorizations.remove(&key);
        let others = remote_shards(&stored.order, span.shard_count);
        let reserved = match self.order_saga.outbox.get_mut(&key) {
            Some(step) => {
                debug_assert_eq!(step.kind, kind::AUTHORIZE);
                step.flags |= order_message_flags::TIMED_OUT;
                others.len()
            }
            None => {
                // Still reserving its lines elsewhere: the shard asked now is marked (a
                // success then releases its units), those before it release theirs now.
                let asked = others[span.units_reserved as usize];
                let step = self
                    .order_saga
                    .unit_outbox
                    .get_mut(&(order_id, asked))
                    .expect("the reservation in flight");
                debug_assert_eq!(step.step.kind, unit_step_kind::RESERVE);
                step.step.flags |= order_message_flags::TIMED_OUT;
                span.units_reserved as usize
            }
        };
        let release = unit_step_kind::RELEASE;
        self.send_unit_steps(
            &stored.order,
            span.shard_count,
            &others[..reserved],
            release,
            key,
        );
    }

    /// An order's authorization or refund on the shard of its debit account (see the
    /// module documentation): applied whole if the credit account lives here too, else as
    /// the debit leg of a cross-shard transfer.
    pub(crate) fn order_leg(&mut self, leg: &ShardLeg, timestamp: u64) -> Outcome {
        let transfer = &leg.transfer;
        if leg.reserved != [0; 4]
            || leg.source_shard >= SHARDS_MAX
            || leg.destination_shard >= SHARDS_MAX
        {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        }
        let owner = match transfer.flags {
            transfer_flags::PENDING if transfer.timeout_ns == 0 => OrderId(transfer.user_data),
            0 => OrderId::ZERO,
            _ => return Outcome::Rejected(ResultCode::ReservedFlag),
        };
        if transfer.user_data == 0 {
            return Outcome::Rejected(ResultCode::IdMustNotBeZero);
        }
        if let Some(code) = super::ledger::validate_order_transfer(transfer) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(Operation::OrderLegs as u8, bytemuck::bytes_of(transfer));
        self.transfer_vacant = None;
        if let Some(existing) = self.transfer_existing(transfer.id, fingerprint) {
            return existing;
        }
        if leg.source_shard == leg.destination_shard {
            self.move_funds(transfer, timestamp, fingerprint, owner)
        } else {
            self.debit_to_transit(leg, timestamp, fingerprint, owner)
        }
    }

    /// A post or void of an order's authorization on the buyer's shard. Deduped by its
    /// id; an expiry (id = the authorization's) by the authorization's status.
    pub(crate) fn order_resolve(&mut self, transfer: &Transfer, timestamp: u64) -> Outcome {
        let flags = transfer.flags;
        if flags != transfer_flags::POST_PENDING && flags != transfer_flags::VOID_PENDING {
            return Outcome::Rejected(ResultCode::ReservedFlag);
        }
        if transfer.user_data == 0 || transfer.pending_id.is_zero() || transfer.id.is_zero() {
            return Outcome::Rejected(ResultCode::IdMustNotBeZero);
        }
        let order_id = OrderId(transfer.user_data);
        self.transfer_vacant = None;
        // Only the order's own authorization, here and not yet failed.
        let owned = self
            .pending_state(transfer.pending_id)
            .filter(|state| state.order_id == order_id);
        if transfer.id == transfer.pending_id {
            let Some(state) = owned else {
                return Outcome::Rejected(ResultCode::PendingTransferNotFound);
            };
            if flags != transfer_flags::VOID_PENDING {
                return Outcome::Rejected(ResultCode::ReservedFlag);
            }
            if state.status != PendingStatus::Pending {
                return Outcome::Existing(ResultCode::Exists);
            }
            let pending = self.committed_transfer(transfer.pending_id);
            if is_reserved_account_id(pending.credit_account_id) {
                if let Err(code) = self.cross_pending_credit(transfer.pending_id) {
                    return Outcome::Rejected(code);
                }
                self.expire_cross_pending(transfer.pending_id, state);
            } else {
                self.expire_pending_now(transfer.pending_id, state);
            }
            return Outcome::Applied;
        }
        if let Some(code) = super::ledger::validate_transfer(transfer) {
            return Outcome::Rejected(code);
        }
        let fingerprint = fingerprint(Operation::OrderResolve as u8, bytemuck::bytes_of(transfer));
        if let Some(existing) = self.transfer_existing(transfer.id, fingerprint) {
            return existing;
        }
        if owned.is_none() {
            return Outcome::Rejected(ResultCode::PendingTransferNotFound);
        }
        self.resolve_pending(transfer, timestamp, fingerprint, Resolver::Order(order_id))
    }

    /// The outcome of an order's step, back on the order's shard (see the module
    /// documentation). A repeat, or an outcome of another kind, changes nothing.
    pub(crate) fn order_confirm(&mut self, outcome: &OrderOutcome, timestamp: u64) -> Outcome {
        if outcome.reserved != [0; 8] {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        }
        let Some(code) = ResultCode::from_u32(outcome.code) else {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        };
        let key = outcome.transfer_id;
        let message = match self.order_saga.outbox.get(&key) {
            Some(message) if message.kind == outcome.kind => *message,
            _ => return Outcome::Existing(ResultCode::Exists),
        };
        self.order_saga.outbox.remove(&key);
        if message.kind == kind::EXPIRE {
            return Outcome::Applied;
        }
        if message.flags & order_message_flags::TIMED_OUT != 0 {
            // The order failed while its hold travelled: a hold that was made is voided.
            if code.is_success() {
                let authorization = &message.leg.transfer;
                let void = void_of_authorization(
                    message.order_id,
                    authorization.id,
                    authorization.ledger,
                    message.leg.source_shard,
                );
                self.send_order_message(message.order_id, kind::EXPIRE, void, 0);
            }
            return Outcome::Applied;
        }
        let order_id = message.order_id;
        let span = self
            .order_saga
            .spans
            .get_mut(&order_id)
            .expect("a step's order spans shards");
        assert_eq!(span.in_flight, key, "one step in flight per order");
        span.in_flight = TransferId::ZERO;
        let index = self
            .orders
            .locate(order_id)
            .expect("an order with a step in flight");
        let stored = *self.orders.at(index);
        let success = code.is_success();
        match message.kind {
            kind::AUTHORIZE if success => {}
            kind::AUTHORIZE => {
                self.release_order_lines(&stored);
                let span = self.order_saga.spans.remove(&order_id).expect("the span");
                self.orders.fail_placed(order_id, code);
                self.order_saga.authorizations.remove(&key);
                let others = remote_shards(&stored.order, span.shard_count);
                let release = unit_step_kind::RELEASE;
                self.send_unit_steps(&stored.order, span.shard_count, &others, release, key);
                return Outcome::Applied;
            }
            kind::PAY if success => {
                let local = self.local_lines(&stored.order);
                let local = local.as_ref().unwrap_or(&stored.order);
                for line in local.lines.iter().take(usize::from(local.line_count)) {
                    self.sell_units(line.sku_id, u64::from(line.quantity));
                }
                let paid = self.orders.at_mut(index);
                paid.order.status = OrderStatus::Paid as u16;
                paid.payment_transfer_id = key;
                self.create_dispatch(index, timestamp);
                self.send_order_units(&stored.order, unit_step_kind::SELL, key);
                return Outcome::Applied;
            }
            kind::CANCEL if success => {
                self.release_order_lines(&stored);
                let cancelled = self.orders.at_mut(index);
                cancelled.order.status = OrderStatus::Cancelled as u16;
                cancelled.closing_transfer_id = key;
                self.send_order_units(&stored.order, unit_step_kind::RELEASE, key);
                return Outcome::Applied;
            }
            kind::REFUND if success => {
                if message.flags & order_action_flags::RESTOCK != 0 {
                    let local = self.local_lines(&stored.order);
                    let local = local.as_ref().unwrap_or(&stored.order);
                    for line in local.lines.iter().take(usize::from(local.line_count)) {
                        let quantity = u64::from(line.quantity);
                        self.restock_units(line.sku_id, stored.order.buyer_id, quantity);
                    }
                    self.send_order_units(&stored.order, unit_step_kind::RESTOCK, key);
                }
                self.cancel_dispatch(index);
                let refunded = self.orders.at_mut(index);
                refunded.order.status = OrderStatus::Refunded as u16;
                refunded.closing_transfer_id = key;
                return Outcome::Applied;
            }
            kind::PAY | kind::CANCEL | kind::REFUND => {
                // The action failed over there: its id fails here too; the order is as it
                // was.
                if !self.transfer_id_used(key) {
                    self.record_transfer_failure(key, code);
                }
            }
            _ => unreachable!("kinds are checked when the outbox is read"),
        }
        // An order that came due while its step was in flight expires now.
        let due = stored.status() == OrderStatus::Reserved && stored.expires_at() <= timestamp;
        if due {
            self.expire_spanning_order(index);
        }
        Outcome::Applied
    }

    /// Order steps that joined the outbox since the last call (the engine delivers them).
    pub fn take_released_order_messages(&mut self) -> Vec<OrderMessage> {
        std::mem::take(&mut self.order_saga.released)
    }

    /// Every order step in this shard's outbox, by transfer id (what the engine delivers
    /// again after a restart).
    pub fn order_outbox(&self) -> Vec<OrderMessage> {
        self.order_saga.outbox.values().copied().collect()
    }

    /// Whether the order step with this transfer id waits for its outcome here (its
    /// message, or the unit steps it sent to the other shards holding its lines).
    pub fn order_step_in_flight(&self, id: TransferId) -> bool {
        self.order_saga.outbox.contains_key(&id) || self.order_saga.unit_waiting.contains_key(&id)
    }

    /// Whether `id` is taken by a step of an order spanning shards (its authorization, or
    /// a step in flight), whose transfer lives on another shard.
    pub(crate) fn order_step_id_taken(&self, id: TransferId) -> bool {
        self.order_saga.is_active()
            && (self.order_saga.authorizations.contains_key(&id)
                || self.order_saga.outbox.contains_key(&id)
                || self.order_saga.unit_waiting.contains_key(&id))
    }

    /// Whether order `id` (placed on this shard) has its buyer or merchant on another.
    pub fn order_spans_shards(&self, id: OrderId) -> bool {
        self.order_span(id).is_some()
    }

    /// Orders of this shard whose buyer or merchant lives on another shard.
    pub fn spanning_orders(&self) -> usize {
        self.order_saga.spans.len()
    }
}

/// When the authorization of an order spanning shards, reserved at `order.timestamp`,
/// times out.
pub(crate) fn authorize_deadline(order: &crate::records::Order) -> u64 {
    order.timestamp.saturating_add(ORDER_AUTHORIZE_TIMEOUT_NS)
}

/// The post or void `id` of an order's authorization, sent to the buyer's shard.
fn resolution_leg(
    order: &crate::records::Order,
    id: TransferId,
    flags: u16,
    span: OrderSpan,
) -> ShardLeg {
    let mut leg =
        void_of_authorization(order.id, order.transfer_id, order.ledger, span.buyer_shard);
    leg.transfer.id = id;
    leg.transfer.flags = flags;
    leg
}

/// The void of `order_id`'s authorization `authorization` (id = the authorization's own),
/// on the buyer's shard.
fn void_of_authorization(
    order_id: OrderId,
    authorization: TransferId,
    ledger: u32,
    buyer_shard: u32,
) -> ShardLeg {
    ShardLeg {
        transfer: Transfer {
            id: authorization,
            pending_id: authorization,
            flags: transfer_flags::VOID_PENDING,
            user_data: order_id.0,
            ..Transfer::default()
        },
        source_shard: buyer_shard,
        destination_shard: buyer_shard,
        credit_account_ledger: ledger,
        reserved: [0; 4],
    }
}
