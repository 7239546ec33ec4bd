//! A connection after its handshake: frames are decoded as they arrive, each request is
//! checked (scope, request id, limits) and handed to the engine with a completion that
//! sends its codes to the writer; each lookup is checked the same way and read on the
//! blocking pool, which sends its entries to the writer. Past a limit the answer is `busy`
//! at once; nothing is queued without bound.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use surge_core::ResultCode;
use surge_engine::EngineError;
use surge_protocol::{ErrorCode, Frame, FrameError, Lookup, Request, Scopes};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::lookup;
use crate::metrics::TcpMetrics;
use crate::reader::FrameReader;
use crate::server::Shared;
use crate::writer::{Answer, Outgoing};

/// Why the session stopped reading; `None`: the client closed (or the writer stopped).
type CloseReason = Option<(ErrorCode, String)>;

pub(crate) struct Session {
    shared: Arc<Shared>,
    scopes: Scopes,
    immediate: mpsc::Sender<Outgoing>,
    completions: mpsc::UnboundedSender<Outgoing>,
    /// This connection's requests in flight, under its limit.
    in_flight: Arc<Semaphore>,
    /// Their ids: replies are matched by id, so two in flight may not share one.
    request_ids: Arc<Mutex<HashSet<u64>>>,
}

/// An admitted request's hold on the limits and its id; released when dropped, which is
/// when the writer has written its reply (or the engine refused it at once).
#[derive(Debug)]
pub(crate) struct Admission {
    request_id: u64,
    request_ids: Arc<Mutex<HashSet<u64>>>,
    metrics: Arc<TcpMetrics>,
    _connection: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut ids) = self.request_ids.lock() {
            ids.remove(&self.request_id);
        }
        TcpMetrics::decrement(&self.metrics.requests_in_flight);
    }
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        scopes: Scopes,
        immediate: mpsc::Sender<Outgoing>,
        completions: mpsc::UnboundedSender<Outgoing>,
    ) -> Session {
        let per_connection = shared.limits.requests_in_flight_per_connection_max;
        Session {
            shared,
            scopes,
            immediate,
            completions,
            in_flight: Arc::new(Semaphore::new(per_connection)),
            request_ids: Arc::new(Mutex::new(HashSet::with_capacity(per_connection))),
        }
    }

    fn requests_in_flight(&self) -> usize {
        self.shared.limits.requests_in_flight_per_connection_max
            - self.in_flight.available_permits()
    }

    /// Reads and handles frames until the client closes, a fatal frame error, the idle
    /// timeout or shutdown; then queues the closing frame (if any) for the writer.
    pub async fn run(self, reader: &mut FrameReader, mut shutdown: watch::Receiver<bool>) {
        if let Some((code, message)) = self.read_frames(reader, &mut shutdown).await {
            let _ = self.immediate.send(Outgoing::Close { code, message }).await;
        }
    }

    async fn read_frames(
        &self,
        reader: &mut FrameReader,
        shutdown: &mut watch::Receiver<bool>,
    ) -> CloseReason {
        let idle_timeout = self.shared.limits.idle_timeout;
        let mut idle_deadline = Instant::now() + idle_timeout;
        loop {
            // Only whole frames count as activity: a client trickling bytes of a frame it
            // never finishes is idle.
            match self.handle_buffered(reader).await {
                Ok(0) => {}
                Ok(_) => idle_deadline = Instant::now() + idle_timeout,
                Err(close) => return close,
            }
            if *shutdown.borrow_and_update() {
                return Some((ErrorCode::ShuttingDown, "shutting down".to_string()));
            }
            tokio::select! {
                read = reader.fill() => match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
                () = self.immediate.closed() => return None,
                _ = shutdown.changed() => {}
                () = tokio::time::sleep_until(idle_deadline) => {
                    if self.requests_in_flight() > 0 {
                        idle_deadline = Instant::now() + idle_timeout;
                    } else {
                        TcpMetrics::add(&self.shared.metrics.idle_timeouts, 1);
                        return Some((ErrorCode::IdleTimeout, "idle".to_string()));
                    }
                }
            }
        }
    }

    /// Handles every whole frame in the buffer: how many, or `Err` to stop reading, for
    /// this reason.
    async fn handle_buffered(&self, reader: &mut FrameReader) -> Result<usize, CloseReason> {
        let mut frames = 0;
        loop {
            let size = match reader.decode() {
                Ok(None) => return Ok(frames),
                Ok(Some((frame, size))) => {
                    if let Some(close) = self.handle_frame(frame).await {
                        return Err(Some(close));
                    }
                    size
                }
                Err(FrameError::Request {
                    request_id,
                    operation,
                    frame_size_bytes,
                    reason,
                }) => {
                    TcpMetrics::add(&self.shared.metrics.requests, 1);
                    self.reply(Outgoing::Rejected {
                        request_id,
                        operation,
                        code: reason.code(),
                        answer: Answer::Reply,
                        admission: None,
                    })
                    .await;
                    frame_size_bytes
                }
                Err(FrameError::Lookup {
                    request_id,
                    operation,
                    frame_size_bytes,
                    reason,
                }) => {
                    TcpMetrics::add(&self.shared.metrics.lookups, 1);
                    self.reply(Outgoing::Rejected {
                        request_id,
                        operation,
                        code: reason.code(),
                        answer: Answer::LookupReply,
                        admission: None,
                    })
                    .await;
                    frame_size_bytes
                }
                Err(error) => {
                    TcpMetrics::add(&self.shared.metrics.frame_errors, 1);
                    return Err(Some((error.code(), error.to_string())));
                }
            };
            reader.consume(size);
            frames += 1;
        }
    }

    async fn handle_frame(&self, frame: Frame<'_>) -> Option<(ErrorCode, String)> {
        match frame {
            Frame::Request(request) => {
                self.handle_request(request).await;
                None
            }
            Frame::Lookup(lookup) => {
                self.handle_lookup(lookup).await;
                None
            }
            Frame::Ping { request_id } => {
                self.reply(Outgoing::Pong { request_id }).await;
                None
            }
            Frame::Pong { .. } => None,
            other => {
                TcpMetrics::add(&self.shared.metrics.frame_errors, 1);
                let message = format!("{:?} frame after the handshake", other.kind());
                Some((ErrorCode::UnexpectedFrame, message))
            }
        }
    }

    async fn reply(&self, message: Outgoing) {
        // Fails only when the writer stopped; the read loop notices that next.
        let _ = self.immediate.send(message).await;
    }

    async fn handle_request(&self, request: Request<'_>) {
        let metrics = &self.shared.metrics;
        TcpMetrics::add(&metrics.requests, 1);
        let (request_id, operation) = (request.request_id, request.operation as u8);
        let rejected = move |code, admission| Outgoing::Rejected {
            request_id,
            operation,
            code,
            answer: Answer::Reply,
            admission,
        };
        let busy = move |admission| Outgoing::Busy {
            request_id,
            operation,
            answer: Answer::Reply,
            admission,
        };
        if !self.scopes.allows(request.operation) {
            return self.reply(rejected(ErrorCode::ScopeDenied, None)).await;
        }
        let Ok(batch) = surge_core::decode(operation, request.body) else {
            // The decoder checked the size already; this is a second line of defence.
            let code = ErrorCode::RequestBodySizeMismatch;
            return self.reply(rejected(code, None)).await;
        };
        let admission = match self.admit(request_id) {
            Ok(admission) => admission,
            Err(Some(code)) => return self.reply(rejected(code, None)).await,
            Err(None) => return self.reply(busy(None)).await,
        };
        TcpMetrics::add(&metrics.commands, u64::from(request.count));
        let completions = self.completions.clone();
        let on_engine_failure = self.shared.on_engine_failure.clone();
        let done = Box::new(move |result: Result<Vec<ResultCode>, EngineError>| {
            let reply = match result {
                Ok(codes) => Outgoing::Codes {
                    request_id,
                    operation,
                    codes,
                    admission,
                },
                Err(error) if error.is_busy() => busy(Some(admission)),
                Err(error) => {
                    on_engine_failure(&error);
                    rejected(ErrorCode::EngineFailed, Some(admission))
                }
            };
            // The writer may be gone (the client vanished): the reply and its admission
            // are dropped here. The batch is durable anyway.
            let _ = completions.send(reply);
        });
        if let Err(error) = self.shared.engine.submit(batch.as_batch(), done) {
            // `done` was dropped unrun, and the admission with it.
            if error.is_busy() {
                self.reply(busy(None)).await;
            } else {
                (self.shared.on_engine_failure)(&error);
                self.reply(rejected(ErrorCode::EngineFailed, None)).await;
            }
        }
    }

    /// A lookup: checked like a request (scope, limits, id), then read on the blocking
    /// pool, which hands the entries to the writer. It never reaches the log.
    async fn handle_lookup(&self, lookup: Lookup<'_>) {
        let metrics = &self.shared.metrics;
        TcpMetrics::add(&metrics.lookups, 1);
        let (request_id, operation) = (lookup.request_id, lookup.operation);
        let rejected = move |code, admission| Outgoing::Rejected {
            request_id,
            operation: operation as u8,
            code,
            answer: Answer::LookupReply,
            admission,
        };
        if !self.scopes.allows_lookups() {
            return self.reply(rejected(ErrorCode::ScopeDenied, None)).await;
        }
        let admission = match self.admit(request_id) {
            Ok(admission) => admission,
            Err(Some(code)) => return self.reply(rejected(code, None)).await,
            Err(None) => {
                let busy = Outgoing::Busy {
                    request_id,
                    operation: operation as u8,
                    answer: Answer::LookupReply,
                    admission: None,
                };
                return self.reply(busy).await;
            }
        };
        TcpMetrics::add(&metrics.lookup_ids, u64::from(lookup.count));
        // The ids leave the read buffer: the next frames are read while this one is served.
        let ids: Vec<u128> = lookup.ids().collect();
        let ids_count = lookup.count;
        let engine = self.shared.engine.clone();
        let completions = self.completions.clone();
        tokio::task::spawn_blocking(move || {
            let reply = match lookup::read(&engine, operation, ids.into_iter()) {
                Ok(entries) => Outgoing::Found {
                    request_id,
                    operation,
                    ids_count,
                    entries,
                    admission,
                },
                Err(_) => rejected(ErrorCode::EngineFailed, Some(admission)),
            };
            // The writer may be gone (the client vanished): reply and admission drop here.
            let _ = completions.send(reply);
        });
    }

    /// Takes a slot under both in-flight limits and registers the id. `Err(None)`: a
    /// limit is reached (busy); `Err(Some(code))`: refused.
    fn admit(&self, request_id: u64) -> Result<Admission, Option<ErrorCode>> {
        let connection = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| None)?;
        let total = self
            .shared
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| None)?;
        let Ok(mut ids) = self.request_ids.lock() else {
            return Err(Some(ErrorCode::EngineFailed));
        };
        if !ids.insert(request_id) {
            return Err(Some(ErrorCode::RequestIdInFlight));
        }
        drop(ids);
        TcpMetrics::add(&self.shared.metrics.requests_in_flight, 1);
        Ok(Admission {
            request_id,
            request_ids: self.request_ids.clone(),
            metrics: self.shared.metrics.clone(),
            _connection: connection,
            _total: total,
        })
    }
}
