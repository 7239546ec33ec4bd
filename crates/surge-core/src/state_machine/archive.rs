//! Bounded memory: finished transfers leave memory, and come back for one batch when a
//! command names them.
//!
//! A client transfer that can no longer change (single-phase, a post or void, a pending
//! transfer that was posted, voided or expired, or an id whose first attempt failed) is
//! only ever needed again to answer a command that reuses its id (`exists`, a mismatch, or
//! `id_already_failed`) or names it as `pending_id` (`already posted`, ...). What that takes
//! is an [`ArchivedTransfer`]: id, fingerprint or failure code, and final pending status.
//!
//! The cycle, driven by the engine between batches (never inside [`StateMachine::apply`],
//! which stays pure):
//!
//! 1. [`StateMachine::eviction_plan`] lists the finished transfers older than a sequence
//!    number, as archive entries.
//! 2. The engine stores them durably (in the history index), then calls
//!    [`StateMachine::evict`], which removes them and adds their ids to a filter with no
//!    false negatives.
//! 3. Before each batch, [`StateMachine::archive_lookups`] names the ids the batch refers to
//!    that are not resident but may have left (the filter says so); the engine looks them up
//!    and hands what it found to [`StateMachine::recall`] for that batch.
//!
//! Every result is then what it would be with everything in memory, and the state hash
//! does not see residency: the transfers digest keeps what left (`transfers_evicted_digest`
//! records the share), resolved pending transfers are covered by the digest of their final
//! status, and the count of transfer ids includes the evicted ones.
//!
//! Order transfers (authorizations, captures, refunds: codes from
//! `TRANSFER_CODE_SURGE_MIN` up) stay with their orders, which stay in memory, and so do
//! live pending transfers.

use serde::{Deserialize, Serialize};

use super::ledger::{resolution_digest, slot_digest};
use super::table::mix64;
use super::{Outcome, PendingStatus, StateMachine, TransferSlot};
use crate::batch::Batch;
use crate::ids::TransferId;
use crate::result::ResultCode;

/// Bytes of [`ArchivedTransfer::to_bytes`].
pub const ARCHIVED_TRANSFER_SIZE_BYTES: usize = 16 + 8 + 1;

/// How a finished transfer ended, as far as later commands can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchivedOutcome {
    /// It took effect.
    Committed {
        /// Fingerprint of the command that created it (decides `exists` vs a mismatch).
        fingerprint: u64,
        /// For a phase-one pending transfer: how it ended (never `Pending`).
        pending_status: Option<PendingStatus>,
    },
    /// Its first attempt failed with this code; the id stays failed.
    Failed(ResultCode),
}

/// What remains in the history index of a finished transfer that left memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedTransfer {
    /// The transfer id.
    pub id: TransferId,
    /// How it ended.
    pub outcome: ArchivedOutcome,
}

impl ArchivedTransfer {
    /// 25 bytes, little-endian: id (16), fingerprint or failure code (8), kind (1: 0
    /// committed, 1 failed, 2 posted, 3 voided, 4 expired).
    pub fn to_bytes(&self) -> [u8; ARCHIVED_TRANSFER_SIZE_BYTES] {
        let (word, kind) = match self.outcome {
            ArchivedOutcome::Committed {
                fingerprint,
                pending_status,
            } => (
                fingerprint,
                match pending_status {
                    None => 0,
                    Some(status) => status as u8,
                },
            ),
            ArchivedOutcome::Failed(code) => (u64::from(code.as_u32()), 1),
        };
        let mut bytes = [0; ARCHIVED_TRANSFER_SIZE_BYTES];
        bytes[..16].copy_from_slice(&self.id.0.to_le_bytes());
        bytes[16..24].copy_from_slice(&word.to_le_bytes());
        bytes[24] = kind;
        bytes
    }

