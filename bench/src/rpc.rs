//! kaiju-rpc end to end: client `call_each` -> RpcListener -> Server -> a trivial method,
//! beside the kaiju-streams writer -> listener figure on the same server (what the RPC layer
//! costs); then request/response round trips at low load beside a raw PING round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kaiju_core::{AppSettings, Lifecycle};
use kaiju_rpc::{
    NoParams, RpcClient, RpcError, RpcListener, RpcModule, Scope, Server, ServerSettings,
};
use kaiju_streams::{
    HandlerError, Headers, Listener, ListenerSettings, Message, Outgoing, StreamWriter,
};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

use crate::BoxError;

const MESSAGES: usize = 50_000;
const PIPELINE: usize = 100;
const ROUND_TRIPS: usize = 2_000;

type Body = (String, Option<()>);

fn app(name: &str) -> AppSettings {
    AppSettings {
        env: "bench".into(),
        name: name.into(),
        ..AppSettings::default()
    }
}

fn listener_settings(batch: usize) -> ListenerSettings {
    ListenerSettings {
        max_batch_size: batch,
        max_parallel_batches: 4,
        ..ListenerSettings::default()
    }
}

fn noop_module(done: &Arc<AtomicUsize>) -> Result<RpcModule, BoxError> {
    let mut m = RpcModule::new("bench").permissions([("*", Scope::Guest)]);
    let counter = done.clone();
    m.method("noop", move |_, _: NoParams, _| {
        counter.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok::<_, RpcError>(()))
    })?;
    Ok(m)
}

async fn until(done: &AtomicUsize, n: usize) {
    while done.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The kaiju-streams figure: writer (pipelines of 100) -> listener -> no-op handler.
async fn streams(transport: &Transport, batch: usize) -> Result<f64, BoxError> {
    let app = app(&format!("s{batch}"));
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let mut listener = Listener::new(
        transport.clone(),
        &app,
        listener_settings(batch),
        move |_m: Message<Body>| {
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok::<_, HandlerError>(()))
        },
    )?;
    listener.start().await?;
    let writer = StreamWriter::new(transport.clone());
    let body: Body = ("bench.noop".into(), None);
    let started = Instant::now();
    for _ in 0..MESSAGES / PIPELINE {
        let entries = (0..PIPELINE)
            .map(|_| Outgoing {
                stream: &stream,
                body: &body,
                headers: Headers::new(),
            })
            .collect();
        writer.write_many(entries).await?;
    }
    until(&done, MESSAGES).await;
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    listener.stop(Duration::from_secs(10)).await?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    Ok(rate)
}

/// The RPC figure: `RpcClient::call_each` (100 calls per round trip) -> RpcListener -> Server
/// -> `bench.noop`.
async fn rpc(transport: &Transport, batch: usize) -> Result<f64, BoxError> {
    let app = app(&format!("r{batch}"));
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let server = Server::new(&app, ServerSettings::default(), noop_module(&done)?)?;
    let mut listener = RpcListener::new(
        transport.clone(),
        &app,
        listener_settings(batch),
        Scope::System,
        server,
    )?;
    listener.start().await?;
    let client = RpcClient::new(transport.clone(), &app);
    let started = Instant::now();
    for _ in 0..MESSAGES / PIPELINE {
        let calls = (0..PIPELINE)
            .map(|_| ("bench.noop".to_owned(), ()))
            .collect();
        client.call_each(calls).await?;
    }
    until(&done, MESSAGES).await;
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    listener.stop(Duration::from_secs(10)).await?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    Ok(rate)
}

fn percentiles(mut s: Vec<f64>) -> (f64, f64) {
    s.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        s.get(((s.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (pick(0.5), pick(0.99))
}

/// Sequential `request`s (one at a time: low load), in ms.
async fn round_trips(transport: &Transport) -> Result<(f64, f64), BoxError> {
    let app = app("rt");
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    let done = Arc::new(AtomicUsize::new(0));
    let server = Server::new(&app, ServerSettings::default(), noop_module(&done)?)?;
    let settings = ListenerSettings {
        trim_size: Some(1000),
        ..listener_settings(10)
    };
    let mut listener = RpcListener::new(transport.clone(), &app, settings, Scope::System, server)?;
    listener.start().await?;
    let client = RpcClient::new(transport.clone(), &app);
    let _: () = client.request("bench.noop", ()).await?;
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        let _: () = client.request("bench.noop", ()).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    listener.stop(Duration::from_secs(10)).await?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    Ok(percentiles(samples))
}

async fn pings(transport: &Transport) -> Result<(f64, f64), BoxError> {
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let started = Instant::now();
        let _: () = transport.client().ping(None).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentiles(samples))
}

pub(crate) async fn run(transport: Transport) -> Result<(), BoxError> {
    println!(
        "| {MESSAGES} calls to a trivial method, end to end (median of 3) | rate | RPC vs streams |"
    );
    println!("|---|---|---|");
    let mut overhead = Vec::new();
    for batch in [10, 100] {
        let (mut s, mut r, mut on) = (Vec::new(), Vec::new(), Vec::new());
        // Interleaved, so all see the same machine state.
        for _ in 0..3 {
            s.push(streams(&transport, batch).await?);
            r.push(rpc(&transport, batch).await?);
            crate::switch::set(true);
            on.push(rpc(&transport, batch).await?);
            crate::switch::set(false);
        }
        let (s, r, on) = (crate::median(s), crate::median(r), crate::median(on));
        crate::record(&format!("rpc.e2e.{batch}.metrics_on"), on, "calls/s");
        overhead.push((batch, r, on));
        crate::record(&format!("rpc.e2e.{batch}"), r, "calls/s");
        println!(
            "| kaiju-streams writer -> listener, max_batch_size {batch} | {s:.0} msg/s | 1.00x |"
        );
        println!(
            "| kaiju-rpc call_each -> RpcListener -> Server, max_batch_size {batch} | {r:.0} msg/s | {:.2}x |",
            r / s
        );
    }
    println!();
    println!(
        "| RPC with a Prometheus recorder (median of 3) | metrics off | metrics on | on / off |"
    );
    println!("|---|---|---|---|");
    for (batch, off, on) in overhead {
        println!(
            "| call_each -> RpcListener -> Server, max_batch_size {batch} | {off:.0} msg/s | {on:.0} msg/s | {:.3}x |",
            on / off
        );
    }
    let (rp50, rp99) = round_trips(&transport).await?;
    crate::record("rpc.round_trip.p50_ms", rp50, "ms");
    crate::record("rpc.round_trip.p99_ms", rp99, "ms");
    let (pp50, pp99) = pings(&transport).await?;
    println!();
    println!("| round trip at low load ({ROUND_TRIPS} sequential) | p50 | p99 |");
    println!("|---|---|---|");
    println!("| raw PING | {pp50:.3} ms | {pp99:.3} ms |");
    println!("| kaiju-rpc request -> response | {rp50:.3} ms | {rp99:.3} ms |");
    Ok(())
}
