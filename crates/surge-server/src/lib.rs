//! Surge's payment API server.
#![warn(missing_docs)]

pub mod config;
pub mod constants;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod problem;
pub mod request;
pub mod server;
pub mod tcp;
pub mod tokens;
