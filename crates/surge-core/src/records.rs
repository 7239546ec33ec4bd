//! Fixed-size, little-endian command and state records: the hot-path format on the wire
//! and in the log. Layouts are `#[repr(C)]` with explicit reserved bytes that must be zero,
//! their sizes are asserted at compile time, and `docs/RECORDS.md` draws them byte by byte.
//!
//! Records are plain old data (`bytemuck::Pod`): encoding is a copy, and decoding checks
//! only the length (every bit pattern is a valid record; field validation is the state
//! machine's job and yields result codes).

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};

// Records are read and written as native-endian bytes; the format is little-endian.
#[cfg(not(target_endian = "little"))]
compile_error!("surge records are little-endian; big-endian targets need byte swapping");

/// Format version of every record layout in this file. Bump on any layout change.
pub const RECORD_FORMAT_VERSION: u16 = 1;

/// Maximum lines in one order.
pub const ORDER_LINES_MAX: usize = 8;

fn zeros<const N: usize>() -> [u8; N] {
    [0; N]
}

/// Account flags.
pub mod account_flags {
    /// This account and the next command of the batch succeed or fail together.
    pub const LINKED: u16 = 1 << 0;
    /// The account's debits (pending + posted) may never exceed its posted credits:
    /// a buyer wallet that cannot go negative.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: u16 = 1 << 1;
    /// The account's credits (pending + posted) may never exceed its posted debits.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: u16 = 1 << 2;
    /// Every defined bit.
    pub const ALL: u16 = LINKED | DEBITS_MUST_NOT_EXCEED_CREDITS | CREDITS_MUST_NOT_EXCEED_DEBITS;
}

/// Transfer flags.
pub mod transfer_flags {
    /// This transfer and the next command of the batch succeed or fail together.
    pub const LINKED: u16 = 1 << 0;
    /// Phase one: hold the amount (pending balances) until posted, voided or expired.
    pub const PENDING: u16 = 1 << 1;
    /// Phase two: capture all or part of the pending transfer named by `pending_id`.
    pub const POST_PENDING: u16 = 1 << 2;
    /// Phase two: release the pending transfer named by `pending_id`.
    pub const VOID_PENDING: u16 = 1 << 3;
    /// Every defined bit.
    pub const ALL: u16 = LINKED | PENDING | POST_PENDING | VOID_PENDING;
}

/// Order action flags.
pub mod order_action_flags {
    /// Refund only: put the sold units back into available stock.
    pub const RESTOCK: u32 = 1 << 0;
    /// Every defined bit.
    pub const ALL: u32 = RESTOCK;
}

/// An account: client-chosen id, ledger (currency), code (kind), flags, and its four
/// balances in minor units. 128 bytes. On create, balances and `timestamp` must be zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct Account {
    /// Client-chosen, non-zero.
    pub id: AccountId,
    /// Opaque to Surge (e.g. a link to the client's own records).
    #[serde(default, with = "u128_string")]
    pub user_data: u128,
    /// Sum of pending (held) debits.
    #[serde(default)]
    pub debits_pending: u64,
    /// Sum of posted debits.
    #[serde(default)]
    pub debits_posted: u64,
    /// Sum of pending (held) credits.
    #[serde(default)]
    pub credits_pending: u64,
    /// Sum of posted credits.
    #[serde(default)]
    pub credits_posted: u64,
    /// Ledger (currency) number; non-zero. Transfers move money only within one ledger.
    pub ledger: u32,
    /// Kind of account, chosen by the client; non-zero.
    pub code: u16,
    /// [`account_flags`].
    #[serde(default)]
    pub flags: u16,
    /// Log timestamp (ns) of creation, assigned by the engine.
    #[serde(default)]
    pub timestamp: u64,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 48],
}

