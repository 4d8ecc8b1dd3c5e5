//! `kaiju-bench cache|locks|streams|rpc|http`: kaiju-rs beside raw fred on the server at `KAIJU_REDIS_URL`.
//! Run through `cargo xtask bench`, which starts the server and adds redis-benchmark.

mod cache;
mod http;
mod locks;
mod rpc;
mod streams;
mod switch;

use kaiju_core::RedisSettings;
use kaiju_transport::Transport;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server's CPU time so far (µs, user + system, from `INFO cpu`): the difference across a
/// run, divided by its operations, is what each costs the server (commands, scripts and
/// socket I/O), which is what limits throughput once the server's core is saturated.
async fn server_usec(transport: &Transport) -> Result<f64, BoxError> {
    use kaiju_transport::fred::prelude::*;
    use kaiju_transport::fred::types::{ClusterHash, CustomCommand};
    let info: String = transport
        .client()
        .custom(
            CustomCommand::new_static("INFO", ClusterHash::Random, false),
            vec!["cpu"],
        )
        .await?;
    let seconds: f64 = info
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum();
    Ok(seconds * 1e6)
}

/// Appends a figure to the file named by `KAIJU_BENCH_JSON` (one JSON object per line), for
/// `cargo xtask bench --compare-python`, which sets it and reads the same keys from the Python
/// peer (`bench/python/peer.py`).
fn record(name: &str, value: f64, unit: &str) {
    let Ok(path) = std::env::var("KAIJU_BENCH_JSON") else {
        return;
    };
    let line = format!("{{\"name\": \"{name}\", \"value\": {value}, \"unit\": \"{unit}\"}}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        eprintln!("kaiju-bench: cannot write {path}: {e}");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("KAIJU_REDIS_URL").map_err(|_| "KAIJU_REDIS_URL is not set")?;
    switch::install()?;
    let transport = Transport::connect(&RedisSettings::from_url(url)).await?;
    match std::env::args().nth(1).as_deref() {
        Some("cache") => cache::run(transport).await,
        Some("locks") => locks::run(transport).await,
        Some("streams") => streams::run(transport).await,
        Some("rpc") => rpc::run(transport).await,
        Some("http") => http::run().await,
        // One workload alone, for `perf record`: `kaiju-bench profile locks <kaiju|raw|raw-safe>
        // <tasks>`, `kaiju-bench profile streams <kaiju|raw> <batch>` (end to end).
        Some("profile") => {
            let arg = |n: usize| std::env::args().nth(n).unwrap_or_default();
            match (arg(2).as_str(), arg(3).as_str()) {
                ("locks", way) => {
                    let way = locks::Way::parse(way).ok_or("kaiju, raw or raw-safe")?;
                    let tasks = arg(4).parse().unwrap_or(1);
                    let (rate, server) = locks::uncontended(&transport, way, tasks).await?;
                    println!("{rate:.0} pairs/s, server {server:.1} µs per pair");
                    Ok(())
                }
                ("write", way) => {
                    let rate = streams::write_only(&transport, way == "kaiju").await?;
                    println!("{rate:.0} msg/s");
                    Ok(())
                }
                ("streams", way) => {
                    let batch = arg(4).parse().unwrap_or(100);
                    let rate = streams::end_to_end(&transport, way == "kaiju", batch).await?;
                    println!("{rate:.0} msg/s");
                    Ok(())
                }
                other => Err(format!("nothing to profile as {other:?}").into()),
            }
        }
        other => Err(format!("unknown benchmark {other:?} (cache, locks, streams, rpc)").into()),
    }
}
