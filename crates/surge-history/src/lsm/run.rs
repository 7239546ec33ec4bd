//! One sorted run of the log-structured index: an immutable file of key-value entries in
//! key order, written once (temporary file, `fdatasync`, rename, directory `fsync`) so it
//! is whole or absent after a crash, and read with positioned reads of one chunk at a time.
//! Only the chunk fences (each chunk's first key), their checksums and a filter over the
//! keys that point lookups ask for stay in memory.
//!
//! File layout, little-endian:
//!
//! ```text
//! chunks     entries (key length u16, value length u32, key, value), sorted by key,
//!            a chunk closes once it holds CHUNK_BYTES or more
//! metadata   per chunk: offset u64, size u32, crc32c u32, first key length u16, first key
//! filter     surge_core::IdFilter bytes over the hashes of the filtered keys
//! footer     magic "SURGEIDX", version u32, level u32, first and last flush number u64,
//!            entries u64, chunks u64, metadata bytes u64, filter bytes u64,
//!            crc32c u32 of metadata + filter + footer                      (68 bytes)
//! ```

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use surge_core::{IdFilter, TransferId};

use super::memtable::prefix_of;
use crate::files::{io_error, sync_directory};
use crate::HistoryError;

/// A chunk closes once it holds this many bytes: the unit of a lookup's read.
const CHUNK_BYTES: usize = 32 << 10;
/// Closed chunks are written to the file once they fill this many bytes.
const WRITE_BYTES: usize = 1 << 20;
/// Filter insertions a writer keeps waiting while their blocks are loaded into the cache.
const FILTER_PREFETCH_AHEAD: usize = 8;
const MAGIC: &[u8; 8] = b"SURGEIDX";
const VERSION: u32 = 1;
const FOOTER_SIZE_BYTES: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8 + 4;
const ENTRY_HEADER_BYTES: usize = 2 + 4;
/// Longest key a run holds (its length is a u16).
pub(crate) const KEY_SIZE_MAX_BYTES: usize = u16::MAX as usize;

/// Which keys go into a run's filter: those point lookups ask for. A lookup of any other
/// key reads a chunk of every run.
pub(crate) type FilterPolicy = fn(&[u8]) -> bool;

fn corrupt(name: &str, reason: &'static str) -> HistoryError {
    HistoryError::Corrupt {
        key: name.as_bytes().to_vec(),
        reason,
    }
}

/// A stable 128-bit hash of a key for the filter (the filter mixes it further). Stable
/// across builds and versions: filters are stored in files.
fn key_hash(key: &[u8]) -> TransferId {
    let mut low = 0x243F_6A88_85A3_08D3_u64 ^ key.len() as u64;
    let mut high = 0x1319_8A2E_0370_7344_u64;
    for word in key.chunks(8) {
        let mut bytes = [0u8; 8];
        bytes[..word.len()].copy_from_slice(word);
        let word = u64::from_le_bytes(bytes);
        low = mix64(low ^ word);
        high = mix64(high.rotate_left(29) ^ word ^ low);
    }
    TransferId(u128::from(high) << 64 | u128::from(low))
}

/// The splitmix64 finalizer.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A run's file name: the flush numbers it covers, so a merged run sorts with the runs it
/// replaced and a crash mid-merge leaves names that say which runs are redundant.
pub(crate) fn run_name(first: u64, last: u64) -> String {
    format!("index-{first:012}-{last:012}.run")
}

