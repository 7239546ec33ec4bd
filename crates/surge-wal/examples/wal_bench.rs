//! Runs the log benchmark in a directory and prints one JSON object per workload:
//! `cargo run -p surge-wal --release --example wal_bench -- [DIR] [SECONDS]`.
//! The `surge bench wal` command is the supported entry point; this is for quick runs.

use std::time::Duration;

use surge_wal::bench::{run_wal_bench, BenchOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let directory = args.next().unwrap_or_else(|| ".".to_string());
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let options = BenchOptions {
        duration: Duration::from_secs_f64(seconds),
        ..Default::default()
    };
    for report in run_wal_bench(std::path::Path::new(&directory), &options)? {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
