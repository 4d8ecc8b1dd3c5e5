//! Finding the Redis binaries and running `redis-cli`.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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

/// The `redis-server` binary: `$KAIJU_REDIS_SERVER`, else the first on `PATH`.
pub fn server_path() -> io::Result<PathBuf> {
    find("KAIJU_REDIS_SERVER", "redis-server")
}

/// The `redis-cli` binary: `$KAIJU_REDIS_CLI`, else the first on `PATH`.
pub fn cli_path() -> io::Result<PathBuf> {
    find("KAIJU_REDIS_CLI", "redis-cli")
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
