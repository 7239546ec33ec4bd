//! The incremental frame decoder. It looks at the front of a byte buffer and says: not a
//! whole frame yet (`Ok(None)`), a frame and its size, or why the bytes are not a frame.
//! It never panics, never allocates, and never trusts a size before checking it against
//! its limit, so a reader can size its buffer from [`FrameDecoder::frame_size_needed`].
//!
//! Checks run in this order: magic (as soon as the bytes are there), version, body size
//! against the limit, then, once the whole frame is there, the checksum, the kind, and the
//! kind's fields and body. Errors found after the checksum in a `Request` (or a `Lookup`)
//! are [`FrameError::Request`] ([`FrameError::Lookup`]): the request id is trustworthy, the
//! frame's extent is known, so the server rejects that one request and the connection goes
//! on. Every other error is
//! fatal to the connection: the stream cannot be trusted past it.

use surge_core::Operation;
use thiserror::Error;

use crate::constants::WELCOME_BODY_SIZE_BYTES;
use crate::constants::{CLIENT_ID_SIZE_BYTES, FRAME_BODY_SIZE_BYTES_MAX, HEADER_SIZE_BYTES};
use crate::constants::{HELLO_BODY_SIZE_BYTES_MAX, MAGIC, MESSAGE_SIZE_BYTES_MAX};
use crate::constants::{PROTOCOL_VERSION, REQUEST_COMMANDS_MAX, RESULT_CODE_SIZE_BYTES};
use crate::error_code::ErrorCode;
use crate::frame::Welcome;
use crate::frame::{status, Frame, Hello, Message, Reply, ReplyStatus, Request, ResultCodes};
use crate::header::{checksum, offset, FrameKind, Header};
use crate::lookup::{decode_lookup, decode_lookup_reply, LookupError};
use crate::scopes::Scopes;

/// Why bytes are not a frame.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The first bytes are not `SRGP` (bytes not yet received read as zero).
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The protocol version is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {found} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The declared body size is over the decoder's limit.
    #[error("frame body of {body_size} bytes is over the limit of {max}")]
    TooLarge {
        /// The declared body size in bytes.
        body_size: u32,
        /// The limit in bytes.
        max: usize,
    },
    /// The checksum does not match the header and body.
    #[error("bad checksum: header says {declared:#010x}, bytes give {computed:#010x}")]
    BadChecksum {
        /// The checksum in the header.
        declared: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// The kind byte names no frame kind.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The byte found.
        kind: u8,
    },
    /// A flag, reserved or unused field is not zero, or holds an undefined value.
    #[error("{kind:?} frame: field `{field}` holds {value}, which is not allowed")]
    FieldInvalid {
        /// The frame's kind.
        kind: FrameKind,
        /// The field's name.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The body has the wrong size for the frame's kind.
    #[error("{kind:?} frame: body of {body_size} bytes is not allowed")]
    BodySizeInvalid {
        /// The frame's kind.
        kind: FrameKind,
        /// The body size in bytes.
        body_size: u32,
    },
    /// A message body is not UTF-8.
    #[error("{kind:?} frame: message is not UTF-8")]
    MessageNotUtf8 {
        /// The frame's kind.
        kind: FrameKind,
    },
    /// A well-formed `Request` frame that the server must refuse. Not fatal: the frame's
    /// bytes are skipped and the request gets a `rejected` reply.
    #[error("request {request_id}: {reason}")]
    Request {
        /// The request's id.
        request_id: u64,
        /// The operation byte, echoed in the reply.
        operation: u8,
        /// The whole frame's size in bytes, to skip it.
        frame_size_bytes: usize,
        /// Why it is refused.
        reason: RequestError,
    },
    /// A well-formed `Lookup` frame that the server must refuse. Not fatal: the frame's
    /// bytes are skipped and the lookup gets a `rejected` lookup reply.
    #[error("lookup {request_id}: {reason}")]
    Lookup {
        /// The lookup's id.
        request_id: u64,
        /// The operation byte, echoed in the reply.
        operation: u8,
        /// The whole frame's size in bytes, to skip it.
        frame_size_bytes: usize,
        /// Why it is refused.
        reason: LookupError,
    },
}

