//! The copy's buffers ([`SnapshotBuffers`]): kept from one snapshot to the next and touched
//! ahead of a copy on the checkpoint thread, so the apply thread copies into memory that
//! is already the process's.

use std::mem::size_of;

use super::super::table::TableEntry;
use super::super::{memory, TransferSlot};
use super::{ACCOUNT_SIZE_BYTES, TRANSFER_SIZE_BYTES};
use crate::records::{Account, Transfer};

/// The buffers of an encoded snapshot, given back to [`StateMachine::snapshot_begin`] so
/// the next copy writes memory already the process's: on a fresh buffer every 4 KiB page
/// is a page fault on the apply thread (about 3 µs each on this project's machine, more
/// than copying the page), a second for a 1 GB copy.
#[derive(Default)]
pub struct SnapshotBuffers {
    pub(super) accounts: Vec<Account>,
    pub(super) records: Vec<Transfer>,
    pub(super) slots: Vec<TransferSlot>,
    /// Values of each buffer's capacity whose memory is touched (kept while the buffers
    /// are empty, between a [`SnapshotBuffers::prepare`] and the copy).
    pub(super) touched: [usize; 3],
}

impl SnapshotBuffers {
    /// Bytes the buffers have room for (their capacity: address space, of which
    /// [`SnapshotBuffers::prepare`] touched the room it was asked for).
    pub fn size_bytes(&self) -> usize {
        Self::bytes_for([
            self.accounts.capacity(),
            self.records.capacity(),
            self.slots.capacity(),
        ])
    }

    /// Bytes a copy of `held` accounts, records and slots takes (see
    /// [`StateMachine::snapshot_held`]).
    pub fn bytes_for(held: [usize; 3]) -> usize {
        let [accounts, records, slots] = held;
        accounts * ACCOUNT_SIZE_BYTES
            + records * TRANSFER_SIZE_BYTES
            + slots * size_of::<TransferSlot>()
    }

    /// Empties the buffers and touches the memory of room for `room` accounts, records
    /// and slots (see [`StateMachine::snapshot_held`]), with huge pages where the kernel
    /// has them: on the thread that calls this (the checkpoint thread), not the one that
    /// copies. A copy that needs more room takes fresh memory for that part.
    pub fn prepare(&mut self, room: [usize; 3]) {
        self.prepare_while(room, || true);
    }

    /// [`SnapshotBuffers::prepare`], stopping once `go_on` says no (asked before each 8 MiB
    /// touched): the buffers keep the room touched so far. Whether all of `room` is.
    pub fn prepare_while(&mut self, room: [usize; 3], mut go_on: impl FnMut() -> bool) -> bool {
        let [accounts, records, slots] = self.touched;
        let accounts = prepare(
            &mut self.accounts,
            accounts,
            room[0],
            Account::default(),
            &mut go_on,
        );
        self.touched[0] = accounts;
        let records = prepare(
            &mut self.records,
            records,
            room[1],
            Transfer::default(),
            &mut go_on,
        );
        self.touched[1] = records;
        let slots = prepare(
            &mut self.slots,
            slots,
            room[2],
            TransferSlot::vacant(),
            &mut go_on,
        );
        self.touched[2] = slots;
        self.has_room(room)
    }

    /// Whether the buffers' touched memory holds a copy of `held` accounts, records and
    /// slots (else [`SnapshotBuffers::prepare`] touches the difference).
    pub fn has_room(&self, held: [usize; 3]) -> bool {
        self.touched
            .iter()
            .zip(held)
            .all(|(touched, held)| *touched >= held)
    }
}

/// Empties `buffer`, of which `touched` values' memory (or its length's, if more) is
/// touched already, and touches room for `count` values: only the memory past what is
/// touched. A buffer with less room is replaced by one reserving twice `count` where the
/// allocator grants it (address space; only `count` is touched), so a state that grows
/// checkpoint after checkpoint touches about its growth, not a whole new buffer each time.
/// Touches `PREPARE_STEP_BYTES` at a time, while `go_on`. Returns the values touched now.
pub(super) fn prepare<T: Copy>(
    buffer: &mut Vec<T>,
    touched: usize,
    count: usize,
    value: T,
    go_on: &mut impl FnMut() -> bool,
) -> usize {
    let mut touched = touched.max(buffer.len()).min(buffer.capacity());
    buffer.clear();
    if buffer.capacity() < count {
        // Asked first too: a wait does not wait for a large buffer's release, and the
        // touched memory stays for the copy.
        if !go_on() {
            return touched;
        }
        // The old one freed first: never both at once.
        *buffer = Vec::new();
        *buffer = memory::reserved_vec_preferring(count, count.saturating_mul(2));
        touched = 0;
    }
    let step = (PREPARE_STEP_BYTES / size_of::<T>().max(1)).max(1);
    while touched < count && go_on() {
        let end = touched.saturating_add(step).min(count);
        memory::touch_from(buffer, touched, end, value);
        touched = end;
    }
    touched
}

/// Memory [`SnapshotBuffers::prepare_while`] touches between two questions: about 5 ms.
pub(super) const PREPARE_STEP_BYTES: usize = 8 << 20;

/// `buffer`, emptied, with room for `count` values: a fresh one if it has less room (never
/// a reallocation, which would copy the old buffer's stale bytes into new memory).
pub(in crate::state_machine) fn emptied_with_room<T>(mut buffer: Vec<T>, count: usize) -> Vec<T> {
    buffer.clear();
    if buffer.capacity() < count {
        drop(buffer);
        return Vec::with_capacity(count);
    }
    buffer
}
