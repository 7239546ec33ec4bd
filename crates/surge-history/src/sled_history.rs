//! The index in sled, and the index logic shared with [`crate::MemoryHistory`].
//!
//! One sled tree, keys prefixed by kind and big-endian so byte order is log order:
//!
//! | key | value |
//! |---|---|
//! | `M` `applied` | last indexed record index (u64 LE) |
//! | `T` transfer id (16) | position (12) + transfer record (128) |
//! | `O` order id (16) record index (8) command index (4) | operation (1) |
//! | `A` account (16) timestamp (8) transfer id (16) | position + transfer + balances (32) |
//!
//! Archive entries of transfers that left the state machine's memory are not in sled:
//! they are immutable run files beside it (`archive/`, see `archive_runs.rs`), written
//! sequentially and read with positioned reads, so they cost no page cache.
//!
//! A record's entries and its `applied` mark go in one `apply_batch`, which sled applies
//! atomically: after a crash the index holds a prefix of records, and `applied_up_to` says
//! which.

use std::path::Path;

use surge_core::{
    AccountId, ArchivedTransfer, LogPosition, Operation, OrderId, Transfer, TransferId,
};

use crate::archive_runs::RunStore;

use crate::derive::{Balances, IndexEntry, StatementLine};
use crate::{HistoryError, HistoryIndex, StatementCursor, StatementPage};

const KEY_APPLIED: &[u8] = b"Mapplied";
const PREFIX_TRANSFER: u8 = b'T';
const PREFIX_ORDER: u8 = b'O';
const PREFIX_STATEMENT: u8 = b'A';
const POSITION_SIZE_BYTES: usize = 12;
const TRANSFER_SIZE_BYTES: usize = std::mem::size_of::<Transfer>();
const BALANCES_SIZE_BYTES: usize = 32;

/// Default size of sled's page cache for the index: lookups of old transfers and
/// statements are rare next to writes, so a modest cache keeps the node's memory bounded.
pub const HISTORY_CACHE_BYTES_DEFAULT: u64 = 256 << 20;

/// Key-value pairs, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What the index logic needs from a sorted key-value store.
pub trait KeyValueStore {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError>;
    /// Up to `limit` entries with `from <= key < to`, in key order.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Pairs, HistoryError>;
    /// Writes all pairs, all or none.
    fn write_atomically(&mut self, writes: Pairs) -> Result<(), HistoryError>;
}

/// A sled tree as a [`KeyValueStore`].
#[derive(Debug)]
pub struct SledStore {
    pub(crate) db: sled::Db,
}

impl KeyValueStore for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError> {
        Ok(self.db.get(key)?.map(|value| value.to_vec()))
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Pairs, HistoryError> {
        self.db
            .range(from..to)
            .take(limit)
            .map(|pair| {
                let (key, value) = pair?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    fn write_atomically(&mut self, writes: Pairs) -> Result<(), HistoryError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            batch.insert(key, value);
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }
}

/// The history index in sled.
pub type SledHistory = Index<SledStore>;

impl SledHistory {
    /// Opens (or creates) the index in directory `path`, with sled's page cache at
    /// [`HISTORY_CACHE_BYTES_DEFAULT`].
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Self::open_with_cache(path, HISTORY_CACHE_BYTES_DEFAULT)
    }

    /// Opens (or creates) the index in directory `path`, with sled's page cache at
    /// `cache_bytes` (a target, not a hard limit: sled's own bookkeeping comes on top).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, HistoryError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()?;
        let archive = RunStore::open(&path.join("archive"))?;
        Ok(Index::from_parts(SledStore { db }, archive))
    }

    /// Deletes the index at `path` and creates an empty one, to be rebuilt from the log
    /// after sled reported corruption.
    pub fn recreate(path: &Path) -> Result<Self, HistoryError> {
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(HistoryError::Storage(sled::Error::Io(error))),
        }
        Self::open(path)
    }

    /// A second handle on the same open index, for readers on other threads (sled is
    /// safe to share; reads see every write made through any handle).
    pub fn reader(&self) -> Self {
        Index {
            store: SledStore {
                db: self.store.db.clone(),
            },
            archive: self.archive.clone(),
        }
    }

    /// Waits until everything written so far is on disk (sled otherwise flushes in the
    /// background; the index never needs it for correctness, only to catch up less).
    pub fn flush(&self) -> Result<(), HistoryError> {
        self.store.db.flush()?;
        Ok(())
    }
}

