//! The storage trait: everything the log does to disk, by file name in one directory (and
//! one level of subdirectories, for the log's `archive/`).
//!
//! [`FileStorage`] is the real thing (std::fs, `fallocate`, `fdatasync`, directory `fsync`).
//! [`SimStorage`] keeps files in memory and tracks, per file, what is durable and what was
//! only written, so a test can cut the power ([`SimStorage::power_cut`]), tear the last
//! write, and inject I/O errors and a full disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Disk operations of the log, on files named by plain names in one directory, or by
/// `SUBDIRECTORY/NAME` for a file one level down (the log's `archive/`).
pub trait Storage: Send + 'static {
    /// Names of the files in the directory itself (not in subdirectories), sorted.
    fn list(&mut self) -> io::Result<Vec<String>>;
    /// Names of the files in subdirectory `name` (without the `name/` prefix), sorted;
    /// empty if the subdirectory does not exist.
    fn list_directory(&mut self, name: &str) -> io::Result<Vec<String>>;
    /// Creates subdirectory `name` if it does not exist. Durable only after
    /// [`Self::sync_directory`].
    fn create_directory(&mut self, name: &str) -> io::Result<()>;
    /// Creates an empty file; fails if it exists. Durable only after [`Self::sync_directory`].
    fn create(&mut self, name: &str) -> io::Result<()>;
    /// Writes `bytes` at `offset`, growing the file if needed.
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Makes the file's written data (and its size) durable: `fdatasync`.
    fn sync_data(&mut self, name: &str) -> io::Result<()>;
    /// Reads up to `buffer.len()` bytes at `offset`; returns how many were read (fewer
    /// only at the end of the file).
    fn read_at(&mut self, name: &str, offset: u64, buffer: &mut [u8]) -> io::Result<usize>;
    /// Reads the whole file.
    fn read_all(&mut self, name: &str) -> io::Result<Vec<u8>>;
    /// The file's length, in bytes.
    fn len(&mut self, name: &str) -> io::Result<u64>;
    /// Sets the file's length (zero-filling when it grows).
    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()>;
    /// Grows the file to `len` bytes (zero-filled) with its disk blocks reserved, so later
    /// writes into it neither allocate nor fail for space: how segments are preallocated.
    /// Does nothing if the file is at least that long. Durable after [`Self::sync_data`].
    /// The default grows it with [`Self::set_len`], which reserves nothing.
    fn allocate(&mut self, name: &str, len: u64) -> io::Result<()> {
        if self.len(name)? < len {
            self.set_len(name, len)?;
        }
        Ok(())
    }
    /// Renames a file (also into or out of a subdirectory). Durable only after
    /// [`Self::sync_directory`].
    fn rename(&mut self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file. Durable only after [`Self::sync_directory`].
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable, in the directory and in the
    /// subdirectories this handle touched: `fsync` of each.
    fn sync_directory(&mut self) -> io::Result<()>;
    /// Drops any handle this storage keeps open on the file; a later operation reopens it.
    /// The log calls it for segments it is done with, so a long-running log neither holds
    /// every segment open nor keeps a removed one's space allocated.
    fn close(&mut self, _name: &str) {}
    /// Another handle on the same files, for a second thread (log retention beside the
    /// writer). The default: unsupported.
    fn try_clone(&self) -> io::Result<Box<dyn Storage>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this storage cannot open a second handle",
        ))
    }
}

/// Real files in one directory.
#[derive(Debug)]
pub struct FileStorage {
    directory: PathBuf,
    /// Open handles by name, so a write or sync does not reopen the file.
    files: BTreeMap<String, File>,
    /// Subdirectories this handle created or moved files into or out of: synced by
    /// `sync_directory` along with the directory itself.
    subdirectories: BTreeSet<String>,
}

impl FileStorage {
    /// Storage over `directory`, which is created (and its parent synced) if missing.
    pub fn open(directory: &Path) -> io::Result<FileStorage> {
        if !directory.is_dir() {
            std::fs::create_dir_all(directory)?;
            if let Some(parent) = directory.parent() {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(FileStorage {
            directory: directory.to_path_buf(),
            files: BTreeMap::new(),
            subdirectories: BTreeSet::new(),
        })
    }

    /// Storage over the log subdirectory of a data directory (`DATA_DIR/log`).
    pub fn for_data_directory(data_directory: &Path) -> io::Result<FileStorage> {
        FileStorage::open(&data_directory.join(crate::constants::LOG_DIRECTORY_NAME))
    }

    /// The directory this storage works in.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn file(&mut self, name: &str) -> io::Result<&mut File> {
        if !self.files.contains_key(name) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.directory.join(name))?;
            self.files.insert(name.to_string(), file);
        }
        self.files
            .get_mut(name)
            .ok_or_else(|| io::Error::other("file handle vanished"))
    }

    /// Notes the subdirectory of `name`, if it has one, for `sync_directory`.
    fn note_subdirectory(&mut self, name: &str) {
        if let Some((subdirectory, _)) = name.split_once('/') {
            self.subdirectories.insert(subdirectory.to_string());
        }
    }
}

