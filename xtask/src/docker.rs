//! The Docker backend of `cargo xtask test --docker`: a single node and a 6-node cluster as
//! containers, started, waited for and removed by xtask itself with plain `docker run` and
//! `docker rm`. It needs a Docker engine and an image, nothing else: no compose plugin, no
//! registry (`--pull never` unless asked), no `redis-cli` on the host or in the image (the
//! cluster is built over RESP, [`crate::resp`]).
//!
//! Every container carries a label unique to this run and is registered with the signal
//! handler, so exactly the containers this run started are removed: on success, on failure
//! (Drop of [`Containers`]) and on Ctrl-C.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use kaiju_testkit::{TlsFiles, free_port, wait_until as wait_for};

use crate::procs;
use crate::resp::{self, Reply};
use crate::test::{Servers, TlsDir, run_cargo_test};

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

/// The containers of one run. Dropping it removes them all.
struct Containers {
    label: String,
    ids: Vec<(String, String)>,
}

impl Containers {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Self {
            label: format!("kaiju-rs.xtask={}-{nanos}", std::process::id()),
            ids: Vec::new(),
        }
    }

    /// `docker run` one server on `127.0.0.1:port` with the host network. `extra` server
    /// arguments come last (a TLS server's `--port 0` overrides `--port`); `mount` is a host
    /// directory the container sees read-only at the same path.
    fn start(
        &mut self,
        options: &DockerOptions,
        role: &str,
        port: u16,
        extra: &[String],
        mount: Option<&Path>,
    ) -> Result<(), String> {
        let port_arg = port.to_string();
        let name = format!("kaiju-test-{}-{role}", std::process::id());
        let volume = mount.map(|dir| format!("{0}:{0}:ro", dir.display()));
        let mut args = vec![
            "run",
            "--detach",
            "--network",
            "host",
            "--pull",
            if options.pull { "missing" } else { "never" },
            "--label",
            &self.label,
            "--name",
            &name,
        ];
        if let Some(volume) = &volume {
            args.extend(["--volume", volume]);
        }
        args.extend([
            &options.image,
            &options.server_cmd,
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ]);
        args.extend(extra.iter().map(String::as_str));
        let id = docker_quiet(&args)?;
        procs::register_container(&id);
        self.ids.push((role.to_owned(), id));
        Ok(())
    }

    /// The last lines each container logged, for an error message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (role, id) in &self.ids {
            let logs = Command::new("docker")
                .args(["logs", "--tail", "8", id])
                .output()
                .map(|o| {
                    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                    text
                })
                .unwrap_or_default();
            out.push_str(&format!("--- {role} ({id:.12}):\n{logs}"));
        }
        out
    }

    /// Removes every container and checks that none with this run's label is left. (A Ctrl-C
    /// handler may be removing the same containers: a failed `rm` is only reported if
    /// containers are still there 10 s later.)
    fn remove(&mut self) -> Result<(), String> {
        let mut failure = None;
        if !self.ids.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(self.ids.iter().map(|(_, id)| id.as_str()));
            failure = docker_quiet(&args).err();
            self.ids.clear();
        }
        let filter = format!("label={}", self.label);
        let mut left = String::new();
        let gone = wait_for(Duration::from_secs(10), || {
            left = docker_quiet(&["ps", "--all", "--quiet", "--filter", &filter])
                .unwrap_or_else(|e| e);
            left.is_empty()
        });
        if gone {
            Ok(())
        } else {
            Err(format!(
                "containers survived `docker rm`: {left} ({})",
                failure.unwrap_or_default()
            ))
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("xtask: {e}");
        }
    }
}

