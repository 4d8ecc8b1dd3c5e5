//! kaiju-streams end to end: writer -> listener -> no-op handler, beside a raw fred loop
//! (pipelined XADD, XREADGROUP COUNT 100, XACK) on the same server; then latency at a steady
//! 1,000 messages/s, and the process's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kaiju_core::{AppSettings, Lifecycle};
use kaiju_streams::{
    HandlerError, Headers, Listener, ListenerSettings, Message, Outgoing, StreamWriter,
};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;

use crate::BoxError;

const MESSAGES: usize = 100_000;
const PIPELINE: usize = 100;
const BIG_BACKLOG: usize = 1_000_000;

type Body = (String, u64);

fn app(name: &str) -> AppSettings {
    AppSettings {
        env: "bench".into(),
        name: name.into(),
        ..AppSettings::default()
    }
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A started listener whose no-op handler counts entries.
async fn counting_listener(
    transport: &Transport,
    app: &AppSettings,
    batch: usize,
) -> Result<(impl Lifecycle, Arc<AtomicUsize>), BoxError> {
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let settings = ListenerSettings {
        max_batch_size: batch,
        max_parallel_batches: 4,
        ..ListenerSettings::default()
    };
    let mut listener = Listener::new(
        transport.clone(),
        app,
        settings,
        move |_m: Message<Body>| {
            counter.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Ok::<_, HandlerError>(()))
        },
    )?;
    listener.start().await?;
    Ok((listener, done))
}

