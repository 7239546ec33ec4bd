//! Archive runs: the outcomes of transfers that left the state machine's memory, one
//! immutable file per eviction, beside the sled index (`<index>/archive/`).
//!
//! A run is written once (temporary file, `fdatasync`, rename, directory `fsync`), so it
//! is whole or absent after a crash, and read with positioned reads: only its filter and
//! its chunk fences stay in memory (about two bytes per id), so memory does not grow with
//! the archive the way a page cache would. Lookups ask the runs' filters, newest first,
//! and read one 25 KiB chunk of each run whose filter says maybe.
//!
//! File layout, little-endian:
//!
//! ```text
//! chunks     entries × 25 bytes, sorted by id, 1,024 entries per chunk
//! metadata   per chunk: first id u128, crc32c of the chunk u32            (20 bytes each)
//! filter     surge_core::IdFilter bytes over every id of the run
//! footer     magic "SURGEARC", version u32, entries u64, chunks u64,
//!            filter bytes u64, crc32c u32 of metadata + filter + footer    (44 bytes)
//! ```

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use surge_core::{ArchivedTransfer, IdFilter, TransferId, ARCHIVED_TRANSFER_SIZE_BYTES};

use crate::files::{io_error, list_runs, sync_directory};
use crate::HistoryError;

/// Entries per chunk: the unit of a lookup's read.
const CHUNK_ENTRIES: usize = 1_024;
const MAGIC: &[u8; 8] = b"SURGEARC";
const VERSION: u32 = 1;
const FOOTER_SIZE_BYTES: usize = 8 + 4 + 8 + 8 + 8 + 4;
const CHUNK_META_SIZE_BYTES: usize = 16 + 4;
const ENTRY_SIZE_BYTES: usize = ARCHIVED_TRANSFER_SIZE_BYTES;

/// Where a run's bytes are.
enum RunBytes {
    File(File),
    Memory(Vec<u8>),
}

impl RunBytes {
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> std::io::Result<()> {
        match self {
            RunBytes::File(file) => file.read_exact_at(buffer, offset),
            RunBytes::Memory(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let source = start
                    .checked_add(buffer.len())
                    .and_then(|end| bytes.get(start..end))
                    .ok_or(std::io::ErrorKind::UnexpectedEof)?;
                buffer.copy_from_slice(source);
                Ok(())
            }
        }
    }
}

/// One run, with what lookups need in memory.
struct Run {
    name: String,
    bytes: RunBytes,
    filter: IdFilter,
    /// First id of each chunk.
    fences: Vec<u128>,
    checksums: Vec<u32>,
    entries: u64,
}

/// The archive runs of one index: in a directory, or in memory (for tests).
#[derive(Clone)]
pub(crate) struct RunStore {
    directory: Option<PathBuf>,
    /// Oldest first; shared by every handle on the index.
    runs: Arc<RwLock<Vec<Arc<Run>>>>,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunStore")
            .field("directory", &self.directory)
            .field("runs", &self.runs.read().len())
            .finish()
    }
}

fn corrupt(name: &str, reason: &'static str) -> HistoryError {
    HistoryError::Corrupt {
        key: name.as_bytes().to_vec(),
        reason,
    }
}

fn run_name(number: u64) -> String {
    format!("archive-{number:08}.run")
}