impl Storage for FileStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.directory)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn list_directory(&mut self, name: &str) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.directory.join(name)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_directory(&mut self, name: &str) -> io::Result<()> {
        match std::fs::create_dir(self.directory.join(name)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
        self.subdirectories.insert(name.to_string());
        Ok(())
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.directory.join(name))?;
        self.files.insert(name.to_string(), file);
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file(name)?.write_all_at(bytes, offset)
    }

    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn read_at(&mut self, name: &str, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = self.file(name)?;
        let mut done = 0;
        while done < buffer.len() {
            let read = file.read_at(&mut buffer[done..], offset + done as u64)?;
            if read == 0 {
                break;
            }
            done += read;
        }
        Ok(done)
    }

    fn read_all(&mut self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.directory.join(name))
    }

    fn len(&mut self, name: &str) -> io::Result<u64> {
        Ok(self.file(name)?.metadata()?.len())
    }

    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()> {
        self.file(name)?.set_len(len)
    }

    fn allocate(&mut self, name: &str, len: u64) -> io::Result<()> {
        let file = self.file(name)?;
        if file.metadata()?.len() >= len {
            return Ok(());
        }
        // Mode 0: reserve the blocks and grow the size; the new range reads as zeros.
        match rustix::fs::fallocate(&*file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            // A filesystem without fallocate (some network and FUSE ones): a sparse file,
            // whose blocks are allocated as records are written.
            Err(errno) if errno == rustix::io::Errno::OPNOTSUPP => file.set_len(len),
            Err(errno) if errno == rustix::io::Errno::NOSYS => file.set_len(len),
            Err(errno) => Err(errno.into()),
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.directory.join(from), self.directory.join(to))?;
        self.note_subdirectory(from);
        self.note_subdirectory(to);
        if let Some(file) = self.files.remove(from) {
            self.files.insert(to.to_string(), file);
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.files.remove(name);
        std::fs::remove_file(self.directory.join(name))?;
        self.note_subdirectory(name);
        Ok(())
    }

    fn sync_directory(&mut self) -> io::Result<()> {
        for subdirectory in &self.subdirectories {
            File::open(self.directory.join(subdirectory))?.sync_all()?;
        }
        File::open(&self.directory)?.sync_all()
    }

    fn close(&mut self, name: &str) {
        self.files.remove(name);
    }

    fn try_clone(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(FileStorage::open(&self.directory)?))
    }
}

/// A write or length change not yet made durable by `sync_data`.
#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    /// What survives a power cut.
    durable: Vec<u8>,
    /// What a read sees now: `durable` plus `pending`, in order.
    current: Vec<u8>,
    pending: Vec<Pending>,
}

fn apply_pending(content: &mut Vec<u8>, pending: &Pending) {
    match pending {
        Pending::Write { offset, bytes } => write_into(content, *offset, bytes),
        Pending::SetLen(len) => content.resize(usize_from(*len), 0),
    }
}

fn write_into(content: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = usize_from(offset);
    let end = start + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(bytes);
}

fn usize_from(value: u64) -> usize {
    usize::try_from(value).expect("simulated file offsets fit in memory")
}

#[derive(Debug, Default)]
struct SimState {
    /// File contents by id; a directory entry points at an id, so a rename keeps content.
    files: BTreeMap<u64, SimFile>,
    id_next: u64,
    /// The directory as it is now.
    entries: BTreeMap<String, u64>,
    /// The directory as of the last `sync_directory`: what a power cut leaves.
    entries_durable: BTreeMap<String, u64>,
    /// Subdirectories as they are now, and as of the last `sync_directory`.
    directories: BTreeSet<String>,
    directories_durable: BTreeSet<String>,
    write_fail_next: bool,
    sync_fail_next: bool,
    capacity_bytes: Option<u64>,
    /// Mutating operations left before the simulated machine stops (`Some(0)`: stopped).
    operations_until_crash: Option<u64>,
    power_cuts: u64,
}

