//! Error codes of the protocol: why a request was rejected (in a `Reply`), why a handshake
//! failed (`HandshakeError`) or why the server closes a connection (`Error`). Business
//! outcomes of commands are `surge_core::ResultCode`s, never these.
//!
//! The numbers are stable: a number is never reused or renumbered. `docs/PROTOCOL.md`
//! lists every code; a test checks that it does.

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $label:literal, $meaning:literal;)*) => {
        /// Why a frame, a request or a handshake was refused. `#[repr(u16)]`, stable.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code for a number read from the wire, if it is one.
            pub const fn from_u16(value: u16) -> Option<ErrorCode> {
                match value {
                    $($value => Some(ErrorCode::$name),)*
                    _ => None,
                }
            }

            /// The code's snake_case name, as in the documentation.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $label,)*
                }
            }

            /// What the code means and what to do about it.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $meaning,)*
                }
            }
        }
    };
}

error_codes! {
    // --- 1..19: the connection (an `Error` frame, then the server closes) ---
    /// The frame does not start with the magic bytes.
    BadMagic = 1, "bad_magic",
        "The frame does not start with `SRGP`: not Surge's protocol, or the stream lost sync.";
    /// The frame's protocol version is not the server's.
    UnsupportedVersion = 2, "unsupported_version",
        "The frame's protocol version is not one this peer speaks. Upgrade the client.";
    /// The crc32c of the header and body does not match.
    BadChecksum = 3, "bad_checksum",
        "The frame's crc32c does not match its header and body: damaged in transit.";
    /// The declared body is larger than the announced limit.
    FrameTooLarge = 4, "frame_too_large",
        "The declared body size is over the limit the server announced in `Welcome`.";
    /// The frame kind is not defined.
    UnknownKind = 5, "unknown_kind", "The frame kind is not defined in this version.";
    /// A flag or reserved header field is not zero.
    ReservedNotZero = 6, "reserved_not_zero",
        "A flag, reserved field or unused header field is not zero, or a field holds an \
         undefined value (a scope bit, a reply status, an error code).";
    /// A handshake, message or ping frame has a body of the wrong size.
    BodySizeInvalid = 7, "body_size_invalid",
        "A frame's body has the wrong size for its kind (a token or message too long, ...).";
    /// A message is not UTF-8.
    MessageNotUtf8 = 8, "message_not_utf8", "An error message is not valid UTF-8.";
    /// The frame kind is not allowed here (a request before the handshake, a second hello).
    UnexpectedFrame = 9, "unexpected_frame",
        "This kind of frame is not allowed in this direction or at this point of the \
         connection (a request before `Welcome`, a second `Hello`, a `Reply` from a client).";
    /// No `Hello` arrived in time.
    HandshakeTimeout = 10, "handshake_timeout",
        "No complete `Hello` arrived within the handshake timeout.";
    /// Nothing arrived and nothing was in flight for the idle timeout.
    IdleTimeout = 11, "idle_timeout",
        "No frame arrived and no request was in flight for the idle timeout. Reconnect; \
         send `Ping` to keep an idle connection open.";
    /// The server is shutting down.
    ShuttingDown = 12, "shutting_down",
        "The server is shutting down; every admitted request was answered. Reconnect later.";
    /// The server holds its maximum number of connections.
    TooManyConnections = 13, "too_many_connections",
        "The server holds its maximum number of connections. Retry later with backoff.";
    // --- 20..29: the handshake (`HandshakeError`, then the server closes) ---
    /// The token is missing, wrong or revoked.
    Unauthorized = 20, "unauthorized",
        "The token is missing, wrong or revoked. Nothing else is said.";
    // --- 30..49: one request or lookup (a `Reply` or `LookupReply` with status
    // `rejected`; the connection goes on) ---
    /// The operation byte names no operation.
    UnknownOperation = 30, "unknown_operation",
        "The operation byte names no operation (client operations are 1..=11 and 19; lookup \
         operations 1..=4).";
    /// The operation exists but clients may not send it (the engine's own).
    OperationNotAllowed = 31, "operation_not_allowed",
        "The operation is the engine's own (0 `pulse`, 12..=14 the legs of cross-shard \
         transfers, 15..=18 the steps of orders spanning shards); clients never send it.";
    /// The connection's scopes do not allow the operation.
    ScopeDenied = 32, "scope_denied",
        "The token's scopes do not allow this operation (see the scope table); lookups \
         need `read`.";
    /// A request with no commands.
    NoCommands = 33, "no_commands", "A request must carry at least one command.";
    /// More commands than the limit.
    TooManyCommands = 34, "too_many_commands",
        "More than 8,190 commands (or the server's announced limit) in one request.";
    /// The body is not `count × record size` bytes.
    RequestBodySizeMismatch = 35, "request_body_size_mismatch",
        "The body size is not the command count times the operation's record size.";
    /// The request id is already in flight on this connection.
    RequestIdInFlight = 36, "request_id_in_flight",
        "Another request with this id is still in flight on this connection; replies \
         are matched by id, so ids must be unique among requests in flight.";
    /// A reserved field of the request header is not zero.
    RequestReservedNotZero = 37, "request_reserved_not_zero",
        "The request's or lookup's `status`, `code` or `flags` field is not zero.";
    /// More ids in one lookup than the limit.
    TooManyIds = 38, "too_many_ids", "More than 4,096 ids in one lookup.";
    /// A lookup with no ids, or a body that is not `count × id size`.
    LookupBodyInvalid = 39, "lookup_body_invalid",
        "A lookup carries no ids, or its body size is not the id count times the \
         operation's id size (16 bytes; 8 for SKUs).";
    /// The engine failed (its log stopped); the outcome of the commands is unknown.
    EngineFailed = 40, "engine_failed",
        "The engine failed (its log stopped after an I/O error). The commands may or may not \
         have taken effect: retry them with the same ids against a healthy server. (A lookup: \
         a record could not be read; nothing changed.)";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_are_increasing() {
        for pair in ErrorCode::ALL.windows(2) {
            assert!((pair[0] as u16) < (pair[1] as u16));
        }
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }
}
