//! The metrics of issue 27, read as Prometheus scrapes them: a Prometheus recorder is
//! installed, a known sequence of calls, entries, locks and cache reads runs against real
//! Redis, and the rendered text is parsed (not searched) for exactly those counts.
//!
//! A test binary of its own: the recorder is process-wide, and the unlabelled lock and cache
//! counters are read as before/after deltas, which other tests of the same process would
//! disturb. Labelled series use values unique to the test (method names, stream keys).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use kaiju_cache::Cache;
use kaiju_core::Lifecycle;
use kaiju_http::{HttpFront, HttpSettings, PrometheusHandle};
use kaiju_locks::{AcquireOptions, Locks};
use kaiju_rpc::{
    RequestContext, RpcClient, RpcError, RpcListener, RpcModule, Scope, Server, ServerSettings,
};
use kaiju_streams::ListenerSettings;
use kaiju_tests::{app, eventually, single};
use kaiju_transport::fred::prelude::*;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Installs the process's Prometheus recorder once, as an app with an HTTP front does, before
/// anything registers a handle.
fn recorder() -> PrometheusHandle {
    kaiju_http::install_metrics().unwrap()
}

/// `GET /metrics` of an HTTP front serving the recorder, parsed as Prometheus parses it.
async fn scrape() -> Scrape {
    let server = Server::new(
        &kaiju_core::AppSettings::default(),
        ServerSettings::default(),
        RpcModule::new("none"),
    )
    .unwrap();
    let front = HttpFront::new(HttpSettings::default(), server)
        .metrics(recorder())
        .serve()
        .await
        .unwrap();
    let mut socket = tokio::net::TcpStream::connect(front.local_addr())
        .await
        .unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: kaiju\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    front.shutdown(Duration::from_secs(5)).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the series `name{labels}` (a counter or gauge; a histogram's count), 0 if it
/// is not there.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let bucket = format!("{name}_bucket");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name || s.metric == bucket)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("{name} is a summary; buckets are set"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_calls_and_listener_entries_are_counted_exactly() {
    recorder();
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    // A service name of this test only: the method label is not shared with anyone.
    let service = format!("m{}", &app.name[..8]);
    let mut m = RpcModule::new(service.as_str()).permissions([("*", Scope::Guest)]);
    m.method(
        "ok",
        |_, p: BTreeMap<String, i64>, _: RequestContext| async move {
            Ok::<_, RpcError>(p.get("n").copied().unwrap_or(0))
        },
    )
    .unwrap();
    m.method(
        "fail",
        |_, _: BTreeMap<String, i64>, _: RequestContext| async move {
            Err::<i64, _>(RpcError::client("refused on purpose"))
        },
    )
    .unwrap();
    let server = Server::new(&app, ServerSettings::default(), m).unwrap();
    let settings = ListenerSettings {
        max_wait_time_ms: 50,
        ..ListenerSettings::default()
    };
    let mut l = RpcListener::new(t.clone(), &app, settings, Scope::Guest, server).unwrap();
    l.start().await.unwrap();
    let stream = l.listener().stream_key().to_owned();
    let group = l.listener().group().to_owned();
    let client = RpcClient::new(t.clone(), &app);
    let (ok, fail) = (format!("{service}.ok"), format!("{service}.fail"));

    const N_OK: usize = 5;
    const K_FAIL: usize = 2;
    for i in 0..N_OK {
        let got = client
            .request::<_, i64>(ok.as_str(), serde_json::json!({"n": i}))
            .await;
        assert!(got.is_ok(), "{got:?}");
    }
    for _ in 0..K_FAIL {
        assert!(
            client
                .request::<_, kaiju_rpc::Value>(fail.as_str(), serde_json::json!({}))
                .await
                .is_err()
        );
    }
    // Invalid params: rejected, and dead-lettered by the listener.
    assert!(
        client
            .request::<_, kaiju_rpc::Value>(ok.as_str(), serde_json::json!({"n": "x"}))
            .await
            .is_err()
    );
    // An unknown method shares the `unknown` label.
    assert!(
        client
            .request::<_, kaiju_rpc::Value>(format!("{service}.nope"), serde_json::json!({}))
            .await
            .is_err()
    );

    let entries = |outcome: &'static str| {
        let (stream, group) = (stream.clone(), group.clone());
        move || {
            let (stream, group) = (stream.clone(), group.clone());
            async move {
                value(
                    &scrape().await,
                    "kaiju_stream_entries_total",
                    &[("stream", &stream), ("group", &group), ("outcome", outcome)],
                )
            }
        }
    };
    let dead = entries("dead_lettered");
    eventually("both dead letters counted", Duration::from_secs(10), || {
        let n = dead();
        async move { n.await == 2.0 }
    })
    .await;
    let s = scrape().await;
    let rpc = |method: &str, outcome: &str| {
        value(
            &s,
            "kaiju_rpc_requests_total",
            &[
                ("method", method),
                ("outcome", outcome),
                ("transport", "stream"),
            ],
        )
    };
    assert_eq!(rpc(&ok, "ok"), N_OK as f64);
    assert_eq!(rpc(&fail, "client_error"), K_FAIL as f64);
    assert_eq!(rpc(&ok, "rejected"), 1.0);
    assert_eq!(rpc(&fail, "ok"), 0.0);
    assert!(rpc("unknown", "rejected") >= 1.0);
    let durations = value(
        &s,
        "kaiju_rpc_request_duration_seconds",
        &[("method", &ok), ("transport", "stream")],
    );
    assert_eq!(durations, (N_OK + 1) as f64, "one duration per request");
    assert_eq!(entries("processed")().await, (N_OK + K_FAIL) as f64);
    assert_eq!(entries("rejected")().await, 2.0);
    assert_eq!(entries("retried")().await, 0.0);
    assert!(
        value(
            &s,
            "kaiju_stream_batch_size",
            &[("stream", &stream), ("group", &group)]
        ) >= 1.0,
        "reads are recorded"
    );
    // Sampled at the start and every 5 s: present, and nothing is pending by now.
    assert!(
        s.samples
            .iter()
            .any(|x| x.metric == "kaiju_stream_pending_entries"
                && x.labels.get("stream") == Some(stream.as_str()))
    );
    assert_eq!(
        value(
            &s,
            "kaiju_rpc_in_flight_requests",
            &[("transport", "stream")]
        ),
        0.0
    );
    l.stop(Duration::from_secs(5)).await.unwrap();
}