/// The flush numbers a run's file name covers.
pub(crate) fn run_range(name: &str) -> Option<(u64, u64)> {
    let digits = name.strip_prefix("index-")?.strip_suffix(".run")?;
    let (first, last) = digits.split_once('-')?;
    let number = |digits: &str| {
        (digits.len() >= 12 && digits.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    let (first, last) = (number(first)?, number(last)?);
    (first <= last).then_some((first, last))
}

struct ChunkMeta {
    offset: u64,
    size: u32,
    checksum: u32,
    first_key: Box<[u8]>,
}

/// One run, with what lookups need in memory.
pub(crate) struct Run {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    file: File,
    /// How many merges made it (0: written from memory).
    pub(crate) level: u32,
    /// Flush numbers it covers.
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) entries: u64,
    pub(crate) size_bytes: u64,
    chunks: Vec<ChunkMeta>,
    filter: IdFilter,
    policy: FilterPolicy,
}

/// One chunk's entries, checked and split.
pub(crate) struct Chunk {
    bytes: Vec<u8>,
    /// Per entry: key start, key end (= value start), value end.
    entries: Vec<(usize, usize, usize)>,
}

impl Chunk {
    fn parse(name: &str, bytes: Vec<u8>) -> Result<Chunk, HistoryError> {
        let mut entries = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = bytes
                .get(at..at + ENTRY_HEADER_BYTES)
                .ok_or_else(|| corrupt(name, "run entry header"))?;
            let key_len = u16::from_le_bytes([header[0], header[1]]) as usize;
            let value_len = u32::from_le_bytes(header[2..6].try_into().expect("4 bytes")) as usize;
            let key_at = at + ENTRY_HEADER_BYTES;
            let value_at = key_at + key_len;
            let end = value_at
                .checked_add(value_len)
                .filter(|end| *end <= bytes.len())
                .ok_or_else(|| corrupt(name, "run entry size"))?;
            entries.push((key_at, value_at, end));
            at = end;
        }
        let chunk = Chunk { bytes, entries };
        let ordered = (1..chunk.len()).all(|i| chunk.key(i - 1) < chunk.key(i));
        if !ordered {
            return Err(corrupt(name, "run chunk order"));
        }
        Ok(chunk)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn key(&self, index: usize) -> &[u8] {
        let (key, value, _) = self.entries[index];
        &self.bytes[key..value]
    }

    pub(crate) fn value(&self, index: usize) -> &[u8] {
        let (_, value, end) = self.entries[index];
        &self.bytes[value..end]
    }

    /// The first entry whose key is at least `key`.
    fn seek(&self, key: &[u8]) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let middle = (low + high) / 2;
            if self.key(middle) < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }
}

