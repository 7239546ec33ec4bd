//! Checkpoints: the state machine's snapshot with the log position it reflects, as a plain
//! checksummed file. Written to a temporary name, synced, renamed, and the directory synced,
//! so a crash leaves either the old set of checkpoints or the new one, never a half file
//! under a checkpoint's name. Recovery loads the newest valid checkpoint and replays the log
//! after it; the last few are kept so a damaged newest one falls back to an older one.
//!
//! File `checkpoint-{record_index:020}.ckpt`, little-endian:
//!
//! ```text
//!  0   8  magic "SRGCKPT1"
//!  8   2  format version (1)
//! 10   6  reserved, zero
//! 16   8  record_index: the last log record applied to the snapshot (u64::MAX: none)
//! 24   4  checksum_header of that log record (chains the checkpoint to the log)
//! 28   4  crc32c of the body
//! 32   8  body size in bytes
//! 40  20  reserved, zero
//! 60   4  crc32c of bytes 0..60
//! 64   …  body: StateMachine::snapshot() bytes
//! ```

use std::io;

use thiserror::Error;

use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"SRGCKPT1";
const VERSION: u16 = 1;
const HEADER_SIZE_BYTES: usize = 64;
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".ckpt";
const TEMPORARY_SUFFIX: &str = ".ckpt.tmp";

/// A checkpoint is written and synced this many bytes at a time: a log `fdatasync` that
/// meets the checkpoint's writes in the disk's queue waits behind one step, not behind the
/// whole file (hundreds of megabytes for a large state). 1 MiB since 2026-12-07: against
/// 4 MiB, the log's sync p99 during a 30-second open loop with one shard was 0.6–0.7 ms
/// instead of 1.4 ms (`docs/PERFORMANCE.md`, "Checkpoint copies spread over records").
const WRITE_STEP_BYTES: usize = 1 << 20;

/// A checkpoint read back from disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last log record the snapshot reflects; `None` for a snapshot of the empty state.
    pub record_index: Option<u64>,
    /// `checksum_header` of that record, to check the log still has it.
    pub record_checksum: u32,
    /// `StateMachine::snapshot()` bytes.
    pub snapshot: Vec<u8>,
}

/// Why a checkpoint could not be written or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A disk operation failed.
    #[error("checkpoint {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint file is damaged.
    #[error("checkpoint file {file} is invalid: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// The file name of the checkpoint at `record_index`.
pub fn file_name(record_index: Option<u64>) -> String {
    format!(
        "{PREFIX}{:020}{SUFFIX}",
        record_index.map_or(0, |index| index + 1)
    )
}

/// The record index a checkpoint file name stands for (`Some(None)`: the empty state), or
/// `None` if `name` is not a checkpoint file name. Lets log retention find the oldest kept
/// checkpoint's record without reading the (large) file.
pub fn record_index_of(name: &str) -> Option<Option<u64>> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    Some(number.checked_sub(1))
}

/// Writes a checkpoint durably: temporary file (written and synced [`WRITE_STEP_BYTES`] at
/// a time), rename, directory `fsync`. For a snapshot already in memory; a snapshot encoded
/// a piece at a time goes through a [`CheckpointWriter`].
pub fn write(
    storage: &mut dyn Storage,
    checkpoint: &Checkpoint,
) -> Result<String, CheckpointError> {
    let mut writer =
        CheckpointWriter::create(storage, checkpoint.record_index, checkpoint.record_checksum)?;
    // The snapshot straight from the caller's buffer: no copy of hundreds of megabytes.
    writer.write(&checkpoint.snapshot)?;
    writer.finish()
}

/// A checkpoint written as its snapshot is encoded, so no whole copy of the snapshot
/// (hundreds of megabytes for a large state) is ever held in memory: the body goes to a
/// temporary file [`WRITE_STEP_BYTES`] at a time, each step synced before the next, its
/// checksum computed on the way; [`CheckpointWriter::finish`] writes the header, syncs,
/// renames and syncs the directory. A writer dropped unfinished (or failing) leaves only
/// its temporary file, which recovery ignores and the next write or [`retain`] removes;
/// after a failure every later call fails too.
pub struct CheckpointWriter<'a> {
    storage: &'a mut dyn Storage,
    name: String,
    temporary: String,
    record_index: Option<u64>,
    record_checksum: u32,
    /// Body bytes in the file so far.
    written: u64,
    /// crc32c of those bytes.
    checksum: u32,
    /// Body bytes not yet in the file: less than a step.
    pending: Vec<u8>,
    /// A write or sync failed: the file has a hole, and may never become a checkpoint.
    failed: bool,
}