fn run_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("archive-")?.strip_suffix(".run")?;
    if digits.len() < 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl RunStore {
    /// Runs kept in memory only.
    pub(crate) fn in_memory() -> Self {
        Self {
            directory: None,
            runs: Arc::default(),
        }
    }

    /// Opens the runs in `directory` (created if missing), checking every run's footer,
    /// filter and fences; removes temporary files a crash left.
    pub(crate) fn open(directory: &Path) -> Result<Self, HistoryError> {
        std::fs::create_dir_all(directory)
            .map_err(io_error(format!("creating {}", directory.display())))?;
        let numbered = list_runs(directory, run_number)?;
        let mut runs = Vec::with_capacity(numbered.len());
        for (_, name) in numbered {
            let path = directory.join(&name);
            let file =
                File::open(&path).map_err(io_error(format!("opening {}", path.display())))?;
            runs.push(Arc::new(read_run(name, RunBytes::File(file))?));
        }
        Ok(Self {
            directory: Some(directory.to_path_buf()),
            runs: Arc::new(RwLock::new(runs)),
        })
    }

    /// Writes `entries` (any order; duplicates collapse) as a new run, durably.
    pub(crate) fn archive(&self, entries: &[ArchivedTransfer]) -> Result<(), HistoryError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|entry| entry.id);
        sorted.dedup_by_key(|entry| entry.id);
        let bytes = encode_run(&sorted);
        let number = {
            let runs = self.runs.read();
            runs.last()
                .and_then(|run| run_number(&run.name))
                .map_or(0, |last| last + 1)
        };
        let name = run_name(number);
        let stored = match &self.directory {
            None => RunBytes::Memory(bytes),
            Some(directory) => {
                write_durably(directory, &name, &bytes)?;
                let path = directory.join(&name);
                let file =
                    File::open(&path).map_err(io_error(format!("opening {}", path.display())))?;
                RunBytes::File(file)
            }
        };
        let run = read_run(name, stored)?;
        self.runs.write().push(Arc::new(run));
        Ok(())
    }

    /// The entry of `id`, from the newest run that holds it.
    pub(crate) fn get(&self, id: TransferId) -> Result<Option<ArchivedTransfer>, HistoryError> {
        let candidates: Vec<Arc<Run>> = self
            .runs
            .read()
            .iter()
            .rev()
            .filter(|run| run.filter.may_contain(id))
            .cloned()
            .collect();
        for run in candidates {
            if let Some(entry) = run.get(id)? {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }
}

impl Run {
    fn get(&self, id: TransferId) -> Result<Option<ArchivedTransfer>, HistoryError> {
        let chunk = self.fences.partition_point(|first| *first <= id.0);
        let Some(chunk) = chunk.checked_sub(1) else {
            return Ok(None);
        };
        let first_entry = chunk * CHUNK_ENTRIES;
        let entries = (self.entries as usize - first_entry).min(CHUNK_ENTRIES);
        let mut bytes = vec![0; entries * ENTRY_SIZE_BYTES];
        self.bytes
            .read_at((first_entry * ENTRY_SIZE_BYTES) as u64, &mut bytes)
            .map_err(io_error(format!("reading archive run {}", self.name)))?;
        if crc32c::crc32c(&bytes) != self.checksums[chunk] {
            return Err(corrupt(&self.name, "archive chunk checksum"));
        }
        let id_at = |index: usize| {
            let at = index * ENTRY_SIZE_BYTES;
            u128::from_le_bytes(bytes[at..at + 16].try_into().expect("16 bytes"))
        };
        let (mut low, mut high) = (0, entries);
        while low < high {
            let middle = (low + high) / 2;
            match id_at(middle).cmp(&id.0) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => {
                    let at = middle * ENTRY_SIZE_BYTES;
                    return ArchivedTransfer::from_bytes(&bytes[at..at + ENTRY_SIZE_BYTES])
                        .map(Some)
                        .ok_or_else(|| corrupt(&self.name, "archive entry"));
                }
            }
        }
        Ok(None)
    }
}

fn encode_run(sorted: &[ArchivedTransfer]) -> Vec<u8> {
    let chunks = sorted.len().div_ceil(CHUNK_ENTRIES);
    let mut bytes = Vec::with_capacity(sorted.len() * (ENTRY_SIZE_BYTES + 3) + 4096);
    let mut metadata = Vec::with_capacity(chunks * CHUNK_META_SIZE_BYTES);
    let mut filter = IdFilter::with_capacity(sorted.len() as u64);
    for chunk in sorted.chunks(CHUNK_ENTRIES) {
        let start = bytes.len();
        for entry in chunk {
            filter.insert(entry.id);
            bytes.extend_from_slice(&entry.to_bytes());
        }
        metadata.extend_from_slice(&chunk[0].id.0.to_le_bytes());
        metadata.extend_from_slice(&crc32c::crc32c(&bytes[start..]).to_le_bytes());
    }
    let filter = filter.to_bytes();
    let tail_start = bytes.len();
    bytes.extend_from_slice(&metadata);
    bytes.extend_from_slice(&filter);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&(chunks as u64).to_le_bytes());
    bytes.extend_from_slice(&(filter.len() as u64).to_le_bytes());
    let checksum = crc32c::crc32c(&bytes[tail_start..]);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Reads and checks a run's footer, fences and filter (not its chunks: each is checked
