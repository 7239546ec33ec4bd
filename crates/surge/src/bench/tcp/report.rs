//! What `surge bench tcp` reports: one run's measurements, the checks on its codes, and
//! the median of a workload's runs as a JSON object or a line.

use super::*;

/// One workload's figures: the median of its runs.
#[derive(Clone, Debug, Serialize)]
pub struct TcpReport {
    /// `tcp`.
    pub bench: &'static str,
    /// `uniform`, `hot-merchant` or `hot-sku`.
    pub workload: &'static str,
    /// The operation sent: `create_transfers`, `place_orders` or `reserve`.
    pub command: String,
    /// Shards the engine ran with.
    pub shards: usize,
    /// Durable, applied commands per second over TCP: the median over runs.
    pub ops_per_sec: f64,
    /// Per-call latency percentiles of the median run, in µs: submit → every code back.
    pub p50_us: f64,
    /// See `p50_us`.
    pub p99_us: f64,
    /// See `p50_us`.
    pub p999_us: f64,
    /// The slowest call of the median run, in µs.
    pub max_us: f64,
    /// `ops_per_sec` of every run, in run order.
    pub runs_ops_per_sec: Vec<f64>,
    /// The engine alone (`surge bench engine`'s closed loop, same workload and seconds,
    /// this invocation): its workload, figure and runs.
    pub engine_workload: Option<String>,
    /// See `engine_workload`.
    pub engine_ops_per_sec: Option<f64>,
    /// See `engine_workload`.
    pub engine_runs_ops_per_sec: Option<Vec<f64>>,
    /// `ops_per_sec` / `engine_ops_per_sec`.
    pub ratio_to_engine: Option<f64>,
    /// Tasks, commands per call, connections and requests in flight per connection.
    pub tasks: usize,
    /// See `tasks`.
    pub commands_per_call: usize,
    /// See `tasks`.
    pub connections: usize,
    /// See `tasks`.
    pub requests_in_flight: usize,
    /// Calls and commands answered in the median run, and its seconds until the last.
    pub calls: u64,
    /// See `calls`.
    pub commands: u64,
    /// See `calls`.
    pub seconds: f64,
    /// TCP requests the client sent in the median run, and commands per request.
    pub requests: u64,
    /// See `requests`.
    pub commands_per_request: f64,
    /// Replies `busy` in the median run (the client retried them).
    pub busy_replies: u64,
    /// Commands answered with another code than `ok` in the median run, and by code.
    pub not_ok: u64,
    /// See `not_ok`.
    pub not_ok_codes: BTreeMap<String, u64>,
    /// Whether the median run stopped early because it sent `capacity` commands.
    pub capacity_reached: bool,
    /// Commands a run could send (and the engine was sized for).
    pub capacity: u64,
    /// CPU seconds per second of run by thread kind in the median run (`surge-tokio`:
    /// server and client tasks; `surge-apply`, `surge-wal-write`, ...: the engine).
    pub thread_cpu: BTreeMap<String, f64>,
    /// Seconds per second each thread kind was runnable but waiting for a CPU.
    pub thread_cpu_wait: BTreeMap<String, f64>,
    /// The 1-minute load average at the end of the median run.
    pub load_average: f64,
    /// The machine's own stalls during the median run (`bench/stall.rs`), as `bench
    /// engine` reports them. `None` with `--stall-meter false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalls: Option<Stalls>,
    /// Whether the engine ran with the history index.
    pub history: bool,
    /// Accounts (or buyers) in the workload.
    pub accounts: u64,
    /// The workload seed.
    pub seed: u64,
    /// The source revision, if known.
    pub commit: String,
}

impl TcpReport {
    /// The human-readable line.
    pub fn line(&self) -> String {
        let ratio = self.ratio_to_engine.map_or_else(String::new, |ratio| {
            format!(
                "  engine {:.0}/s, ratio {ratio:.2}",
                self.engine_ops_per_sec.unwrap_or(0.0)
            )
        });
        let stalls = self
            .stalls
            .map_or_else(String::new, |stalls| format!("  {}", stalls.line()));
        format!(
            "{:<13} {:<16} shards {} {:>10.0} ops/s  p50 {:>8.0} µs  p99 {:>8.0} µs  \
             p999 {:>8.0} µs  not_ok {}{ratio}{stalls}  runs {:?}",
            self.workload,
            self.command,
            self.shards,
            self.ops_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.not_ok,
            self.runs_ops_per_sec
                .iter()
                .map(|r| format!("{:.2}M", r / 1e6))
                .collect::<Vec<_>>()
        )
    }
}

