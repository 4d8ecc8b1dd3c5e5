//! Finding the Redis binaries and running `redis-cli`.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::RwLock;

/// The binaries a process chose for itself ([`use_binaries`]): they win over the environment.
static CHOSEN: RwLock<Option<Binaries>> = RwLock::new(None);

/// The server binaries to use, chosen by a program (xtask's `--server`) rather than read from
/// `KAIJU_REDIS_SERVER`, `KAIJU_REDIS_CLI` and `KAIJU_REDIS_TLS_SERVER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// The data-node binary (`redis-server`, `valkey-server`); sentinels run it with
    /// `--sentinel`.
    pub server: PathBuf,
    /// `redis-cli` (any version speaks to any of the servers).
    pub cli: PathBuf,
    /// The binary of TLS servers when `server` was built without TLS. `None`: `server`.
    pub tls_server: Option<PathBuf>,
}

impl Binaries {
    /// The environment that makes a child process (`cargo test`) use the same binaries.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let mut env = vec![
            ("KAIJU_REDIS_SERVER", self.server.clone()),
            ("KAIJU_REDIS_CLI", self.cli.clone()),
        ];
        if let Some(tls) = &self.tls_server {
            env.push(("KAIJU_REDIS_TLS_SERVER", tls.clone()));
        }
        env
    }
}

/// Makes [`server_path`], [`cli_path`] and [`tls_server_path`] return `binaries` in this
/// process, whatever the environment says.
pub fn use_binaries(binaries: Binaries) {
    let mut chosen = CHOSEN
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *chosen = Some(binaries);
}

fn chosen(pick: impl FnOnce(&Binaries) -> Option<PathBuf>) -> Option<PathBuf> {
    CHOSEN
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(pick)
}

fn find(env: &str, name: &str) -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "`{name}` was not found on PATH. Install it (Debian/Ubuntu: \
                     `apt-get install -y redis-server redis-tools`; macOS: `brew install redis`), \
                     set {env} to its path, or use `cargo xtask test --docker` where a Docker \
                     engine runs"
                ),
            )
        })
}

/// The `redis-server` binary: the one [`use_binaries`] chose, else `$KAIJU_REDIS_SERVER`, else
/// the first on `PATH`.
pub fn server_path() -> io::Result<PathBuf> {
    match chosen(|b| Some(b.server.clone())) {
        Some(path) => Ok(path),
        None => find("KAIJU_REDIS_SERVER", "redis-server"),
    }
}

/// The binary of TLS servers: the one [`use_binaries`] chose, else `$KAIJU_REDIS_TLS_SERVER`
/// (set when the chosen server was built without TLS), else [`server_path`].
pub fn tls_server_path() -> io::Result<PathBuf> {
    if let Some(path) = chosen(|b| Some(b.tls_server.clone().unwrap_or_else(|| b.server.clone()))) {
        return Ok(path);
    }
    match std::env::var_os("KAIJU_REDIS_TLS_SERVER").filter(|p| !p.is_empty()) {
        Some(path) => Ok(PathBuf::from(path)),
        None => server_path(),
    }
}

/// The `redis-cli` binary: the one [`use_binaries`] chose, else `$KAIJU_REDIS_CLI`, else the
/// first on `PATH`.
pub fn cli_path() -> io::Result<PathBuf> {
    match chosen(|b| Some(b.cli.clone())) {
        Some(path) => Ok(path),
        None => find("KAIJU_REDIS_CLI", "redis-cli"),
    }
}

/// How long one `redis-cli` call may take (`--cluster create` waits for the nodes to agree,
/// which never happens when they cannot reach each other).
const CLI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args...>` and returns its standard output.
/// A non-zero exit is an error carrying standard error; so is a call that takes over a minute
/// (the process is killed).
pub fn redis_cli(port: u16, args: &[&str]) -> io::Result<String> {
    let mut child = Command::new(cli_path()?)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let read = |pipe: Option<Box<dyn io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + CLI_TIMEOUT;
    let finished = loop {
        if !matches!(child.try_wait(), Ok(None)) {
            break true;
        }
        if std::time::Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !finished {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("redis-cli {args:?} on port {port} took over {CLI_TIMEOUT:?}: {stdout}"),
        ));
    }
    if !status.success() {
        return Err(io::Error::other(format!(
            "redis-cli {args:?} on port {port} failed: {stdout}{stderr}"
        )));
    }
    Ok(stdout)
}
