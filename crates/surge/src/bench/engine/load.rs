//! Driving load through the node for `surge bench engine`: the command generators, the
//! closed loop (submitting threads with bounded batches in flight), the paced open loop,
//! and the tallies and summaries of what they measured.

use super::*;

/// Where a submitter's batches come from.
pub(super) enum Generator {
    /// A fixed workload: commands from `index_next` on.
    Fixed {
        kind: WorkloadKind,
        shape: WorkloadShape,
        rng: SplitMix64,
        index_next: u64,
    },
    /// The place-order stampede: orders from `index_next` on.
    Stampede {
        shape: WorkloadShape,
        rng: SplitMix64,
        index_next: u64,
    },
    /// The festival mix, fed back with each batch's codes.
    Mixed(FestivalMix),
}

impl Generator {
    pub(super) fn new(plan: &RunPlan, submitter: usize) -> Generator {
        let first_index = submitter as u64 * SUBMITTER_INDEX_RANGE;
        if plan.workload == EngineWorkload::HotSkuOrders {
            return Generator::Stampede {
                shape: plan.shape,
                rng: SplitMix64::new(plan.shape.seed ^ first_index),
                index_next: first_index,
            };
        }
        match plan.kind {
            Some(kind) => Generator::Fixed {
                kind,
                shape: plan.shape,
                rng: SplitMix64::new(plan.shape.seed ^ first_index),
                index_next: first_index,
            },
            None => Generator::Mixed(FestivalMix::new(&plan.shape, first_index)),
        }
    }

    pub(super) fn next_batch(&mut self) -> BatchBuf {
        match self {
            Generator::Fixed {
                kind,
                shape,
                rng,
                index_next,
            } => {
                let first = *index_next;
                *index_next += shape.batch_size as u64;
                measured_batch(*kind, shape, rng, first as usize, shape.batch_size)
            }
            Generator::Stampede {
                shape,
                rng,
                index_next,
            } => {
                let first = *index_next;
                *index_next += shape.batch_size as u64;
                let indexes = first..first + shape.batch_size as u64;
                BatchBuf::PlaceOrders(
                    indexes
                        .map(|index| stampede_order(rng, shape, index))
                        .collect(),
                )
            }
            Generator::Mixed(mix) => mix.next_batch(),
        }
    }

    pub(super) fn completed(&mut self, batch: &BatchBuf, codes: &[ResultCode]) {
        if let Generator::Mixed(mix) = self {
            mix.completed(batch, codes);
        }
    }

    pub(super) fn orders_abandoned(&self) -> Option<u64> {
        match self {
            Generator::Fixed { .. } | Generator::Stampede { .. } => None,
            Generator::Mixed(mix) => Some(mix.abandoned()),
        }
    }
}

/// What one submitting (or collecting) thread measured.
pub(super) struct ThreadTally {
    pub(super) commands: u64,
    pub(super) latency_ns: Histogram<u64>,
    pub(super) not_ok: BTreeMap<String, u64>,
    pub(super) busy: u64,
    pub(super) last_answer: Option<Instant>,
    pub(super) orders_abandoned: Option<u64>,
    pub(super) cpu: CpuTime,
}

impl ThreadTally {
    pub(super) fn new() -> ThreadTally {
        ThreadTally {
            commands: 0,
            latency_ns: latency_histogram(),
            not_ok: BTreeMap::new(),
            busy: 0,
            last_answer: None,
            orders_abandoned: None,
            cpu: CpuTime::default(),
        }
    }

    /// Counts a batch answered now, `latency` after its reference time.
    pub(super) fn answered(&mut self, codes: &[ResultCode], latency: Duration, now: Instant) {
        let latency_ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns
            .saturating_record_n(latency_ns.clamp(1, LATENCY_NS_MAX), codes.len() as u64);
        self.commands += codes.len() as u64;
        for code in codes.iter().filter(|code| **code != ResultCode::Ok) {
            *self.not_ok.entry(code.name()).or_default() += 1;
        }
        self.last_answer = Some(now);
    }
}

