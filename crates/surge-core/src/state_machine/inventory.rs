//! SKUs and reservations: units move available → reserved → sold, or back to available on
//! release, cancel or expiry. Invariant: for every SKU,
//! `units_available + units_reserved + units_sold == units_stocked`, none negative, and no
//! buyer holds more than the SKU's per-buyer limit.

use std::cmp::Reverse;

use super::table::TableEntry;
use super::{fail, fingerprint, reject, BuyerUnits, Outcome, StateMachine, StoredReservation};
use crate::batch::Operation;
use crate::ids::{AccountId, OrderId, SkuId};
use crate::records::{Reservation, ReservationKey, ReservationStatus, Sku};
use crate::result::ResultCode;

/// Where reserving units writes, found by [`StateMachine::units_plan`]: valid until the
/// next insert into the SKU or buyer-count tables.
pub(crate) struct UnitsPlan {
    sku_index: usize,
    /// For a SKU with a per-buyer limit: the buyer's count's slot, or the vacant one.
    buyer_slot: Option<Result<usize, usize>>,
}

impl StateMachine {
    pub(crate) fn create_sku(&mut self, sku: &Sku, timestamp: u64) -> Outcome {
        if sku.timestamp != 0 {
            reject!(TimestampMustBeZero);
        }
        if sku.reserved != [0; 56] {
            reject!(ReservedFieldNotZero);
        }
        if sku.flags != 0 {
            reject!(ReservedFlag);
        }
        if sku.id.is_zero() {
            reject!(IdMustNotBeZero);
        }
        if sku.units_available != 0 || sku.units_reserved != 0 || sku.units_sold != 0 {
            reject!(UnitCountersMustBeZero);
        }
        if let Some(existing) = self.skus.get(&sku.id.0) {
            let same = existing.user_data == sku.user_data
                && existing.units_stocked == sku.units_stocked
                && existing.limit_per_buyer == sku.limit_per_buyer
                && existing.code == sku.code;
            return Outcome::Existing(if same {
                ResultCode::Exists
            } else {
                ResultCode::ExistsWithDifferentFields
            });
        }
        self.skus.insert(
            sku.id.0,
            Sku {
                units_available: sku.units_stocked,
                timestamp,
                ..*sku
            },
        );
        Outcome::Applied
    }

    /// Hints the cache with the reservation key and buyer count `reservation` touches.
    pub(crate) fn prefetch_reservation(&self, reservation: &Reservation) {
        self.reservations
            .map
            .prefetch(&(reservation.order_id, reservation.sku_id));
        self.buyer_units
            .map
            .prefetch(&(reservation.sku_id, reservation.buyer_id));
    }

    pub(crate) fn reserve(&mut self, reservation: &Reservation, timestamp: u64) -> Outcome {
        if reservation.timestamp != 0 {
            reject!(TimestampMustBeZero);
        }
        if reservation.status != 0 {
            reject!(ReservedFieldNotZero);
        }
        if reservation.flags != 0 {
            reject!(ReservedFlag);
        }
        if reservation.order_id.is_zero() {
            reject!(IdMustNotBeZero);
        }
        if reservation.sku_id.is_zero() {
            reject!(SkuIdMustNotBeZero);
        }
        if reservation.buyer_id.is_zero() {
            reject!(BuyerIdMustNotBeZero);
        }
        if reservation.quantity == 0 {
            reject!(QuantityMustNotBeZero);
        }
        if reservation.timeout_ns == 0 {
            reject!(TimeoutMustNotBeZero);
        }
        let key = (reservation.order_id, reservation.sku_id);
        let fingerprint = fingerprint(Operation::Reserve as u8, bytemuck::bytes_of(reservation));
        let vacant = match self.reservations.map.find_slot(&key) {
            Err(vacant) => vacant,
            Ok(index) => {
                let stored = self.reservations.map.at(index);
                return Outcome::Existing(if stored.failure().is_some() {
                    ResultCode::IdAlreadyFailed
                } else if stored.fingerprint == fingerprint {
                    ResultCode::Exists
                } else {
                    ResultCode::ExistsWithDifferentFields
                });
            }
        };
        let Some(expires_at) = timestamp.checked_add(reservation.timeout_ns) else {
            fail!(TimeoutOverflows);
        };
        let quantity = u64::from(reservation.quantity);
        match self.reserve_units(reservation.sku_id, reservation.buyer_id, quantity) {
            Outcome::Applied => {}
            other => return other,
        }
        let held = Reservation {
            timestamp,
            status: ReservationStatus::Reserved as u16,
            ..*reservation
        };
        // `vacant` is still the key's slot: reserving units touched other tables only.
        self.reservations
            .fill_vacant(vacant, StoredReservation::held(held, fingerprint));
        self.reservation_expiry
            .push(Reverse((expires_at, key.0, key.1)));
        Outcome::Applied
    }