    /// Reads [`ArchivedTransfer::to_bytes`]; `None` for anything it cannot have written.
    pub fn from_bytes(bytes: &[u8]) -> Option<ArchivedTransfer> {
        let bytes: &[u8; ARCHIVED_TRANSFER_SIZE_BYTES] = bytes.try_into().ok()?;
        let id = TransferId(u128::from_le_bytes(bytes[..16].try_into().ok()?));
        let word = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
        if id.is_zero() {
            return None;
        }
        let committed = |pending_status| ArchivedOutcome::Committed {
            fingerprint: word,
            pending_status,
        };
        let outcome = match bytes[24] {
            0 => committed(None),
            1 => {
                let code = ResultCode::from_u32(u32::try_from(word).ok()?)?;
                if code.is_success() {
                    return None;
                }
                ArchivedOutcome::Failed(code)
            }
            2 => committed(Some(PendingStatus::Posted)),
            3 => committed(Some(PendingStatus::Voided)),
            4 => committed(Some(PendingStatus::Expired)),
            _ => return None,
        };
        Some(ArchivedTransfer { id, outcome })
    }

    /// The answer to a command reusing this id with `fingerprint`.
    pub(crate) fn existing(&self, fingerprint: u64) -> Outcome {
        Outcome::Existing(match self.outcome {
            ArchivedOutcome::Failed(_) => ResultCode::IdAlreadyFailed,
            ArchivedOutcome::Committed {
                fingerprint: stored,
                ..
            } if stored == fingerprint => ResultCode::Exists,
            ArchivedOutcome::Committed { .. } => ResultCode::ExistsWithDifferentFields,
        })
    }

    /// Why a post or void naming this transfer as `pending_id` fails (it is finished).
    pub(crate) fn resolve_failure(&self) -> ResultCode {
        match self.outcome {
            ArchivedOutcome::Failed(_) => ResultCode::PendingTransferNotFound,
            ArchivedOutcome::Committed {
                pending_status: None,
                ..
            } => ResultCode::PendingTransferNotPending,
            ArchivedOutcome::Committed {
                pending_status: Some(status),
                ..
            } => match status {
                PendingStatus::Posted => ResultCode::PendingTransferAlreadyPosted,
                PendingStatus::Voided => ResultCode::PendingTransferAlreadyVoided,
                PendingStatus::Expired => ResultCode::PendingTransferExpired,
                PendingStatus::Pending => unreachable!("a live pending transfer never leaves"),
            },
        }
    }
}

/// One eviction: what leaves memory. Built by [`StateMachine::eviction_plan`] (or in
/// slices with [`StateMachine::eviction_plan_start`] and
/// [`StateMachine::eviction_plan_continue`]); store `entries` durably, then carry it out
/// with [`StateMachine::evict`] (or in slices with [`StateMachine::evict_continue`]).
/// Batches may be applied between any of these calls: what a plan lists is finished and
/// cannot change, and transfers committed meanwhile are past its sequence bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionPlan {
    /// The archive entries of the transfers that leave (in table order, not sorted).
    pub entries: Vec<ArchivedTransfer>,
    /// Each entry's share of the transfers digest (its slot and resolved status).
    digests: Vec<u128>,
    sequence_below: u64,
    /// Sequence numbers in the record window, below `sequence_below`, whose transfers
    /// stay resident (live pending transfers, order transfers).
    kept: Vec<u64>,
    /// Planning: the next table slot to look at, and the table size it started with (a
    /// table that grew since rehashed everything: planning starts over).
    scan_next: usize,
    scan_slots: usize,
    planned: bool,
    /// Evicting: entries removed so far (from the front of `entries`).
    evicted: usize,
}

impl EvictionPlan {
    /// Whether planning has walked the whole table.
    pub fn is_planned(&self) -> bool {
        self.planned
    }
}

impl StateMachine {
    /// Plans, in one go, the eviction of every resident transfer that may leave memory and
    /// has a sequence number below `sequence_below` (see
    /// [`StateMachine::transfer_sequence`]): finished client transfers and failed ids.
    /// Read-only. Walks the whole id table.
    pub fn eviction_plan(&self, sequence_below: u64) -> EvictionPlan {
        let mut plan = self.eviction_plan_start(sequence_below);
        while !self.eviction_plan_continue(&mut plan, usize::MAX) {}
        plan
    }

    /// An empty plan for [`StateMachine::eviction_plan_continue`].
    pub fn eviction_plan_start(&self, sequence_below: u64) -> EvictionPlan {
        EvictionPlan {
            entries: Vec::new(),
            digests: Vec::new(),
            sequence_below,
            kept: Vec::new(),
            scan_next: 0,
            scan_slots: self.transfers.map.slots_len(),
            planned: false,
            evicted: 0,
        }
    }

