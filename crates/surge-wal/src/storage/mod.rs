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

mod sim;

pub use sim::{split_mix, SimStorage};

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
    /// Removes a file. Durable only after [`Self::sync_directory`]. [`FileStorage`] frees a
    /// large file's blocks a step at a time ([`crate::remove::remove_in_steps`]), so a file
    /// is removed only once nothing reads it.
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
        crate::remove::remove_in_steps(&self.directory.join(name))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
