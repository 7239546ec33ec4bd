//! The state hash: a deterministic 128-bit digest of everything the state machine holds,
//! walked in key order (never in hash-map order), so two replays of one log compare equal
//! exactly when their states are identical.

use xxhash_rust::xxh3::Xxh3;

use super::journal::sorted;
use super::table::TableEntry;
use super::{BuyerUnits, PendingStatus, StateMachine, StoredReservation};

impl StateMachine {
    /// Digest of the whole state, including the log time. Walks every map: meant for
    /// replay checks and tests, not the hot path.
    pub fn state_hash(&self) -> u128 {
        let mut hasher = Xxh3::new();
        hasher.update(b"surge-state-v2");
        hasher.update(&self.timestamp_last.to_le_bytes());
        for account in self.accounts_sorted() {
            hasher.update(bytemuck::bytes_of(&account));
        }
        hasher.update(&self.transfers_digest.to_le_bytes());
        // Resident or not: eviction must not change the hash.
        let transfer_ids = self.transfers.map.len() as u64 + self.transfers_evicted;
        hasher.update(&transfer_ids.to_le_bytes());
        // Live holds only: a resolved one's final status is in the transfers digest, and
        // it may have left memory.
        let live = sorted(self.pendings.map.iter())
            .into_iter()
            .filter(|(_, state)| state.status == PendingStatus::Pending);
        for (id, state) in live {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(&state.expires_at.to_le_bytes());
            hasher.update(&state.order_id.0.to_le_bytes());
            hasher.update(&[state.status as u8]);
        }
        for sku in self.skus_sorted() {
            hasher.update(bytemuck::bytes_of(&sku));
        }
        let mut reservations: Vec<StoredReservation> =
            self.reservations.map.iter().copied().collect();
        reservations.sort_unstable_by_key(|stored| stored.key());
        for stored in &reservations {
            hasher.update(bytemuck::bytes_of(&stored.reservation));
            hasher.update(&stored.fingerprint.to_le_bytes());
            hasher.update(&stored.failure.to_le_bytes());
        }
        let mut buyer_units: Vec<BuyerUnits> = self.buyer_units.map.iter().copied().collect();
        buyer_units.sort_unstable_by_key(|held| held.key());
        for held in &buyer_units {
            hasher.update(&held.sku_id.0.to_le_bytes());
            hasher.update(&held.buyer_low.to_le_bytes());
            hasher.update(&held.buyer_high.to_le_bytes());
            hasher.update(&held.units.to_le_bytes());
        }
        for entry in self.orders.entries_sorted() {
            hasher.update(&entry.order.id.0.to_le_bytes());
            hasher.update(bytemuck::bytes_of(&entry.order));
            hasher.update(&entry.fingerprint.to_le_bytes());
            hasher.update(&entry.expires_at.to_le_bytes());
            hasher.update(&entry.payment_transfer_id.0.to_le_bytes());
            hasher.update(&entry.closing_transfer_id.0.to_le_bytes());
        }
        for (id, code) in self.orders.failures_sorted() {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(&code.as_u32().to_le_bytes());
        }
        for (id, entry) in self.orders.dispatches_sorted() {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(&entry.order_id.0.to_le_bytes());
            hasher.update(&entry.sequence.to_le_bytes());
            hasher.update(&entry.created_at.to_le_bytes());
            hasher.update(&entry.redeliver_at.to_le_bytes());
            hasher.update(&entry.attempts.to_le_bytes());
            hasher.update(&[entry.status as u8]);
        }
        for (sequence, id) in &self.dispatch_feed.map {
            hasher.update(&sequence.to_le_bytes());
            hasher.update(&id.0.to_le_bytes());
        }
        hasher.update(&self.dispatch_sequence_next.to_le_bytes());
        for leg in self.cross_shard.outbox.values() {
            hasher.update(bytemuck::bytes_of(leg));
        }
        for (id, compensated) in &self.cross_shard.compensated {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(&compensated.code.as_u32().to_le_bytes());
            hasher.update(bytemuck::bytes_of(&compensated.transfer));
        }
        for leg in self.cross_shard.pendings.values() {
            hasher.update(bytemuck::bytes_of(leg));
        }
        for (id, span) in &self.order_saga.spans_sorted() {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(&span.buyer_shard.to_le_bytes());
            hasher.update(&span.merchant_shard.to_le_bytes());
            hasher.update(&span.in_flight.0.to_le_bytes());
            hasher.update(&span.shard_count.to_le_bytes());
            hasher.update(&span.units_reserved.to_le_bytes());
            hasher.update(&span.merchant_ledger.to_le_bytes());
        }
        for message in self.order_saga.outbox.values() {
            hasher.update(bytemuck::bytes_of(message));
        }
        for sent in self.order_saga.unit_outbox.values() {
            hasher.update(bytemuck::bytes_of(&sent.step));
            hasher.update(&sent.key.0.to_le_bytes());
        }
        for (id, hold) in &sorted(self.order_saga.unit_holds.iter()) {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(&hold.fingerprint.to_le_bytes());
            hasher.update(&[hold.status as u8]);
            hasher.update(&hold.failure.as_u32().to_le_bytes());
        }
        hasher.digest128()
    }
}