pub(super) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid histogram bounds")
}

/// The closed loop: `--submitters` threads, each with at most `--in-flight` batches
/// unanswered, for `--seconds`; then every batch in flight is answered.
pub(super) fn run_closed_loop(
    node: &Target,
    args: &EngineBenchArgs,
    plan: &RunPlan,
) -> anyhow::Result<RunResult> {
    let duration = Duration::from_secs_f64(args.seconds);
    let barrier = Barrier::new(args.submitters + 1);
    let budget = Budget {
        commands_left: AtomicU64::new(plan.capacity),
        reached: AtomicBool::new(false),
    };
    let reading = AtomicBool::new(true);
    let (tallies, start, before, reads, stalls) = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..args.readers)
            .map(|reader| {
                let reading = &reading;
                let seed = plan.shape.seed ^ (reader as u64 + 1);
                std::thread::Builder::new()
                    .name(format!("bench-reader-{reader}"))
                    .spawn_scoped(scope, move || read_accounts(node, plan, seed, reading))
                    .expect("spawn a reader thread")
            })
            .collect();
        let handles: Vec<_> = (0..args.submitters)
            .map(|submitter| {
                let generator = Generator::new(plan, submitter);
                let (barrier, budget) = (&barrier, &budget);
                std::thread::Builder::new()
                    .name(format!("surge-submit-{submitter}"))
                    .spawn_scoped(scope, move || {
                        barrier.wait();
                        submit_closed_loop(node, generator, duration, args.in_flight, budget)
                    })
                    .expect("spawn a submitter thread")
            })
            .collect();
        node.reset_latencies();
        let before = (node.commit_stats(), threads_cpu());
        let meter = StallMeter::start_if(args.stall_meter);
        barrier.wait();
        let start = Instant::now();
        let tallies: Vec<anyhow::Result<ThreadTally>> = handles.into_iter().map(join).collect();
        let stalls = meter.map(|meter| meter.map(StallMeter::stop));
        reading.store(false, Ordering::SeqCst);
        let reads: Vec<(u64, Histogram<u64>)> = readers
            .into_iter()
            .map(|reader| reader.join().expect("a reader thread panicked"))
            .collect();
        (tallies, start, before, reads, stalls)
    });
    let tallies = tallies.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let stalls = stalls?;
    let mut result = combine(node, start, before, tallies, stalls);
    for (count, latency) in reads {
        result.reads += count;
        result
            .read_latency_ns
            .add(&latency)
            .expect("histograms of the same bounds");
    }
    result.capacity_reached = budget.reached.load(Ordering::SeqCst);
    Ok(result)
}

/// A reader thread: looks up random accounts until `reading` clears; the count and each
/// lookup's latency.
fn read_accounts(
    node: &Target,
    plan: &RunPlan,
    seed: u64,
    reading: &AtomicBool,
) -> (u64, Histogram<u64>) {
    let mut rng = SplitMix64::new(seed);
    let mut latency = latency_histogram();
    let mut count = 0;
    while reading.load(Ordering::Relaxed) {
        let id = surge_core::AccountId(u128::from(rng.below(plan.shape.accounts) + 1));
        let started = Instant::now();
        std::hint::black_box(node.engine.account(id));
        let elapsed = started.elapsed().as_nanos() as u64;
        latency.saturating_record(elapsed.clamp(1, LATENCY_NS_MAX));
        count += 1;
    }
    (count, latency)
}

/// The commands a closed-loop run may still submit, shared by its submitters.
pub(super) struct Budget {
    pub(super) commands_left: AtomicU64,
    /// Set when a submitter stopped because the budget ran out.
    pub(super) reached: AtomicBool,
}

impl Budget {
    /// Takes `commands` from the budget; false (and marked reached) if it has too few.
    pub(super) fn take(&self, commands: u64) -> bool {
        let taken = self
            .commands_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(commands)
            })
            .is_ok();
        if !taken {
            self.reached.store(true, Ordering::SeqCst);
        }
        taken
    }
}

