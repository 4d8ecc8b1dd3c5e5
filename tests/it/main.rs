//! kaiju-rs integration tests: one binary, one module per area.
//! Run them with `cargo xtask test`, which starts the servers they need.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod app;
mod cache;
mod cli;
mod deployments;
mod interop;
mod locks;
mod rpc;
mod streams;
mod transport;
