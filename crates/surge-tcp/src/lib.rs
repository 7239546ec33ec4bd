//! Surge's TCP server: the binary protocol of `surge-protocol` in front of the engine.
//!
//! [`serve`] accepts connections on a tokio `TcpListener`. Each connection first
//! handshakes (a `Hello` within `handshake_timeout`, checked by an [`Authenticator`]; a
//! wrong token gets `HandshakeError` and the connection is closed), then pipelines:
//! a reader decodes requests, checks the operation against the granted scopes and the
//! in-flight limits (per connection and in total; past them `busy` at once), and hands the
//! batch to `Engine::submit` with a completion; the completion, run on an engine thread
//! after the batch is durable and applied, sends the codes through a channel to the
//! connection's writer task, which gathers replies into few socket writes. A `Lookup`
//! (scope `read`) takes a slot under the same limits and is read through the engine's read
//! API on tokio's blocking pool, never through the log. A bad frame
//! closes only its own connection (after an `Error` frame); a bad request only gets a
//! `rejected` reply. On shutdown the server stops accepting and reading, answers every
//! admitted request, then returns. [`TcpMetrics`] counts all of it; [`serve_with_hook`]
//! also tells the caller each time the engine fails a request (it is fail-stop).
//!
//! This crate owns sockets and tasks; it never touches the log or the state machine
//! except through `surge_engine::Engine`, and never blocks an engine thread (completions
//! only send on an unbounded channel whose length the in-flight limits bound).
#![warn(missing_docs)]

mod auth;
mod connection;
pub mod constants;
mod limits;
mod lookup;
mod metrics;
mod reader;
mod server;
mod session;
mod writer;

pub use auth::Authenticator;
pub use limits::TcpLimits;
pub use metrics::{MetricKind, MetricSample, TcpMetrics};
pub use server::{serve, serve_with_hook, serve_with_metrics, EngineFailureHook};