/// Why a checksummed `Request` frame is refused.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The operation byte names no operation.
    #[error("unknown operation {operation}")]
    UnknownOperation {
        /// The byte found.
        operation: u8,
    },
    /// The operation is the engine's own (a pulse, a cross-shard leg).
    #[error("operation {operation} may not be sent by clients")]
    OperationNotAllowed {
        /// The byte found.
        operation: u8,
    },
    /// A request must carry at least one command.
    #[error("no commands")]
    NoCommands,
    /// More commands than [`REQUEST_COMMANDS_MAX`].
    #[error("{count} commands is over the limit of {max}")]
    TooManyCommands {
        /// The declared count.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// The body is not `count × record size` bytes.
    #[error("body of {body_size} bytes is not {count} × {record_size} bytes")]
    BodySizeMismatch {
        /// The declared count.
        count: u32,
        /// The operation's record size in bytes.
        record_size: usize,
        /// The body size in bytes.
        body_size: u32,
    },
    /// `status`, `code` or `flags` is not zero.
    #[error("field `{field}` is not zero")]
    ReservedNotZero {
        /// The field's name.
        field: &'static str,
    },
}

impl FrameError {
    /// The code to send the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::BadMagic { .. } => ErrorCode::BadMagic,
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::BadChecksum { .. } => ErrorCode::BadChecksum,
            FrameError::UnknownKind { .. } => ErrorCode::UnknownKind,
            FrameError::FieldInvalid { .. } => ErrorCode::ReservedNotZero,
            FrameError::BodySizeInvalid { .. } => ErrorCode::BodySizeInvalid,
            FrameError::MessageNotUtf8 { .. } => ErrorCode::MessageNotUtf8,
            FrameError::Request { reason, .. } => reason.code(),
            FrameError::Lookup { reason, .. } => reason.code(),
        }
    }

    /// Whether the connection must close: every error but [`FrameError::Request`] and
    /// [`FrameError::Lookup`].
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FrameError::Request { .. } | FrameError::Lookup { .. })
    }
}

impl RequestError {
    /// The code to send in the `rejected` reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::UnknownOperation { .. } => ErrorCode::UnknownOperation,
            RequestError::OperationNotAllowed { .. } => ErrorCode::OperationNotAllowed,
            RequestError::NoCommands => ErrorCode::NoCommands,
            RequestError::TooManyCommands { .. } => ErrorCode::TooManyCommands,
            RequestError::BodySizeMismatch { .. } => ErrorCode::RequestBodySizeMismatch,
            RequestError::ReservedNotZero { .. } => ErrorCode::RequestReservedNotZero,
        }
    }
}

/// Decodes frames from the front of a buffer, within a body size limit.
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    frame_body_size_bytes_max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(FRAME_BODY_SIZE_BYTES_MAX)
    }
}

impl FrameDecoder {
    /// A decoder refusing bodies over `frame_body_size_bytes_max` (at most the format's
    /// [`FRAME_BODY_SIZE_BYTES_MAX`]; a larger value is lowered to it).
    pub fn new(frame_body_size_bytes_max: usize) -> FrameDecoder {
        FrameDecoder {
            frame_body_size_bytes_max: frame_body_size_bytes_max.min(FRAME_BODY_SIZE_BYTES_MAX),
        }
    }

    /// The body size limit in bytes.
    pub fn frame_body_size_bytes_max(&self) -> usize {
        self.frame_body_size_bytes_max
    }

    /// The size of the frame at the front of `buffer` once its header is there (checked
    /// against the limit), `Ok(None)` before. A reader reserves this much and no more.
    pub fn frame_size_needed(&self, buffer: &[u8]) -> Result<Option<usize>, FrameError> {
        Ok(self
            .header(buffer)?
            .map(|header| HEADER_SIZE_BYTES + header.body_size as usize))
    }

