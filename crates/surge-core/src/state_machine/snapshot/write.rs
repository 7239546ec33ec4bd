//! Writing a snapshot's bytes: little-endian fields, sections (a count, then the items in
//! key order) and the [`Emitter`] that gathers small writes into pieces for a checkpoint
//! written as it is encoded.

use super::super::table::TableEntry;
use super::super::{
    BuyerUnits, DispatchEntry, OrderEntry, PendingState, StoredReservation, TransferSlot,
};
use crate::ids::{DispatchId, TransferId};

pub(super) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(super) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(super) fn put_u128(out: &mut Vec<u8>, value: u128) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Bytes [`SnapshotParts::encode_with`] gathers before handing them on.
pub(super) const EMIT_PIECE_BYTES: usize = 64 * 1024;

/// Gathers small writes into pieces for an `emit` callback.
pub(super) struct Emitter<F> {
    pub(super) piece: Vec<u8>,
    pub(super) emit: F,
    /// Bytes handed to `emit` so far.
    pub(super) emitted: usize,
}

impl<E, F: FnMut(&[u8]) -> Result<(), E>> Emitter<F> {
    /// Hands on the piece gathered so far.
    pub(super) fn flush(&mut self) -> Result<(), E> {
        if !self.piece.is_empty() {
            (self.emit)(&self.piece)?;
            self.emitted += self.piece.len();
            self.piece.clear();
        }
        Ok(())
    }

    /// `bytes` next: gathered if small, else handed on as they are.
    pub(super) fn bytes(&mut self, bytes: &[u8]) -> Result<(), E> {
        if self.piece.len() + bytes.len() <= EMIT_PIECE_BYTES {
            self.piece.extend_from_slice(bytes);
            return Ok(());
        }
        self.flush()?;
        (self.emit)(bytes)?;
        self.emitted += bytes.len();
        Ok(())
    }

    /// A section: its count, then each item as `put` writes it.
    pub(super) fn section<T>(
        &mut self,
        items: impl IntoIterator<Item = T, IntoIter: ExactSizeIterator>,
        mut put: impl FnMut(&mut Vec<u8>, &T),
    ) -> Result<(), E> {
        let items = items.into_iter();
        put_u64(&mut self.piece, items.len() as u64);
        for item in items {
            put(&mut self.piece, &item);
            if self.piece.len() >= EMIT_PIECE_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }
}

pub(super) fn put_section<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T, IntoIter: ExactSizeIterator>,
    mut put: impl FnMut(&mut Vec<u8>, &T),
) {
    let items = items.into_iter();
    put_u64(out, items.len() as u64);
    for item in items {
        put(out, &item);
    }
}

/// Table entries in key order.
pub(super) fn sorted_by_key<'a, E: TableEntry + 'a>(entries: impl Iterator<Item = &'a E>) -> Vec<E>
where
    E::Key: Ord,
{
    let mut entries: Vec<E> = entries.copied().collect();
    entries.sort_unstable_by_key(|entry| entry.key());
    entries
}

/// Map entries in key order.
pub(super) fn sorted_pairs<'a, K: Ord + Copy + 'a, V: Copy + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
) -> Vec<(K, V)> {
    let mut entries: Vec<(K, V)> = entries.map(|(key, value)| (*key, *value)).collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    entries
}

pub(super) fn put_slot(out: &mut Vec<u8>, slot: &TransferSlot) {
    put_u128(out, slot.id.0);
    put_u64(out, slot.index);
    put_u64(out, slot.fingerprint);
}

pub(super) fn put_pending(out: &mut Vec<u8>, id: &TransferId, state: &PendingState) {
    put_u128(out, id.0);
    put_u64(out, state.expires_at);
    put_u128(out, state.order_id.0);
    out.push(state.status as u8);
}

pub(super) fn put_reservation(out: &mut Vec<u8>, stored: &StoredReservation) {
    out.extend_from_slice(bytemuck::bytes_of(&stored.reservation));
    put_u64(out, stored.fingerprint);
    put_u32(out, stored.failure);
}

pub(super) fn put_buyer_units(out: &mut Vec<u8>, held: &BuyerUnits) {
    let (sku_id, buyer_id) = held.key();
    put_u64(out, sku_id.0);
    put_u128(out, buyer_id.0);
    put_u64(out, held.units);
}

pub(super) fn put_order(out: &mut Vec<u8>, entry: &OrderEntry) {
    out.extend_from_slice(bytemuck::bytes_of(&entry.order));
    put_u64(out, entry.fingerprint);
    put_u64(out, entry.expires_at);
    put_u128(out, entry.payment_transfer_id.0);
    put_u128(out, entry.closing_transfer_id.0);
}

pub(super) fn put_dispatch(out: &mut Vec<u8>, id: &DispatchId, entry: &DispatchEntry) {
    put_u128(out, id.0);
    put_u128(out, entry.order_id.0);
    put_u64(out, entry.sequence);
    put_u64(out, entry.created_at);
    put_u64(out, entry.redeliver_at);
    put_u32(out, entry.attempts);
    out.push(entry.status as u8);
}
