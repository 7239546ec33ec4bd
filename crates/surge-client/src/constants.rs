//! Defaults of the client's configuration and its fixed limits, with their units.

use std::time::Duration;

/// Default time a call may take, retries included, before it fails with `Timeout`.
pub const CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Default time to connect and handshake, per attempt.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Default time without any frame from the server, while requests are in flight, after
/// which the connection is taken for dead (and replaced, and the requests resent).
pub const LIVENESS_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Default most requests in flight on the connection (the server's `Welcome` may lower
/// it). A few suffice: while they are in flight, new calls pack into the next request.
pub const REQUESTS_IN_FLIGHT_MAX_DEFAULT: usize = 4;

/// First wait after a `busy` reply; doubled per busy reply in a row.
pub const BUSY_BACKOFF_MIN: Duration = Duration::from_millis(1);

/// Pause before sending again a call some of whose commands got a transient code (`busy`
/// for their shard, or an earlier step still travelling between shards, which settles in a
/// few log syncs).
pub const TRANSIENT_RETRY_INTERVAL: Duration = Duration::from_millis(2);

/// Longest wait after `busy` replies.
pub const BUSY_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// First wait before reconnecting after a failed attempt; doubled per failure in a row.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest wait between reconnection attempts.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How often the driver looks for calls past their deadline and for a dead connection
/// while something is pending.
pub const DEADLINE_CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// Calls queued from callers to the driver task before a caller waits.
pub const CALLS_QUEUED_MAX: usize = 65_536;

/// Bytes asked of the socket per read, at least.
pub const READ_CHUNK_SIZE_BYTES: usize = 64 * 1024;

const _: () = assert!(BUSY_BACKOFF_MIN.as_nanos() <= BUSY_BACKOFF_MAX.as_nanos());
const _: () = assert!(RECONNECT_BACKOFF_MIN.as_nanos() <= RECONNECT_BACKOFF_MAX.as_nanos());
const _: () = assert!(REQUESTS_IN_FLIGHT_MAX_DEFAULT >= 1);
