//! kaiju-rs integration tests: one binary, one module per area.
//! Run them with `cargo xtask test`, which starts the servers they need.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod acl;
mod app;
mod cache;
mod cache_faults;
mod interop;
mod interop_rpc;
mod lock_batching;
mod lock_faults;
mod locks;
mod recovery;
mod rpc;
mod rpc_defects;
mod rpc_faults;
mod sentinel;
mod stream_admin;
mod stream_faults;
mod stream_writer;
mod streams;
mod tls;
mod transport;
mod transport_faults;
