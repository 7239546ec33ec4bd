//! Starting and stopping the server: check the data directory, make the first tokens,
//! bind both addresses, open (recover) the engine, serve, and on the shutdown signal drain
//! in order — HTTP and TCP stop accepting and finish what they admitted, then
//! `Engine::shutdown` makes everything admitted durable — so nothing acknowledged is lost.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use surge_engine::{Engine, EngineConfig, EngineError};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::coalesce::Coalescer;
use crate::config::ServerConfig;
use crate::engine_failure::{self, EngineFailure};
use crate::http::listener::{self, ListenerLimits};
use crate::http::{self, AppState};
use crate::idempotency::IdempotencyCache;
use crate::metrics::{Metrics, ShardFigures};
use crate::tokens::{self, TokenError, TokenStore};

/// How long `stop` waits for the last `Arc<Engine>` clones (blocking lookups) to go.
const ENGINE_RELEASE_WAIT_MS: u64 = 5_000;

/// Why the server did not start (or did not stop cleanly).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory cannot be created or written.
    #[error("data directory {path} is not usable: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The tokens could not be read or created.
    #[error("tokens: {0}")]
    Tokens(TokenError),
    /// An address could not be bound.
    #[error("cannot listen on {what} address {addr}: {reason}")]
    Bind {
        /// `HTTP` or `TCP`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why (in use, not local, no permission).
        reason: std::io::Error,
    },
    /// The engine could not open (recovery refused the data directory, say).
    #[error("engine: {0}")]
    Engine(EngineError),
    /// A server task panicked or could not be joined.
    #[error("server task: {0}")]
    Task(String),
    /// The engine failed while serving (fail-stop: a log write, sync, apply or checkpoint
    /// failed); the server drained and stopped. Restart it once the cause is fixed:
    /// recovery replays the log.
    #[error("engine failed: {0}")]
    EngineFailed(String),
}

// The inner errors are part of the message, not `source`s, so a report prints each
// reason once.
impl From<TokenError> for ServerError {
    fn from(error: TokenError) -> ServerError {
        ServerError::Tokens(error)
    }
}

impl From<EngineError> for ServerError {
    fn from(error: EngineError) -> ServerError {
        ServerError::Engine(error)
    }
}

/// A running server.
pub struct RunningServer {
    http_addr: SocketAddr,
    tcp_addr: SocketAddr,
    data_dir: PathBuf,
    initial_tokens: Option<PathBuf>,
    recovery: Vec<String>,
    shutdown: watch::Sender<bool>,
    /// Lets the HTTP listener stop accepting: sent once TCP drained too.
    close: watch::Sender<bool>,
    http_task: JoinHandle<()>,
    tcp_task: JoinHandle<()>,
    engine: Arc<Engine>,
    state: Option<AppState>,
    /// The reason the engine failed, once a command reported it.
    engine_failure: watch::Receiver<Option<String>>,
}

impl RunningServer {
    /// Where HTTP listens (the real port when configured with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where TCP listens.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The data directory, made absolute.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file the first tokens were written to, if this start created them.
    pub fn initial_tokens(&self) -> Option<&Path> {
        self.initial_tokens.as_deref()
    }

    /// What recovery did, one line per shard (and one per warning).
    pub fn recovery(&self) -> &[String] {
        &self.recovery
    }

    /// Completes when a command was answered `engine_failed` (the engine is fail-stop):
    /// the reason. `run` then stops the server.
    pub async fn engine_failed(&self) -> String {
        engine_failure::reported(self.engine_failure.clone()).await
    }

    /// After a shutdown signal, before the drain: `/readyz` answers 503 while everything
    /// else is served as before, for the configured shutdown delay (a second signal or an
    /// engine failure ends it early: its reason), so a load balancer stops sending
    /// traffic first.
    pub async fn delay_shutdown(&self) -> Option<String> {
        let state = self.state.as_ref()?;
        let delay = state.config.shutdown_delay;
        if delay.is_zero() {
            return None;
        }
        state
            .not_ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        println!(
            "surge: shutting down: /readyz answers 503; serving {} ms more before draining",
            delay.as_millis()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            () = shutdown_signal() => None,
            reason = self.engine_failed() => Some(reason),
        }
    }

    /// The request counters (for tests).
    pub fn metrics(&self) -> Option<Arc<Metrics>> {
        self.state.as_ref().map(|state| Arc::clone(&state.metrics))
    }