pub(super) fn submit_closed_loop(
    node: &Target,
    mut generator: Generator,
    duration: Duration,
    in_flight_max: usize,
    budget: &Budget,
) -> anyhow::Result<ThreadTally> {
    let cpu_start = thread_self_cpu();
    let deadline = Instant::now() + duration;
    let mut tally = ThreadTally::new();
    let mut in_flight: VecDeque<(BatchBuf, Pending, Instant)> = VecDeque::new();
    let answer = |tally: &mut ThreadTally,
                  generator: &mut Generator,
                  (batch, pending, submitted): (BatchBuf, Pending, Instant)|
     -> anyhow::Result<()> {
        let codes = pending.wait().context("waiting for a batch")?;
        let now = Instant::now();
        tally.answered(&codes, now - submitted, now);
        generator.completed(&batch, &codes);
        Ok(())
    };
    while Instant::now() < deadline {
        if in_flight.len() >= in_flight_max {
            let oldest = in_flight.pop_front().expect("in flight");
            answer(&mut tally, &mut generator, oldest)?;
        }
        let batch = generator.next_batch();
        if !budget.take(batch.as_batch().len() as u64) {
            break;
        }
        let submitted = Instant::now();
        let pending = submit_retrying(node, &batch, &mut tally.busy)?;
        in_flight.push_back((batch, pending, submitted));
    }
    while let Some(oldest) = in_flight.pop_front() {
        answer(&mut tally, &mut generator, oldest)?;
    }
    tally.orders_abandoned = generator.orders_abandoned();
    tally.cpu = thread_self_cpu().since(cpu_start);
    Ok(tally)
}

/// Adds up the threads' tallies; the node's log counters and its threads' CPU time are
/// taken as differences from `before` (sampled just before the start).
pub(super) fn combine(
    node: &Target,
    start: Instant,
    before: (CommitStats, BTreeMap<String, CpuTime>),
    tallies: Vec<ThreadTally>,
    stalls: Option<Stalls>,
) -> RunResult {
    let (stats_before, cpu_before) = before;
    let stats = node.commit_stats();
    let mut thread_cpu: BTreeMap<String, CpuTime> = threads_cpu()
        .into_iter()
        .filter(|(name, _)| name.starts_with("surge-") || name.starts_with("sled"))
        .map(|(name, time)| {
            let spent = time.since(cpu_before.get(&name).copied().unwrap_or_default());
            (name, spent)
        })
        .collect();
    let mut result = RunResult {
        commands: 0,
        seconds: 0.0,
        latency_ns: latency_histogram(),
        not_ok: BTreeMap::new(),
        busy: 0,
        rejected: 0,
        offered_per_sec: None,
        orders_abandoned: None,
        capacity_reached: false,
        syncs: stats.syncs - stats_before.syncs,
        commands_logged: stats.commands - stats_before.commands,
        commit_stats: stats,
        apply_latency_us: node.apply_latency_us(),
        thread_cpu: BTreeMap::new(),
        load_average: load_average(),
        reads: 0,
        read_latency_ns: latency_histogram(),
        stalls,
    };
    let mut last_answer = start;
    for tally in tallies {
        result.commands += tally.commands;
        result
            .latency_ns
            .add(&tally.latency_ns)
            .expect("histograms of the same bounds");
        for (code, count) in tally.not_ok {
            *result.not_ok.entry(code).or_default() += count;
        }
        result.busy += tally.busy;
        if let Some(abandoned) = tally.orders_abandoned {
            *result.orders_abandoned.get_or_insert(0) += abandoned;
        }
        last_answer = last_answer.max(tally.last_answer.unwrap_or(start));
        // The benchmark's own threads have ended by now: each measured itself.
        thread_cpu
            .entry(CLIENTS_CPU_NAME.to_string())
            .or_default()
            .add(tally.cpu);
    }
    thread_cpu.retain(|_, time| time.running_ns > 0);
    result.thread_cpu = thread_cpu;
    result.seconds = (last_answer - start).as_secs_f64().max(f64::MIN_POSITIVE);
    result
}

