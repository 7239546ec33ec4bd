//! An open-addressing hash table (linear probing, backward-shift deletion) whose entries
//! carry their own key. It exists for one reason the standard map lacks: the address of a
//! key's home slot is computable before the lookup, so the state machine can prefetch the
//! accounts and ids of commands a few places ahead in a batch and overlap the cache misses
//! that dominate a ledger of a million random accounts.
//!
//! Ids are never zero, so a zero key marks a vacant slot. Capacity is a power of two and
//! the table doubles before it is three-quarters full, so probe runs stay short.
//!
//! A table's entries can also be copied a little at a time while it changes
//! ([`Table::copy_begin`]): the copy holds the entries as they were when the copy began, in
//! no particular order. Every write to a slot first copies the entries of that slot's chunk
//! (4 KiB of slots) if the copy has not reached it yet, and [`Table::copy_advance`] copies
//! the chunks no write reached, a budget at a time. The state machine copies its largest
//! tables this way for a checkpoint, so its shard never stops for a whole copy (hundreds of
//! megabytes).

use super::memory::AlignedSlots;
use crate::ids::{AccountId, OrderId, SkuId, TransferId};

/// A key: a non-zero id (or tuple of ids) with a well-mixed 64-bit hash.
pub(crate) trait TableKey: Copy + Eq {
    /// The key that marks a vacant slot (every id zero).
    const VACANT: Self;
    /// A hash whose high bits are well mixed (the table indexes by the high bits).
    fn hash64(&self) -> u64;
}

/// A value that carries its key.
pub(crate) trait TableEntry: Copy {
    /// The key type.
    type Key: TableKey;
    /// The entry's key; never [`TableKey::VACANT`] for a stored entry.
    fn key(&self) -> Self::Key;
    /// A vacant slot.
    fn vacant() -> Self;
}

