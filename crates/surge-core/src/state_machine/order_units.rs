//! Orders whose SKU lines live on several shards. The order lives on its first line's
//! shard (the *order's shard*), which reserves the lines living there when the order is
//! placed; every other shard holding some of its lines keeps a **unit hold** for the
//! order: units owned by the order, with no expiry of their own (the order's shard
//! decides when they are sold or released), which client reservations never reach. The
//! order's shard drives them with [`UnitStep`]s from its **unit outbox**, one per (order,
//! target shard) at a time, each settled by a [`UnitOutcome`] logged back on it:
//!
//! - **Placing**: the order's shard checks its own lines when the order is placed; then
//!   the other shards reserve their lines one at a time, in the order of their first line
//!   (the per-buyer limits apply there); once all hold their units the authorization is
//!   sent (`order_saga`). A failure (sold out, limit reached, no such SKU) fails the order
//!   with that code, and the shards already holding units release them. An order with one
//!   failing line gets that line's code, as on one shard; with several failing lines on
//!   different shards it gets the code of the first shard asked (the order's own first),
//!   not necessarily the first failing line's. The authorization timeout covers the
//!   whole placement: a reservation in flight when it passes is marked timed out, and
//!   releases its units if it comes back successful.
//! - **Pay** sells the units everywhere, **cancel** and **expiry** release them, a
//!   **refund with restock** restocks them, each after the step's own outcome on the
//!   order's shard. These cannot fail (the target holds the units). The client's answer to
//!   a place, pay, cancel or refund waits until every unit step it caused is back, and the
//!   order takes no other action meanwhile (`order_in_flight`); an expiry's releases are
//!   waited for by nobody.
//!
//! A target dedupes a step by the hold's state: a repeat answers `exists` (or, for a
//! reservation that failed, its failure) and changes nothing. Every step stays in the unit
//! outbox until its outcome is logged, so a crash anywhere delivers it again.

use super::journal::sorted;
use super::orders::{order_fingerprint, validate_order};
use super::{Outcome, StateMachine};
use crate::ids::{OrderId, TransferId};
use crate::records::{
    order_message_flags, unit_step_kind as kind, Order, OrderLine, UnitOutcome, UnitStep,
    ORDER_LINES_MAX,
};
use crate::result::ResultCode;
use crate::shard::{shard_of, SHARDS_MAX};

/// Where a unit hold stands. The numbers are stable (they are in snapshots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UnitHoldStatus {
    /// The units are reserved for the order.
    Held = 1,
    /// The order was paid: the units are sold.
    Sold = 2,
    /// The order failed, was cancelled or expired: the units are available again.
    Released = 3,
    /// The order was refunded with restock: the units are available again.
    Restocked = 4,
    /// The reservation failed; nothing is held (the failure is kept for redeliveries).
    Failed = 5,
}

impl UnitHoldStatus {
    pub(crate) fn from_u8(value: u8) -> Option<UnitHoldStatus> {
        use UnitHoldStatus as S;
        [S::Held, S::Sold, S::Released, S::Restocked, S::Failed]
            .into_iter()
            .find(|status| *status as u8 == value)
    }
}

/// Units a shard holds for an order of another shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UnitHold {
    /// The order's fingerprint: every step of one order carries the same order.
    pub(crate) fingerprint: u64,
    pub(crate) status: UnitHoldStatus,
    /// Why the reservation failed (`Failed` only; else `Ok`).
    pub(crate) failure: ResultCode,
}

/// A unit step in the order's shard's unit outbox, and the client key whose answer waits
/// for it (zero: nobody waits, an expiry's releases).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UnitSent {
    pub(crate) step: UnitStep,
    pub(crate) key: TransferId,
}

fn line_shard(line: &OrderLine, shard_count: u32) -> u32 {
    shard_of(u128::from(line.sku_id.0), shard_count)
}

fn used_lines(order: &Order) -> &[OrderLine] {
    &order.lines[..usize::from(order.line_count).min(ORDER_LINES_MAX)]
}

