//! The entries of a `LookupReply`: the records of `surge-core` byte for byte
//! (`docs/RECORDS.md`), followed for transfers and orders by their outcome:
//!
//! ```text
//! accounts   Account (128)
//! skus       Sku (128)
//! transfers  Transfer (128) | code u32 | pending_status u8 | reserved 11        = 144
//! orders     Order (256) | code u32 | reserved 4 | expires_at u64 |
//!            payment_transfer_id u128 | closing_transfer_id u128 | reserved 16 = 320
//! ```
//!
//! `code` 0 means the transfer (order) took effect; any other value is the result code its
//! id failed with, and the record then holds only its id (the rest zero). Decoding never
//! panics: an entry this crate does not know is an [`EntryError`].

use surge_core::{Account, Order, OrderId, OrderLookup, OrderView, PendingStatus, ResultCode};
use surge_core::{Sku, Transfer, TransferId, TransferLookup};
use thiserror::Error;

use crate::constants::LOOKUP_ENTRY_SIZE_BYTES_MAX;
use crate::le::{u128_at, u32_at, u64_at};
use crate::lookup::LookupOperation;

/// Size of a transfer entry, in bytes.
pub(crate) const TRANSFER_ENTRY_SIZE_BYTES: usize = 144;
/// Size of an order entry, in bytes.
pub(crate) const ORDER_ENTRY_SIZE_BYTES: usize = 320;
/// Size of the `Transfer` / `Order` record at the front of an entry, in bytes.
const TRANSFER_SIZE_BYTES: usize = std::mem::size_of::<Transfer>();
const ORDER_SIZE_BYTES: usize = std::mem::size_of::<Order>();
/// Size of a 128-bit id at the front of a record, in bytes.
const ID_SIZE_BYTES: usize = 16;

const _: () = assert!(TRANSFER_SIZE_BYTES == 128);
const _: () = assert!(ORDER_SIZE_BYTES == 256);
const _: () = assert!(std::mem::size_of::<Account>() == 128);
const _: () = assert!(std::mem::size_of::<Sku>() == 128);
const _: () = assert!(TRANSFER_ENTRY_SIZE_BYTES == TRANSFER_SIZE_BYTES + 16);
const _: () = assert!(ORDER_ENTRY_SIZE_BYTES == ORDER_SIZE_BYTES + 64);
const _: () = assert!(ORDER_ENTRY_SIZE_BYTES == LOOKUP_ENTRY_SIZE_BYTES_MAX);

/// One record found, with its outcome for transfers and orders.
#[allow(clippy::large_enum_variant)] // Decoded one at a time and handed on by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupEntry {
    /// An account with its balances.
    Account(Account),
    /// A transfer id's outcome: committed (with the transfer), or failed.
    Transfer {
        /// The id looked up.
        id: TransferId,
        /// What it refers to.
        lookup: TransferLookup,
    },
    /// A SKU with its unit counters.
    Sku(Sku),
    /// An order id's outcome: placed (with the order), or failed.
    Order {
        /// The id looked up.
        id: OrderId,
        /// What it refers to.
        lookup: OrderLookup,
    },
}

/// Why an entry's bytes are not an entry this crate knows.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryError {
    /// The entry is not the operation's entry size.
    #[error("entry of {size} bytes; the operation's entries are {expected}")]
    Size {
        /// The size found.
        size: usize,
        /// The operation's entry size.
        expected: usize,
    },
    /// The outcome code is no known result code.
    #[error("unknown result code {code}")]
    UnknownResultCode {
        /// The number found.
        code: u32,
    },
    /// The pending status is not 0..=4.
    #[error("unknown pending status {status}")]
    UnknownPendingStatus {
        /// The byte found.
        status: u8,
    },
    /// A reserved field, or the record of a failed id past its id, is not zero.
    #[error("field `{field}` is not zero")]
    NotZero {
        /// The field.
        field: &'static str,
    },
}

fn zero(bytes: &[u8], field: &'static str) -> Result<(), EntryError> {
    match bytes.iter().all(|&byte| byte == 0) {
        true => Ok(()),
        false => Err(EntryError::NotZero { field }),
    }
}

/// The failure code of an outcome field: `None` for 0 (took effect).
fn failure(code: u32) -> Result<Option<ResultCode>, EntryError> {
    match code {
        0 => Ok(None),
        _ => ResultCode::from_u32(code)
            .map(Some)
            .ok_or(EntryError::UnknownResultCode { code }),
    }
}

fn pending_status(status: u8) -> Result<Option<PendingStatus>, EntryError> {
    Ok(Some(match status {
        0 => return Ok(None),
        1 => PendingStatus::Pending,
        2 => PendingStatus::Posted,
        3 => PendingStatus::Voided,
        4 => PendingStatus::Expired,
        _ => return Err(EntryError::UnknownPendingStatus { status }),
    }))
}

/// Appends the failure code of a failed outcome (never `ok`: a failed id failed).
fn push_failure(out: &mut Vec<u8>, code: ResultCode) {
    assert!(code != ResultCode::Ok);
    out.extend_from_slice(&code.as_u32().to_le_bytes());
}

impl LookupEntry {
    /// The lookup operation whose entries these are.
    pub fn operation(&self) -> LookupOperation {
        match self {
            LookupEntry::Account(_) => LookupOperation::Accounts,
            LookupEntry::Transfer { .. } => LookupOperation::Transfers,
            LookupEntry::Sku(_) => LookupOperation::Skus,
            LookupEntry::Order { .. } => LookupOperation::Orders,
        }
    }

