//! A separate process for the lock tests.
//!
//! `lock_worker count <url> <key> <counter> <log> <tasks> <per_task>`: `tasks` tasks each take the
//! lock `per_task` times and increment `counter` with a plain GET then SET (wrong without
//! mutual exclusion), appending `<token> <value read>` to the list `log`.
//!
//! `lock_worker hold <url> <key> <lease_ms>`: takes the lock, prints `held <token>`, sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::time::Duration;

use kaiju_core::RedisSettings;
use kaiju_locks::{AcquireOptions, Locks};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let transport = Transport::connect(&RedisSettings::from_url(args[1].clone()))
        .await
        .unwrap();
    let locks = Locks::new(transport.clone(), format!("worker-{}", std::process::id()))
        .await
        .unwrap();
    match args[0].as_str() {
        "count" => {
            let (key, counter, log) = (args[2].clone(), args[3].clone(), args[4].clone());
            let tasks: usize = args[5].parse().unwrap();
            let per_task: usize = args[6].parse().unwrap();
            let mut handles = Vec::new();
            for _ in 0..tasks {
                let (locks, pool) = (locks.clone(), transport.pool().clone());
                let (key, counter, log) = (key.clone(), counter.clone(), log.clone());
                handles.push(tokio::spawn(async move {
                    for _ in 0..per_task {
                        let guard = locks.acquire(&key).await.unwrap();
                        let value: Option<i64> = pool.get(counter.as_str()).await.unwrap();
                        let value = value.unwrap_or(0);
                        let _: () = pool
                            .set(counter.as_str(), value + 1, None, None, false)
                            .await
                            .unwrap();
                        let _: i64 = pool
                            .rpush(log.as_str(), format!("{} {value}", guard.token()))
                            .await
                            .unwrap();
                        guard.release().await.unwrap();
                    }
                }));
            }
            for handle in handles {
                handle.await.unwrap();
            }
        }
        "hold" => {
            let lease = Duration::from_millis(args[3].parse().unwrap());
            let guard = locks
                .acquire_with(
                    &args[2],
                    AcquireOptions {
                        lease,
                        ..AcquireOptions::default()
                    },
                )
                .await
                .unwrap();
            println!("held {}", guard.token());
            std::io::stdout().flush().unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        other => panic!("unknown mode {other}"),
    }
}
