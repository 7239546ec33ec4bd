//! One connection, start to end: the handshake (a `Hello` within the timeout, checked by
//! the [`Authenticator`](crate::Authenticator)), then the session (requests in, replies
//! out), then an orderly close: every admitted request answered, the closing `Error`
//! written, what the client still sends drained for a moment.

use std::sync::Arc;

use surge_protocol::constants::REQUEST_COMMANDS_MAX;
use surge_protocol::{ErrorCode, Frame, FrameDecoder, Message, Scopes, Welcome};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::constants::WRITER_QUEUE_FRAMES_MAX;
use crate::metrics::TcpMetrics;
use crate::reader::FrameReader;
use crate::server::Shared;
use crate::session::Session;
use crate::writer::{self, WriterInputs};

/// Serves one accepted connection until it closes. `_connection` is its slot under
/// `connections_max`, released when this returns.
pub(crate) async fn run(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _connection: OwnedSemaphorePermit,
) {
    let metrics = shared.metrics.clone();
    TcpMetrics::add(&metrics.connections_accepted, 1);
    TcpMetrics::add(&metrics.connections_open, 1);
    // Replies are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let decoder = FrameDecoder::new(shared.limits.frame_body_size_bytes_max);
    let mut reader = FrameReader::new(read, decoder);
    match handshake(&mut reader, &shared, &mut shutdown).await {
        Ok(scopes) => {
            let welcome = welcome(&shared, scopes);
            if write_frame(&mut write, &shared, welcome).await {
                serve_session(reader, write, &shared, scopes, shutdown).await;
            }
        }
        Err((code, message)) => {
            TcpMetrics::add(&metrics.handshake_failures, 1);
            let refusal = Frame::HandshakeError(Message {
                request_id: 0,
                code,
                message: &message,
            });
            if write_frame(&mut write, &shared, refusal).await {
                let _ = write.shutdown().await;
                reader.drain().await;
            }
        }
    }
    TcpMetrics::decrement(&metrics.connections_open);
}

fn welcome(shared: &Shared, scopes: Scopes) -> Frame<'static> {
    let limits = &shared.limits;
    let as_u32 = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
    Frame::Welcome(Welcome {
        scopes,
        frame_body_size_bytes_max: as_u32(limits.frame_body_size_bytes_max),
        requests_in_flight_max: as_u32(limits.requests_in_flight_per_connection_max),
        request_commands_max: as_u32(REQUEST_COMMANDS_MAX),
        idle_timeout_ms: u32::try_from(limits.idle_timeout.as_millis()).unwrap_or(u32::MAX),
    })
}

/// Writes one frame within the write timeout; false if that failed.
async fn write_frame(write: &mut OwnedWriteHalf, shared: &Shared, frame: Frame<'_>) -> bool {
    let mut bytes = Vec::new();
    frame.encode(&mut bytes);
    let written = tokio::time::timeout(shared.limits.write_timeout, write.write_all(&bytes)).await;
    matches!(written, Ok(Ok(())))
}

/// Waits for the `Hello` and authenticates it: the granted scopes, or why not.
async fn handshake(
    reader: &mut FrameReader,
    shared: &Shared,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Scopes, (ErrorCode, String)> {
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    loop {
        match reader.decode() {
            Ok(Some((Frame::Hello(hello), size))) => {
                let scopes = shared.auth.authenticate(hello.client_id, hello.token);
                reader.consume(size);
                return scopes.ok_or((ErrorCode::Unauthorized, "unauthorized".to_string()));
            }
            Ok(Some((frame, _))) => {
                let message = format!("{:?} frame before Hello", frame.kind());
                return Err((ErrorCode::UnexpectedFrame, message));
            }
            Err(error) => return Err((error.code(), error.to_string())),
            Ok(None) => {}
        }
        if *shutdown.borrow_and_update() {
            return Err((ErrorCode::ShuttingDown, "shutting down".to_string()));
        }
        tokio::select! {
            read = reader.fill() => match read {
                Ok(0) | Err(_) => {
                    return Err((ErrorCode::UnexpectedFrame, "closed before Hello".to_string()))
                }
                Ok(_) => {}
            },
            () = tokio::time::sleep_until(deadline) => {
                return Err((ErrorCode::HandshakeTimeout, "no Hello in time".to_string()));
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// After `Welcome`: the reader runs here, the writer in its own task; when the reader
/// stops, the writer finishes every in-flight reply and the closing frame.
async fn serve_session(
    mut reader: FrameReader,
    write: OwnedWriteHalf,
    shared: &Arc<Shared>,
    scopes: Scopes,
    shutdown: watch::Receiver<bool>,
) {
    let (immediate_sender, immediate) = mpsc::channel(WRITER_QUEUE_FRAMES_MAX);
    let (completion_sender, completions) = mpsc::unbounded_channel();
    let inputs = WriterInputs {
        immediate,
        completions,
    };
    let writer = tokio::spawn(writer::run(
        write,
        inputs,
        shared.metrics.clone(),
        shared.limits.write_timeout,
    ));
    let session = Session::new(shared.clone(), scopes, immediate_sender, completion_sender);
    session.run(&mut reader, shutdown).await;
    // The session dropped its senders: the writer ends once every completion ran.
    let _ = writer.await;
    reader.drain().await;
}
