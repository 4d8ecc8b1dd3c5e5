//! The `kaiju` binary's tests are not here: they stay in `crates/kaiju-cli/tests/cli.rs`, and
//! run with the rest under `cargo xtask test`, against the same servers and with the same
//! `kaiju_tests` helpers.
//!
//! They run the binary as a process, found through `env!("CARGO_BIN_EXE_kaiju")`, which Cargo
//! sets only for the integration tests of the package that defines the binary, after building
//! it from the current sources. From this crate there is no such guarantee on stable Rust:
//! depending on a binary (artifact dependencies) needs nightly's `-Z bindeps`, and finding
//! `target/<profile>/kaiju` by path would run whatever was built last (`cargo test -p
//! kaiju-tests` does not rebuild it), or nothing under another profile or target directory.
