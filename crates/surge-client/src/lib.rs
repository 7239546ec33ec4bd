//! Surge's Rust client: an async (tokio) connection to the TCP protocol that batches the
//! calls of many tasks into few requests and retries safely until a deadline.
//!
//! ```no_run
//! # async fn example() -> Result<(), surge_client::ClientError> {
//! use surge_client::{id, Client, ClientConfig};
//! use surge_core::{AccountId, Transfer, TransferId};
//!
//! let client = Client::connect("127.0.0.1:7100", ClientConfig::new("token")).await?;
//! let payment = Transfer {
//!     id: TransferId(id()), // made once, stored with the intent, reused on every retry
//!     debit_account_id: AccountId(1),
//!     credit_account_id: AccountId(2),
//!     amount: 1_999,
//!     ledger: 1,
//!     code: 1,
//!     ..Transfer::default()
//! };
//! let codes = client.create_transfers(&[payment]).await?;
//! # Ok(()) }
//! ```
//!
//! **Batching.** Every call (`create_transfers`, `place_orders`, ... one method per
//! operation, each returning one `ResultCode` per command) goes to one driver task. While
//! the connection has requests in flight (at most `requests_in_flight_max`), new calls
//! queue per operation; when a slot frees, the queued calls of one operation are packed,
//! whole and in order, into one request of up to 8,190 commands. So a thousand tasks each
//! paying once make a handful of requests, and each request costs the server one log
//! append. A call whose last command opens a linked chain ends its request, so a chain
//! never runs into another caller's commands.
//!
//! **Retries and deadlines.** Each call has a deadline (`ClientConfig::call_timeout`, or
//! [`Client::submit_until`]). A `busy` reply is retried after a backoff (1 ms doubling to
//! 100 ms); a lost connection, or one silent for `liveness_timeout`, is replaced and every
//! unanswered request resent; past the deadline the call fails with
//! [`ClientError::Timeout`], never later, and never waits forever. A retry always resends
//! **the same records with the same ids**, which is what makes it safe: ids are idempotency
//! keys, so a command that already took effect answers `exists` (or
//! `id_already_failed` if it failed) instead of taking effect twice. That is also why
//! `Timeout` is not "it did not happen": call again with the same records to find out.
//! A call one of whose commands is answered with a code that
//! [`is_transient`](surge_core::ResultCode::is_transient) (`busy`: its shard's queue was
//! full while the request's other shards took theirs; `pending_transfer_in_flight`,
//! `order_in_flight`: an earlier step is still travelling between shards; nothing was
//! stored) is sent again, whole, every 2 ms until no code is transient or its deadline
//! passes (then it answers with those codes). Its answer is the last attempt's codes,
//! where a retry's `exists` or `id_already_failed` stands for the first attempt's own
//! `ok` or failure, so each command reports what happened to it.
//!
//! **Lookups.** `lookup_accounts`, `lookup_transfers`, `lookup_skus` and `lookup_orders`
//! (scope `read`) read up to 4,096 records by id in one `Lookup` frame and return one
//! answer per id, in order (`None`: not found). Each call goes in a frame of its own,
//! takes turns with requests for the in-flight slots, and is retried after `busy` or a lost
//! connection until its deadline like a command.
//!
//! **Ids.** Make each command's id once, when the intent is first recorded (the order row,
//! the payment attempt), and keep it: a fresh id on retry is a second payment. [`id`]
//! makes time-ordered 128-bit ids (milliseconds since the Unix epoch in the high 48 bits,
//! 80 random bits below, increasing within a process), which keep the engine's tables
//! append-mostly and do not collide across processes. Any unique non-zero u128 works.
//!
//! This crate depends on `surge-core` (records, codes) and `surge-protocol` (frames) only;
//! it never touches the engine.
#![warn(missing_docs)]

mod batcher;
mod caller;
mod client;
mod config;
mod connection;
pub mod constants;
mod driver;
mod error;
mod id;
mod lookup;

pub use client::Client;
pub use config::ClientConfig;
pub use error::ClientError;
pub use id::id;
