//! Unit tests of the state machine: every command and every result code it can return,
//! the timing of expiries, linked-chain atomicity, idempotency and determinism.
//!
//! Tests drive a [`harness::Harness`], which hands out increasing log timestamps and checks
//! the ledger, inventory, order and outbox invariants after every batch; [`fixtures`] builds
//! a valid record of each kind so a test names only the fields it is about.

mod accounts;
mod cross_shard;
mod determinism;
mod dispatch;
mod fixtures;
mod harness;
mod inventory;
mod linked;
mod order_saga;
mod order_store;
mod order_units;
mod orders;
mod payments;
mod properties;
mod refunds;
mod transfers;
mod two_phase;
