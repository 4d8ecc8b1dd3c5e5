//! `cargo xtask test`.

use std::process::ExitCode;

use kaiju_testkit::{ClusterOptions, RedisCluster, RedisServer, ServerOptions};

use crate::docker::{self, DockerOptions};
use crate::procs;
use crate::servers::{Servers, TlsDir, run_cargo_test, start_tls_server};

/// Where the servers come from.
enum Backend {
    Local,
    Docker(DockerOptions),
}

const USAGE: &str = "usage: cargo xtask test [--local | --docker [--image <image>] [--pull] \
                     [--server-cmd <binary>]] [-- <cargo test args>]";

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    let (flags, cargo_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    match parse_backend(flags)? {
        Backend::Local => run_local(cargo_args, &[]),
        Backend::Docker(options) => docker::run_tests(&options, cargo_args),
    }
}

/// `--docker` and its settings, or `--local`. With neither: the local binaries when
/// `redis-server` is installed, else containers when a Docker engine answers, else the local
/// backend's "install redis-server" error.
fn parse_backend(flags: &[String]) -> Result<Backend, String> {
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
    Ok(if docker {
        Backend::Docker(options)
    } else {
        Backend::Local
    })
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
        parse_backend(&flags)
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
}
