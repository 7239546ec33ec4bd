//! The machine's own stalls during a benchmark run, to tell the engine's latency from the
//! machine's. Two measures:
//!
//! - **Late wake-ups**: a thread asks to sleep [`STALL_TICK`] over and over and records how
//!   late each wake-up is: how long a thread that mostly sleeps (a log writer back from a
//!   sync, a completion thread) may wait for a CPU in that run. Busy threads may wait
//!   longer (their CPU waits are in the benchmarks' `thread_cpu_wait`). The figures
//!   include the benchmark's own load: on a machine with two cores and more runnable
//!   threads, a wake-up waits for a core (the way a jHiccup-style meter does).
//! - **Steal**: time the virtual CPUs were ready to run but the host ran something else,
//!   from the `steal` column of `/proc/stat`: none of the benchmark's doing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::round3;

/// How long the meter asks to sleep each time.
pub const STALL_TICK: Duration = Duration::from_millis(1);

/// A wake-up this late (µs) counts as a stall in [`Stalls::over_5ms`]: the open loop's p99
/// target is 5 ms.
const STALL_COUNTED_US: u64 = 5_000;

/// Lateness up to this (µs) is ordinary timer slack and scheduling; [`Stalls::late_ms_per_sec`]
/// sums only what is beyond it.
const LATE_COUNTED_FROM_US: u64 = 1_000;

/// `/proc/stat` counts in clock ticks of 1/100 s on Linux (`USER_HZ`: fixed at 100 for
/// user space on every architecture Surge builds for, whatever the kernel's own `HZ`).
const PROC_STAT_TICKS_PER_SEC: f64 = 100.0;

/// What a [`StallMeter`] saw over a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stalls {
    /// Seconds from the meter's start to its last wake-up (after it was told to stop): the
    /// span the figures cover.
    pub seconds: f64,
    /// The meter's wake-ups over the run.
    pub wakeups: u64,
    /// 99th percentile of how late the meter's wake-ups were, µs.
    pub late_p99_us: u64,
    /// The latest wake-up, µs.
    pub late_max_us: u64,
    /// Wake-ups later than 5 ms.
    pub over_5ms: u64,
    /// The part of each wake-up's lateness beyond 1 ms, summed, per second of `seconds`
    /// (ms/s): wake-ups less late add nothing, so this counts the stalls, not the slack.
    pub late_ms_per_sec: f64,
    /// Hypervisor steal over the run, summed over the CPUs, ms per second of run; `None`
    /// where `/proc/stat` has no steal column.
    pub steal_ms_per_sec: Option<f64>,
}

impl Stalls {
    /// The human-readable part of a report's line.
    pub fn line(&self) -> String {
        format!(
            "machine: late wake-ups p99 {} µs, max {} µs, {} over 5 ms",
            self.late_p99_us, self.late_max_us, self.over_5ms
        )
    }
}

/// A running meter: [`StallMeter::start`] at the start of the measured window,
/// [`StallMeter::stop`] at its end.
pub struct StallMeter {
    stop: Arc<AtomicBool>,
    /// The meter's thread: its histogram of late wake-ups and when it last woke up.
    thread: Option<JoinHandle<(Histogram<u64>, Instant)>>,
    started: Instant,
    steal_ticks: Option<u64>,
}

impl StallMeter {
    /// A meter started if `on`, for a benchmark's `--stall-meter`.
    pub fn start_if(on: bool) -> anyhow::Result<Option<StallMeter>> {
        use anyhow::Context;
        on.then(StallMeter::start)
            .transpose()
            .context("starting the stall meter's thread")
    }

    /// Starts the meter's thread (`bench-stall-meter`).
    pub fn start() -> std::io::Result<StallMeter> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-stall-meter".to_string())
            .spawn(move || measure(&stopping))?;
        Ok(StallMeter {
            stop,
            thread: Some(thread),
            started: Instant::now(),
            steal_ticks: steal_ticks(),
        })
    }

    /// Stops the meter and tells what it saw since it started. Waits for the thread's
    /// last wake-up (a tick at most); a panic of the meter's thread goes on here.
    pub fn stop(mut self) -> Stalls {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("a meter is stopped once");
        let (late_us, last_wakeup) = match thread.join() {
            Ok(measured) => measured,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let seconds = last_wakeup
            .saturating_duration_since(self.started)
            .as_secs_f64()
            .max(f64::MIN_POSITIVE);
        let steal_ms_per_sec = match (self.steal_ticks, steal_ticks()) {
            (Some(before), Some(after)) => {
                let ticks = after.saturating_sub(before) as f64;
                Some(round3(ticks / PROC_STAT_TICKS_PER_SEC * 1_000.0 / seconds))
            }
            _ => None,
        };
        summarize(&late_us, seconds, steal_ms_per_sec)
    }
}