impl Run {
    /// Opens run `name` in `directory`, checking its footer, metadata and filter (not its
    /// chunks: each is checked when it is read).
    pub(crate) fn open(
        directory: &Path,
        name: &str,
        policy: FilterPolicy,
    ) -> Result<Run, HistoryError> {
        let path = directory.join(name);
        let reading = || format!("reading index run {}", path.display());
        let file = File::open(&path).map_err(io_error(format!("opening {}", path.display())))?;
        let size = file.metadata().map_err(io_error(reading()))?.len();
        let bad = |reason| corrupt(name, reason);
        let footer_at = size
            .checked_sub(FOOTER_SIZE_BYTES as u64)
            .ok_or_else(|| bad("index run too short"))?;
        let mut footer = [0u8; FOOTER_SIZE_BYTES];
        file.read_exact_at(&mut footer, footer_at)
            .map_err(io_error(reading()))?;
        let u32_at = |at: usize| u32::from_le_bytes(footer[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(footer[at..at + 8].try_into().expect("8"));
        if &footer[..8] != MAGIC {
            return Err(bad("index run magic"));
        }
        if u32_at(8) != VERSION {
            return Err(bad("index run version"));
        }
        let (level, first, last) = (u32_at(12), u64_at(16), u64_at(24));
        let (entries, chunks, metadata_bytes, filter_bytes) =
            (u64_at(32), u64_at(40), u64_at(48), u64_at(56));
        if run_range(name) != Some((first, last)) {
            return Err(bad("index run name"));
        }
        let tail_bytes = metadata_bytes
            .checked_add(filter_bytes)
            .and_then(|sum| sum.checked_add(FOOTER_SIZE_BYTES as u64))
            .filter(|tail| *tail <= size)
            .ok_or_else(|| bad("index run sizes"))?;
        let tail_at = size - tail_bytes;
        let mut tail = vec![0u8; tail_bytes as usize];
        file.read_exact_at(&mut tail, tail_at)
            .map_err(io_error(reading()))?;
        let (checked, stored) = tail.split_at(tail.len() - 4);
        if crc32c::crc32c(checked).to_le_bytes() != stored {
            return Err(bad("index run checksum"));
        }
        let (mut metadata, rest) = tail.split_at(metadata_bytes as usize);
        let filter = IdFilter::from_bytes(&rest[..filter_bytes as usize])
            .ok_or_else(|| bad("index run filter"))?;
        let mut metas = Vec::new();
        let mut expected_offset = 0u64;
        while !metadata.is_empty() {
            let fixed = metadata
                .get(..18)
                .ok_or_else(|| bad("index run metadata"))?;
            let offset = u64::from_le_bytes(fixed[..8].try_into().expect("8 bytes"));
            let size = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
            let checksum = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
            let key_len = u16::from_le_bytes([fixed[16], fixed[17]]) as usize;
            let first_key = metadata
                .get(18..18 + key_len)
                .ok_or_else(|| bad("index run metadata"))?;
            if offset != expected_offset {
                return Err(bad("index run chunk offsets"));
            }
            expected_offset += u64::from(size);
            metas.push(ChunkMeta {
                offset,
                size,
                checksum,
                first_key: first_key.into(),
            });
            metadata = &metadata[18 + key_len..];
        }
        let ordered = metas
            .windows(2)
            .all(|pair| pair[0].first_key < pair[1].first_key);
        if metas.len() as u64 != chunks || expected_offset != tail_at || !ordered {
            return Err(bad("index run chunks"));
        }
        Ok(Run {
            name: name.to_string(),
            path,
            file,
            level,
            first,
            last,
            entries,
            size_bytes: size,
            chunks: metas,
            filter,
            policy,
        })
    }

    /// Keys in its filter.
    pub(crate) fn filtered(&self) -> u64 {
        self.filter.len()
    }

    /// Chunks in the file.
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Reads and checks chunk `index`.
    pub(crate) fn chunk(&self, index: usize) -> Result<Chunk, HistoryError> {
        let meta = &self.chunks[index];
        let mut bytes = vec![0u8; meta.size as usize];
        self.file
            .read_exact_at(&mut bytes, meta.offset)
            .map_err(io_error(format!(
                "reading index run {}",
                self.path.display()
            )))?;
        if crc32c::crc32c(&bytes) != meta.checksum {
            return Err(corrupt(&self.name, "index run chunk checksum"));
        }
        Chunk::parse(&self.name, bytes)
    }

    /// The chunk that would hold `key`, if any could.
    fn chunk_for(&self, key: &[u8]) -> Option<usize> {
        let after = self.chunks.partition_point(|meta| &*meta.first_key <= key);
        after.checked_sub(1)
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError> {
        if (self.policy)(key) && !self.filter.may_contain(key_hash(key)) {
            return Ok(None);
        }
        let Some(index) = self.chunk_for(key) else {
            return Ok(None);
        };
        let chunk = self.chunk(index)?;
        let at = chunk.seek(key);
        Ok((at < chunk.len() && chunk.key(at) == key).then(|| chunk.value(at).to_vec()))
    }

    /// Up to `limit` entries with `from <= key < to`, in key order.
    pub(crate) fn scan(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
        found: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), HistoryError> {
        let mut index = self.chunk_for(from).unwrap_or(0);
        let mut taken = 0;
        while index < self.chunks.len() && &*self.chunks[index].first_key < to {
            let chunk = self.chunk(index)?;
            for at in chunk.seek(from)..chunk.len() {
                if chunk.key(at) >= to || taken == limit {
                    return Ok(());
                }
                found.push((chunk.key(at).to_vec(), chunk.value(at).to_vec()));
                taken += 1;
            }
            index += 1;
        }
        Ok(())
    }
}

/// Writes a run entry by entry, in key order.
pub(crate) struct RunWriter {
    directory: PathBuf,
    name: String,
    temporary: PathBuf,
    file: File,
    /// Starts the disk's writes of each written megabyte, so the publisher's `fdatasync`
    /// does not flush the whole run at once ahead of the log's syncs.
    behind: surge_wal::WriteBehind,
    /// Closed chunks not yet written, then the open chunk from `chunk_at`: each entry is
    /// copied once, into the bytes the file gets.
    buffer: Vec<u8>,
    chunk_at: usize,
    chunk_first_key: Vec<u8>,
    /// Keys' hashes whose filter blocks were hinted to the cache, inserted a few entries
    /// later.
    filter_pending: std::collections::VecDeque<TransferId>,
    last_key: Option<Vec<u8>>,
    offset: u64,
    metadata: Vec<u8>,
    chunks: u64,
    entries: u64,
    filter: IdFilter,
    policy: FilterPolicy,
    level: u32,
    first: u64,
    last: u64,
}

impl RunWriter {
    /// Starts run `[first, last]` at `level` in `directory`, sized for about `entries`.
    pub(crate) fn create(
        directory: &Path,
        level: u32,
        (first, last): (u64, u64),
        entries: u64,
        policy: FilterPolicy,
    ) -> Result<RunWriter, HistoryError> {
        let name = run_name(first, last);
        let temporary = directory.join(format!("{name}.tmp"));
        let file = File::create(&temporary)
            .map_err(io_error(format!("creating {}", temporary.display())))?;
        Ok(RunWriter {
            directory: directory.to_path_buf(),
            name,
            temporary,
            file,
            behind: surge_wal::WriteBehind::new(),
            buffer: Vec::with_capacity(WRITE_BYTES + CHUNK_BYTES * 2),
            chunk_at: 0,
            chunk_first_key: Vec::new(),
            filter_pending: std::collections::VecDeque::with_capacity(FILTER_PREFETCH_AHEAD + 1),
            last_key: None,
            offset: 0,
            metadata: Vec::new(),
            chunks: 0,
            entries: 0,
            filter: IdFilter::with_capacity(entries.max(1)),
            policy,
            level,
            first,
            last,
        })
    }

    /// Appends an entry; keys must come in increasing order.
    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), HistoryError> {
        debug_assert!(key.len() <= KEY_SIZE_MAX_BYTES);
        debug_assert!(self.last_key.as_deref().is_none_or(|last| last < key));
        if self.buffer.len() == self.chunk_at {
            self.chunk_first_key.clear();
            self.chunk_first_key.extend_from_slice(key);
        }
        self.buffer
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buffer
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buffer.extend_from_slice(key);
        self.buffer.extend_from_slice(value);
        if (self.policy)(key) {
            let hash = key_hash(key);
            self.filter.prefetch(hash);
            self.filter_pending.push_back(hash);
            if self.filter_pending.len() > FILTER_PREFETCH_AHEAD {
                let due = self.filter_pending.pop_front().expect("pending");
                self.filter.insert(due);
            }
        }
        self.entries += 1;
        if cfg!(debug_assertions) {
            self.last_key = Some(key.to_vec());
        }
        if self.buffer.len() - self.chunk_at >= CHUNK_BYTES {
            self.close_chunk()?;
        }
        Ok(())
    }

    fn close_chunk(&mut self) -> Result<(), HistoryError> {
        let chunk = &self.buffer[self.chunk_at..];
        if chunk.is_empty() {
            return Ok(());
        }
        self.metadata.extend_from_slice(&self.offset.to_le_bytes());
        self.metadata
            .extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        self.metadata
            .extend_from_slice(&crc32c::crc32c(chunk).to_le_bytes());
        self.metadata
            .extend_from_slice(&(self.chunk_first_key.len() as u16).to_le_bytes());
        self.metadata.extend_from_slice(&self.chunk_first_key);
        self.offset += chunk.len() as u64;
        self.chunks += 1;
        self.chunk_at = self.buffer.len();
        if self.buffer.len() >= WRITE_BYTES {
            self.write_buffer()?;
        }
        Ok(())
    }

    /// Writes the closed chunks.
    fn write_buffer(&mut self) -> Result<(), HistoryError> {
        let written = &self.buffer[..self.chunk_at];
        self.file
            .write_all(written)
            .and_then(|()| self.behind.appended(&self.file, written.len() as u64))
            .map_err(io_error(format!("writing {}", self.temporary.display())))?;
        self.buffer.drain(..self.chunk_at);
        self.chunk_at = 0;
        Ok(())
    }

    /// Writes the tail, makes the file durable under its name and opens it.
    pub(crate) fn finish(self) -> Result<Run, HistoryError> {
        self.write_tail()?.publish()
    }

    /// Writes the rest of the file, not yet durable: [`WrittenRun::publish`] makes it so.
    pub(crate) fn write_tail(mut self) -> Result<WrittenRun, HistoryError> {
        self.close_chunk()?;
        self.write_buffer()?;
        for due in std::mem::take(&mut self.filter_pending) {
            self.filter.insert(due);
        }
        let filter = self.filter.to_bytes();
        let mut tail = std::mem::take(&mut self.metadata);
        let metadata_bytes = tail.len() as u64;
        tail.extend_from_slice(&filter);
        tail.extend_from_slice(MAGIC);
        tail.extend_from_slice(&VERSION.to_le_bytes());
        tail.extend_from_slice(&self.level.to_le_bytes());
        for value in [
            self.first,
            self.last,
            self.entries,
            self.chunks,
            metadata_bytes,
            filter.len() as u64,
        ] {
            tail.extend_from_slice(&value.to_le_bytes());
        }
        tail.extend_from_slice(&crc32c::crc32c(&tail).to_le_bytes());
        let writing = || format!("writing {}", self.temporary.display());
        self.file.write_all(&tail).map_err(io_error(writing()))?;
        Ok(WrittenRun {
            directory: self.directory,
            name: self.name,
            temporary: self.temporary,
            file: self.file,
            policy: self.policy,
        })
    }

    /// Gives up: removes the temporary file.
    pub(crate) fn abandon(self) {
        let temporary = self.temporary.clone();
        drop(self);
        let _ = surge_wal::remove_in_steps(&temporary);
    }
}

/// A run file written whole under its temporary name, not yet durable.
pub(crate) struct WrittenRun {
    directory: PathBuf,
    name: String,
    temporary: PathBuf,
    file: File,
    policy: FilterPolicy,
}

impl WrittenRun {
    /// Makes the file durable under its name (`fdatasync`, rename, directory `fsync`), so
    /// it is whole or absent after a crash, and opens it.
    pub(crate) fn publish(self) -> Result<Run, HistoryError> {
        self.file
            .sync_data()
            .map_err(io_error(format!("writing {}", self.temporary.display())))?;
        let path = self.directory.join(&self.name);
        std::fs::rename(&self.temporary, &path)
            .map_err(io_error(format!("renaming {}", self.temporary.display())))?;
        sync_directory(&self.directory)?;
        Run::open(&self.directory, &self.name, self.policy)
    }
}

/// Reads a run's entries in order, one chunk at a time (for merges).
pub(crate) struct RunCursor<'a> {
    run: &'a Run,
    chunk_index: usize,
    chunk: Option<Chunk>,
    at: usize,
    prefix: (u128, u128),
}

impl<'a> RunCursor<'a> {
    pub(crate) fn new(run: &'a Run) -> Result<Self, HistoryError> {
        let mut cursor = RunCursor {
            run,
            chunk_index: 0,
            chunk: None,
            at: 0,
            prefix: (0, 0),
        };
        cursor.load()?;
        Ok(cursor)
    }

    fn load(&mut self) -> Result<(), HistoryError> {
        self.chunk = None;
        self.at = 0;
        while self.chunk_index < self.run.chunk_count() {
            let chunk = self.run.chunk(self.chunk_index)?;
            self.chunk_index += 1;
            if chunk.len() > 0 {
                self.prefix = prefix_of(chunk.key(0));
                self.chunk = Some(chunk);
                break;
            }
        }
        Ok(())
    }

    /// The current entry, `None` at the end.
    pub(crate) fn current(&self) -> Option<(&[u8], &[u8])> {
        let chunk = self.chunk.as_ref()?;
        Some((chunk.key(self.at), chunk.value(self.at)))
    }

    /// The current key's first 32 bytes as integers (see `memtable::prefix_of`).
    pub(crate) fn prefix(&self) -> (u128, u128) {
        self.prefix
    }

    pub(crate) fn advance(&mut self) -> Result<(), HistoryError> {
        let Some(chunk) = &self.chunk else {
            return Ok(());
        };
        self.at += 1;
        if self.at == chunk.len() {
            self.load()?;
        } else {
            self.prefix = prefix_of(chunk.key(self.at));
        }
        Ok(())
    }
}
