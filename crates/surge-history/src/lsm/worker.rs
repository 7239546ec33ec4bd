//! The store's background threads: the flusher sorts frozen memtables and writes them as
//! run files, in order; the publisher makes each durable and puts it in the view, in the
//! same order, while the flusher writes the next (so the writer does not wait on the
//! disk's `fdatasync`); two mergers merge [`MERGE_FANOUT`] adjacent runs of one level into
//! one of the next, one the runs written from memory, the other the older levels, so a
//! long merge of old runs never holds up the frequent small ones. The mergers are apart
//! from the flusher so a merge never holds up a flush (and so the writer).
//!
//! Lock order: a thread holding `control` may take `view`, never the reverse.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::memtable::Memtable;
use super::release;
use super::run::{Run, RunCursor, RunWriter, WrittenRun};
use super::{HistoryError, Shared, FROZEN_MAX, MERGE_FANOUT};

/// Entries a merge writes between checks of whether the store is stopping.
const MERGE_STOP_CHECK_ENTRIES: u64 = 4_096;

/// Entries ahead of the one being written whose bytes are hinted to the cache.
const PREFETCH_AHEAD_ENTRIES: usize = 8;

/// A frozen memtable's run, written and waiting to be published.
type Written = (Arc<Memtable>, WrittenRun);

pub(super) struct Workers {
    flusher: JoinHandle<()>,
    publisher: JoinHandle<()>,
    first_merger: JoinHandle<()>,
    upper_merger: JoinHandle<()>,
}

impl Workers {
    pub(super) fn start(shared: &Arc<Shared>) -> Workers {
        let spawn = |name: &'static str, body: Box<dyn FnOnce(&Shared) + Send>| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || {
                    let _failing = FailOnPanic {
                        shared: &shared,
                        name,
                    };
                    body(&shared)
                })
                .expect("spawn a history index thread")
        };
        let (written, to_publish) = sync_channel::<Written>(FROZEN_MAX);
        Workers {
            flusher: spawn(
                "surge-index-flush",
                Box::new(move |shared| flush_loop(shared, written)),
            ),
            publisher: spawn(
                "surge-index-sync",
                Box::new(move |shared| publish_loop(shared, to_publish)),
            ),
            first_merger: spawn(
                "surge-index-mrg",
                Box::new(|shared| merge_loop(shared, Levels::First)),
            ),
            upper_merger: spawn(
                "surge-index-mup",
                Box::new(|shared| merge_loop(shared, Levels::Upper)),
            ),
        }
    }

    /// Lets the flusher write and the publisher publish what is frozen, stops the mergers
    /// (a merge in progress is abandoned: its runs stay), and joins them.
    pub(super) fn stop(self, shared: &Shared) {
        {
            let mut control = shared.control.lock();
            control.stopping = true;
            shared.changed.notify_all();
        }
        let _ = self.flusher.join();
        let _ = self.publisher.join();
        let _ = self.first_merger.join();
        let _ = self.upper_merger.join();
    }
}

/// Stops the store if its thread panics: the writer and `flush` wait on the background
/// threads, and would otherwise wait forever.
struct FailOnPanic<'a> {
    shared: &'a Shared,
    name: &'static str,
}

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let reason = format!("the index's {} thread panicked", self.name);
            fail(self.shared, HistoryError::Background(reason));
        }
    }
}

fn fail(shared: &Shared, error: HistoryError) {
    let mut control = shared.control.lock();
    control.failed.get_or_insert(error.to_string());
    shared.changed.notify_all();
}

/// Writes each frozen memtable not handed to the publisher yet, oldest first, and hands
/// it over. Returns when the store stops with nothing left to write, when a thread failed,
/// or when the publisher is gone.
fn flush_loop(shared: &Shared, written: SyncSender<Written>) {
    loop {
        let (table, number) = {
            let mut control = shared.control.lock();
            let table = loop {
                if control.failed.is_some() {
                    return;
                }
                let next = shared.view.read().frozen.get(control.handed).cloned();
                if let Some(table) = next {
                    break table;
                }
                if control.stopping {
                    return;
                }
                shared.changed.wait(&mut control);
            };
            let number = control.next_flush;
            control.next_flush += 1;
            control.handed += 1;
            (table, number)
        };
        match write_memtable(shared, &table, number) {
            Ok(run) => {
                // An error: the publisher stopped, having failed the store.
                if written.send((table, run)).is_err() {
                    return;
                }
            }
            Err(error) => return fail(shared, error),
        }
    }
}

