//! Surge's TCP wire format: length-prefixed, versioned, crc32c-checksummed frames.
//!
//! A connection opens with a handshake (`Hello` with client id and token → `Welcome` with
//! the granted [`Scopes`] and the server's limits, or `HandshakeError` and close). Then the
//! client pipelines `Request`s, each a batch of up to 8,190 fixed-size records of one
//! operation (the records of `surge-core`, byte for byte), and the server answers each with
//! a `Reply` carrying one result code per command, matched by request id (replies may come
//! out of order). `Lookup`s (up to 4,096 ids of accounts, transfers, SKUs or orders) are
//! answered by a `LookupReply` carrying the records found, in the records' own layout.
//! `docs/PROTOCOL.md` draws every layout and lists every [`ErrorCode`].
//!
//! This crate owns bytes only: it never does I/O, never starts a task or thread, never
//! reads a clock. [`FrameDecoder`] never panics on input and never allocates; every size
//! it reads is checked against a limit from [`constants`] before it is trusted.
#![warn(missing_docs)]

pub mod constants;
pub mod decoder;
pub mod entry;
pub mod error_code;
pub mod frame;
mod header;
mod le;
pub mod lookup;
pub mod scopes;

pub use decoder::{FrameDecoder, FrameError, RequestError};
pub use entry::{EntryError, LookupEntry};
pub use error_code::ErrorCode;
pub use frame::{encode_batch, encode_reply_codes, encode_request};
pub use frame::{Frame, Hello, Message, Reply, ReplyStatus, Request, ResultCodes, Welcome};
pub use header::FrameKind;
pub use lookup::{encode_lookup, encode_lookup_reply, Lookup, LookupEntries};
pub use lookup::{LookupError, LookupOperation, LookupReply, LookupStatus};
pub use scopes::Scopes;
