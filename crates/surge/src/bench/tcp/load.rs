//! Driving load for `surge bench tcp`, through `surge-client` (or, for the in-process
//! reference, straight into the engine): the untimed setup, the commands of each task,
//! the tasks' closed loop, and their tallies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use surge_client::Client;
use surge_core::{BatchBuf, ResultCode};
use surge_engine::Engine;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::HotSkuCommand;
use crate::rng::SplitMix64;
use crate::workload::{measured_batch, stampede_order, WorkloadKind, WorkloadShape};

/// Each task's commands (and so ids) come from its own range of indexes this wide.
const TASK_INDEX_RANGE: u64 = 1 << 40;

/// Setup calls in flight at once (setup is not timed).
const SETUP_CALLS_IN_FLIGHT_MAX: usize = 64;

/// Wait before submitting again after the engine answered `Busy` (in-process calls).
const ENGINE_BUSY_RETRY_INTERVAL: Duration = Duration::from_micros(100);

/// Highest latency the histograms track, in ns (longer ones are clamped).
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// What one task sends.
#[derive(Clone, Copy, Debug)]
pub(super) enum Commands {
    /// A workload of `workload.rs` (`uniform`, `hot-merchant`, `hot-sku` reservations).
    Fixed(WorkloadKind),
    /// Orders of one unit of the hot SKU by random funded buyers, paying the merchant.
    PlaceOrders,
}

impl Commands {
    pub(super) fn of(kind: WorkloadKind, hot_sku: HotSkuCommand) -> Commands {
        match (kind, hot_sku) {
            (WorkloadKind::HotSku, HotSkuCommand::PlaceOrder) => Commands::PlaceOrders,
            _ => Commands::Fixed(kind),
        }
    }
}

/// One task's command generator.
struct Generator {
    commands: Commands,
    shape: WorkloadShape,
    rng: SplitMix64,
    index_next: u64,
}

impl Generator {
    fn new(commands: Commands, shape: &WorkloadShape, task: usize) -> Generator {
        let first_index = task as u64 * TASK_INDEX_RANGE;
        Generator {
            commands,
            shape: *shape,
            rng: SplitMix64::new(shape.seed ^ first_index),
            index_next: first_index,
        }
    }

    fn next_call(&mut self, size: usize) -> BatchBuf {
        let first = self.index_next;
        self.index_next += size as u64;
        match self.commands {
            Commands::Fixed(kind) => {
                measured_batch(kind, &self.shape, &mut self.rng, first as usize, size)
            }
            Commands::PlaceOrders => BatchBuf::PlaceOrders(
                (first..first + size as u64)
                    .map(|i| stampede_order(&mut self.rng, &self.shape, i))
                    .collect(),
            ),
        }
    }
}

/// Where a task's calls go.
#[derive(Clone)]
pub(super) enum Caller {
    /// Over TCP, through `surge-client`.
    Tcp(Client),
    /// Straight into the engine, in-process (the reference without sockets): each call is
    /// one engine batch, so it needs big calls to be fair to the engine.
    Engine(Arc<Engine>),
}

impl Caller {
    /// Sends `batch` and waits for its codes (the engine: again after `Busy`, briefly).
    async fn call(&self, batch: &BatchBuf) -> anyhow::Result<Vec<ResultCode>> {
        match self {
            Caller::Tcp(client) => Ok(client.submit(batch.as_batch()).await?),
            Caller::Engine(engine) => loop {
                let (sender, receiver) = oneshot::channel();
                let done = Box::new(move |result| {
                    let _ = sender.send(result);
                });
                match engine.submit(batch.as_batch(), done) {
                    Err(error) if error.is_busy() => {
                        tokio::time::sleep(ENGINE_BUSY_RETRY_INTERVAL).await;
                    }
                    Err(error) => return Err(error).context("submitting a batch"),
                    Ok(()) => {
                        let result = receiver.await.context("the engine dropped a batch")?;
                        return result.context("an engine batch");
                    }
                }
            },
        }
    }
}

/// Sends the setup batches over the client, one operation at a time (all accounts, then
/// all funding transfers, then the SKU), many calls in flight; every command must be `ok`.
pub(super) async fn set_up(caller: &Caller, batches: Vec<BatchBuf>) -> anyhow::Result<()> {
    let mut phases: Vec<Vec<BatchBuf>> = Vec::new();
    for batch in batches {
        match phases.last_mut() {
            Some(phase) if phase[0].as_batch().operation() == batch.as_batch().operation() => {
                phase.push(batch);
            }
            _ => phases.push(vec![batch]),
        }
    }
    for phase in phases {
        let mut calls = JoinSet::new();
        for batch in phase {
            if calls.len() >= SETUP_CALLS_IN_FLIGHT_MAX {
                check_setup(calls.join_next().await)?;
            }
            let caller = caller.clone();
            calls.spawn(async move { caller.call(&batch).await });
        }
        while let Some(joined) = calls.join_next().await {
            check_setup(Some(joined))?;
        }
    }
    Ok(())
}