/// The order's own shard: its first line's (`None` for an order without lines).
fn home_shard(order: &Order, shard_count: u32) -> Option<u32> {
    used_lines(order)
        .first()
        .map(|line| line_shard(line, shard_count))
}

/// `order` with only its lines living on `shard` (`None`: the order's own shard); the
/// whole order if `shard_count` is zero (every line lives on the order's shard).
pub(crate) fn lines_on(order: &Order, shard_count: u32, shard: Option<u32>) -> Order {
    if shard_count == 0 {
        return *order;
    }
    let Some(home) = home_shard(order, shard_count) else {
        return *order;
    };
    let shard = shard.unwrap_or(home);
    let mut part = Order {
        lines: [OrderLine::default(); ORDER_LINES_MAX],
        line_count: 0,
        ..*order
    };
    for line in used_lines(order) {
        if line_shard(line, shard_count) == shard {
            part.lines[usize::from(part.line_count)] = *line;
            part.line_count += 1;
        }
    }
    part
}

/// The shards other than the order's own that hold some of its lines, in the order of
/// their first line (none if `shard_count` is zero).
pub(crate) fn remote_shards(order: &Order, shard_count: u32) -> Vec<u32> {
    let mut shards = Vec::new();
    if shard_count == 0 {
        return shards;
    }
    let Some(home) = home_shard(order, shard_count) else {
        return shards;
    };
    for line in used_lines(order) {
        let shard = line_shard(line, shard_count);
        if shard != home && !shards.contains(&shard) {
            shards.push(shard);
        }
    }
    shards
}

impl StateMachine {
    /// The order's lines living on this shard, if its lines span shards (`None`: every
    /// line lives here).
    pub(crate) fn local_lines(&self, order: &Order) -> Option<Order> {
        let span = self.order_span(order.id)?;
        (span.shard_count != 0).then(|| lines_on(order, span.shard_count, None))
    }

    /// Puts a unit step for `order` on `target` in the unit outbox.
    pub(crate) fn send_unit_step(
        &mut self,
        order: &Order,
        shard_count: u32,
        target: u32,
        step_kind: u32,
        key: TransferId,
    ) {
        let client_order = Order {
            timestamp: 0,
            status: 0,
            ..*order
        };
        let sent = UnitSent {
            step: UnitStep {
                order: client_order,
                shard_count,
                target_shard: target,
                kind: step_kind,
                flags: 0,
            },
            key,
        };
        let previous = self.order_saga.unit_outbox.insert((order.id, target), sent);
        assert!(
            previous.is_none(),
            "one unit step per order and shard at a time"
        );
        if !key.is_zero() {
            *self.order_saga.unit_waiting.entry(key).or_insert(0) += 1;
        }
        self.order_saga.released_units.push(sent);
    }

    /// Puts a unit step of `step_kind` for each of `targets` in the unit outbox.
    pub(crate) fn send_unit_steps(
        &mut self,
        order: &Order,
        shard_count: u32,
        targets: &[u32],
        step_kind: u32,
        key: TransferId,
    ) {
        for target in targets {
            self.send_unit_step(order, shard_count, *target, step_kind, key);
        }
    }

    /// After an action's outcome: sends `step_kind` to every other shard holding the
    /// order's lines, the action (`key`) staying in flight until they are all back.
    pub(crate) fn send_order_units(&mut self, order: &Order, step_kind: u32, key: TransferId) {
        let span = self.order_span(order.id).expect("an order spanning shards");
        let targets = remote_shards(order, span.shard_count);
        if targets.is_empty() {
            return;
        }
        self.send_unit_steps(order, span.shard_count, &targets, step_kind, key);
        self.order_saga
            .spans
            .get_mut(&order.id)
            .expect("the span")
            .in_flight = key;
    }

