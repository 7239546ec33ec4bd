//! Record builders for the tests: a valid command of each kind in one call, so a test
//! spells out only the fields it is about (`Transfer { amount: 0, ..transfer(..) }`).

use crate::ids::{AccountId, DispatchId, OrderId, SkuId, TransferId};
use crate::records::{
    account_flags, transfer_flags, Account, DispatchAck, Order, OrderAction, OrderLine,
    Reservation, ReservationKey, Sku, Transfer, ORDER_LINES_MAX,
};

/// The ledger (currency) every fixture lives on.
pub(super) const LEDGER: u32 = 1;
/// Account `code` of every fixture account.
pub(super) const ACCOUNT_CODE: u16 = 10;
/// Transfer `code` of client transfers (below Surge's own codes).
pub(super) const TRANSFER_CODE: u16 = 20;
/// Unpaid fixture orders expire this long after they are placed.
pub(super) const ORDER_TIMEOUT_NS: u64 = 1_000_000;
/// Direct fixture reservations expire this long after they are made.
pub(super) const RESERVATION_TIMEOUT_NS: u64 = 1_000_000;

/// An unconstrained account that funds the others (it may go negative).
pub(super) const BANK: AccountId = AccountId(1);
/// A wallet that cannot go negative.
pub(super) const BUYER: AccountId = AccountId(2);
/// A second wallet that cannot go negative.
pub(super) const BUYER_2: AccountId = AccountId(3);
/// An unconstrained merchant account.
pub(super) const MERCHANT: AccountId = AccountId(4);
/// An account id no fixture creates.
pub(super) const NOBODY: AccountId = AccountId(99);

/// Ten units, no per-buyer limit.
pub(super) const SKU_A: SkuId = SkuId(1);
/// Three units, at most two per buyer.
pub(super) const SKU_B: SkuId = SkuId(2);
/// One unit, no limit: sells out at once.
pub(super) const SKU_C: SkuId = SkuId(3);
/// A SKU id no fixture creates.
pub(super) const SKU_NONE: SkuId = SkuId(99);

/// A plain account on [`LEDGER`].
pub(super) fn account(id: AccountId) -> Account {
    Account {
        id,
        ledger: LEDGER,
        code: ACCOUNT_CODE,
        ..Account::default()
    }
}

/// A wallet whose debits may never exceed its credits.
pub(super) fn wallet(id: AccountId) -> Account {
    Account {
        flags: account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ..account(id)
    }
}

/// A single-phase transfer on [`LEDGER`].
pub(super) fn transfer(id: u128, debit: AccountId, credit: AccountId, amount: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: LEDGER,
        code: TRANSFER_CODE,
        ..Transfer::default()
    }
}

/// Phase one: hold `amount`, released after `timeout_ns` (0 = never).
pub(super) fn pending(
    id: u128,
    debit: AccountId,
    credit: AccountId,
    amount: u64,
    timeout_ns: u64,
) -> Transfer {
    Transfer {
        flags: transfer_flags::PENDING,
        timeout_ns,
        ..transfer(id, debit, credit, amount)
    }
}

/// Phase two: capture `amount` of `pending_id` (0 = all of it), naming nothing else.
pub(super) fn post(id: u128, pending_id: u128, amount: u64) -> Transfer {
    Transfer {
        id: TransferId(id),
        pending_id: TransferId(pending_id),
        amount,
        flags: transfer_flags::POST_PENDING,
        ..Transfer::default()
    }
}

/// Phase two: release `pending_id`.
pub(super) fn void(id: u128, pending_id: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        pending_id: TransferId(pending_id),
        flags: transfer_flags::VOID_PENDING,
        ..Transfer::default()
    }
}

/// `transfer` with the `linked` flag added.
pub(super) fn linked(transfer: Transfer) -> Transfer {
    Transfer {
        flags: transfer.flags | transfer_flags::LINKED,
        ..transfer
    }
}

/// `account` with the `linked` flag added.
pub(super) fn linked_account(account: Account) -> Account {
    Account {
        flags: account.flags | account_flags::LINKED,
        ..account
    }
}

/// A SKU with `stocked` units and a per-buyer limit (0 = none).
pub(super) fn sku(id: SkuId, stocked: u64, limit_per_buyer: u32) -> Sku {
    Sku {
        id,
        units_stocked: stocked,
        limit_per_buyer,
        ..Sku::default()
    }
}

/// A direct reservation of `quantity` units for `buyer`, expiring after
/// [`RESERVATION_TIMEOUT_NS`].
pub(super) fn reservation(order: u128, buyer: AccountId, sku: SkuId, quantity: u32) -> Reservation {
    Reservation {
        order_id: OrderId(order),
        buyer_id: buyer,
        sku_id: sku,
        quantity,
        timeout_ns: RESERVATION_TIMEOUT_NS,
        ..Reservation::default()
    }
}

/// Names a direct reservation.
pub(super) fn key(order: u128, sku: SkuId) -> ReservationKey {
    ReservationKey {
        order_id: OrderId(order),
        sku_id: sku,
        ..ReservationKey::default()
    }
}

/// An order of [`BUYER`] from [`MERCHANT`] for `amount`, authorized by pending transfer
/// `transfer_id`, expiring after [`ORDER_TIMEOUT_NS`].
pub(super) fn order(id: u128, transfer_id: u128, amount: u64, lines: &[(SkuId, u32)]) -> Order {
    assert!(
        lines.len() <= ORDER_LINES_MAX,
        "a fixture order fits in one record"
    );
    let mut order_lines = [OrderLine::default(); ORDER_LINES_MAX];
    for (slot, &(sku_id, quantity)) in order_lines.iter_mut().zip(lines) {
        *slot = OrderLine {
            sku_id,
            quantity,
            reserved: 0,
        };
    }
    Order {
        id: OrderId(id),
        buyer_id: BUYER,
        merchant_id: MERCHANT,
        transfer_id: TransferId(transfer_id),
        amount,
        timeout_ns: ORDER_TIMEOUT_NS,
        ledger: LEDGER,
        line_count: u16::try_from(lines.len()).expect("at most eight lines"),
        lines: order_lines,
        ..Order::default()
    }
}

/// Pay, cancel or refund `order`, creating transfer `transfer_id`.
pub(super) fn action(order: u128, transfer_id: u128) -> OrderAction {
    OrderAction {
        order_id: OrderId(order),
        transfer_id: TransferId(transfer_id),
        ..Default::default()
    }
}

/// Acknowledge the dispatch request of `order`.
pub(super) fn ack(order: u128) -> DispatchAck {
    DispatchAck {
        dispatch_id: DispatchId(order),
        ..DispatchAck::default()
    }
}