impl<'a> CheckpointWriter<'a> {
    /// Starts the checkpoint of the state as of `record_index` (whose `checksum_header` is
    /// `record_checksum`), replacing a temporary file a failed write left.
    pub fn create(
        storage: &'a mut dyn Storage,
        record_index: Option<u64>,
        record_checksum: u32,
    ) -> Result<CheckpointWriter<'a>, CheckpointError> {
        let name = file_name(record_index);
        let temporary = temporary_name(&name);
        let writer = CheckpointWriter {
            storage,
            name,
            temporary,
            record_index,
            record_checksum,
            written: 0,
            checksum: 0,
            pending: Vec::with_capacity(WRITE_STEP_BYTES),
            failed: false,
        };
        let listed = writer.storage.list();
        let listed = listed.map_err(|source| writer.io("list", source))?;
        if listed.contains(&writer.temporary) {
            let removed = writer.storage.remove(&writer.temporary);
            removed.map_err(|source| writer.io("remove stale", source))?;
        }
        let created = writer.storage.create(&writer.temporary);
        created.map_err(|source| writer.io("create", source))?;
        // A placeholder until the body's checksum is known: a file with it never passes for
        // a checkpoint (its magic is zeros).
        let placeholder = writer
            .storage
            .write_at(&writer.temporary, 0, &[0; HEADER_SIZE_BYTES]);
        placeholder.map_err(|source| writer.io("write", source))?;
        Ok(writer)
    }

    /// Appends `bytes` to the body: whole steps are written (and synced) at once, straight
    /// from `bytes`; a remainder smaller than a step waits for more.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), CheckpointError> {
        self.check_not_failed()?;
        if !self.pending.is_empty() || bytes.len() < WRITE_STEP_BYTES {
            let taken = (WRITE_STEP_BYTES - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..taken]);
            bytes = &bytes[taken..];
            if self.pending.len() < WRITE_STEP_BYTES {
                return Ok(());
            }
            let step = std::mem::take(&mut self.pending);
            self.write_step(&step)?;
            self.pending = step;
            self.pending.clear();
        }
        let whole = bytes.len() - bytes.len() % WRITE_STEP_BYTES;
        for step in bytes[..whole].chunks(WRITE_STEP_BYTES) {
            self.write_step(step)?;
        }
        self.pending.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    /// Writes the rest of the body and the header, syncs, and gives the checkpoint its name;
    /// returns that name.
    pub fn finish(mut self) -> Result<String, CheckpointError> {
        self.check_not_failed()?;
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.write_step(&rest)?;
        }
        let header = header(
            self.record_index,
            self.record_checksum,
            self.checksum,
            self.written,
        );
        let written = self.storage.write_at(&self.temporary, 0, &header);
        written.map_err(|source| self.io("write", source))?;
        let synced = self.storage.sync_data(&self.temporary);
        synced.map_err(|source| self.io("sync", source))?;
        let renamed = self.storage.rename(&self.temporary, &self.name);
        renamed.map_err(|source| self.io("rename", source))?;
        let synced = self.storage.sync_directory();
        synced.map_err(|source| self.io("sync directory for", source))?;
        Ok(self.name)
    }

    /// Writes and syncs one step of the body.
    fn write_step(&mut self, step: &[u8]) -> Result<(), CheckpointError> {
        let offset = HEADER_SIZE_BYTES as u64 + self.written;
        // Failed until the step is written and synced.
        self.failed = true;
        let written = self.storage.write_at(&self.temporary, offset, step);
        written.map_err(|source| self.io("write", source))?;
        let synced = self.storage.sync_data(&self.temporary);
        synced.map_err(|source| self.io("sync", source))?;
        self.failed = false;
        self.checksum = crc32c::crc32c_append(self.checksum, step);
        self.written += step.len() as u64;
        Ok(())
    }

    /// Refuses to go on after a failed write or sync.
    fn check_not_failed(&self) -> Result<(), CheckpointError> {
        if !self.failed {
            return Ok(());
        }
        let source = io::Error::other("an earlier write or sync of this checkpoint failed");
        Err(self.io("write", source))
    }

    /// The failure `source` of `what` on the temporary file.
    fn io(&self, what: &str, source: io::Error) -> CheckpointError {
        CheckpointError::Io {
            what: format!("{what} {}", self.temporary),
            source,
        }
    }
}

/// The name checkpoint file `name` is written under until it is whole.
fn temporary_name(name: &str) -> String {
    format!("{}{TEMPORARY_SUFFIX}", name.trim_end_matches(SUFFIX))
}