/// The open loop: a pacer thread submits a batch of `--open-loop-batch-size` commands at
/// each scheduled time (`--open-loop-rate` commands/s) whatever the engine is doing; a
/// collector thread waits for the answers in order and measures each from its scheduled
/// time. `Busy` answers are dropped and counted, never retried.
pub(super) fn run_open_loop(
    node: &Target,
    args: &EngineBenchArgs,
    plan: &RunPlan,
) -> anyhow::Result<RunResult> {
    let batch_size = plan.shape.batch_size;
    let interval = Duration::from_secs_f64(batch_size as f64 / args.open_loop_rate as f64);
    let batches = ((args.seconds / interval.as_secs_f64()).round() as u64).max(1);
    let (sender, receiver) =
        mpsc::sync_channel::<(Instant, BatchBuf, Pending)>(OPEN_LOOP_IN_FLIGHT_MAX);
    node.reset_latencies();
    let before = (node.commit_stats(), threads_cpu());
    let meter = StallMeter::start_if(args.stall_meter)?;
    let start = Instant::now() + Duration::from_millis(10);
    let (paced, collected) = std::thread::scope(|scope| {
        let mut generator = Generator::new(plan, 0);
        let pacer = std::thread::Builder::new()
            .name("surge-pacer".to_string())
            .spawn_scoped(scope, move || {
                let cpu_start = thread_self_cpu();
                let outcome = pace(node, &mut generator, start, interval, batches, sender);
                outcome.map(|(busy, rejected)| (busy, rejected, thread_self_cpu().since(cpu_start)))
            })
            .expect("spawn the pacer thread");
        let collector = std::thread::Builder::new()
            .name("surge-collector".to_string())
            .spawn_scoped(scope, move || collect(receiver))
            .expect("spawn the collector thread");
        (join(pacer), join(collector))
    });
    let stalls = meter.map(StallMeter::stop);
    let (busy, rejected, pacer_cpu) = paced?;
    let mut tally = collected?;
    tally.busy = busy;
    tally.cpu.add(pacer_cpu);
    let mut result = combine(node, start, before, vec![tally], stalls);
    result.rejected = rejected;
    result.offered_per_sec = Some((batches * batch_size as u64) as f64 / args.seconds);
    Ok(result)
}

