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

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args...>` and returns its standard output.
/// A non-zero exit is an error carrying standard error.
pub fn redis_cli(port: u16, args: &[&str]) -> io::Result<String> {
    let output = Command::new(cli_path()?)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "redis-cli {args:?} on port {port} failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(stdout)
}
