//! Lookups: a `Lookup` frame names up to [`LOOKUP_IDS_MAX`] ids of one kind of record
//! (accounts, transfers, SKUs, orders); its `LookupReply` carries a fixed 16-byte head and
//! one entry per id that was found, in the order of the ids. An id that was not found has no
//! entry: "not found" is absence, and every entry names its id, so a client matches entries
//! to ids in order.
//!
//! The entries themselves are in [`crate::entry`].

use surge_core::{Account, Sku};
use thiserror::Error;

use crate::constants::{LOOKUP_IDS_MAX, LOOKUP_ID_SIZE_BYTES_MAX, LOOKUP_REPLY_HEAD_SIZE_BYTES};
use crate::decoder::{invalid, unused_zero, Field, FrameError};
use crate::entry::{EntryError, LookupEntry, ORDER_ENTRY_SIZE_BYTES, TRANSFER_ENTRY_SIZE_BYTES};
use crate::error_code::ErrorCode;
use crate::frame::status;
use crate::header::{FrameKind, Header};
use crate::le::{u32_at, u64_at};

/// What a `Lookup` reads: the byte in its header's `operation` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum LookupOperation {
    /// Accounts by `AccountId` (16-byte ids); entries are `Account` records.
    Accounts = 1,
    /// Transfers by `TransferId` (16-byte ids); entries are a `Transfer` and its outcome.
    Transfers = 2,
    /// SKUs by `SkuId` (8-byte ids); entries are `Sku` records.
    Skus = 3,
    /// Orders by `OrderId` (16-byte ids); entries are an `Order` and its outcome.
    Orders = 4,
}

impl LookupOperation {
    /// Every lookup operation, in byte order.
    pub const ALL: &'static [LookupOperation] = &[
        LookupOperation::Accounts,
        LookupOperation::Transfers,
        LookupOperation::Skus,
        LookupOperation::Orders,
    ];

    /// The operation for a byte, if it is one.
    pub const fn from_u8(value: u8) -> Option<LookupOperation> {
        match value {
            1 => Some(LookupOperation::Accounts),
            2 => Some(LookupOperation::Transfers),
            3 => Some(LookupOperation::Skus),
            4 => Some(LookupOperation::Orders),
            _ => None,
        }
    }

    /// Size of one id in a `Lookup` body, in bytes: 16, or 8 for SKUs.
    pub const fn id_size_bytes(self) -> usize {
        match self {
            LookupOperation::Skus => 8,
            _ => LOOKUP_ID_SIZE_BYTES_MAX,
        }
    }

    /// Size of one entry in a `LookupReply`, in bytes.
    pub const fn entry_size_bytes(self) -> usize {
        match self {
            LookupOperation::Accounts => std::mem::size_of::<Account>(),
            LookupOperation::Skus => std::mem::size_of::<Sku>(),
            LookupOperation::Transfers => TRANSFER_ENTRY_SIZE_BYTES,
            LookupOperation::Orders => ORDER_ENTRY_SIZE_BYTES,
        }
    }

    /// The operation's name, as in the documentation.
    pub const fn name(self) -> &'static str {
        match self {
            LookupOperation::Accounts => "lookup_accounts",
            LookupOperation::Transfers => "lookup_transfers",
            LookupOperation::Skus => "lookup_skus",
            LookupOperation::Orders => "lookup_orders",
        }
    }
}

/// Client → server: ids to read, all of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// Chosen by the client, unique among its requests and lookups in flight.
    pub request_id: u64,
    /// What to read.
    pub operation: LookupOperation,
    /// Number of ids (1..=4,096).
    pub count: u32,
    /// `count × id size` bytes: little-endian ids back to back.
    pub ids: &'a [u8],
}

impl<'a> Lookup<'a> {
    /// The ids, widened to u128 (SKU ids are u64 on the wire).
    pub fn ids(&self) -> impl Iterator<Item = u128> + 'a {
        let size = self.operation.id_size_bytes();
        self.ids.chunks_exact(size).map(|chunk| {
            let mut id = [0; LOOKUP_ID_SIZE_BYTES_MAX];
            id[..chunk.len()].copy_from_slice(chunk);
            u128::from_le_bytes(id)
        })
    }
}

/// The entries of a found `LookupReply`: one per id found, in the order of the ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupEntries<'a> {
    operation: LookupOperation,
    ids_count: u32,
    bytes: &'a [u8],
}