/// Every checkpoint file, oldest first.
pub fn list(storage: &mut dyn Storage) -> Result<Vec<String>, CheckpointError> {
    let names = storage.list().map_err(|source| CheckpointError::Io {
        what: "list".to_string(),
        source,
    })?;
    let mut checkpoints: Vec<String> = names
        .into_iter()
        .filter(|name| name.starts_with(PREFIX) && name.ends_with(SUFFIX))
        .collect();
    checkpoints.sort();
    Ok(checkpoints)
}

/// Reads and checks one checkpoint file.
pub fn read(storage: &mut dyn Storage, name: &str) -> Result<Checkpoint, CheckpointError> {
    let bytes = storage
        .read_all(name)
        .map_err(|source| CheckpointError::Io {
            what: format!("read {name}"),
            source,
        })?;
    decode(&bytes).map_err(|reason| CheckpointError::Invalid {
        file: name.to_string(),
        reason,
    })
}

/// The newest valid checkpoint, with a warning for each newer one that was invalid.
pub fn read_newest(
    storage: &mut dyn Storage,
) -> Result<(Option<Checkpoint>, Vec<CheckpointError>), CheckpointError> {
    let mut warnings = Vec::new();
    for name in list(storage)?.iter().rev() {
        match read(storage, name) {
            Ok(checkpoint) => return Ok((Some(checkpoint), warnings)),
            Err(error @ CheckpointError::Invalid { .. }) => warnings.push(error),
            Err(error) => return Err(error),
        }
    }
    Ok((None, warnings))
}

/// Removes all but the newest `keep` checkpoints (and leftover temporary files).
pub fn retain(storage: &mut dyn Storage, keep: usize) -> Result<Vec<String>, CheckpointError> {
    let mut removed = Vec::new();
    let names = list(storage)?;
    let excess = names.len().saturating_sub(keep);
    let stale: Vec<String> = storage
        .list()
        .map_err(|source| CheckpointError::Io {
            what: "list".to_string(),
            source,
        })?
        .into_iter()
        .filter(|name| name.ends_with(TEMPORARY_SUFFIX))
        .collect();
    for name in names.into_iter().take(excess).chain(stale) {
        storage
            .remove(&name)
            .map_err(|source| CheckpointError::Io {
                what: format!("remove {name}"),
                source,
            })?;
        removed.push(name);
    }
    if !removed.is_empty() {
        storage
            .sync_directory()
            .map_err(|source| CheckpointError::Io {
                what: "sync directory".to_string(),
                source,
            })?;
    }
    Ok(removed)
}

/// The file's 64-byte header (the snapshot's bytes follow it) for a checkpoint at
/// `record_index` whose body of `body_size` bytes has the crc32c `body_checksum`.
fn header(
    record_index: Option<u64>,
    record_checksum: u32,
    body_checksum: u32,
    body_size: u64,
) -> [u8; HEADER_SIZE_BYTES] {
    let mut bytes = [0u8; HEADER_SIZE_BYTES];
    bytes[0..8].copy_from_slice(MAGIC);
    bytes[8..10].copy_from_slice(&VERSION.to_le_bytes());
    let record_index = record_index.unwrap_or(u64::MAX);
    bytes[16..24].copy_from_slice(&record_index.to_le_bytes());
    bytes[24..28].copy_from_slice(&record_checksum.to_le_bytes());
    bytes[28..32].copy_from_slice(&body_checksum.to_le_bytes());
    bytes[32..40].copy_from_slice(&body_size.to_le_bytes());
    let header_checksum = crc32c::crc32c(&bytes[0..60]);
    bytes[60..64].copy_from_slice(&header_checksum.to_le_bytes());
    bytes
}

