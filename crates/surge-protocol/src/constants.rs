//! Limits and fixed numbers of the wire format, with their units. The relations between
//! them (a full batch of the largest record fits a frame, sizes fit their fields) are
//! checked at compile time below.

use surge_core::constants::{BATCH_EVENTS_MAX, RECORD_SIZE_BYTES_MAX};

/// The first four bytes of every frame: `S`, `R`, `G`, `P`.
pub const MAGIC: [u8; 4] = *b"SRGP";

/// The protocol version this crate speaks. A frame of another version is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// Size of the fixed frame header, in bytes.
pub const HEADER_SIZE_BYTES: usize = 32;

/// Most commands in one request: the core's batch limit.
pub const REQUEST_COMMANDS_MAX: usize = BATCH_EVENTS_MAX;

/// Largest request body, in bytes: a full request of the largest record (orders).
pub const REQUEST_BODY_SIZE_BYTES_MAX: usize = REQUEST_COMMANDS_MAX * RECORD_SIZE_BYTES_MAX;

/// Size of one result code in a reply body, in bytes.
pub const RESULT_CODE_SIZE_BYTES: usize = 4;

/// Largest reply body, in bytes: one result code per command of a full request.
pub const REPLY_BODY_SIZE_BYTES_MAX: usize = REQUEST_COMMANDS_MAX * RESULT_CODE_SIZE_BYTES;

/// Largest frame body the format allows, in bytes. A peer may announce a smaller limit.
pub const FRAME_BODY_SIZE_BYTES_MAX: usize = REQUEST_BODY_SIZE_BYTES_MAX;

/// Largest frame the format allows, header included, in bytes.
pub const FRAME_SIZE_BYTES_MAX: usize = HEADER_SIZE_BYTES + FRAME_BODY_SIZE_BYTES_MAX;

/// Size of the client id at the front of a `Hello` body, in bytes.
pub const CLIENT_ID_SIZE_BYTES: usize = 16;

/// Longest token in a `Hello`, in bytes.
pub const TOKEN_SIZE_BYTES_MAX: usize = 256;

/// Largest `Hello` body, in bytes.
pub const HELLO_BODY_SIZE_BYTES_MAX: usize = CLIENT_ID_SIZE_BYTES + TOKEN_SIZE_BYTES_MAX;

/// Size of a `Welcome` body, in bytes.
pub const WELCOME_BODY_SIZE_BYTES: usize = 24;

/// Longest message in a `HandshakeError` or `Error` frame, in bytes of UTF-8.
pub const MESSAGE_SIZE_BYTES_MAX: usize = 256;

/// Most ids in one `Lookup`.
pub const LOOKUP_IDS_MAX: usize = 4_096;

/// Largest id in a `Lookup` body, in bytes (account, transfer and order ids; SKU ids are 8).
pub const LOOKUP_ID_SIZE_BYTES_MAX: usize = 16;

/// Largest `Lookup` body, in bytes: the most ids of the largest size.
pub const LOOKUP_BODY_SIZE_BYTES_MAX: usize = LOOKUP_IDS_MAX * LOOKUP_ID_SIZE_BYTES_MAX;

/// Size of the head at the front of a found `LookupReply` body, in bytes.
pub const LOOKUP_REPLY_HEAD_SIZE_BYTES: usize = 16;

/// Largest entry of a `LookupReply`, in bytes: an order (256) and its outcome (64).
pub const LOOKUP_ENTRY_SIZE_BYTES_MAX: usize = 320;

/// Largest `LookupReply` body, in bytes: the head and one entry of the largest size per id.
pub const LOOKUP_REPLY_BODY_SIZE_BYTES_MAX: usize =
    LOOKUP_REPLY_HEAD_SIZE_BYTES + LOOKUP_IDS_MAX * LOOKUP_ENTRY_SIZE_BYTES_MAX;

const _: () = assert!(REQUEST_COMMANDS_MAX == 8_190);
const _: () = assert!(RECORD_SIZE_BYTES_MAX == 256);
// A full request of orders (8,190 × 256 bytes) fits the largest frame body.
const _: () = assert!(REQUEST_COMMANDS_MAX * RECORD_SIZE_BYTES_MAX <= FRAME_BODY_SIZE_BYTES_MAX);
const _: () = assert!(REPLY_BODY_SIZE_BYTES_MAX <= FRAME_BODY_SIZE_BYTES_MAX);
const _: () = assert!(HELLO_BODY_SIZE_BYTES_MAX <= FRAME_BODY_SIZE_BYTES_MAX);
const _: () = assert!(MESSAGE_SIZE_BYTES_MAX <= FRAME_BODY_SIZE_BYTES_MAX);
const _: () = assert!(WELCOME_BODY_SIZE_BYTES <= FRAME_BODY_SIZE_BYTES_MAX);
// A full lookup and the reply that finds every id fit the largest frame body (a server
// announcing a smaller limit for requests still sends replies up to this one).
const _: () = assert!(LOOKUP_BODY_SIZE_BYTES_MAX <= FRAME_BODY_SIZE_BYTES_MAX);
const _: () = assert!(LOOKUP_REPLY_BODY_SIZE_BYTES_MAX <= FRAME_BODY_SIZE_BYTES_MAX);
const _: () = assert!(LOOKUP_IDS_MAX <= u32::MAX as usize);
// The body size field is a u32; the command count field is a u32.
const _: () = assert!(FRAME_SIZE_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(REQUEST_COMMANDS_MAX <= u32::MAX as usize);
