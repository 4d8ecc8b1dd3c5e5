//! `cargo xtask interop`: the Rust crates against the real Python kaiju-redis 2.4.2.
//!
//! Creates a venv under `target/interop-venv` (once), installs `kaiju-redis==2.4.2` from PyPI,
//! then runs the interop tests (`tests/it/interop/`) with the servers of `cargo xtask test`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::{root, test};

const PACKAGE: &str = "kaiju-redis==2.4.2";

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

pub(crate) fn venv() -> Result<PathBuf, String> {
    let dir = root().join("target").join("interop-venv");
    let python = dir.join("bin").join("python");
    if !python.is_file() {
        let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(&system).args(["-m", "venv"]).arg(&dir),
            "creating the Python venv",
        )?;
    }
    let installed = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; assert m.version('kaiju-redis') == '2.4.2'",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("xtask: installing {PACKAGE} into {}", dir.display());
        run(
            Command::new(&python).args(["-m", "pip", "install", "--quiet", PACKAGE]),
            "pip install",
        )?;
    }
    Ok(python)
}

pub(crate) fn run_tests() -> Result<ExitCode, String> {
    let python = venv()?;
    let args: Vec<String> = [
        "-p",
        "kaiju-tests",
        "--test",
        "it",
        "interop",
        "--",
        "--nocapture",
    ]
    .map(String::from)
    .to_vec();
    test::run_local(
        &args,
        &[
            ("KAIJU_PYTHON", python.display().to_string()),
            ("KAIJU_REQUIRE_INTEROP", "1".into()),
        ],
    )
}
