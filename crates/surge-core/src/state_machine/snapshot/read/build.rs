//! Building the state machine from a decoded snapshot: tables sized from the config or
//! the counts, entries inserted, and the derived state (expiry heaps, the order saga's
//! authorizations and deadlines) rebuilt.

use super::super::*;
use super::Decoded;

impl Decoded {
    /// The state machine, tables sized from the config or the counts, heaps rebuilt.
    pub(crate) fn build(self) -> StateMachine {
        let orders_count = [
            self.pendings.len(),
            self.reservations.len(),
            self.buyer_units.len(),
            self.orders.len(),
            self.dispatches.len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let config = self.config;
        let sizing = Config {
            accounts_capacity: config.accounts_capacity.max(self.accounts.len()),
            transfers_capacity: config
                .transfers_capacity
                .max(self.transfer_slots.len())
                .max(self.transfer_records.len()),
            orders_capacity: config.orders_capacity.max(orders_count),
            ..config
        };
        let mut sm = StateMachine::new(sizing);
        sm.config = config;
        sm.timestamp_last = self.timestamp_last;
        sm.dispatch_sequence_next = self.dispatch_sequence_next;
        sm.transfers_digest = self.transfers_digest;
        sm.transfer_records_base = self.transfer_records_base;
        sm.transfers_evicted = self.transfers_evicted;
        sm.transfers_evicted_digest = self.transfers_evicted_digest;
        sm.transfer_records_kept = self.transfer_records_kept.into_iter().collect();
        sm.evicted_filter = EvictedFilter {
            layers: self.filter_layers,
        };
        sm.skus = Journaled::new(Table::with_capacity(
            self.skus.len().max(SMALL_MAPS_CAPACITY_MIN),
        ));
        // Keys were checked unique and non-zero, so every insert adds an entry.
        for account in self.accounts {
            assert!(sm.accounts.map.insert(account).is_none());
        }
        sm.transfer_records
            .extend(self.transfer_records.iter().copied());
        for slot in self.transfer_slots {
            assert!(sm.transfers.map.insert(slot).is_none());
        }
        for (id, state) in self.pendings {
            let live = state.status == PendingStatus::Pending && state.expires_at != 0;
            if live && state.order_id.is_zero() {
                sm.pending_expiry.push(Reverse((state.expires_at, id)));
            }
            assert!(sm.pendings.map.insert(id, state).is_none());
        }
        for sku in self.skus {
            assert!(sm.skus.map.insert(sku).is_none());
        }
        for stored in self.reservations {
            let reserved = ReservationStatus::Reserved as u16;
            if stored.failure == 0 && stored.reservation.status == reserved {
                let (order_id, sku_id) = stored.key();
                let due = stored.expires_at();
                sm.reservation_expiry.push(Reverse((due, order_id, sku_id)));
            }
            assert!(sm.reservations.map.insert(stored).is_none());
        }
        for held in self.buyer_units {
            assert!(sm.buyer_units.map.insert(held).is_none());
        }
        for entry in &self.orders {
            if entry.order.status == OrderStatus::Reserved as u16 {
                sm.order_expiry
                    .push(Reverse((entry.expires_at, entry.order.id)));
            }
            sm.orders.restore(entry);
        }
        for (id, code) in self.orders_failed {
            sm.orders.record_failure(id, code);
        }
        for (id, entry) in self.dispatches {
            if entry.status == DispatchStatus::Pending {
                sm.dispatch_redelivery
                    .push(Reverse((entry.redeliver_at, id)));
            }
            sm.orders.restore_dispatch(&entry);
        }
        for (sequence, id) in self.dispatch_feed {
            assert!(sm.dispatch_feed.map.insert(sequence, id).is_none());
        }
        sm.cross_shard.outbox = self
            .shard_outbox
            .into_iter()
            .map(|leg| (leg.transfer.id, leg))
            .collect();
        sm.cross_shard.compensated = self.compensated.into_iter().collect();
        sm.cross_shard.pendings = self
            .shard_pendings
            .into_iter()
            .map(|leg| (leg.transfer.id, leg))
            .collect();
        let mut deadlines = Vec::new();
        for (id, span) in &self.order_spans {
            let order = sm
                .orders
                .get(*id)
                .expect("a span's order is checked placed")
                .order;
            sm.order_saga.authorizations.insert(order.transfer_id, *id);
            let authorizing =
                span.in_flight == order.transfer_id && order.status == OrderStatus::Reserved as u16;
            if authorizing {
                deadlines.push((authorize_deadline(&order), *id));
            }
        }
        deadlines.sort_unstable();
        sm.order_saga.authorize_deadlines = deadlines.into();
        sm.order_saga.spans = self.order_spans.into_iter().collect();
        sm.order_saga.outbox = self
            .order_outbox
            .into_iter()
            .map(|message| (message.leg.transfer.id, message))
            .collect();
        for sent in self.unit_outbox {
            if !sent.key.is_zero() {
                *sm.order_saga.unit_waiting.entry(sent.key).or_insert(0) += 1;
            }
            let slot = (sent.step.order.id, sent.step.target_shard);
            sm.order_saga.unit_outbox.insert(slot, sent);
        }
        sm.order_saga.unit_holds = self.unit_holds.into_iter().collect();
        sm
    }
}