/// What one run measured.
pub(super) struct RunResult {
    pub(super) command: String,
    pub(super) tally: Tally,
    pub(super) seconds: f64,
    pub(super) requests: u64,
    pub(super) busy_replies: u64,
    pub(super) capacity: u64,
    pub(super) capacity_reached: bool,
    pub(super) thread_cpu: BTreeMap<String, CpuTime>,
    pub(super) load_average: f64,
    pub(super) stalls: Option<Stalls>,
}

impl RunResult {
    pub(super) fn ops_per_sec(&self) -> f64 {
        self.tally.commands as f64 / self.seconds
    }

    fn percentile_us(&self, percentile: f64) -> f64 {
        self.tally.latency_ns.value_at_percentile(percentile) as f64 / 1_000.0
    }
}

/// Fails the run if more than 1 % of its commands answered an unexpected code: the figure
/// would then measure failures, not work. Every workload expects `ok` for every command.
pub(super) fn check_codes(workload: TcpWorkload, result: &RunResult) -> anyhow::Result<()> {
    let not_ok: u64 = result.tally.not_ok.values().sum();
    ensure!(
        result.tally.commands > 0,
        "{workload:?}: no command was answered"
    );
    if not_ok as f64 > NOT_OK_FRACTION_MAX * result.tally.commands as f64 {
        bail!(
            "{workload:?}: {not_ok} of {} commands did not answer ok ({:?}); the figure \
             would measure failures",
            result.tally.commands,
            result.tally.not_ok
        );
    }
    Ok(())
}

/// The report of one workload from its runs: the median run by commands per second.
pub(super) fn summarize(
    args: &TcpBenchArgs,
    workload: TcpWorkload,
    results: &[RunResult],
) -> TcpReport {
    let runs_ops_per_sec: Vec<f64> = results.iter().map(RunResult::ops_per_sec).collect();
    let middle = median(&runs_ops_per_sec);
    let chosen = &results[runs_ops_per_sec
        .iter()
        .position(|o| *o == middle)
        .expect("a run")];
    let tally = &chosen.tally;
    TcpReport {
        bench: "tcp",
        workload: workload.kind().name(),
        command: chosen.command.clone(),
        shards: args.shards,
        ops_per_sec: middle,
        p50_us: chosen.percentile_us(50.0),
        p99_us: chosen.percentile_us(99.0),
        p999_us: chosen.percentile_us(99.9),
        max_us: tally.latency_ns.max() as f64 / 1_000.0,
        runs_ops_per_sec,
        engine_workload: None,
        engine_ops_per_sec: None,
        engine_runs_ops_per_sec: None,
        ratio_to_engine: None,
        tasks: args.tasks,
        commands_per_call: args.commands_per_call,
        connections: args.connections,
        requests_in_flight: args.requests_in_flight,
        calls: tally.calls,
        commands: tally.commands,
        seconds: chosen.seconds,
        requests: chosen.requests,
        commands_per_request: tally.commands as f64 / chosen.requests.max(1) as f64,
        busy_replies: chosen.busy_replies,
        not_ok: tally.not_ok.values().sum(),
        not_ok_codes: tally.not_ok.clone(),
        capacity_reached: chosen.capacity_reached,
        capacity: chosen.capacity,
        thread_cpu: per_second(&chosen.thread_cpu, chosen.seconds, |time| time.running_ns),
        thread_cpu_wait: per_second(&chosen.thread_cpu, chosen.seconds, |time| time.waiting_ns),
        load_average: chosen.load_average,
        stalls: chosen.stalls,
        history: args.history,
        accounts: args.accounts,
        seed: args.seed,
        commit: String::new(),
    }
}