    /// A unit step on a shard holding some of an order's lines (see the module
    /// documentation).
    pub(crate) fn order_units(&mut self, step: &UnitStep, _timestamp: u64) -> Outcome {
        use UnitHoldStatus as S;
        let order = &step.order;
        if step.flags & !order_message_flags::TIMED_OUT != 0 {
            return Outcome::Rejected(ResultCode::ReservedFlag);
        }
        if step.shard_count < 2
            || step.shard_count > SHARDS_MAX
            || step.target_shard >= step.shard_count
            || !(kind::RESERVE..=kind::RESTOCK).contains(&step.kind)
        {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        }
        if let Some(code) = validate_order(order) {
            return Outcome::Rejected(code);
        }
        let here = lines_on(order, step.shard_count, Some(step.target_shard));
        if here.line_count == 0 || home_shard(order, step.shard_count) == Some(step.target_shard) {
            return Outcome::Rejected(ResultCode::OrderLinesInvalid);
        }
        let fingerprint = order_fingerprint(order);
        let hold = self.order_saga.unit_holds.get(&order.id).copied();
        if hold.is_some_and(|hold| hold.fingerprint != fingerprint) {
            return Outcome::Existing(ResultCode::ExistsWithDifferentFields);
        }
        let (from, to) = match step.kind {
            kind::RESERVE => {
                return match hold {
                    Some(UnitHold {
                        status: S::Failed,
                        failure,
                        ..
                    }) => Outcome::Existing(failure),
                    Some(_) => Outcome::Existing(ResultCode::Exists),
                    None => {
                        let first_plan = match self.order_lines_plan(&here) {
                            Ok(plan) => plan,
                            Err(outcome) => return outcome,
                        };
                        self.take_order_lines(&here, first_plan);
                        let held = UnitHold {
                            fingerprint,
                            status: S::Held,
                            failure: ResultCode::Ok,
                        };
                        self.order_saga.unit_holds.insert(order.id, held);
                        Outcome::Applied
                    }
                };
            }
            kind::SELL => (S::Held, S::Sold),
            kind::RELEASE => (S::Held, S::Released),
            _ => (S::Sold, S::Restocked),
        };
        let Some(mut hold) = hold else {
            return Outcome::Rejected(ResultCode::OrderNotFound);
        };
        if hold.status == to {
            return Outcome::Existing(ResultCode::Exists);
        }
        if hold.status != from {
            return Outcome::Existing(ResultCode::ExistsWithDifferentFields);
        }
        for line in used_lines(&here) {
            let quantity = u64::from(line.quantity);
            match step.kind {
                kind::SELL => self.sell_units(line.sku_id, quantity),
                kind::RELEASE => self.release_units(line.sku_id, order.buyer_id, quantity),
                _ => self.restock_units(line.sku_id, order.buyer_id, quantity),
            }
        }
        hold.status = to;
        self.order_saga.unit_holds.insert(order.id, hold);
        Outcome::Applied
    }

    /// Remembers a failed reservation of units (a redelivery answers the same failure).
    pub(crate) fn record_unit_failure(&mut self, step: &UnitStep, code: ResultCode) {
        if step.kind == kind::RESERVE {
            let failed = UnitHold {
                fingerprint: order_fingerprint(&step.order),
                status: UnitHoldStatus::Failed,
                failure: code,
            };
            self.order_saga.unit_holds.insert(step.order.id, failed);
        }
    }

