//! The accept loop: admits connections under `connections_max`, runs each in its own task,
//! and on shutdown stops accepting and waits for every connection to finish its in-flight
//! requests.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use surge_engine::{Engine, EngineError};
use surge_protocol::{ErrorCode, Frame, Message};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::auth::Authenticator;
use crate::connection;
use crate::limits::TcpLimits;
use crate::metrics::TcpMetrics;

/// Pause after a failed `accept` (out of file descriptors, a connection reset before it
/// was accepted), so an error that repeats does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Told the error each time the engine fails a request's commands (not `busy`): the
/// engine is fail-stop, so the server above may stop too. Runs on an engine thread (or the
/// connection's task) and must not block.
pub type EngineFailureHook = Arc<dyn Fn(&EngineError) + Send + Sync>;

/// What every connection of one server shares.
pub(crate) struct Shared {
    pub engine: Arc<Engine>,
    pub auth: Arc<dyn Authenticator>,
    pub limits: TcpLimits,
    pub metrics: Arc<TcpMetrics>,
    pub on_engine_failure: EngineFailureHook,
    /// Requests in flight across all connections, under `requests_in_flight_max`.
    pub in_flight: Arc<Semaphore>,
}

/// Serves the binary protocol on `listener` until `shutdown` turns true (or its sender is
/// dropped); then stops accepting, stops reading requests, waits until every admitted
/// request is answered, and returns. The engine is the caller's to shut down afterwards.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    auth: Arc<dyn Authenticator>,
    limits: TcpLimits,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let metrics = Arc::new(TcpMetrics::default());
    serve_with_metrics(listener, engine, auth, limits, metrics, shutdown).await
}

/// [`serve`], counting into `metrics` (which the HTTP `/metrics` endpoint renders).
pub async fn serve_with_metrics(
    listener: TcpListener,
    engine: Arc<Engine>,
    auth: Arc<dyn Authenticator>,
    limits: TcpLimits,
    metrics: Arc<TcpMetrics>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let ignore: EngineFailureHook = Arc::new(|_: &EngineError| {});
    serve_with_hook(listener, engine, auth, limits, metrics, ignore, shutdown).await
}

/// [`serve_with_metrics`], telling `on_engine_failure` about every request whose commands
/// the engine failed (answered `engine_failed`), so the caller can stop the process.
pub async fn serve_with_hook(
    listener: TcpListener,
    engine: Arc<Engine>,
    auth: Arc<dyn Authenticator>,
    limits: TcpLimits,
    metrics: Arc<TcpMetrics>,
    on_engine_failure: EngineFailureHook,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let limits = limits.normalized();
    let connection_slots = Arc::new(Semaphore::new(limits.connections_max));
    let shared = Arc::new(Shared {
        engine,
        auth,
        in_flight: Arc::new(Semaphore::new(limits.requests_in_flight_max)),
        limits,
        metrics,
        on_engine_failure,
    });
    let mut connections = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match connection_slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let task = connection::run(stream, shared.clone(), shutdown.clone(), slot);
                        connections.spawn(task);
                    }
                    Err(_) => refuse(stream, &shared.metrics),
                },
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Tells a connection over the limit why, without waiting for it (a non-blocking write
/// of one small frame into an empty socket buffer), and closes it.
fn refuse(stream: TcpStream, metrics: &TcpMetrics) {
    TcpMetrics::add(&metrics.connections_refused, 1);
    let mut bytes = Vec::new();
    Frame::HandshakeError(Message {
        request_id: 0,
        code: ErrorCode::TooManyConnections,
        message: "too many connections",
    })
    .encode(&mut bytes);
    let _ = stream.try_write(&bytes);
}
