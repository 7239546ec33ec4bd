//! Per-thread CPU accounting for `surge bench engine`: time on a CPU and time runnable
//! but waiting for one, from `/proc/self/task/*/schedstat`, and the load average.

use super::*;
use crate::bench::round3;

/// A thread's time on a CPU and runnable but waiting for one, from its `schedstat`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuTime {
    pub(crate) running_ns: u64,
    pub(crate) waiting_ns: u64,
}

impl CpuTime {
    /// The time spent between `earlier` and `self`.
    pub(crate) fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            running_ns: self.running_ns.saturating_sub(earlier.running_ns),
            waiting_ns: self.waiting_ns.saturating_sub(earlier.waiting_ns),
        }
    }

    pub(crate) fn add(&mut self, other: CpuTime) {
        self.running_ns += other.running_ns;
        self.waiting_ns += other.waiting_ns;
    }
}

/// The CPU times of this process's threads now, by thread name with any numeric suffix
/// dropped, from `/proc/self/task/*/schedstat`; empty where there is no `/proc`.
pub(crate) fn threads_cpu() -> BTreeMap<String, CpuTime> {
    let mut by_name: BTreeMap<String, CpuTime> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(name), Some(time)) = (
            std::fs::read_to_string(path.join("comm")),
            schedstat(&path.join("schedstat")),
        ) else {
            continue;
        };
        by_name
            .entry(thread_group_name(name.trim()))
            .or_default()
            .add(time);
    }
    by_name
}

/// The calling thread's CPU times so far (zero where there is no `/proc`).
pub(crate) fn thread_self_cpu() -> CpuTime {
    schedstat(Path::new("/proc/thread-self/schedstat")).unwrap_or_default()
}

/// `schedstat`: ns on a CPU, ns runnable waiting for one, time slices.
pub(crate) fn schedstat(path: &Path) -> Option<CpuTime> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<u64>().ok());
    Some(CpuTime {
        running_ns: fields.next()??,
        waiting_ns: fields.next()??,
    })
}

/// The 1-minute load average (0 where there is no `/proc`).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `surge-submit-3` → `surge-submit`: threads of one kind add up.
pub(crate) fn thread_group_name(name: &str) -> String {
    name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        .to_string()
}

/// Seconds per second of run of one of each thread's times, rounded to 0.001 (`bench
/// engine` and `bench tcp` report `thread_cpu` and `thread_cpu_wait` so).
pub(crate) fn per_second(
    times: &BTreeMap<String, CpuTime>,
    seconds: f64,
    field: impl Fn(&CpuTime) -> u64,
) -> BTreeMap<String, f64> {
    times
        .iter()
        .map(|(name, time)| {
            let fraction = field(time) as f64 / 1e9 / seconds;
            (name.clone(), round3(fraction))
        })
        .collect()
}