/// Multiplies and folds (a 64-bit finalizer): sequential ids spread over the high bits.
pub(crate) fn mix64(value: u64) -> u64 {
    let value = (value ^ (value >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let value = (value ^ (value >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    value ^ (value >> 32)
}

impl TableKey for u128 {
    const VACANT: Self = 0;
    #[inline]
    fn hash64(&self) -> u64 {
        // Two odd multipliers: the high bits of each product depend on every bit of its
        // half, and the table indexes by the high bits (Fibonacci hashing).
        (*self as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ ((*self >> 64) as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
    }
}

impl TableKey for u64 {
    const VACANT: Self = 0;
    #[inline]
    fn hash64(&self) -> u64 {
        self.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl TableKey for OrderId {
    const VACANT: Self = OrderId::ZERO;
    #[inline]
    fn hash64(&self) -> u64 {
        self.0.hash64()
    }
}

impl TableKey for TransferId {
    const VACANT: Self = TransferId::ZERO;
    #[inline]
    fn hash64(&self) -> u64 {
        self.0.hash64()
    }
}

impl TableKey for (OrderId, SkuId) {
    const VACANT: Self = (OrderId::ZERO, SkuId(0));
    #[inline]
    fn hash64(&self) -> u64 {
        self.0 .0.hash64() ^ self.1 .0.wrapping_mul(0x1656_67B1_9E37_79F9)
    }
}

impl TableKey for (SkuId, AccountId) {
    const VACANT: Self = (SkuId(0), AccountId::ZERO);
    #[inline]
    fn hash64(&self) -> u64 {
        self.1 .0.hash64() ^ self.0 .0.wrapping_mul(0x1656_67B1_9E37_79F9)
    }
}

/// See the module documentation.
pub(crate) struct Table<E: TableEntry> {
    slots: AlignedSlots<E>,
    /// `64 - log2(slots.len())`: the shift that turns a hash into a slot index.
    shift: u32,
    len: usize,
    /// A copy in progress: every write to a slot copies its chunk first.
    copy: Option<TableCopy<E>>,
}

/// Bytes of slots copied together: a write to any slot of a chunk not yet copied copies
/// the whole chunk first (a page: one page fault at most on a fresh copy buffer).
const COPY_CHUNK_BYTES: usize = 4096;

/// A table's entries as of [`Table::copy_begin`], taken chunk by chunk.
struct TableCopy<E> {
    /// The stored entries of the chunks copied so far, chunk after chunk.
    entries: Vec<E>,
    /// One bit per chunk: copied.
    copied: Vec<u64>,
    /// The next chunk [`Table::copy_advance`] looks at.
    next: usize,
    /// Chunks not yet copied.
    left: usize,
}

impl<E: TableEntry> TableCopy<E> {
    fn chunk_len() -> usize {
        (COPY_CHUNK_BYTES / std::mem::size_of::<E>().max(1)).max(1)
    }

    fn is_copied(&self, chunk: usize) -> bool {
        self.copied[chunk / 64] & (1 << (chunk % 64)) != 0
    }

    /// Copies the stored entries of `chunk` of `source` (the table's slots, not yet
    /// written since the copy began in that chunk).
    fn copy_chunk(&mut self, source: &[E], chunk: usize) {
        let start = chunk * Self::chunk_len();
        let end = (start + Self::chunk_len()).min(source.len());
        self.entries.extend(
            source[start..end]
                .iter()
                .filter(|entry| entry.key() != E::Key::VACANT),
        );
        self.copied[chunk / 64] |= 1 << (chunk % 64);
        self.left -= 1;
    }

    /// Before slot `index` of `source` is written: its chunk is copied if it was not.
    #[inline]
    fn before_write(&mut self, source: &[E], index: usize) {
        // A finished copy takes nothing more (the table may have grown since: its slots
        // then outnumber the copy's).
        if self.left == 0 {
            return;
        }
        let chunk = index / Self::chunk_len();
        if !self.is_copied(chunk) {
            self.copy_chunk(source, chunk);
        }
    }
}

/// Smallest table, in slots.
const SLOTS_MIN: usize = 16;

impl<E: TableEntry> Table<E> {
    /// A table with room for `capacity` entries before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let slots = (capacity.saturating_mul(4) / 3 + 1)
            .next_power_of_two()
            .max(SLOTS_MIN);
        Self {
            slots: AlignedSlots::filled(slots, E::vacant()),
            shift: 64 - slots.trailing_zeros(),
            len: 0,
            copy: None,
        }
    }

    /// Before slot `index` is written: a copy in progress takes its chunk first.
    #[inline]
    fn before_write(&mut self, index: usize) {
        if let Some(copy) = &mut self.copy {
            copy.before_write(&self.slots, index);
        }
    }

    /// Copies up to `budget_bytes` of the chunks no write has copied yet (at least one
    /// chunk when any is left); true once the whole copy is done. Bytes are counted per
    /// chunk looked at, so a pass over copied chunks also ends.
    pub(crate) fn copy_advance(&mut self, budget_bytes: usize) -> bool {
        let Some(copy) = &mut self.copy else {
            return true;
        };
        let chunks = copy.copied.len() * 64;
        let chunk_bytes = TableCopy::<E>::chunk_len() * std::mem::size_of::<E>().max(1);
        let mut budget = budget_bytes.max(1);
        while copy.left > 0 && budget > 0 && copy.next < chunks {
            let chunk = copy.next;
            copy.next += 1;
            if chunk * TableCopy::<E>::chunk_len() >= self.slots.len() {
                continue;
            }
            if copy.is_copied(chunk) {
                // Looking costs a little: 64 copied chunks count as one.
                budget = budget.saturating_sub(chunk_bytes / 64);
            } else {
                copy.copy_chunk(&self.slots, chunk);
                budget = budget.saturating_sub(chunk_bytes);
            }
        }
        copy.left == 0
    }

    /// The finished copy: the table's entries as of [`Table::copy_begin`], in no
    /// particular order. Copies what is left first.
    pub(crate) fn copy_take(&mut self) -> Vec<E> {
        while !self.copy_advance(usize::MAX) {}
        self.copy
            .take()
            .map(|copy| copy.entries)
            .unwrap_or_default()
    }

    /// Begins a copy of the table's entries as they are now, finished by writes and by
    /// [`Table::copy_advance`]. Nothing is copied yet: `buffer` (a finished copy given
    /// back, so its pages are already the process's) is emptied and reused.
    pub(crate) fn copy_begin(&mut self, buffer: Vec<E>) {
        assert!(self.copy.is_none(), "one copy at a time");
        let buffer = super::snapshot::emptied_with_room(buffer, self.len);
        let chunks = self.slots.len().div_ceil(TableCopy::<E>::chunk_len());
        self.copy = Some(TableCopy {
            entries: buffer,
            copied: vec![0; chunks.div_ceil(64)],
            next: 0,
            left: chunks,
        });
    }

    /// Entries stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn home(&self, key: &E::Key) -> usize {
        (key.hash64() >> self.shift) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Index of `key`'s slot, or of the vacant slot where it would go.
    fn find(&self, key: &E::Key) -> (usize, bool) {
        // The zero key marks vacant slots, so it is never stored: a lookup of a zero id
        // (a query from outside) finds nothing, and no slot index is offered for it.
        if *key == E::Key::VACANT {
            return (usize::MAX, false);
        }
        let mut index = self.home(key);
        loop {
            let slot_key = self.slots[index].key();
            if slot_key == *key {
                return (index, true);
            }
            if slot_key == E::Key::VACANT {
                return (index, false);
            }
            index = (index + 1) & self.mask();
        }
    }

    /// The slot index holding `key`, if stored. Valid until the next insert or remove.
    #[inline]
    pub(crate) fn locate(&self, key: &E::Key) -> Option<usize> {
        match self.find(key) {
            (index, true) => Some(index),
            (_, false) => None,
        }
    }

    /// `Ok(index)` of `key`'s slot, or `Err(index)` of the vacant slot it would take.
    /// Either index is valid until the next insert or remove.
    #[inline]
    pub(crate) fn find_slot(&self, key: &E::Key) -> Result<usize, usize> {
        match self.find(key) {
            (index, true) => Ok(index),
            (index, false) => Err(index),
        }
    }

    /// Stores `entry` in the vacant slot `index` from [`Table::find_slot`], saving the
    /// second probe of a lookup-then-insert.
    pub(crate) fn fill_vacant(&mut self, index: usize, entry: E) {
        assert!(
            index < self.slots.len(),
            "a slot index from find_slot of a non-zero key"
        );
        self.before_write(index);
        assert!(
            self.slots[index].key() == E::Key::VACANT,
            "the slot is vacant"
        );
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let previous = self.insert(entry);
            assert!(previous.is_none());
            return;
        }
        debug_assert!(self.find(&entry.key()) == (index, false));
        self.slots[index] = entry;
        self.len += 1;
    }

    /// The entry at a slot index from [`Table::locate`].
    #[inline]
    pub(crate) fn at(&self, index: usize) -> &E {
        &self.slots[index]
    }

    /// The entry at a slot index from [`Table::locate`], mutably.
    #[inline]
    pub(crate) fn at_mut(&mut self, index: usize) -> &mut E {
        self.before_write(index);
        &mut self.slots[index]
    }

    /// Hints the CPU to start loading `key`'s home slot (every cache line of it). Never
    /// faults, never blocks.
    #[inline]
    pub(crate) fn prefetch(&self, key: &E::Key) {
        let slot: *const E = &self.slots[self.home(key)];
        let first = slot.cast::<u8>();
        let last = first.wrapping_add(std::mem::size_of::<E>() - 1);
        prefetch_read(first);
        // A slot of up to 128 bytes spans at most three lines when it is not a power of
        // two in size (a 48-byte slot straddles two lines half the time).
        if std::mem::size_of::<E>() > 64 {
            prefetch_read(first.wrapping_add(64));
        }
        if (last as usize) / 64 != (first as usize) / 64 {
            prefetch_read(last);
        }
    }

    pub(crate) fn get(&self, key: &E::Key) -> Option<&E> {
        match self.find(key) {
            (index, true) => Some(&self.slots[index]),
            (_, false) => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: &E::Key) -> Option<&mut E> {
        match self.find(key) {
            (index, true) => {
                self.before_write(index);
                Some(&mut self.slots[index])
            }
            (_, false) => None,
        }
    }

    /// Inserts or replaces `entry` under its own key, returning the previous entry.
    pub(crate) fn insert(&mut self, entry: E) -> Option<E> {
        let key = entry.key();
        assert!(key != E::Key::VACANT, "a stored entry has a non-zero key");
        let (index, found) = self.find(&key);
        if found {
            self.before_write(index);
            return Some(std::mem::replace(&mut self.slots[index], entry));
        }
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
            let (index, found) = self.find(&key);
            assert!(!found);
            self.slots[index] = entry;
        } else {
            self.before_write(index);
            self.slots[index] = entry;
        }
        self.len += 1;
        None
    }

    /// Removes `key`, shifting later entries of its probe run back so no tombstone is left.
    pub(crate) fn remove(&mut self, key: &E::Key) -> Option<E> {
        let (mut hole, found) = self.find(key);
        if !found {
            return None;
        }
        self.before_write(hole);
        let removed = std::mem::replace(&mut self.slots[hole], E::vacant());
        self.len -= 1;
        let mut index = hole;
        loop {
            index = (index + 1) & self.mask();
            let slot_key = self.slots[index].key();
            if slot_key == E::Key::VACANT {
                return Some(removed);
            }
            // An entry may move back into the hole only if its home is not between the
            // hole and its current slot (cyclically); otherwise lookups would miss it.
            let home = self.home(&slot_key);
            let distance_to_home = index.wrapping_sub(home) & self.mask();
            let distance_to_hole = index.wrapping_sub(hole) & self.mask();
            if distance_to_home >= distance_to_hole {
                // The hole's chunk was copied when the hole was made.
                self.before_write(index);
                self.slots[hole] = std::mem::replace(&mut self.slots[index], E::vacant());
                hole = index;
            }
        }
    }

    fn grow(&mut self) {
        // The copy in progress is of the slots before the move: finished first.
        if self.copy.is_some() {
            while !self.copy_advance(usize::MAX) {}
        }
        let slots = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, AlignedSlots::filled(slots, E::vacant()));
        self.shift -= 1;
        for &entry in old.iter() {
            if entry.key() != E::Key::VACANT {
                let (index, found) = self.find(&entry.key());
                assert!(!found);
                self.slots[index] = entry;
            }
        }
    }

    /// Slots in the table (its capacity, vacant ones included).
    pub(crate) fn slots_len(&self) -> usize {
        self.slots.len()
    }

    /// The stored entries among slots `range` (clamped to the table), in slot order.
    pub(crate) fn occupied(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = &E> {
        let end = range.end.min(self.slots.len());
        let start = range.start.min(end);
        self.slots[start..end]
            .iter()
            .filter(|entry| entry.key() != E::Key::VACANT)
    }

    /// Every stored entry, in slot order (not a meaningful order: sort before use).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &E> {
        self.slots
            .iter()
            .filter(|entry| entry.key() != E::Key::VACANT)
    }
}

/// A key and its value, for values that do not carry their key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pair<K, V> {
    key: K,
    value: V,
}

impl<K: TableKey, V: Copy + Default> TableEntry for Pair<K, V> {
    type Key = K;
    fn key(&self) -> K {
        self.key
    }
    fn vacant() -> Self {
        Pair {
            key: K::VACANT,
            value: V::default(),
        }
    }
}

/// A map over a [`Table`] with the standard map's shape (`insert(key, value)`, pairs out of
/// `iter`), for maps on the hot path that a standard map would leave unprefetchable and
/// untouched until first use: its slots are touched when it is sized and can be
/// prefetched.
pub(crate) struct PairTable<K: TableKey, V: Copy + Default> {
    table: Table<Pair<K, V>>,
}

impl<K: TableKey, V: Copy + Default> PairTable<K, V> {
    /// A map with room for `capacity` entries before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            table: Table::with_capacity(capacity),
        }
    }

    /// Entries stored.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.table.get(key).map(|pair| &pair.value)
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.table.get_mut(key).map(|pair| &mut pair.value)
    }

    /// Inserts or replaces, returning the previous value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.table
            .insert(Pair { key, value })
            .map(|previous| previous.value)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.table.remove(key).map(|removed| removed.value)
    }

    /// Every entry, in slot order (not a meaningful order: sort before use).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.table.iter().map(|pair| (&pair.key, &pair.value))
    }

    /// Hints the CPU to start loading `key`'s home slot.
    #[inline]
    pub(crate) fn prefetch(&self, key: &K) {
        self.table.prefetch(key);
    }
}

