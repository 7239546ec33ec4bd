//! Writing a large file without a burst of writeback at its `fdatasync`.
//!
//! Data written through the page cache waits there until something flushes it. A file of a
//! hundred megabytes written and then synced once (an index run, an archive) sends all of it
//! to the disk at that sync, and the log's own `fdatasync`s, on every answer's path, queue
//! behind it: with the history index on, the log's longest sync in a 30-second open loop was
//! about half a second (`docs/PERFORMANCE.md`, "Large files written and removed a step at a
//! time"). [`WriteBehind`] has the kernel write each step out as soon as it is appended
//! (`sync_file_range`), and waits for a step's writes two steps later, so at most three
//! steps are on their way and the final `fdatasync` finds little left. Waiting one step
//! later cost a sixth of the index's throughput in a closed loop; never waiting left syncs
//! of over 100 ms (the same section). It makes nothing durable by itself: the caller still
//! syncs before relying on the file.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use crate::constants::WRITE_BEHIND_STEP_BYTES;

/// Starts the writeback of an appended file's data a step at a time: see the module docs.
#[derive(Debug, Default)]
pub struct WriteBehind {
    /// Bytes appended so far.
    appended: u64,
    /// Up to here writeback was started.
    started: u64,
    /// Where the last step whose writeback was started begins.
    previous: u64,
    /// Up to here writeback was waited for.
    waited: u64,
    /// The kernel or the filesystem has no `sync_file_range`: appends are left to the
    /// caller's final sync, as without a `WriteBehind`.
    unsupported: bool,
}

impl WriteBehind {
    /// A writer whose file starts empty.
    pub fn new() -> WriteBehind {
        WriteBehind::default()
    }

    /// Notes that `len` more bytes were appended to `file`; once a step has gathered, starts
    /// its writeback and waits for the step two before it.
    pub fn appended(&mut self, file: &File, len: u64) -> io::Result<()> {
        self.appended += len;
        if self.unsupported || self.appended - self.started < WRITE_BEHIND_STEP_BYTES {
            return Ok(());
        }
        let started = sync_file_range(file, self.started, self.appended - self.started, START);
        let waited = started
            .and_then(|()| sync_file_range(file, self.waited, self.previous - self.waited, WAIT));
        match waited {
            Ok(()) => {}
            // Only an optimisation: without it the final sync flushes everything, as before.
            Err(error) if is_unsupported(&error) => {
                self.unsupported = true;
                return Ok(());
            }
            // A write error: the data may not reach the disk; the caller fails.
            Err(error) => return Err(error),
        }
        self.waited = self.previous;
        self.previous = self.started;
        self.started = self.appended;
        Ok(())
    }
}

/// Start writing the range's dirty pages, without waiting.
const START: libc::c_uint = libc::SYNC_FILE_RANGE_WRITE;
/// Write what is still dirty in the range and wait until all of it is written.
const WAIT: libc::c_uint = libc::SYNC_FILE_RANGE_WAIT_BEFORE
    | libc::SYNC_FILE_RANGE_WRITE
    | libc::SYNC_FILE_RANGE_WAIT_AFTER;

/// No `sync_file_range` here (an old kernel, a sandbox, or a filesystem without it).
fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::ESPIPE)
    )
}

/// `sync_file_range(2)` over `len` bytes at `offset`; nothing for an empty range.
#[allow(unsafe_code)]
fn sync_file_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::other("a range past the largest file offset"));
    };
    // SAFETY: the call reads no memory of ours; `file` keeps the descriptor open.
    let status = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if status == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Appends through a `WriteBehind` keep the file's bytes as written, and the ranges it
    /// starts and waits for follow the appends a step behind.
    #[test]
    fn appends_are_written_behind_a_step_at_a_time() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("f");
        let mut file = File::create(&path).unwrap();
        let mut behind = WriteBehind::new();
        let piece = vec![7u8; 300 << 10];
        for _ in 0..20 {
            file.write_all(&piece).unwrap();
            behind.appended(&file, piece.len() as u64).unwrap();
            assert!(behind.appended - behind.started < WRITE_BEHIND_STEP_BYTES);
            assert!(behind.waited <= behind.previous);
            assert!(behind.previous <= behind.started);
        }
        // 6,000 KiB: steps of 1,200 KiB started up to 6,000, the last one from 4,800, and
        // waited for up to 3,600.
        assert_eq!(behind.started, 6_000 << 10);
        assert_eq!(behind.previous, 4_800 << 10);
        assert_eq!(behind.waited, 3_600 << 10);
        file.sync_data().unwrap();
        let read = std::fs::read(&path).unwrap();
        assert_eq!(read.len(), 6_000 << 10);
        assert!(read.iter().all(|&byte| byte == 7));
    }

    #[test]
    fn an_empty_range_does_nothing_and_one_past_the_largest_offset_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let file = File::create(directory.path().join("r")).unwrap();
        sync_file_range(&file, 0, 0, WAIT).unwrap();
        let too_far = sync_file_range(&file, u64::MAX, 1, WAIT).unwrap_err();
        assert_eq!(too_far.kind(), io::ErrorKind::Other);
        // The kernel's own refusal comes back too: an unknown flag is EINVAL.
        let refused = sync_file_range(&file, 0, 1, 0x80).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EINVAL));
        assert!(!is_unsupported(&refused), "a refusal is not a missing call");
        assert!(is_unsupported(&io::Error::from_raw_os_error(libc::ENOSYS)));
    }

    /// Where the call is missing, appends go on unhelped: the final sync does it all.
    #[test]
    fn a_writer_whose_kernel_lacks_the_call_goes_on_without_it() {
        let directory = tempfile::tempdir().unwrap();
        let file = File::create(directory.path().join("u")).unwrap();
        let mut behind = WriteBehind {
            unsupported: true,
            ..WriteBehind::default()
        };
        behind.appended(&file, 3 * WRITE_BEHIND_STEP_BYTES).unwrap();
        assert_eq!(behind.started, 0);
    }
}
