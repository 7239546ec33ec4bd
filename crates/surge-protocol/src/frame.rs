//! Frames as values, and their encoding. Each kind fixes which header fields it uses and
//! what its body holds (see `docs/PROTOCOL.md`); a field a kind does not use is zero.
//!
//! Encoding appends to a caller-owned `Vec<u8>`, so a connection reuses one write buffer.

use surge_core::{Batch, Operation, ResultCode};

use crate::constants::{CLIENT_ID_SIZE_BYTES, HEADER_SIZE_BYTES, MESSAGE_SIZE_BYTES_MAX};
use crate::constants::{RESULT_CODE_SIZE_BYTES, WELCOME_BODY_SIZE_BYTES};
use crate::error_code::ErrorCode;
use crate::header::{checksum, FrameKind, Header};
use crate::lookup::{encode_lookup, Lookup, LookupReply};
use crate::scopes::Scopes;

/// Client → server, the first frame: who the client is and its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The client's id (chosen by the client; logged, not trusted).
    pub client_id: u128,
    /// The secret token, at most `TOKEN_SIZE_BYTES_MAX` bytes.
    pub token: &'a [u8],
}

/// Server → client: the handshake succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// What the token may do.
    pub scopes: Scopes,
    /// Largest frame body the server accepts, in bytes.
    pub frame_body_size_bytes_max: u32,
    /// Most requests one connection may have in flight; past it, replies are `busy`.
    pub requests_in_flight_max: u32,
    /// Most commands in one request.
    pub request_commands_max: u32,
    /// The server closes a connection with nothing in flight and nothing received for
    /// this long, in milliseconds.
    pub idle_timeout_ms: u32,
}

/// A code and a human-readable message: a `HandshakeError` or an `Error` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The request this is about, or 0.
    pub request_id: u64,
    /// What went wrong.
    pub code: ErrorCode,
    /// Details for a human, at most `MESSAGE_SIZE_BYTES_MAX` bytes of UTF-8.
    pub message: &'a str,
}

/// Client → server: commands of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Chosen by the client, unique among its requests in flight; the reply carries it.
    pub request_id: u64,
    /// The operation of every command (1..=11, 19).
    pub operation: Operation,
    /// Number of commands (1..=8,190).
    pub count: u32,
    /// `count × record size` bytes: the records back to back.
    pub body: &'a [u8],
}

/// The outcome of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus<'a> {
    /// Status 0: the commands were logged durably and applied; one code per command.
    Ok(ResultCodes<'a>),
    /// Status 1: not admitted (a limit was reached); nothing happened. Retry with backoff.
    Busy,
    /// Status 2: refused before reaching the engine, for the reason given; nothing
    /// happened (except for `engine_failed`, whose outcome is unknown).
    Rejected(ErrorCode),
}

/// Reply status numbers on the wire.
pub(crate) mod status {
    pub const OK: u8 = 0;
    pub const BUSY: u8 = 1;
    pub const REJECTED: u8 = 2;
}

/// Server → client: the outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The request's id.
    pub request_id: u64,
    /// The request's operation byte, echoed.
    pub operation: u8,
    /// What happened.
    pub status: ReplyStatus<'a>,
}

/// The result codes of a reply: `count` little-endian u32s, one per command, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultCodes<'a> {
    bytes: &'a [u8],
}