    /// Walks up to `slots_max` more slots of the id table into `plan`; true once the whole
    /// table is walked. Read-only, so planning can be spread over many batches.
    pub fn eviction_plan_continue(&self, plan: &mut EvictionPlan, slots_max: usize) -> bool {
        if plan.planned {
            return true;
        }
        let slots = self.transfers.map.slots_len();
        if slots != plan.scan_slots {
            // The table grew and rehashed: slots already walked may have moved.
            *plan = self.eviction_plan_start(plan.sequence_below);
        }
        let base = self.transfer_records_base;
        let end = plan.scan_next.saturating_add(slots_max).min(slots);
        for slot in self.transfers.map.occupied(plan.scan_next..end) {
            let sequence = slot.sequence();
            if sequence >= plan.sequence_below {
                continue;
            }
            match self.archivable(slot) {
                Some((entry, digest)) => {
                    plan.entries.push(entry);
                    plan.digests.push(digest);
                }
                None if sequence >= base => plan.kept.push(sequence),
                None => {} // Already kept outside the window.
            }
        }
        plan.scan_next = end;
        plan.planned = end == slots;
        plan.planned
    }

    /// The archive entry of a resident slot and its share of the transfers digest, if the
    /// transfer may leave memory.
    fn archivable(&self, slot: &TransferSlot) -> Option<(ArchivedTransfer, u128)> {
        if let Some(code) = slot.failure() {
            let entry = ArchivedTransfer {
                id: slot.id,
                outcome: ArchivedOutcome::Failed(code),
            };
            return Some((entry, slot_digest(*slot, 0)));
        }
        if slot.is_order_transfer() {
            return None; // Stays with its order.
        }
        let pending_status = if slot.is_pending() {
            match self.pendings.get(&slot.id) {
                Some(state) if state.status != PendingStatus::Pending => Some(state.status),
                _ => return None, // Live: it may still be posted, voided or expire.
            }
        } else {
            None
        };
        let timestamp = self.record_at(slot.sequence()).timestamp;
        let mut digest = slot_digest(*slot, timestamp);
        if let Some(status) = pending_status {
            digest = digest.wrapping_add(resolution_digest(slot.id, status));
        }
        let entry = ArchivedTransfer {
            id: slot.id,
            outcome: ArchivedOutcome::Committed {
                fingerprint: slot.fingerprint,
                pending_status,
            },
        };
        Some((entry, digest))
    }

    /// Removes everything a planned `plan` lists from memory, in one go. The caller must
    /// have stored the plan's entries durably first: from now on they are the only answer
    /// to a command reusing those ids.
    pub fn evict(&mut self, mut plan: EvictionPlan) {
        while !self.evict_continue(&mut plan, usize::MAX) {}
    }

    /// Removes up to `entries_max` more of a planned `plan`'s transfers from memory (see
    /// [`StateMachine::evict`]); true once all are gone and the record window is moved
    /// past them. The state hash is the same after every slice. Call between batches; no
    /// other plan may be carried out meanwhile.
    pub fn evict_continue(&mut self, plan: &mut EvictionPlan, entries_max: usize) -> bool {
        assert!(plan.planned, "plan the whole table first");
        assert!(self.recalled.is_empty(), "evict runs between batches");
        assert!(
            plan.sequence_below <= self.transfer_sequence_next(),
            "a plan of this state machine"
        );
        assert_eq!(plan.entries.len(), plan.digests.len(), "the plan's entries");
        let base = self.transfer_records_base;
        let end = plan
            .evicted
            .saturating_add(entries_max)
            .min(plan.entries.len());
        for (entry, digest) in plan.entries[plan.evicted..end]
            .iter()
            .zip(&plan.digests[plan.evicted..end])
        {
            let slot = self
                .transfers
                .map
                .remove(&entry.id.0)
                .expect("a planned transfer is resident");
            debug_assert_eq!(self.archivable(&slot).map(|(found, _)| found), Some(*entry));
            assert!(slot.sequence() < plan.sequence_below);
            if let ArchivedOutcome::Committed {
                pending_status: Some(_),
                ..
            } = entry.outcome
            {
                self.pendings.map.remove(&entry.id);
            }
            if slot.failure().is_none() && slot.sequence() < base {
                self.transfer_records_kept.remove(&slot.sequence());
            }
            self.evicted_filter.insert(entry.id);
            self.transfers_evicted_digest = self.transfers_evicted_digest.wrapping_add(*digest);
            self.transfers_evicted += 1;
        }
        plan.evicted = end;
        if end < plan.entries.len() {
            return false;
        }
        // Records below the new base leave the window; the kept ones move aside.
        let base_next = plan.sequence_below.max(base);
        for &sequence in &plan.kept {
            if sequence >= base {
                let record = self.transfer_records[(sequence - base) as usize];
                self.transfer_records_kept.insert(sequence, record);
            }
        }
        self.snapshot_before_records_leave(base_next);
        self.transfer_records.drain(..(base_next - base) as usize);
        self.transfer_records_base = base_next;
        true
    }