type SetupJoin = Option<Result<anyhow::Result<Vec<ResultCode>>, tokio::task::JoinError>>;

fn check_setup(joined: SetupJoin) -> anyhow::Result<()> {
    let Some(joined) = joined else {
        return Ok(());
    };
    let codes = joined.context("a setup task")?.context("workload setup")?;
    if let Some(code) = codes.iter().find(|code| **code != ResultCode::Ok) {
        bail!("workload setup failed: a command answered {}", code.name());
    }
    Ok(())
}

/// The commands a run may still send, shared by its tasks (the engine is sized for them).
pub(super) struct Budget {
    commands_left: AtomicU64,
    /// Set when a task stopped because the budget ran out.
    pub(super) reached: AtomicBool,
}

impl Budget {
    pub(super) fn new(commands: u64) -> Budget {
        Budget {
            commands_left: AtomicU64::new(commands),
            reached: AtomicBool::new(false),
        }
    }

    fn take(&self, commands: u64) -> bool {
        let taken = self
            .commands_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(commands)
            })
            .is_ok();
        if !taken {
            self.reached.store(true, Ordering::Relaxed);
        }
        taken
    }
}

/// What one task (or, added up, a run) measured.
pub(super) struct Tally {
    pub(super) calls: u64,
    pub(super) commands: u64,
    /// Per call: submit → every code back.
    pub(super) latency_ns: Histogram<u64>,
    pub(super) not_ok: BTreeMap<String, u64>,
    pub(super) last_answer: Option<Instant>,
}

impl Tally {
    pub(super) fn new() -> Tally {
        Tally {
            calls: 0,
            commands: 0,
            latency_ns: Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
                .expect("valid histogram bounds"),
            not_ok: BTreeMap::new(),
            last_answer: None,
        }
    }

    fn answered(&mut self, codes: &[ResultCode], latency: Duration, now: Instant) {
        let latency_ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_ns
            .saturating_record(latency_ns.clamp(1, LATENCY_NS_MAX));
        self.calls += 1;
        self.commands += codes.len() as u64;
        for code in codes.iter().filter(|code| **code != ResultCode::Ok) {
            *self.not_ok.entry(code.name()).or_default() += 1;
        }
        self.last_answer = Some(now);
    }

    pub(super) fn add(&mut self, other: Tally) {
        self.calls += other.calls;
        self.commands += other.commands;
        self.latency_ns
            .add(&other.latency_ns)
            .expect("histograms of the same bounds");
        for (code, count) in other.not_ok {
            *self.not_ok.entry(code).or_default() += count;
        }
        self.last_answer = self.last_answer.max(other.last_answer);
    }
}

/// What every task of a run shares.
pub(super) struct TaskPlan {
    pub(super) commands: Commands,
    pub(super) shape: WorkloadShape,
    pub(super) commands_per_call: usize,
    pub(super) deadline: Instant,
    pub(super) budget: Arc<Budget>,
}

/// The closed loop: `tasks` tasks, spread over the clients, each making one call at a
/// time until the deadline; returns their tallies added up.
pub(super) async fn run_tasks(
    callers: &[Caller],
    tasks: usize,
    plan: Arc<TaskPlan>,
) -> anyhow::Result<Tally> {
    let mut running = JoinSet::new();
    for task in 0..tasks {
        let caller = callers[task % callers.len()].clone();
        let plan = plan.clone();
        running.spawn(run_task(caller, task, plan));
    }
    let mut total = Tally::new();
    while let Some(joined) = running.join_next().await {
        total.add(joined.context("a load task")??);
    }
    Ok(total)
}

async fn run_task(caller: Caller, task: usize, plan: Arc<TaskPlan>) -> anyhow::Result<Tally> {
    let mut generator = Generator::new(plan.commands, &plan.shape, task);
    let mut tally = Tally::new();
    let size = plan.commands_per_call;
    while Instant::now() < plan.deadline {
        if !plan.budget.take(size as u64) {
            break;
        }
        let call = generator.next_call(size);
        let submitted = Instant::now();
        let codes = caller
            .call(&call)
            .await
            .with_context(|| format!("task {task}: a call"))?;
        ensure!(
            codes.len() == size,
            "task {task}: {} codes for {size} commands",
            codes.len()
        );
        let now = Instant::now();
        tally.answered(&codes, now - submitted, now);
    }
    Ok(tally)
}
