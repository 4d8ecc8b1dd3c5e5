//! `cargo xtask test` and `cargo xtask interop`.

use std::process::ExitCode;

use kaiju_testkit::{ClusterOptions, RedisCluster, RedisServer, ServerOptions};

use crate::docker::{self, DockerOptions};
use crate::servers::{Servers, TlsDir, run_cargo_test, start_tls_server};
use crate::{interop, procs};

/// Where the servers come from.
enum Backend {
    Local,
    Docker(DockerOptions),
}

const USAGE: &str = "usage: cargo xtask test [--server <server>] [--interop] [--local | --docker [--image <image>] \
                     [--pull] [--server-cmd <binary>]] [-- <cargo test args>]";

/// What the flags of `cargo xtask test` ask for.
struct Flags {
    backend: Backend,
    /// Run the interop tests too, against the Python peer (`--interop`).
    interop: bool,
}

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let (flags, cargo_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let flags = parse_flags(flags)?;
    // The interop tests run inside the same `cargo test`, on the same servers: no second
    // server session, no second test run.
    let env = if flags.interop {
        interop::env()?
    } else {
        Vec::new()
    };
    match flags.backend {
        Backend::Local => run_local(cargo_args, &env),
        Backend::Docker(options) => docker::run_tests(&options, cargo_args, &env),
    }
}

/// `cargo xtask interop`: the interop tests alone, on local servers.
pub(crate) fn run_interop() -> Result<ExitCode, String> {
    let args = [
        "-p",
        "kaiju-tests",
        "--test",
        "it",
        "interop",
        "--",
        "--nocapture",
    ]
    .map(String::from);
    run_local(&args, &interop::env()?)
}

/// `--interop`, and `--docker` and its settings or `--local`. With neither backend: the local
/// binaries when `redis-server` is installed, else containers when a Docker engine answers,
/// else the local backend's "install redis-server" error.
fn parse_flags(flags: &[String]) -> Result<Flags, String> {
    let mut interop = false;
    let mut choice = None::<bool>;
    let mut docker_flags = false;
    let mut options = DockerOptions::from_env();
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        let mut value = || {
            docker_flags = true;
            flags
                .next()
                .cloned()
                .ok_or_else(|| format!("`{flag}` needs a value\n{USAGE}"))
        };
        let mut choose = |docker: bool| match choice {
            Some(earlier) if earlier != docker => {
                Err(format!("--local and --docker exclude each other\n{USAGE}"))
            }
            _ => {
                choice = Some(docker);
                Ok(())
            }
        };
        match flag.as_str() {
            "--interop" => interop = true,
            "--local" => choose(false)?,
            "--docker" => choose(true)?,
            "--image" => options.image = value()?,
            "--server-cmd" => options.server_cmd = value()?,
            "--pull" => {
                options.pull = true;
                docker_flags = true;
            }
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    let docker = match choice {
        Some(false) if docker_flags => {
            return Err(format!(
                "--image, --pull and --server-cmd go with --docker\n{USAGE}"
            ));
        }
        Some(choice) => choice,
        None if docker_flags => true,
        None => kaiju_testkit::server_path().is_err() && docker::engine_available(),
    };
    let backend = if docker {
        Backend::Docker(options)
    } else {
        Backend::Local
    };
    Ok(Flags { backend, interop })
}

/// Starts the local servers, runs `cargo test` with `cargo_args` and `extra_env`, stops them.
pub(crate) fn run_local(
    cargo_args: &[String],
    extra_env: &[(&str, String)],
) -> Result<ExitCode, String> {
    kaiju_testkit::server_path().map_err(|e| e.to_string())?;
    kaiju_testkit::cli_path().map_err(|e| e.to_string())?;
    procs::install_signal_handler();

    eprintln!("xtask: starting a single redis-server, a TLS one and a 6-node cluster");
    let tls_dir =
        TlsDir::generate(std::env::temp_dir().join(format!("kaiju-tls-{}", std::process::id())))?;
    let single = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    procs::register(single.pid());
    let tls = start_tls_server(&tls_dir.0)?;
    procs::register(tls.pid());
    let cluster = RedisCluster::start(ClusterOptions::default()).map_err(|e| e.to_string())?;
    procs::register(cluster.nodes().iter().filter_map(RedisServer::pid));
    let pids: Vec<u32> = [&single, &tls]
        .into_iter()
        .chain(cluster.nodes())
        .filter_map(RedisServer::pid)
        .collect();
    let servers = Servers {
        single: single.url(),
        cluster: cluster.url(),
        tls: tls.url(),
        tls_dir: tls_dir.0.dir.clone(),
    };
    eprintln!("xtask: single node  {}", servers.single);
    eprintln!("xtask: TLS node     {}", servers.tls);
    eprintln!("xtask: cluster      {}", servers.cluster);

    let status = run_cargo_test(&servers, cargo_args, extra_env);

    drop(single);
    drop(tls);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Backend, String> {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        parse_flags(&flags).map(|f| f.backend)
    }

    #[test]
    fn docker_settings_select_docker_and_conflict_with_local() {
        match parse(&["--image", "valkey/valkey:8", "--pull"]) {
            Ok(Backend::Docker(options)) => {
                assert_eq!(options.image, "valkey/valkey:8");
                assert!(options.pull);
            }
            _ => panic!("--image selects the Docker backend"),
        }
        match parse(&["--docker", "--server-cmd", "keydb-server"]) {
            Ok(Backend::Docker(options)) => assert_eq!(options.server_cmd, "keydb-server"),
            _ => panic!("--docker selects the Docker backend"),
        }
        assert!(matches!(parse(&["--local"]), Ok(Backend::Local)));
        assert!(parse(&["--local", "--pull"]).is_err());
        assert!(parse(&["--image"]).is_err());
        assert!(parse(&["--dockr"]).is_err());
        assert!(parse(&["--docker", "--local"]).is_err());
    }

    #[test]
    fn interop_goes_with_either_backend() {
        let parse = |flags: &[&str]| {
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            parse_flags(&flags)
        };
        assert!(parse(&["--interop", "--local"]).is_ok_and(|f| f.interop));
        assert!(
            parse(&["--docker", "--interop"])
                .is_ok_and(|f| f.interop && matches!(f.backend, Backend::Docker(_)))
        );
        assert!(parse(&["--local"]).is_ok_and(|f| !f.interop));
    }
}
