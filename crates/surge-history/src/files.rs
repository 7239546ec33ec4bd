//! File handling shared by the index's run files (`lsm/run.rs`) and the archive runs
//! (`archive_runs.rs`): errors that name what was being done, directory listings that
//! drop what a crash left mid-write, and directory syncs.

use std::fs::File;
use std::path::Path;

use crate::HistoryError;

/// Maps an I/O error to [`HistoryError::Io`], saying what was being done.
pub(crate) fn io_error(what: String) -> impl FnOnce(std::io::Error) -> HistoryError {
    move |source| HistoryError::Io { what, source }
}

/// The files of `directory` that `parse` recognizes, with what it read from each name,
/// sorted; removes temporary files (`*.tmp`) a crash left mid-write.
pub(crate) fn list_runs<K: Ord>(
    directory: &Path,
    parse: impl Fn(&str) -> Option<K>,
) -> Result<Vec<(K, String)>, HistoryError> {
    let listing = || format!("listing {}", directory.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(io_error(listing()))? {
        let entry = entry.map_err(io_error(listing()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            surge_wal::remove_in_steps(&entry.path())
                .map_err(io_error(format!("removing {}", entry.path().display())))?;
        } else if let Some(key) = parse(&name) {
            found.push((key, name));
        }
    }
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Makes the entries of `directory` (a rename, a new file) durable.
pub(crate) fn sync_directory(directory: &Path) -> Result<(), HistoryError> {
    File::open(directory)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error(format!("syncing {}", directory.display())))
}
