//! The handoff between submitters and the group-commit writer: a bounded queue the writer
//! drains a group at a time, and a one-shot slot per submission that the writer fills once
//! the group is durable. Built on a Mutex and a Condvar only (parking_lot normally, loom's
//! under `--cfg loom`), so loom can check every interleaving.

use std::collections::VecDeque;

use crate::log::WalError;

#[cfg(not(loom))]
mod sync {
    pub(crate) use std::sync::Arc;

    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    /// parking_lot's mutex behind the interface loom's also offers.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(parking_lot::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(parking_lot::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0.wait(&mut guard);
            guard
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(loom)]
mod sync {
    pub(crate) use loom::sync::Arc;

    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("handoff lock poisoned by a panic")
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
            self.0
                .wait(guard)
                .expect("handoff lock poisoned by a panic")
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

pub(crate) use sync::Arc;
use sync::{Condvar, Mutex};

/// Why a push was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue is at its bound.
    Busy,
    /// The writer is shutting down.
    Closed,
    /// The log failed; the error is sticky.
    Failed(WalError),
}

#[derive(Debug)]
struct QueueState<T> {
    items: VecDeque<(T, usize)>,
    closed: bool,
    failed: Option<WalError>,
}

/// A bounded multi-producer queue that one writer drains a group at a time.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
    depth_max: usize,
}

impl<T> Queue<T> {
    pub(crate) fn new(depth_max: usize) -> Queue<T> {
        assert!(depth_max > 0);
        let state = QueueState {
            items: VecDeque::new(),
            closed: false,
            failed: None,
        };
        Queue {
            state: Mutex::new(state),
            ready: Condvar::default(),
            depth_max,
        }
    }

    /// Queues `item` of `size_bytes`, or refuses at once: never blocks on a full queue.
    pub(crate) fn push(&self, item: T, size_bytes: usize) -> Result<(), PushError> {
        let mut state = self.state.lock();
        if let Some(error) = &state.failed {
            return Err(PushError::Failed(error.clone()));
        }
        if state.closed {
            return Err(PushError::Closed);
        }
        if state.items.len() >= self.depth_max {
            return Err(PushError::Busy);
        }
        state.items.push_back((item, size_bytes));
        drop(state);
        self.ready.notify_all();
        Ok(())
    }

    /// Waits for at least one item, then moves into `group` every queued item, in order,
    /// while their total size stays within `size_bytes_max` (the first always goes).
    /// Returns false once the queue is closed (or failed) and empty.
    pub(crate) fn take_group(&self, size_bytes_max: usize, group: &mut Vec<T>) -> bool {
        assert!(group.is_empty());
        let mut state = self.state.lock();
        while state.items.is_empty() && !state.closed && state.failed.is_none() {
            state = self.ready.wait(state);
        }
        let mut size_bytes_total = 0usize;
        while let Some((_, size_bytes)) = state.items.front() {
            let size_bytes = *size_bytes;
            if !group.is_empty() && size_bytes_total + size_bytes > size_bytes_max {
                break;
            }
            let Some((item, _)) = state.items.pop_front() else {
                break;
            };
            size_bytes_total += size_bytes;
            group.push(item);
        }
        !group.is_empty()
    }

    /// Makes the queue refuse every later push with `error`; returns what was queued.
    pub(crate) fn fail(&self, error: WalError) -> Vec<T> {
        let mut state = self.state.lock();
        state.failed = Some(error);
        let drained = state.items.drain(..).map(|(item, _)| item).collect();
        drop(state);
        self.ready.notify_all();
        drained
    }

    /// Refuses later pushes; the writer still drains what is queued.
    /// The error the queue failed with, if it failed.
    pub(crate) fn failure(&self) -> Option<WalError> {
        self.state.lock().failed.clone()
    }

    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A value filled once by one thread and taken by another.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    value: Mutex<Option<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Slot<T> {
        Slot {
            value: Mutex::new(None),
            ready: Condvar::default(),
        }
    }