/// The unlabelled lock, cache and transport counters, as deltas. The only test of this binary
/// that touches them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_hand_offs_cache_hits_and_errors_are_counted_exactly() {
    recorder();
    let Some((t, ns)) = single().await else {
        return;
    };
    let locks = Locks::new(t.clone(), "metrics-test").await.unwrap();
    let cache = Cache::new(t.clone());
    let before = scrape().await;

    // One lock hand-off: B queues behind A, A releases.
    let key = ns.key("lock").unwrap();
    let a = locks.acquire(key.as_str()).await.unwrap();
    let waiter = {
        let (locks, key) = (locks.clone(), key.clone());
        tokio::spawn(async move { locks.acquire(key.as_str()).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.release().await.unwrap();
    let b = waiter.await.unwrap().unwrap();
    b.release().await.unwrap();
    // Refused at once: no wait, no acquisition.
    let c = locks.acquire(key.as_str()).await.unwrap();
    let no_wait = AcquireOptions {
        wait: false,
        ..AcquireOptions::default()
    };
    assert!(locks.acquire_with(key.as_str(), no_wait).await.is_err());
    c.release().await.unwrap();

    // One cache hit, one miss (through a fill), one decode failure, one WRONGTYPE.
    let (hit, filled, list) = (
        ns.key("hit").unwrap(),
        ns.key("filled").unwrap(),
        ns.key("list").unwrap(),
    );
    cache.set(hit.as_str(), &"value", None).await.unwrap();
    assert_eq!(
        cache.get::<String>(hit.as_str()).await.unwrap().as_deref(),
        Some("value")
    );
    let v: u64 = cache
        .get_or_set_with(filled.as_str(), Duration::from_secs(60), || async {
            Ok::<_, std::io::Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert!(cache.get::<u64>(hit.as_str()).await.is_err());
    let _: i64 = t.pool().rpush(list.as_str(), "x").await.unwrap();
    assert!(cache.get::<String>(list.as_str()).await.is_err());

    let after = scrape().await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(delta("kaiju_lock_acquisitions_total", &[]), 3.0);
    assert_eq!(delta("kaiju_lock_waits_total", &[]), 1.0);
    assert_eq!(delta("kaiju_lock_handoffs_total", &[]), 1.0);
    assert_eq!(delta("kaiju_lock_wait_seconds", &[]), 1.0);
    assert_eq!(delta("kaiju_lock_renewal_failures_total", &[]), 0.0);
    assert_eq!(delta("kaiju_lock_losses_total", &[]), 0.0);
    let cache_requests = |tier, result| {
        delta(
            "kaiju_cache_requests_total",
            &[("tier", tier), ("result", result)],
        )
    };
    assert_eq!(cache_requests("redis", "hit"), 1.0);
    assert_eq!(cache_requests("redis", "miss"), 1.0);
    assert_eq!(delta("kaiju_cache_fills_total", &[]), 1.0);
    assert_eq!(delta("kaiju_cache_decode_failures_total", &[]), 1.0);
    assert_eq!(
        delta("kaiju_transport_errors_total", &[("kind", "wrong_type")]),
        1.0
    );
}
