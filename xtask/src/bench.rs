//! `cargo xtask bench cache`: the benchmark binary and redis-benchmark against one server
//! started for the run, so every ratio compares figures from the same machine state.

use std::process::{Command, ExitCode, Stdio};

use kaiju_testkit::{RedisServer, ServerOptions};

use crate::{cargo, procs, root};

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let which = match args.first().map(String::as_str) {
        Some(name @ ("cache" | "locks" | "streams" | "rpc")) => name,
        None => "cache",
        Some(other) => {
            return Err(format!(
                "unknown benchmark `{other}` (available: cache, locks, streams, rpc)"
            ));
        }
    };
    procs::install_signal_handler();
    let build = Command::new(cargo())
        .current_dir(root())
        .args(["build", "--release", "--quiet", "-p", "kaiju-bench"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !build.success() {
        return Err("building kaiju-bench failed".into());
    }
    let server = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    procs::register(server.pid());
    let status = Command::new(root().join("target/release/kaiju-bench"))
        .arg(which)
        .env("KAIJU_REDIS_URL", server.url())
        .status()
        .map_err(|e| format!("cannot run kaiju-bench: {e}"))?;
    if !status.success() {
        return Err("kaiju-bench failed".into());
    }
    if which != "cache" {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!("| redis-benchmark (-c 50 -n 200000) | SET | GET |");
    println!("|---|---|---|");
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
            .args([
                "-q", "-t", "set,get", "-n", "200000", "-c", "50", "-P", pipeline,
            ])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| {
                format!("cannot run redis-benchmark (apt-get install redis-tools): {e}")
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = |name: &str| {
            // redis-benchmark -q redraws progress with \r; the final figure is the last line.
            text.split(['\r', '\n'])
                .filter(|l| l.starts_with(name) && l.contains("requests per second"))
                .filter_map(|l| l.split_whitespace().nth(1))
                .next_back()
                .unwrap_or("?")
                .to_owned()
        };
        println!(
            "| -P {pipeline} | {} req/s | {} req/s |",
            rate("SET:"),
            rate("GET:")
        );
    }
    Ok(ExitCode::SUCCESS)
}
