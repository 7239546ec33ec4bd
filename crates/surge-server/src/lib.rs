//! Surge's payment API server.
#![warn(missing_docs)]

pub mod config;
pub mod constants;
pub mod problem;
pub mod request;
pub mod tokens;
