//! The `surge` command's library: the flash-sale demo, benchmark workloads and the
//! benchmark commands. The binary (`main.rs`) only parses arguments and calls in here, so
//! `benches/` and `tests/` can reuse the same code.
#![warn(missing_docs)]

pub mod bench;
pub mod demo;
pub mod drive;
pub mod rng;
pub mod serve;
pub mod workload;