/// Checks the engine and the image, starts the servers, runs `cargo test`, removes them.
pub(crate) fn run_tests(
    options: &DockerOptions,
    cargo_args: &[String],
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
    let status = run_cargo_test(&servers, cargo_args, &[]);
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
    let single = free_port(false).map_err(|e| e.to_string())?;
    containers.start(options, "single", single, &[], None)?;
    let tls_port = free_port(false).map_err(|e| e.to_string())?;
    let tls_args = tls.server_args(tls_port, false, "optional");
    containers.start(options, "tls", tls_port, &tls_args, Some(&tls.dir))?;
    let mut ports = Vec::new();
    for index in 0..6 {
        let port = free_port(true).map_err(|e| e.to_string())?;
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &format!("nodes-{port}.conf"),
            "--cluster-node-timeout",
            "2000",
        ]
        .map(String::from);
        containers.start(options, &format!("node{index}"), port, &extra, None)?;
        ports.push(port);
    }
    for port in std::iter::once(single).chain(ports.iter().copied()) {
        let up = wait_for(Duration::from_secs(30), || {
            resp::text(port, &["PING"]).is_ok_and(|r| r == "PONG")
        });
        if !up {
            return Err(format!(
                "the server on port {port} did not answer PING in 30 s"
            ));
        }
    }
    create_cluster(&ports)?;
    let mut cluster = format!("redis-cluster://127.0.0.1:{}", ports[0]);
    for (i, port) in ports.iter().enumerate().skip(1) {
        cluster.push(if i == 1 { '?' } else { '&' });
        cluster.push_str(&format!("node=127.0.0.1:{port}"));
    }
    // The TLS node answers PING only over TLS, which xtask does not speak: a listening port
    // is enough, since it starts listening once it is ready.
    let listening = wait_for(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    if !listening {
        return Err(format!(
            "the TLS server on port {tls_port} did not listen in 30 s"
        ));
    }
    Ok(Servers {
        single: format!("redis://127.0.0.1:{single}"),
        cluster,
        tls: format!("rediss://127.0.0.1:{tls_port}"),
        tls_dir: tls.dir.clone(),
    })
}

/// What `redis-cli --cluster create --cluster-replicas 1` does, over RESP: slots to the first
/// three nodes, distinct config epochs, MEET, then each of the last three replicates one primary.
fn create_cluster(ports: &[u16]) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cluster setup: {what}: {e}");
    let ok = |port: u16, args: &[&str]| -> std::io::Result<()> {
        match resp::call(port, args)? {
            Reply::Error(e) => Err(std::io::Error::other(e)),
            _ => Ok(()),
        }
    };
    let ranges = [(0u16, 5460u16), (5461, 10922), (10923, 16383)];
    for (port, (lo, hi)) in ports.iter().zip(ranges) {
        let slots: Vec<String> = (lo..=hi).map(|s| s.to_string()).collect();
        let mut args = vec!["CLUSTER", "ADDSLOTS"];
        args.extend(slots.iter().map(String::as_str));
        ok(*port, &args).map_err(|e| fail("ADDSLOTS", e))?;
    }
    for (epoch, port) in ports.iter().enumerate() {
        let epoch = (epoch + 1).to_string();
        ok(*port, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch])
            .map_err(|e| fail("SET-CONFIG-EPOCH", e))?;
    }
    for port in &ports[1..] {
        ok(
            ports[0],
            &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()],
        )
        .map_err(|e| fail("MEET", e))?;
    }
    let all_known = wait_for(Duration::from_secs(30), || {
        ports.iter().all(|port| {
            resp::text(*port, &["CLUSTER", "NODES"]).is_ok_and(|nodes| {
                nodes.lines().count() == ports.len() && !nodes.contains("handshake")
            })
        })
    });
    if !all_known {
        return Err("cluster setup: the nodes did not all meet within 30 s".into());
    }
    let ids = ports
        .iter()
        .map(|port| resp::text(*port, &["CLUSTER", "MYID"]))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| fail("MYID", e))?;
    for (replica, primary) in ports[3..].iter().zip(&ids) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match ok(*replica, &["CLUSTER", "REPLICATE", primary]) {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => return Err(fail("REPLICATE", e)),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    let ready = wait_for(Duration::from_secs(60), || {
        ports.iter().all(|port| {
            let info = resp::text(*port, &["CLUSTER", "INFO"]).unwrap_or_default();
            let replication = resp::text(*port, &["INFO", "replication"]).unwrap_or_default();
            info.contains("cluster_state:ok")
                && info.contains("cluster_slots_ok:16384")
                && (!replication.contains("role:slave")
                    || replication.contains("master_link_status:up"))
        })
    });
    if ready {
        Ok(())
    } else {
        Err("cluster setup: the cluster was not ready within 60 s".into())
    }
}