    /// Decodes the frame at the front of `buffer`: `Ok(None)` if it is not all there yet,
    /// else the frame and its size in bytes (to consume).
    pub fn decode<'a>(&self, buffer: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, FrameError> {
        let Some(header) = self.header(buffer)? else {
            return Ok(None);
        };
        let frame_size = HEADER_SIZE_BYTES + header.body_size as usize;
        let Some(frame) = buffer.get(..frame_size) else {
            return Ok(None);
        };
        let mut header_bytes = [0; HEADER_SIZE_BYTES];
        header_bytes.copy_from_slice(&frame[..HEADER_SIZE_BYTES]);
        let body = &frame[HEADER_SIZE_BYTES..];
        let computed = checksum(&header_bytes, body);
        if computed != header.checksum {
            return Err(FrameError::BadChecksum {
                declared: header.checksum,
                computed,
            });
        }
        let kind =
            FrameKind::from_u8(header.kind).ok_or(FrameError::UnknownKind { kind: header.kind })?;
        if header.flags != 0 {
            return Err(invalid(kind, "flags", header.flags.into()));
        }
        let frame = match kind {
            FrameKind::Hello => Frame::Hello(hello(&header, body)?),
            FrameKind::Welcome => Frame::Welcome(welcome(&header, body)?),
            FrameKind::HandshakeError => Frame::HandshakeError(message(kind, &header, body)?),
            FrameKind::Request => Frame::Request(request(&header, body, frame_size)?),
            FrameKind::Reply => Frame::Reply(reply(&header, body)?),
            FrameKind::Error => Frame::Error(message(kind, &header, body)?),
            FrameKind::Ping => Frame::Ping {
                request_id: empty(kind, &header, body)?,
            },
            FrameKind::Pong => Frame::Pong {
                request_id: empty(kind, &header, body)?,
            },
            FrameKind::Lookup => Frame::Lookup(decode_lookup(&header, body, frame_size)?),
            FrameKind::LookupReply => Frame::LookupReply(decode_lookup_reply(&header, body)?),
        };
        Ok(Some((frame, frame_size)))
    }

    /// The header at the front of `buffer`, checked up to the body size; `Ok(None)` while
    /// fewer than [`HEADER_SIZE_BYTES`] bytes are there (but a wrong magic or version is
    /// reported as soon as its bytes are).
    fn header(&self, buffer: &[u8]) -> Result<Option<Header>, FrameError> {
        let magic_seen = buffer.len().min(MAGIC.len());
        if buffer[..magic_seen] != MAGIC[..magic_seen] {
            let mut found = [0; 4];
            found[..magic_seen].copy_from_slice(&buffer[..magic_seen]);
            return Err(FrameError::BadMagic { found });
        }
        if let Some(version) = buffer.get(offset::VERSION..offset::VERSION + 2) {
            let found = u16::from_le_bytes([version[0], version[1]]);
            if found != PROTOCOL_VERSION {
                return Err(FrameError::UnsupportedVersion { found });
            }
        }
        let Some(bytes) = buffer.get(..HEADER_SIZE_BYTES) else {
            return Ok(None);
        };
        let mut header_bytes = [0; HEADER_SIZE_BYTES];
        header_bytes.copy_from_slice(bytes);
        let header = Header::read(&header_bytes);
        if header.body_size as usize > self.frame_body_size_bytes_max {
            return Err(FrameError::TooLarge {
                body_size: header.body_size,
                max: self.frame_body_size_bytes_max,
            });
        }
        Ok(Some(header))
    }
}

pub(crate) fn invalid(kind: FrameKind, field: &'static str, value: u64) -> FrameError {
    FrameError::FieldInvalid { kind, field, value }
}

/// A header field a kind may leave unused, by name.
#[derive(Clone, Copy)]
pub(crate) enum Field {
    RequestId,
    Operation,
    Status,
    Code,
    Count,
}

/// Checks that the header fields `kind` does not use are zero.
pub(crate) fn unused_zero(
    kind: FrameKind,
    header: &Header,
    fields: &[Field],
) -> Result<(), FrameError> {
    for &field in fields {
        let (name, value): (&'static str, u64) = match field {
            Field::RequestId => ("request_id", header.request_id),
            Field::Operation => ("operation", header.operation.into()),
            Field::Status => ("status", header.status.into()),
            Field::Code => ("code", header.code.into()),
            Field::Count => ("count", header.count.into()),
        };
        if value != 0 {
            return Err(invalid(kind, name, value));
        }
    }
    Ok(())
}

/// Every kind-specific field: handshake frames use none of them.
const HANDSHAKE_UNUSED: &[Field] = &[
    Field::RequestId,
    Field::Operation,
    Field::Status,
    Field::Code,
    Field::Count,
];

fn hello<'a>(header: &Header, body: &'a [u8]) -> Result<Hello<'a>, FrameError> {
    let kind = FrameKind::Hello;
    unused_zero(kind, header, HANDSHAKE_UNUSED)?;
    if body.len() < CLIENT_ID_SIZE_BYTES || body.len() > HELLO_BODY_SIZE_BYTES_MAX {
        return Err(FrameError::BodySizeInvalid {
            kind,
            body_size: header.body_size,
        });
    }
    let (client_id, token) = body.split_at(CLIENT_ID_SIZE_BYTES);
    let mut id = [0; CLIENT_ID_SIZE_BYTES];
    id.copy_from_slice(client_id);
    Ok(Hello {
        client_id: u128::from_le_bytes(id),
        token,
    })
}