/// Publishes the flusher's runs in the order it wrote them: durable first, then in the
/// view in place of their memtables. Returns when the flusher is gone and everything it
/// wrote is published, or at the first failure.
fn publish_loop(shared: &Shared, to_publish: Receiver<Written>) {
    for (table, written) in to_publish {
        #[cfg(test)]
        assert!(
            !shared.control.lock().publisher_panics,
            "a test made the publisher panic"
        );
        let run = match written.publish() {
            Ok(run) => run,
            Err(error) => return fail(shared, error),
        };
        {
            let mut control = shared.control.lock();
            let mut view = shared.view.write();
            let front = view.frozen.pop_front();
            debug_assert!(front.is_some_and(|front| Arc::ptr_eq(&front, &table)));
            view.runs.push(Arc::new(run));
            control.handed -= 1;
            shared.changed.notify_all();
        }
        // Its memory holds the next memtable, unless a reader still reads it.
        if let Ok(mut spent) = Arc::try_unwrap(table) {
            spent.clear();
            shared.view.write().spare = Some(spent);
        }
    }
}

fn write_memtable(
    shared: &Shared,
    table: &Memtable,
    number: u64,
) -> Result<WrittenRun, HistoryError> {
    // An upper bound: a point key written twice counts twice (the `applied` mark, once per
    // record), so this run's filter may be larger than its keys need; merges size theirs
    // by the keys the runs hold.
    let filtered = table.points();
    let sorted = table.sorted();
    let mut writer = RunWriter::create(
        &shared.directory,
        0,
        (number, number),
        filtered as u64,
        shared.policy,
    )?;
    for (index, (key, value)) in sorted.iter().enumerate() {
        // In key order the entries lie scattered over the memtable: start loading those a
        // few places on while this one is copied.
        if let Some((key, value)) = sorted.get(index + PREFETCH_AHEAD_ENTRIES) {
            surge_core::prefetch_bytes(key);
            surge_core::prefetch_bytes(value);
        }
        if let Err(error) = writer.push(key, value) {
            writer.abandon();
            return Err(error);
        }
    }
    writer.write_tail()
}

/// The [`MERGE_FANOUT`] oldest adjacent runs of the lowest level that has that many.
pub(super) fn pick(runs: &[Arc<Run>]) -> Option<Vec<Arc<Run>>> {
    pick_in(runs, Levels::All)
}

/// Which levels a merger merges.
#[derive(Clone, Copy, Debug)]
pub(super) enum Levels {
    All,
    /// Runs written from memory: their merges are small and frequent, and never wait
    /// behind a large merge of older runs.
    First,
    Upper,
}

impl Levels {
    fn holds(self, level: u32) -> bool {
        match self {
            Levels::All => true,
            Levels::First => level == 0,
            Levels::Upper => level > 0,
        }
    }
}

/// [`pick`] among the levels `levels` names.
pub(super) fn pick_in(runs: &[Arc<Run>], levels: Levels) -> Option<Vec<Arc<Run>>> {
    let mut best: Option<(u32, usize)> = None;
    let mut start = 0;
    while start < runs.len() {
        let level = runs[start].level;
        let mut end = start + 1;
        while end < runs.len() && runs[end].level == level {
            end += 1;
        }
        let wanted = levels.holds(level) && best.is_none_or(|(low, _)| level < low);
        if end - start >= MERGE_FANOUT && wanted {
            best = Some((level, start));
        }
        start = end;
    }
    best.map(|(_, start)| runs[start..start + MERGE_FANOUT].to_vec())
}