/// The index over any sorted store.
#[derive(Debug)]
pub struct Index<S> {
    pub(crate) store: S,
    /// Archive runs; shared with reader handles, which see runs archived after they were
    /// made.
    pub(crate) archive: RunStore,
}

impl<S: KeyValueStore> Index<S> {
    pub(crate) fn from_parts(store: S, archive: RunStore) -> Self {
        Self { store, archive }
    }
}

impl<S: KeyValueStore> HistoryIndex for Index<S> {
    fn applied_up_to(&self) -> Result<Option<u64>, HistoryError> {
        match self.store.get(KEY_APPLIED)? {
            None => Ok(None),
            Some(value) => Ok(Some(read_u64(KEY_APPLIED, &value, 0)?)),
        }
    }

    fn apply(&mut self, record_index: u64, entries: &[IndexEntry]) -> Result<(), HistoryError> {
        if let Some(applied_up_to) = self.applied_up_to()? {
            if record_index <= applied_up_to {
                return Err(HistoryError::OutOfOrder {
                    record_index,
                    applied_up_to,
                });
            }
        }
        let mut writes: Vec<(Vec<u8>, Vec<u8>)> = entries.iter().map(encode_entry).collect();
        writes.push((KEY_APPLIED.to_vec(), record_index.to_le_bytes().to_vec()));
        self.store.write_atomically(writes)
    }

    fn transfer(&self, id: TransferId) -> Result<Option<(LogPosition, Transfer)>, HistoryError> {
        let key = transfer_key(id);
        let Some(value) = self.store.get(&key)? else {
            return Ok(None);
        };
        let position = read_position(&key, &value, 0)?;
        let transfer = read_transfer(&key, &value, POSITION_SIZE_BYTES)?;
        Ok(Some((position, transfer)))
    }

    fn archive(&mut self, entries: &[ArchivedTransfer]) -> Result<(), HistoryError> {
        self.archive.archive(entries)
    }

    fn archived(&self, id: TransferId) -> Result<Option<ArchivedTransfer>, HistoryError> {
        self.archive.get(id)
    }

    fn order_events(&self, id: OrderId) -> Result<Vec<(LogPosition, Operation)>, HistoryError> {
        let from = order_key(id, LogPosition::default());
        let to = prefix_end(&from[..17]);
        let pairs = self.store.scan(&from, &to, usize::MAX)?;
        pairs
            .into_iter()
            .map(|(key, value)| {
                let record_index = read_u64_be(&key, 17)?;
                let command_index = read_u32_be(&key, 25)?;
                let operation = value
                    .first()
                    .and_then(|byte| Operation::from_u8(*byte))
                    .ok_or(HistoryError::Corrupt {
                        key: key.clone(),
                        reason: "operation",
                    })?;
                Ok((
                    LogPosition {
                        record_index,
                        command_index,
                    },
                    operation,
                ))
            })
            .collect()
    }

    fn statement(
        &self,
        account_id: AccountId,
        from_ns: u64,
        to_ns: u64,
        after: Option<StatementCursor>,
        limit: usize,
    ) -> Result<StatementPage, HistoryError> {
        let from = match after {
            // Just past the cursor's key: the same key with one more byte.
            Some(cursor) => {
                let mut key = statement_key(account_id, cursor.timestamp, cursor.transfer_id);
                key.push(0);
                key
            }
            None => statement_key(account_id, from_ns, TransferId::ZERO),
        };
        let to = statement_key(account_id, to_ns, TransferId::ZERO);
        if from >= to || limit == 0 {
            return Ok(StatementPage {
                lines: Vec::new(),
                next: None,
            });
        }
        let pairs = self.store.scan(&from, &to, limit.saturating_add(1))?;
        let more = pairs.len() > limit;
        let lines = pairs
            .iter()
            .take(limit)
            .map(|(key, value)| decode_statement_line(account_id, key, value))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match lines.last() {
            Some(last) if more => Some(StatementCursor {
                timestamp: last.transfer.timestamp,
                transfer_id: last.transfer.id,
            }),
            _ => None,
        };
        Ok(StatementPage { lines, next })
    }
}

