//! The history index on disk as a log-structured store: what the apply thread writes goes
//! into a memtable (one append into a byte buffer per entry); a full memtable is frozen
//! and background threads sort it, write it as a run file and publish it (`worker.rs`);
//! two more merge runs of the same level, [`MERGE_FANOUT`] at a time, so their number
//! grows with the logarithm of the history. Reads look in the memtable, the frozen ones and
//! the runs, newest first, and the newest value of a key wins.
//!
//! Crash safety follows from the index's contract: the entries of one record and its
//! `applied` mark are written together into the memtable and frozen together, and runs are
//! written in order, each whole or absent, so the runs on disk always hold a prefix of the
//! records with their `applied` mark; after a crash the index is caught up from the log
//! after it. [`LsmStore::flush`] freezes the memtable and waits until it and every one
//! frozen before it are durable runs: the node's checkpoint thread calls it before every
//! checkpoint, so a crash never leaves the index behind the newest checkpoint (recovery
//! would then replay from record 0).
//!
//! The apply thread waits only when [`FROZEN_MAX`] frozen memtables are queued, or when
//! merges fell behind ([`FIRST_LEVEL_RUNS_MAX`], [`RUNS_MAX`]): the index's backpressure,
//! so memory stays bounded when the disk is slower than the log, and reads (which look in
//! every run) stay bounded when the merges are slower than the writes.

mod memtable;
mod release;
mod run;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::archive_runs::RunStore;
use crate::files::{io_error, list_runs};
use crate::sled_history::{Index, KeyValueStore, Pairs, WriteBatch};
use crate::HistoryError;
use memtable::Memtable;
use run::{run_range, FilterPolicy, Run};

/// A memtable is frozen once it holds this many bytes.
pub const MEMTABLE_BYTES_DEFAULT: usize = 16 << 20;

/// The largest memtable [`LsmStore::open`] accepts (its offsets are 32-bit).
pub const MEMTABLE_BYTES_MAX: usize = 1 << 30;

/// Frozen memtables waiting to be written before the writer waits.
pub const FROZEN_MAX: usize = 4;

/// Runs written from memory, and runs in all, with a merge due, at which the writer waits
/// for the mergers: a read looks in every run, so merges falling behind the writes would
/// make reads slower without bound.
pub const FIRST_LEVEL_RUNS_MAX: usize = 2 * MERGE_FANOUT;
pub const RUNS_MAX: usize = 6 * MERGE_FANOUT;

/// Runs of one level merged into one of the next: each entry is rewritten once per level
/// (log base 8 of the index's size over a memtable's), and a range read looks in at most
/// seven runs per level.
pub const MERGE_FANOUT: usize = 8;

/// Name of the lock file that keeps a second process off the index.
const LOCK_FILE: &str = "LOCK";

/// Everything readers see, under one lock so no entry is missed while it moves from a
/// frozen memtable to a run or from runs to their merge.
#[derive(Default)]
struct View {
    active: Memtable,
    /// Oldest first.
    frozen: VecDeque<Arc<Memtable>>,
    /// Oldest first.
    runs: Vec<Arc<Run>>,
    /// A written memtable's emptied memory, for the next one: a memtable that grew to its
    /// size once is not grown (copied, and its pages faulted in) again.
    spare: Option<Memtable>,
    /// Memtables frozen since the store opened. Only publishing removes one from `frozen`
    /// (oldest first), so this less `frozen.len()` is how many are published: what a
    /// flush waits for.
    frozen_total: u64,
}

impl View {
    /// Memtables published as runs since the store opened.
    fn published_total(&self) -> u64 {
        self.frozen_total - self.frozen.len() as u64
    }
}

/// What the background threads and the writer say to each other.
#[derive(Default)]
struct Control {
    stopping: bool,
    /// Why a background thread stopped: nothing more can be stored.
    failed: Option<String>,
    /// The next flush number.
    next_flush: u64,
    /// Frozen memtables (the oldest) written as runs and handed to the publisher, not yet
    /// published.
    handed: usize,
    /// Tests hold the mergers back with it.
    #[cfg(test)]
    merges_paused: bool,
    /// Tests make the publisher panic at its next run with it.
    #[cfg(test)]
    publisher_panics: bool,
}

impl Control {
    fn merges_paused(&self) -> bool {
        #[cfg(test)]
        return self.merges_paused;
        #[cfg(not(test))]
        false
    }
}

