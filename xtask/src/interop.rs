//! The Python peer of the interop tests (`tests/it/interop/`): the real kaiju-redis 2.4.2, in a
//! venv in `interop-venv` of the target directory, created and filled from PyPI once and reused by every
//! later run (`cargo xtask interop`, `cargo xtask test --interop`,
//! `cargo xtask bench --compare-python`).

use std::path::PathBuf;
use std::process::Command;

use crate::target_dir;

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
    let dir = target_dir()?.join("interop-venv");
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

/// The environment that makes `cargo test` run the interop tests (`tests/it/interop.rs`,
/// `interop_rpc.rs`) with the venv's Python, and fail rather than skip without it.
pub(crate) fn env() -> Result<Vec<(&'static str, String)>, String> {
    let python = venv()?;
    Ok(vec![
        ("KAIJU_PYTHON", python.display().to_string()),
        ("KAIJU_REQUIRE_INTEROP", "1".into()),
    ])
}
