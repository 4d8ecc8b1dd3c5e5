//! `cargo xtask redis up|down|status`: servers for working by hand.
//!
//! `up` leaves the processes running and writes their pids and URLs to
//! `kaiju-redis/state` of the target directory; `down` kills exactly those pids (after checking they are still
//! redis-server processes) and removes their directories.

use std::path::PathBuf;
use std::process::ExitCode;

use kaiju_testkit::{ClusterOptions, RedisCluster, RedisServer, ServerOptions, TlsFiles};

use crate::servers::start_tls_server;
use crate::{procs, target_dir};

fn state_file() -> Result<PathBuf, String> {
    Ok(target_dir()?.join("kaiju-redis").join("state"))
}

/// The certificates of the TLS server, kept until `down`.
fn tls_dir() -> Result<PathBuf, String> {
    Ok(target_dir()?.join("kaiju-redis").join("tls"))
}

pub(crate) fn run(args: &[String]) -> Result<ExitCode, String> {
    match args.first().map(String::as_str) {
        Some("up") => up(),
        Some("down") => down(),
        Some("status") => status(),
        _ => Err("usage: cargo xtask redis up|down|status".into()),
    }
}

/// Lines of the state file: `pid <pid> <dir>` and `url <name> <url>`.
fn read_state() -> Result<Vec<(String, String, String)>, String> {
    Ok(std::fs::read_to_string(state_file()?)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
            ))
        })
        .collect())
}

fn up() -> Result<ExitCode, String> {
    if read_state()?
        .iter()
        .any(|(kind, pid, _)| kind == "pid" && pid.parse().is_ok_and(procs::is_redis_server))
    {
        return Err(
            "servers from an earlier `redis up` still run; `cargo xtask redis down` first".into(),
        );
    }
    let tls_dir = tls_dir()?;
    let _ = std::fs::remove_dir_all(&tls_dir);
    let tls_files = TlsFiles::generate(&tls_dir).map_err(|e| e.to_string())?;
    let single = RedisServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    let tls = start_tls_server(&tls_files)?;
    let cluster = RedisCluster::start(ClusterOptions::default()).map_err(|e| e.to_string())?;
    let mut state = format!(
        "url single {}\nurl tls {}\nurl cluster {}\n",
        single.url(),
        tls.url(),
        cluster.url()
    );
    let exports = format!(
        "export KAIJU_REDIS_URL={}\nexport KAIJU_REDIS_CLUSTER_URL='{}'\n\
         export KAIJU_REDIS_TLS_URL={}\nexport KAIJU_REDIS_TLS_DIR={}\n",
        single.url(),
        cluster.url(),
        tls.url(),
        tls_dir.display()
    );
    let dirs: Vec<String> = [&single, &tls]
        .into_iter()
        .chain(cluster.nodes())
        .map(|s| s.dir().display().to_string())
        .collect();
    // Detach: the processes outlive xtask; `down` stops them by pid.
    let mut servers = vec![single, tls];
    servers.extend(cluster.into_nodes());
    for (server, dir) in servers.into_iter().zip(dirs) {
        if let Some(pid) = server.detach() {
            state.push_str(&format!("pid {pid} {dir}\n"));
        }
    }
    let file = state_file()?;
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(&file, state).map_err(|e| e.to_string())?;
    print!("{exports}");
    eprintln!("xtask: servers up; state in {}", file.display());
    Ok(ExitCode::SUCCESS)
}

fn down() -> Result<ExitCode, String> {
    let mut stopped = 0;
    for (kind, pid, dir) in read_state()? {
        if kind != "pid" {
            continue;
        }
        if let Ok(pid) = pid.parse::<u32>()
            && procs::is_redis_server(pid)
        {
            procs::kill(pid);
            stopped += 1;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(state_file()?);
    let _ = std::fs::remove_dir_all(tls_dir()?);
    eprintln!("xtask: stopped {stopped} redis-server process(es)");
    Ok(ExitCode::SUCCESS)
}

fn status() -> Result<ExitCode, String> {
    let state = read_state()?;
    if state.is_empty() {
        println!("no servers started by `cargo xtask redis up`");
        return Ok(ExitCode::SUCCESS);
    }
    for (kind, a, b) in state {
        match kind.as_str() {
            "url" => println!("{a:<8} {b}"),
            "pid" => {
                let alive = a.parse().is_ok_and(procs::is_redis_server);
                println!("pid {a:<8} {}", if alive { "running" } else { "gone" });
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