    /// The outcome of a unit step, back on the order's shard (see the module
    /// documentation). A repeat, or an outcome of another kind, changes nothing.
    pub(crate) fn unit_confirm(&mut self, outcome: &UnitOutcome, _timestamp: u64) -> Outcome {
        if outcome.reserved != [0; 4] {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        }
        let Some(code) = ResultCode::from_u32(outcome.code) else {
            return Outcome::Rejected(ResultCode::ReservedFieldNotZero);
        };
        let slot = (outcome.order_id, outcome.target_shard);
        let sent = match self.order_saga.unit_outbox.get(&slot) {
            Some(sent) if sent.step.kind == outcome.kind => *sent,
            _ => return Outcome::Existing(ResultCode::Exists),
        };
        self.order_saga.unit_outbox.remove(&slot);
        let key = sent.key;
        let mut settled = false;
        if !key.is_zero() {
            let waiting = self
                .order_saga
                .unit_waiting
                .get_mut(&key)
                .expect("a sent step's key waits for it");
            *waiting -= 1;
            if *waiting == 0 {
                self.order_saga.unit_waiting.remove(&key);
                settled = true;
            }
        }
        let step = sent.step;
        let timed_out = step.flags & order_message_flags::TIMED_OUT != 0;
        match step.kind {
            kind::RESERVE if timed_out => {
                // The order failed while the reservation travelled: units held go back.
                if code.is_success() {
                    let (count, target) = (step.shard_count, step.target_shard);
                    self.send_unit_step(&step.order, count, target, kind::RELEASE, key);
                }
            }
            kind::RESERVE => self.units_reserved(outcome.order_id, code),
            _ => {
                // A sell, release or restock (they cannot fail): the action they follow
                // is over once the last of them is back.
                let span = self.order_saga.spans.get_mut(&outcome.order_id);
                if let Some(span) = span.filter(|span| settled && span.in_flight == key) {
                    span.in_flight = TransferId::ZERO;
                }
            }
        }
        Outcome::Applied
    }

    /// A reservation of an order's lines on another shard came back (not timed out): the
    /// next shard is asked, or the authorization sent; a failure fails the order.
    fn units_reserved(&mut self, order_id: OrderId, code: ResultCode) {
        let index = self
            .orders
            .locate(order_id)
            .expect("an order reserving its lines");
        let stored = *self.orders.at(index);
        let mut span = self
            .order_span(order_id)
            .expect("an order reserving its lines spans shards");
        let others = remote_shards(&stored.order, span.shard_count);
        let key = stored.order.transfer_id;
        if code.is_success() {
            span.units_reserved += 1;
            *self.order_saga.spans.get_mut(&order_id).expect("the span") = span;
            match others.get(span.units_reserved as usize) {
                Some(&next) => {
                    self.send_unit_step(&stored.order, span.shard_count, next, kind::RESERVE, key)
                }
                None => self.send_authorization(&stored.order, span),
            }
            return;
        }
        // Its lines there failed: the order fails with their code, as placing it on one
        // shard would, and the shards already holding units release them.
        self.release_order_lines(&stored);
        self.order_saga.spans.remove(&order_id);
        self.order_saga.authorizations.remove(&key);
        self.orders.fail_placed(order_id, code);
        let reserved = &others[..span.units_reserved as usize];
        self.send_unit_steps(
            &stored.order,
            span.shard_count,
            reserved,
            kind::RELEASE,
            key,
        );
    }

    /// Unit steps that joined the unit outbox since the last call, each with the client
    /// key waiting for it (the engine delivers them).
    pub fn take_released_unit_steps(&mut self) -> Vec<(UnitStep, TransferId)> {
        std::mem::take(&mut self.order_saga.released_units)
            .into_iter()
            .map(|sent| (sent.step, sent.key))
            .collect()
    }

    /// Every unit step in this shard's unit outbox, with the client key waiting for it
    /// (what the engine delivers again after a restart).
    pub fn unit_outbox(&self) -> Vec<(UnitStep, TransferId)> {
        self.order_saga
            .unit_outbox
            .values()
            .map(|sent| (sent.step, sent.key))
            .collect()
    }

    /// Where the units this shard holds for orders of other shards stand, by order id
    /// (for audits: `surge drive --verify` checks them against the orders).
    pub fn unit_holds_sorted(&self) -> Vec<(OrderId, UnitHoldStatus)> {
        sorted(self.order_saga.unit_holds.iter())
            .into_iter()
            .map(|(id, hold)| (id, hold.status))
            .collect()
    }
}
