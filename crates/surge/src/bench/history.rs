//! `surge bench history`: the history index's stores side by side in one run. The entries
//! of uniform transfers over 1,000,000 accounts are derived first (the state machine
//! applies the batches in memory, as a node's apply thread would), then each store is fed
//! them record by record for up to `--seconds` and flushed (everything durable); then
//! statement pages and transfer lookups are timed on what it holds. The log-structured
//! store nodes use (`lsm`) is reported as a ratio to sled's tree (`sled`), the baseline,
//! which runs first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use surge_core::constants::BATCH_EVENTS_MAX;
use surge_core::{AccountId, Config, StateMachine, TransferId};
use surge_history::{
    derive_entries, HistoryError, HistoryIndex, IndexEntry, LsmHistory, SledHistory,
};

use super::commit;
use crate::rng::SplitMix64;
use crate::workload::{measured_batches, setup_batches, WorkloadKind, WorkloadShape};

/// The stores `surge bench history` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryStore {
    /// The log-structured store nodes use (memtable, sorted run files, merges).
    Lsm,
    /// sled's B-tree, the baseline.
    Sled,
}

impl HistoryStore {
    fn name(self) -> &'static str {
        match self {
            HistoryStore::Lsm => "lsm",
            HistoryStore::Sled => "sled",
        }
    }
}

/// Options of `surge bench history`.
#[derive(Clone, Debug, clap::Args)]
pub struct HistoryBenchArgs {
    /// Stores to run, in order, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sled,lsm")]
    pub stores: Vec<HistoryStore>,
    /// Transfers whose entries are derived (each store writes as many as it can in
    /// `--seconds`).
    #[arg(long, default_value_t = 2_000_000)]
    pub transfers: u64,
    /// Accounts the transfers move between.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: u64,
    /// Most seconds a store is fed entries before it is flushed.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Statement pages (100 lines, a random account) and transfer lookups (a random
    /// written id) timed after the writes.
    #[arg(long, default_value_t = 2_000)]
    pub reads: u64,
    /// Directory for the stores (a fresh subdirectory each, removed afterwards).
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Print one JSON object per store instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One store's figures.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryReport {
    bench: &'static str,
    workload: &'static str,
    store: &'static str,
    /// Transfers whose entries were written (records are whole).
    transfers: u64,
    /// Entries written (transfer, two statement lines per transfer).
    entries: u64,
    /// Seconds feeding entries, and the flush after it.
    write_seconds: f64,
    flush_seconds: f64,
    /// Transfers per second, durable: over writing and flushing.
    ops_per_sec: f64,
    /// A statement page of 100 lines, in µs.
    statement_p50_us: f64,
    statement_p99_us: f64,
    /// A transfer by id, in µs.
    lookup_p50_us: f64,
    lookup_p99_us: f64,
    /// Run files when the reads began (the log-structured store only): a statement page
    /// reads a chunk of each run that may hold the account, so merges still behind the
    /// writes make reads slower.
    #[serde(skip_serializing_if = "Option::is_none")]
    runs_at_reads: Option<usize>,
    /// `ops_per_sec` over the first store's in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_first: Option<f64>,
    accounts: u64,
    commit: String,
}

impl HistoryReport {
    fn line(&self) -> String {
        let ratio = self
            .ratio_to_first
            .map_or(String::new(), |ratio| format!("  {ratio:.3} of the first"));
        let runs = self
            .runs_at_reads
            .map_or(String::new(), |runs| format!(" ({runs} runs)"));
        format!(
            "{:<5} {:>10.0} transfers/s durable ({} in {:.1} s + flush {:.2} s)  statement \
             p50 {:.0} µs p99 {:.0} µs  lookup p50 {:.0} µs p99 {:.0} µs{runs}{ratio}",
            self.store,
            self.ops_per_sec,
            self.transfers,
            self.write_seconds,
            self.flush_seconds,
            self.statement_p50_us,
            self.statement_p99_us,
            self.lookup_p50_us,
            self.lookup_p99_us,
        )
    }
}

/// One log record's entries, and the transfers it created.
struct Record {
    entries: Vec<IndexEntry>,
    transfers: u64,
}

/// Derives the entries of `transfers` uniform transfers, a record per batch of 8,190.
fn derive(args: &HistoryBenchArgs) -> anyhow::Result<Vec<Record>> {
    let batches = (args.transfers as usize).div_ceil(BATCH_EVENTS_MAX);
    let shape = WorkloadShape {
        accounts: args.accounts,
        batches,
        batch_size: BATCH_EVENTS_MAX,
        sku_limit_per_buyer: 0,
        cart_percent: 0,
        seed: 0x5EED,
    };
    let mut state_machine = StateMachine::new(Config {
        accounts_capacity: args.accounts as usize + 2,
        transfers_capacity: batches * BATCH_EVENTS_MAX,
        ..Config::default()
    });
    let mut results = Vec::new();
    let mut apply = |batch: &surge_core::BatchBuf| {
        let timestamp = state_machine.timestamp_next_min() + 1_000;
        state_machine.apply(timestamp, batch.as_batch(), &mut results);
    };
    for batch in setup_batches(WorkloadKind::Uniform, &shape) {
        apply(&batch);
    }
    let mut records = Vec::with_capacity(batches);
    for (index, batch) in measured_batches(WorkloadKind::Uniform, &shape)
        .iter()
        .enumerate()
    {
        let timestamp = state_machine.timestamp_next_min() + 1_000;
        state_machine.apply(timestamp, batch.as_batch(), &mut results);
        let ok = results.iter().filter(|code| code.is_success()).count() as u64;
        anyhow::ensure!(ok == results.len() as u64, "a uniform transfer failed");
        let entries = derive_entries(&state_machine, index as u64, batch.as_batch(), &results);
        records.push(Record {
            entries,
            transfers: ok,
        });
    }
    Ok(records)
}

