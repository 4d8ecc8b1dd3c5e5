//! The pids and containers xtask started, so a signal handler can stop them, and whether a
//! signal came, so long steps stop early.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static CONTAINER_LABELS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Remembers pids to stop on Ctrl-C / SIGTERM.
pub(crate) fn register(pids: impl IntoIterator<Item = u32>) {
    if let Ok(mut started) = STARTED.lock() {
        started.extend(pids);
    }
}

/// Remembers a run's container label (`key=value`): every container carrying it is removed on
/// Ctrl-C / SIGTERM, also one whose `docker run` was cut short before it printed an id.
pub(crate) fn register_container_label(label: &str) {
    if let Ok(mut labels) = CONTAINER_LABELS.lock() {
        labels.push(label.to_owned());
    }
}

/// Whether Ctrl-C or SIGTERM arrived: long steps check it and give up.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Installs the handler: note the signal, kill every registered pid and remove every
/// container with a registered label. The step in progress then fails and xtask's normal
/// clean-up reaps the rest.
pub(crate) fn install_signal_handler() {
    let result = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        eprintln!("xtask: interrupted, stopping the servers it started");
        if let Ok(started) = STARTED.lock() {
            for pid in started.iter() {
                kill(*pid);
            }
        }
        if let Ok(labels) = CONTAINER_LABELS.lock() {
            for label in labels.iter() {
                remove_labelled(label);
            }
        }
    });
    if let Err(e) = result {
        eprintln!(
            "xtask: cannot install the signal handler ({e}); Ctrl-C may leave servers behind"
        );
    }
}

/// `docker rm --force` every container carrying `label`; returns the docker error, if any.
pub(crate) fn remove_labelled(label: &str) -> Option<String> {
    let listed = std::process::Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label={label}"),
        ])
        .output()
        .ok()?;
    let ids = String::from_utf8_lossy(&listed.stdout).into_owned();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return None;
    }
    let removed = std::process::Command::new("docker")
        .args(["rm", "--force", "--volumes"])
        .args(&ids)
        .stdout(std::process::Stdio::null())
        .output()
        .ok()?;
    (!removed.status.success()).then(|| String::from_utf8_lossy(&removed.stderr).into_owned())
}

/// SIGKILL one pid through the `kill` command (no unsafe code, no libc dependency).
pub(crate) fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Whether a process with this pid is a running (not zombie) server: `redis-server`,
/// `valkey-server`, or the binary `--server` chose (the kernel keeps 15 bytes of a name).
pub(crate) fn is_redis_server(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let name = status.lines().next().unwrap_or("");
    let zombie = status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'));
    let name = name.trim_start_matches("Name:").trim();
    let chosen = [
        kaiju_testkit::server_path(),
        kaiju_testkit::tls_server_path(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    .any(|n| !name.is_empty() && n.starts_with(name));
    let known = name.contains("redis-server") || name.contains("valkey-server") || chosen;
    known && !zombie
}