/// when a lookup reads it).
fn read_run(name: String, bytes: RunBytes) -> Result<Run, HistoryError> {
    let size = match &bytes {
        RunBytes::File(file) => file
            .metadata()
            .map_err(io_error(format!("reading archive run {name}")))?
            .len(),
        RunBytes::Memory(bytes) => bytes.len() as u64,
    };
    let bad = |reason| corrupt(&name, reason);
    let footer_at = size
        .checked_sub(FOOTER_SIZE_BYTES as u64)
        .ok_or_else(|| bad("archive run too short"))?;
    let mut footer = [0u8; FOOTER_SIZE_BYTES];
    bytes
        .read_at(footer_at, &mut footer)
        .map_err(io_error(format!("reading archive run {name}")))?;
    let u64_at = |at: usize| u64::from_le_bytes(footer[at..at + 8].try_into().expect("8 bytes"));
    if &footer[..8] != MAGIC {
        return Err(bad("archive run magic"));
    }
    if u32::from_le_bytes(footer[8..12].try_into().expect("4 bytes")) != VERSION {
        return Err(bad("archive run version"));
    }
    let (entries, chunks, filter_size) = (u64_at(12), u64_at(20), u64_at(28));
    let sizes = entries
        .checked_mul(ENTRY_SIZE_BYTES as u64)
        .zip(chunks.checked_mul(CHUNK_META_SIZE_BYTES as u64));
    let Some((chunk_bytes, metadata_bytes)) = sizes else {
        return Err(bad("archive run counts"));
    };
    let expected = chunk_bytes
        .checked_add(metadata_bytes)
        .and_then(|sum| sum.checked_add(filter_size))
        .and_then(|sum| sum.checked_add(FOOTER_SIZE_BYTES as u64));
    if expected != Some(size) || chunks != entries.div_ceil(CHUNK_ENTRIES as u64) {
        return Err(bad("archive run counts"));
    }
    let mut tail = vec![0u8; (metadata_bytes + filter_size) as usize + FOOTER_SIZE_BYTES];
    bytes
        .read_at(chunk_bytes, &mut tail)
        .map_err(io_error(format!("reading archive run {name}")))?;
    let (checked, stored) = tail.split_at(tail.len() - 4);
    if crc32c::crc32c(checked).to_le_bytes() != stored {
        return Err(bad("archive run checksum"));
    }
    let (metadata, rest) = tail.split_at(metadata_bytes as usize);
    let filter = IdFilter::from_bytes(&rest[..filter_size as usize])
        .ok_or_else(|| bad("archive run filter"))?;
    let mut fences = Vec::with_capacity(chunks as usize);
    let mut checksums = Vec::with_capacity(chunks as usize);
    for meta in metadata.chunks_exact(CHUNK_META_SIZE_BYTES) {
        fences.push(u128::from_le_bytes(
            meta[..16].try_into().expect("16 bytes"),
        ));
        checksums.push(u32::from_le_bytes(meta[16..].try_into().expect("4 bytes")));
    }
    if fences.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(bad("archive run fences"));
    }
    Ok(Run {
        name,
        bytes,
        filter,
        fences,
        checksums,
        entries,
    })
}

/// Writes `name` in `directory` so that it is whole or absent after a crash.
fn write_durably(directory: &Path, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
    let temporary = directory.join(format!("{name}.tmp"));
    let path = directory.join(name);
    let mut file =
        File::create(&temporary).map_err(io_error(format!("creating {}", temporary.display())))?;
    // A step at a time, each sent to the disk as it goes (`surge_wal::WriteBehind`).
    let mut behind = surge_wal::WriteBehind::new();
    bytes
        .chunks(surge_wal::constants::WRITE_BEHIND_STEP_BYTES as usize)
        .try_for_each(|step| {
            file.write_all(step)?;
            behind.appended(&file, step.len() as u64)
        })
        .and_then(|()| file.sync_data())
        .map_err(io_error(format!("writing {}", temporary.display())))?;
    drop(file);
    std::fs::rename(&temporary, &path)
        .map_err(io_error(format!("renaming {}", temporary.display())))?;
    sync_directory(directory)
}