/// The thread's outcome; its panic goes on in the caller.
pub(super) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match handle.join() {
        Ok(outcome) => outcome,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The pacer: the `index`th batch goes at `start + index × interval`, late ones at once.
/// Returns the `Busy` answers and the commands they refused.
pub(super) fn pace(
    node: &Target,
    generator: &mut Generator,
    start: Instant,
    interval: Duration,
    batches: u64,
    sender: mpsc::SyncSender<(Instant, BatchBuf, Pending)>,
) -> anyhow::Result<(u64, u64)> {
    let (mut busy, mut rejected) = (0, 0);
    let mut batch = generator.next_batch();
    for index in 0..batches {
        let scheduled = start + interval.mul_f64(index as f64);
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        match node.submit(batch.as_batch()) {
            Ok(pending) => sender
                .send((scheduled, batch, pending))
                .map_err(|_| anyhow::anyhow!("the collector thread stopped"))?,
            Err(error) if error.is_busy() => {
                busy += 1;
                rejected += batch.as_batch().len() as u64;
            }
            Err(error) => return Err(error).context("submitting a batch"),
        }
        batch = generator.next_batch();
    }
    Ok((busy, rejected))
}

/// The collector: answers in submission order, each measured from its scheduled time.
pub(super) fn collect(
    receiver: mpsc::Receiver<(Instant, BatchBuf, Pending)>,
) -> anyhow::Result<ThreadTally> {
    let cpu_start = thread_self_cpu();
    let mut tally = ThreadTally::new();
    for (scheduled, _, pending) in receiver {
        let codes = pending.wait().context("waiting for a batch")?;
        let now = Instant::now();
        tally.answered(&codes, now.saturating_duration_since(scheduled), now);
    }
    tally.cpu = thread_self_cpu().since(cpu_start);
    Ok(tally)
}

/// The report of one workload at one shard count from its runs: the median run by
/// commands per second (the open loop, whose rate is fixed: by p99 latency).
pub(super) fn summarize(
    args: &EngineBenchArgs,
    workload: EngineWorkload,
    history: bool,
    shards: usize,
    results: &[RunResult],
) -> EngineReport {
    let open_loop = workload == EngineWorkload::OpenLoop;
    let runs_ops_per_sec: Vec<f64> = results.iter().map(RunResult::ops_per_sec).collect();
    let runs_p99_us: Vec<f64> = results.iter().map(|r| r.percentile_us(99.0)).collect();
    let chosen = if open_loop {
        let middle = median(&runs_p99_us);
        &results[runs_p99_us
            .iter()
            .position(|p| *p == middle)
            .expect("a run")]
    } else {
        let middle = median(&runs_ops_per_sec);
        &results[runs_ops_per_sec
            .iter()
            .position(|o| *o == middle)
            .expect("a run")]
    };
    let name = if open_loop {
        format!("open-loop-{}k", args.open_loop_rate / 1000)
    } else {
        format!("{workload:?}")
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let dash = (i > 0 && c.is_ascii_uppercase()).then_some('-');
                dash.into_iter()
                    .chain(std::iter::once(c.to_ascii_lowercase()))
            })
            .collect()
    };
    let seconds = chosen.seconds;
    EngineReport {
        bench: "engine",
        workload: name,
        shards,
        ops_per_sec: median(&runs_ops_per_sec),
        p50_us: chosen.percentile_us(50.0),
        p99_us: chosen.percentile_us(99.0),
        p999_us: chosen.percentile_us(99.9),
        max_us: chosen.latency_ns.max() as f64 / 1_000.0,
        runs_ops_per_sec,
        runs_p99_us,
        batch_size: if open_loop {
            args.open_loop_batch_size
        } else {
            args.batch_size
        },
        submitters: if open_loop { 1 } else { args.submitters },
        in_flight: if open_loop { 0 } else { args.in_flight },
        history,
        commands: chosen.commands,
        seconds,
        not_ok: chosen.not_ok_count(),
        not_ok_codes: chosen.not_ok.clone(),
        busy: chosen.busy,
        offered_per_sec: chosen.offered_per_sec,
        achieved_per_sec: open_loop.then(|| chosen.ops_per_sec()),
        rejected: open_loop.then_some(chosen.rejected),
        capacity: plan(args, workload, shards, 0).capacity,
        capacity_reached: chosen.capacity_reached,
        orders_abandoned: chosen.orders_abandoned,
        cart_percent: chosen.orders_abandoned.map(|_| args.cart_percent),
        syncs_per_sec: chosen.syncs as f64 / seconds,
        commands_per_sync: chosen.commands_logged as f64 / chosen.syncs.max(1) as f64,
        sync_p50_us: chosen.commit_stats.sync_latency_us_p50,
        sync_p99_us: chosen.commit_stats.sync_latency_us_p99,
        sync_max_us: chosen.commit_stats.sync_latency_us_max,
        apply_p99_us: chosen.apply_latency_us.0,
        apply_max_us: chosen.apply_latency_us.1,
        checkpoint_wait_max_us: chosen.apply_latency_us.2,
        thread_cpu: per_second(&chosen.thread_cpu, seconds, |time| time.running_ns),
        thread_cpu_wait: per_second(&chosen.thread_cpu, seconds, |time| time.waiting_ns),
        load_average: chosen.load_average,
        stalls: chosen.stalls,
        readers: if open_loop { 0 } else { args.readers },
        reads_per_sec: chosen.reads as f64 / seconds,
        read_p99_us: chosen.read_latency_ns.value_at_percentile(99.0) as f64 / 1_000.0,
        read_max_us: chosen.read_latency_ns.max() as f64 / 1_000.0,
        wal_alone_ops_per_sec: None,
        fraction_of_wal: None,
        ratio_to_uniform: None,
        accounts: args.accounts,
        seed: args.seed,
        commit: String::new(),
    }
}