fn welcome(header: &Header, body: &[u8]) -> Result<Welcome, FrameError> {
    let kind = FrameKind::Welcome;
    unused_zero(kind, header, HANDSHAKE_UNUSED)?;
    if body.len() != WELCOME_BODY_SIZE_BYTES {
        return Err(FrameError::BodySizeInvalid {
            kind,
            body_size: header.body_size,
        });
    }
    let mut fields = [0u32; WELCOME_BODY_SIZE_BYTES / 4];
    for (field, chunk) in fields.iter_mut().zip(body.chunks_exact(4)) {
        *field = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    let scopes = Scopes::from_bits(fields[0]).ok_or(invalid(kind, "scopes", fields[0].into()))?;
    if fields[5] != 0 {
        return Err(invalid(kind, "reserved", fields[5].into()));
    }
    Ok(Welcome {
        scopes,
        frame_body_size_bytes_max: fields[1],
        requests_in_flight_max: fields[2],
        request_commands_max: fields[3],
        idle_timeout_ms: fields[4],
    })
}

fn message<'a>(
    kind: FrameKind,
    header: &Header,
    body: &'a [u8],
) -> Result<Message<'a>, FrameError> {
    unused_zero(
        kind,
        header,
        &[Field::Operation, Field::Status, Field::Count],
    )?;
    let code = ErrorCode::from_u16(header.code).ok_or(invalid(kind, "code", header.code.into()))?;
    if body.len() > MESSAGE_SIZE_BYTES_MAX {
        return Err(FrameError::BodySizeInvalid {
            kind,
            body_size: header.body_size,
        });
    }
    let message = std::str::from_utf8(body).map_err(|_| FrameError::MessageNotUtf8 { kind })?;
    Ok(Message {
        request_id: header.request_id,
        code,
        message,
    })
}

fn empty(kind: FrameKind, header: &Header, body: &[u8]) -> Result<u64, FrameError> {
    unused_zero(
        kind,
        header,
        &[Field::Operation, Field::Status, Field::Code, Field::Count],
    )?;
    if !body.is_empty() {
        return Err(FrameError::BodySizeInvalid {
            kind,
            body_size: header.body_size,
        });
    }
    Ok(header.request_id)
}

fn request<'a>(
    header: &Header,
    body: &'a [u8],
    frame_size: usize,
) -> Result<Request<'a>, FrameError> {
    let refuse = |reason| FrameError::Request {
        request_id: header.request_id,
        operation: header.operation,
        frame_size_bytes: frame_size,
        reason,
    };
    if header.status != 0 {
        return Err(refuse(RequestError::ReservedNotZero { field: "status" }));
    }
    if header.code != 0 {
        return Err(refuse(RequestError::ReservedNotZero { field: "code" }));
    }
    let operation =
        Operation::from_u8(header.operation).ok_or(refuse(RequestError::UnknownOperation {
            operation: header.operation,
        }))?;
    if Scopes::required_for(operation).is_none() {
        return Err(refuse(RequestError::OperationNotAllowed {
            operation: header.operation,
        }));
    }
    if header.count == 0 {
        return Err(refuse(RequestError::NoCommands));
    }
    if header.count as usize > REQUEST_COMMANDS_MAX {
        return Err(refuse(RequestError::TooManyCommands {
            count: header.count,
            max: REQUEST_COMMANDS_MAX,
        }));
    }
    let record_size = operation.record_size_bytes();
    if header.count as usize * record_size != body.len() {
        return Err(refuse(RequestError::BodySizeMismatch {
            count: header.count,
            record_size,
            body_size: header.body_size,
        }));
    }
    Ok(Request {
        request_id: header.request_id,
        operation,
        count: header.count,
        body,
    })
}

fn reply<'a>(header: &Header, body: &'a [u8]) -> Result<Reply<'a>, FrameError> {
    let kind = FrameKind::Reply;
    let body_invalid = FrameError::BodySizeInvalid {
        kind,
        body_size: header.body_size,
    };
    let status = match header.status {
        status::OK => {
            unused_zero(kind, header, &[Field::Code])?;
            if header.count as usize > REQUEST_COMMANDS_MAX
                || header.count as usize * RESULT_CODE_SIZE_BYTES != body.len()
            {
                return Err(body_invalid);
            }
            ReplyStatus::Ok(ResultCodes::new(body))
        }
        status::BUSY => {
            unused_zero(kind, header, &[Field::Code, Field::Count])?;
            ReplyStatus::Busy
        }
        status::REJECTED => {
            unused_zero(kind, header, &[Field::Count])?;
            let code = ErrorCode::from_u16(header.code).ok_or(invalid(
                kind,
                "code",
                header.code.into(),
            ))?;
            ReplyStatus::Rejected(code)
        }
        other => return Err(invalid(kind, "status", other.into())),
    };
    if !matches!(status, ReplyStatus::Ok(_)) && !body.is_empty() {
        return Err(body_invalid);
    }
    Ok(Reply {
        request_id: header.request_id,
        operation: header.operation,
        status,
    })
}
