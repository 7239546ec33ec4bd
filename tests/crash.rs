//! Crash test over the real process: `surge drive` loads a two-shard engine (cross-shard
//! transfers and orders spanning shards included; `SURGE_CRASH_SHARDS` sets the count) in
//! one data directory and
//! prints an `ack` line per durable batch; the test `kill -9`s it at a seeded random
//! moment, keeps every ack line it received, then runs `surge drive --verify`, which
//! recovers the directory and checks every acknowledged effect, the ledger invariants and
//! the state hash against a fresh replay of the log. The next cycle restarts the driver on
//! the same directory, so recovery after recovery is exercised.
//!
//! `kill -9` alone proves little about durability: the kernel keeps the killed process's
//! written-but-unsynced pages and writes them out later, so a killed process loses nothing
//! a power cut would. What this test does prove is that the real binary, its files and its
//! recovery path survive being stopped at any instruction (mid-append, mid-checkpoint,
//! mid-recovery, mid-rotation). Lost unsynced writes and torn tails are covered by the
//! simulated power cuts in the `surge-wal` and `surge-engine` tests.
//!
//! Seeded: the seed is printed and `SURGE_SEED=…` replays its kill schedule (kill moments
//! are times, so a replay is close, not bit-identical). `SURGE_CRASH_CYCLES=1000` runs
//! the long version; the default of 20 cycles takes well under two minutes in a debug build.
//! Only local processes; no network.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SEED_DEFAULT: u64 = 0xC4A5_4001;
const CYCLES_DEFAULT: u64 = 20;
/// Shards of the driven engine: more than one, so kills land between the legs of
/// cross-shard transfers.
const SHARDS_DEFAULT: u64 = 2;
/// A driver that prints no ack for this long is stuck.
const FIRST_ACK_WAIT: Duration = Duration::from_secs(30);

fn surge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_surge"))
}

/// SplitMix64, as in `surge::rng`, so the schedule needs nothing but std.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn below(state: &mut u64, bound: u64) -> u64 {
    split_mix(state) % bound
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number")))
}

/// A fresh directory for this test run under Cargo's per-target temporary directory.
fn fresh_directory(name: &str) -> PathBuf {
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time after 1970")
            .as_nanos()
    ));
    std::fs::create_dir_all(&directory).expect("create the test directory");
    directory
}

/// Whole lines (ending in `\n`) from `stdout`, sent as they arrive; a partial last line
/// (the process died mid-write) is dropped: it acknowledges nothing.
fn read_lines(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.last() != Some(&b'\n') => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if sender.send(text).is_err() {
                        return;
                    }
                }
            }
        }
    });
    receiver
}

struct Cycle {
    acks: Vec<String>,
    stderr: String,
}

/// Starts `surge drive`, kills it with SIGKILL at a seeded moment, and returns every whole
/// line it printed.
fn drive_and_kill(data_dir: &Path, shards: u64, drive_seed: u64, schedule: &mut u64) -> Cycle {
    let mut child: Child = surge()
        .arg("drive")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--shards")
        .arg(shards.to_string())
        .arg("--seed")
        .arg(drive_seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start surge drive");
    let lines = read_lines(child.stdout.take().expect("piped stdout"));
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut acks = Vec::new();
    if below(schedule, 5) == 0 {
        // One cycle in five dies early: during recovery or setup.
        std::thread::sleep(Duration::from_millis(below(schedule, 200)));
    } else {
        // Otherwise wait for load to flow, then kill at a random moment within it.
        if let Ok(line) = lines.recv_timeout(FIRST_ACK_WAIT) {
            acks.push(line);
        }
        std::thread::sleep(Duration::from_millis(50 + below(schedule, 550)));
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no shutdown.
    let _ = child.kill();
    let status = child.wait().expect("reap surge drive");
    acks.extend(lines.iter());
    let stderr = stderr_reader.join().expect("stderr reader");
    // Killed by the signal; an exit code means it stopped by itself (an error) first.
    assert!(
        status.code().is_none(),
        "surge drive exited by itself with {status} before the kill:\n{stderr}"
    );
    Cycle { acks, stderr }
}

fn verify(data_dir: &Path, shards: u64, acks_file: &Path) -> Result<String, String> {
    let output = surge()
        .arg("drive")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--shards")
        .arg(shards.to_string())
        .arg("--verify")
        .arg("--acks")
        .arg(acks_file)
        .output()
        .expect("run surge drive --verify");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        ))
    }
}