impl<'a> LookupEntries<'a> {
    /// Entries over `bytes`, a whole number of `operation`'s entries (checked).
    pub fn new(
        operation: LookupOperation,
        ids_count: u32,
        bytes: &'a [u8],
    ) -> Option<LookupEntries<'a>> {
        let whole = bytes.len() % operation.entry_size_bytes() == 0;
        let found = bytes.len() / operation.entry_size_bytes();
        (whole && found <= ids_count as usize).then_some(LookupEntries {
            operation,
            ids_count,
            bytes,
        })
    }

    /// The operation the entries belong to.
    pub fn operation(&self) -> LookupOperation {
        self.operation
    }

    /// How many ids the lookup named (found or not).
    pub fn ids_count(&self) -> u32 {
        self.ids_count
    }

    /// How many were found: the number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.operation.entry_size_bytes()
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The entries' bytes, back to back.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entries, each decoded (an entry a newer server filled differently is an `Err`).
    pub fn iter(&self) -> impl Iterator<Item = Result<LookupEntry, EntryError>> + 'a {
        let operation = self.operation;
        self.bytes
            .chunks_exact(operation.entry_size_bytes())
            .map(move |entry| LookupEntry::decode(operation, entry))
    }
}

/// The outcome of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupStatus<'a> {
    /// Status 0: the records found (possibly none).
    Found(LookupEntries<'a>),
    /// Status 1: not admitted (an in-flight limit was reached). Retry with backoff.
    Busy,
    /// Status 2: refused, for the reason given.
    Rejected(ErrorCode),
}

/// Server → client: the answer to one `Lookup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupReply<'a> {
    /// The lookup's id.
    pub request_id: u64,
    /// The lookup's operation byte, echoed.
    pub operation: u8,
    /// What happened.
    pub status: LookupStatus<'a>,
}

/// Appends a `Lookup` of `count` ids whose bytes (`count × id size`) are `ids`.
pub fn encode_lookup(
    out: &mut Vec<u8>,
    request_id: u64,
    operation: LookupOperation,
    count: u32,
    ids: &[u8],
) {
    let header = Header {
        kind: FrameKind::Lookup as u8,
        request_id,
        operation: operation as u8,
        count,
        ..Header::default()
    };
    crate::frame::encode_frame(out, header, &[ids]);
}

/// Appends a found `LookupReply` for a lookup of `ids_count` ids: the head, then `entries`
/// (whole entries of `operation`, encoded with [`LookupEntry::encode`]).
pub fn encode_lookup_reply(
    out: &mut Vec<u8>,
    request_id: u64,
    operation: LookupOperation,
    ids_count: u32,
    entries: &[u8],
) {
    let entry_size = operation.entry_size_bytes();
    assert!(entries.len() % entry_size == 0);
    let found = u32::try_from(entries.len() / entry_size).expect("at most LOOKUP_IDS_MAX");
    assert!(found <= ids_count);
    let header = Header {
        kind: FrameKind::LookupReply as u8,
        request_id,
        operation: operation as u8,
        count: ids_count,
        ..Header::default()
    };
    let mut head = [0; LOOKUP_REPLY_HEAD_SIZE_BYTES];
    head[0..4].copy_from_slice(&found.to_le_bytes());
    head[4..8].copy_from_slice(&(entry_size as u32).to_le_bytes());
    crate::frame::encode_frame(out, header, &[&head, entries]);
}

/// Appends a `LookupReply` (any status).
pub(crate) fn encode_reply(out: &mut Vec<u8>, reply: &LookupReply<'_>) {
    let mut header = Header {
        kind: FrameKind::LookupReply as u8,
        request_id: reply.request_id,
        operation: reply.operation,
        ..Header::default()
    };
    match reply.status {
        LookupStatus::Found(entries) => encode_lookup_reply(
            out,
            reply.request_id,
            entries.operation,
            entries.ids_count,
            entries.bytes,
        ),
        LookupStatus::Busy => {
            header.status = status::BUSY;
            crate::frame::encode_frame(out, header, &[]);
        }
        LookupStatus::Rejected(code) => {
            header.status = status::REJECTED;
            header.code = code as u16;
            crate::frame::encode_frame(out, header, &[]);
        }
    }
}

/// Why a checksummed `Lookup` frame is refused (the connection goes on).
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupError {
    /// The operation byte names no lookup operation.
    #[error("unknown lookup operation {operation}")]
    UnknownOperation {
        /// The byte found.
        operation: u8,
    },
    /// A lookup must name at least one id.
    #[error("no ids")]
    NoIds,
    /// More ids than [`LOOKUP_IDS_MAX`].
    #[error("{count} ids is over the limit of {max}")]
    TooManyIds {
        /// The declared count.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// The body is not `count × id size` bytes.
    #[error("body of {body_size} bytes is not {count} × {id_size} bytes")]
    BodySizeMismatch {
        /// The declared count.
        count: u32,
        /// The operation's id size in bytes.
        id_size: usize,
        /// The body size in bytes.
        body_size: u32,
    },
    /// `status` or `code` is not zero.
    #[error("field `{field}` is not zero")]
    ReservedNotZero {
        /// The field's name.
        field: &'static str,
    },
}

impl LookupError {
    /// The code to send in the `rejected` lookup reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            LookupError::UnknownOperation { .. } => ErrorCode::UnknownOperation,
            LookupError::NoIds | LookupError::BodySizeMismatch { .. } => {
                ErrorCode::LookupBodyInvalid
            }
            LookupError::TooManyIds { .. } => ErrorCode::TooManyIds,
            LookupError::ReservedNotZero { .. } => ErrorCode::RequestReservedNotZero,
        }
    }
}

