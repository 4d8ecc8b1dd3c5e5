//! `kaiju-bench cache|locks|streams|rpc`: kaiju-rs beside raw fred on the server at `KAIJU_REDIS_URL`.
//! Run through `cargo xtask bench`, which starts the server and adds redis-benchmark.

mod cache;
mod locks;
mod rpc;
mod streams;

use kaiju_core::RedisSettings;
use kaiju_transport::Transport;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("KAIJU_REDIS_URL").map_err(|_| "KAIJU_REDIS_URL is not set")?;
    let transport = Transport::connect(&RedisSettings::from_url(url)).await?;
    match std::env::args().nth(1).as_deref() {
        Some("cache") => cache::run(transport).await,
        Some("locks") => locks::run(transport).await,
        Some("streams") => streams::run(transport).await,
        Some("rpc") => rpc::run(transport).await,
        other => Err(format!("unknown benchmark {other:?} (cache, locks, streams, rpc)").into()),
    }
}
