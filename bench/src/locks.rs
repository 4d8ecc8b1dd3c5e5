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
const HANDOFFS: usize = 2_000;

async fn uncontended(transport: &Transport, kaiju: bool, tasks: usize) -> Result<f64, BoxError> {
    let locks = Locks::new(transport.clone(), "bench").await?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (locks, pool) = (locks.clone(), transport.pool().clone());
        handles.push(tokio::spawn(async move {
            let key = format!("bench.lock.{t}");
            for _ in 0..UNCONTENDED / tasks {
                if kaiju {
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
                    let _: i64 = pool.del(key.as_str()).await?;
                }
            }
            Ok::<_, BoxError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    locks.close().await;
    Ok(UNCONTENDED as f64 / started.elapsed().as_secs_f64())
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
    uncontended(&transport, true, 8).await?; // warm-up
    println!(
        "| kaiju-locks, uncontended | kaiju acquire+release | raw SET NX PX + DEL | kaiju / raw |"
    );
    println!("|---|---|---|---|");
    for tasks in [1, 64] {
        let (mut kaiju, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            kaiju.push(uncontended(&transport, true, tasks).await?);
            raw.push(uncontended(&transport, false, tasks).await?);
        }
        let (kaiju, raw) = (median(kaiju), median(raw));
        println!(
            "| {tasks} task(s), distinct keys | {kaiju:.0} /s | {raw:.0} /s | {:.2}x |",
            kaiju / raw
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
