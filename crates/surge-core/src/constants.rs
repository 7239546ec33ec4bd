//! Limits of the core, with their units. Every other crate takes its batch and record
//! limits from here, so the relations between them are checked once, at compile time.

use crate::records::{Order, Transfer};

/// Most commands in one batch (one log record, one request frame).
pub const BATCH_EVENTS_MAX: usize = 8_190;

/// Largest command record, in bytes (an order).
pub const RECORD_SIZE_BYTES_MAX: usize = std::mem::size_of::<Order>();

/// Largest batch body, in bytes: a full batch of the largest record.
pub const BATCH_BODY_SIZE_BYTES_MAX: usize = BATCH_EVENTS_MAX * RECORD_SIZE_BYTES_MAX;

/// Transfer `code` of an order's payment authorization (and of its capture or void).
/// Codes from `TRANSFER_CODE_SURGE_MIN` up are Surge's own.
pub const TRANSFER_CODE_ORDER_PAYMENT: u16 = 0xFF01;

/// Transfer `code` of an order refund.
pub const TRANSFER_CODE_ORDER_REFUND: u16 = 0xFF02;

/// Smallest transfer code reserved for transfers Surge creates itself.
pub const TRANSFER_CODE_SURGE_MIN: u16 = 0xFF00;

/// Default time after which an unacknowledged dispatch request is delivered again, in ns
/// of log time.
pub const DISPATCH_REDELIVERY_NS_DEFAULT: u64 = 30 * 1_000_000_000;

/// How long, in ns of the order's shard's log time, an order spanning shards waits for its
/// authorization (the funds hold on the buyer's shard) before it fails with
/// `order_authorization_timed_out` and releases its units. Part of the state machine's
/// rules: the same on every replay.
pub const ORDER_AUTHORIZE_TIMEOUT_NS: u64 = 30 * 1_000_000_000;

const _: () = assert!(std::mem::size_of::<Transfer>() <= RECORD_SIZE_BYTES_MAX);
// One batch body must stay addressable by a u32 length field on the wire and in the log.
const _: () = assert!(BATCH_BODY_SIZE_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(TRANSFER_CODE_ORDER_PAYMENT >= TRANSFER_CODE_SURGE_MIN);
const _: () = assert!(TRANSFER_CODE_ORDER_REFUND >= TRANSFER_CODE_SURGE_MIN);
