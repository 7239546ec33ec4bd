//! The JSON shapes of request bodies (`deny_unknown_fields`) and how each becomes a
//! fixed-size record. 128-bit ids and u64 amounts accept decimal strings or numbers.

use serde::{Deserialize, Deserializer};
use surge_core::records::ORDER_LINES_MAX;
use surge_core::{
    account_flags, transfer_flags, Account, AccountId, DispatchAck, DispatchId, Order, OrderId,
    OrderLine, Reservation, ReservationKey, ResultCode, Sku, SkuId, Transfer, TransferId,
};

use super::{RequestError, RequestErrorCode};

fn flag<T: Default + std::ops::BitOr<Output = T>>(set: bool, bit: T) -> T {
    if set {
        bit
    } else {
        T::default()
    }
}

/// A u64 as a JSON number or a decimal string (JavaScript loses precision past 2^53).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct U64(pub(super) u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<U64, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an unsigned 64-bit integer, as a number or a decimal string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::invalid_value(serde::de::Unexpected::Str(v), &self));
                }
                v.parse()
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_any(Visitor).map(U64)
    }
}

/// A u128 that is not an id (`user_data`), as a decimal string or a number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(super) struct U128(AccountId);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountRequest {
    id: AccountId,
    ledger: u32,
    code: u16,
    #[serde(default)]
    user_data: U128,
    #[serde(default)]
    linked: bool,
    #[serde(default)]
    debits_must_not_exceed_credits: bool,
    #[serde(default)]
    credits_must_not_exceed_debits: bool,
}

impl AccountRequest {
    pub(super) fn into_record(self) -> Result<Account, RequestError> {
        let flags = flag(self.linked, account_flags::LINKED)
            | flag(
                self.debits_must_not_exceed_credits,
                account_flags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
            | flag(
                self.credits_must_not_exceed_debits,
                account_flags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            );
        Ok(Account {
            id: self.id,
            user_data: self.user_data.0 .0,
            ledger: self.ledger,
            code: self.code,
            flags,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransferRequest {
    id: TransferId,
    #[serde(default)]
    debit_account_id: AccountId,
    #[serde(default)]
    credit_account_id: AccountId,
    #[serde(default)]
    amount: U64,
    #[serde(default)]
    ledger: u32,
    #[serde(default)]
    code: u16,
    #[serde(default)]
    pending_id: TransferId,
    #[serde(default)]
    timeout_ns: U64,
    #[serde(default)]
    user_data: U128,
    #[serde(default)]
    linked: bool,
    #[serde(default)]
    pending: bool,
    #[serde(default)]
    post_pending: bool,
    #[serde(default)]
    void_pending: bool,
}

impl TransferRequest {
    pub(super) fn into_record(self) -> Result<Transfer, RequestError> {
        let flags = flag(self.linked, transfer_flags::LINKED)
            | flag(self.pending, transfer_flags::PENDING)
            | flag(self.post_pending, transfer_flags::POST_PENDING)
            | flag(self.void_pending, transfer_flags::VOID_PENDING);
        Ok(Transfer {
            id: self.id,
            debit_account_id: self.debit_account_id,
            credit_account_id: self.credit_account_id,
            pending_id: self.pending_id,
            user_data: self.user_data.0 .0,
            amount: self.amount.0,
            timeout_ns: self.timeout_ns.0,
            ledger: self.ledger,
            code: self.code,
            flags,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PostRequest {
    pub(super) id: TransferId,
    #[serde(default)]
    pub(super) amount: U64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VoidRequest {
    pub(super) id: TransferId,
    #[serde(default)]
    pub(super) amount: U64,
}

/// A SKU id as a number or a decimal string.
fn sku_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SkuId, D::Error> {
    U64::deserialize(deserializer).map(|value| SkuId(value.0))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SkuRequest {
    #[serde(deserialize_with = "sku_id")]
    id: SkuId,
    units_stocked: U64,
    #[serde(default)]
    limit_per_buyer: u32,
    #[serde(default)]
    code: u16,
    #[serde(default)]
    user_data: U128,
}

impl SkuRequest {
    pub(super) fn into_record(self) -> Result<Sku, RequestError> {
        Ok(Sku {
            id: self.id,
            units_stocked: self.units_stocked.0,
            limit_per_buyer: self.limit_per_buyer,
            code: self.code,
            user_data: self.user_data.0 .0,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReservationRequest {
    order_id: OrderId,
    buyer_id: AccountId,
    #[serde(deserialize_with = "sku_id")]
    sku_id: SkuId,
    quantity: u32,
    timeout_ns: U64,
}

impl ReservationRequest {
    pub(super) fn into_record(self) -> Result<Reservation, RequestError> {
        Ok(Reservation {
            order_id: self.order_id,
            buyer_id: self.buyer_id,
            sku_id: self.sku_id,
            quantity: self.quantity,
            timeout_ns: self.timeout_ns.0,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyRequest {
    order_id: OrderId,
    #[serde(deserialize_with = "sku_id")]
    sku_id: SkuId,
}

impl KeyRequest {
    pub(super) fn into_record(self) -> Result<ReservationKey, RequestError> {
        Ok(ReservationKey {
            order_id: self.order_id,
            sku_id: self.sku_id,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LineRequest {
    #[serde(deserialize_with = "sku_id")]
    sku_id: SkuId,
    quantity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrderRequest {
    id: OrderId,
    buyer_id: AccountId,
    merchant_id: AccountId,
    transfer_id: TransferId,
    amount: U64,
    timeout_ns: U64,
    ledger: u32,
    lines: Vec<LineRequest>,
    #[serde(default)]
    user_data: U128,
}

impl OrderRequest {
    pub(super) fn into_record(self) -> Result<Order, RequestError> {
        if self.lines.len() > ORDER_LINES_MAX {
            return Err(RequestError {
                code: RequestErrorCode::Result(ResultCode::OrderLinesInvalid),
                detail: format!(
                    "order {}: {} lines is over the limit of {ORDER_LINES_MAX}",
                    self.id,
                    self.lines.len()
                ),
            });
        }
        let mut lines = [OrderLine::default(); ORDER_LINES_MAX];
        for (slot, line) in lines.iter_mut().zip(&self.lines) {
            slot.sku_id = line.sku_id;
            slot.quantity = line.quantity;
        }
        Ok(Order {
            id: self.id,
            buyer_id: self.buyer_id,
            merchant_id: self.merchant_id,
            transfer_id: self.transfer_id,
            user_data: self.user_data.0 .0,
            amount: self.amount.0,
            timeout_ns: self.timeout_ns.0,
            ledger: self.ledger,
            // At most ORDER_LINES_MAX (checked above), so the cast cannot truncate.
            line_count: self.lines.len() as u16,
            lines,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionRequest {
    pub(super) transfer_id: TransferId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefundRequest {
    pub(super) transfer_id: TransferId,
    #[serde(default)]
    pub(super) restock: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AckRequest {
    dispatch_id: DispatchId,
}

impl AckRequest {
    pub(super) fn into_record(self) -> Result<DispatchAck, RequestError> {
        Ok(DispatchAck {
            dispatch_id: self.dispatch_id,
            ..Default::default()
        })
    }
}