/// Decodes a checksummed `Lookup` frame's fields and body.
pub(crate) fn decode_lookup<'a>(
    header: &Header,
    body: &'a [u8],
    frame_size: usize,
) -> Result<Lookup<'a>, FrameError> {
    let refuse = |reason| FrameError::Lookup {
        request_id: header.request_id,
        operation: header.operation,
        frame_size_bytes: frame_size,
        reason,
    };
    if header.status != 0 {
        return Err(refuse(LookupError::ReservedNotZero { field: "status" }));
    }
    if header.code != 0 {
        return Err(refuse(LookupError::ReservedNotZero { field: "code" }));
    }
    let operation = LookupOperation::from_u8(header.operation).ok_or(refuse(
        LookupError::UnknownOperation {
            operation: header.operation,
        },
    ))?;
    if header.count == 0 {
        return Err(refuse(LookupError::NoIds));
    }
    if header.count as usize > LOOKUP_IDS_MAX {
        return Err(refuse(LookupError::TooManyIds {
            count: header.count,
            max: LOOKUP_IDS_MAX,
        }));
    }
    let id_size = operation.id_size_bytes();
    if header.count as usize * id_size != body.len() {
        return Err(refuse(LookupError::BodySizeMismatch {
            count: header.count,
            id_size,
            body_size: header.body_size,
        }));
    }
    Ok(Lookup {
        request_id: header.request_id,
        operation,
        count: header.count,
        ids: body,
    })
}

/// Decodes a checksummed `LookupReply` frame's fields and body.
pub(crate) fn decode_lookup_reply<'a>(
    header: &Header,
    body: &'a [u8],
) -> Result<LookupReply<'a>, FrameError> {
    let kind = FrameKind::LookupReply;
    let body_invalid = FrameError::BodySizeInvalid {
        kind,
        body_size: header.body_size,
    };
    let status = match header.status {
        status::OK => {
            unused_zero(kind, header, &[Field::Code])?;
            LookupStatus::Found(found(header, body)?)
        }
        status::BUSY => {
            unused_zero(kind, header, &[Field::Code, Field::Count])?;
            LookupStatus::Busy
        }
        status::REJECTED => {
            unused_zero(kind, header, &[Field::Count])?;
            let code = ErrorCode::from_u16(header.code).ok_or(invalid(
                kind,
                "code",
                header.code.into(),
            ))?;
            LookupStatus::Rejected(code)
        }
        other => return Err(invalid(kind, "status", other.into())),
    };
    if !matches!(status, LookupStatus::Found(_)) && !body.is_empty() {
        return Err(body_invalid);
    }
    Ok(LookupReply {
        request_id: header.request_id,
        operation: header.operation,
        status,
    })
}

/// The head and entries of a found `LookupReply`, checked against each other.
fn found<'a>(header: &Header, body: &'a [u8]) -> Result<LookupEntries<'a>, FrameError> {
    let kind = FrameKind::LookupReply;
    let operation = LookupOperation::from_u8(header.operation).ok_or(invalid(
        kind,
        "operation",
        header.operation.into(),
    ))?;
    if header.count as usize > LOOKUP_IDS_MAX {
        return Err(invalid(kind, "count", header.count.into()));
    }
    let Some((head, entries)) = body.split_at_checked(LOOKUP_REPLY_HEAD_SIZE_BYTES) else {
        return Err(FrameError::BodySizeInvalid {
            kind,
            body_size: header.body_size,
        });
    };
    let found_count = u32_at(head, 0);
    let entry_size = u32_at(head, 4);
    let reserved = u64_at(head, 8);
    if found_count > header.count {
        return Err(invalid(kind, "found_count", found_count.into()));
    }
    if entry_size as usize != operation.entry_size_bytes() {
        return Err(invalid(kind, "entry_size_bytes", entry_size.into()));
    }
    if reserved != 0 {
        return Err(invalid(kind, "reserved", reserved));
    }
    if found_count as usize * operation.entry_size_bytes() != entries.len() {
        return Err(FrameError::BodySizeInvalid {
            kind,
            body_size: header.body_size,
        });
    }
    Ok(LookupEntries {
        operation,
        ids_count: header.count,
        bytes: entries,
    })
}