/// Hints the CPU to start loading every cache line of `*value` (a value of any size, say a
/// 320-byte order entry). Reads nothing.
#[inline]
pub(crate) fn prefetch_value<T>(value: *const T) {
    prefetch_range(value.cast::<u8>(), std::mem::size_of::<T>().max(1));
}

/// Hints the CPU to start loading the cache lines of `bytes` (for a reader about to copy
/// entries it will find at scattered places, such as the history index's sorted
/// memtable). Reads nothing.
#[inline]
pub fn prefetch_bytes(bytes: &[u8]) {
    if !bytes.is_empty() {
        prefetch_range(bytes.as_ptr(), bytes.len());
    }
}

/// Every cache line of the `size_bytes` (at least one) bytes from `start`.
#[inline]
fn prefetch_range(start: *const u8, size_bytes: usize) {
    let mut offset = 0;
    while offset < size_bytes {
        prefetch_read(start.wrapping_add(offset));
        offset += 64;
    }
    // Bytes that do not start on a line may end on one past the last 64-byte step.
    let last = start.wrapping_add(size_bytes - 1);
    if last as usize / 64 != start.wrapping_add(offset - 64) as usize / 64 {
        prefetch_read(last);
    }
}

/// A prefetch hint, one of the core's `unsafe`s (with `memory.rs`'s `madvise` and aligned
/// slots):
/// `_mm_prefetch` is marked unsafe only because it is a target-feature intrinsic; a
/// prefetch reads nothing into the program, cannot fault on any address and has no effect
/// on program state.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_read(pointer: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it never faults and changes no program state; SSE is
    // part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(pointer.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Entry {
        key: u128,
        value: u64,
    }

    impl TableEntry for Entry {
        type Key = u128;
        fn key(&self) -> u128 {
            self.key
        }
        fn vacant() -> Self {
            Entry { key: 0, value: 0 }
        }
    }

    #[test]
    fn behaves_like_a_map_under_random_inserts_and_removes() {
        let mut table: Table<Entry> = Table::with_capacity(4);
        let mut model = std::collections::BTreeMap::new();
        let mut state = 12345u64;
        for _ in 0..20_000 {
            state = mix64(state.wrapping_add(1));
            // A small key range forces long probe runs, collisions and deletions.
            let key = u128::from(state % 512) + 1;
            if state % 3 == 0 {
                assert_eq!(table.remove(&key).map(|e| e.value), model.remove(&key));
            } else {
                let previous = table.insert(Entry { key, value: state });
                assert_eq!(previous.map(|e| e.value), model.insert(key, state));
            }
            assert_eq!(table.len(), model.len());
        }
        for key in 1..=513u128 {
            assert_eq!(table.get(&key).map(|e| e.value), model.get(&key).copied());
        }
        assert_eq!(table.iter().count(), model.len());
    }

    /// Stored entries of a copy (or a table's slots), sorted.
    fn stored(slots: &[Entry]) -> Vec<(u128, u64)> {
        let mut stored: Vec<(u128, u64)> = slots
            .iter()
            .filter(|entry| entry.key != 0)
            .map(|entry| (entry.key, entry.value))
            .collect();
        stored.sort_unstable();
        stored
    }

    /// A copy is the table as it was when the copy began, whatever is written meanwhile:
    /// right after the start (a removal's shift may reach a chunk no write copied yet),
    /// across a growth, and into a reused buffer holding an older copy.
    #[test]
    fn a_copy_is_the_table_as_of_its_start() {
        let mut table: Table<Entry> = Table::with_capacity(600);
        let mut state = 7u64;
        let mut buffer = Vec::new();
        let next = |state: &mut u64| {
            *state = mix64(state.wrapping_add(1));
            *state
        };
        for trial in 0..1_500 {
            // Mostly inserts of keys from a narrow range: the table near three-quarters
            // full, with long probe runs that cross chunks.
            for _ in 0..40 {
                let random = next(&mut state);
                let key = u128::from(random % 740) + 1;
                if random % 4 == 0 {
                    table.remove(&key);
                } else {
                    table.insert(Entry { key, value: random });
                }
            }
            let expected = stored(&table.iter().copied().collect::<Vec<_>>());
            table.copy_begin(std::mem::take(&mut buffer));
            // Removals right away (a removal's shift may reach a chunk no write copied
            // yet), a slice of the copy, then an update.
            for write in 0..3 {
                let random = next(&mut state);
                table.remove(&(u128::from(random % 740) + 1));
                if write == 1 {
                    table.copy_advance(1);
                }
            }
            let key = u128::from(next(&mut state) % 740) + 1;
            if let Some(entry) = table.get_mut(&key) {
                entry.value += 1;
            }
            buffer = table.copy_take();
            assert_eq!(stored(&buffer), expected, "trial {trial}");
        }
        // A copy across the table's growth.
        let expected = stored(&table.iter().copied().collect::<Vec<_>>());
        let slots_before = table.slots_len();
        table.copy_begin(buffer);
        for key in 10_000..12_000u128 {
            table.insert(Entry { key, value: 1 });
        }
        assert!(
            table.slots_len() > slots_before,
            "the table grew during the copy"
        );
        assert_eq!(stored(&table.copy_take()), expected);
    }

    #[test]
    fn a_pair_table_behaves_like_a_map() {
        let mut table: PairTable<TransferId, u64> = PairTable::with_capacity(2);
        let mut model = std::collections::BTreeMap::new();
        let mut state = 99u64;
        for _ in 0..5_000 {
            state = mix64(state.wrapping_add(1));
            let key = TransferId(u128::from(state % 300) + 1);
            if state % 4 == 0 {
                assert_eq!(table.remove(&key), model.remove(&key));
            } else {
                assert_eq!(table.insert(key, state), model.insert(key, state));
            }
        }
        assert_eq!(table.len(), model.len());
        let mut pairs: Vec<(TransferId, u64)> = table.iter().map(|(k, v)| (*k, *v)).collect();
        pairs.sort_unstable();
        assert_eq!(pairs, model.into_iter().collect::<Vec<_>>());
        assert_eq!(table.get(&TransferId::ZERO), None);
    }

    #[test]
    fn sequential_ids_spread_over_home_slots() {
        let table: Table<Entry> = Table::with_capacity(1 << 16);
        let homes: std::collections::BTreeSet<usize> =
            (1..=1u128 << 15).map(|key| table.home(&key)).collect();
        // Far from every key landing in a few slots.
        assert!(homes.len() > (1 << 15) * 7 / 10, "{}", homes.len());
    }
}