impl Drop for StallMeter {
    fn drop(&mut self) {
        // A run that failed before `stop`: the thread ends with it (its outcome unused).
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

/// The figures of a histogram of late wake-ups (µs) over `seconds`.
fn summarize(late_us: &Histogram<u64>, seconds: f64, steal_ms_per_sec: Option<f64>) -> Stalls {
    let mut beyond_us = 0u64;
    let mut over_5ms = 0u64;
    for value in late_us.iter_recorded() {
        let late = value.value_iterated_to();
        let count = value.count_at_value();
        beyond_us += late.saturating_sub(LATE_COUNTED_FROM_US) * count;
        if late > STALL_COUNTED_US {
            over_5ms += count;
        }
    }
    Stalls {
        seconds: round3(seconds),
        wakeups: late_us.len(),
        late_p99_us: late_us.value_at_percentile(99.0),
        late_max_us: late_us.max(),
        over_5ms,
        late_ms_per_sec: round3(beyond_us as f64 / 1_000.0 / seconds),
        steal_ms_per_sec,
    }
}

/// The meter's loop: sleeps a tick at a time until told to stop (at least once, so a
/// meter stopped at once still reports a wake-up), recording how late (µs) each wake-up
/// was; returns them and when it last woke up.
fn measure(stop: &AtomicBool) -> (Histogram<u64>, Instant) {
    let mut late_us = late_histogram();
    loop {
        let asked = Instant::now();
        std::thread::sleep(STALL_TICK);
        let woke = Instant::now();
        let late = woke
            .saturating_duration_since(asked)
            .saturating_sub(STALL_TICK);
        late_us.saturating_record(late.as_micros() as u64);
        if stop.load(Ordering::Relaxed) {
            return (late_us, woke);
        }
    }
}

/// Lateness from 1 µs to an hour, three significant digits.
fn late_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The `steal` column of `/proc/stat`'s `cpu` line (all CPUs), in ticks.
fn steal_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_steal_ticks(&text)
}

/// `cpu  user nice system idle iowait irq softirq steal ...`: the eighth number.
fn parse_steal_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|line| line.starts_with("cpu "))?;
    line.split_whitespace().nth(8)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_number_of_the_cpu_line() {
        let text = "cpu  3170859 1369 1232243 2453724 286935 0 47951 27606 0 0\n\
                    cpu0 1563530 352 530636 1419637 96410 0 975 13902 0 0\n";
        assert_eq!(parse_steal_ticks(text), Some(27606));
        // An old kernel without the column, or no `cpu` line at all.
        assert_eq!(parse_steal_ticks("cpu  1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_steal_ticks("intr 5\n"), None);
    }

    #[test]
    fn the_summary_counts_lateness_beyond_1_ms_and_stalls_over_5_ms() {
        let mut late_us = late_histogram();
        // 1,000 wake-ups 50 µs late, two of 3 ms, one of 12 ms, over two seconds.
        late_us.record_n(50, 1_000).expect("in bounds");
        late_us.record_n(3_000, 2).expect("in bounds");
        late_us.record(12_000).expect("in bounds");
        let stalls = summarize(&late_us, 2.0, Some(1.5));
        assert_eq!(stalls.seconds, 2.0);
        assert_eq!(stalls.wakeups, 1_003);
        assert_eq!(stalls.over_5ms, 1);
        assert_eq!(stalls.late_max_us, late_us.max());
        assert!((11_990..=12_010).contains(&stalls.late_max_us));
        assert!(stalls.late_p99_us <= 51, "{stalls:?}");
        // Only what is beyond 1 ms: (2 × 2 ms + 11 ms) / 2 s, within the histogram's
        // precision; the 50 µs wake-ups add nothing.
        assert!((stalls.late_ms_per_sec - 7.5).abs() < 0.02, "{stalls:?}");
        assert_eq!(stalls.steal_ms_per_sec, Some(1.5));
    }

    #[test]
    fn a_meter_measures_until_stopped() {
        let started = Instant::now();
        let meter = StallMeter::start().expect("spawn the meter");
        std::thread::sleep(Duration::from_millis(30));
        let stalls = meter.stop();
        let elapsed = started.elapsed().as_secs_f64();
        // It measured until it was told to stop (its last wake-up came after), never past
        // `stop` returning, and never woke before its tick.
        assert!(
            (0.030..=elapsed + 0.001).contains(&stalls.seconds),
            "{stalls:?} in {elapsed} s"
        );
        let ticks_at_most = (stalls.seconds * 1_000.0) as u64 + 1;
        assert!((1..=ticks_at_most).contains(&stalls.wakeups), "{stalls:?}");
    }
}
