//! The HTTP accept loop: HTTP/1.1 connections served by hyper, at most
//! `http_connections_max` at once, each closed after `http_idle_timeout` without a
//! request (hyper's header read timeout starts as soon as a connection waits for its next
//! request). On shutdown it stops accepting, lets every connection finish the request it
//! is serving (idle keep-alive connections close at once), and after `shutdown_grace`
//! aborts what is left.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long to back off after `accept` fails (out of file descriptors, say).
const ACCEPT_ERROR_BACKOFF_MS: u64 = 10;

/// The accept loop's settings.
pub(crate) struct ListenerLimits {
    pub(crate) connections_max: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
}

/// Serves `router` on `listener` until `shutdown` turns true, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let connection_slots = Arc::new(Semaphore::new(limits.connections_max));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = Arc::clone(&connection_slots).acquire_owned() => slot,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                eprintln!("surge: HTTP accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            eprintln!(
                "surge: {} HTTP connections still busy after the shutdown grace; closing them",
                connections.len()
            );
        }
    }
    connections.shutdown().await;
}
