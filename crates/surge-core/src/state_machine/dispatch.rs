//! The logistics outbox. A dispatch request is created in the same command that makes an
//! order PAID, so one exists exactly for every order that was ever paid.
//!
//! Consumers read the feed from a cursor (a feed sequence number) with
//! [`StateMachine::dispatch_feed`], and acknowledge with the `AckDispatch` command. A request
//! not acknowledged within `dispatch_redelivery_ns` of log time is appended to the feed again
//! under a new sequence number, with the same stable id, so a consumer reading forward sees
//! it again and can dedupe by id.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use super::{reject, DispatchEntry, Outcome, StateMachine};
use crate::ids::{AccountId, DispatchId, OrderId};
use crate::records::{DispatchAck, Order, OrderLine, OrderStatus};
use crate::result::ResultCode;

/// Where a dispatch request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
#[serde(rename_all = "snake_case")]
pub enum DispatchStatus {
    /// In the feed, waiting for an acknowledgement.
    Pending = 1,
    /// Logistics took it; the order is DISPATCHED.
    Acknowledged = 2,
    /// The order was refunded before logistics took it: do not ship.
    Cancelled = 3,
}

/// A dispatch request as consumers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRequest {
    /// Stable id (equal to the order id): dedupe on it.
    pub id: DispatchId,
    /// Position in the feed; a redelivery gets a new, larger one.
    pub sequence: u64,
    /// The paid order.
    pub order_id: OrderId,
    /// The buyer.
    pub buyer_id: AccountId,
    /// The merchant.
    pub merchant_id: AccountId,
    /// What to ship.
    pub lines: Vec<OrderLine>,
    /// Log time at which the order was paid.
    pub created_at: u64,
    /// Deliveries so far, counting this one.
    pub attempts: u32,
    /// Where it stands.
    pub status: DispatchStatus,
}

impl StateMachine {
    /// Creates the dispatch request of the order at entry `index`, which just became PAID.
    pub(crate) fn create_dispatch(&mut self, index: usize, now: u64) {
        let sequence = self.take_dispatch_sequence();
        let redeliver_at = now.saturating_add(self.config.dispatch_redelivery_ns);
        let stored = self.orders.at_mut(index);
        assert!(stored.dispatch().is_none(), "an order is paid at most once");
        let order_id = stored.order.id;
        stored.set_dispatch(&DispatchEntry {
            order_id,
            sequence,
            created_at: now,
            redeliver_at,
            attempts: 1,
            status: DispatchStatus::Pending,
        });
        self.orders.count_dispatch(index);
        let id = DispatchId::from(order_id);
        self.dispatch_feed.insert(sequence, id);
        self.dispatch_redelivery.push(Reverse((redeliver_at, id)));
    }

    /// A refund before acknowledgement withdraws the request (of the order at entry
    /// `index`) from the feed.
    pub(crate) fn cancel_dispatch(&mut self, index: usize) {
        let entry = self
            .orders
            .at(index)
            .dispatch()
            .expect("a paid order has a dispatch request");
        if entry.status == DispatchStatus::Pending {
            self.dispatch_feed.remove(&entry.sequence);
            let cancelled = DispatchEntry {
                status: DispatchStatus::Cancelled,
                ..entry
            };
            self.orders.at_mut(index).set_dispatch(&cancelled);
        }
    }

    /// The entry index and request of dispatch request `id`, if there is one.
    fn dispatch_entry(&self, id: DispatchId) -> Option<(usize, DispatchEntry)> {
        let index = self.orders.locate(OrderId(id.0))?;
        let entry = self.orders.at(index).dispatch()?;
        Some((index, entry))
    }

    pub(crate) fn ack_dispatch(&mut self, ack: &DispatchAck, _timestamp: u64) -> Outcome {
        if ack.reserved != [0; 16] {
            reject!(ReservedFieldNotZero);
        }
        if ack.dispatch_id.is_zero() {
            reject!(IdMustNotBeZero);
        }
        let Some((index, entry)) = self.dispatch_entry(ack.dispatch_id) else {
            return Outcome::Failed(ResultCode::DispatchNotFound);
        };
        match entry.status {
            DispatchStatus::Pending => {}
            DispatchStatus::Acknowledged => return Outcome::Existing(ResultCode::Exists),
            DispatchStatus::Cancelled => return Outcome::Failed(ResultCode::DispatchCancelled),
        }
        self.dispatch_feed.remove(&entry.sequence);
        let stored = self.orders.at_mut(index);
        stored.set_dispatch(&DispatchEntry {
            status: DispatchStatus::Acknowledged,
            ..entry
        });
        assert_eq!(stored.order.status, OrderStatus::Paid as u16);
        stored.order.status = OrderStatus::Dispatched as u16;
        Outcome::Applied
    }

    /// Puts an unacknowledged request back in the feed (sweep only).
    pub(crate) fn redeliver_dispatch(&mut self, id: DispatchId, due: u64, now: u64) {
        let Some((index, entry)) = self.dispatch_entry(id) else {
            return; // Rolled back after the heap entry was pushed.
        };
        if entry.status != DispatchStatus::Pending || entry.redeliver_at != due {
            return;
        }
        let sequence = self.take_dispatch_sequence();
        let redeliver_at = now.saturating_add(self.config.dispatch_redelivery_ns);
        self.dispatch_feed.remove(&entry.sequence);
        self.dispatch_feed.insert(sequence, id);
        self.orders.at_mut(index).set_dispatch(&DispatchEntry {
            sequence,
            redeliver_at,
            attempts: entry.attempts + 1,
            ..entry
        });
        self.dispatch_redelivery.push(Reverse((redeliver_at, id)));
    }

    fn take_dispatch_sequence(&mut self) -> u64 {
        let sequence = self.dispatch_sequence_next;
        self.dispatch_sequence_next += 1;
        sequence
    }

    /// Up to `limit` unacknowledged requests with a feed sequence greater than `cursor`, in
    /// feed order. Pass the last sequence seen as the next cursor (0 to start).
    pub fn dispatch_feed(&self, cursor: u64, limit: usize) -> Vec<DispatchRequest> {
        self.dispatch_feed
            .map
            .range(cursor.saturating_add(1)..)
            .take(limit)
            .map(|(_, id)| self.dispatch(*id).expect("the feed names stored requests"))
            .collect()
    }

    /// One dispatch request by id.
    pub fn dispatch(&self, id: DispatchId) -> Option<DispatchRequest> {
        let (index, entry) = self.dispatch_entry(id)?;
        Some(request(id, &entry, &self.orders.at(index).order))
    }

    /// Every dispatch request, by id (for audits and tests).
    pub fn dispatches_sorted(&self) -> Vec<DispatchRequest> {
        self.orders
            .dispatches_sorted()
            .into_iter()
            .map(|(id, entry)| {
                let order = &self.orders.get(entry.order_id).expect("its order").order;
                request(id, &entry, order)
            })
            .collect()
    }
}

/// A request as consumers see it.
fn request(id: DispatchId, entry: &DispatchEntry, order: &Order) -> DispatchRequest {
    DispatchRequest {
        id,
        sequence: entry.sequence,
        order_id: entry.order_id,
        buyer_id: order.buyer_id,
        merchant_id: order.merchant_id,
        lines: order.lines[..usize::from(order.line_count)].to_vec(),
        created_at: entry.created_at,
        attempts: entry.attempts,
        status: entry.status,
    }
}
