//! Maps that remember how to undo: every write records the key's previous value, so a
//! failed linked chain can be rolled back to a savepoint exactly.
//!
//! The hasher has a fixed seed: the state machine reads no randomness, and although no
//! result depends on iteration order, a fixed seed keeps even memory layout reproducible.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use super::table::{PairTable, Table, TableEntry, TableKey};

/// The hasher of every map in the state machine.
pub(crate) type FixedHasher = foldhash::fast::FixedState;

/// Seed of [`FixedHasher`]. Arbitrary, and fixed forever.
const HASH_SEED: u64 = 0x5375_7267_6521_0001;

/// A hash map with the fixed hasher.
pub(crate) type Map<K, V> = HashMap<K, V, FixedHasher>;

/// An empty [`Map`] with room for `capacity` entries.
pub(crate) fn map_with_capacity<K, V>(capacity: usize) -> Map<K, V> {
    HashMap::with_capacity_and_hasher(capacity, FixedHasher::with_seed(HASH_SEED))
}

/// A map's entries in key order (snapshots and the state hash walk hash maps this way).
pub(crate) fn sorted<'a, K: Copy + Ord + 'a, V: Copy + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a V)>,
) -> Vec<(K, V)> {
    let mut entries: Vec<(K, V)> = entries.map(|(k, v)| (*k, *v)).collect();
    entries.sort_unstable_by_key(|(k, _)| *k);
    entries
}

/// What [`Journaled`] needs from a map.
pub(crate) trait Store<K, V> {
    fn get(&self, key: &K) -> Option<&V>;
    fn get_mut(&mut self, key: &K) -> Option<&mut V>;
    fn insert(&mut self, key: K, value: V) -> Option<V>;
    fn remove(&mut self, key: &K) -> Option<V>;
}

impl<K: Hash + Eq, V> Store<K, V> for Map<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        HashMap::get(self, key)
    }
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        HashMap::get_mut(self, key)
    }
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        HashMap::insert(self, key, value)
    }
    fn remove(&mut self, key: &K) -> Option<V> {
        HashMap::remove(self, key)
    }
}

impl<E: TableEntry> Store<E::Key, E> for Table<E> {
    fn get(&self, key: &E::Key) -> Option<&E> {
        Table::get(self, key)
    }
    fn get_mut(&mut self, key: &E::Key) -> Option<&mut E> {
        Table::get_mut(self, key)
    }
    fn insert(&mut self, key: E::Key, value: E) -> Option<E> {
        assert!(key == value.key(), "an entry is stored under its own key");
        Table::insert(self, value)
    }
    fn remove(&mut self, key: &E::Key) -> Option<E> {
        Table::remove(self, key)
    }
}

impl<K: TableKey, V: Copy + Default> Store<K, V> for PairTable<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        PairTable::get(self, key)
    }
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        PairTable::get_mut(self, key)
    }
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        PairTable::insert(self, key, value)
    }
    fn remove(&mut self, key: &K) -> Option<V> {
        PairTable::remove(self, key)
    }
}

impl<K: Ord, V> Store<K, V> for BTreeMap<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        BTreeMap::get(self, key)
    }
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        BTreeMap::get_mut(self, key)
    }
    fn insert(&mut self, key: K, value: V) -> Option<V> {
        BTreeMap::insert(self, key, value)
    }
    fn remove(&mut self, key: &K) -> Option<V> {
        BTreeMap::remove(self, key)
    }
}

/// A map plus an undo log of `(key, previous value)`.
pub(crate) struct Journaled<K, V, S = Map<K, V>> {
    pub(crate) map: S,
    undo: Vec<(K, Option<V>)>,
    /// Off for commands that cannot fail after their first write: they never roll back,
    /// so copying old values would be wasted work on the hot path.
    recording: bool,
}

impl<K: Copy, V: Copy, S: Store<K, V>> Journaled<K, V, S> {
    pub(crate) fn new(map: S) -> Self {
        Self {
            map,
            undo: Vec::new(),
            recording: true,
        }
    }

    /// Turns undo recording on or off; only allowed with an empty undo log.
    pub(crate) fn set_recording(&mut self, recording: bool) {
        assert!(
            self.undo.is_empty(),
            "recording changes only between commands"
        );
        self.recording = recording;
    }

    /// Whether nothing was written since the last commit (with recording on).
    pub(crate) fn is_clean(&self) -> bool {
        self.undo.is_empty()
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.get(key).is_some()
    }

    /// Inserts or replaces, remembering the previous value.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let previous = self.map.insert(key, value);
        if self.recording {
            self.undo.push((key, previous));
        }
    }

    /// Mutable access that remembers the value before the change.
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        if self.recording {
            self.undo.push((*key, Some(*value)));
        }
        Some(value)
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let previous = self.map.remove(key);
        if previous.is_some() && self.recording {
            self.undo.push((*key, previous));
        }
        previous
    }

    /// Position to roll back to.
    pub(crate) fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undoes every write after `savepoint`, newest first.
    pub(crate) fn rollback(&mut self, savepoint: usize) {
        assert!(self.recording, "only a recorded command can roll back");
        assert!(savepoint <= self.undo.len());
        while self.undo.len() > savepoint {
            let (key, previous) = self.undo.pop().expect("undo entries above the savepoint");
            match previous {
                Some(value) => {
                    self.map.insert(key, value);
                }
                None => {
                    self.map.remove(&key);
                }
            }
        }
    }

    /// Forgets the undo log: everything written so far stays.
    pub(crate) fn commit(&mut self) {
        self.undo.clear();
    }
}

impl<E: TableEntry> Journaled<E::Key, E, Table<E>> {
    /// Stores `entry` in the vacant slot `index` (from `map.find_slot`).
    pub(crate) fn fill_vacant(&mut self, index: usize, entry: E) {
        self.map.fill_vacant(index, entry);
        if self.recording {
            self.undo.push((entry.key(), None));
        }
    }

    /// Mutable access to the entry at `index` (from `map.locate`), remembering its value.
    pub(crate) fn at_mut(&mut self, index: usize) -> &mut E {
        let value = self.map.at_mut(index);
        if self.recording {
            self.undo.push((value.key(), Some(*value)));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_inserts_updates_and_removes() {
        let mut journaled: Journaled<u32, u32> = Journaled::new(map_with_capacity(4));
        journaled.insert(1, 10);
        journaled.commit();
        let savepoint = journaled.savepoint();
        journaled.insert(2, 20);
        *journaled.get_mut(&1).unwrap() = 11;
        *journaled.get_mut(&1).unwrap() = 12;
        journaled.remove(&1);
        journaled.insert(1, 13);
        journaled.rollback(savepoint);
        assert_eq!(journaled.get(&1), Some(&10));
        assert_eq!(journaled.get(&2), None);
    }

    #[test]
    fn btree_store_rolls_back_too() {
        let mut journaled: Journaled<u64, u32, BTreeMap<u64, u32>> =
            Journaled::new(BTreeMap::new());
        journaled.insert(5, 1);
        let savepoint = journaled.savepoint();
        journaled.remove(&5);
        journaled.insert(6, 2);
        journaled.rollback(savepoint);
        assert_eq!(journaled.map.keys().copied().collect::<Vec<_>>(), vec![5]);
    }
}