fn encode_entry(entry: &IndexEntry) -> (Vec<u8>, Vec<u8>) {
    match entry {
        IndexEntry::Transfer { position, transfer } => {
            let mut value = encode_position(*position);
            value.extend_from_slice(bytemuck::bytes_of(transfer));
            (transfer_key(transfer.id), value)
        }
        IndexEntry::OrderEvent {
            order_id,
            position,
            operation,
        } => (order_key(*order_id, *position), vec![*operation as u8]),
        IndexEntry::Statement(line) => {
            let mut value = encode_position(line.position);
            value.extend_from_slice(bytemuck::bytes_of(&line.transfer));
            for balance in [
                line.balances_after.debits_pending,
                line.balances_after.debits_posted,
                line.balances_after.credits_pending,
                line.balances_after.credits_posted,
            ] {
                value.extend_from_slice(&balance.to_le_bytes());
            }
            (
                statement_key(line.account_id, line.transfer.timestamp, line.transfer.id),
                value,
            )
        }
    }
}

fn decode_statement_line(
    account_id: AccountId,
    key: &[u8],
    value: &[u8],
) -> Result<StatementLine, HistoryError> {
    let position = read_position(key, value, 0)?;
    let transfer = read_transfer(key, value, POSITION_SIZE_BYTES)?;
    let at = POSITION_SIZE_BYTES + TRANSFER_SIZE_BYTES;
    if value.len() != at + BALANCES_SIZE_BYTES {
        return Err(HistoryError::Corrupt {
            key: key.to_vec(),
            reason: "statement line size",
        });
    }
    let balances_after = Balances {
        debits_pending: read_u64(key, value, at)?,
        debits_posted: read_u64(key, value, at + 8)?,
        credits_pending: read_u64(key, value, at + 16)?,
        credits_posted: read_u64(key, value, at + 24)?,
    };
    Ok(StatementLine {
        account_id,
        position,
        transfer,
        balances_after,
    })
}

fn transfer_key(id: TransferId) -> Vec<u8> {
    let mut key = vec![PREFIX_TRANSFER];
    key.extend_from_slice(&id.0.to_be_bytes());
    key
}

fn order_key(id: OrderId, position: LogPosition) -> Vec<u8> {
    let mut key = vec![PREFIX_ORDER];
    key.extend_from_slice(&id.0.to_be_bytes());
    key.extend_from_slice(&position.record_index.to_be_bytes());
    key.extend_from_slice(&position.command_index.to_be_bytes());
    key
}

fn statement_key(account_id: AccountId, timestamp: u64, transfer_id: TransferId) -> Vec<u8> {
    let mut key = vec![PREFIX_STATEMENT];
    key.extend_from_slice(&account_id.0.to_be_bytes());
    key.extend_from_slice(&timestamp.to_be_bytes());
    key.extend_from_slice(&transfer_id.0.to_be_bytes());
    key
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn encode_position(position: LogPosition) -> Vec<u8> {
    let mut value = Vec::with_capacity(POSITION_SIZE_BYTES + TRANSFER_SIZE_BYTES);
    value.extend_from_slice(&position.record_index.to_le_bytes());
    value.extend_from_slice(&position.command_index.to_le_bytes());
    value
}

fn slice<'a>(
    key: &[u8],
    bytes: &'a [u8],
    at: usize,
    size: usize,
) -> Result<&'a [u8], HistoryError> {
    bytes.get(at..at + size).ok_or(HistoryError::Corrupt {
        key: key.to_vec(),
        reason: "value too short",
    })
}

fn read_u64(key: &[u8], bytes: &[u8], at: usize) -> Result<u64, HistoryError> {
    let raw = slice(key, bytes, at, 8)?;
    Ok(u64::from_le_bytes(raw.try_into().expect("8 bytes")))
}

fn read_u64_be(key: &[u8], at: usize) -> Result<u64, HistoryError> {
    let raw = slice(key, key, at, 8)?;
    Ok(u64::from_be_bytes(raw.try_into().expect("8 bytes")))
}

fn read_u32_be(key: &[u8], at: usize) -> Result<u32, HistoryError> {
    let raw = slice(key, key, at, 4)?;
    Ok(u32::from_be_bytes(raw.try_into().expect("4 bytes")))
}

fn read_position(key: &[u8], value: &[u8], at: usize) -> Result<LogPosition, HistoryError> {
    let record_index = read_u64(key, value, at)?;
    let raw = slice(key, value, at + 8, 4)?;
    let command_index = u32::from_le_bytes(raw.try_into().expect("4 bytes"));
    Ok(LogPosition {
        record_index,
        command_index,
    })
}

fn read_transfer(key: &[u8], value: &[u8], at: usize) -> Result<Transfer, HistoryError> {
    let raw = slice(key, value, at, TRANSFER_SIZE_BYTES)?;
    Ok(bytemuck::pod_read_unaligned(raw))
}
