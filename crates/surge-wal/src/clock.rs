//! Log time: where the group-commit writer gets a record's timestamp. The state machine
//! never reads a clock; it is handed the timestamps this clock put into the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A source of wall-clock time for new records, in ns. It may jump back; the log keeps
/// timestamps increasing anyway (`max(clock, previous end + 1)`).
pub trait Clock: Send + 'static {
    /// Now, in ns since the Unix epoch (or any fixed origin).
    fn now_ns(&self) -> u64;
}

/// The system's real-time clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock a test sets by hand; clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at `now_ns`.
    pub fn new(now_ns: u64) -> ManualClock {
        ManualClock {
            now_ns: Arc::new(AtomicU64::new(now_ns)),
        }
    }

    /// Sets the time, in ns (it may go back).
    pub fn set_ns(&self, now_ns: u64) {
        self.now_ns.store(now_ns, Ordering::SeqCst);
    }

    /// Moves the time forward by `delta_ns`.
    pub fn advance_ns(&self, delta_ns: u64) {
        self.now_ns.fetch_add(delta_ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}