    /// Fills the slot. Filling twice is our bug.
    pub(crate) fn fill(&self, value: T) {
        let mut guard = self.value.lock();
        assert!(guard.is_none());
        *guard = Some(value);
        drop(guard);
        self.ready.notify_all();
    }

    /// Fills the slot unless it holds a value already (for completing after a panic).
    pub(crate) fn fill_if_empty(&self, value: T) {
        let mut guard = self.value.lock();
        if guard.is_none() {
            *guard = Some(value);
        }
        drop(guard);
        self.ready.notify_all();
    }

    /// Waits until filled, then takes the value.
    pub(crate) fn wait(&self) -> T {
        let mut guard = self.value.lock();
        loop {
            if let Some(value) = guard.take() {
                return value;
            }
            guard = self.ready.wait(guard);
        }
    }

    /// Takes the value if filled.
    pub(crate) fn try_take(&self) -> Option<T> {
        self.value.lock().take()
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, Ordering};

    /// Two submitters and a writer: every submission is completed once, with its own
    /// value, only after the writer's "sync", and the writer sees them in queue order.
    #[test]
    fn loom_submit_group_complete() {
        // Bounded preemptions (the usual loom practice) keep the model to seconds while
        // still covering every order of push, take, fill and wait with a few switches.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let queue: Arc<Queue<(u32, Arc<Slot<u32>>)>> = Arc::new(Queue::new(2));
            let synced = Arc::new(AtomicBool::new(false));
            let mut submitters = Vec::new();
            for value in [1u32, 2] {
                let queue = queue.clone();
                let synced = synced.clone();
                submitters.push(loom::thread::spawn(move || {
                    let slot = Arc::new(Slot::new());
                    queue
                        .push((value, slot.clone()), 8)
                        .expect("queue has room");
                    let completed = slot.wait();
                    assert!(synced.load(Ordering::SeqCst));
                    assert_eq!(completed, value * 10);
                }));
            }
            let writer = {
                let queue = queue.clone();
                let synced = synced.clone();
                loom::thread::spawn(move || {
                    let mut done = 0;
                    let mut group = Vec::new();
                    while done < 2 {
                        assert!(queue.take_group(64, &mut group));
                        synced.store(true, Ordering::SeqCst);
                        for (value, slot) in group.drain(..) {
                            slot.fill(value * 10);
                            done += 1;
                        }
                    }
                })
            };
            for submitter in submitters {
                submitter.join().expect("submitter");
            }
            writer.join().expect("writer");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_queue_is_busy_and_groups_respect_the_size_bound() {
        let queue = Queue::new(3);
        queue.push(1, 10).unwrap();
        queue.push(2, 10).unwrap();
        queue.push(3, 10).unwrap();
        assert_eq!(queue.push(4, 10), Err(PushError::Busy));
        let mut group = Vec::new();
        assert!(queue.take_group(20, &mut group));
        assert_eq!(group, vec![1, 2]);
        group.clear();
        // A single item larger than the bound still goes, alone.
        queue.push(5, 100).unwrap();
        assert!(queue.take_group(20, &mut group));
        assert_eq!(group, vec![3]);
        group.clear();
        assert!(queue.take_group(20, &mut group));
        assert_eq!(group, vec![5]);
        group.clear();
        queue.close();
        assert!(!queue.take_group(20, &mut group));
        assert_eq!(queue.push(6, 1), Err(PushError::Closed));
    }

    #[test]
    fn failure_is_sticky_and_drains() {
        let queue = Queue::new(4);
        queue.push(1, 1).unwrap();
        let error = WalError::Failed {
            reason: "x".into(),
            kind: std::io::ErrorKind::Other,
        };
        assert_eq!(queue.fail(error.clone()), vec![1]);
        assert_eq!(queue.push(2, 1), Err(PushError::Failed(error)));
        let slot = Slot::new();
        assert_eq!(slot.try_take(), None);
        slot.fill(7);
        assert_eq!(slot.wait(), 7);
    }
}