struct Shared {
    directory: PathBuf,
    policy: FilterPolicy,
    memtable_bytes: usize,
    view: RwLock<View>,
    control: Mutex<Control>,
    /// Signalled when a memtable is frozen, a run is written or the store stops.
    changed: Condvar,
    /// Held for the store's life: its exclusive `flock` keeps a second handle off.
    _lock: File,
}

/// A sorted, log-structured store in a directory: see the module documentation.
pub struct LsmStore {
    shared: Arc<Shared>,
    /// The writer's background threads; `None` on reader handles.
    workers: Option<worker::Workers>,
}

impl std::fmt::Debug for LsmStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.shared.view.read();
        f.debug_struct("LsmStore")
            .field("directory", &self.shared.directory)
            .field("active_entries", &view.active.len())
            .field("frozen", &view.frozen.len())
            .field("runs", &view.runs.len())
            .finish()
    }
}

/// What the store holds, for tests and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LsmStats {
    /// Entries in the memtable being written.
    pub active_entries: usize,
    /// Frozen memtables not yet published as runs.
    pub frozen: usize,
    /// Run files.
    pub runs: usize,
    /// Entries in the run files (a key in several runs counts in each).
    pub run_entries: u64,
    /// Bytes of the run files.
    pub run_bytes: u64,
}

impl LsmStore {
    /// Opens (or creates) the store in `directory`: takes its lock, removes temporary files
    /// a crash left and runs a crash mid-merge made redundant, checks every run's footer,
    /// and starts the background threads. `policy` says which keys go into the runs'
    /// filters (those looked up one by one); `memtable_bytes` when a memtable is frozen.
    pub(crate) fn open(
        directory: &Path,
        policy: FilterPolicy,
        memtable_bytes: usize,
    ) -> Result<LsmStore, HistoryError> {
        std::fs::create_dir_all(directory)
            .map_err(io_error(format!("creating {}", directory.display())))?;
        let lock_path = directory.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(format!("opening {}", lock_path.display())))?;
        // flock: released by the kernel when the process dies, however it dies.
        match fs2::FileExt::try_lock_exclusive(&lock) {
            Ok(()) => {}
            Err(error) if error.kind() == fs2::lock_contended_error().kind() => {
                return Err(HistoryError::Locked(directory.display().to_string()))
            }
            Err(error) => return Err(io_error(format!("locking {}", lock_path.display()))(error)),
        }
        let runs = open_runs(directory, policy)?;
        let next_flush = runs.last().map_or(0, |run| run.last + 1);
        let shared = Arc::new(Shared {
            directory: directory.to_path_buf(),
            policy,
            memtable_bytes: memtable_bytes.clamp(1, MEMTABLE_BYTES_MAX),
            view: RwLock::new(View {
                runs,
                ..View::default()
            }),
            control: Mutex::new(Control {
                next_flush,
                ..Control::default()
            }),
            changed: Condvar::new(),
            _lock: lock,
        });
        let workers = worker::Workers::start(&shared);
        Ok(LsmStore {
            shared,
            workers: Some(workers),
        })
    }

    /// A handle that reads what every handle wrote; it starts no threads, and its writes
    /// are refused ([`HistoryError::ReadOnly`]: they would be unordered with the writer's).
    pub fn reader(&self) -> LsmStore {
        LsmStore {
            shared: self.shared.clone(),
            workers: None,
        }
    }

    /// Freezes the memtable and waits until it, and every memtable frozen before it, is a
    /// durable run: everything written before the call. Memtables the writer freezes
    /// meanwhile are not waited for, so a flush from another handle (the checkpoint
    /// thread's) ends while the writer goes on.
    pub fn flush(&self) -> Result<(), HistoryError> {
        let target = self.freeze();
        let mut control = self.shared.control.lock();
        loop {
            if let Some(reason) = &control.failed {
                return Err(HistoryError::Background(reason.clone()));
            }
            if self.shared.view.read().published_total() >= target {
                return Ok(());
            }
            self.shared.changed.wait(&mut control);
        }
    }

    /// What the store holds now.
    pub fn stats(&self) -> LsmStats {
        let view = self.shared.view.read();
        LsmStats {
            active_entries: view.active.len(),
            frozen: view.frozen.len(),
            runs: view.runs.len(),
            run_entries: view.runs.iter().map(|run| run.entries).sum(),
            run_bytes: view.runs.iter().map(|run| run.size_bytes).sum(),
        }
    }

    /// Waits (up to 30 s) until no merge is due or running: for tests that count runs.
    #[cfg(test)]
    fn settle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while worker::pick(&self.shared.view.read().runs).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "merges did not settle"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Freezes the memtable, if it holds anything; returns how many memtables were frozen
    /// since the store opened.
    fn freeze(&self) -> u64 {
        let mut view = self.shared.view.write();
        if view.active.is_empty() {
            return view.frozen_total;
        }
        let next = view.spare.take().unwrap_or_default();
        let full = std::mem::replace(&mut view.active, next);
        view.frozen.push_back(Arc::new(full));
        view.frozen_total += 1;
        let total = view.frozen_total;
        drop(view);
        // Under the control lock, so a thread between its check and its wait is not missed.
        let _control = self.shared.control.lock();
        self.shared.changed.notify_all();
        total
    }

    /// Waits while [`FROZEN_MAX`] frozen memtables are queued, or while the runs reach
    /// [`FIRST_LEVEL_RUNS_MAX`] or [`RUNS_MAX`] with a merge due.
    fn wait_for_room(&self) -> Result<(), HistoryError> {
        let mut control = self.shared.control.lock();
        loop {
            if let Some(reason) = &control.failed {
                return Err(HistoryError::Background(reason.clone()));
            }
            if has_room(&self.shared.view.read()) {
                return Ok(());
            }
            self.shared.changed.wait(&mut control);
        }
    }

    /// The memtables and runs to read, newest last, without holding the view's lock
    /// through disk reads; `read_active` runs on the memtable being written, under it.
    fn sources<T>(
        &self,
        read_active: impl FnOnce(&Memtable) -> T,
    ) -> (T, Vec<Arc<Memtable>>, Vec<Arc<Run>>) {
        let view = self.shared.view.read();
        let active = read_active(&view.active);
        let frozen = view.frozen.iter().cloned().collect();
        (active, frozen, view.runs.clone())
    }
}