    /// The sequence number the next committed transfer will get: pass an earlier value to
    /// [`StateMachine::eviction_plan`] to evict what was committed before it.
    pub fn transfer_sequence(&self) -> u64 {
        self.transfer_sequence_next()
    }

    /// The transfer ids `batch` refers to (ids it creates, `pending_id`s, order actions'
    /// transfer ids, order authorizations) that are not resident but may have left memory.
    /// Look them up in the history index and pass what is found to
    /// [`StateMachine::recall`] before applying the batch. Empty (and cheap) until
    /// something was evicted; a false positive of the filter is simply not found.
    pub fn archive_lookups(&self, batch: Batch<'_>) -> Vec<TransferId> {
        let mut ids = Vec::new();
        if self.transfers_evicted == 0 {
            return ids;
        }
        let mut consider = |id: TransferId| {
            if !id.is_zero()
                && self.evicted_filter.may_contain(id)
                && self.transfers.map.get(&id.0).is_none()
            {
                ids.push(id);
            }
        };
        match batch {
            Batch::CreateTransfers(transfers) => {
                for transfer in transfers {
                    consider(transfer.id);
                    consider(transfer.pending_id);
                }
            }
            Batch::PlaceOrders(orders) => orders.iter().for_each(|order| {
                consider(order.transfer_id);
            }),
            Batch::PlaceOrdersCompact(orders) => orders.iter().for_each(|order| {
                consider(order.transfer_id);
            }),
            Batch::PayOrders(actions)
            | Batch::CancelOrders(actions)
            | Batch::RefundOrders(actions) => actions.iter().for_each(|action| {
                consider(action.transfer_id);
            }),
            Batch::ShardDebit(legs) | Batch::ShardCredit(legs) => legs.iter().for_each(|leg| {
                consider(leg.transfer.id);
            }),
            Batch::ReserveOrders(orders) => orders.iter().for_each(|spanning| {
                consider(spanning.order.transfer_id);
            }),
            Batch::OrderLegs(legs) => legs.iter().for_each(|leg| consider(leg.transfer.id)),
            Batch::OrderResolve(transfers) => {
                for transfer in transfers {
                    consider(transfer.id);
                    consider(transfer.pending_id);
                }
            }
            Batch::OrderConfirm(outcomes) => outcomes.iter().for_each(|outcome| {
                consider(outcome.transfer_id);
            }),
            Batch::Pulse
            | Batch::ShardResolve(_)
            | Batch::CreateAccounts(_)
            | Batch::CreateSkus(_)
            | Batch::Reserve(_)
            | Batch::ConfirmReservations(_)
            | Batch::ReleaseReservations(_)
            | Batch::AckDispatch(_)
            | Batch::OrderUnits(_)
            | Batch::UnitConfirm(_) => {}
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Makes archived transfers (found for this batch's [`StateMachine::archive_lookups`])
    /// answer for the next [`StateMachine::apply`] only. An entry for a resident id, or
    /// for an id that never left, is refused (the index and the state disagree: a bug).
    pub fn recall(&mut self, found: &[ArchivedTransfer]) {
        for archived in found {
            assert!(
                self.transfers.map.get(&archived.id.0).is_none(),
                "a recalled transfer is not resident"
            );
            assert!(
                self.evicted_filter.may_contain(archived.id),
                "a recalled transfer left memory"
            );
            self.recalled.insert(archived.id.0, *archived);
        }
    }

    /// A recalled archive entry for `id`, during the batch it was recalled for.
    pub(crate) fn recalled_transfer(&self, id: TransferId) -> Option<&ArchivedTransfer> {
        if self.recalled.is_empty() {
            None
        } else {
            self.recalled.get(&id.0)
        }
    }
}

/// Ids per layer of the first [`EvictedFilter`] layer; each next layer holds twice as many.
const FILTER_LAYER_CAPACITY_MIN: u64 = 1 << 16;

/// Filter bits per id: about 0.1 % false positives for a split-block Bloom filter.
const FILTER_BITS_PER_ID: u64 = 16;

/// A filter over the ids that left memory: no false negatives, ~0.1 % false positives.
///
/// [`IdFilter`]s in layers: when a layer holds its capacity, a new one twice as large
/// starts, so the filter grows with the history at about two bytes per id and a lookup
/// reads one cache line per layer (a few dozen layers at most, as layers double).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EvictedFilter {
    pub(crate) layers: Vec<IdFilter>,
}

/// A set of transfer ids with no false negatives and about 0.1 % false positives at its
/// capacity: a split-block Bloom filter (one 512-bit block per id, one bit set in each of
/// the block's eight words), 16 bits per id. Lookups read one cache line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdFilter {
    /// Ids it is sized for.
    pub(crate) capacity: u64,
    /// Ids inserted.
    pub(crate) count: u64,
    pub(crate) blocks: Vec<[u64; 8]>,
}

impl IdFilter {
    pub(crate) fn blocks_for(capacity: u64) -> usize {
        (capacity.max(1) * FILTER_BITS_PER_ID).div_ceil(512) as usize
    }

