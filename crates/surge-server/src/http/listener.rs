//! The HTTP accept loop: HTTP/1.1 connections served by hyper, at most
//! `http_connections_max` at once, each closed after `http_idle_timeout` without a
//! request (hyper's header read timeout starts as soon as a connection waits for its next
//! request). A connection past the limit is answered `429 busy` (one answer, then closed)
//! rather than left in the kernel's backlog.
//!
//! Shutdown has two steps. On `shutdown` the server **drains**: every connection lets the
//! request it is serving finish (idle connections close at once, including one accepted
//! just before the signal whose request was not read yet: its client sees a close), and new
//! connections are still accepted, one answer each, so that a load balancer probing
//! `/readyz` hears `503` (and `/healthz` `200`) instead of a refused connection; new `/v1/`
//! requests get `503 shutting_down`. On `close` (the rest of the server drained too) and
//! once the old connections are done, it stops accepting. After `shutdown_grace` it aborts
//! what is left.

use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::constants::{HTTP_ONE_ANSWER_HEADER_READ_TIMEOUT_MS, HTTP_REFUSALS_IN_FLIGHT_MAX};
use crate::metrics::{Metrics, Rejection};
use crate::problem::{EdgeCode, Problem};

/// How long to back off after `accept` fails (out of file descriptors, say).
const ACCEPT_ERROR_BACKOFF_MS: u64 = 10;

/// The accept loop's settings.
pub(crate) struct ListenerLimits {
    pub(crate) connections_max: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
}

/// The two steps of a stop: `shutdown` starts the drain, `close` (sent once the rest of
/// the server drained) lets the listener stop accepting.
pub(crate) struct Stop {
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) close: watch::Receiver<bool>,
}

/// What every connection task shares.
struct Accepting {
    router: Router,
    metrics: Arc<Metrics>,
    connections_max: usize,
    connection_slots: Arc<Semaphore>,
    refusal_slots: Arc<Semaphore>,
    /// Keep-alive connections, until the drain.
    builder: http1::Builder,
    /// One request per connection, a short header timeout: refusals, and the drain.
    one_answer: http1::Builder,
}

/// Serves `router` on `listener` until `stop.shutdown` turns true, then drains until
/// `stop.close` turns true and every connection of before is done (or the grace is over).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    metrics: Arc<Metrics>,
    mut stop: Stop,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let mut one_answer = builder.clone();
    one_answer
        .header_read_timeout(limits.idle_timeout.min(Duration::from_millis(
            HTTP_ONE_ANSWER_HEADER_READ_TIMEOUT_MS,
        )))
        .keep_alive(false);
    let accepting = Accepting {
        router,
        metrics,
        connections_max: limits.connections_max,
        connection_slots: Arc::new(Semaphore::new(limits.connections_max)),
        refusal_slots: Arc::new(Semaphore::new(HTTP_REFUSALS_IN_FLIGHT_MAX)),
        builder,
        one_answer,
    };
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.shutdown.wait_for(|stop| *stop) => break,
        };
        if let Some(stream) = accepted_stream(accepted).await {
            accepting.serve(stream, Some(&graceful), &mut connections);
        }
    }
    let deadline = Instant::now() + limits.shutdown_grace;
    drain(
        &listener,
        &accepting,
        graceful,
        &mut connections,
        stop,
        deadline,
    )
    .await;
    drop(listener);
    // Left: connections accepted during the drain, one short answer each.
    let rest = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout_at(deadline, rest).await.is_err() {
        eprintln!(
            "surge: {} HTTP connections still busy after the shutdown grace; closing them",
            connections.len()
        );
    }
    connections.shutdown().await;
}

/// The drain: the connections of before finish what they serve while new ones are still
/// accepted (one answer each), until those are done and `close` came, or the deadline.
async fn drain(
    listener: &TcpListener,
    accepting: &Accepting,
    graceful: GracefulShutdown,
    connections: &mut JoinSet<()>,
    mut stop: Stop,
    deadline: Instant,
) {
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    let (mut drained_done, mut closed) = (false, false);
    while !(drained_done && closed) {
        while connections.try_join_next().is_some() {}
        let close = async {
            // Closed, or the sender is gone: either way, stop accepting once drained.
            let _ = stop.close.wait_for(|close| *close).await;
        };
        let accepted = tokio::select! {
            () = &mut drained, if !drained_done => {
                drained_done = true;
                continue;
            }
            () = close, if !closed => {
                closed = true;
                continue;
            }
            () = tokio::time::sleep_until(deadline) => return,
            accepted = listener.accept() => accepted,
        };
        if let Some(stream) = accepted_stream(accepted).await {
            accepting.serve(stream, None, connections);
        }
    }
}

/// The stream of an accepted connection; after a failed `accept`, a short pause and `None`.
async fn accepted_stream(
    accepted: std::io::Result<(TcpStream, std::net::SocketAddr)>,
) -> Option<TcpStream> {
    match accepted {
        Ok((stream, _peer)) => {
            let _ = stream.set_nodelay(true);
            Some(stream)
        }
        Err(error) => {
            eprintln!("surge: HTTP accept failed: {error}");
            tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
            None
        }
    }
}

impl Accepting {
    /// Serves one accepted connection in a task of `connections`: keep-alive and watched by
    /// `graceful` before the drain, one answer during it, `429 busy` past the connection
    /// limit, and closed at once past the refusal limit too.
    fn serve(
        &self,
        stream: TcpStream,
        graceful: Option<&GracefulShutdown>,
        connections: &mut JoinSet<()>,
    ) {
        let io = TokioIo::new(stream);
        let Ok(slot) = Arc::clone(&self.connection_slots).try_acquire_owned() else {
            self.refuse(io, connections);
            return;
        };
        let service = TowerToHyperService::new(self.router.clone());
        match graceful {
            Some(graceful) => {
                let connection = graceful.watch(self.builder.serve_connection(io, service));
                connections.spawn(async move {
                    let _ = connection.await;
                    drop(slot);
                });
            }
            None => {
                let connection = self.one_answer.serve_connection(io, service);
                connections.spawn(async move {
                    let _ = connection.await;
                    drop(slot);
                });
            }
        }
    }

    /// Answers a connection past `http_connections_max` with `429 busy` (reading its
    /// request first, so the answer is not lost to a reset) and closes it.
    fn refuse(&self, io: TokioIo<TcpStream>, connections: &mut JoinSet<()>) {
        self.metrics.reject(Rejection::ConnectionLimit);
        let Ok(refusal) = Arc::clone(&self.refusal_slots).try_acquire_owned() else {
            return; // Dropping the stream closes it.
        };
        let connections_max = self.connections_max;
        let service = hyper::service::service_fn(move |_request| async move {
            let detail = format!(
                "the server holds {connections_max} HTTP connections, its most; \
                 retry on a new connection later"
            );
            Ok::<_, std::convert::Infallible>(Problem::edge(EdgeCode::Busy, detail).into_response())
        });
        let connection = self.one_answer.serve_connection(io, service);
        connections.spawn(async move {
            let _ = connection.await;
            drop(refusal);
        });
    }
}
