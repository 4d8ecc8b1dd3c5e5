//! `cargo xtask fuzz [cases]`: the arbitrary-input tests of every decoder (the unit tests named
//! `fuzz_*`), with more cases than a plain `cargo test` runs, printing each test's count.
//!
//! cargo-fuzz needs nightly Rust; these run proptest-generated inputs on stable, so they run in
//! CI on every change.

use std::process::ExitCode;

use crate::{cannot_run_cargo, cargo_in, root};

/// Cases per fuzz test when none are given.
const DEFAULT_CASES: u32 = 50_000;

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let cases = match args.first() {
        None => DEFAULT_CASES,
        Some(n) => n
            .parse()
            .map_err(|_| format!("`{n}` is not a number of cases"))?,
    };
    eprintln!("xtask: every fuzz_* test, {cases} inputs each");
    let root = root()?;
    let status = cargo_in(root)?
        .args(["test", "--workspace", "--lib", "--quiet", "--", "fuzz_"])
        .arg("--nocapture")
        .env("KAIJU_FUZZ_CASES", cases.to_string())
        .status()
        .map_err(cannot_run_cargo(root))?;
    Ok(crate::exit_code(status))
}