/// A transfer: single-phase, pending (phase one) or post/void (phase two). 128 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct Transfer {
    /// Client-chosen, non-zero; the idempotency key.
    pub id: TransferId,
    /// Account debited (for a post/void: zero or the pending transfer's).
    #[serde(default)]
    pub debit_account_id: AccountId,
    /// Account credited (for a post/void: zero or the pending transfer's).
    #[serde(default)]
    pub credit_account_id: AccountId,
    /// For a post or void: the pending transfer it resolves. Otherwise zero.
    #[serde(default)]
    pub pending_id: TransferId,
    /// Opaque to Surge.
    #[serde(default, with = "u128_string")]
    pub user_data: u128,
    /// Minor units. For a post, 0 means the whole pending amount; for a void, 0 or the
    /// pending amount.
    #[serde(default)]
    pub amount: u64,
    /// Pending only: the hold expires this many ns of log time after the transfer is
    /// logged. 0 = never.
    #[serde(default)]
    pub timeout_ns: u64,
    /// Ledger; must equal both accounts' ledger (for a post/void: zero or the pending's).
    #[serde(default)]
    pub ledger: u32,
    /// Kind of transfer, chosen by the client (for a post/void: zero or the pending's).
    #[serde(default)]
    pub code: u16,
    /// [`transfer_flags`].
    #[serde(default)]
    pub flags: u16,
    /// Log timestamp (ns), assigned by the engine.
    #[serde(default)]
    pub timestamp: u64,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 16],
}

/// A stock-keeping unit and its unit counters. 128 bytes. On create only `units_stocked`
/// is set; always `available + reserved + sold == stocked`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct Sku {
    /// Opaque to Surge.
    #[serde(default, with = "u128_string")]
    pub user_data: u128,
    /// Client-chosen, non-zero.
    pub id: SkuId,
    /// Units put on sale.
    pub units_stocked: u64,
    /// Units free to reserve.
    #[serde(default)]
    pub units_available: u64,
    /// Units held by reservations and unpaid orders.
    #[serde(default)]
    pub units_reserved: u64,
    /// Units confirmed (paid) and not restocked.
    #[serde(default)]
    pub units_sold: u64,
    /// Most units one buyer may hold (reserved + bought); 0 = no limit.
    #[serde(default)]
    pub limit_per_buyer: u32,
    /// No flags are defined yet; must be zero.
    #[serde(default)]
    pub flags: u16,
    /// Kind of SKU, chosen by the client.
    #[serde(default)]
    pub code: u16,
    /// Log timestamp (ns) of creation, assigned by the engine.
    #[serde(default)]
    pub timestamp: u64,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 56],
}

/// A direct inventory reservation: hold `quantity` units of a SKU for an order id until
/// confirmed, released or expired. 64 bytes. Keyed by `(order_id, sku_id)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct Reservation {
    /// The order the units are held for (with `sku_id`, the idempotency key).
    pub order_id: OrderId,
    /// The buyer, for the per-buyer limit.
    pub buyer_id: AccountId,
    /// The SKU.
    pub sku_id: SkuId,
    /// Units to hold; non-zero.
    pub quantity: u32,
    /// No flags are defined yet; must be zero.
    #[serde(default)]
    pub flags: u16,
    /// State in query answers ([`ReservationStatus`]); must be zero in commands.
    #[serde(default)]
    pub status: u16,
    /// The hold expires this many ns of log time after it is logged; non-zero.
    pub timeout_ns: u64,
    /// Log timestamp (ns), assigned by the engine.
    #[serde(default)]
    pub timestamp: u64,
}

/// Names a direct reservation for confirm and release. 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct ReservationKey {
    /// The order the units are held for.
    pub order_id: OrderId,
    /// The SKU.
    pub sku_id: SkuId,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 8],
}

/// One line of an order. 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct OrderLine {
    /// The SKU.
    pub sku_id: SkuId,
    /// Units; non-zero.
    pub quantity: u32,
    /// Must be zero.
    #[serde(skip)]
    pub reserved: u32,
}

/// An order: placing it reserves every line and authorizes `amount` from the buyer to
/// the merchant as a pending transfer `transfer_id`, atomically. 256 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct Order {
    /// Client-chosen, non-zero; the idempotency key.
    pub id: OrderId,
    /// The buyer's wallet (debited).
    pub buyer_id: AccountId,
    /// The merchant's account (credited).
    pub merchant_id: AccountId,
    /// Id of the payment authorization (a pending transfer) this order creates.
    pub transfer_id: TransferId,
    /// Opaque to Surge.
    #[serde(default, with = "u128_string")]
    pub user_data: u128,
    /// Order total in minor units; non-zero.
    pub amount: u64,
    /// Unpaid orders expire this many ns of log time after they are placed; non-zero.
    pub timeout_ns: u64,
    /// Ledger of both accounts.
    pub ledger: u32,
    /// Lines in use, 1..=8.
    pub line_count: u16,
    /// No flags are defined yet; must be zero.
    #[serde(default)]
    pub flags: u16,
    /// Log timestamp (ns) of placement, assigned by the engine.
    #[serde(default)]
    pub timestamp: u64,
    /// [`OrderStatus`] in query answers; must be zero in commands.
    #[serde(default)]
    pub status: u16,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 14],
    /// The lines; those past `line_count` must be zero.
    #[serde(default)]
    pub lines: [OrderLine; ORDER_LINES_MAX],
}

