#![doc = include_str!("../README.md")]
//! Everything here runs blocking std code: it is called before the async runtime starts
//! (xtask) or from tests that are fine to block while a server starts.

mod cli;
mod cluster;
mod sentinel;
mod server;
mod tls;

pub use cli::{Binaries, cli_path, redis_cli, server_path, tls_server_path, use_binaries};
pub use cluster::{ClusterOptions, RedisCluster};
pub use sentinel::{SentinelOptions, SentinelSet};
pub use server::{RedisServer, ServerOptions, TlsOptions, free_port};
pub use tls::TlsFiles;

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A valid input with bytes inserted or overwritten, for the fuzz tests that mutate real
/// entries: each `(at, byte)` edit inserts `byte` at `at` (modulo the length) when `byte` is
/// a multiple of 3, and overwrites the byte there otherwise.
pub fn mutate(valid: &[u8], edits: &[(usize, u8)]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for &(at, byte) in edits {
        let at = at % (bytes.len() + 1);
        if byte % 3 == 0 {
            bytes.insert(at, byte);
        } else if let Some(slot) = bytes.get_mut(at) {
            *slot = byte;
        }
    }
    bytes
}

/// How many inputs each arbitrary-input (fuzz) test tries: `KAIJU_FUZZ_CASES`, default 2,000.
/// `cargo xtask fuzz` raises it and prints each test's count.
pub fn fuzz_cases() -> u32 {
    std::env::var("KAIJU_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}