fn merge_loop(shared: &Shared, levels: Levels) {
    loop {
        let group = {
            let mut control = shared.control.lock();
            loop {
                if control.failed.is_some() || control.stopping {
                    return;
                }
                let due = pick_in(&shared.view.read().runs, levels);
                if let (Some(group), false) = (due, control.merges_paused()) {
                    break group;
                }
                shared.changed.wait(&mut control);
            }
        };
        match merge(shared, &group) {
            Ok(Some(merged)) => {
                {
                    let mut view = shared.view.write();
                    let at = view
                        .runs
                        .iter()
                        .position(|run| Arc::ptr_eq(run, &group[0]))
                        .expect("only this merger removes runs of its levels");
                    let replaced = view.runs.splice(at..at + group.len(), [Arc::new(merged)]);
                    debug_assert!(replaced.zip(&group).all(|(a, b)| Arc::ptr_eq(&a, b)));
                }
                // Readers holding the old runs keep reading their open files.
                let unlinked = match release::unlink(&shared.directory, group) {
                    Ok(unlinked) => unlinked,
                    Err(error) => return fail(shared, error),
                };
                {
                    let _control = shared.control.lock();
                    shared.changed.notify_all();
                }
                if let Err(error) = unlinked.free(|| shared.control.lock().stopping) {
                    return fail(shared, error);
                }
            }
            Ok(None) => return,
            Err(error) => return fail(shared, error),
        }
    }
}

/// Merges `group` (adjacent, oldest first) into one run; the newest value of a key wins.
/// `None` when the store began stopping.
fn merge(shared: &Shared, group: &[Arc<Run>]) -> Result<Option<Run>, HistoryError> {
    let first = group.first().expect("a group").first;
    let last = group.last().expect("a group").last;
    let filtered = group.iter().map(|run| run.filtered()).sum();
    let level = group[0].level + 1;
    let mut writer = RunWriter::create(
        &shared.directory,
        level,
        (first, last),
        filtered,
        shared.policy,
    )?;
    match merge_into(shared, group, &mut writer) {
        Ok(true) => writer.finish().map(Some),
        Ok(false) => {
            writer.abandon();
            Ok(None)
        }
        Err(error) => {
            writer.abandon();
            Err(error)
        }
    }
}

/// Writes the merged entries; `false` if the store began stopping.
fn merge_into(
    shared: &Shared,
    group: &[Arc<Run>],
    writer: &mut RunWriter,
) -> Result<bool, HistoryError> {
    let mut cursors = group
        .iter()
        .map(|run| RunCursor::new(run))
        .collect::<Result<Vec<_>, _>>()?;
    // Whether cursor `a`'s entry goes before cursor `b`'s: the smaller key, and among equal
    // keys the newest run's (the later in `group`), whose value wins.
    let before = |cursors: &[RunCursor], a: usize, b: usize| {
        let key = |index: usize| cursors[index].current().expect("a cursor in the order").0;
        cursors[a]
            .prefix()
            .cmp(&cursors[b].prefix())
            .then_with(|| key(a).cmp(key(b)))
            .then(b.cmp(&a))
            .is_lt()
    };
    // The cursors not at their end, in that order.
    let mut order: Vec<usize> = Vec::with_capacity(cursors.len());
    for index in 0..cursors.len() {
        if cursors[index].current().is_some() {
            let at = order.partition_point(|&other| before(&cursors, other, index));
            order.insert(at, index);
        }
    }
    let mut heads: Vec<usize> = Vec::with_capacity(cursors.len());
    let mut written = 0u64;
    while let Some(&best) = order.first() {
        let (key, value) = cursors[best].current().expect("current");
        writer.push(key, value)?;
        // Every cursor at this key moves past it (the older ones' values lost to it).
        let prefix = cursors[best].prefix();
        let alike = order
            .iter()
            .take_while(|&&index| {
                let cursor = &cursors[index];
                cursor.prefix() == prefix && cursor.current().is_some_and(|(other, _)| other == key)
            })
            .count();
        heads.clear();
        heads.extend(order.drain(..alike));
        for &index in &heads {
            cursors[index].advance()?;
            if cursors[index].current().is_some() {
                let at = order.partition_point(|&other| before(&cursors, other, index));
                order.insert(at, index);
            }
        }
        written += 1;
        if written % MERGE_STOP_CHECK_ENTRIES == 0 && shared.control.lock().stopping {
            return Ok(false);
        }
    }
    Ok(true)
}