/// An order of one line in half the bytes, as clients may send it and as the engine logs a
/// batch of such orders: [`CompactOrder::of`] packs an [`Order`] only when
/// [`CompactOrder::order`] gives back the very same bytes, so applying either form is the
/// same command (same checks, same fingerprint). 128 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct CompactOrder {
    /// [`Order::id`].
    pub id: OrderId,
    /// [`Order::buyer_id`].
    pub buyer_id: AccountId,
    /// [`Order::merchant_id`].
    pub merchant_id: AccountId,
    /// [`Order::transfer_id`].
    pub transfer_id: TransferId,
    /// [`Order::user_data`].
    pub user_data: u128,
    /// The only line's SKU.
    pub sku_id: SkuId,
    /// [`Order::amount`].
    pub amount: u64,
    /// [`Order::timeout_ns`].
    pub timeout_ns: u64,
    /// [`Order::ledger`].
    pub ledger: u32,
    /// The only line's units.
    pub quantity: u32,
    /// [`Order::flags`].
    pub flags: u16,
    /// Zero (the engine writes zeros).
    pub reserved: [u8; 14],
}

impl CompactOrder {
    /// `order` in the compact form, if it has exactly one line and nothing else the
    /// compact form drops (timestamp, status, reserved bytes, the line's reserved word)
    /// is non-zero; otherwise `None` and the order is logged whole.
    pub fn of(order: &Order) -> Option<CompactOrder> {
        let [line, rest @ ..] = &order.lines;
        let plain = order.line_count == 1
            && order.timestamp == 0
            && order.status == 0
            && order.reserved == [0; 14]
            && line.reserved == 0
            && rest.iter().all(|line| *line == OrderLine::default());
        plain.then_some(CompactOrder {
            id: order.id,
            buyer_id: order.buyer_id,
            merchant_id: order.merchant_id,
            transfer_id: order.transfer_id,
            user_data: order.user_data,
            sku_id: line.sku_id,
            amount: order.amount,
            timeout_ns: order.timeout_ns,
            ledger: order.ledger,
            quantity: line.quantity,
            flags: order.flags,
            reserved: [0; 14],
        })
    }

    /// The order this record stands for.
    pub fn order(&self) -> Order {
        let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
        lines[0] = OrderLine {
            sku_id: self.sku_id,
            quantity: self.quantity,
            reserved: 0,
        };
        Order {
            id: self.id,
            buyer_id: self.buyer_id,
            merchant_id: self.merchant_id,
            transfer_id: self.transfer_id,
            user_data: self.user_data,
            amount: self.amount,
            timeout_ns: self.timeout_ns,
            ledger: self.ledger,
            line_count: 1,
            flags: self.flags,
            timestamp: 0,
            status: 0,
            reserved: [0; 14],
            lines,
        }
    }
}

/// Pay, cancel or refund an order. 64 bytes. `transfer_id` is the id of the transfer the
/// action creates (post, void or refund) and the action's idempotency key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct OrderAction {
    /// The order.
    pub order_id: OrderId,
    /// Id of the transfer this action creates; non-zero.
    pub transfer_id: TransferId,
    /// [`order_action_flags`].
    #[serde(default)]
    pub flags: u32,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 28],
}

/// One leg of a cross-shard transfer, logged by the engine (never by clients). 144 bytes.
/// `transfer` is the client's single-phase transfer as submitted; the debit shard logs it
/// as a debit leg (debit account to the transit account for the destination shard), the
/// credit shard as a credit leg (the transit account for the source shard to the credit
/// account).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct ShardLeg {
    /// The client's transfer (timestamp zero as submitted; set by the engine on apply).
    pub transfer: Transfer,
    /// The debit account's shard.
    pub source_shard: u32,
    /// The credit account's shard.
    pub destination_shard: u32,
    /// The credit account's ledger as the engine saw it when it routed the transfer (0: it
    /// did not exist): lets the debit leg fail exactly as one shard would
    /// (`credit_account_not_found`, `accounts_must_have_same_ledger` come before balance
    /// checks). Accounts never change ledger and are never deleted.
    pub credit_account_ledger: u32,
    /// Must be zero.
    pub reserved: [u8; 4],
}

