//! Result codes: the outcome of every command, as data.
//!
//! The numbers are stable: they go on the wire and into the log, so a number is never
//! reused or renumbered. New codes take new numbers. `docs/RESULT_CODES.md` is generated
//! from [`ResultCode::ALL`] and checked by a test, so the documentation cannot drift.

use serde::{Deserialize, Serialize};

macro_rules! result_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $meaning:literal, $action:literal;)*) => {
        /// The outcome of one command. `#[repr(u32)]` with stable numbers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u32)]
        #[non_exhaustive]
        #[serde(rename_all = "snake_case")]
        pub enum ResultCode {
            $($(#[$doc])* $name = $value,)*
        }

        impl ResultCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ResultCode] = &[$(ResultCode::$name,)*];

            /// The code for a number read from the wire or the log, if it is one.
            pub const fn from_u32(value: u32) -> Option<ResultCode> {
                match value {
                    $($value => Some(ResultCode::$name),)*
                    _ => None,
                }
            }

            /// What the code means.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(ResultCode::$name => $meaning,)*
                }
            }

            /// What the caller should do about it.
            pub const fn action(self) -> &'static str {
                match self {
                    $(ResultCode::$name => $action,)*
                }
            }
        }
    };
}

result_codes! {
    // --- 0..99: every command ---
    /// The command took effect.
    Ok = 0, "The command took effect.", "Nothing.";
    /// Another command of the same linked chain failed, so this one had no effect.
    LinkedEventFailed = 1,
        "Another command in the same linked chain failed; this one was rolled back.",
        "Look at the code of the failing link, fix it, resubmit the whole chain.";
    /// The batch ended with the `linked` flag still set.
    LinkedEventChainOpen = 2,
        "The last command of the batch has the `linked` flag set, so the chain never closes.",
        "Clear `linked` on the last command of each chain.";
    /// The client set `timestamp`; the engine assigns it.
    TimestampMustBeZero = 3,
        "`timestamp` is assigned by the engine when the command is logged.",
        "Send 0.";
    /// A reserved field or reserved byte is not zero.
    ReservedFieldNotZero = 4,
        "A reserved field is not zero.", "Send zeroes in reserved fields.";
    /// An unknown flag bit is set.
    ReservedFlag = 5,
        "An unknown flag bit is set.", "Send only documented flags.";
    /// The id of the command is zero.
    IdMustNotBeZero = 6,
        "The command's id (or key) is zero, which is never valid.",
        "Generate a non-zero id (see the client docs).";
    /// Flags that exclude each other are both set.
    FlagsAreMutuallyExclusive = 7,
        "Two flags that exclude each other are both set.", "Set at most one of them.";
    /// The same id already took effect with the same fields: no second effect.
    Exists = 8,
        "The same id already took effect with the same fields; nothing new happened.",
        "Treat as success: this is the answer to a retry.";
    /// The same id already exists with different fields.
    ExistsWithDifferentFields = 9,
        "The id was already used with different fields.",
        "Do not retry: use a new id for a new command, or resend the original fields.";
    /// The first attempt with this id failed; ids are never reused.
    IdAlreadyFailed = 10,
        "The first command with this id failed, and an id keeps its first outcome forever.",
        "Use a new id for a new attempt; look the id up to see why it failed.";

    // --- 100..199: accounts ---
    /// `ledger` is zero.
    LedgerMustNotBeZero = 100,
        "`ledger` is zero.", "Send the ledger (currency) number.";
    /// `code` is zero.
    CodeMustNotBeZero = 101,
        "`code` (the kind of account or transfer) is zero.", "Send a non-zero code.";
    /// Balances must be zero when an account is created.
    BalancesMustBeZero = 102,
        "An account is created with all four balances zero.", "Send zero balances.";

    /// The account id is in the range Surge reserves for its own accounts.
    AccountIdReserved = 103,
        "The account id's high 64 bits are all ones: that range is reserved for Surge's own \
         (transit) accounts, which clients may neither create nor name in a transfer.",
        "Use an id below 2^128 - 2^64.";

    // --- 200..299: transfers ---
    /// Debit and credit account are the same.
    AccountsMustBeDifferent = 200,
        "The debit and the credit account are the same account.", "Use two accounts.";
    /// `debit_account_id` is zero.
    DebitAccountIdMustNotBeZero = 201,
        "`debit_account_id` is zero.", "Send the account to debit.";
    /// `credit_account_id` is zero.
    CreditAccountIdMustNotBeZero = 202,
        "`credit_account_id` is zero.", "Send the account to credit.";
    /// `amount` is zero.
    AmountMustNotBeZero = 203,
        "`amount` is zero.", "Send a positive amount in minor units.";
    /// The debit account does not exist.
    DebitAccountNotFound = 204,
        "The debit account (the buyer, for orders) does not exist.",
        "Create the account first, then use a new transfer id.";
    /// The credit account does not exist.
    CreditAccountNotFound = 205,
        "The credit account (the merchant, for orders) does not exist.",
        "Create the account first, then use a new transfer id.";
    /// The two accounts are on different ledgers.
    AccountsMustHaveSameLedger = 206,
        "The two accounts are on different ledgers (currencies).",
        "Move money only within one ledger.";
    /// The transfer's ledger differs from the accounts' ledger.
    TransferMustHaveSameLedgerAsAccounts = 207,
        "The transfer's `ledger` differs from the accounts' ledger.", "Send the accounts' ledger.";
    /// The debit account would owe more than it holds.
    ExceedsCredits = 208,
        "Insufficient funds: the debit account has `debits_must_not_exceed_credits` and \
         this transfer would take its debits (pending + posted) past its posted credits.",
        "Top the account up, then submit with a new id.";
    /// The credit account would be credited past its debits.
    ExceedsDebits = 209,
        "The credit account has `credits_must_not_exceed_debits` and this transfer would \
         take its credits (pending + posted) past its posted debits.",
        "Reduce the amount, then submit with a new id.";
    /// A balance would overflow 64 bits.
    Overflows = 210,
        "A balance (pending, posted, or their sum) would pass 2^64 - 1 minor units.",
        "Split the amount across accounts; balances never wrap.";
    /// `pending_id` is set on a transfer that neither posts nor voids.
    PendingIdMustBeZero = 211,
        "`pending_id` is set but the transfer neither posts nor voids.", "Send 0.";
    /// `pending_id` is zero on a post or void.
    PendingIdMustNotBeZero = 212,
        "A post or void does not name the pending transfer.", "Send `pending_id`.";
    /// `pending_id` equals the transfer's own id.
    PendingIdMustBeDifferent = 213,
        "`pending_id` equals the transfer's own id.", "Use a new id for the post or void.";
    /// `timeout_ns` is set on a transfer that is not pending.
    TimeoutReservedForPendingTransfer = 214,
        "`timeout_ns` is only meaningful for a pending transfer.", "Send 0.";
    /// The pending transfer does not exist.
    PendingTransferNotFound = 215,
        "No transfer has the id given in `pending_id`.",
        "Check the id; use a new id for the next attempt.";
    /// The referenced transfer is not a pending transfer.
    PendingTransferNotPending = 216,
        "The transfer named by `pending_id` is single-phase, not pending.", "Check the id.";
    /// The pending transfer was already posted.
    PendingTransferAlreadyPosted = 217,
        "The pending transfer was already posted (by another id).", "Nothing to do.";
    /// The pending transfer was already voided.
    PendingTransferAlreadyVoided = 218,
        "The pending transfer was already voided (by another id).", "Nothing to do.";
    /// The pending transfer's timeout passed; its hold was released.
    PendingTransferExpired = 219,
        "The pending transfer's timeout passed in log time and its hold was released.",
        "Authorize again with a new pending transfer.";
    /// A post/void names accounts or a ledger other than the pending transfer's.
    PendingTransferHasDifferentFields = 220,
        "The post or void names accounts, a ledger or a code other than the pending \
         transfer's.",
        "Send zero (meaning: as pending) or the pending transfer's values.";
    /// Post amount larger than the pending amount, or void amount not the pending amount.
    ExceedsPendingAmount = 221,
        "A post's amount exceeds the pending amount, or a void's amount is neither zero nor \
         the pending amount.",
        "Post at most the pending amount (0 posts all of it).";
    /// The pending transfer belongs to an order; use the order commands.
    PendingTransferOwnedByOrder = 222,
        "The pending transfer is an order's payment authorization.",
        "Pay, cancel or let the order expire instead.";
    /// `timestamp + timeout_ns` would pass 2^64 - 1.
    TimeoutOverflows = 223,
        "The log timestamp plus the timeout would pass 2^64 - 1 ns.", "Send a smaller timeout.";
    /// `code` is at or above 0xFF00: those codes are Surge's own (order transfers).
    CodeReserved = 224,
        "The transfer `code` is 0xFF00 or above; those codes mark transfers Surge creates \
         for orders.",
        "Use a code below 0xFF00.";

    // --- 300..399: inventory ---
    /// The SKU does not exist.
    SkuNotFound = 300,
        "The SKU does not exist.", "Create the SKU first, then use a new id.";
    /// `quantity` is zero.
    QuantityMustNotBeZero = 301,
        "`quantity` is zero.", "Reserve at least one unit.";
    /// Not enough units available.
    SoldOut = 302,
        "Not enough units are available (the rest are reserved or sold).",
        "Tell the buyer; a new attempt needs a new id.";
    /// The buyer would hold more units than the per-buyer limit.
    LimitReached = 303,
        "The buyer would hold (reserved + bought) more units of this SKU than its \
         per-buyer limit.",
        "Tell the buyer; the limit frees up only if a reservation is released.";
    /// `buyer_id` is zero.
    BuyerIdMustNotBeZero = 304,
        "`buyer_id` is zero.", "Send the buyer's account id.";
    /// Unit counters must be zero when a SKU is created (except `units_stocked`).
    UnitCountersMustBeZero = 305,
        "A SKU is created with `units_stocked` only; the other counters must be zero.",
        "Send zero.";
    /// A reservation or order needs a timeout.
    TimeoutMustNotBeZero = 306,
        "A reservation or an order must say when it expires if unpaid.",
        "Send `timeout_ns` > 0.";
    /// The reservation does not exist.
    ReservationNotFound = 307,
        "No reservation for this order id and SKU.", "Check the ids.";
    /// The reservation expired and its units went back to stock.
    ReservationExpired = 308,
        "The reservation expired in log time; its units went back to stock.",
        "Reserve again with a new order id.";
    /// The reservation was already confirmed.
    ReservationAlreadyConfirmed = 309,
        "The reservation was already confirmed (sold).", "Nothing to do.";
    /// The reservation was already released.
    ReservationAlreadyReleased = 310,
        "The reservation was already released.", "Nothing to do.";
    /// `sku_id` is zero.
    SkuIdMustNotBeZero = 311,
        "`sku_id` is zero.", "Send the SKU id.";

    // --- 400..499: orders ---
    /// `line_count` is 0 or too large, or a line past `line_count` is not zero.
    OrderLinesInvalid = 400,
        "`line_count` is 0 or above 8, or a line past `line_count` is not all zero.",
        "Send 1..=8 lines and zero the rest.";
    /// The same SKU appears on two lines.
    DuplicateSkuInOrder = 401,
        "The same SKU is on two lines of the order.", "Merge the lines.";
    /// The order does not exist.
    OrderNotFound = 402,
        "The order does not exist.", "Check the id; a new attempt needs a new transfer id.";
    /// The order expired unpaid; its hold and units were released.
    OrderExpired = 403,
        "The order was not paid before its timeout; its funds hold and units were released.",
        "Place a new order.";
    /// The order was cancelled.
    OrderCancelled = 404,
        "The order was cancelled.", "Place a new order.";
    /// The order is already paid (or dispatched, or refunded).
    OrderAlreadyPaid = 405,
        "The order is already paid (possibly dispatched or refunded since).",
        "Refund it instead of cancelling; a second payment is never taken.";
    /// The order is not paid, so it cannot be refunded.
    OrderNotPaid = 406,
        "Only a paid (or dispatched) order can be refunded.", "Cancel it instead.";
    /// The order was already refunded.
    OrderAlreadyRefunded = 407,
        "The order was already refunded (by another transfer id).", "Nothing to do.";
    /// The order's transfer id is already used by another transfer.
    TransferIdInUse = 408,
        "The transfer id carried by the order command is already used by another transfer.",
        "Use a fresh transfer id.";
    /// The merchant and buyer are the same account.
    BuyerMustNotBeMerchant = 409,
        "The buyer and the merchant are the same account.", "Use two accounts.";
    /// The order's buyer or lines live on other shards, and its funds hold or units were
    /// not confirmed within the saga's authorization timeout.
    OrderAuthorizationTimedOut = 410,
        "The order's buyer, merchant or SKU lines live on other shards, and those shards \
         did not confirm the units and the funds hold within the authorization timeout \
         (30 s of log time): the units were released, the hold is voided if it was made, \
         and the order id has failed.",
        "Place the order again under a new order id and transfer id.";

    // --- 500..599: dispatch outbox ---
    /// No dispatch request has this id.
    DispatchNotFound = 500,
        "No dispatch request has this id (its order was never paid).", "Check the id.";
    /// The dispatch request was cancelled by a refund before it was acknowledged.
    DispatchCancelled = 501,
        "The order was refunded before logistics acknowledged it; do not ship.",
        "Drop the request.";

    // --- 600..699: shards (answered by the engine's router; nothing is logged) ---
    /// A linked chain names accounts on more than one shard.
    LinkedChainSpansShards = 600,
        "The transfers of a linked chain debit or credit accounts on different shards; a \
         chain is atomic only within one shard. Nothing was logged: the ids stay free.",
        "Split the chain, or keep its accounts on one shard.";
    /// Not sent to clients any more: pending transfers, posts and voids between shards
    /// are supported. The engine's own cross-shard messages carry it if malformed.
    CrossShardPendingUnsupported = 601,
        "A cross-shard message had flags the engine never sends (earlier versions refused \
         pending transfers between shards with this code).",
        "Report it: clients cannot cause it.";
    /// Not sent to clients any more: an order whose SKU lines live on several shards
    /// runs as an order saga (since 2026-12-07).
    OrderSpansShards = 602,
        "No longer returned: an order whose SKUs live on several shards runs as an order \
         saga (docs/SHARDS.md). Earlier versions refused such an order with this code, \
         logging nothing.",
        "Nothing: clients cannot cause it any more.";
    /// A shard's queue is full.
    Busy = 603,
        "The engine's queue for a shard is full; nothing was logged.",
        "Retry later with the same ids.";
    /// A post or void of a cross-shard pending transfer whose credit side has not answered.
    PendingTransferInFlight = 604,
        "The pending transfer's credit account lives on another shard, and that shard has \
         not yet accepted or refused it (the pending transfer itself has not been answered). \
         Nothing was stored: the id stays free.",
        "Wait for the pending transfer's answer, then retry with the same id.";
    /// An action on an order whose buyer, merchant or lines live on other shards while an
    /// earlier step of that order is still travelling between shards.
    OrderInFlight = 605,
        "The order's buyer, merchant or SKU lines live on other shards, and an earlier step \
         of the order (placing it, or a pay, cancel or refund) has not been answered by them \
         yet. Nothing was stored: the id stays free.",
        "Wait for the earlier step's answer, then retry with the same id.";
}