async fn until_handled(done: &AtomicUsize) {
    while done.load(Ordering::Relaxed) < MESSAGES {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Writes `MESSAGES` entries with the kaiju writer, in pipelines of `PIPELINE`.
async fn write_all(transport: &Transport, stream: &kaiju_core::Key) -> Result<(), BoxError> {
    write_n(transport, stream, MESSAGES).await
}

async fn write_n(
    transport: &Transport,
    stream: &kaiju_core::Key,
    n: usize,
) -> Result<(), BoxError> {
    let writer = StreamWriter::new(transport.clone());
    let body: Body = ("bench.noop".into(), 0);
    for _ in 0..n / PIPELINE {
        let entries = (0..PIPELINE)
            .map(|_| Outgoing {
                stream,
                body: &body,
                headers: Headers::new(),
            })
            .collect();
        writer.write_many(entries).await?;
    }
    Ok(())
}

async fn kaiju(transport: &Transport, batch: usize) -> Result<f64, BoxError> {
    let app = app(&format!("e2e{batch}"));
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    let (mut listener, done) = counting_listener(transport, &app, batch).await?;
    let started = Instant::now();
    write_all(transport, &stream).await?;
    until_handled(&done).await;
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    listener.stop(Duration::from_secs(10)).await?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    Ok(rate)
}

/// A message as a hand-written producer sends it: `[body, headers]` in msgpack, encoded per
/// message (what a kaiju consumer reads; no correlation id).
fn raw_payload(n: u64) -> Result<Bytes, BoxError> {
    Ok(Bytes::from(kaiju_streams::encode(
        &("bench.noop", n),
        &Headers::new(),
    )?))
}

/// What the raw consumer does with a read: decodes each message for a no-op handler; the ids
/// to ack.
fn raw_handle(reply: Value, key: &str) -> Result<Vec<String>, BoxError> {
    let mut streams = reply.into_xread_response::<String, String, String, Bytes>()?;
    let entries = streams.remove(key).unwrap_or_default();
    let mut ids = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        if let Some(payload) = fields.get("_") {
            let (body, _): (Body, Headers) = kaiju_streams::decode(payload)?;
            std::hint::black_box(body);
        }
        ids.push(id);
    }
    Ok(ids)
}

/// The hand-written loop: pipelined XADD of messages encoded one by one; XREADGROUP COUNT
/// `count` BLOCK 500, each message decoded for a no-op handler, then XACK of what it read.
async fn raw(transport: &Transport, count: u64) -> Result<f64, BoxError> {
    let name = kaiju_core::Namespace::new("bench", "raw")?.stream("rpc")?;
    let key = name.as_str();
    let _: i64 = transport.pool().del(key).await?;
    let _: () = transport.pool().xgroup_create(key, "g", "0", true).await?;
    let reader = transport
        .blocking_connection(Duration::from_millis(500))
        .await?;
    let stream = name.clone();
    let consumer = tokio::spawn(async move {
        let key = stream.as_str();
        let mut done = 0;
        while done < MESSAGES {
            let reply: Value = reader
                .client()
                .xreadgroup("g", "c", Some(count), Some(500), false, key, ">")
                .await?;
            if reply.is_null() {
                continue;
            }
            let ids = raw_handle(reply, key)?;
            done += ids.len();
            let _: u64 = reader.client().xack(key, "g", ids).await?;
        }
        Ok::<_, BoxError>(())
    });
    let started = Instant::now();
    raw_write(transport, key).await?;
    consumer.await??;
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    let _: i64 = transport.pool().del(key).await?;
    Ok(rate)
}

/// The raw loop's producer: `MESSAGES` XADDs in pipelines of `PIPELINE`.
async fn raw_write(transport: &Transport, key: &str) -> Result<(), BoxError> {
    let client = transport.client();
    for round in 0..MESSAGES / PIPELINE {
        let pipeline = client.pipeline();
        for i in 0..PIPELINE {
            let payload = raw_payload((round * PIPELINE + i) as u64)?;
            let _: Value = pipeline
                .xadd(key, false, None, "*", vec![("_", payload)])
                .await?;
        }
        let _: Vec<Value> = pipeline.all().await?;
    }
    Ok(())
}

/// The writer alone: `MESSAGES` entries in pipelines of `PIPELINE`, through `StreamWriter`
/// or as the raw loop writes them.
pub(crate) async fn write_only(transport: &Transport, kaiju_writer: bool) -> Result<f64, BoxError> {
    let key = kaiju_core::Namespace::new("bench", "write")?.stream("rpc")?;
    let _: i64 = transport.pool().del(key.as_str()).await?;
    let started = Instant::now();
    if kaiju_writer {
        write_all(transport, &key).await?;
    } else {
        raw_write(transport, key.as_str()).await?;
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    let _: i64 = transport.pool().del(key.as_str()).await?;
    Ok(rate)
}

/// One end-to-end run: the kaiju listener with `max_batch_size` `batch`, or the raw loop with
/// `COUNT batch`.
pub(crate) async fn end_to_end(
    transport: &Transport,
    kaiju_listener: bool,
    batch: usize,
) -> Result<f64, BoxError> {
    if kaiju_listener {
        kaiju(transport, batch).await
    } else {
        raw(transport, batch as u64).await
    }
}

/// Drains a backlog written beforehand: the listener alone, or the raw consumer alone.
async fn drain(transport: &Transport, batch: Option<usize>) -> Result<f64, BoxError> {
    let app = app("drain");
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    write_all(transport, &stream).await?;
    let started = Instant::now();
    match batch {
        Some(batch) => {
            let (mut listener, done) = counting_listener(transport, &app, batch).await?;
            until_handled(&done).await;
            listener.stop(Duration::from_secs(10)).await?;
        }
        None => {
            let key = stream.as_str();
            let _: () = transport.pool().xgroup_create(key, "g", "0", false).await?;
            let client = transport.client();
            let mut done = 0;
            while done < MESSAGES {
                let reply: Value = client
                    .xreadgroup("g", "c", Some(100), None, false, key, ">")
                    .await?;
                let ids = raw_handle(reply, key)?;
                done += ids.len();
                let _: u64 = client.xack(key, "g", ids).await?;
            }
        }
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    Ok(rate)
}

async fn latency(transport: &Transport) -> Result<(f64, f64), BoxError> {
    let app = app("latency");
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(3000)));
    let record = samples.clone();
    let mut listener = Listener::new(
        transport.clone(),
        &app,
        ListenerSettings::default(),
        move |m: Message<Body>| {
            let micros = micros_now().saturating_sub(m.body.1);
            if let Ok(mut s) = record.lock() {
                s.push(micros as f64 / 1000.0);
            }
            std::future::ready(Ok::<_, HandlerError>(()))
        },
    )?;
    listener.start().await?;
    let writer = StreamWriter::new(transport.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..3000 {
        tick.tick().await;
        writer
            .write(
                &stream,
                &("bench.noop".to_owned(), micros_now()),
                Headers::new(),
            )
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.stop(Duration::from_secs(10)).await?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    let mut s = samples.lock().map_err(|_| "poisoned")?.clone();
    s.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        s.get(((s.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok((pick(0.5), pick(0.99)))
}

/// Peak RSS growth (KiB) while a listener drains a backlog of `n` entries, and its rate. The
/// peak is reset (`/proc/self/clear_refs`) after the backlog is written, so it is the
/// listener's alone.
async fn big_drain(transport: &Transport, n: usize) -> Result<(u64, f64), BoxError> {
    let app = app("bigdrain");
    let stream = app.namespace()?.stream("rpc")?;
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    write_n(transport, &stream, n).await?;
    let before = memory_kib("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5")?;
    let started = Instant::now();
    let (mut listener, done) = counting_listener(transport, &app, 100).await?;
    while done.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    listener.stop(Duration::from_secs(10)).await?;
    let peak = memory_kib("VmHWM:");
    let _: i64 = transport.pool().del(stream.as_str()).await?;
    Ok((peak.saturating_sub(before), rate))
}

fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) async fn run(transport: Transport) -> Result<(), BoxError> {
    let rss_start = memory_kib("VmRSS:");
    println!(
        "| end to end, {MESSAGES} messages (median of 3) | kaiju listener | raw fred: pipelined XADD, XREADGROUP COUNT n, decode, XACK | kaiju / raw |"
    );
    println!("|---|---|---|---|");
    let mut overhead = Vec::new();
    for batch in [10, 100] {
        let (mut k, mut r, mut on) = (Vec::new(), Vec::new(), Vec::new());
        // Interleaved, so drift hits all.
        for _ in 0..3 {
            k.push(kaiju(&transport, batch).await?);
            r.push(raw(&transport, batch as u64).await?);
            crate::switch::set(true);
            on.push(kaiju(&transport, batch).await?);
            crate::switch::set(false);
        }
        let (k, r, on) = (crate::median(k), crate::median(r), crate::median(on));
        crate::record(&format!("streams.e2e.{batch}.metrics_on"), on, "msg/s");
        overhead.push((batch, k, on));
        crate::record(&format!("streams.e2e.{batch}"), k, "msg/s");
        println!(
            "| max_batch_size {batch} / COUNT {batch} | {k:.0} msg/s | {r:.0} msg/s | {:.2}x |",
            k / r
        );
    }
    println!();
    println!(
        "| kaiju listener with a Prometheus recorder (median of 3) | metrics off | metrics on | on / off |"
    );
    println!("|---|---|---|---|");
    for (batch, off, on) in overhead {
        println!(
            "| end to end, max_batch_size {batch} | {off:.0} msg/s | {on:.0} msg/s | {:.3}x |",
            on / off
        );
    }
    let raw_drain = crate::median(vec![
        drain(&transport, None).await?,
        drain(&transport, None).await?,
        drain(&transport, None).await?,
    ]);
    let kaiju_drain = crate::median(vec![
        drain(&transport, Some(100)).await?,
        drain(&transport, Some(100)).await?,
        drain(&transport, Some(100)).await?,
    ]);
    crate::record("streams.drain.100", kaiju_drain, "msg/s");
    println!();
    println!("| draining a backlog of {MESSAGES} (consumer only) | rate | vs raw |");
    println!("|---|---|---|");
    println!("| raw fred: XREADGROUP COUNT 100, decode, XACK | {raw_drain:.0} msg/s | 1.00x |");
    println!(
        "| kaiju listener, max_batch_size 100 | {kaiju_drain:.0} msg/s | {:.2}x |",
        kaiju_drain / raw_drain
    );
    let (p50, p99) = latency(&transport).await?;
    crate::record("streams.latency.p50_ms", p50, "ms");
    crate::record("streams.latency.p99_ms", p99, "ms");
    println!();
    println!("| write -> handler latency at 1,000 msg/s (batch 10, 3,000 msgs) | p50 | p99 |");
    println!("|---|---|---|");
    println!("| kaiju writer + listener | {p50:.2} ms | {p99:.2} ms |");
    let (growth, rate) = big_drain(&transport, BIG_BACKLOG).await?;
    println!();
    println!(
        "listener draining a backlog of {BIG_BACKLOG}: {rate:.0} msg/s, peak RSS growth {growth} KiB"
    );
    println!(
        "process memory: RSS at start {} KiB, peak (VmHWM) {} KiB, after the runs {} KiB",
        rss_start,
        memory_kib("VmHWM:"),
        memory_kib("VmRSS:")
    );
    Ok(())
}
