//! kaiju-cache beside raw fred. Each figure is the median of 3 rounds; typed and raw rounds
//! alternate so drift hits both.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kaiju_cache::{Cache, NearCache, NearCacheOptions};
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

/// How a read of a cached key is made, for the read rows.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// `Cache::get`.
    Get,
    /// `Cache::get_or_set_with` on a key that is cached (the loader never runs).
    GetOrSet,
    /// `NearCache::get` of a key read before (a hit: no round trip).
    NearHit,
}

/// Reads of 100 cached keys split over `tasks` tasks; returns reads per second.
async fn reads(
    cache: &Cache,
    near: &NearCache,
    how: Read,
    n: usize,
    tasks: usize,
) -> Result<f64, BoxError> {
    let keys: Vec<String> = (0..100).map(|i| format!("bench.read.{i}")).collect();
    let items: Vec<(String, User)> = keys.iter().map(|k| (k.clone(), user())).collect();
    cache.mset(&items, None).await?;
    for key in &keys {
        let _: Option<User> = near.get(key).await?;
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (cache, near, keys) = (cache.clone(), near.clone(), keys.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..n / tasks {
                let key = &keys[(t + i) % keys.len()];
                let got: Option<User> = match how {
                    Read::Get => cache.get(key).await?,
                    Read::GetOrSet => Some(
                        cache
                            .get_or_set_with(key, Duration::from_secs(60), || async {
                                Err::<User, _>(std::io::Error::other("the key is cached"))
                            })
                            .await?,
                    ),
                    Read::NearHit => near.get(key).await?,
                };
                assert!(got.is_some());
            }
            Ok::<_, BoxError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
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
        crate::record(&format!("cache.set_get.{tasks}"), typed, "cmd/s");
        rows.push(format!(
            "| {label} | {typed:.0} cmd/s | {raw:.0} cmd/s | {:.2}x |",
            typed / raw
        ));
    }
    let near = NearCache::new(cache.clone(), NearCacheOptions::default()).await?;
    let mut read_rows = Vec::new();
    for (label, how) in [
        ("get_or_set_with, cached key", Read::GetOrSet),
        ("near cache hit", Read::NearHit),
    ] {
        let (mut kaiju, mut get) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            kaiju.push(reads(&cache, &near, how, PAIRS_CONCURRENT, TASKS).await?);
            get.push(reads(&cache, &near, Read::Get, PAIRS_CONCURRENT, TASKS).await?);
        }
        let (kaiju, get) = (median(kaiju), median(get));
        read_rows.push(format!(
            "| {label}, 64 tasks | {kaiju:.0} reads/s | {get:.0} reads/s | {:.2}x |",
            kaiju / get
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
    let (sets, gets) = (median(sets), median(gets));
    crate::record("cache.mset.1000", sets, "values/s");
    crate::record("cache.mget.1000", gets, "values/s");
    println!("| mset 1,000 values | {sets:.0} values/s | | |");
    println!("| mget 1,000 values | {gets:.0} values/s | | |");
    println!();
    println!("| reads of a cached key | kaiju | plain Cache::get | ratio |");
    println!("|---|---|---|---|");
    for row in read_rows {
        println!("{row}");
    }
    Ok(())
}
