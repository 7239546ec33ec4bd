//! One connection to the server: connect, handshake, and a reader task that turns the
//! server's frames into [`Incoming`] events for the driver.

use surge_core::ResultCode;
use surge_protocol::{ErrorCode, Frame, FrameDecoder, Hello, LookupStatus, ReplyStatus, Welcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::ClientConfig;
use crate::constants::READ_CHUNK_SIZE_BYTES;

/// What a request came back with.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// One code per command (or the first number this client does not know).
    Codes(Result<Vec<ResultCode>, u32>),
    /// A lookup's entries.
    Found {
        operation: u8,
        ids_count: u32,
        entries: Vec<u8>,
    },
    /// Not admitted; retry later.
    Busy,
    /// Refused, with the reason.
    Rejected(ErrorCode),
}

/// An event from the reader task.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A reply to a request or a lookup.
    Reply { request_id: u64, outcome: Outcome },
    /// An answer to a ping, or anything else that proves the server alive.
    Alive,
    /// The connection ended (end of stream, a read error, an `Error` frame, or a frame
    /// a server never sends). Whatever the reason, the driver reconnects and resends.
    Closed,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The server answered `HandshakeError` with this code.
    Refused(ErrorCode),
    /// Anything else (no server, a timeout, a broken handshake).
    Failed(String),
}

/// A live, handshaken connection.
pub(crate) struct Connection {
    pub write: OwnedWriteHalf,
    pub incoming: mpsc::UnboundedReceiver<Incoming>,
    pub welcome: Welcome,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads frames from the front of a buffer filled from the socket.
struct FrameReader {
    read: OwnedReadHalf,
    buffer: Vec<u8>,
    decoder: FrameDecoder,
}

impl FrameReader {
    /// The next frame, handed to `handle` while it borrows the buffer. `Err` at end of
    /// stream, on a read error or on bytes that are not a frame.
    async fn next<T>(&mut self, handle: impl FnOnce(Frame<'_>) -> T) -> Result<T, String> {
        loop {
            match self.decoder.decode(&self.buffer) {
                Ok(Some((frame, size))) => {
                    let handled = handle(frame);
                    self.buffer.drain(..size);
                    return Ok(handled);
                }
                Ok(None) => {}
                Err(error) => return Err(format!("bad frame from the server: {error}")),
            }
            let wanted = match self.decoder.frame_size_needed(&self.buffer) {
                Ok(Some(size)) => size.saturating_sub(self.buffer.len()),
                _ => 0,
            };
            self.buffer.reserve(wanted.max(READ_CHUNK_SIZE_BYTES));
            match self.read.read_buf(&mut self.buffer).await {
                Ok(0) => return Err("the server closed the connection".to_string()),
                Ok(_) => {}
                Err(error) => return Err(format!("read failed: {error}")),
            }
        }
    }
}

/// Connects to `address`, handshakes, and starts the reader task.
pub(crate) async fn connect(
    address: &str,
    config: &ClientConfig,
) -> Result<Connection, ConnectError> {
    let attempt = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| ConnectError::Failed(format!("connect to {address}: {error}")))?;
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut hello = Vec::new();
        Frame::Hello(Hello {
            client_id: config.client_id,
            token: &config.token,
        })
        .encode(&mut hello);
        write
            .write_all(&hello)
            .await
            .map_err(|error| ConnectError::Failed(format!("send Hello: {error}")))?;
        let mut reader = FrameReader {
            read,
            buffer: Vec::with_capacity(READ_CHUNK_SIZE_BYTES),
            decoder: FrameDecoder::default(),
        };
        let answer = reader
            .next(|frame| match frame {
                Frame::Welcome(welcome) => Ok(welcome),
                Frame::HandshakeError(message) => Err(ConnectError::Refused(message.code)),
                other => Err(ConnectError::Failed(format!(
                    "{:?} instead of Welcome",
                    other.kind()
                ))),
            })
            .await
            .map_err(ConnectError::Failed)?;
        let welcome = answer?;
        let (sender, incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_frames(reader, sender));
        Ok(Connection {
            write,
            incoming,
            welcome,
            reader,
        })
    };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Failed("connect timed out".to_string())),
    }
}

fn incoming(frame: Frame<'_>) -> Incoming {
    match frame {
        Frame::Reply(reply) => Incoming::Reply {
            request_id: reply.request_id,
            outcome: match reply.status {
                ReplyStatus::Ok(codes) => Outcome::Codes(codes.to_vec()),
                ReplyStatus::Busy => Outcome::Busy,
                ReplyStatus::Rejected(code) => Outcome::Rejected(code),
            },
        },
        Frame::LookupReply(reply) => Incoming::Reply {
            request_id: reply.request_id,
            outcome: match reply.status {
                LookupStatus::Found(entries) => Outcome::Found {
                    operation: reply.operation,
                    ids_count: entries.ids_count(),
                    entries: entries.bytes().to_vec(),
                },
                LookupStatus::Busy => Outcome::Busy,
                LookupStatus::Rejected(code) => Outcome::Rejected(code),
            },
        },
        Frame::Pong { .. } | Frame::Ping { .. } => Incoming::Alive,
        // `Error` (the server closes after it) or a frame a server never sends.
        _ => Incoming::Closed,
    }
}

/// The reader task: forwards every frame until the connection ends. The channel is
/// unbounded, but the server sends one reply per request and the driver bounds requests.
async fn read_frames(mut reader: FrameReader, events: mpsc::UnboundedSender<Incoming>) {
    loop {
        let event = reader.next(incoming).await.unwrap_or(Incoming::Closed);
        let closed = matches!(event, Incoming::Closed);
        if events.send(event).is_err() || closed {
            return;
        }
    }
}
