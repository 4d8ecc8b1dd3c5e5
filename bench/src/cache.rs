//! kaiju-cache beside raw fred. Each figure is the median of 3 rounds; typed and raw rounds
//! alternate so drift hits both.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kaiju_cache::Cache;
use kaiju_core::{Codec, Msgpack};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: Uuid,
    name: String,
    blocked: bool,
}

use crate::{BoxError, median};

const PAIRS_SEQUENTIAL: usize = 10_000;
const PAIRS_CONCURRENT: usize = 100_000;
const TASKS: usize = 64;
const BULK: usize = 1_000;
const BULK_ROUNDS: usize = 50;

fn user() -> User {
    User {
        id: Uuid::new_v4(),
        name: "bob".into(),
        blocked: false,
    }
}

/// SET+GET pairs split over `tasks` tasks; returns commands per second.
async fn pairs(cache: &Cache, typed: bool, pairs: usize, tasks: usize) -> Result<f64, BoxError> {
    let value = user();
    let bytes = Bytes::from(Msgpack::CACHE.encode(&value)?);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (cache, value, bytes) = (cache.clone(), value.clone(), bytes.clone());
        handles.push(tokio::spawn(async move {
            let pool = cache.transport().pool().clone();
            for i in 0..pairs / tasks {
                let key = format!("bench.{t}.{}", i % 100);
                if typed {
                    cache.set(&key, &value, None).await?;
                    let got: Option<User> = cache.get(&key).await?;
                    assert!(got.is_some());
                } else {
                    let _: () = pool
                        .set(key.as_str(), bytes.clone(), None, None, false)
                        .await?;
                    let got: Option<Bytes> = pool.get(key.as_str()).await?;
                    assert!(got.is_some());
                }
            }
            Ok::<_, BoxError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok((2 * pairs) as f64 / started.elapsed().as_secs_f64())
}

async fn bulk(cache: &Cache) -> Result<(f64, f64), BoxError> {
    let items: Vec<(String, User)> = (0..BULK)
        .map(|i| (format!("bench.bulk.{i}"), user()))
        .collect();
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let (mut set_time, mut get_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..BULK_ROUNDS {
        let t = Instant::now();
        cache.mset(&items, None).await?;
        set_time += t.elapsed();
        let t = Instant::now();
        let got: Vec<Option<User>> = cache.mget(&keys).await?;
        get_time += t.elapsed();
        assert_eq!(got.len(), BULK);
    }
    let values = (BULK * BULK_ROUNDS) as f64;
    Ok((
        values / set_time.as_secs_f64(),
        values / get_time.as_secs_f64(),
    ))
}

pub(crate) async fn run(transport: Transport) -> Result<(), BoxError> {
    let cache = Cache::new(transport);
    // Warm-up: connections, allocator, server.
    pairs(&cache, true, 2_000, 8).await?;

    let mut rows = Vec::new();
    for (label, n, tasks) in [
        ("set+get 1 task", PAIRS_SEQUENTIAL, 1),
        ("set+get 64 tasks", PAIRS_CONCURRENT, TASKS),
    ] {
        let (mut typed, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            typed.push(pairs(&cache, true, n, tasks).await?);
            raw.push(pairs(&cache, false, n, tasks).await?);
        }
        let (typed, raw) = (median(typed), median(raw));
        rows.push(format!(
            "| {label} | {typed:.0} cmd/s | {raw:.0} cmd/s | {:.2}x |",
            typed / raw
        ));
    }
    let (mut sets, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (s, g) = bulk(&cache).await?;
        sets.push(s);
        gets.push(g);
    }
    println!("| kaiju-cache | typed | raw fred | typed / raw |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!("| mset 1,000 values | {:.0} values/s | | |", median(sets));
    println!("| mget 1,000 values | {:.0} values/s | | |", median(gets));
    Ok(())
}
