//! The Docker backend: the compose files in `docker/`.

use std::process::{Command, ExitCode, Stdio};

use crate::root;
use crate::test::run_cargo_test;

/// Whether a Docker engine answers (`docker info`), not just the CLI.
pub(crate) fn engine_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const PROJECT: &str = "kaiju-test";
const SINGLE_URL: &str = "redis://127.0.0.1:56379";
const CLUSTER_URL: &str =
    "redis-cluster://127.0.0.1:57000?node=127.0.0.1:57001&node=127.0.0.1:57002";

fn compose(args: &[&str]) -> Result<(), String> {
    let dir = root().join("docker");
    let status = Command::new("docker")
        .current_dir(&dir)
        .args([
            "compose",
            "-p",
            PROJECT,
            "-f",
            "redis.yml",
            "-f",
            "cluster.yml",
        ])
        .args(args)
        .status()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("docker compose {args:?} failed ({status})"))
    }
}

pub(crate) fn run_tests(cargo_args: &[String]) -> Result<ExitCode, String> {
    if !engine_available() {
        return Err(
            "no Docker engine answers (`docker info` failed); run `cargo xtask test --local` \
             with redis-server installed instead"
                .into(),
        );
    }
    compose(&["up", "-d", "--wait"])?;
    let status = run_cargo_test(SINGLE_URL, CLUSTER_URL, cargo_args, &[]);
    let down = compose(&["down", "-v", "--remove-orphans"]);
    let status = status?;
    down?;
    Ok(status)
}
