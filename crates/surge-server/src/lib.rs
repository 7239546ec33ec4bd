//! Surge's payment API server: what `surge serve` runs in front of the engine.
//!
//! It owns the server's settings ([`config`]: flag > environment > TOML file > default),
//! the API tokens ([`tokens`]: SHA-256 hashes in `<data-dir>/tokens.toml`, scopes
//! `payments`, `read`, `dispatch`, constant-time comparison, reloaded when the file
//! changes), the HTTP/JSON edge ([`http`]: axum on hyper, HTTP/1.1), the JSON request
//! types ([`request`], fuzzed), problem documents with stable codes ([`problem`]),
//! `Idempotency-Key` replay ([`idempotency`]), Prometheus metrics ([`metrics`]) and the
//! start/drain/stop sequence ([`server`]), which also stops the process when the engine
//! fails (fail-stop, `engine_failure.rs`). The TCP binary protocol lives in `surge-tcp`;
//! [`tcp`] is where it plugs in.
//!
//! It never decides a business outcome: every command goes to the engine as a batch and
//! its result codes come back unchanged, only after the batch is durable and applied.
//! tokio stops here: the engine's threads are reached through `Engine::submit` with a
//! completion that sends on a oneshot channel, so no async task ever blocks on the engine.
#![warn(missing_docs)]

pub mod coalesce;
pub mod config;
pub mod constants;
mod engine_failure;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod problem;
pub mod request;
pub mod server;
pub mod tcp;
pub mod tokens;

pub use config::{ServeArgs, ServerConfig};
pub use server::{run, shutdown_signal, start, RunningServer, ServerError};
pub use tokens::{Scope, Scopes, TokenStore};