/// The outcome of a credit leg, carried back to the debit shard by the engine: a success
/// settles the transfer, a failure compensates it (funds back from transit). 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct ShardOutcome {
    /// The cross-shard transfer.
    pub transfer_id: TransferId,
    /// The credit leg's result code ([`crate::ResultCode`] number).
    pub code: u32,
    /// Must be zero.
    pub reserved: [u8; 12],
}

/// An order whose buyer or merchant lives on another shard than its SKU lines, logged
/// on the lines' shard by the engine (never by clients) to reserve its units; the
/// authorization then travels to the buyer's shard as an [`OrderMessage`]. 272 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct SpanningOrder {
    /// The client's order, as submitted.
    pub order: Order,
    /// The buyer's shard (it holds the authorization).
    pub buyer_shard: u32,
    /// The merchant's shard.
    pub merchant_shard: u32,
    /// The merchant account's ledger as the engine saw it when routing (0: not found),
    /// so the authorization fails as one shard would.
    pub merchant_ledger: u32,
    /// Zero if every line lives on this shard; else the engine's shard count, by which
    /// the lines living elsewhere are found ([`crate::shard_of`]): the order's first line
    /// lives here, and the units of the others are held on their shards by
    /// [`UnitStep`]s before the authorization is sent.
    pub shard_count: u32,
}

/// What an [`OrderMessage`] asks its target shard to do.
pub mod order_message_kind {
    /// Hold the order's amount: its authorization, a pending transfer owned by the order
    /// (`leg`, on the buyer's shard).
    pub const AUTHORIZE: u32 = 1;
    /// Post the authorization (`leg.transfer`: the pay's transfer id, `pending_id`).
    pub const PAY: u32 = 2;
    /// Void the authorization (the cancel's transfer id).
    pub const CANCEL: u32 = 3;
    /// Void the authorization because the order expired (`id` = `pending_id`).
    pub const EXPIRE: u32 = 4;
    /// Move the captured amount back (`leg`: the refund transfer, on the merchant's
    /// shard).
    pub const REFUND: u32 = 5;
}

/// Flags of an [`OrderMessage`] set by the order's shard itself (never by a client).
pub mod order_message_flags {
    /// Authorize only: the step timed out on the order's shard (the order failed with
    /// `order_authorization_timed_out` and its units are back). A successful outcome then
    /// sends the void of the hold (an expiry step) instead of placing the order.
    pub const TIMED_OUT: u32 = 1 << 31;
}

/// A step of an order whose buyer or merchant lives on another shard, kept in the
/// order's shard's outbox until the target shard's outcome is logged there (the engine
/// delivers it; the target dedupes by transfer id). 176 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct OrderMessage {
    /// The transfer the target shard applies; `leg.source_shard` is the target shard.
    /// For an authorization or a refund, a leg as for a cross-shard transfer (its
    /// `destination_shard` may equal its source: then it is applied whole there); for a
    /// pay, cancel or expiry, the post or void (`pending_id` = the authorization).
    pub leg: ShardLeg,
    /// The order.
    pub order_id: OrderId,
    /// [`order_message_kind`].
    pub kind: u32,
    /// The action's flags (a refund's `RESTOCK`), applied when the outcome comes back,
    /// and [`order_message_flags`].
    pub flags: u32,
    /// Must be zero.
    pub reserved: [u8; 8],
}

/// The outcome of an [`OrderMessage`], logged on the order's shard by the engine. 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct OrderOutcome {
    /// The message's transfer id (its key in the outbox).
    pub transfer_id: TransferId,
    /// The target shard's result code ([`crate::ResultCode`] number).
    pub code: u32,
    /// The message's [`order_message_kind`] (an outcome only settles its own kind).
    pub kind: u32,
    /// Must be zero.
    pub reserved: [u8; 8],
}

