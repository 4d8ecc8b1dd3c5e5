//! The containers of one run: started on a free port (another one when the port was taken in
//! between), waited for, and removed by the run's label.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kaiju_testkit::{free_port, wait_until as wait_for};

use super::{DockerOptions, docker_quiet};
use crate::procs;

/// How many ports a container is tried on before giving up.
const PORT_ATTEMPTS: usize = 5;

/// How long a container may take to log that it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The containers of one run, all carrying its label. Dropping it removes them all.
pub(super) struct Containers {
    label: String,
    started: Vec<(String, String)>,
}

/// Why a container did not become ready.
enum Failure {
    /// Another process took the port between picking and binding: try another.
    PortTaken,
    /// Anything else, with the container's last log lines.
    Other(String),
}

impl Containers {
    pub(super) fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let label = format!("kaiju-rs.xtask={}-{nanos}", std::process::id());
        procs::register_container_label(&label);
        Self {
            label,
            started: Vec::new(),
        }
    }

    /// `docker run` one server on a free `127.0.0.1` port with the host network, and waits
    /// until it logs that it is ready (having bound its port, so no other process answers
    /// there). `port_args(port)` are its port arguments (`--port P`, or a TLS server's);
    /// `mount` is a host directory the container sees read-only at the same path.
    pub(super) fn start(
        &mut self,
        options: &DockerOptions,
        role: &str,
        cluster_node: bool,
        port_args: impl Fn(u16) -> Vec<String>,
        mount: Option<&Path>,
    ) -> Result<u16, String> {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port(cluster_node).map_err(|e| e.to_string())?;
            let name = format!("kaiju-test-{}-{role}-{attempt}", std::process::id());
            let volume = mount.map(|dir| format!("{0}:{0}:ro", dir.display()));
            let mut args: Vec<String> = [
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
            ]
            .map(String::from)
            .to_vec();
            if let Some(volume) = volume {
                args.extend(["--volume".into(), volume]);
            }
            args.extend([options.image.clone(), options.server_cmd.clone()]);
            args.extend(port_args(port));
            args.extend(
                [
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
                ]
                .map(String::from),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let id = docker_quiet(&args)?;
            match wait_ready(&id) {
                Ok(()) => {
                    self.started.push((role.to_owned(), id));
                    return Ok(port);
                }
                Err(Failure::PortTaken) => {
                    eprintln!("xtask: port {port} was taken before {role} bound it; another one");
                    let _ = docker_quiet(&["rm", "--force", &id]);
                }
                Err(Failure::Other(why)) => {
                    return Err(format!("{role} ({}) did not start: {why}", options.image));
                }
            }
        }
        Err(format!("{role}: every port tried was taken"))
    }

    /// The last lines each container logged, for an error message.
    pub(super) fn logs(&self) -> String {
        let mut out = String::new();
        for (role, id) in &self.started {
            out.push_str(&format!("--- {role} ({id:.12}):\n{}", logs(id, 8)));
        }
        out
    }

    /// Removes every container with this run's label (also one whose `docker run` failed
    /// half-way) and checks that none is left. A Ctrl-C handler may be removing the same
    /// containers: a failed `rm` is only reported if containers are still there 10 s later.
    pub(super) fn remove(&mut self) -> Result<(), String> {
        let failure = procs::remove_labelled(&self.label);
        self.started.clear();
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

/// The last `lines` a container logged (standard output and error).
fn logs(id: &str, lines: usize) -> String {
    Command::new("docker")
        .args(["logs", "--tail", &lines.to_string(), id])
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text
        })
        .unwrap_or_default()
}

/// Waits until the server logs "Ready to accept connections" (Redis, Valkey and KeyDB all
/// do, after binding), failing fast when the container stops.
fn wait_ready(id: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if procs::interrupted() {
            return Err(Failure::Other("interrupted".into()));
        }
        let log = logs(id, 50);
        if log.contains("Ready to accept connections") {
            return Ok(());
        }
        let running = docker_quiet(&["inspect", "--format", "{{.State.Running}}", id]);
        if running.as_deref() != Ok("true") {
            // Give a stopped container's last lines a moment to reach its log.
            let log = logs(id, 20);
            if log.contains("Address already in use") {
                return Err(Failure::PortTaken);
            }
            return Err(Failure::Other(format!("it stopped:\n{log}")));
        }
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "not ready within {START_TIMEOUT:?}:\n{log}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
