//! The checkpoint thread: writes the snapshots the apply thread takes, then applies
//! checkpoint and log retention, so the apply thread never waits on that disk work.
//!
//! A checkpoint of a large state is hundreds of megabytes written and synced: on the apply
//! thread it stopped every command of the shard for seconds (two to three seconds each at
//! 2.5 M transfers, every 10,000 records, under an open loop of 256,000 commands/s:
//! `docs/PERFORMANCE.md`, "Checkpoints off the apply thread"). The apply thread copies the
//! state's largest parts itself, a little after each record while it goes on applying
//! ([`StateMachine::snapshot_begin`], `apply.rs`), and hands them here, where they are
//! sorted and encoded straight into the file ([`SnapshotParts::encode_with`] into a
//! [`checkpoint::CheckpointWriter`]). The copy's buffers come back
//! with the outcome, for the next copy: memory already faulted in, kept between
//! checkpoints (`docs/MEMORY.md`).
//!
//! One checkpoint is written at a time: when the next one falls due while the last is still
//! being written, the apply thread waits for that one (a disk slower than the checkpoint
//! interval slows the shard down rather than queueing snapshots in memory); checkpoints
//! stay at the shard's phase of every interval (`NodeConfig::checkpoint_phase_records`),
//! skipped while the log since the last one is short of its share
//! (`NodeConfig::checkpoint_log_percent`). Buffers are touched in steps, and a wait of the
//! apply thread cuts that short: it never waits for more than a step of touching.
//! Before a checkpoint's file is written, the history index is made durable through (at
//! least) its record, so a crash never leaves the index behind the newest checkpoint. A
//! failure (disk full, I/O error) halts the log at once (so an idle node reports it too)
//! and is reported to the apply thread, which stops with it (fail-stop, as when it wrote
//! checkpoints itself); nothing after a failure is written. Retention (old checkpoints,
//! then old segments with `log_retention`) runs after the checkpoint's outcome is sent, so
//! the apply thread does not wait for the removals (each frees a large file a step at a
//! time: `surge_wal::remove`) unless the next checkpoint or buffers fall due before they
//! end; a failure of them halts the log too and is the outcome of the next work (or of
//! [`Checkpointer::finish`]).

use super::*;

/// What the checkpoint thread is asked to do.
pub(super) enum Work {
    /// Write a checkpoint.
    Checkpoint(Job),
    /// Touch room in these buffers (`SnapshotBuffers::prepare`) ahead of a copy.
    Prepare(SnapshotBuffers, [usize; 3]),
}

/// A checkpoint to write: the state's parts as of a record, to encode here.
pub(super) struct Job {
    pub(super) record_index: u64,
    pub(super) record_checksum: u32,
    /// Room to prepare in the buffers for the next copy, once this one is written.
    pub(super) next_room: [usize; 3],
    pub(super) parts: SnapshotParts,
}

pub(super) struct Checkpointer {
    jobs: crossbeam_channel::Sender<Work>,
    /// The outcome of each job, in order: the snapshot's buffers, given back.
    written: crossbeam_channel::Receiver<Result<SnapshotBuffers, EngineError>>,
    /// A job was sent and its outcome not yet received.
    in_flight: bool,
    /// The buffers of the last snapshot written, for the next.
    spare: Option<SnapshotBuffers>,
    thread: Option<JoinHandle<()>>,
    /// What the thread takes when it starts (the first work sent), until then.
    not_started: Option<ThreadParts>,
    /// Set while the apply thread waits for the outcome: touching buffers stops (what is
    /// touched stays), so a checkpoint due while its buffers are still being touched
    /// waits for a step (8 MiB) rather than for all of them (1–2 s, for the first copy
    /// after a start under load); the copy then page-faults for the rest itself.
    hurry: Arc<AtomicBool>,
}

/// What the checkpoint thread owns.
pub(super) struct CheckpointFiles {
    pub(super) checkpoints: Box<dyn Storage>,
    pub(super) checkpoints_kept: usize,
    /// A handle on the history index, made durable before each checkpoint.
    pub(super) history: Option<LsmHistory>,
    /// A second handle on the log directory and what to do with old segments; `None` to
    /// keep them all.
    pub(super) log_retention: Option<RetentionHandle>,
    /// Halted when a checkpoint fails (weak: the node owns the log).
    pub(super) group_commit: std::sync::Weak<GroupCommit>,
}