/// What a [`UnitStep`] does to the units an order holds on one of its lines' shards.
pub mod unit_step_kind {
    /// Hold the units of the order's lines that live on the target shard (the per-buyer
    /// limits apply there), owned by the order, with no expiry of their own.
    pub const RESERVE: u32 = 1;
    /// The order was paid: the held units are sold.
    pub const SELL: u32 = 2;
    /// The order failed, was cancelled or expired: the held units are available again.
    pub const RELEASE: u32 = 3;
    /// The order was refunded with restock: the sold units are available again.
    pub const RESTOCK: u32 = 4;
}

/// A step on the units of an order whose SKU lines live on several shards, on one shard
/// holding some of its lines (not the order's own), logged there by the engine (never by
/// clients). The order's shard keeps it in its unit outbox until the outcome is logged
/// back ([`UnitOutcome`]); the target dedupes by (order, step). 272 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct UnitStep {
    /// The order as the client placed it (its lines on `target_shard` are the units).
    pub order: Order,
    /// The engine's shard count when the order was placed: which lines live where.
    pub shard_count: u32,
    /// The shard applying the step.
    pub target_shard: u32,
    /// [`unit_step_kind`].
    pub kind: u32,
    /// [`order_message_flags`] set by the order's shard (the target ignores them).
    pub flags: u32,
}

/// The outcome of a [`UnitStep`], logged on the order's shard by the engine. 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct UnitOutcome {
    /// The order.
    pub order_id: OrderId,
    /// The shard that applied the step.
    pub target_shard: u32,
    /// The step's [`unit_step_kind`] (an outcome only settles its own kind).
    pub kind: u32,
    /// The target's result code ([`crate::ResultCode`] number).
    pub code: u32,
    /// Must be zero.
    pub reserved: [u8; 4],
}

/// Acknowledge a dispatch request: logistics has taken the order. 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable, Serialize, Deserialize)]
#[repr(C)]
pub struct DispatchAck {
    /// The request.
    pub dispatch_id: DispatchId,
    /// Must be zero.
    #[serde(skip, default = "zeros")]
    pub reserved: [u8; 16],
}

/// The state of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u16)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Units reserved and funds held; awaiting payment.
    Reserved = 1,
    /// Funds captured, units sold, dispatch request created.
    Paid = 2,
    /// Logistics acknowledged the dispatch request.
    Dispatched = 3,
    /// Cancelled before payment; hold voided, units released.
    Cancelled = 4,
    /// Not paid in time; hold voided, units released.
    Expired = 5,
    /// Refunded after payment.
    Refunded = 6,
}

impl OrderStatus {
    /// The status for a number, if it is one.
    pub const fn from_u16(value: u16) -> Option<OrderStatus> {
        match value {
            1 => Some(OrderStatus::Reserved),
            2 => Some(OrderStatus::Paid),
            3 => Some(OrderStatus::Dispatched),
            4 => Some(OrderStatus::Cancelled),
            5 => Some(OrderStatus::Expired),
            6 => Some(OrderStatus::Refunded),
            _ => None,
        }
    }
}

/// The state of a direct reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u16)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Units held.
    Reserved = 1,
    /// Units sold.
    Confirmed = 2,
    /// Units returned by a release.
    Released = 3,
    /// Units returned by expiry.
    Expired = 4,
}

impl ReservationStatus {
    /// The status for a number, if it is one.
    pub const fn from_u16(value: u16) -> Option<ReservationStatus> {
        match value {
            1 => Some(ReservationStatus::Reserved),
            2 => Some(ReservationStatus::Confirmed),
            3 => Some(ReservationStatus::Released),
            4 => Some(ReservationStatus::Expired),
            _ => None,
        }
    }
}

impl Default for Account {
    fn default() -> Self {
        Self::zeroed()
    }
}

impl Default for Sku {
    fn default() -> Self {
        Self::zeroed()
    }
}

