//! kaiju-locks: uncontended acquire + release beside the raw commands (SET NX PX, DEL), and
//! hand-off latency (release -> next holder) with contenders that each have their own `Locks`
//! (own connections, as separate processes would).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaiju_locks::{AcquireOptions, Locks};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{Expiration, SetOptions};

use crate::{BoxError, median};

const UNCONTENDED: usize = 5_000;
const UNCONTENDED_CONCURRENT: usize = 50_000;
const HANDOFFS: usize = 2_000;

/// How a benchmark loop takes and lets go of a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// `Locks::acquire` + `LockGuard::release`.
    Kaiju,
    /// `SET NX PX` + `DEL`: the bare commands (unsafe: a late DEL deletes the next holder's lock).
    Raw,
    /// `SET NX PX` + a compare-and-delete script: the least a correct hand-written lock does.
    RawSafe,
}

impl Way {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "kaiju" => Some(Self::Kaiju),
            "raw" => Some(Self::Raw),
            "raw-safe" => Some(Self::RawSafe),
            _ => None,
        }
    }
}

static COMPARE_AND_DELETE: std::sync::LazyLock<kaiju_transport::Script> = std::sync::LazyLock::new(
    || {
        kaiju_transport::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
    },
);

/// Acquire+release pairs per second, and the server's µs per pair.
pub(crate) async fn uncontended(
    transport: &Transport,
    way: Way,
    tasks: usize,
) -> Result<(f64, f64), BoxError> {
    let pairs = if tasks == 1 {
        UNCONTENDED
    } else {
        UNCONTENDED_CONCURRENT
    };
    let locks = Locks::new(transport.clone(), "bench").await?;
    let server_before = crate::server_usec(transport).await?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (locks, pool, transport) = (locks.clone(), transport.pool().clone(), transport.clone());
        handles.push(tokio::spawn(async move {
            let key = format!("bench.lock.{t}");
            for _ in 0..pairs / tasks {
                if way == Way::Kaiju {
                    locks.acquire(&key).await?.release().await?;
                } else {
                    let ok: Option<String> = pool
                        .set(
                            key.as_str(),
                            "bench",
                            Some(Expiration::PX(30_000)),
                            Some(SetOptions::NX),
                            false,
                        )
                        .await?;
                    assert!(ok.is_some());
                    let deleted: i64 = if way == Way::Raw {
                        pool.del(key.as_str()).await?
                    } else {
                        COMPARE_AND_DELETE
                            .run(&transport, vec![key.as_str()], vec!["bench"])
                            .await?
                    };
                    assert_eq!(deleted, 1);
                }
            }
            Ok::<_, BoxError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let rate = pairs as f64 / started.elapsed().as_secs_f64();
    let server = (crate::server_usec(transport).await? - server_before) / pairs as f64;
    locks.close().await;
    Ok((rate, server))
}

/// Returns (p50 ms, p99 ms, fewest and most acquisitions of one contender).
async fn handoff(
    transport: &Transport,
    contenders: usize,
) -> Result<(f64, f64, usize, usize), BoxError> {
    let key = format!("bench.handoff.{contenders}");
    // (acquired at, release started at, contender)
    let timeline: Arc<Mutex<Vec<(Instant, Instant, usize)>>> = Arc::default();
    let deadline_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for c in 0..contenders {
        let locks = Locks::new(transport.clone(), format!("c{c}")).await?;
        let (key, timeline, count) = (key.clone(), timeline.clone(), deadline_count.clone());
        handles.push(tokio::spawn(async move {
            let options = AcquireOptions {
                renew: false,
                ..AcquireOptions::default()
            };
            while count.load(std::sync::atomic::Ordering::Relaxed) < HANDOFFS {
                let guard = locks.acquire_with(&key, options.clone()).await?;
                let acquired = Instant::now();
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await; // a tiny critical section
                let releasing = Instant::now();
                guard.release().await?;
                if let Ok(mut t) = timeline.lock() {
                    t.push((acquired, releasing, c));
                }
            }
            locks.close().await;
            Ok::<_, BoxError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let mut timeline = timeline.lock().map_err(|_| "poisoned")?.clone();
    timeline.sort_by_key(|(acquired, _, _)| *acquired);
    let mut gaps: Vec<f64> = timeline
        .windows(2)
        .map(|w| w[1].0.saturating_duration_since(w[0].1).as_secs_f64() * 1000.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let pick = |q: f64| gaps[((gaps.len() as f64 - 1.0) * q) as usize];
    let mut per = vec![0_usize; contenders];
    for (_, _, c) in &timeline {
        per[*c] += 1;
    }
    Ok((
        pick(0.5),
        pick(0.99),
        per.iter().copied().min().unwrap_or(0),
        per.iter().copied().max().unwrap_or(0),
    ))
}

pub(crate) async fn run(transport: Transport) -> Result<(), BoxError> {
    uncontended(&transport, Way::Kaiju, 8).await?; // warm-up
    println!(
        "| kaiju-locks, uncontended, distinct keys (median of 3) | kaiju acquire+release | raw SET NX PX + DEL | raw SET NX PX + compare-and-delete script | kaiju / raw | kaiju / raw safe | server CPU µs per pair (kaiju, raw, raw safe) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for tasks in [1, 64] {
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        let mut server = [Vec::new(), Vec::new(), Vec::new()];
        // Interleaved, so drift hits every way alike.
        for _ in 0..3 {
            for (i, way) in [Way::Kaiju, Way::Raw, Way::RawSafe].into_iter().enumerate() {
                let (rate, us) = uncontended(&transport, way, tasks).await?;
                rates[i].push(rate);
                server[i].push(us);
            }
        }
        let [kaiju, raw, safe] = rates.map(median);
        let [kaiju_us, raw_us, safe_us] = server.map(median);
        crate::record(&format!("locks.uncontended.{tasks}"), kaiju, "pairs/s");
        println!(
            "| {tasks} task(s) | {kaiju:.0} /s | {raw:.0} /s | {safe:.0} /s | {:.2}x | {:.2}x | {kaiju_us:.1}, {raw_us:.1}, {safe_us:.1} |",
            kaiju / raw,
            kaiju / safe,
        );
    }
    println!();
    println!("| hand-off, one key | p50 | p99 | acquisitions per contender (min-max) |");
    println!("|---|---|---|---|");
    for contenders in [4, 16] {
        let (p50, p99, min, max) = handoff(&transport, contenders).await?;
        println!("| {contenders} contenders | {p50:.2} ms | {p99:.2} ms | {min}-{max} |");
    }
    Ok(())
}
