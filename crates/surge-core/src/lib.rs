//! Surge's deterministic core: ids, fixed-size records, result codes, and the state
//! machine that applies batches of commands to accounts, transfers, inventory, orders and
//! the dispatch outbox.
//!
//! This crate never does I/O, never starts a thread, never reads a clock, an environment
//! variable or a random number, and holds no global state. It is handed log time
//! (`apply(timestamp, batch)`) and returns one [`ResultCode`] per command, so the state is
//! a pure function of the log and a replay reproduces it bit for bit.
#![warn(missing_docs)]

pub mod batch;
pub mod constants;
pub mod ids;
pub mod records;
pub mod result;
pub mod shard;
pub mod state_machine;

pub use batch::{compact_form, decode, Batch, BatchBuf, DecodeError, Operation};
pub use ids::{AccountId, DispatchId, LogPosition, OrderId, SkuId, TransferId};
pub use records::{
    account_flags, order_action_flags, order_message_flags, order_message_kind, transfer_flags,
    unit_step_kind, Account, CompactOrder, DispatchAck, Order, OrderAction, OrderLine,
    OrderMessage, OrderOutcome, OrderStatus, Reservation, ReservationKey, ReservationStatus,
    ShardLeg, ShardOutcome, Sku, SpanningOrder, Transfer, UnitOutcome, UnitStep,
};
pub use result::ResultCode;
pub use shard::{shard_of, SHARDS_MAX};
pub use state_machine::{
    is_reserved_account_id, prefetch_bytes, transit_account_id, transit_shards, ArchivedOutcome,
    ArchivedTransfer, Config, DispatchRequest, DispatchStatus, EvictionPlan, IdFilter,
    MemoryCounts, OrderLookup, OrderView, PendingStatus, ReservationLookup, SnapshotBuffers,
    SnapshotError, SnapshotParts, StateMachine, TransferLookup, UnitHoldStatus,
    ACCOUNT_ID_RESERVED_HIGH, ARCHIVED_TRANSFER_SIZE_BYTES, TRANSFER_CODE_CROSS_SHARD_COMPENSATION,
    TRANSIT_ACCOUNT_CODE,
};
