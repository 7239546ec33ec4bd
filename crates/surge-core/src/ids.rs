//! Typed identifiers. Every id is a newtype so that a `SkuId` can never pose as an
//! `AccountId`; all of them are plain little-endian integers inside records.
//!
//! In JSON, 128-bit ids travel as decimal strings (JavaScript numbers lose precision past
//! 2^53); a JSON number is accepted on input too.

use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! id_u128 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Pod, Zeroable)]
        #[repr(transparent)]
        pub struct $name(pub u128);

        impl $name {
            /// The zero id, which is never a valid id.
            pub const ZERO: Self = Self(0);

            /// Whether this is the (invalid) zero id.
            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserialize_u128(deserializer).map(Self)
            }
        }
    };
}

id_u128!(
    /// A ledger account (a buyer wallet, a merchant account, a transit account), chosen by
    /// the client; never zero.
    AccountId
);
id_u128!(
    /// A transfer, chosen by the client; never zero. It is also the idempotency key.
    TransferId
);
id_u128!(
    /// An order, chosen by the client; never zero. For direct reservations it names the
    /// order the units are held for.
    OrderId
);
id_u128!(
    /// A dispatch request in the logistics outbox. One order becomes paid at most once, so
    /// the dispatch id equals the order id's value: stable across redeliveries.
    DispatchId
);

/// A stock-keeping unit, chosen by the client; never zero.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Pod,
    Zeroable,
    Serialize,
    Deserialize,
)]
#[repr(transparent)]
#[serde(transparent)]
pub struct SkuId(pub u64);

impl SkuId {
    /// Whether this is the (invalid) zero id.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Display for SkuId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<OrderId> for DispatchId {
    fn from(order_id: OrderId) -> Self {
        Self(order_id.0)
    }
}

/// Where a command sits in the log: the record holding its batch, and its place in the
/// batch. Ordered as the log is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// Index of the log record (0, 1, 2, … across the whole log).
    pub record_index: u64,
    /// Index of the command within the record's batch.
    pub command_index: u32,
}

/// Accepts a u128 as a decimal string or as a JSON number.
fn deserialize_u128<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u128;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an unsigned 128-bit integer, as a decimal string or a number")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u128, E> {
            Ok(u128::from(v))
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<u128, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u128, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::invalid_value(serde::de::Unexpected::Str(v), &self));
            }
            v.parse::<u128>()
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    deserializer.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_travel_as_decimal_strings_in_json() {
        let id = AccountId(u128::MAX);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", u128::MAX));
        assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
        assert_eq!(
            serde_json::from_str::<AccountId>("42").unwrap(),
            AccountId(42)
        );
    }

    #[test]
    fn malformed_ids_are_rejected_not_wrapped() {
        assert!(serde_json::from_str::<AccountId>("\"-1\"").is_err());
        assert!(serde_json::from_str::<AccountId>("\"\"").is_err());
        assert!(serde_json::from_str::<AccountId>("\"1e3\"").is_err());
        let too_big = format!("\"{}0\"", u128::MAX);
        assert!(serde_json::from_str::<AccountId>(&too_big).is_err());
        assert!(serde_json::from_str::<AccountId>("-5").is_err());
    }
}
