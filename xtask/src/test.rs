//! `cargo xtask test`.

use std::process::{Command, ExitCode};

use kaiju_testkit::{ClusterOptions, RedisCluster, RedisServer, ServerOptions};

use crate::{cargo, docker, procs, root};

/// Where the servers come from.
enum Backend {
    Local,
    Docker,
}

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let (flags, cargo_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let backend = match flags.first().map(String::as_str) {
        Some("--docker") => Backend::Docker,
        Some("--local") => Backend::Local,
        None if docker::engine_available() => Backend::Docker,
        None => Backend::Local,
        Some(other) => return Err(format!("unknown flag `{other}`")),
    };
    match backend {
        Backend::Local => run_local(cargo_args, &[]),
        Backend::Docker => docker::run_tests(cargo_args),
    }
}

/// Starts the local servers, runs `cargo test` with `cargo_args` and `extra_env`, stops them.
pub(crate) fn run_local(
    cargo_args: &[String],
    extra_env: &[(&str, String)],
) -> Result<ExitCode, String> {
    kaiju_testkit::server_path().map_err(|e| e.to_string())?;
    kaiju_testkit::cli_path().map_err(|e| e.to_string())?;
    procs::install_signal_handler();

    eprintln!("xtask: starting a single redis-server and a 6-node cluster");
    let single = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    procs::register(single.pid());
    let cluster = RedisCluster::start(ClusterOptions::default()).map_err(|e| e.to_string())?;
    procs::register(cluster.nodes().iter().filter_map(RedisServer::pid));
    let pids: Vec<u32> = std::iter::once(&single)
        .chain(cluster.nodes())
        .filter_map(RedisServer::pid)
        .collect();
    eprintln!("xtask: single node  {}", single.url());
    eprintln!("xtask: cluster      {}", cluster.url());

    let status = run_cargo_test(&single.url(), &cluster.url(), cargo_args, extra_env);

    drop(single);
    drop(cluster);
    let left: Vec<u32> = pids
        .into_iter()
        .filter(|p| procs::is_redis_server(*p))
        .collect();
    if left.is_empty() {
        eprintln!("xtask: stopped every redis-server it started");
    } else {
        for pid in &left {
            procs::kill(*pid);
        }
        return Err(format!(
            "redis-server processes {left:?} survived clean-up and were killed"
        ));
    }
    status
}

/// `cargo test --workspace` with the URLs exported and skipping forbidden.
pub(crate) fn run_cargo_test(
    single_url: &str,
    cluster_url: &str,
    cargo_args: &[String],
    extra_env: &[(&str, String)],
) -> Result<ExitCode, String> {
    let status = Command::new(cargo())
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(cargo_args)
        .env("KAIJU_REDIS_URL", single_url)
        .env("KAIJU_REDIS_CLUSTER_URL", cluster_url)
        .env("KAIJU_REQUIRE_REDIS", "1")
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    Ok(crate::exit_code(status))
}
