//! `cargo xtask demo`: the system working, on a throwaway local Redis.
//!
//! Starts a redis-server of its own (installing it with apt-get when it is missing and this
//! is root on Debian/Ubuntu), runs the example app of `examples/demo` from its kaiju YAML
//! config, drives it with the RPC client (notifications, request/response, lock hand-offs,
//! cached values, errors, stream stats), shows the same from the `kaiju` tool, stops the app
//! with SIGTERM and stops Redis.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kaiju_testkit::{RedisServer, ServerOptions};

use crate::{cannot_run_cargo, cargo_in, procs, root, target_dir};

fn step(what: &str) {
    println!("\n### {what}");
}

/// Makes sure `redis-server` exists: installs it on Debian/Ubuntu as root, else says how.
pub(crate) fn ensure_redis() -> Result<(), String> {
    if kaiju_testkit::server_path().is_ok() && kaiju_testkit::cli_path().is_ok() {
        return Ok(());
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = Path::new("/usr/bin/apt-get").exists();
    if !(root_user && apt) {
        return Err("redis-server is not installed. Install it first: `sudo apt-get install redis-server` \
             (Debian/Ubuntu), `sudo dnf install redis` (Fedora), `brew install redis` (macOS), or set \
             KAIJU_REDIS_SERVER and KAIJU_REDIS_CLI to the binaries"
            .into());
    }
    step("installing redis-server with apt-get (it is missing)");
    for args in [
        &["update", "-qq"][..],
        &["install", "-y", "-qq", "redis-server", "redis-tools"][..],
    ] {
        let ok = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("apt-get {} failed", args.join(" ")));
        }
    }
    kaiju_testkit::server_path()
        .map_err(|e| format!("redis-server still missing after apt-get: {e}"))?;
    Ok(())
}

/// Prints a child's output lines with a prefix, from a thread; sends `ready` lines on `ready`.
fn forward(
    reader: impl std::io::Read + Send + 'static,
    prefix: &'static str,
    ready: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if let Some(tx) = &ready {
                let _ = tx.send(line.clone());
            }
            println!("{prefix}{line}");
        }
    });
}

/// Stops the app with SIGTERM and waits for it (SIGKILL after 15 s).
fn stop_app(app: &mut Child) -> Result<bool, String> {
    let _ = Command::new("kill")
        .args(["-TERM", &app.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = app.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if Instant::now() > deadline {
            let _ = app.kill();
            let _ = app.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn run() -> Result<ExitCode, String> {
    let started = Instant::now();
    ensure_redis()?;
    step("building the demo app and the `kaiju` tool (the first build takes a few minutes)");
    let root = root()?;
    let built = cargo_in(root)?
        .args(["build", "-p", "kaiju-demo", "-p", "kaiju-cli"])
        .status()
        .map_err(cannot_run_cargo(root))?;
    if !built.success() {
        return Err("the build failed".into());
    }
    let built_at = Instant::now();
    let target = target_dir()?;
    let demo = target.join("debug/kaiju-demo");
    let kaiju = target.join("debug/kaiju");
    let config = root.join("examples/demo/app.yml");

    procs::install_signal_handler();
    step("starting a throwaway redis-server on a free loopback port");
    let redis = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    procs::register(redis.pid());
    let url = redis.url();
    let port = url.rsplit(':').next().unwrap_or("6379").to_owned();
    println!("{url} (redis-server {})", redis_version());
    // The app's HTTP front listens on a free loopback port too.
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for the HTTP front: {e}"))?
        .port()
        .to_string();

    step(
        "running the app: kaiju-demo serve -c examples/demo/app.yml -e redis_port=<port> -e http_port=<port>",
    );
    println!(
        "(transport, cache, locks, the app's own Inventory service, JSON-RPC server, stream listener, HTTP front)"
    );
    let mut app = Command::new(&demo)
        .args(["serve", "-c"])
        .arg(&config)
        .args(["-e", &format!("redis_port={port}")])
        .args(["-e", &format!("http_port={http_port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", demo.display()))?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = app.stdout.take() {
        forward(out, "   [app] ", Some(tx));
    }
    if let Some(err) = app.stderr.take() {
        forward(err, "   [app log] ", None);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line == "ready" => break,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Ok(Some(status)) = app.try_wait() {
                    return Err(format!("the app exited before it was ready ({status})"));
                }
            }
            Err(_) => {
                let _ = stop_app(&mut app);
                return Err("the app did not start within 30 s".into());
            }
        }
    }

    step("driving it as another service would: kaiju-demo drive");
    let drive = Command::new(&demo)
        .args(["drive", "-c"])
        .arg(&config)
        .args(["-e", &format!("redis_port={port}")])
        .args(["-e", &format!("http_port={http_port}")])
        .status()
        .map_err(|e| e.to_string())?;

    step("the same system from the `kaiju` command-line tool");
    let cli = |args: &[&str]| {
        println!("$ kaiju {}", args.join(" "));
        Command::new(&kaiju)
            .args(args)
            .args(["--redis-url", &url, "--environment", "demo"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let cli_ok = cli(&[
        "call",
        "inventory",
        "inventory.stock",
        r#"{"item": "pear"}"#,
        "--wait",
    ]) & cli(&["cache", "get", "demo.inventory.stock.pear"])
        & cli(&["streams", "inventory"])
        & cli(&["dead", "list", "inventory", "--count", "1"]);

    step("stopping the app with SIGTERM: it stops reading and finishes in-flight requests first");
    let stopped = stop_app(&mut app)?;
    std::thread::sleep(Duration::from_millis(100));
    drop(redis);
    println!("redis-server stopped");
    println!(
        "\ndemo finished in {:.1} s ({:.1} s after the build)",
        started.elapsed().as_secs_f64(),
        built_at.elapsed().as_secs_f64()
    );
    if drive.success() && cli_ok && stopped {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!(
            "the demo failed (driver ok: {}, kaiju tool ok: {cli_ok}, graceful stop: {stopped})",
            drive.success()
        ))
    }
}

fn redis_version() -> String {
    kaiju_testkit::server_path()
        .ok()
        .and_then(|p| Command::new(p).arg("--version").output().ok())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("v="))
                .unwrap_or("?")
                .to_owned()
        })
        .unwrap_or_else(|| "?".into())
}
