//! The pids xtask started, so a signal handler can stop them.

use std::sync::Mutex;

static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static CONTAINERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remembers pids to stop on Ctrl-C / SIGTERM.
pub(crate) fn register(pids: impl IntoIterator<Item = u32>) {
    if let Ok(mut started) = STARTED.lock() {
        started.extend(pids);
    }
}

/// Remembers containers (by id) to remove on Ctrl-C / SIGTERM.
pub(crate) fn register_container(id: &str) {
    if let Ok(mut started) = CONTAINERS.lock() {
        started.push(id.to_owned());
    }
}

/// Installs the handler: kill every registered pid and remove every registered container. The
/// test run then fails and xtask's normal clean-up (Drop of the servers) reaps the rest.
pub(crate) fn install_signal_handler() {
    let result = ctrlc::set_handler(|| {
        eprintln!("xtask: interrupted, stopping the servers it started");
        if let Ok(started) = STARTED.lock() {
            for pid in started.iter() {
                kill(*pid);
            }
        }
        if let Ok(containers) = CONTAINERS.lock()
            && !containers.is_empty()
        {
            let _ = std::process::Command::new("docker")
                .args(["rm", "--force", "--volumes"])
                .args(containers.iter())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    });
    if let Err(e) = result {
        eprintln!(
            "xtask: cannot install the signal handler ({e}); Ctrl-C may leave servers behind"
        );
    }
}

/// SIGKILL one pid through the `kill` command (no unsafe code, no libc dependency).
pub(crate) fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Whether a process with this pid is a running (not zombie) redis-server.
pub(crate) fn is_redis_server(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let name = status.lines().next().unwrap_or("");
    let zombie = status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'));
    name.contains("redis-server") && !zombie
}