    /// An empty filter sized for `capacity` ids (more may be inserted, at a higher false
    /// positive rate).
    pub fn with_capacity(capacity: u64) -> Self {
        Self {
            capacity,
            count: 0,
            blocks: vec![[0; 8]; Self::blocks_for(capacity)],
        }
    }

    /// Ids inserted.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the bit array.
    pub fn size_bytes(&self) -> usize {
        self.blocks.len() * 64
    }

    /// Bytes of [`IdFilter::to_bytes`] for `capacity`; `None` past 2^40 ids (taken for
    /// corruption rather than allocated).
    pub fn size_bytes_for(capacity: u64) -> Option<usize> {
        (capacity <= 1 << 40).then(|| 16 + Self::blocks_for(capacity) * 64)
    }

    /// Little-endian bytes: capacity (8), count (8), then the blocks.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + self.size_bytes());
        bytes.extend_from_slice(&self.capacity.to_le_bytes());
        bytes.extend_from_slice(&self.count.to_le_bytes());
        for word in self.blocks.iter().flatten() {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes
    }

    /// Reads [`IdFilter::to_bytes`]; `None` for bytes it cannot have written.
    pub fn from_bytes(bytes: &[u8]) -> Option<IdFilter> {
        let capacity = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let count = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        let words = bytes.get(16..)?;
        if Self::size_bytes_for(capacity) != Some(bytes.len()) {
            return None;
        }
        let blocks = words
            .chunks_exact(64)
            .map(|block| {
                let mut words = [0u64; 8];
                for (word, bytes) in words.iter_mut().zip(block.chunks_exact(8)) {
                    *word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
                }
                words
            })
            .collect();
        Some(IdFilter {
            capacity,
            count,
            blocks,
        })
    }

    /// The block and the bit of each word that `id` maps to in this layer.
    fn position(&self, id: TransferId) -> (usize, [u64; 8]) {
        let hash = mix64(id.0 as u64 ^ mix64((id.0 >> 64) as u64 ^ self.capacity));
        let block = ((u128::from(hash) * self.blocks.len() as u128) >> 64) as usize;
        let bits = mix64(hash ^ 0x9E37_79B9_7F4A_7C15);
        let mut masks = [0; 8];
        for (word, mask) in masks.iter_mut().enumerate() {
            // Six bits of the hash per word: 48 of its 64 bits.
            *mask = 1 << ((bits >> (word * 6)) & 63);
        }
        (block, masks)
    }

    /// Whether `id` may have been inserted (never false for an inserted id).
    pub fn may_contain(&self, id: TransferId) -> bool {
        let (block, masks) = self.position(id);
        let words = &self.blocks[block];
        words.iter().zip(masks).all(|(word, mask)| word & mask != 0)
    }

    /// Hints the cache with the block `id` maps to, ahead of [`IdFilter::insert`] or
    /// [`IdFilter::may_contain`] (a filter larger than the cache misses on every id).
    /// Reads nothing.
    pub fn prefetch(&self, id: TransferId) {
        let (block, _) = self.position(id);
        super::table::prefetch_value(&self.blocks[block]);
    }

