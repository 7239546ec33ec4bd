//! The index in sled, and the index logic shared with [`crate::MemoryHistory`].
//!
//! One sled tree, keys prefixed by kind and big-endian so byte order is log order:
//!
//! | key | value |
//! |---|---|
//! | `M` `applied` | last indexed record index (u64 LE) |
//! | `T` transfer id (16) | position (12) + transfer record (128) |
//! | `O` order id (16) record index (8) command index (4) | operation (1) |
//! | `A` account (16) timestamp (8) transfer id (16) | position + balances (32) [+ transfer] |
//!
//! A statement line's transfer is the one under `T` and its id, stored once there; only a
//! line whose transfer is not (the return of a failed cross-shard transfer's funds, whose
//! id names its debit leg) carries it.
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
const PREFIX_MARK: u8 = b'M';
const PREFIX_TRANSFER: u8 = b'T';
const PREFIX_ORDER: u8 = b'O';
const PREFIX_STATEMENT: u8 = b'A';
const POSITION_SIZE_BYTES: usize = 12;
const TRANSFER_SIZE_BYTES: usize = std::mem::size_of::<Transfer>();
const BALANCES_SIZE_BYTES: usize = 32;
/// A statement line's value without its transfer: position and balances.
const STATEMENT_SIZE_BYTES: usize = POSITION_SIZE_BYTES + BALANCES_SIZE_BYTES;

/// Whether the index looks `key` up by itself (a transfer by id, the `applied` mark)
/// rather than only within a range scan. Run files keep a filter over these keys only: a
/// change here needs a new run file version (`lsm/run.rs`), or lookups of the other keys
/// in older runs would be filtered out.
pub(crate) fn is_point_key(key: &[u8]) -> bool {
    // `M` is the `applied` mark's kind, and only its.
    matches!(key.first(), Some(&PREFIX_TRANSFER | &PREFIX_MARK))
}

/// Default size of sled's page cache for the index: lookups of old transfers and
/// statements are rare next to writes, so a modest cache keeps the node's memory bounded.
pub const HISTORY_CACHE_BYTES_DEFAULT: u64 = 256 << 20;

/// Key-value pairs, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Key-value pairs encoded back to back into one buffer, kept between records so that
/// encoding a record's entries allocates nothing.
#[derive(Debug, Default)]
pub struct WriteBatch {
    bytes: Vec<u8>,
    /// Per pair: where its key ends and where its value ends.
    ends: Vec<(usize, usize)>,
}

impl WriteBatch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// Appends a pair whose key and value the closures write.
    fn push_with(&mut self, key: impl FnOnce(&mut Vec<u8>), value: impl FnOnce(&mut Vec<u8>)) {
        key(&mut self.bytes);
        let key_end = self.bytes.len();
        value(&mut self.bytes);
        self.ends.push((key_end, self.bytes.len()));
    }

    /// Appends a pair.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.push_with(
            |bytes| bytes.extend_from_slice(key),
            |bytes| bytes.extend_from_slice(value),
        );
    }

    /// The pairs, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let pair = (&self.bytes[start..key_end], &self.bytes[key_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// Pairs in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the batch holds no pair.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// What the index logic needs from a sorted key-value store.
pub trait KeyValueStore {
    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError>;
    /// Up to `limit` entries with `from <= key < to`, in key order.
    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Pairs, HistoryError>;
    /// The values under `keys`, in their order.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, HistoryError> {
        keys.iter().map(|key| self.get(key)).collect()
    }
    /// Writes all pairs, all or none.
    fn write_atomically(&mut self, writes: &WriteBatch) -> Result<(), HistoryError>;
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

    fn write_atomically(&mut self, writes: &WriteBatch) -> Result<(), HistoryError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes.iter() {
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
        let store = SledStore {
            db: self.store.db.clone(),
        };
        Index::from_parts(store, self.archive.clone())
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
    /// A record's entries, encoded (kept to reuse its buffers).
    scratch: WriteBatch,
}

