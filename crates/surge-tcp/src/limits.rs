//! The server's limits: connections, requests in flight, frame size and timeouts. Past a
//! limit the server answers (`busy`, `too_many_connections`, `frame_too_large`) instead of
//! queueing or growing.

use std::time::Duration;

use surge_protocol::constants::FRAME_BODY_SIZE_BYTES_MAX;

use crate::constants::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_DEFAULT;
use crate::constants::{CONNECTIONS_MAX_DEFAULT, HANDSHAKE_TIMEOUT_DEFAULT, IDLE_TIMEOUT_DEFAULT};
use crate::constants::{REQUESTS_IN_FLIGHT_MAX_DEFAULT, WRITE_TIMEOUT_DEFAULT};

/// Limits of one TCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Most open connections; one more gets `too_many_connections` and is closed.
    pub connections_max: usize,
    /// Most requests one connection may have in flight; past it, `busy` at once.
    pub requests_in_flight_per_connection_max: usize,
    /// Most requests in flight across all connections; past it, `busy` at once.
    pub requests_in_flight_max: usize,
    /// Largest request body accepted, in bytes (announced in `Welcome`); at most the
    /// format's `FRAME_BODY_SIZE_BYTES_MAX`.
    pub frame_body_size_bytes_max: usize,
    /// Time to send a whole `Hello` after connecting.
    pub handshake_timeout: Duration,
    /// Time without a frame and without requests in flight before a connection closes.
    pub idle_timeout: Duration,
    /// Longest a socket write may take before the connection is closed.
    pub write_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            requests_in_flight_per_connection_max: REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_DEFAULT,
            requests_in_flight_max: REQUESTS_IN_FLIGHT_MAX_DEFAULT,
            frame_body_size_bytes_max: FRAME_BODY_SIZE_BYTES_MAX,
            handshake_timeout: HANDSHAKE_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            write_timeout: WRITE_TIMEOUT_DEFAULT,
        }
    }
}

impl TcpLimits {
    /// The limits with every count at least 1 and the frame body at most the format's.
    pub(crate) fn normalized(&self) -> TcpLimits {
        TcpLimits {
            connections_max: self.connections_max.max(1),
            requests_in_flight_per_connection_max: self
                .requests_in_flight_per_connection_max
                .max(1),
            requests_in_flight_max: self.requests_in_flight_max.max(1),
            frame_body_size_bytes_max: self
                .frame_body_size_bytes_max
                .min(FRAME_BODY_SIZE_BYTES_MAX),
            ..self.clone()
        }
    }
}
