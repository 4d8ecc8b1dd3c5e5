//! Apps built from the seed's own configs, SIGKILLed under load: what a crashed process was
//! handling is run by the others, with the config exactly as the seed writes it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kaiju_core::AppSettings;
use kaiju_rpc::RpcClient;
use kaiju_tests::{Target, eventually};
use kaiju_transport::fred::prelude::*;
use serde_json::json;

/// A `seed_app` process (`tests/src/bin/seed_app.rs`), SIGKILLed on drop.
struct SeedApp(Child);

impl SeedApp {
    fn start(url: &str, env: &str, name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seed_app"))
            .args([url, env, name])
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start seed_app");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "started", "seed_app did not start");
        Self(child)
    }
}

impl Drop for SeedApp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The seed's `server.yml` sets `pending_messages_time_ms: null` (no claiming) and no consumer
/// id, so every restart joins as a new consumer. The entries a SIGKILLed process was handling
/// were never run by anyone: 45-48 of 8,000 calls were lost after 3 kills (issue 25 item 5).
/// Its consumer-name lease runs out instead, and the live consumers take them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_server_config_loses_no_call_when_processes_are_killed() {
    // `KAIJU_CRASH_CALLS` and `KAIJU_CRASH_APPS` make it larger (the run: 8000 and
    // 4), `KAIJU_CRASH_KILL_MS` spaces the kills.
    let size = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (calls, processes) = (size("KAIJU_CRASH_CALLS", 600), size("KAIJU_CRASH_APPS", 3));
    let kill_every = Duration::from_millis(size("KAIJU_CRASH_KILL_MS", 400) as u64);
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let ns = kaiju_tests::namespace();
    let (env, name) = ns.prefix().split_once('.').unwrap();
    let url = kaiju_tests::settings(Target::Single).unwrap().url.unwrap();
    let url = url.expose().to_owned();
    let marks = ns.key("marks").unwrap().into_string();
    let mut apps: Vec<SeedApp> = (0..processes)
        .map(|_| SeedApp::start(&url, env, name))
        .collect();
    let client = RpcClient::new(
        t.clone(),
        &AppSettings {
            env: env.into(),
            name: name.into(),
            ..AppSettings::default()
        },
    );
    let sender = tokio::spawn({
        let marks = marks.clone();
        async move {
            for i in 0..calls {
                client
                    .call(
                        "work.mark",
                        json!({"key": marks, "id": i.to_string(), "ms": 100}),
                    )
                    .await
                    .unwrap();
            }
        }
    });
    // Three SIGKILLs while the calls are being handled, each process replaced by a new one.
    for app in apps.iter_mut().take(3) {
        tokio::time::sleep(kill_every).await;
        // The old process is SIGKILLed as it is dropped.
        *app = SeedApp::start(&url, env, name);
    }
    let last_kill = Instant::now();
    sender.await.unwrap();
    let ran = || async {
        let runs: HashMap<String, u64> = t.pool().hgetall(marks.as_str()).await.unwrap();
        runs
    };
    eventually(
        &format!("every one of the {calls} calls ran"),
        Duration::from_secs(60),
        || async { ran().await.len() == calls },
    )
    .await;
    let took = last_kill.elapsed();
    let stream = ns.stream("rpc").unwrap().into_string();
    eventually("nothing pending", Duration::from_secs(10), || async {
        kaiju_tests::streams::pending_of(&t, &stream, name).await == 0
    })
    .await;
    let runs: u64 = ran().await.values().sum();
    eprintln!(
        "{calls} calls, {processes} processes, 3 SIGKILLs: all ran, {} ran twice, every call done {took:.1?} after the last kill",
        runs - calls as u64
    );
    // The killed consumers were removed from the group once they owned nothing: the live
    // ones are left.
    eventually(
        "only the live consumers left",
        Duration::from_secs(20),
        || async {
            let consumers: Vec<HashMap<String, kaiju_transport::fred::types::Value>> = t
                .pool()
                .xinfo_consumers(stream.as_str(), name)
                .await
                .unwrap();
            consumers.len() == processes
        },
    )
    .await;
    drop(apps);
}