impl<'a> ResultCodes<'a> {
    /// Codes over `bytes`; the length must be a multiple of 4 (the decoder checked it).
    pub(crate) fn new(bytes: &'a [u8]) -> ResultCodes<'a> {
        ResultCodes { bytes }
    }

    /// Number of codes.
    pub fn len(&self) -> usize {
        self.bytes.len() / RESULT_CODE_SIZE_BYTES
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The codes as numbers (a newer server may send numbers this crate does not know).
    pub fn numbers(&self) -> impl Iterator<Item = u32> + 'a {
        self.bytes
            .chunks_exact(RESULT_CODE_SIZE_BYTES)
            .map(|code| u32::from_le_bytes([code[0], code[1], code[2], code[3]]))
    }

    /// The codes, or the first number that is no known `ResultCode`.
    pub fn to_vec(&self) -> Result<Vec<ResultCode>, u32> {
        self.numbers()
            .map(|number| ResultCode::from_u32(number).ok_or(number))
            .collect()
    }
}

/// One frame, borrowing its body from the buffer it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// See [`Hello`].
    Hello(Hello<'a>),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// The handshake failed; the server closes the connection after it.
    HandshakeError(Message<'a>),
    /// See [`Request`].
    Request(Request<'a>),
    /// See [`Reply`].
    Reply(Reply<'a>),
    /// A connection-level error; the server closes the connection after it.
    Error(Message<'a>),
    /// A liveness probe.
    Ping {
        /// Echoed in the `Pong`.
        request_id: u64,
    },
    /// The answer to a `Ping`.
    Pong {
        /// The `Ping`'s id.
        request_id: u64,
    },
    /// See [`Lookup`].
    Lookup(Lookup<'a>),
    /// See [`LookupReply`].
    LookupReply(LookupReply<'a>),
}

impl Frame<'_> {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::Welcome(_) => FrameKind::Welcome,
            Frame::HandshakeError(_) => FrameKind::HandshakeError,
            Frame::Request(_) => FrameKind::Request,
            Frame::Reply(_) => FrameKind::Reply,
            Frame::Error(_) => FrameKind::Error,
            Frame::Ping { .. } => FrameKind::Ping,
            Frame::Pong { .. } => FrameKind::Pong,
            Frame::Lookup(_) => FrameKind::Lookup,
            Frame::LookupReply(_) => FrameKind::LookupReply,
        }
    }

    /// Appends the frame's bytes to `out`. A message longer than `MESSAGE_SIZE_BYTES_MAX`
    /// is cut at a character boundary, so every encoded frame decodes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut header = Header {
            kind: self.kind() as u8,
            ..Header::default()
        };
        match self {
            Frame::Hello(hello) => {
                encode_frame(out, header, &[&hello.client_id.to_le_bytes(), hello.token]);
            }
            Frame::Welcome(welcome) => encode_frame(out, header, &[&welcome_body(welcome)]),
            Frame::HandshakeError(message) | Frame::Error(message) => {
                header.request_id = message.request_id;
                header.code = message.code as u16;
                encode_frame(out, header, &[truncated(message.message).as_bytes()]);
            }
            Frame::Request(request) => {
                encode_request(
                    out,
                    request.request_id,
                    request.operation,
                    request.count,
                    &[request.body],
                );
            }
            Frame::Reply(reply) => {
                header.request_id = reply.request_id;
                header.operation = reply.operation;
                match reply.status {
                    ReplyStatus::Ok(codes) => {
                        header.count = codes.len() as u32;
                        encode_frame(out, header, &[codes.bytes]);
                    }
                    ReplyStatus::Busy => {
                        header.status = status::BUSY;
                        encode_frame(out, header, &[]);
                    }
                    ReplyStatus::Rejected(code) => {
                        header.status = status::REJECTED;
                        header.code = code as u16;
                        encode_frame(out, header, &[]);
                    }
                }
            }
            Frame::Ping { request_id } | Frame::Pong { request_id } => {
                header.request_id = *request_id;
                encode_frame(out, header, &[]);
            }
            Frame::Lookup(lookup) => encode_lookup(
                out,
                lookup.request_id,
                lookup.operation,
                lookup.count,
                lookup.ids,
            ),
            Frame::LookupReply(reply) => crate::lookup::encode_reply(out, reply),
        }
    }
}

fn welcome_body(welcome: &Welcome) -> [u8; WELCOME_BODY_SIZE_BYTES] {
    let mut body = [0; WELCOME_BODY_SIZE_BYTES];
    let fields = [
        welcome.scopes.bits(),
        welcome.frame_body_size_bytes_max,
        welcome.requests_in_flight_max,
        welcome.request_commands_max,
        welcome.idle_timeout_ms,
        0,
    ];
    for (chunk, field) in body.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_le_bytes());
    }
    body
}

fn truncated(message: &str) -> &str {
    if message.len() <= MESSAGE_SIZE_BYTES_MAX {
        return message;
    }
    let mut end = MESSAGE_SIZE_BYTES_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// Appends a frame with `header` (kind and kind-specific fields set) and the
/// concatenation of `parts` as its body; fills in body size and checksum.
pub(crate) fn encode_frame(out: &mut Vec<u8>, header: Header, parts: &[&[u8]]) {
    encode_frame_with(out, header, |out| {
        for part in parts {
            out.extend_from_slice(part);
        }
    });
}

/// Appends a frame with `header` and the body `write_body` appends; fills in body size and
/// checksum afterwards, so a body is written once, straight into `out`.
fn encode_frame_with(out: &mut Vec<u8>, mut header: Header, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_SIZE_BYTES]);
    write_body(out);
    let body_size = out.len() - start - HEADER_SIZE_BYTES;
    header.body_size = u32::try_from(body_size).expect("frame bodies are bounded far below u32");
    header.checksum = 0;
    let header_bytes = header.write();
    header.checksum = checksum(&header_bytes, &out[start + HEADER_SIZE_BYTES..]);
    out[start..start + HEADER_SIZE_BYTES].copy_from_slice(&header.write());
}

/// Appends a `Request` whose body is the concatenation of `parts` (the records of several
/// callers, packed into one request by a client). The caller keeps `count × record size`
/// equal to the parts' total size; the server refuses the request otherwise.
pub fn encode_request(
    out: &mut Vec<u8>,
    request_id: u64,
    operation: Operation,
    count: u32,
    parts: &[&[u8]],
) {
    let header = Header {
        kind: FrameKind::Request as u8,
        request_id,
        operation: operation as u8,
        count,
        ..Header::default()
    };
    encode_frame(out, header, parts);
}

/// Appends a `Request` carrying `batch`.
pub fn encode_batch(out: &mut Vec<u8>, request_id: u64, batch: Batch<'_>) {
    let count = u32::try_from(batch.len()).expect("batches are bounded far below u32");
    encode_request(out, request_id, batch.operation(), count, &[batch.body()]);
}

/// Appends an `ok` `Reply` carrying `codes`.
pub fn encode_reply_codes(out: &mut Vec<u8>, request_id: u64, operation: u8, codes: &[ResultCode]) {
    let header = Header {
        kind: FrameKind::Reply as u8,
        request_id,
        operation,
        count: u32::try_from(codes.len()).expect("replies are bounded far below u32"),
        ..Header::default()
    };
    encode_frame_with(out, header, |out| {
        out.reserve(codes.len() * RESULT_CODE_SIZE_BYTES);
        for code in codes {
            out.extend_from_slice(&(*code as u32).to_le_bytes());
        }
    });
}

const _: () = assert!(CLIENT_ID_SIZE_BYTES == std::mem::size_of::<u128>());