const _: () = assert!(std::mem::size_of::<Account>() == 128);
const _: () = assert!(std::mem::size_of::<Transfer>() == 128);
const _: () = assert!(std::mem::size_of::<Sku>() == 128);
const _: () = assert!(std::mem::size_of::<Reservation>() == 64);
const _: () = assert!(std::mem::size_of::<ReservationKey>() == 32);
const _: () = assert!(std::mem::size_of::<OrderLine>() == 16);
const _: () = assert!(std::mem::size_of::<Order>() == 256);
const _: () = assert!(std::mem::size_of::<CompactOrder>() == 128);
const _: () = assert!(std::mem::size_of::<OrderAction>() == 64);
const _: () = assert!(std::mem::size_of::<DispatchAck>() == 32);
const _: () = assert!(std::mem::size_of::<ShardLeg>() == 144);
const _: () = assert!(std::mem::size_of::<ShardOutcome>() == 32);
const _: () = assert!(std::mem::size_of::<SpanningOrder>() == 272);
const _: () = assert!(std::mem::size_of::<OrderMessage>() == 176);
const _: () = assert!(std::mem::size_of::<OrderOutcome>() == 32);
const _: () = assert!(std::mem::size_of::<UnitStep>() == 272);
const _: () = assert!(std::mem::size_of::<UnitOutcome>() == 32);

/// Serde helper: a u128 that is not an id still travels as a decimal string.
mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        crate::ids::AccountId::deserialize(deserializer).map(|id| id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_offsets_match_docs() {
        // The offsets drawn in docs/RECORDS.md; a change here is a format change.
        assert_eq!(std::mem::offset_of!(Transfer, amount), 80);
        assert_eq!(std::mem::offset_of!(Transfer, timeout_ns), 88);
        assert_eq!(std::mem::offset_of!(Transfer, ledger), 96);
        assert_eq!(std::mem::offset_of!(Transfer, flags), 102);
        assert_eq!(std::mem::offset_of!(Transfer, timestamp), 104);
        assert_eq!(std::mem::offset_of!(Account, ledger), 64);
        assert_eq!(std::mem::offset_of!(Account, timestamp), 72);
        assert_eq!(std::mem::offset_of!(Order, lines), 128);
        assert_eq!(std::mem::offset_of!(Sku, limit_per_buyer), 56);
        assert_eq!(std::mem::offset_of!(CompactOrder, sku_id), 80);
        assert_eq!(std::mem::offset_of!(CompactOrder, ledger), 104);
        assert_eq!(std::mem::offset_of!(CompactOrder, quantity), 108);
        assert_eq!(std::mem::offset_of!(CompactOrder, flags), 112);
    }

    #[test]
    fn only_an_order_the_compact_form_gives_back_whole_is_packed() {
        let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
        lines[0] = OrderLine {
            sku_id: SkuId(9),
            quantity: 2,
            reserved: 0,
        };
        let order = Order {
            id: OrderId(1),
            buyer_id: AccountId(2),
            merchant_id: AccountId(3),
            transfer_id: TransferId(4),
            user_data: u128::MAX,
            amount: 5,
            timeout_ns: 6,
            ledger: 7,
            line_count: 1,
            flags: 0x8000,
            lines,
            ..Order::default()
        };
        let compact = CompactOrder::of(&order).expect("one plain line");
        assert_eq!(compact.order(), order);
        let mut second_line = order;
        second_line.lines[1] = OrderLine {
            sku_id: SkuId(10),
            quantity: 1,
            reserved: 0,
        };
        let lost: [fn(&mut Order); 6] = [
            |o| o.line_count = 2,
            |o| o.timestamp = 1,
            |o| o.status = 1,
            |o| o.reserved[13] = 1,
            |o| o.lines[0].reserved = 1,
            |o| o.lines[7].quantity = 1,
        ];
        for change in lost {
            let mut changed = order;
            change(&mut changed);
            assert_eq!(CompactOrder::of(&changed), None, "{changed:?}");
        }
        assert_eq!(CompactOrder::of(&second_line), None);
    }

    #[test]
    fn records_are_little_endian_bytes() {
        let transfer = Transfer {
            id: TransferId(0x0102),
            amount: 7,
            ..Default::default()
        };
        let bytes = bytemuck::bytes_of(&transfer);
        assert_eq!(&bytes[0..2], &[0x02, 0x01]);
        assert_eq!(bytes[80], 7);
        let back: Transfer = bytemuck::pod_read_unaligned(bytes);
        assert_eq!(back, transfer);
    }

    #[test]
    fn json_form_round_trips_and_skips_reserved() {
        let transfer = Transfer {
            id: TransferId(u128::MAX),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 10,
            ledger: 1,
            code: 1,
            ..Default::default()
        };
        let json = serde_json::to_string(&transfer).unwrap();
        assert!(!json.contains("reserved"), "{json}");
        let back: Transfer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, transfer);
    }
}
