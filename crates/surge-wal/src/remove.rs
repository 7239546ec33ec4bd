//! Removing a large file without holding up other files' `fdatasync`.
//!
//! On ext4 the blocks a removal frees are released when the journal commits (and, on a
//! filesystem mounted with `discard` as this machine's is, discarded then), and every
//! `fdatasync` that needs that commit waits for it. Unlinking a 256 MiB file here held two
//! logs' syncs for 50–70 ms; freeing it 4 MiB at a time kept their longest sync under 8 ms
//! (`docs/PERFORMANCE.md`, "Large files written and removed a step at a time"). A
//! checkpoint, a log segment or an index run is that large, and the log's syncs are on
//! every answer's path.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::constants::REMOVE_STEP_BYTES;

/// Removes the file at `path`, freeing its blocks a step at a time if it is large.
///
/// A file of at most [`REMOVE_STEP_BYTES`] (or one that cannot be opened for writing) is
/// unlinked, nothing more: the removal is durable after the caller syncs the directory. A
/// larger one is unlinked, the unlink made durable (the directory synced), and the file,
/// no longer reachable by name, truncated from the end one step at a time with an
/// `fdatasync` after each; its blocks are free when this returns. A crash part way leaves
/// no name behind (the unlink was durable first); the filesystem reclaims the rest of the
/// unlinked file when it mounts. A handle opened on the file before its removal sees it
/// shrink (a plain unlink would have let it read on): callers remove only files nothing
/// else reads any more. A file that still has another name (a hard link) is only
/// unlinked.
pub fn remove_in_steps(path: &Path) -> io::Result<()> {
    let Some(file) = unlink_to_free(path)? else {
        return Ok(());
    };
    File::open(directory_of(path))?.sync_all()?;
    free_in_steps(&file)
}

/// Unlinks the file at `path` and, if it is larger than [`REMOVE_STEP_BYTES`] (and opens
/// for writing), returns a handle on it for [`free_in_steps`], to be called once the
/// unlink is durable (the directory synced). `None`: the file was only unlinked.
pub fn unlink_to_free(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(error),
        Err(_) => return std::fs::remove_file(path).map(|()| None),
    };
    let len = file.metadata()?.len();
    std::fs::remove_file(path)?;
    Ok((len > REMOVE_STEP_BYTES).then_some(file))
}

/// Frees the blocks of `file` (opened for writing, and removed: nothing reads it any more)
/// from the end, [`REMOVE_STEP_BYTES`] at a time, each step made durable by an
/// `fdatasync` of its own, so another file's sync waits behind one step at most. Does
/// nothing to a file that still has a name (a hard link elsewhere, or not removed at all):
/// its contents are someone's.
pub fn free_in_steps(file: &File) -> io::Result<()> {
    let metadata = file.metadata()?;
    if metadata.nlink() != 0 {
        return Ok(());
    }
    let mut len = metadata.len();
    while len > 0 {
        len = len.saturating_sub(REMOVE_STEP_BYTES);
        file.set_len(len)?;
        file.sync_data()?;
    }
    Ok(())
}

/// The directory holding `path`: its parent, or the current directory for a bare name.
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn file_of(path: &Path, len: u64) {
        let mut file = File::create(path).unwrap();
        let chunk = vec![0xA5u8; 1 << 20];
        let mut written = 0;
        while written < len {
            let take = (len - written).min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..take]).unwrap();
            written += take as u64;
        }
        file.sync_all().unwrap();
    }

    fn names(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_large_file_is_removed_and_its_blocks_freed_in_steps() {
        let directory = tempfile::tempdir().unwrap();
        let large = directory.path().join("large");
        let kept = directory.path().join("kept");
        file_of(&large, 3 * REMOVE_STEP_BYTES + 12345);
        file_of(&kept, 100);
        // A handle opened before the removal watches the file shrink to nothing.
        let watcher = File::open(&large).unwrap();
        remove_in_steps(&large).unwrap();
        assert_eq!(names(directory.path()), ["kept"]);
        assert_eq!(watcher.metadata().unwrap().len(), 0);
        assert_eq!(std::fs::metadata(&kept).unwrap().len(), 100);
    }

    #[test]
    fn a_small_file_is_only_unlinked() {
        let directory = tempfile::tempdir().unwrap();
        let small = directory.path().join("small");
        file_of(&small, REMOVE_STEP_BYTES);
        let watcher = File::open(&small).unwrap();
        remove_in_steps(&small).unwrap();
        assert!(names(directory.path()).is_empty());
        assert_eq!(watcher.metadata().unwrap().len(), REMOVE_STEP_BYTES);
    }

    #[test]
    fn a_file_with_another_name_is_only_unlinked_and_kept_whole() {
        let directory = tempfile::tempdir().unwrap();
        let (path, other) = (directory.path().join("a"), directory.path().join("b"));
        file_of(&path, 2 * REMOVE_STEP_BYTES);
        std::fs::hard_link(&path, &other).unwrap();
        remove_in_steps(&path).unwrap();
        assert_eq!(names(directory.path()), ["b"]);
        assert_eq!(
            std::fs::metadata(&other).unwrap().len(),
            2 * REMOVE_STEP_BYTES
        );
        // Nor is a file that was never removed.
        free_in_steps(&OpenOptions::new().write(true).open(&other).unwrap()).unwrap();
        assert_eq!(
            std::fs::metadata(&other).unwrap().len(),
            2 * REMOVE_STEP_BYTES
        );
    }

    /// (As root, which CI may be, the read-only file opens for writing all the same and
    /// goes the way of any large file; either way it is removed.)
    #[test]
    fn a_missing_file_is_not_found_and_a_read_only_one_is_removed() {
        let directory = tempfile::tempdir().unwrap();
        let missing = remove_in_steps(&directory.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let read_only = directory.path().join("read-only");
        file_of(&read_only, 2 * REMOVE_STEP_BYTES);
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o444)).unwrap();
        remove_in_steps(&read_only).unwrap();
        assert!(names(directory.path()).is_empty());
    }

    #[test]
    fn the_directory_of_a_bare_name_is_the_current_one() {
        assert_eq!(directory_of(Path::new("a")), Path::new("."));
        assert_eq!(directory_of(Path::new("d/a")), Path::new("d"));
        assert_eq!(directory_of(Path::new("/d/e/a")), Path::new("/d/e"));
    }
}