impl SimState {
    /// Counts one mutating operation; fails it if the machine has stopped.
    fn operate(&mut self) -> io::Result<()> {
        match self.operations_until_crash {
            Some(0) => Err(io::Error::other(
                "simulated machine is down (crash point reached)",
            )),
            Some(left) => {
                self.operations_until_crash = Some(left - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Fails with NotFound if `name` lies in a subdirectory that does not exist.
    fn check_parent(&self, name: &str) -> io::Result<()> {
        match name.split_once('/') {
            Some((directory, _)) if !self.directories.contains(directory) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory named {directory}"),
            )),
            _ => Ok(()),
        }
    }

    fn id(&self, name: &str) -> io::Result<u64> {
        self.entries
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file named {name}")))
    }

    fn used_bytes(&self) -> u64 {
        self.entries
            .values()
            .filter_map(|id| self.files.get(id))
            .map(|file| file.current.len() as u64)
            .sum()
    }

    /// Fails with ENOSPC if growing file `id` to `len_new` bytes would pass the capacity.
    fn check_capacity(&self, id: u64, len_new: u64) -> io::Result<()> {
        let Some(capacity) = self.capacity_bytes else {
            return Ok(());
        };
        let len_old = self
            .files
            .get(&id)
            .map_or(0, |file| file.current.len() as u64);
        let growth = len_new.saturating_sub(len_old);
        if growth > 0 && self.used_bytes() + growth > capacity {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}

/// In-memory, deterministic storage for tests. Cloning gives another handle to the same
/// files, so a test can keep one while the log owns another, then cut the power.
///
/// Model of a power cut: the directory reverts to its last `sync_directory`; each file keeps
/// what its last `sync_data` made durable, plus a random prefix of its later writes in the
/// order they were issued, the last kept one possibly torn at any byte.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

impl SimStorage {
    /// Empty storage with no faults and no capacity limit.
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// The next `write_at` fails with EIO.
    pub fn fail_next_write(&self) {
        self.state.lock().write_fail_next = true;
    }

    /// The next `sync_data` fails with EIO (and makes nothing durable).
    pub fn fail_next_sync(&self) {
        self.state.lock().sync_fail_next = true;
    }

    /// Limits the total size of all files, in bytes (`None`: no limit). Growing past it
    /// fails with ENOSPC.
    pub fn set_capacity_bytes(&self, capacity_bytes: Option<u64>) {
        self.state.lock().capacity_bytes = capacity_bytes;
    }

    /// After `operations` more mutating operations (write, sync, create, set_len, rename,
    /// remove, directory creation, directory sync), every later one fails: the machine
    /// stopped at that point. A [`SimStorage::power_cut`] then decides what survived and
    /// restarts it.
    pub fn crash_after_operations(&self, operations: u64) {
        self.state.lock().operations_until_crash = Some(operations);
    }

    /// Total size of all files now, in bytes.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes()
    }

    /// How many power cuts happened.
    pub fn power_cuts(&self) -> u64 {
        self.state.lock().power_cuts
    }

    /// The bytes a read of `name` sees now, if it exists.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let id = state.entries.get(name)?;
        state.files.get(id).map(|file| file.current.clone())
    }

    /// Overwrites bytes of a file durably, bypassing the log: for corruption tests.
    pub fn corrupt(&self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let id = state.id(name)?;
        let file = state.files.entry(id).or_default();
        write_into(&mut file.durable, offset, bytes);
        write_into(&mut file.current, offset, bytes);
        Ok(())
    }

    /// Cuts the power: loses everything not made durable, as described on the type.
    /// `rng_state` drives the choices (a SplitMix64 state), so a seed replays exactly.
    pub fn power_cut(&self, rng_state: &mut u64) {
        self.power_cut_with(|pending_count| {
            let kept_count = split_mix(rng_state) % (pending_count as u64 + 1);
            let torn = split_mix(rng_state) % 2 == 0;
            let torn_len = split_mix(rng_state);
            (usize_from(kept_count), torn.then_some(torn_len))
        });
    }

    /// Cuts the power and loses every unsynced write, tearing none.
    pub fn power_cut_losing_all_unsynced(&self) {
        self.power_cut_with(|_| (0, None));
    }

    /// `choose(pending_count)` gives how many unsynced writes survive whole, and whether
    /// the next survives torn (a random number its kept length is drawn from).
    fn power_cut_with(&self, mut choose: impl FnMut(usize) -> (usize, Option<u64>)) {
        let mut state = self.state.lock();
        state.power_cuts += 1;
        state.entries = state.entries_durable.clone();
        state.directories = state.directories_durable.clone();
        let live: Vec<u64> = state.entries.values().copied().collect();
        state.files.retain(|id, _| live.contains(id));
        for file in state.files.values_mut() {
            let (kept_count, torn) = choose(file.pending.len());
            let kept_count = kept_count.min(file.pending.len());
            let mut content = file.durable.clone();
            for pending in &file.pending[..kept_count] {
                apply_pending(&mut content, pending);
            }
            // The first dropped write may reach the disk in part: a torn write.
            if let (Some(Pending::Write { offset, bytes }), Some(random)) =
                (file.pending.get(kept_count), torn)
            {
                let torn_len = usize_from(random % (bytes.len() as u64 + 1));
                write_into(&mut content, *offset, &bytes[..torn_len]);
            }
            file.durable = content.clone();
            file.current = content;
            file.pending.clear();
        }
        state.write_fail_next = false;
        state.sync_fail_next = false;
        state.operations_until_crash = None;
    }
}

/// One step of SplitMix64: the tests' only source of randomness.
pub fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected I/O error on {what}"))
}

impl Storage for SimStorage {
    fn list(&mut self) -> io::Result<Vec<String>> {
        let state = self.state.lock();
        Ok(state
            .entries
            .keys()
            .filter(|name| !name.contains('/'))
            .cloned()
            .collect())
    }