#[test]
fn kill_nine_loses_no_acknowledged_command() {
    let seed = env_u64("SURGE_SEED").unwrap_or(SEED_DEFAULT);
    let cycles = env_u64("SURGE_CRASH_CYCLES").unwrap_or(CYCLES_DEFAULT);
    let shards = env_u64("SURGE_CRASH_SHARDS").unwrap_or(SHARDS_DEFAULT);
    let directory = fresh_directory("crash");
    let data_dir = directory.join("data");
    let acks_file = directory.join("acks.txt");
    std::fs::write(&acks_file, "").expect("create the acks file");
    eprintln!(
        "crash test: seed {seed:#x} (SURGE_SEED={seed:#x} replays), {cycles} cycles in {}",
        directory.display()
    );
    let started = Instant::now();
    let mut schedule = seed;
    let mut acks_total = 0;
    for cycle in 0..cycles {
        // Every run on the directory needs its own driver seed (ids carry it).
        let drive_seed = seed.wrapping_add(cycle);
        let Cycle { acks, stderr } = drive_and_kill(&data_dir, shards, drive_seed, &mut schedule);
        let ack_lines: String = acks
            .iter()
            .filter(|line| line.starts_with("ack "))
            .cloned()
            .collect();
        acks_total += ack_lines.lines().count();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&acks_file)
            .expect("open the acks file");
        std::io::Write::write_all(&mut file, ack_lines.as_bytes()).expect("append acks");
        drop(file);
        if let Err(failure) = verify(&data_dir, shards, &acks_file) {
            panic!(
                "seed {seed:#x} cycle {cycle}: verify failed after kill -9 \
                 ({} acks this cycle, data in {}):\n{failure}\ndriver stderr:\n{stderr}",
                acks.len(),
                directory.display()
            );
        }
        if (cycle + 1) % 100 == 0 {
            eprintln!(
                "crash test: {} cycles, {acks_total} acks, {:.0} s",
                cycle + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "crash test: {cycles} kill -9 cycles, {acks_total} acknowledged batches checked, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(acks_total > 0, "the driver never acknowledged anything");
    std::fs::remove_dir_all(&directory).expect("remove the test directory");
}

#[test]
fn bench_recovery_reports_replay_figures() {
    let directory = fresh_directory("bench-recovery");
    let output = surge()
        .args(["bench", "recovery", "--json", "--transfers", "20000"])
        .args(["--accounts", "1000", "--runs", "2", "--history", "true"])
        .arg("--data-dir")
        .arg(&directory)
        .output()
        .expect("run surge bench recovery");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["bench"], "recovery");
    assert_eq!(report["workload"], "replay");
    assert_eq!(report["transfers"], 20_000);
    // Each run rebuilt the history index from nothing (the node checks it replayed all).
    assert_eq!(report["history"], true);
    assert!(report["ops_per_sec"].as_f64().is_some_and(|ops| ops > 0.0));
    assert!(report["seconds_to_ready"].as_f64().is_some_and(|s| s > 0.0));
    assert!(report["log_bytes"]
        .as_u64()
        .is_some_and(|bytes| bytes > 20_000 * 128));
    // Its working subdirectory is gone.
    let left: Vec<_> = std::fs::read_dir(&directory)
        .expect("read the directory")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&directory).expect("remove the test directory");
}