    /// Drains: TCP stops accepting, HTTP answers new connections `503` (`/readyz`
    /// included) while both finish every admitted request; then HTTP stops accepting and
    /// the engine shuts down (everything admitted becomes durable and is answered).
    pub async fn stop(mut self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.state = None;
        let tcp = (&mut self.tcp_task).await;
        let _ = self.close.send(true);
        let http = (&mut self.http_task).await;
        http.map_err(|error| ServerError::Task(error.to_string()))?;
        tcp.map_err(|error| ServerError::Task(error.to_string()))?;
        let mut engine = self.engine;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ENGINE_RELEASE_WAIT_MS);
        let engine = loop {
            match Arc::try_unwrap(engine) {
                Ok(engine) => break engine,
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    engine = shared;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(shared) => {
                    return Err(ServerError::Task(format!(
                        "{} users of the engine remain after the drain",
                        Arc::strong_count(&shared) - 1
                    )))
                }
            }
        };
        tokio::task::spawn_blocking(move || engine.shutdown())
            .await
            .map_err(|error| ServerError::Task(error.to_string()))
    }
}

/// Starts the server: everything but waiting for the shutdown signal.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let data_dir = prepare_data_dir(&config.data_dir)?;
    let initial_tokens = tokens::ensure_initial_tokens(&data_dir)?;
    let token_store = Arc::new(TokenStore::open(&data_dir)?);
    let http_listener = bind("HTTP", config.http_addr).await?;
    let tcp_listener = bind("TCP", config.tcp_addr).await?;
    let http_addr = local_addr("HTTP", &http_listener, config.http_addr)?;
    let tcp_addr = local_addr("TCP", &tcp_listener, config.tcp_addr)?;
    let (engine, recovery) = open_engine(&config, &data_dir).await?;
    let engine = Arc::new(engine);
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let (failure, failure_receiver) = EngineFailure::new();
    let state = AppState {
        engine: Arc::clone(&engine),
        tokens: Arc::clone(&token_store),
        idempotency: Arc::new(IdempotencyCache::new(
            config.idempotency_keys_max,
            config.idempotency_bytes_max,
            config.idempotency_key_age,
        )),
        metrics: Arc::new(Metrics::default()),
        in_flight: Arc::new(Semaphore::new(config.http_requests_in_flight_max)),
        config: Arc::new(config.clone()),
        shutdown: shutdown_receiver.clone(),
        dispatch_ready: Arc::new(Notify::new()),
        coalescer: Arc::new(Coalescer::start(&engine)),
        engine_failure: failure.clone(),
        tcp_metrics: Arc::new(surge_tcp::TcpMetrics::default()),
        not_ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };
    let limits = ListenerLimits {
        connections_max: config.http_connections_max,
        idle_timeout: config.http_idle_timeout,
        shutdown_grace: config.shutdown_grace,
    };
    let router = http::router(state.clone());
    let (close, close_receiver) = watch::channel(false);
    let stop = listener::Stop {
        shutdown: shutdown_receiver.clone(),
        close: close_receiver,
    };
    let http_task = tokio::spawn(listener::serve(
        http_listener,
        router,
        limits,
        Arc::clone(&state.metrics),
        stop,
    ));
    // A failure while no command is in flight (a checkpoint after a pulse, say) is seen
    // by polling; one a command meets is reported by the command at once.
    tokio::spawn(engine_failure::watch_engine(
        Arc::clone(&engine),
        failure.clone(),
        shutdown_receiver.clone(),
    ));
    let tcp_task = tokio::spawn(crate::tcp::serve_tcp(
        tcp_listener,
        Arc::clone(&engine),
        Arc::clone(&state.tcp_metrics),
        token_store,
        config.tcp.clone(),
        failure,
        shutdown_receiver,
    ));
    Ok(RunningServer {
        http_addr,
        tcp_addr,
        data_dir,
        initial_tokens,
        recovery,
        shutdown,
        close,
        http_task,
        tcp_task,
        engine,
        state: Some(state),
        engine_failure: failure_receiver,
    })
}

