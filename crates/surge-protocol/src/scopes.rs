//! Scopes: what a token may do. A connection's scopes are granted once, at the handshake,
//! and every request's operation is checked against them.

use surge_core::Operation;

/// A set of scopes, as the bit set carried in a `Welcome` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u32);

impl Scopes {
    /// No scope: a token with it can connect but do nothing.
    pub const NONE: Scopes = Scopes(0);
    /// Create accounts, transfers, SKUs, reservations and orders, and act on them
    /// (operations 1 to 10).
    pub const PAYMENTS: Scopes = Scopes(1 << 0);
    /// Lookups: every `Lookup` frame over TCP, the `GET` routes over HTTP.
    pub const READ: Scopes = Scopes(1 << 1);
    /// Acknowledge dispatch requests (operation 11).
    pub const DISPATCH: Scopes = Scopes(1 << 2);
    /// Every defined scope.
    pub const ALL: Scopes = Scopes(Self::PAYMENTS.0 | Self::READ.0 | Self::DISPATCH.0);

    /// The scopes named by `bits`, or `None` if an undefined bit is set.
    pub const fn from_bits(bits: u32) -> Option<Scopes> {
        if bits & !Self::ALL.0 == 0 {
            Some(Scopes(bits))
        } else {
            None
        }
    }

    /// The bit set.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Both sets together.
    pub const fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    /// Whether every scope of `other` is in `self`.
    pub const fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// The scope a client needs to send `operation`, or `None` if no client may send it:
    /// the engine's own operations (a pulse, the messages between shards). Only
    /// operations 1..=11 and 19 are client operations.
    pub const fn required_for(operation: Operation) -> Option<Scopes> {
        match operation {
            Operation::Pulse
            | Operation::ShardDebit
            | Operation::ShardCredit
            | Operation::ShardResolve
            | Operation::ReserveOrders
            | Operation::OrderLegs
            | Operation::OrderResolve
            | Operation::OrderConfirm
            | Operation::OrderUnits
            | Operation::UnitConfirm => None,
            Operation::AckDispatch => Some(Self::DISPATCH),
            Operation::CreateAccounts
            | Operation::CreateTransfers
            | Operation::CreateSkus
            | Operation::Reserve
            | Operation::ConfirmReservations
            | Operation::ReleaseReservations
            | Operation::PlaceOrders
            | Operation::PlaceOrdersCompact
            | Operation::PayOrders
            | Operation::CancelOrders
            | Operation::RefundOrders => Some(Self::PAYMENTS),
        }
    }

    /// Whether these scopes allow `operation`.
    pub const fn allows(self, operation: Operation) -> bool {
        match Self::required_for(operation) {
            Some(required) => self.contains(required),
            None => false,
        }
    }

    /// Whether these scopes allow `Lookup` frames (any lookup operation needs `read`).
    pub const fn allows_lookups(self) -> bool {
        self.contains(Self::READ)
    }

    /// The scope called `name` (`payments`, `read`, `dispatch`).
    pub fn from_name(name: &str) -> Option<Scopes> {
        match name {
            "payments" => Some(Self::PAYMENTS),
            "read" => Some(Self::READ),
            "dispatch" => Some(Self::DISPATCH),
            _ => None,
        }
    }

    /// The names of the scopes in the set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::PAYMENTS, "payments"),
            (Self::READ, "read"),
            (Self::DISPATCH, "dispatch"),
        ]
        .into_iter()
        .filter(|(scope, _)| self.contains(*scope))
        .map(|(_, name)| name)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_need_their_scope() {
        assert!(Scopes::PAYMENTS.allows(Operation::CreateTransfers));
        assert!(!Scopes::PAYMENTS.allows(Operation::AckDispatch));
        assert!(Scopes::DISPATCH.allows(Operation::AckDispatch));
        assert!(!Scopes::READ.allows(Operation::CreateAccounts));
        assert!(!Scopes::ALL.allows(Operation::Pulse));
        assert!(Scopes::READ.allows_lookups());
        assert!(!Scopes::PAYMENTS.union(Scopes::DISPATCH).allows_lookups());
        for &operation in Operation::ALL {
            let client = matches!(operation as u8, 1..=11 | 19);
            assert_eq!(
                Scopes::required_for(operation).is_some(),
                client,
                "{operation:?}"
            );
        }
        assert_eq!(Scopes::from_bits(8), None);
        assert_eq!(
            Scopes::from_bits(5),
            Some(Scopes::PAYMENTS.union(Scopes::DISPATCH))
        );
        assert_eq!(Scopes::ALL.names(), ["payments", "read", "dispatch"]);
        assert_eq!(Scopes::from_name("read"), Some(Scopes::READ));
    }
}