/// What the checkpoint thread takes with it when it starts: its files, the work it is
/// sent and where the outcomes go.
type ThreadParts = (
    CheckpointFiles,
    crossbeam_channel::Receiver<Work>,
    crossbeam_channel::Sender<Result<SnapshotBuffers, EngineError>>,
    Arc<AtomicBool>,
);

impl Checkpointer {
    /// A checkpointer whose thread starts with the first work sent (a node that never
    /// checkpoints, interval 0, runs no such thread).
    pub(super) fn start(files: CheckpointFiles) -> Checkpointer {
        let (jobs, jobs_received) = crossbeam_channel::bounded::<Work>(1);
        // Room for a job's outcome and, behind it, a failure of the removals that followed
        // it, sent as the thread ends: the thread never blocks on it while `finish` joins.
        let (written_sender, written) = crossbeam_channel::bounded(2);
        let hurry = Arc::new(AtomicBool::new(false));
        Checkpointer {
            jobs,
            written,
            in_flight: false,
            spare: None,
            thread: None,
            not_started: Some((files, jobs_received, written_sender, hurry.clone())),
            hurry,
        }
    }

    /// Starts the thread, if not yet started.
    fn start_thread(&mut self) {
        let Some((mut files, jobs_received, written_sender, hurry)) = self.not_started.take()
        else {
            return;
        };
        let go_on = move || !hurry.load(Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name("surge-checkpoint".to_string())
            .spawn(move || {
                // A failure of the removals after a checkpoint, answered as the outcome of
                // the next work (or sent as the thread ends).
                let mut retention_failed = None;
                for work in jobs_received {
                    if let Some(error) = retention_failed.take() {
                        let _ = written_sender.send(Err(error));
                        return;
                    }
                    let job = match work {
                        Work::Checkpoint(job) => job,
                        Work::Prepare(mut buffers, room) => {
                            buffers.prepare_while(room, &go_on);
                            if written_sender.send(Ok(buffers)).is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    let mut parts = job.parts;
                    let outcome = files.write(job.record_index, job.record_checksum, &mut parts);
                    // Touched here, ready for the next copy on the apply thread.
                    let outcome = outcome.map(|()| {
                        let mut buffers = parts.into_buffers();
                        buffers.prepare_while(job.next_room, &go_on);
                        buffers
                    });
                    if let (Err(error), Some(group_commit)) =
                        (&outcome, files.group_commit.upgrade())
                    {
                        group_commit.halt(format!("a checkpoint failed: {error}"));
                    }
                    let failed = outcome.is_err();
                    if written_sender.send(outcome).is_err() || failed {
                        return;
                    }
                    // After the outcome, so the apply thread never waits for the removals
                    // (a large file is freed a step at a time: `surge_wal::remove`).
                    if let Err(error) = files.retain() {
                        if let Some(group_commit) = files.group_commit.upgrade() {
                            group_commit.halt(format!("checkpoint retention failed: {error}"));
                        }
                        retention_failed = Some(error);
                    }
                }
                if let Some(error) = retention_failed {
                    let _ = written_sender.send(Err(error));
                }
            })
            .expect("spawn the checkpoint thread");
        self.thread = Some(thread);
    }

    /// The failure of the last checkpoint written, once it is known.
    pub(super) fn check(&mut self) -> Result<(), EngineError> {
        if !self.in_flight {
            return Ok(());
        }
        match self.written.try_recv() {
            Ok(outcome) => {
                self.in_flight = false;
                self.spare = Some(outcome?);
                Ok(())
            }
            Err(crossbeam_channel::TryRecvError::Empty) => Ok(()),
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err(stopped()),
        }
    }

    /// Waits until the checkpoint being written, if any, is written.
    pub(super) fn wait(&mut self) -> Result<(), EngineError> {
        if !self.in_flight {
            return Ok(());
        }
        self.in_flight = false;
        self.hurry.store(true, Ordering::Relaxed);
        let outcome = self.written.recv().unwrap_or_else(|_| Err(stopped()));
        // The thread is idle now (its one job is answered): no touching is cut short later.
        self.hurry.store(false, Ordering::Relaxed);
        self.spare = Some(outcome?);
        Ok(())
    }

    /// The buffers of the last snapshot written (empty if none was, or if it was still
    /// being written: the caller [`Checkpointer::wait`]s first).
    pub(super) fn take_buffers(&mut self) -> SnapshotBuffers {
        self.spare.take().unwrap_or_default()
    }

    /// Hands `job` to the thread, after the one being written, if any.
    pub(super) fn write(&mut self, job: Job) -> Result<(), EngineError> {
        self.send(Work::Checkpoint(job))
    }

    /// Has buffers with `room` touched on the thread: the spare ones grown (touching only
    /// the difference), or fresh ones; nothing if the spare ones have the room, or if
    /// buffers are on the way (the outcome of a checkpoint brings them prepared).
    pub(super) fn prepare(&mut self, room: [usize; 3]) -> Result<(), EngineError> {
        if self.in_flight {
            return Ok(());
        }
        let buffers = self.take_buffers();
        if buffers.has_room(room) {
            self.spare = Some(buffers);
            return Ok(());
        }
        self.send(Work::Prepare(buffers, room))
    }

    fn send(&mut self, work: Work) -> Result<(), EngineError> {
        self.wait()?;
        self.start_thread();
        self.jobs.send(work).map_err(|_| stopped())?;
        self.in_flight = true;
        Ok(())
    }

    /// Waits for the checkpoint being written, if any, and stops the thread.
    pub(super) fn finish(&mut self) -> Result<(), EngineError> {
        let (closed, _) = crossbeam_channel::bounded(0);
        drop(std::mem::replace(&mut self.jobs, closed));
        // Buffers being touched are not needed any more.
        self.hurry.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Never started: its files are let go here, as the thread would have.
        self.not_started = None;
        let mut outcome = match self.in_flight.then(|| self.written.try_recv()) {
            None => Ok(()),
            Some(Ok(outcome)) => outcome.map(drop),
            Some(Err(_)) => Err(stopped()),
        };
        // The removals after the last checkpoint failed (sent as the thread ended).
        if let (Ok(()), Ok(Err(error))) = (&outcome, self.written.try_recv()) {
            outcome = Err(error);
        }
        self.in_flight = false;
        outcome
    }
}

/// The checkpoint thread ended without an outcome for the job sent (it panicked).
fn stopped() -> EngineError {
    EngineError::Stopped("the checkpoint thread stopped".to_string())
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl CheckpointFiles {
    /// Writes the checkpoint of `parts`, the state as of record `record_index` (whose
    /// `checksum_header` is `record_checksum`), encoding it straight into the file: no
    /// copy of the whole snapshot is made (it was 0.7–1 GB, faulted in and freed each
    /// time, in the benchmark of `docs/PERFORMANCE.md`, "Checkpoints staggered").
    fn write(
        &mut self,
        record_index: u64,
        record_checksum: u32,
        parts: &mut SnapshotParts,
    ) -> Result<(), EngineError> {
        // Otherwise a crash could leave the index (whose newest entries are in memory)
        // behind the newest checkpoint, which forces a replay from record 0: slow on a long
        // log, and impossible once retention deleted old segments.
        if let Some(index) = &self.history {
            index.flush()?;
        }
        let mut writer = checkpoint::CheckpointWriter::create(
            &mut *self.checkpoints,
            Some(record_index),
            record_checksum,
        )?;
        parts.encode_with(|bytes| writer.write(bytes))?;
        writer.finish()?;
        Ok(())
    }

    /// Removes the checkpoints beyond the newest `checkpoints_kept`, then applies
    /// `log_retention`.
    fn retain(&mut self) -> Result<(), EngineError> {
        checkpoint::retain(&mut *self.checkpoints, self.checkpoints_kept)?;
        self.retain_log()
    }

    /// Archives or deletes the log segments entirely below the oldest kept checkpoint's
    /// record (which recovery may fall back to, and checks against the log).
    fn retain_log(&mut self) -> Result<(), EngineError> {
        let Some((log, retention)) = self.log_retention.as_mut() else {
            return Ok(());
        };
        let oldest = checkpoint::list(&mut *self.checkpoints)?
            .first()
            .and_then(|name| checkpoint::record_index_of(name));
        // A checkpoint of the empty state needs the log from record 0: keep it all.
        if let Some(Some(record_index)) = oldest {
            retain_segments(&mut **log, record_index, *retention)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpointer() -> Checkpointer {
        Checkpointer::start(CheckpointFiles {
            checkpoints: Box::new(surge_wal::SimStorage::default()),
            checkpoints_kept: 1,
            history: None,
            log_retention: None,
            group_commit: std::sync::Weak::new(),
        })
    }

    /// A log whose listing fails, so log retention after a checkpoint does.
    struct UnlistableLog;

    impl Storage for UnlistableLog {
        fn list(&mut self) -> std::io::Result<Vec<String>> {
            Err(std::io::Error::other("listing refused"))
        }
        fn list_directory(&mut self, _: &str) -> std::io::Result<Vec<String>> {
            unreachable!("retention lists the directory first")
        }
        fn create_directory(&mut self, _: &str) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn create(&mut self, _: &str) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn write_at(&mut self, _: &str, _: u64, _: &[u8]) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn sync_data(&mut self, _: &str) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn read_at(&mut self, _: &str, _: u64, _: &mut [u8]) -> std::io::Result<usize> {
            unreachable!("retention lists the directory first")
        }
        fn read_all(&mut self, _: &str) -> std::io::Result<Vec<u8>> {
            unreachable!("retention lists the directory first")
        }
        fn len(&mut self, _: &str) -> std::io::Result<u64> {
            unreachable!("retention lists the directory first")
        }
        fn set_len(&mut self, _: &str, _: u64) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn rename(&mut self, _: &str, _: &str) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn remove(&mut self, _: &str) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
        fn sync_directory(&mut self) -> std::io::Result<()> {
            unreachable!("retention lists the directory first")
        }
    }

    /// Retention runs after a checkpoint's outcome is sent (the apply thread does not wait
    /// for it); its failure is the outcome of the next work, or of `finish`, never lost.
    #[test]
    fn a_failure_of_the_removals_after_a_checkpoint_is_reported() {
        let state = StateMachine::new(surge_core::Config::default());
        let job = |record_index| Job {
            record_index,
            record_checksum: 0,
            next_room: [0; 3],
            parts: state.snapshot_parts(),
        };
        for reported_by in ["the next work", "finish", "finish, the outcome not taken"] {
            let mut checkpointer = Checkpointer::start(CheckpointFiles {
                checkpoints: Box::new(surge_wal::SimStorage::default()),
                checkpoints_kept: 1,
                history: None,
                log_retention: Some((Box::new(UnlistableLog), LogRetention::Delete)),
                group_commit: std::sync::Weak::new(),
            });
            checkpointer.write(job(7)).expect("sent");
            if reported_by == "finish, the outcome not taken" {
                // The thread sends the outcome, fails its removals and waits for work.
                std::thread::sleep(std::time::Duration::from_millis(200));
            } else {
                let written = checkpointer.wait();
                written.expect("the checkpoint itself is written");
            }
            let failure = if reported_by == "the next work" {
                checkpointer.write(job(8)).expect("sent");
                checkpointer.wait().expect_err("the next work reports it")
            } else {
                let finished = checkpointer.finish();
                finished.expect_err("finish reports the removals' failure")
            };
            let message = failure.to_string();
            assert!(
                message.contains("listing refused"),
                "{reported_by}: {message}"
            );
        }
    }

    /// A wait cuts the touching of buffers short (keeping what was touched) and leaves it
    /// free to go on afterwards: touching that nobody waits for runs to its end.
    #[test]
    fn a_wait_cuts_touching_short_and_only_while_it_waits() {
        let mut checkpointer = checkpointer();
        // 512 MiB of records: far more than a step, a tenth of a second or more.
        let room = [
            0,
            (512 << 20) / std::mem::size_of::<surge_core::Transfer>(),
            0,
        ];
        checkpointer.prepare(room).expect("sent");
        checkpointer.wait().expect("answered");
        assert!(!checkpointer.hurry.load(Ordering::Relaxed));
        let buffers = checkpointer.take_buffers();
        assert!(
            !buffers.has_room(room),
            "the wait did not cut the touching short"
        );
        checkpointer.spare = Some(buffers);
        // Again, unwaited: it touches the rest.
        checkpointer.prepare(room).expect("sent");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while checkpointer.in_flight && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            checkpointer.check().expect("answered");
        }
        assert!(!checkpointer.in_flight, "still touching after a minute");
        assert!(checkpointer.take_buffers().has_room(room));
        checkpointer.finish().expect("stopped");
    }
}
