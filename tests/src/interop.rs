//! The Python side of the interop tests: the Python named by `KAIJU_PYTHON` (with kaiju-redis
//! installed, as `cargo xtask interop` makes it) running the peers in `tests/interop/`.

use std::process::Command;

/// The Python to run the peers with (`KAIJU_PYTHON`), or `None` (after a skip message) when it
/// is not set; with `KAIJU_REQUIRE_INTEROP=1` a missing Python fails the test instead.
pub fn python() -> Option<String> {
    let python = std::env::var("KAIJU_PYTHON").ok().filter(|p| !p.is_empty());
    if python.is_none() {
        assert!(
            std::env::var("KAIJU_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "KAIJU_REQUIRE_INTEROP=1 but KAIJU_PYTHON is not set"
        );
        eprintln!("skipped: KAIJU_PYTHON is not set (run `cargo xtask interop`)");
    }
    python
}

/// Runs `tests/interop/<script>` with `args`: whether it succeeded, and its stdout and stderr.
pub fn run_peer(python: &str, script: &str, args: &[&str]) -> (bool, String) {
    let script = format!("{}/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("cannot run the Python peer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
