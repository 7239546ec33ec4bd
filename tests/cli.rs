//! Runs the real `surge` binary: the demo, the result-code reference and the benchmark's
//! JSON output, and checks that bad arguments get a clear error.

use std::process::{Command, Output};

fn surge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_surge"))
        .args(args)
        .output()
        .expect("surge runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn demo_runs_a_flash_sale_and_replays_it() {
    let output = surge(&["demo", "--buyers", "3000", "--stock", "100", "--seed", "7"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(text.contains("seed 7"), "{text}");
    assert!(
        text.contains("stocked 100 = available 0 + reserved 100 + sold 0"),
        "{text}"
    );
    assert!(text.contains("(identical)"), "{text}");
    // The same seed gives the same run, byte for byte.
    let again = surge(&["demo", "--buyers", "3000", "--stock", "100", "--seed", "7"]);
    assert_eq!(stdout(&again), text);
}

#[test]
fn codes_prints_the_checked_in_reference() {
    let output = surge(&["codes"]);
    assert!(output.status.success());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/RESULT_CODES.md");
    assert_eq!(
        stdout(&output),
        std::fs::read_to_string(path).expect("docs/RESULT_CODES.md")
    );
}

#[test]
fn bench_prints_one_json_object_per_workload() {
    let output = surge(&[
        "bench",
        "state-machine",
        "--json",
        "--accounts",
        "1000",
        "--batches",
        "3",
        "--batch-size",
        "100",
        "--runs",
        "1",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    let reports: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["uniform", "hot-merchant", "hot-sku"]);
    for report in &reports {
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["p50_us"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["p99_us"].as_f64().unwrap() >= report["p50_us"].as_f64().unwrap());
        // Every workload command is well formed and must succeed.
        assert_eq!(report["not_ok"].as_u64(), Some(0), "{report}");
    }
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let output = surge(&[
        "bench",
        "state-machine",
        "--batch-size",
        "9000",
        "--runs",
        "1",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--batch-size must be 1..=8190"));
    let output = surge(&["demo", "--buyers", "many"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value"));
}

#[test]
fn wal_bench_reports_the_log_against_the_raw_disk() {
    let parent = env!("CARGO_TARGET_TMPDIR");
    let output = surge(&[
        "bench",
        "wal",
        "--json",
        "--seconds",
        "0.2",
        "--runs",
        "1",
        "--data-dir",
        parent,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    let reports: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wal_group_commit", "disk_raw_write_fdatasync"]);
    assert!(reports[0]["ops_per_sec"].as_f64().unwrap() > 0.0);
    assert!(reports[0]["fraction_of_disk"].as_f64().unwrap() > 0.0);
    // The benchmark cleans up after itself.
    let leftovers = std::fs::read_dir(parent)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("surge-bench-wal")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn history_bench_feeds_each_store_the_same_entries_and_reads_them_back() {
    let parent = env!("CARGO_TARGET_TMPDIR");
    let output = surge(&[
        "bench",
        "history",
        "--json",
        "--transfers",
        "40000",
        "--accounts",
        "1000",
        "--reads",
        "50",
        // Bounded by the count, not the clock: sled takes ~2.5 s for these here, and up
        // to ~13 s on a loaded machine; the default 10 s would cut it short.
        "--seconds",
        "120",
        "--data-dir",
        parent,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let stores: Vec<&str> = reports
        .iter()
        .map(|r| r["store"].as_str().unwrap())
        .collect();
    assert_eq!(stores, ["sled", "lsm"]);
    for report in &reports {
        // Five records of 8,190 transfers: all written (well within `--seconds`), each
        // with its entry and two statement lines, and every lookup found its transfer.
        assert_eq!(report["transfers"], 40_950, "{report}");
        assert_eq!(report["entries"], 3 * 40_950, "{report}");
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");
        assert!(
            report["statement_p99_us"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    assert!(reports[1]["ratio_to_first"].as_f64().unwrap() > 0.0);
    let leftovers = std::fs::read_dir(parent)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("surge-bench-history")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn memory_bench_reports_resident_bytes_per_milestone() {
    let output = surge(&[
        "bench",
        "memory",
        "--json",
        "--milestones",
        "900000,1700000",
        "--accounts",
        "1000",
        "--presize",
        "false",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(reports.len(), 2);
    assert!(reports[0]["transfers"].as_u64().unwrap() >= 900_000);
    assert!(reports[1]["resident_bytes"].as_u64().unwrap() > 0);
}

/// The stall meter of a benchmark report measured from before the run's start to after
/// its last answer, waking at most once a millisecond.
fn assert_stalls_cover_the_run(report: &serde_json::Value) {
    let stalls = &report["stalls"];
    let seconds = stalls["seconds"].as_f64().unwrap();
    // The meter's span is rounded to the millisecond.
    assert!(
        seconds >= report["seconds"].as_f64().unwrap() - 0.001,
        "{report}"
    );
    let wakeups = stalls["wakeups"].as_u64().unwrap();
    assert!(
        (1..=(seconds * 1_000.0) as u64 + 1).contains(&wakeups),
        "{report}"
    );
}

#[test]
fn engine_bench_mixed_with_carts_on_two_shards_answers_every_order_ok() {
    let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-carts");
    std::fs::create_dir_all(&parent).unwrap();
    let parent = parent.to_str().unwrap();
    let output = surge(&[
        "bench",
        "engine",
        "--json",
        "--seconds",
        "0.3",
        "--runs",
        "1",
        "--workload",
        "mixed",
        "--shards",
        "2",
        "--cart-percent",
        "50",
        "--stall-meter",
        "false",
        "--accounts",
        "1000",
        "--batch-size",
        "100",
        "--capacity",
        "100000",
        "--data-dir",
        parent,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).lines().next().expect("a line")).expect("JSON");
    assert_eq!(report["workload"], "mixed", "{report}");
    assert_eq!(report["shards"], 2, "{report}");
    assert_eq!(report["cart_percent"], 50, "{report}");
    // Run without the stall meter's thread: no figures of it.
    assert!(report["stalls"].is_null(), "{report}");
    assert!(report["commands"].as_u64().unwrap() > 0, "{report}");
    // Carts whose second SKU lives on the other shard place, pay, cancel and refund ok.
    assert_eq!(report["not_ok"].as_u64(), Some(0), "{report}");
}

#[test]
fn engine_bench_reports_every_workload_through_a_real_node() {
    // Its own directory: it counts what the bench leaves there, and other tests run
    // benches at the same time.
    let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-every-workload");
    std::fs::create_dir_all(&parent).unwrap();
    let parent = parent.to_str().unwrap();
    let output = surge(&[
        "bench",
        "engine",
        "--json",
        "--seconds",
        "0.2",
        "--runs",
        "1",
        "--workload",
        "uniform,mixed,open-loop",
        "--accounts",
        "1000",
        "--batch-size",
        "100",
        "--capacity",
        "100000",
        "--open-loop-rate",
        "20000",
        "--open-loop-batch-size",
        "20",
        "--data-dir",
        parent,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let names: Vec<(&str, bool)> = reports
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap(),
                r["history"].as_bool().unwrap(),
            )
        })
        .collect();
    // Uniform also runs once with the history index on, so its cost is visible.
    assert_eq!(
        names,
        [
            ("uniform", false),
            ("uniform", true),
            ("mixed", false),
            ("open-loop-20k", false)
        ]
    );
    for report in &reports {
        assert_eq!(report["bench"], "engine", "{report}");
        assert_eq!(report["shards"], 1, "{report}");
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["p50_us"].as_f64().unwrap() > 0.0, "{report}");
        assert!(report["p999_us"].as_f64().unwrap() >= report["p99_us"].as_f64().unwrap());
        assert!(report["runs_ops_per_sec"].as_array().unwrap().len() == 1);
        for field in ["batch_size", "submitters", "busy", "commit", "thread_cpu"] {
            assert!(!report[field].is_null(), "{field} missing: {report}");
        }
        // The machine's own stalls were measured over the whole run beside it.
        assert_stalls_cover_the_run(report);
        // Every workload command is well formed and must succeed.
        assert_eq!(report["not_ok"].as_u64(), Some(0), "{report}");
    }
    for report in &reports[..3] {
        // Closed loops are compared with the log alone, run in the same invocation.
        assert!(
            report["fraction_of_wal"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
    let open_loop = &reports[3];
    assert!((open_loop["offered_per_sec"].as_f64().unwrap() - 20_000.0).abs() < 1.0);
    assert!(open_loop["achieved_per_sec"].as_f64().unwrap() > 0.0);
    assert!(open_loop["rejected"].as_u64().is_some());
    // The benchmark cleans up after itself.
    let leftovers = std::fs::read_dir(parent)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("surge-bench-engine")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn engine_bench_runs_transfers_and_orders_across_shards() {
    let output = surge(&["bench", "engine", "--shards", "0", "--runs", "1"]);
    assert!(!output.status.success());
    // Transfers and orders (most of them spanning shards) run across shards.
    let parent = env!("CARGO_TARGET_TMPDIR");
    let output = surge(&[
        "bench",
        "engine",
        "--json",
        "--seconds",
        "0.2",
        "--runs",
        "1",
        "--workload",
        "uniform,hot-sku-orders",
        "--shards",
        "2",
        "--accounts",
        "2000",
        "--batch-size",
        "100",
        "--capacity",
        "100000",
        "--wal-peer",
        "false",
        "--history-peer",
        "false",
        "--data-dir",
        parent,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(reports.len(), 2, "{stdout}");
    for report in &reports {
        assert_eq!(report["shards"], 2, "{report}");
        assert_eq!(report["not_ok"].as_u64(), Some(0), "{report}");
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    }
}

#[test]
fn tcp_bench_reports_every_workload_over_loopback_against_the_engine() {
    let parent = env!("CARGO_TARGET_TMPDIR");
    let output = surge(&[
        "bench",
        "tcp",
        "--json",
        "--seconds",
        "0.2",
        "--runs",
        "1",
        "--accounts",
        "1000",
        "--tasks",
        "8",
        "--commands-per-call",
        "4",
        "--capacity",
        "100000",
        "--data-dir",
        parent,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let names: Vec<(&str, &str)> = reports
        .iter()
        .map(|r| {
            (
                r["workload"].as_str().unwrap(),
                r["command"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("uniform", "create_transfers"),
            ("hot-merchant", "create_transfers"),
            ("hot-sku", "place_orders")
        ]
    );
    for report in &reports {
        assert_eq!(report["bench"], "tcp", "{report}");
        assert_eq!(report["shards"], 1, "{report}");
        for field in [
            "ops_per_sec",
            "p50_us",
            "engine_ops_per_sec",
            "ratio_to_engine",
        ] {
            assert!(report[field].as_f64().unwrap() > 0.0, "{field}: {report}");
        }
        assert!(report["p999_us"].as_f64().unwrap() >= report["p99_us"].as_f64().unwrap());
        assert_eq!(report["runs_ops_per_sec"].as_array().unwrap().len(), 1);
        assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
        assert!(!report["commit"].is_null(), "{report}");
        assert_stalls_cover_the_run(report);
        // Every workload command is well formed and must succeed.
        assert_eq!(report["not_ok"].as_u64(), Some(0), "{report}");
    }
    // The benchmark cleans up after itself.
    let leftovers = std::fs::read_dir(parent)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("surge-bench-tcp")
        })
        .count();
    assert_eq!(leftovers, 0);
    // With two shards, most of hot-sku's orders span shards; all of them succeed.
    let output = surge(&[
        "bench",
        "tcp",
        "--json",
        "--workload",
        "hot-sku",
        "--shards",
        "2",
        "--seconds",
        "0.2",
        "--runs",
        "1",
        "--accounts",
        "1000",
        "--tasks",
        "8",
        "--commands-per-call",
        "4",
        "--capacity",
        "100000",
        "--data-dir",
        parent,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout(&output).trim()).expect("one JSON line");
    assert_eq!(report["shards"], 2, "{report}");
    assert_eq!(report["not_ok"].as_u64(), Some(0), "{report}");
}
