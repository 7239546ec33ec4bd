//! The store's two background threads: the flusher writes frozen memtables as runs, in
//! order; the merger merges [`MERGE_FANOUT`] adjacent runs of one level into one of the
//! next. They are apart so a long merge never holds up a flush (and so the writer).
//!
//! Lock order: a thread holding `control` may take `view`, never the reverse.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::memtable::Memtable;
use super::run::{Run, RunCursor, RunWriter};
use super::{HistoryError, Shared, MERGE_FANOUT};

/// Entries a merge writes between checks of whether the store is stopping.
const MERGE_STOP_CHECK_ENTRIES: u64 = 4_096;

pub(super) struct Workers {
    flusher: JoinHandle<()>,
    merger: JoinHandle<()>,
}

impl Workers {
    pub(super) fn start(shared: &Arc<Shared>) -> Workers {
        let spawn = |name: &str, body: fn(&Shared)| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || body(&shared))
                .expect("spawn a history index thread")
        };
        Workers {
            flusher: spawn("surge-index-flush", flush_loop),
            merger: spawn("surge-index-merge", merge_loop),
        }
    }

    /// Lets the flusher write what is frozen, stops the merger (a merge in progress is
    /// abandoned: its runs stay), and joins both.
    pub(super) fn stop(self, shared: &Shared) {
        {
            let mut control = shared.control.lock();
            control.stopping = true;
            shared.changed.notify_all();
        }
        let _ = self.flusher.join();
        let _ = self.merger.join();
    }
}

fn fail(shared: &Shared, error: HistoryError) {
    let mut control = shared.control.lock();
    control.failed.get_or_insert(error.to_string());
    shared.changed.notify_all();
}

fn flush_loop(shared: &Shared) {
    loop {
        let (table, number) = {
            let mut control = shared.control.lock();
            let table = loop {
                if control.failed.is_some() {
                    return;
                }
                if let Some(table) = shared.view.read().frozen.front().cloned() {
                    break table;
                }
                if control.stopping {
                    return;
                }
                shared.changed.wait(&mut control);
            };
            let number = control.next_flush;
            control.next_flush += 1;
            (table, number)
        };
        match write_memtable(shared, &table, number) {
            Ok(run) => {
                {
                    let mut view = shared.view.write();
                    let front = view.frozen.pop_front();
                    debug_assert!(front.is_some_and(|front| Arc::ptr_eq(&front, &table)));
                    view.runs.push(Arc::new(run));
                }
                let _control = shared.control.lock();
                shared.changed.notify_all();
            }
            Err(error) => return fail(shared, error),
        }
    }
}

fn write_memtable(shared: &Shared, table: &Memtable, number: u64) -> Result<Run, HistoryError> {
    let sorted = table.sorted();
    let filtered = sorted
        .iter()
        .filter(|(key, _)| (shared.policy)(key))
        .count();
    let mut writer = RunWriter::create(
        &shared.directory,
        0,
        (number, number),
        filtered as u64,
        shared.policy,
    )?;
    for (key, value) in sorted {
        if let Err(error) = writer.push(key, value) {
            writer.abandon();
            return Err(error);
        }
    }
    writer.finish()
}

/// The [`MERGE_FANOUT`] oldest adjacent runs of the lowest level that has that many.
pub(super) fn pick(runs: &[Arc<Run>]) -> Option<Vec<Arc<Run>>> {
    let mut best: Option<(u32, usize)> = None;
    let mut start = 0;
    while start < runs.len() {
        let level = runs[start].level;
        let mut end = start + 1;
        while end < runs.len() && runs[end].level == level {
            end += 1;
        }
        if end - start >= MERGE_FANOUT && best.is_none_or(|(low, _)| level < low) {
            best = Some((level, start));
        }
        start = end;
    }
    best.map(|(_, start)| runs[start..start + MERGE_FANOUT].to_vec())
}

fn merge_loop(shared: &Shared) {
    loop {
        let group = {
            let mut control = shared.control.lock();
            loop {
                if control.failed.is_some() || control.stopping {
                    return;
                }
                if let Some(group) = pick(&shared.view.read().runs) {
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
                        .expect("only the merger removes runs");
                    let replaced = view.runs.splice(at..at + group.len(), [Arc::new(merged)]);
                    debug_assert!(replaced.zip(&group).all(|(a, b)| Arc::ptr_eq(&a, b)));
                }
                // Readers holding the old runs keep reading their open files.
                for run in &group {
                    if let Err(error) = std::fs::remove_file(&run.path) {
                        let what = format!("removing {}", run.path.display());
                        return fail(
                            shared,
                            HistoryError::Io {
                                what,
                                source: error,
                            },
                        );
                    }
                }
                let _control = shared.control.lock();
                shared.changed.notify_all();
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
    let mut key = Vec::new();
    let mut written = 0u64;
    loop {
        // The smallest key; among equal keys the newest run's (the last one seen).
        let mut smallest: Option<usize> = None;
        for (index, cursor) in cursors.iter().enumerate() {
            let Some((candidate, _)) = cursor.current() else {
                continue;
            };
            let better = match smallest {
                None => true,
                Some(best) => {
                    let (prefix, best_prefix) = (cursor.prefix(), cursors[best].prefix());
                    prefix < best_prefix
                        || prefix == best_prefix
                            && candidate <= cursors[best].current().expect("current").0
                }
            };
            if better {
                smallest = Some(index);
            }
        }
        let Some(best) = smallest else {
            return Ok(true);
        };
        let (best_key, value) = cursors[best].current().expect("current");
        writer.push(best_key, value)?;
        key.clear();
        key.extend_from_slice(best_key);
        let prefix = cursors[best].prefix();
        for cursor in &mut cursors {
            let same = cursor.prefix() == prefix
                && cursor
                    .current()
                    .is_some_and(|(candidate, _)| candidate == key);
            if same {
                cursor.advance()?;
            }
        }
        written += 1;
        if written % MERGE_STOP_CHECK_ENTRIES == 0 && shared.control.lock().stopping {
            return Ok(false);
        }
    }
}