    pub(crate) fn confirm_reservation(&mut self, key: &ReservationKey, timestamp: u64) -> Outcome {
        let (entry_key, reservation, expires_at) = match self.reservation_for(key) {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        match ReservationStatus::from_u16(reservation.status) {
            Some(ReservationStatus::Reserved) if expires_at <= timestamp => {
                fail!(ReservationExpired)
            }
            Some(ReservationStatus::Reserved) => {}
            Some(ReservationStatus::Confirmed) => return Outcome::Existing(ResultCode::Exists),
            Some(ReservationStatus::Released) => fail!(ReservationAlreadyReleased),
            Some(ReservationStatus::Expired) => fail!(ReservationExpired),
            None => unreachable!("stored reservations have a valid status"),
        }
        self.sell_units(reservation.sku_id, u64::from(reservation.quantity));
        self.set_reservation_status(entry_key, ReservationStatus::Confirmed);
        Outcome::Applied
    }

    pub(crate) fn release_reservation(&mut self, key: &ReservationKey, timestamp: u64) -> Outcome {
        let (entry_key, reservation, expires_at) = match self.reservation_for(key) {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        match ReservationStatus::from_u16(reservation.status) {
            Some(ReservationStatus::Reserved) if expires_at <= timestamp => {
                fail!(ReservationExpired)
            }
            Some(ReservationStatus::Reserved) => {}
            Some(ReservationStatus::Released) => return Outcome::Existing(ResultCode::Exists),
            Some(ReservationStatus::Confirmed) => fail!(ReservationAlreadyConfirmed),
            Some(ReservationStatus::Expired) => fail!(ReservationExpired),
            None => unreachable!("stored reservations have a valid status"),
        }
        self.release_units(
            reservation.sku_id,
            reservation.buyer_id,
            u64::from(reservation.quantity),
        );
        self.set_reservation_status(entry_key, ReservationStatus::Released);
        Outcome::Applied
    }

    /// Looks up a direct reservation for confirm/release.
    fn reservation_for(
        &self,
        key: &ReservationKey,
    ) -> Result<((OrderId, SkuId), Reservation, u64), Outcome> {
        if key.reserved != [0; 8] {
            return Err(Outcome::Rejected(ResultCode::ReservedFieldNotZero));
        }
        if key.order_id.is_zero() {
            return Err(Outcome::Rejected(ResultCode::IdMustNotBeZero));
        }
        if key.sku_id.is_zero() {
            return Err(Outcome::Rejected(ResultCode::SkuIdMustNotBeZero));
        }
        let entry_key = (key.order_id, key.sku_id);
        match self.reservations.get(&entry_key) {
            Some(stored) if stored.failure().is_none() => {
                Ok((entry_key, stored.reservation, stored.expires_at()))
            }
            _ => Err(Outcome::Failed(ResultCode::ReservationNotFound)),
        }
    }

    fn set_reservation_status(&mut self, key: (OrderId, SkuId), status: ReservationStatus) {
        let stored = self
            .reservations
            .get_mut(&key)
            .expect("the caller found it");
        assert!(
            stored.failure().is_none(),
            "the caller found a held reservation"
        );
        stored.reservation.status = status as u16;
    }

    /// Records the failure of a new reservation key.
    pub(crate) fn record_reservation_failure(
        &mut self,
        reservation: &Reservation,
        code: ResultCode,
    ) {
        let key = (reservation.order_id, reservation.sku_id);
        assert!(
            !self.reservations.contains(&key),
            "only new keys fail on the state"
        );
        self.reservations
            .insert(key, StoredReservation::failed(key.0, key.1, code));
    }

    /// Expires a direct reservation whose time came (sweep only).
    pub(crate) fn expire_reservation(&mut self, key: (OrderId, SkuId), due: u64) {
        let Some(stored) = self.reservations.get(&key).copied() else {
            return; // Rolled back after the heap entry was pushed.
        };
        if stored.failure().is_some() {
            return;
        }
        let (reservation, expires_at) = (stored.reservation, stored.expires_at());
        if reservation.status != ReservationStatus::Reserved as u16 || expires_at != due {
            return;
        }
        self.release_units(
            reservation.sku_id,
            reservation.buyer_id,
            u64::from(reservation.quantity),
        );
        self.set_reservation_status(key, ReservationStatus::Expired);
    }

    /// Moves `quantity` units from available to reserved for `buyer_id`, checking the
    /// per-buyer limit and the stock.
    pub(crate) fn reserve_units(
        &mut self,
        sku_id: SkuId,
        buyer_id: AccountId,
        quantity: u64,
    ) -> Outcome {
        match self.units_plan(sku_id, buyer_id, quantity) {
            Ok(plan) => {
                self.take_units(sku_id, buyer_id, quantity, plan);
                Outcome::Applied
            }
            Err(outcome) => outcome,
        }
    }

    /// Reserves what [`StateMachine::units_plan`] checked, at the slots it found.
    #[inline(always)]
    pub(crate) fn take_units(
        &mut self,
        sku_id: SkuId,
        buyer_id: AccountId,
        quantity: u64,
        plan: UnitsPlan,
    ) {
        let sku = self.skus.at_mut(plan.sku_index);
        assert_eq!(sku.id, sku_id, "a plan's slots are still its own");
        sku.units_available = sku
            .units_available
            .checked_sub(quantity)
            .expect("the plan checked the stock");
        sku.units_reserved += quantity;
        match plan.buyer_slot {
            None => {}
            Some(Ok(index)) => {
                let held = self.buyer_units.at_mut(index);
                assert_eq!(
                    held.key(),
                    (sku_id, buyer_id),
                    "a plan's slots are still its own"
                );
                held.units += quantity;
            }
            Some(Err(vacant)) => {
                let held = BuyerUnits::new(sku_id, buyer_id, quantity);
                self.buyer_units.fill_vacant(vacant, held);
            }
        }
    }

    /// Checks that `quantity` units of `sku_id` may be reserved for `buyer_id` (the SKU
    /// exists, the buyer stays within its limit, the stock suffices) without reserving
    /// them; `Err` is the failure reserving would give.
    #[inline(always)]
    pub(crate) fn units_plan(
        &self,
        sku_id: SkuId,
        buyer_id: AccountId,
        quantity: u64,
    ) -> Result<UnitsPlan, Outcome> {
        let failed = |code| Err(Outcome::Failed(code));
        let Some(sku_index) = self.skus.map.locate(&sku_id.0) else {
            return failed(ResultCode::SkuNotFound);
        };
        let sku = self.skus.map.at(sku_index);
        let limited = sku.limit_per_buyer != 0;
        // One probe of the buyer's count serves both the check and the update.
        let buyer_slot = if limited {
            let buyer_slot = self.buyer_units.map.find_slot(&(sku_id, buyer_id));
            let held = buyer_slot.map_or(0, |index| self.buyer_units.map.at(index).units);
            // `held` never exceeds the u32 limit and `quantity` is a u32: no overflow.
            if held + quantity > u64::from(sku.limit_per_buyer) {
                return failed(ResultCode::LimitReached);
            }
            Some(buyer_slot)
        } else {
            None
        };
        if sku.units_available < quantity {
            return failed(ResultCode::SoldOut);
        }
        Ok(UnitsPlan {
            sku_index,
            buyer_slot,
        })
    }

    /// Moves reserved units back to available and out of the buyer's count.
    pub(crate) fn release_units(&mut self, sku_id: SkuId, buyer_id: AccountId, quantity: u64) {
        let sku = self
            .skus
            .get_mut(&sku_id.0)
            .expect("reserved units have a SKU");
        sku.units_reserved = sku
            .units_reserved
            .checked_sub(quantity)
            .expect("units were reserved");
        sku.units_available += quantity;
        let limited = sku.limit_per_buyer != 0;
        if limited {
            self.drop_buyer_units(sku_id, buyer_id, quantity);
        }
    }

    /// Moves reserved units to sold.
    pub(crate) fn sell_units(&mut self, sku_id: SkuId, quantity: u64) {
        let sku = self
            .skus
            .get_mut(&sku_id.0)
            .expect("reserved units have a SKU");
        sku.units_reserved = sku
            .units_reserved
            .checked_sub(quantity)
            .expect("units were reserved");
        sku.units_sold += quantity;
    }

    /// Moves sold units back to available (a refund with restock).
    pub(crate) fn restock_units(&mut self, sku_id: SkuId, buyer_id: AccountId, quantity: u64) {
        let sku = self.skus.get_mut(&sku_id.0).expect("sold units have a SKU");
        sku.units_sold = sku
            .units_sold
            .checked_sub(quantity)
            .expect("units were sold");
        sku.units_available += quantity;
        let limited = sku.limit_per_buyer != 0;
        if limited {
            self.drop_buyer_units(sku_id, buyer_id, quantity);
        }
    }

    fn drop_buyer_units(&mut self, sku_id: SkuId, buyer_id: AccountId, quantity: u64) {
        let held = self.buyer_units(sku_id, buyer_id);
        let held_after = held
            .checked_sub(quantity)
            .expect("the buyer held these units");
        if held_after == 0 {
            self.buyer_units.remove(&(sku_id, buyer_id));
        } else {
            let held = BuyerUnits::new(sku_id, buyer_id, held_after);
            self.buyer_units.insert((sku_id, buyer_id), held);
        }
    }
}
