//! [`SimStorage`]: files in memory that track, per file, what is durable and what was only
//! written, so a test can cut the power ([`SimStorage::power_cut`]), tear the last write,
//! and inject I/O errors and a full disk; and [`split_mix`], the tests' source of
//! randomness.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Storage;

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
}