    /// Adds `id`.
    pub fn insert(&mut self, id: TransferId) {
        let (block, masks) = self.position(id);
        for (word, mask) in self.blocks[block].iter_mut().zip(masks) {
            *word |= mask;
        }
        self.count += 1;
    }
}

impl EvictedFilter {
    pub(crate) fn insert(&mut self, id: TransferId) {
        let full = self
            .layers
            .last()
            .is_none_or(|layer| layer.count >= layer.capacity);
        if full {
            let capacity = self
                .layers
                .last()
                .map_or(FILTER_LAYER_CAPACITY_MIN, |layer| layer.capacity * 2);
            self.layers.push(IdFilter::with_capacity(capacity));
        }
        self.layers.last_mut().expect("a layer").insert(id);
    }

    pub(crate) fn may_contain(&self, id: TransferId) -> bool {
        self.layers.iter().any(|layer| layer.may_contain(id))
    }

    pub(crate) fn size_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| layer.blocks.len() * 64)
            .sum()
    }

    /// Whether `layer`, read from a snapshot, can be one this filter built (layers start at
    /// a power-of-two capacity of at least the first layer's).
    pub(crate) fn is_layer(layer: &IdFilter) -> bool {
        layer.capacity >= FILTER_LAYER_CAPACITY_MIN
            && layer.capacity.is_power_of_two()
            && layer.count <= layer.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_transfers_round_trip_as_bytes() {
        let entries = [
            ArchivedTransfer {
                id: TransferId(u128::MAX),
                outcome: ArchivedOutcome::Committed {
                    fingerprint: 0xDEAD_BEEF,
                    pending_status: None,
                },
            },
            ArchivedTransfer {
                id: TransferId(7),
                outcome: ArchivedOutcome::Failed(ResultCode::ExceedsCredits),
            },
            ArchivedTransfer {
                id: TransferId(8),
                outcome: ArchivedOutcome::Committed {
                    fingerprint: u64::MAX,
                    pending_status: Some(PendingStatus::Expired),
                },
            },
        ];
        for entry in entries {
            assert_eq!(ArchivedTransfer::from_bytes(&entry.to_bytes()), Some(entry));
        }
        let mut bad = entries[0].to_bytes();
        bad[24] = 9;
        assert_eq!(ArchivedTransfer::from_bytes(&bad), None);
        assert_eq!(ArchivedTransfer::from_bytes(&bad[..24]), None);
        let mut success = entries[1].to_bytes();
        success[16..24].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(ArchivedTransfer::from_bytes(&success), None);
        assert_eq!(ArchivedTransfer::from_bytes(&[0; 25]), None);
    }

    #[test]
    fn filter_has_no_false_negatives_and_few_false_positives() {
        let mut filter = EvictedFilter::default();
        let inserted = 300_000u128;
        for id in 1..=inserted {
            filter.insert(TransferId(id * 0x9E37_79B9));
        }
        assert!(filter.layers.len() >= 2, "the filter grew layers");
        for id in 1..=inserted {
            assert!(filter.may_contain(TransferId(id * 0x9E37_79B9)));
        }
        let probes = 1_000_000u128;
        let false_positives = (1..=probes)
            .filter(|id| filter.may_contain(TransferId(id * 0x9E37_79B9 + 1)))
            .count();
        // ~0.1 % per layer, a few layers: well under 1 %.
        assert!(
            false_positives < 10_000,
            "{false_positives} false positives in {probes}"
        );
        assert!(filter.size_bytes() <= 4 * inserted as usize);
    }

    #[test]
    fn id_filters_round_trip_as_bytes() {
        let mut filter = IdFilter::with_capacity(1_000);
        for id in 1..=1_000u128 {
            filter.insert(TransferId(id << 64 | id));
        }
        let bytes = filter.to_bytes();
        let read = IdFilter::from_bytes(&bytes).expect("round trip");
        assert_eq!(read, filter);
        assert!((1..=1_000u128).all(|id| read.may_contain(TransferId(id << 64 | id))));
        assert_eq!(IdFilter::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(IdFilter::from_bytes(&bytes[..10]), None);
        let empty = IdFilter::with_capacity(0);
        assert_eq!(IdFilter::from_bytes(&empty.to_bytes()), Some(empty));
    }
}