impl Drop for LsmStore {
    fn drop(&mut self) {
        if let Some(workers) = self.workers.take() {
            // What is in memory is written out so a restart catches up less; a failure
            // here loses nothing (the log has it all).
            self.freeze();
            workers.stop(&self.shared);
        }
    }
}

impl KeyValueStore for LsmStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError> {
        // The `applied` mark, read before every record, is almost always in the memtable.
        if let Some(value) = self.shared.view.read().active.get(key) {
            return Ok(Some(value.to_vec()));
        }
        let ((), frozen, runs) = self.sources(|_| ());
        if let Some(value) = frozen.iter().rev().find_map(|table| table.get(key)) {
            return Ok(Some(value.to_vec()));
        }
        for run in runs.iter().rev() {
            if let Some(value) = run.get(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, HistoryError> {
        let mut found = vec![None; keys.len()];
        let ((), frozen, runs) = self.sources(|active| active.get_many(keys, &mut found));
        for table in frozen.iter().rev() {
            table.get_many(keys, &mut found);
        }
        for (key, value) in keys.iter().zip(&mut found) {
            if value.is_some() {
                continue;
            }
            for run in runs.iter().rev() {
                if let Some(stored) = run.get(key)? {
                    *value = Some(stored);
                    break;
                }
            }
        }
        Ok(found)
    }

    fn scan(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Pairs, HistoryError> {
        let owned = |table: &Memtable| -> Pairs {
            let entries = table.scan(from, to, limit);
            entries
                .into_iter()
                .map(|(key, value)| (key.to_vec(), value.to_vec()))
                .collect()
        };
        let (active, frozen, runs) = self.sources(owned);
        // Oldest source first: a later source's value for a key replaces an earlier one's.
        let mut sources: Vec<Pairs> = Vec::with_capacity(runs.len() + frozen.len() + 1);
        for run in &runs {
            let mut found = Vec::new();
            run.scan(from, to, limit, &mut found)?;
            sources.push(found);
        }
        sources.extend(frozen.iter().map(|table| owned(table)));
        sources.push(active);
        let mut merged: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        for source in sources {
            merged.extend(source);
        }
        Ok(merged.into_iter().take(limit).collect())
    }

    fn write_atomically(&mut self, writes: &WriteBatch) -> Result<(), HistoryError> {
        if self.workers.is_none() {
            return Err(HistoryError::ReadOnly);
        }
        if let Some(reason) = &self.shared.control.lock().failed {
            return Err(HistoryError::Background(reason.clone()));
        }
        let too_long = writes
            .iter()
            .find(|(key, _)| key.len() > run::KEY_SIZE_MAX_BYTES);
        if let Some((key, _)) = too_long {
            return Err(HistoryError::Corrupt {
                key: key.to_vec(),
                reason: "key longer than a run holds",
            });
        }
        let full = {
            let mut view = self.shared.view.write();
            for (key, value) in writes.iter() {
                view.active.push(key, value, (self.shared.policy)(key));
            }
            view.active.size_bytes() >= self.shared.memtable_bytes
        };
        if full {
            self.freeze();
            self.wait_for_room()?;
        }
        Ok(())
    }
}

/// Whether the writer may go on (see [`LsmStore::wait_for_room`]).
fn has_room(view: &View) -> bool {
    let first_level = view.runs.iter().filter(|run| run.level == 0).count();
    // Too many runs from memory waits for their own merger only; too many in all, for any.
    let first_behind = first_level >= FIRST_LEVEL_RUNS_MAX
        && worker::pick_in(&view.runs, worker::Levels::First).is_some();
    let all_behind = view.runs.len() >= RUNS_MAX && worker::pick(&view.runs).is_some();
    view.frozen.len() < FROZEN_MAX && !first_behind && !all_behind
}

/// Opens the runs in `directory`, oldest first: removes temporary files, and runs whose
/// flush numbers a merged run covers (a crash came between the merge and their removal).
fn open_runs(directory: &Path, policy: FilterPolicy) -> Result<Vec<Arc<Run>>, HistoryError> {
    // By first flush number, widest first: a merged run comes before what it covers.
    let named = list_runs(directory, |name| {
        run_range(name).map(|(first, last)| (first, std::cmp::Reverse(last)))
    })?;
    let mut runs: Vec<Arc<Run>> = Vec::with_capacity(named.len());
    let mut covered_to: Option<u64> = None;
    for ((first, std::cmp::Reverse(last)), name) in named {
        if covered_to.is_some_and(|covered| last <= covered) {
            let path = directory.join(&name);
            surge_wal::remove_in_steps(&path)
                .map_err(io_error(format!("removing {}", path.display())))?;
            continue;
        }
        if covered_to.is_some_and(|covered| first <= covered) {
            return Err(HistoryError::Corrupt {
                key: name.into_bytes(),
                reason: "index runs overlap",
            });
        }
        runs.push(Arc::new(Run::open(directory, &name, policy)?));
        covered_to = Some(last);
    }
    Ok(runs)
}

/// The history index on disk, in an [`LsmStore`].
pub type LsmHistory = Index<LsmStore>;

/// Keys the index looks up one by one (transfers by id, the `applied` mark): the runs'
/// filters hold only these, about two bytes each.
fn point_keys(key: &[u8]) -> bool {
    crate::sled_history::is_point_key(key)
}

impl LsmHistory {
    /// Opens (or creates) the index in directory `path` (the store in `runs/`, archive
    /// runs in `archive/`).
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        Self::open_with_memtable(path, MEMTABLE_BYTES_DEFAULT)
    }

    /// [`LsmHistory::open`] with memtables frozen at `memtable_bytes`.
    pub fn open_with_memtable(path: &Path, memtable_bytes: usize) -> Result<Self, HistoryError> {
        let store = LsmStore::open(&path.join("runs"), point_keys, memtable_bytes)?;
        let archive = RunStore::open(&path.join("archive"))?;
        Ok(Index::from_parts(store, archive))
    }

    /// Deletes the index at `path` and creates an empty one, to be rebuilt from the log
    /// after corruption was found.
    pub fn recreate(path: &Path) -> Result<Self, HistoryError> {
        match std::fs::remove_dir_all(path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(format!("removing {}", path.display()))(error)),
        }
        Self::open(path)
    }

    /// A second handle on the same open index, for readers on other threads.
    pub fn reader(&self) -> Self {
        Index::from_parts(self.store.reader(), self.archive.clone())
    }

    /// Waits until everything written so far is in durable runs (the index never needs it
    /// for correctness, only to catch up less after a crash).
    pub fn flush(&self) -> Result<(), HistoryError> {
        self.store.flush()
    }

    /// What the store holds now.
    pub fn stats(&self) -> LsmStats {
        self.store.stats()
    }
}