/// The whole file.
#[cfg(test)]
fn encode(checkpoint: &Checkpoint) -> Vec<u8> {
    let mut bytes = header(
        checkpoint.record_index,
        checkpoint.record_checksum,
        crc32c::crc32c(&checkpoint.snapshot),
        checkpoint.snapshot.len() as u64,
    )
    .to_vec();
    bytes.extend_from_slice(&checkpoint.snapshot);
    bytes
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < HEADER_SIZE_BYTES {
        return Err(format!("{} bytes is shorter than the header", bytes.len()));
    }
    if &bytes[0..8] != MAGIC {
        return Err("bad magic".to_string());
    }
    let header_checksum = u32::from_le_bytes(field(bytes, 60));
    let computed = crc32c::crc32c(&bytes[0..60]);
    if header_checksum != computed {
        return Err(format!(
            "header checksum {header_checksum:08x}, computed {computed:08x}"
        ));
    }
    let version = u16::from_le_bytes(field(bytes, 8));
    if version != VERSION {
        return Err(format!("format version {version}, supported {VERSION}"));
    }
    if bytes[10..16]
        .iter()
        .chain(&bytes[40..60])
        .any(|byte| *byte != 0)
    {
        return Err("reserved bytes are not zero".to_string());
    }
    let body_size = u64::from_le_bytes(field(bytes, 32));
    let body = &bytes[HEADER_SIZE_BYTES..];
    if body.len() as u64 != body_size {
        return Err(format!(
            "body is {} bytes, header says {body_size}",
            body.len()
        ));
    }
    let body_checksum = u32::from_le_bytes(field(bytes, 28));
    let computed = crc32c::crc32c(body);
    if body_checksum != computed {
        return Err(format!(
            "body checksum {body_checksum:08x}, computed {computed:08x}"
        ));
    }
    let record_index = u64::from_le_bytes(field(bytes, 16));
    Ok(Checkpoint {
        record_index: (record_index != u64::MAX).then_some(record_index),
        record_checksum: u32::from_le_bytes(field(bytes, 24)),
        snapshot: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;

    fn checkpoint(record_index: Option<u64>, body: &[u8]) -> Checkpoint {
        Checkpoint {
            record_index,
            record_checksum: 7,
            snapshot: body.to_vec(),
        }
    }

    #[test]
    fn newest_valid_checkpoint_wins_and_damage_falls_back() {
        let storage = SimStorage::new();
        let mut disk: Box<dyn Storage> = Box::new(storage.clone());
        write(&mut *disk, &checkpoint(None, b"empty")).unwrap();
        write(&mut *disk, &checkpoint(Some(10), b"ten")).unwrap();
        let newest = write(&mut *disk, &checkpoint(Some(20), b"twenty")).unwrap();
        let (found, warnings) = read_newest(&mut *disk).unwrap();
        assert_eq!(found, Some(checkpoint(Some(20), b"twenty")));
        assert!(warnings.is_empty());
        // Flip a body byte of the newest: it is reported and the previous one is used.
        storage.corrupt(&newest, 64, b"X").unwrap();
        let (found, warnings) = read_newest(&mut *disk).unwrap();
        assert_eq!(found, Some(checkpoint(Some(10), b"ten")));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].to_string().contains(&newest), "{}", warnings[0]);
        assert_eq!(retain(&mut *disk, 2).unwrap(), vec![file_name(None)]);
        assert_eq!(list(&mut *disk).unwrap().len(), 2);
    }

    #[test]
    fn names_give_back_their_record_index() {
        assert_eq!(record_index_of(&file_name(None)), Some(None));
        assert_eq!(record_index_of(&file_name(Some(0))), Some(Some(0)));
        assert_eq!(record_index_of(&file_name(Some(41))), Some(Some(41)));
        assert_eq!(record_index_of("checkpoint-1.ckpt"), None);
        assert_eq!(
            record_index_of("checkpoint-00000000000000000002.ckpt.tmp"),
            None
        );
        assert_eq!(record_index_of("segment-00000000.log"), None);
    }

    #[test]
    fn truncated_or_garbage_files_are_invalid_never_a_panic() {
        let bytes = encode(&checkpoint(Some(3), b"some snapshot bytes"));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut state = 1u64;
        for _ in 0..2_000 {
            let mut flipped = bytes.clone();
            let at = (crate::storage::split_mix(&mut state) as usize) % flipped.len();
            flipped[at] ^= 1 << (crate::storage::split_mix(&mut state) % 8);
            assert!(decode(&flipped).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_power_cut_mid_checkpoint_leaves_the_old_set() {
        let storage = SimStorage::new();
        let mut disk: Box<dyn Storage> = Box::new(storage.clone());
        write(&mut *disk, &checkpoint(Some(1), b"one")).unwrap();
        // Fail the sync of the next checkpoint's temporary file, then cut the power.
        storage.fail_next_sync();
        assert!(write(&mut *disk, &checkpoint(Some(2), b"two")).is_err());
        storage.power_cut_losing_all_unsynced();
        let (found, warnings) = read_newest(&mut *disk).unwrap();
        assert_eq!(found, Some(checkpoint(Some(1), b"one")));
        assert!(warnings.is_empty());
    }

    /// A body handed to a `CheckpointWriter` in pieces of any size (empty, smaller than a
    /// step, straddling steps, several steps at once) makes the same file as the whole body
    /// written at once. A failure at the third step's write leaves a temporary file of two
    /// whole steps (each a write, then a sync), no checkpoint, and a writer that refuses to
    /// go on.
    #[test]
    fn a_body_written_in_pieces_makes_the_file_of_the_whole_body() {
        let body: Vec<u8> = (0..3 * WRITE_STEP_BYTES + 777)
            .map(|i| (i % 253) as u8)
            .collect();
        let expected = encode(&checkpoint(Some(4), &body));
        let mut state = 11u64;
        for trial in 0..24 {
            let storage = SimStorage::new();
            let mut disk: Box<dyn Storage> = Box::new(storage.clone());
            let mut writer = CheckpointWriter::create(&mut *disk, Some(4), 7).unwrap();
            let mut at = 0;
            while at < body.len() {
                let limit = match crate::storage::split_mix(&mut state) % 3 {
                    0 => 300,
                    1 => WRITE_STEP_BYTES + 1,
                    _ => 3 * WRITE_STEP_BYTES,
                };
                let size =
                    (crate::storage::split_mix(&mut state) as usize % limit).min(body.len() - at);
                writer.write(&body[at..at + size]).unwrap();
                at += size;
            }
            let name = writer.finish().unwrap();
            assert!(
                storage.contents(&name).unwrap() == expected,
                "trial {trial}"
            );
        }
        // Create, the header's placeholder, then a write and a sync per step: the third
        // step's write fails, after two steps each written whole and synced.
        let storage = SimStorage::new();
        let mut disk: Box<dyn Storage> = Box::new(storage.clone());
        storage.crash_after_operations(6);
        let mut writer = CheckpointWriter::create(&mut *disk, Some(4), 7).unwrap();
        let outcome = body.chunks(1_000).try_for_each(|piece| writer.write(piece));
        assert!(outcome.is_err());
        assert!(writer.write(&[1]).is_err());
        assert!(writer.finish().is_err());
        let temporary = temporary_name(&file_name(Some(4)));
        let written = storage.contents(&temporary).expect("the temporary file");
        assert_eq!(written.len(), HEADER_SIZE_BYTES + 2 * WRITE_STEP_BYTES);
        storage.power_cut_losing_all_unsynced();
        assert_eq!(read_newest(&mut *disk).unwrap().0, None);
    }

    /// An empty body through a `CheckpointWriter` is a checkpoint too (synced, renamed).
    #[test]
    fn an_empty_body_makes_a_checkpoint() {
        let storage = SimStorage::new();
        let mut disk: Box<dyn Storage> = Box::new(storage.clone());
        let mut writer = CheckpointWriter::create(&mut *disk, None, 7).unwrap();
        writer.write(&[]).unwrap();
        writer.finish().unwrap();
        storage.power_cut_losing_all_unsynced();
        assert_eq!(
            read_newest(&mut *disk).unwrap().0,
            Some(checkpoint(None, b""))
        );
    }

    /// A snapshot of several write steps is written and synced step by step, straight from
    /// the caller's buffer, and reads back whole; a power cut after some of its steps (each
    /// synced) still leaves no checkpoint under its name.
    #[test]
    fn a_snapshot_of_several_steps_reads_back_whole_and_a_cut_in_between_leaves_none() {
        let body: Vec<u8> = (0..2 * WRITE_STEP_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let storage = SimStorage::new();
        let mut disk: Box<dyn Storage> = Box::new(storage.clone());
        let name = write(&mut *disk, &checkpoint(Some(9), &body)).unwrap();
        assert_eq!(read(&mut *disk, &name).unwrap(), checkpoint(Some(9), &body));
        let bytes = storage.contents(&name).unwrap();
        assert_eq!(bytes, encode(&checkpoint(Some(9), &body)));

        let storage = SimStorage::new();
        let mut disk: Box<dyn Storage> = Box::new(storage.clone());
        // create, the header's placeholder, then two (write, sync) steps: the third write
        // fails.
        storage.crash_after_operations(6);
        assert!(write(&mut *disk, &checkpoint(Some(9), &body)).is_err());
        // The sixth operation was the second step's sync: each step is synced before the
        // next is written (written all at once, the third step would be there too).
        let temporary = temporary_name(&file_name(Some(9)));
        let written = storage.contents(&temporary).expect("the temporary file");
        assert_eq!(written.len(), HEADER_SIZE_BYTES + 2 * WRITE_STEP_BYTES);
        storage.power_cut_losing_all_unsynced();
        assert_eq!(list(&mut *disk).unwrap(), Vec::<String>::new());
        assert_eq!(read_newest(&mut *disk).unwrap().0, None);
    }
}