impl ResultCode {
    /// Whether the command took effect, now or on an earlier attempt with the same id.
    pub const fn is_success(self) -> bool {
        matches!(self, ResultCode::Ok | ResultCode::Exists)
    }

    /// Whether the same command may succeed later: nothing was stored, the id stays free,
    /// and the cause passes (a full queue, an earlier step still travelling between
    /// shards). An answer with such a code is not an idempotent request's final answer.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            ResultCode::Busy | ResultCode::PendingTransferInFlight | ResultCode::OrderInFlight
        )
    }

    /// The snake_case name, as in JSON (`exceeds_credits`).
    pub fn name(self) -> String {
        let debug = format!("{self:?}");
        let mut name = String::with_capacity(debug.len() + 8);
        for (index, c) in debug.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if index > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_lowercase());
            } else {
                name.push(c);
            }
        }
        name
    }

    /// The stable number on the wire and in the log.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }
}

impl std::fmt::Display for ResultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({})", self, self.as_u32())
    }
}

/// Renders the result-code reference (`docs/RESULT_CODES.md`) from [`ResultCode::ALL`].
pub fn result_codes_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Result codes\n\n");
    out.push_str(
        "Every command gets exactly one result code. The numbers are stable: they go on the \
         wire and into the log and are never reused. Codes 0..99 apply to every command, \
         100.. accounts, 200.. transfers, 300.. inventory, 400.. orders, 500.. the dispatch \
         outbox, 600.. the engine's routing between shards. Order commands also return the \
         transfer and inventory codes of the leg that failed (the buyer is the debit \
         account, the merchant the credit account).\n\n",
    );
    out.push_str(
        "This file is generated from `crates/surge-core/src/result.rs` \
                  (`cargo run -p surge -- codes > docs/RESULT_CODES.md`); a test keeps it \
                  in step.\n\n",
    );
    out.push_str("| code | name | meaning | what the caller should do |\n");
    out.push_str("|---:|---|---|---|\n");
    for code in ResultCode::ALL {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            code.as_u32(),
            code.name(),
            code.meaning(),
            code.action()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in ResultCode::ALL {
            assert!(
                seen.insert(code.as_u32()),
                "duplicate number {}",
                code.as_u32()
            );
            assert_eq!(ResultCode::from_u32(code.as_u32()), Some(code));
        }
        assert_eq!(ResultCode::from_u32(99_999), None);
    }

    #[test]
    fn stable_numbers_never_move() {
        // These numbers are on the wire and in logs; changing one breaks every client.
        assert_eq!(ResultCode::Ok.as_u32(), 0);
        assert_eq!(ResultCode::Exists.as_u32(), 8);
        assert_eq!(ResultCode::ExceedsCredits.as_u32(), 208);
        assert_eq!(ResultCode::SoldOut.as_u32(), 302);
        assert_eq!(ResultCode::LimitReached.as_u32(), 303);
        assert_eq!(ResultCode::OrderExpired.as_u32(), 403);
    }

    #[test]
    fn names_match_json() {
        for &code in ResultCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.name()));
        }
    }

    #[test]
    fn docs_are_generated_from_the_codes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/RESULT_CODES.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == result_codes_markdown(),
            "docs/RESULT_CODES.md is stale: run \
             `cargo run -p surge -- codes > docs/RESULT_CODES.md`"
        );
    }
}
