//! Why a call has no result codes.

use surge_protocol::ErrorCode;
use thiserror::Error;

/// Why a call failed. Business outcomes (`exists`, `exceeds_credits`, ...) are never
/// errors: they are the `ResultCode`s of a successful call.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The deadline passed before a reply. The commands may or may not have taken effect:
    /// call again with the same records (same ids) to learn which (`ok` or `exists`).
    #[error("no reply before the deadline ({attempts} attempts)")]
    Timeout {
        /// Requests sent for the call (0: it never left the client).
        attempts: u32,
    },
    /// The server refused the handshake (a wrong or revoked token).
    #[error("handshake refused: {0}")]
    Handshake(ErrorCode),
    /// The server refused the request; nothing happened.
    #[error("request rejected: {0}")]
    Rejected(ErrorCode),
    /// More commands in one call than a request may carry.
    #[error("{count} commands in one call, more than the limit of {max}")]
    TooManyCommands {
        /// Commands in the call.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More ids in one lookup than a `Lookup` may carry (4,096, or fewer if the server
    /// announced a smaller frame limit).
    #[error("{count} ids in one lookup, more than the limit of {max}")]
    TooManyIds {
        /// Ids in the call.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The first connection failed (later failures are retried until the deadline).
    #[error("connecting failed: {0}")]
    Connect(String),
    /// The server sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The client was shut down.
    #[error("the client is closed")]
    Closed,
}
