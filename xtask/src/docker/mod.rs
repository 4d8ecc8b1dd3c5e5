//! The Docker backend of `cargo xtask test --docker`: a single node and a 6-node cluster as
//! containers, started, waited for and removed by xtask itself with plain `docker run` and
//! `docker rm`. It needs a Docker engine and an image, nothing else: no compose plugin, no
//! registry (`--pull never` unless asked), no `redis-cli` on the host or in the image (the
//! cluster is built over RESP, [`crate::resp`]).
//!
//! Every container carries a label unique to this run and is registered with the signal
//! handler, so exactly the containers this run started are removed: on success, on failure
//! (Drop of [`Containers`]) and on Ctrl-C.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use kaiju_testkit::{TlsFiles, wait_until as wait_for};

mod cluster;
mod containers;

use cluster::create_cluster;
use containers::Containers;

use crate::procs;
use crate::resp;
use crate::servers::{Servers, TlsDir, run_cargo_test};

/// The image used when neither `--image` nor `KAIJU_REDIS_IMAGE` names one.
pub(crate) const DEFAULT_IMAGE: &str = "redis:7.4";

/// What to run the servers from.
#[derive(Debug, Clone)]
pub(crate) struct DockerOptions {
    /// Any image whose `server_cmd` is a Redis-protocol server taking redis-server's flags:
    /// `redis:7.4`, `redis:8`, `valkey/valkey:8`, or `kaiju-redis:local` (`cargo xtask image`).
    pub(crate) image: String,
    /// Pull the image when it is missing (`docker run --pull missing`); else `--pull never`.
    pub(crate) pull: bool,
    /// The server binary inside the image (`redis-server`; `keydb-server` for KeyDB images).
    pub(crate) server_cmd: String,
}

impl DockerOptions {
    /// Defaults, overridden by `KAIJU_REDIS_IMAGE` and `KAIJU_REDIS_SERVER_CMD`.
    pub(crate) fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            image: var("KAIJU_REDIS_IMAGE", DEFAULT_IMAGE),
            pull: false,
            server_cmd: var("KAIJU_REDIS_SERVER_CMD", "redis-server"),
        }
    }
}

/// Whether a Docker engine answers (`docker info`), not just the CLI.
pub(crate) fn engine_available() -> bool {
    docker_quiet(&["info", "--format", "{{.ServerVersion}}"]).is_ok()
}

/// Runs `docker <args>` and returns its trimmed standard output; a failure carries stderr.
pub(crate) fn docker_quiet(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Checks the engine and the image, starts the servers, runs `cargo test` with `cargo_args`
/// and `extra_env`, removes them.
pub(crate) fn run_tests(
    options: &DockerOptions,
    cargo_args: &[String],
    extra_env: &[(&str, String)],
) -> Result<ExitCode, String> {
    if !engine_available() {
        return Err(
            "no Docker engine answers (`docker info` failed). Start one (on Debian without \
             systemd: `dockerd --bridge=none --iptables=false &`), or run \
             `cargo xtask test --local` with redis-server installed"
                .into(),
        );
    }
    if !options.pull && docker_quiet(&["image", "inspect", &options.image]).is_err() {
        return Err(format!(
            "image `{}` is not present locally and xtask does not pull unless asked. Either \
             pass --pull, or build an image from this host's redis-server with \
             `cargo xtask image` and pass `--image kaiju-redis:local`",
            options.image
        ));
    }
    if kaiju_testkit::server_path().is_err() {
        eprintln!(
            "xtask: warning: no redis-server on this host. The tests that start, kill and \
             restart their own servers (recovery, failover, server faults) use the host's \
             binary and will fail under KAIJU_REQUIRE_REDIS=1"
        );
    }
    warn_about_stale_containers();
    procs::install_signal_handler();
    let tls = TlsDir::generate(
        std::env::temp_dir().join(format!("kaiju-tls-docker-{}", std::process::id())),
    )?;
    let mut containers = Containers::new();
    let servers = start_servers(options, &mut containers, &tls.0)
        .map_err(|e| format!("{e}\n{}", containers.logs()))?;
    eprintln!(
        "xtask: single node  {}  ({})",
        servers.single, options.image
    );
    eprintln!("xtask: TLS node     {}", servers.tls);
    eprintln!("xtask: cluster      {}", servers.cluster);
    let status = run_cargo_test(&servers, cargo_args, extra_env);
    let removed = containers.remove();
    if removed.is_ok() {
        eprintln!("xtask: removed every container it started");
    }
    let status = status?;
    removed?;
    Ok(status)
}

/// Containers of an earlier run whose xtask died without removing them (SIGKILL): named, not
/// removed, since xtask removes only what this run started.
fn warn_about_stale_containers() {
    let Ok(listing) = docker_quiet(&[
        "ps",
        "--all",
        "--filter",
        "label=kaiju-rs.xtask",
        "--format",
        "{{.ID}} {{.Label \"kaiju-rs.xtask\"}}",
    ]) else {
        return;
    };
    let stale: Vec<&str> = listing
        .lines()
        .filter_map(|line| {
            let (id, label) = line.split_once(' ')?;
            let pid = label.split('-').next()?;
            let alive = std::path::Path::new("/proc").join(pid).exists();
            (!alive).then_some(id)
        })
        .collect();
    if !stale.is_empty() {
        eprintln!(
            "xtask: warning: containers {} were left by an earlier run that was killed; \
             remove them with `docker rm -f {}`",
            stale.join(", "),
            stale.join(" ")
        );
    }
}

/// Starts the single node, the TLS node and the cluster; returns where they are.
fn start_servers(
    options: &DockerOptions,
    containers: &mut Containers,
    tls: &TlsFiles,
) -> Result<Servers, String> {
    eprintln!(
        "xtask: starting a single node, a TLS one and a 6-node cluster from `{}`",
        options.image
    );
    let plain = |port: u16| vec!["--port".to_owned(), port.to_string()];
    let single = containers.start(options, "single", false, plain, None)?;
    let tls_port = containers.start(
        options,
        "tls",
        false,
        |port| tls.server_args(port, false, "optional"),
        Some(&tls.dir),
    )?;
    let mut ports = Vec::new();
    for index in 0..6 {
        let node = |port: u16| {
            let mut args = plain(port);
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "2000",
                ]
                .map(String::from),
            );
            args
        };
        ports.push(containers.start(options, &format!("node{index}"), true, node, None)?);
    }
    for port in std::iter::once(single).chain(ports.iter().copied()) {
        let up = wait_for(Duration::from_secs(10), || {
            resp::text(port, &["PING"]).is_ok_and(|r| r == "PONG")
        });
        if !up {
            return Err(format!("the server on port {port} did not answer PING"));
        }
    }
    create_cluster(&ports)?;
    let mut cluster = format!("redis-cluster://127.0.0.1:{}", ports[0]);
    for (i, port) in ports.iter().enumerate().skip(1) {
        cluster.push(if i == 1 { '?' } else { '&' });
        cluster.push_str(&format!("node=127.0.0.1:{port}"));
    }
    Ok(Servers {
        single: format!("redis://127.0.0.1:{single}"),
        cluster,
        tls: format!("rediss://127.0.0.1:{tls_port}"),
        tls_dir: tls.dir.clone(),
    })
}
