//! The index in memory: a sorted map with the same keys and values as the sled index, so
//! both run the same code. For tests, and for running without an on-disk index.

use std::collections::BTreeMap;

use crate::archive_runs::RunStore;
use crate::sled_history::{Index, KeyValueStore, Pairs, WriteBatch};
use crate::HistoryError;

/// A sorted in-memory key-value store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KeyValueStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Pairs, HistoryError> {
        Ok(self
            .map
            .range(from.to_vec()..to.to_vec())
            .take(limit)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn write_atomically(&mut self, writes: &WriteBatch) -> Result<(), HistoryError> {
        self.map.extend(
            writes
                .iter()
                .map(|(key, value)| (key.to_vec(), value.to_vec())),
        );
        Ok(())
    }
}

/// The history index in memory.
pub type MemoryHistory = Index<MemoryStore>;

impl MemoryHistory {
    /// An empty in-memory index.
    pub fn new() -> Self {
        Index::from_parts(MemoryStore::default(), RunStore::in_memory())
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        Self::new()
    }
}