/// Starts the server, prints where it listens, serves until `shutdown` completes, then
/// drains and stops. What `surge serve` runs. If the engine fails first, it drains and
/// stops the same way and returns [`ServerError::EngineFailed`] (the process exits
/// non-zero with the reason).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let server = start(config).await?;
    println!("surge: data directory {}", server.data_dir().display());
    for line in server.recovery() {
        println!("surge: {line}");
    }
    if let Some(path) = server.initial_tokens() {
        println!(
            "surge: first start: created one token per scope; they are in {} (mode 0600)",
            path.display()
        );
    }
    println!("surge: HTTP listening on http://{}", server.http_addr());
    println!("surge: TCP listening on {}", server.tcp_addr());
    let mut failed = tokio::select! {
        () = shutdown => None,
        reason = server.engine_failed() => Some(reason),
    };
    if failed.is_none() {
        failed = server.delay_shutdown().await;
    }
    match &failed {
        None => println!("surge: shutting down: finishing in-flight requests"),
        Some(reason) => {
            eprintln!("surge: the engine failed ({reason}); stopping: draining requests")
        }
    }
    server.stop().await?;
    if let Some(reason) = failed {
        return Err(ServerError::EngineFailed(reason));
    }
    println!("surge: stopped; everything acknowledged is durable");
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called (inside
/// a tokio runtime), not when the future is first polled: a signal that arrives in
/// between is not lost, and does not kill the process with the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (terminate, interrupt) {
            (Ok(mut terminate), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (Ok(mut only), Err(_)) | (Err(_), Ok(mut only)) => {
                only.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

fn prepare_data_dir(path: &Path) -> Result<PathBuf, ServerError> {
    let error = |reason| ServerError::DataDir {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(path).map_err(error)?;
    let path = path.canonicalize().map_err(error)?;
    let probe = path.join(".surge-write-probe");
    std::fs::write(&probe, b"probe").map_err(error)?;
    std::fs::remove_file(&probe).map_err(error)?;
    Ok(path)
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|reason| ServerError::Bind { what, addr, reason })
}

fn local_addr(
    what: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, ServerError> {
    listener
        .local_addr()
        .map_err(|reason| ServerError::Bind { what, addr, reason })
}

async fn open_engine(
    config: &ServerConfig,
    data_dir: &Path,
) -> Result<(Engine, Vec<String>), ServerError> {
    let mut engine_config = EngineConfig::new(data_dir);
    engine_config.shards = match config.shards {
        Some(shards) => shards,
        // A data directory keeps the shard count it was created with.
        None => existing_shard_count(data_dir).unwrap_or(engine_config.shards),
    };
    engine_config.history = config.history;
    engine_config.batches_in_flight_per_shard_max = config.engine_batches_in_flight_max;
    let (engine, report) = tokio::task::spawn_blocking(move || Engine::open(engine_config))
        .await
        .map_err(|error| ServerError::Task(error.to_string()))??;
    let mut recovery = Vec::new();
    for (shard, recovered) in report.shards.iter().enumerate() {
        let checkpoint = match recovered.checkpoint_record_index {
            Some(record) => format!("the checkpoint at log record {record}"),
            None => "no checkpoint".to_string(),
        };
        recovery.push(format!(
            "shard {shard}: recovered from {checkpoint} and {} log records",
            recovered.records_replayed
        ));
        for warning in &recovered.warnings {
            recovery.push(format!("shard {shard}: warning: {warning}"));
        }
    }
    Ok((engine, recovery))
}

/// The shard count a data directory was created with (`<data>/shards`), if any.
fn existing_shard_count(data_dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(data_dir.join("shards")).ok()?;
    text.trim().parse().ok()
}

/// The engine's per-shard figures for `/metrics`.
pub(crate) fn shard_figures(engine: &Engine) -> Vec<ShardFigures> {
    engine
        .stats()
        .shards
        .iter()
        .map(|shard| {
            let mut figures = engine_figures(shard);
            if let Some(history) = &shard.history {
                // Frozen memtables at `FROZEN_MAX` mean the index holds the engine back.
                figures.extra.extend([
                    (
                        "surge_engine_history_memtables_frozen".into(),
                        history.frozen as f64,
                    ),
                    ("surge_engine_history_runs".into(), history.runs as f64),
                    (
                        "surge_engine_history_run_bytes".into(),
                        history.run_bytes as f64,
                    ),
                ]);
            }
            figures
        })
        .collect()
}

fn engine_figures(shard: &surge_engine::ShardStats) -> ShardFigures {
    ShardFigures {
        queue_depth: shard.batches_in_flight as u64,
        commands: shard.commands,
        syncs: shard.commit.syncs,
        commands_per_sync: shard.commit.commands_per_sync,
        extra: vec![
            ("surge_engine_busy_total".into(), shard.busy as f64),
            ("surge_engine_batches_total".into(), shard.batches as f64),
            (
                "surge_engine_latency_us_p50".into(),
                shard.latency_us_p50 as f64,
            ),
            (
                "surge_engine_latency_us_p99".into(),
                shard.latency_us_p99 as f64,
            ),
            (
                "surge_engine_sync_latency_us_p50".into(),
                shard.commit.sync_latency_us_p50 as f64,
            ),
            (
                "surge_engine_sync_latency_us_p99".into(),
                shard.commit.sync_latency_us_p99 as f64,
            ),
            (
                "surge_engine_apply_latency_us_p50".into(),
                shard.apply.apply_latency_us_p50 as f64,
            ),
            (
                "surge_engine_apply_latency_us_p99".into(),
                shard.apply.apply_latency_us_p99 as f64,
            ),
        ],
    }
}
