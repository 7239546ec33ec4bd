//! Seeded power-cut simulation on [`SimStorage`]: random appends, syncs and segment
//! rotations, a machine stop at a random storage operation (inside an append, a rotation,
//! a sync or a recovery's cut-back), a power cut that drops or tears unsynced writes, and
//! a reopen that must return every acknowledged record exactly, and after them only whole
//! records that were written. `SURGE_SEED=<n>` replays one seed.

mod common;

use surge_core::Operation;
use surge_wal::storage::split_mix;
use surge_wal::{Append, Log, LogConfig, Record, RecoveryError, SimStorage, Storage};

const SEEDS_DEFAULT: u64 = 1_000;
const SEGMENT_SIZE_BYTES: u64 = 4096;

type Batch = (Operation, u32, Vec<u8>);

/// What the test knows about the log: records acknowledged (synced), records appended
/// (acknowledged first), and the batches of an append that failed midway.
#[derive(Default)]
struct Model {
    durable: Vec<Record>,
    written: Vec<Record>,
    attempted: Vec<Batch>,
}

impl Model {
    fn check(&mut self, seed: u64, recovered: &[Record]) {
        assert!(
            recovered.len() >= self.durable.len(),
            "seed {seed}: lost acknowledged records"
        );
        assert_eq!(
            recovered[..self.durable.len()],
            self.durable[..],
            "seed {seed}"
        );
        let written = recovered.len().min(self.written.len());
        assert_eq!(recovered[..written], self.written[..written], "seed {seed}");
        // Records past what an append reported can only be whole records of the batches
        // of the append the crash interrupted.
        let extra = &recovered[written..];
        assert!(
            extra.len() <= self.attempted.len(),
            "seed {seed}: records from nowhere"
        );
        for (record, (operation, count, body)) in extra.iter().zip(&self.attempted) {
            assert_eq!(record.header.operation, *operation, "seed {seed}");
            assert_eq!(record.header.count, *count, "seed {seed}");
            assert_eq!(&record.body, body, "seed {seed}");
        }
        // After a power cut, whatever was recovered is durable.
        self.durable = recovered.to_vec();
        self.written = recovered.to_vec();
        self.attempted.clear();
    }
}

/// Appends and syncs at random until the step budget ends or the machine stops.
fn work(rng: &mut u64, log: &mut Log, model: &mut Model, timestamp_ns: &mut u64) {
    for _ in 0..split_mix(rng) % 20 {
        let batches: Vec<Batch> = (0..1 + split_mix(rng) % 3)
            .map(|_| common::random_batch(rng, 6))
            .collect();
        let appends: Vec<Append<'_>> = batches
            .iter()
            .map(|(operation, count, body)| Append {
                operation: *operation,
                count: *count,
                body,
            })
            .collect();
        // Log time jumps around; the log keeps it increasing.
        *timestamp_ns = timestamp_ns
            .wrapping_add(split_mix(rng) % 5_000)
            .saturating_sub(2_000);
        match log.append(*timestamp_ns, &appends) {
            Ok(headers) => {
                for (header, (_, _, body)) in headers.into_iter().zip(batches) {
                    model.written.push(Record { header, body });
                }
            }
            Err(error) => {
                assert!(error.is_failed(), "{error}");
                model.attempted = batches;
                return;
            }
        }
        if split_mix(rng) % 3 == 0 {
            if log.sync().is_err() {
                return;
            }
            model.durable = model.written.clone();
        }
    }
}

/// What one seed exercised, so the test can check the simulation reaches the hard cases.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    segments_max: usize,
    torn_tails: u64,
    recovery_crashes: u64,
    records_recovered: usize,
}

impl Coverage {
    fn add(&mut self, other: Coverage) {
        self.segments_max = self.segments_max.max(other.segments_max);
        self.torn_tails += other.torn_tails;
        self.recovery_crashes += other.recovery_crashes;
        self.records_recovered += other.records_recovered;
    }
}

fn run_seed(seed: u64) -> Coverage {
    let mut coverage = Coverage::default();
    let mut rng = seed;
    let storage = SimStorage::new();
    let config = LogConfig {
        shard: 2,
        segment_size_bytes: SEGMENT_SIZE_BYTES,
    };
    let mut model = Model::default();
    let mut timestamp_ns = split_mix(&mut rng) % 1_000_000;
    for _ in 0..1 + split_mix(&mut rng) % 4 {
        if split_mix(&mut rng) % 2 == 0 {
            storage.crash_after_operations(split_mix(&mut rng) % 60);
        }
        match common::open_all(Box::new(storage.clone()), config) {
            Ok((mut log, recovered, records)) => {
                model.check(seed, &records);
                coverage.torn_tails += u64::from(recovered.torn_tail.is_some());
                work(&mut rng, &mut log, &mut model, &mut timestamp_ns);
            }
            // The machine stopped during recovery (say, while cutting a torn tail back).
            Err(RecoveryError::Io { .. }) => coverage.recovery_crashes += 1,
            Err(error) => panic!("seed {seed}: recovery refused a crashed log: {error}"),
        }
        let segments = storage.clone().list().expect("list").len();
        coverage.segments_max = coverage.segments_max.max(segments);
        storage.power_cut(&mut rng);
    }
    let (_, recovered, records) = common::open_all(Box::new(storage.clone()), config)
        .unwrap_or_else(|error| panic!("seed {seed}: final recovery failed: {error}"));
    model.check(seed, &records);
    coverage.torn_tails += u64::from(recovered.torn_tail.is_some());
    coverage.records_recovered += records.len();
    coverage
}

#[test]
fn every_acknowledged_record_survives_power_cuts() {
    let seeds: Vec<u64> = match std::env::var("SURGE_SEED") {
        Ok(value) => vec![value.parse().expect("SURGE_SEED is a u64")],
        Err(_) => (0..SEEDS_DEFAULT).collect(),
    };
    println!(
        "power-cut simulation: {} seed(s) from {}",
        seeds.len(),
        seeds[0]
    );
    let mut coverage = Coverage::default();
    for seed in seeds.iter().copied() {
        match std::panic::catch_unwind(|| run_seed(seed)) {
            Ok(seed_coverage) => coverage.add(seed_coverage),
            Err(panic) => {
                eprintln!("power-cut simulation failed: replay with SURGE_SEED={seed}");
                std::panic::resume_unwind(panic);
            }
        }
    }
    println!("coverage: {coverage:?}");
    if seeds.len() > 1 {
        assert!(
            coverage.segments_max > 2,
            "the simulation should rotate segments"
        );
        assert!(coverage.torn_tails > 0, "the simulation should tear tails");
        assert!(
            coverage.recovery_crashes > 0,
            "the simulation should crash recoveries"
        );
    }
}