    /// The id the entry answers, widened to u128.
    pub fn id(&self) -> u128 {
        match self {
            LookupEntry::Account(account) => account.id.0,
            LookupEntry::Transfer { id, .. } => id.0,
            LookupEntry::Sku(sku) => u128::from(sku.id.0),
            LookupEntry::Order { id, .. } => id.0,
        }
    }

    /// Appends the entry's bytes (its operation's entry size).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            LookupEntry::Account(account) => out.extend_from_slice(bytemuck::bytes_of(account)),
            LookupEntry::Sku(sku) => out.extend_from_slice(bytemuck::bytes_of(sku)),
            LookupEntry::Transfer { id, lookup } => encode_transfer(out, *id, lookup),
            LookupEntry::Order { id, lookup } => encode_order(out, *id, lookup),
        }
        assert_eq!(out.len() - start, self.operation().entry_size_bytes());
    }

    /// Decodes one entry of `operation`. Never panics on input.
    pub fn decode(operation: LookupOperation, bytes: &[u8]) -> Result<LookupEntry, EntryError> {
        let expected = operation.entry_size_bytes();
        if bytes.len() != expected {
            return Err(EntryError::Size {
                size: bytes.len(),
                expected,
            });
        }
        Ok(match operation {
            LookupOperation::Accounts => LookupEntry::Account(bytemuck::pod_read_unaligned(bytes)),
            LookupOperation::Skus => LookupEntry::Sku(bytemuck::pod_read_unaligned(bytes)),
            LookupOperation::Transfers => decode_transfer(bytes)?,
            LookupOperation::Orders => decode_order(bytes)?,
        })
    }
}

fn encode_transfer(out: &mut Vec<u8>, id: TransferId, lookup: &TransferLookup) {
    match lookup {
        TransferLookup::Committed {
            transfer,
            pending_status,
        } => {
            out.extend_from_slice(bytemuck::bytes_of(transfer));
            out.extend_from_slice(&0u32.to_le_bytes());
            out.push(pending_status.map_or(0, |status| status as u8));
        }
        TransferLookup::Failed(code) => {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&[0; TRANSFER_SIZE_BYTES - ID_SIZE_BYTES]);
            push_failure(out, *code);
            out.push(0);
        }
    }
    out.extend_from_slice(&[0; TRANSFER_ENTRY_SIZE_BYTES - TRANSFER_SIZE_BYTES - 5]);
}

fn decode_transfer(bytes: &[u8]) -> Result<LookupEntry, EntryError> {
    let (record, outcome) = bytes.split_at(TRANSFER_SIZE_BYTES);
    zero(&outcome[5..], "reserved")?;
    let id = TransferId(u128_at(record, 0));
    let lookup = match failure(u32_at(outcome, 0))? {
        None => TransferLookup::Committed {
            transfer: bytemuck::pod_read_unaligned(record),
            pending_status: pending_status(outcome[4])?,
        },
        Some(code) => {
            zero(&record[ID_SIZE_BYTES..], "transfer")?;
            zero(&outcome[4..5], "pending_status")?;
            TransferLookup::Failed(code)
        }
    };
    Ok(LookupEntry::Transfer { id, lookup })
}

/// Offsets in an order entry's outcome (after the 256-byte order).
mod order_outcome {
    pub const CODE: usize = 0;
    pub const RESERVED: usize = 4;
    pub const EXPIRES_AT: usize = 8;
    pub const PAYMENT_TRANSFER_ID: usize = 16;
    pub const CLOSING_TRANSFER_ID: usize = 32;
    pub const RESERVED_END: usize = 48;
}

fn encode_order(out: &mut Vec<u8>, id: OrderId, lookup: &OrderLookup) {
    let outcome_start = out.len() + ORDER_SIZE_BYTES;
    match lookup {
        OrderLookup::Placed(view) => {
            out.extend_from_slice(bytemuck::bytes_of(&view.order));
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&view.expires_at.to_le_bytes());
            out.extend_from_slice(&view.payment_transfer_id.0.to_le_bytes());
            out.extend_from_slice(&view.closing_transfer_id.0.to_le_bytes());
        }
        OrderLookup::Failed(code) => {
            out.extend_from_slice(&id.0.to_le_bytes());
            out.extend_from_slice(&[0; ORDER_SIZE_BYTES - ID_SIZE_BYTES]);
            push_failure(out, *code);
            out.extend_from_slice(&[0; order_outcome::RESERVED_END - 4]);
        }
    }
    assert_eq!(out.len() - outcome_start, order_outcome::RESERVED_END);
    out.extend_from_slice(&[0; ORDER_ENTRY_SIZE_BYTES - ORDER_SIZE_BYTES - 48]);
}

fn decode_order(bytes: &[u8]) -> Result<LookupEntry, EntryError> {
    use order_outcome::*;
    let (record, outcome) = bytes.split_at(ORDER_SIZE_BYTES);
    zero(&outcome[RESERVED..EXPIRES_AT], "reserved")?;
    zero(&outcome[RESERVED_END..], "reserved")?;
    let id = OrderId(u128_at(record, 0));
    let lookup = match failure(u32_at(outcome, CODE))? {
        None => OrderLookup::Placed(OrderView {
            order: bytemuck::pod_read_unaligned(record),
            expires_at: u64_at(outcome, EXPIRES_AT),
            payment_transfer_id: TransferId(u128_at(outcome, PAYMENT_TRANSFER_ID)),
            closing_transfer_id: TransferId(u128_at(outcome, CLOSING_TRANSFER_ID)),
        }),
        Some(code) => {
            zero(&record[ID_SIZE_BYTES..], "order")?;
            zero(&outcome[EXPIRES_AT..RESERVED_END], "outcome")?;
            OrderLookup::Failed(code)
        }
    };
    Ok(LookupEntry::Order { id, lookup })
}