impl<S: KeyValueStore> Index<S> {
    pub(crate) fn from_parts(store: S, archive: RunStore) -> Self {
        Self {
            store,
            archive,
            scratch: WriteBatch::default(),
        }
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
        self.scratch.clear();
        for entry in entries {
            encode_entry(entry, &mut self.scratch);
        }
        self.scratch.push(KEY_APPLIED, &record_index.to_le_bytes());
        self.store.write_atomically(&self.scratch)
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
        let mut pairs = self.store.scan(&from, &to, limit.saturating_add(1))?;
        let more = pairs.len() > limit;
        pairs.truncate(limit);
        // The transfers of the lines that do not carry theirs, in one lookup.
        let wanted: Vec<Vec<u8>> = pairs
            .iter()
            .filter(|(_, value)| value.len() == STATEMENT_SIZE_BYTES)
            .map(|(key, _)| read_u128_be(key, 25).map(|id| transfer_key(TransferId(id))))
            .collect::<Result<_, _>>()?;
        let mut found = self.store.get_many(&wanted)?.into_iter();
        let lines = pairs
            .iter()
            .map(|(key, value)| {
                let indexed = if value.len() == STATEMENT_SIZE_BYTES {
                    found.next().flatten()
                } else {
                    None
                };
                decode_statement_line(account_id, key, value, indexed.as_deref())
            })
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

fn encode_entry(entry: &IndexEntry, batch: &mut WriteBatch) {
    match entry {
        IndexEntry::Transfer { position, transfer } => batch.push_with(
            |key| transfer_key_into(key, transfer.id),
            |value| {
                encode_position_into(value, *position);
                value.extend_from_slice(bytemuck::bytes_of(transfer));
            },
        ),
        IndexEntry::OrderEvent {
            order_id,
            position,
            operation,
        } => batch.push_with(
            |key| order_key_into(key, *order_id, *position),
            |value| value.push(*operation as u8),
        ),
        IndexEntry::Statement {
            line,
            transfer_indexed,
        } => batch.push_with(
            |key| {
                statement_key_into(
                    key,
                    line.account_id,
                    line.transfer.timestamp,
                    line.transfer.id,
                )
            },
            |value| {
                encode_position_into(value, line.position);
                for balance in [
                    line.balances_after.debits_pending,
                    line.balances_after.debits_posted,
                    line.balances_after.credits_pending,
                    line.balances_after.credits_posted,
                ] {
                    value.extend_from_slice(&balance.to_le_bytes());
                }
                // Most lines name the transfer indexed under their id: stored once, there.
                if !transfer_indexed {
                    value.extend_from_slice(bytemuck::bytes_of(&line.transfer));
                }
            },
        ),
    }
}

/// One line from its key and value; `indexed` is the transfer entry under the line's
/// transfer id, for a line that does not carry its transfer.
fn decode_statement_line(
    account_id: AccountId,
    key: &[u8],
    value: &[u8],
    indexed: Option<&[u8]>,
) -> Result<StatementLine, HistoryError> {
    let position = read_position(key, value, 0)?;
    let at = POSITION_SIZE_BYTES;
    let balances_after = Balances {
        debits_pending: read_u64(key, value, at)?,
        debits_posted: read_u64(key, value, at + 8)?,
        credits_pending: read_u64(key, value, at + 16)?,
        credits_posted: read_u64(key, value, at + 24)?,
    };
    let corrupt = |reason| HistoryError::Corrupt {
        key: key.to_vec(),
        reason,
    };
    let transfer = match value.len() {
        STATEMENT_SIZE_BYTES => {
            let indexed = indexed.ok_or_else(|| corrupt("statement line's transfer missing"))?;
            read_transfer(key, indexed, POSITION_SIZE_BYTES)?
        }
        size if size == STATEMENT_SIZE_BYTES + TRANSFER_SIZE_BYTES => {
            read_transfer(key, value, STATEMENT_SIZE_BYTES)?
        }
        _ => return Err(corrupt("statement line size")),
    };
    // The key names the transfer by id and time: a transfer found under the id must match.
    let named =
        read_u128_be(key, 25)? == transfer.id.0 && read_u64_be(key, 17)? == transfer.timestamp;
    if !named {
        return Err(corrupt("statement line's transfer differs"));
    }
    Ok(StatementLine {
        account_id,
        position,
        transfer,
        balances_after,
    })
}

fn transfer_key(id: TransferId) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    transfer_key_into(&mut key, id);
    key
}

fn transfer_key_into(key: &mut Vec<u8>, id: TransferId) {
    key.push(PREFIX_TRANSFER);
    key.extend_from_slice(&id.0.to_be_bytes());
}

fn order_key(id: OrderId, position: LogPosition) -> Vec<u8> {
    let mut key = Vec::with_capacity(29);
    order_key_into(&mut key, id, position);
    key
}

fn order_key_into(key: &mut Vec<u8>, id: OrderId, position: LogPosition) {
    key.push(PREFIX_ORDER);
    key.extend_from_slice(&id.0.to_be_bytes());
    key.extend_from_slice(&position.record_index.to_be_bytes());
    key.extend_from_slice(&position.command_index.to_be_bytes());
}

fn statement_key(account_id: AccountId, timestamp: u64, transfer_id: TransferId) -> Vec<u8> {
    let mut key = Vec::with_capacity(41);
    statement_key_into(&mut key, account_id, timestamp, transfer_id);
    key
}

fn statement_key_into(
    key: &mut Vec<u8>,
    account_id: AccountId,
    timestamp: u64,
    transfer_id: TransferId,
) {
    key.push(PREFIX_STATEMENT);
    key.extend_from_slice(&account_id.0.to_be_bytes());
    key.extend_from_slice(&timestamp.to_be_bytes());
    key.extend_from_slice(&transfer_id.0.to_be_bytes());
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

fn encode_position_into(value: &mut Vec<u8>, position: LogPosition) {
    value.extend_from_slice(&position.record_index.to_le_bytes());
    value.extend_from_slice(&position.command_index.to_le_bytes());
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

fn read_u128_be(key: &[u8], at: usize) -> Result<u128, HistoryError> {
    let raw = slice(key, key, at, 16)?;
    Ok(u128::from_be_bytes(raw.try_into().expect("16 bytes")))
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
