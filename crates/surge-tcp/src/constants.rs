//! Defaults of the server's limits, with their units. `TcpLimits::default()` uses them;
//! `surge serve` can override each one.

use std::time::Duration;

use surge_protocol::constants::{FRAME_BODY_SIZE_BYTES_MAX, HEADER_SIZE_BYTES};

/// Most open connections (handshaking or admitted).
pub const CONNECTIONS_MAX_DEFAULT: usize = 1_024;

/// Most requests one connection may have in the engine at once; past it, `busy`.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_DEFAULT: usize = 64;

/// Most requests all connections together may have in the engine at once; past it,
/// `busy`. Bounds the memory held by admitted requests to this many bodies.
pub const REQUESTS_IN_FLIGHT_MAX_DEFAULT: usize = 256;

/// Time a new connection has to send a whole `Hello`.
pub const HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// A connection that receives nothing and has nothing in flight for this long is closed.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// A write to a client that takes longer than this closes the connection (the client is
/// not reading its replies).
pub const WRITE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Bytes asked of the socket per read, at least: many small frames come in one read.
pub const READ_CHUNK_SIZE_BYTES: usize = 64 * 1024;

/// Frames queued from a connection's reader to its writer (pongs, `busy` and `rejected`
/// replies); the reader waits when the writer is this far behind.
pub const WRITER_QUEUE_FRAMES_MAX: usize = 256;

/// Bytes of encoded replies gathered before one socket write.
pub const WRITE_BATCH_SIZE_BYTES_MAX: usize = 256 * 1024;

// A whole header always fits one read chunk, so a frame's size is known after one read.
const _: () = assert!(HEADER_SIZE_BYTES <= READ_CHUNK_SIZE_BYTES);
// The read buffer never holds more than a frame plus a chunk: bounded per connection.
const _: () = assert!(FRAME_BODY_SIZE_BYTES_MAX + READ_CHUNK_SIZE_BYTES < 4 * 1024 * 1024);
const _: () =
    assert!(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_DEFAULT <= REQUESTS_IN_FLIGHT_MAX_DEFAULT);