/// Runs the benchmark and prints its report.
pub fn run(args: &HistoryBenchArgs) -> anyhow::Result<Vec<HistoryReport>> {
    anyhow::ensure!(!args.stores.is_empty(), "--stores needs at least one store");
    anyhow::ensure!(args.accounts >= 2, "--accounts must be at least 2");
    anyhow::ensure!(args.transfers > 0, "--transfers must be positive");
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    let records = derive(args)?;
    let revision = commit();
    let mut reports: Vec<HistoryReport> = Vec::new();
    for &store in &args.stores {
        let directory = tempfile::Builder::new()
            .prefix("surge-bench-history-")
            .tempdir_in(&args.data_dir)
            .with_context(|| format!("creating a directory in {}", args.data_dir.display()))?;
        let path = directory.path().join("history");
        let mut report = match store {
            HistoryStore::Lsm => {
                let index = LsmHistory::open(&path)?;
                let runs = |index: &LsmHistory| Some(index.stats().runs);
                feed(index, LsmHistory::flush, runs, &records, args, store)?
            }
            HistoryStore::Sled => {
                let index = SledHistory::open(&path)?;
                feed(index, SledHistory::flush, |_| None, &records, args, store)?
            }
        };
        report.ratio_to_first = reports
            .first()
            .map(|first| report.ops_per_sec / first.ops_per_sec);
        report.commit = revision.clone();
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{}", report.line());
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Writes the records into `index` for up to `--seconds`, flushes it, and times reads.
fn feed<I: HistoryIndex>(
    mut index: I,
    flush: fn(&I) -> Result<(), HistoryError>,
    runs: fn(&I) -> Option<usize>,
    records: &[Record],
    args: &HistoryBenchArgs,
    store: HistoryStore,
) -> anyhow::Result<HistoryReport> {
    let written = write(&mut index, records, args.seconds)?;
    let started = Instant::now();
    flush(&index)?;
    let flushed = started.elapsed();
    let runs_at_reads = runs(&index);
    let report = measure_reads(&index, args, store, written, flushed)?;
    Ok(HistoryReport {
        runs_at_reads,
        ..report
    })
}

/// What a store took: transfers and entries, and the time.
struct Written {
    transfers: u64,
    entries: u64,
    seconds: f64,
}

fn write(
    index: &mut dyn HistoryIndex,
    records: &[Record],
    seconds: f64,
) -> anyhow::Result<Written> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut written = Written {
        transfers: 0,
        entries: 0,
        seconds: 0.0,
    };
    for (record_index, record) in records.iter().enumerate() {
        index.apply(record_index as u64, &record.entries)?;
        written.transfers += record.transfers;
        written.entries += record.entries.len() as u64;
        if Instant::now() >= deadline {
            break;
        }
    }
    written.seconds = started.elapsed().as_secs_f64();
    Ok(written)
}

fn measure_reads(
    index: &dyn HistoryIndex,
    args: &HistoryBenchArgs,
    store: HistoryStore,
    written: Written,
    flush: Duration,
) -> anyhow::Result<HistoryReport> {
    let mut rng = SplitMix64::new(0xBEEF);
    let mut statements = Histogram::<u64>::new(3)?;
    let mut lookups = Histogram::<u64>::new(3)?;
    let measured_id_base = crate::workload::MEASURED_ID_BASE;
    for _ in 0..args.reads {
        let account = AccountId(u128::from(rng.below(args.accounts) + 1));
        let started = Instant::now();
        let page = index.statement(account, 0, u64::MAX, None, 100)?;
        statements.saturating_record(started.elapsed().as_micros().max(1) as u64);
        anyhow::ensure!(page.lines.len() <= 100, "a page holds at most 100 lines");
        let id = TransferId(measured_id_base + u128::from(rng.below(written.transfers)));
        let started = Instant::now();
        let found = index.transfer(id)?;
        lookups.saturating_record(started.elapsed().as_micros().max(1) as u64);
        anyhow::ensure!(
            found.is_some(),
            "transfer {id} was written but is not found"
        );
    }
    let seconds = written.seconds + flush.as_secs_f64();
    Ok(HistoryReport {
        bench: "history",
        workload: "uniform",
        store: store.name(),
        transfers: written.transfers,
        entries: written.entries,
        write_seconds: written.seconds,
        flush_seconds: flush.as_secs_f64(),
        ops_per_sec: written.transfers as f64 / seconds,
        statement_p50_us: statements.value_at_quantile(0.5) as f64,
        statement_p99_us: statements.value_at_quantile(0.99) as f64,
        lookup_p50_us: lookups.value_at_quantile(0.5) as f64,
        lookup_p99_us: lookups.value_at_quantile(0.99) as f64,
        runs_at_reads: None,
        ratio_to_first: None,
        accounts: args.accounts,
        commit: String::new(),
    })
}
