//! Removing the runs a merge replaced: their names at once, their blocks a step at a time
//! once no reader holds them.
//!
//! Freeing a run's blocks in one go (a plain unlink of a run nobody reads) makes the journal
//! commit that releases them long, and the log's `fdatasync`s wait for that commit
//! (`surge_wal::remove`). A reader that took the view before the merge keeps reading its
//! runs' open files, so their blocks are freed only when it lets go.

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::run::Run;
use crate::files::{io_error, sync_directory};
use crate::HistoryError;

/// How long a merger waits for readers to let go of the runs it replaced. A run still read
/// after it is freed when its last reader drops it, all at once, as an unlink would.
const READERS_WAIT_MAX: Duration = Duration::from_secs(1);

/// How often a merger looks whether readers let go.
const READERS_POLL: Duration = Duration::from_millis(1);

/// Runs a merge replaced, removed by name, their blocks not yet freed.
pub(super) struct Unlinked {
    runs: Vec<(Arc<Run>, Option<File>)>,
}

/// Removes the names of `group`'s files (durably: the directory is synced), keeping a
/// handle on each large one to free its blocks later (`surge_wal::remove::unlink_to_free`:
/// a small one's blocks are freed when it is closed).
pub(super) fn unlink(
    directory: &std::path::Path,
    group: Vec<Arc<Run>>,
) -> Result<Unlinked, HistoryError> {
    let mut runs = Vec::with_capacity(group.len());
    for run in group {
        let handle = surge_wal::remove::unlink_to_free(&run.path)
            .map_err(io_error(format!("removing {}", run.path.display())))?;
        runs.push((run, handle));
    }
    sync_directory(directory)?;
    Ok(Unlinked { runs })
}

impl Unlinked {
    /// Frees each run's blocks a step at a time once no reader holds it (waiting at most
    /// [`READERS_WAIT_MAX`] for all of them, and not once `stopping` says so).
    pub(super) fn free(self, stopping: impl Fn() -> bool) -> Result<(), HistoryError> {
        let deadline = Instant::now() + READERS_WAIT_MAX;
        for (run, handle) in self.runs {
            while Arc::strong_count(&run) > 1 && Instant::now() < deadline && !stopping() {
                std::thread::sleep(READERS_POLL);
            }
            let path = run.path.clone();
            // Still read: the last reader's drop frees it.
            let Ok(run) = Arc::try_unwrap(run) else {
                continue;
            };
            drop(run);
            if let Some(handle) = handle {
                surge_wal::free_in_steps(&handle)
                    .map_err(io_error(format!("freeing removed run {}", path.display())))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_filter(_: &[u8]) -> bool {
        false
    }

    /// A run of `entries` 8-byte keys with 1 KiB values: several of `surge_wal::remove`'s
    /// steps, so freeing it in steps would cut a reader's reads short.
    fn run_in(directory: &std::path::Path, first: u64, entries: u64) -> Arc<Run> {
        let mut writer =
            super::super::run::RunWriter::create(directory, 0, (first, first), entries, no_filter)
                .unwrap();
        let value = vec![0x5Au8; 1024];
        for key in 0..entries {
            writer.push(&key.to_be_bytes(), &value).unwrap();
        }
        Arc::new(writer.finish().unwrap())
    }

    fn names(directory: &std::path::Path) -> Vec<String> {
        let listing = std::fs::read_dir(directory).unwrap();
        listing
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A reader that took the runs before the merge reads them whole until it lets go:
    /// their names go at once, their blocks only after.
    #[test]
    fn a_replaced_run_is_read_whole_by_a_reader_holding_it_then_freed() {
        let directory = tempfile::tempdir().unwrap();
        let entries = 3 * (surge_wal::constants::REMOVE_STEP_BYTES >> 10);
        let (held, free) = (
            run_in(directory.path(), 1, entries),
            run_in(directory.path(), 2, entries),
        );
        let reader = held.clone();
        let watchers = [&held, &free].map(|run| File::open(&run.path).unwrap());
        let unlinked = unlink(directory.path(), vec![held, free]).unwrap();
        assert!(names(directory.path()).is_empty(), "the names go at once");
        let releases = std::thread::spawn(move || {
            let started = Instant::now();
            unlinked.free(|| false).unwrap();
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        let last = (entries - 1).to_be_bytes();
        assert_eq!(
            reader.get(&last).unwrap().map(|value| value.len()),
            Some(1024)
        );
        drop(reader);
        let waited = releases.join().unwrap();
        assert!(
            waited >= Duration::from_millis(100),
            "freed under the reader: {waited:?}"
        );
        assert!(
            waited < READERS_WAIT_MAX,
            "did not see the reader let go: {waited:?}"
        );
        for watcher in watchers {
            assert_eq!(watcher.metadata().unwrap().len(), 0, "its blocks are freed");
        }
    }

    /// A reader holding a run past the wait keeps reading it whole: the merger leaves the
    /// run to be freed when that reader drops it.
    #[test]
    fn a_run_read_past_the_wait_is_left_whole_for_its_last_reader() {
        let directory = tempfile::tempdir().unwrap();
        let entries = 3 * (surge_wal::constants::REMOVE_STEP_BYTES >> 10);
        let held = run_in(directory.path(), 1, entries);
        let reader = held.clone();
        let watcher = File::open(&held.path).unwrap();
        let size = watcher.metadata().unwrap().len();
        let started = Instant::now();
        let unlinked = unlink(directory.path(), vec![held]).unwrap();
        unlinked.free(|| false).unwrap();
        assert!(started.elapsed() >= READERS_WAIT_MAX);
        assert_eq!(watcher.metadata().unwrap().len(), size, "left whole");
        let last = (entries - 1).to_be_bytes();
        assert_eq!(
            reader.get(&last).unwrap().map(|value| value.len()),
            Some(1024)
        );
    }
}