    fn list_directory(&mut self, name: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{name}/");
        let state = self.state.lock();
        Ok(state
            .entries
            .keys()
            .filter_map(|entry| entry.strip_prefix(&prefix))
            .map(str::to_string)
            .collect())
    }

    fn create_directory(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        state.directories.insert(name.to_string());
        Ok(())
    }

    fn create(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        state.check_parent(name)?;
        if state.entries.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                name.to_string(),
            ));
        }
        let id = state.id_next;
        state.id_next += 1;
        state.files.insert(id, SimFile::default());
        state.entries.insert(name.to_string(), id);
        Ok(())
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        if std::mem::take(&mut state.write_fail_next) {
            return Err(eio("write"));
        }
        let id = state.id(name)?;
        state.check_capacity(id, offset + bytes.len() as u64)?;
        let file = state.files.entry(id).or_default();
        let pending = Pending::Write {
            offset,
            bytes: bytes.to_vec(),
        };
        apply_pending(&mut file.current, &pending);
        file.pending.push(pending);
        Ok(())
    }

    fn sync_data(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        if std::mem::take(&mut state.sync_fail_next) {
            return Err(eio("sync"));
        }
        let id = state.id(name)?;
        let file = state.files.entry(id).or_default();
        file.durable = file.current.clone();
        file.pending.clear();
        Ok(())
    }

    fn read_at(&mut self, name: &str, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let state = self.state.lock();
        let id = state.id(name)?;
        let content = state
            .files
            .get(&id)
            .map(|file| &file.current[..])
            .unwrap_or(&[]);
        let start = usize_from(offset).min(content.len());
        let len = buffer.len().min(content.len() - start);
        buffer[..len].copy_from_slice(&content[start..start + len]);
        Ok(len)
    }

    fn read_all(&mut self, name: &str) -> io::Result<Vec<u8>> {
        let state = self.state.lock();
        let id = state.id(name)?;
        Ok(state
            .files
            .get(&id)
            .map(|file| file.current.clone())
            .unwrap_or_default())
    }

    fn len(&mut self, name: &str) -> io::Result<u64> {
        let state = self.state.lock();
        let id = state.id(name)?;
        Ok(state
            .files
            .get(&id)
            .map_or(0, |file| file.current.len() as u64))
    }

    fn set_len(&mut self, name: &str, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        let id = state.id(name)?;
        state.check_capacity(id, len)?;
        let file = state.files.entry(id).or_default();
        let pending = Pending::SetLen(len);
        apply_pending(&mut file.current, &pending);
        file.pending.push(pending);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        let id = state.id(from)?;
        state.check_parent(to)?;
        state.entries.remove(from);
        state.entries.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        state.id(name)?;
        state.entries.remove(name);
        Ok(())
    }

    fn sync_directory(&mut self) -> io::Result<()> {
        let mut state = self.state.lock();
        state.operate()?;
        state.entries_durable = state.entries.clone();
        state.directories_durable = state.directories.clone();
        Ok(())
    }

    fn try_clone(&self) -> io::Result<Box<dyn Storage>> {
        Ok(Box::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_and_creations_are_lost() {
        let mut storage = SimStorage::new();
        storage.create("a").unwrap();
        storage.sync_directory().unwrap();
        storage.write_at("a", 0, b"durable").unwrap();
        storage.sync_data("a").unwrap();
        storage.create("b").unwrap();
        storage.write_at("a", 7, b"-lost").unwrap();
        // Seed 1 is one whose choices drop the unsynced write entirely or tear it.
        let mut rng = 1;
        storage.power_cut(&mut rng);
        assert_eq!(storage.list().unwrap(), vec!["a".to_string()]);
        let content = storage.read_all("a").unwrap();
        assert!(content.starts_with(b"durable"));
        assert!(b"durable-lost".starts_with(&content));
    }

    #[test]
    fn capacity_limit_fails_with_enospc() {
        let mut storage = SimStorage::new();
        storage.set_capacity_bytes(Some(10));
        storage.create("a").unwrap();
        storage.write_at("a", 0, b"0123456789").unwrap();
        let error = storage.write_at("a", 10, b"x").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn a_move_into_a_subdirectory_is_durable_only_after_a_directory_sync() {
        let mut storage = SimStorage::new();
        storage.create("a").unwrap();
        storage.write_at("a", 0, b"kept").unwrap();
        storage.sync_data("a").unwrap();
        storage.sync_directory().unwrap();
        // No such subdirectory yet: the move fails and changes nothing.
        assert!(storage.rename("a", "archive/a").is_err());
        storage.create_directory("archive").unwrap();
        storage.rename("a", "archive/a").unwrap();
        assert!(storage.list().unwrap().is_empty());
        assert_eq!(
            storage.list_directory("archive").unwrap(),
            vec!["a".to_string()]
        );
        storage.power_cut_losing_all_unsynced();
        assert_eq!(storage.list().unwrap(), vec!["a".to_string()]);
        assert!(storage.list_directory("archive").unwrap().is_empty());
        storage.create_directory("archive").unwrap();
        storage.rename("a", "archive/a").unwrap();
        storage.sync_directory().unwrap();
        storage.power_cut_losing_all_unsynced();
        assert!(storage.list().unwrap().is_empty());
        assert_eq!(storage.read_all("archive/a").unwrap(), b"kept");
        // A removal, too, is undone by a power cut before the directory sync.
        storage.remove("archive/a").unwrap();
        storage.power_cut_losing_all_unsynced();
        assert_eq!(
            storage.list_directory("archive").unwrap(),
            vec!["a".to_string()]
        );
    }

    #[test]
    fn file_storage_allocates_blocks_and_moves_into_a_subdirectory() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut storage = FileStorage::for_data_directory(dir.path()).unwrap();
        storage.create("s").unwrap();
        storage.allocate("s", 1 << 20).unwrap();
        storage.sync_data("s").unwrap();
        assert_eq!(storage.len("s").unwrap(), 1 << 20);
        let metadata = std::fs::metadata(storage.directory().join("s")).unwrap();
        // Counted in 512-byte blocks: reserved, not a sparse file (ext4 and tmpfs both
        // support fallocate; others would fall back to a sparse file and fail here).
        assert!(
            metadata.blocks() * 512 >= 1 << 20,
            "{} blocks",
            metadata.blocks()
        );
        let mut buffer = vec![1u8; 4096];
        assert_eq!(storage.read_at("s", 4096, &mut buffer).unwrap(), 4096);
        assert!(buffer.iter().all(|&b| b == 0));
        // Never shrinks.
        storage.allocate("s", 4096).unwrap();
        assert_eq!(storage.len("s").unwrap(), 1 << 20);
        storage.create_directory("archive").unwrap();
        storage.create_directory("archive").unwrap();
        storage.rename("s", "archive/s").unwrap();
        storage.sync_directory().unwrap();
        assert!(storage.list().unwrap().is_empty());
        assert_eq!(
            storage.list_directory("archive").unwrap(),
            vec!["s".to_string()]
        );
        let mut other = storage.try_clone().unwrap();
        assert_eq!(other.len("archive/s").unwrap(), 1 << 20);
        other.remove("archive/s").unwrap();
        other.sync_directory().unwrap();
        assert!(storage.list_directory("archive").unwrap().is_empty());
        assert!(storage.list_directory("missing").unwrap().is_empty());
    }

    #[test]
    fn file_storage_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = FileStorage::for_data_directory(dir.path()).unwrap();
        storage.create("x").unwrap();
        storage.set_len("x", 128).unwrap();
        storage.write_at("x", 64, b"hello").unwrap();
        storage.sync_data("x").unwrap();
        storage.sync_directory().unwrap();
        assert_eq!(storage.len("x").unwrap(), 128);
        let mut buffer = [0u8; 5];
        assert_eq!(storage.read_at("x", 64, &mut buffer).unwrap(), 5);
        assert_eq!(&buffer, b"hello");
        storage.rename("x", "y").unwrap();
        assert_eq!(storage.list().unwrap(), vec!["y".to_string()]);
        storage.remove("y").unwrap();
        assert!(storage.list().unwrap().is_empty());
    }
}
