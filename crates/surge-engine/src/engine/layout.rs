//! The data directory: `<data>/shards` holds the shard count, written once when the
//! directory is created (temp file, fsync, rename, directory fsync); `<data>/shard-NN/`
//! holds each shard's `log/`, `checkpoints/` and `history/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use surge_core::SHARDS_MAX;

use crate::node::EngineError;

/// Name of the file holding the shard count.
const SHARDS_FILE: &str = "shards";

/// The directory of shard `index`.
pub(crate) fn shard_directory(data: &Path, index: u32) -> PathBuf {
    data.join(format!("shard-{index:02}"))
}

/// Creates the data directory (first start) or checks it was created for `shards`.
pub(crate) fn prepare(data: &Path, shards: usize) -> Result<u32, EngineError> {
    if shards == 0 || shards > SHARDS_MAX as usize {
        return Err(EngineError::ShardCount(format!(
            "{shards} shards configured; 1..={SHARDS_MAX} are possible"
        )));
    }
    let io = |path: &Path, source| EngineError::DataDirectory {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(data).map_err(|e| io(data, e))?;
    let path = data.join(SHARDS_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found: usize = text.trim().parse().map_err(|_| {
                EngineError::ShardCount(format!(
                    "{} does not hold a shard count: {:?}",
                    path.display(),
                    text.trim()
                ))
            })?;
            if found != shards {
                return Err(EngineError::ShardCount(format!(
                    "{} was created with {found} shards, {shards} are configured; ids are \
                     partitioned by the shard count, so it cannot change on restart",
                    data.display()
                )));
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if shard_directory(data, 0).exists() {
                return Err(EngineError::ShardCount(format!(
                    "{} holds shard directories but no `{SHARDS_FILE}` file",
                    data.display()
                )));
            }
            let temporary = data.join(format!("{SHARDS_FILE}.tmp"));
            let mut file = fs::File::create(&temporary).map_err(|e| io(&temporary, e))?;
            writeln!(file, "{shards}").map_err(|e| io(&temporary, e))?;
            file.sync_all().map_err(|e| io(&temporary, e))?;
            fs::rename(&temporary, &path).map_err(|e| io(&path, e))?;
            fs::File::open(data)
                .and_then(|directory| directory.sync_all())
                .map_err(|e| io(data, e))?;
        }
        Err(error) => return Err(io(&path, error)),
    }
    Ok(shards as u32)
}
