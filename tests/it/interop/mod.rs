//! kaiju-rs against the real Python kaiju-redis 2.4.2 and kaiju-tools (run by
//! `cargo xtask interop`): what crosses the wire both ways, and RPC between Python and Rust apps
//! (over Redis streams and over HTTP).

mod http;
mod rpc;
mod wire;
