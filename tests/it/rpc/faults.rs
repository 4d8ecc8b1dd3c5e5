//! kaiju-rpc on a bad day: cut connections, lost replies, cancelled requests, hostile reply
//! headers. One test per behaviour, named after it.

use std::time::{Duration, Instant};

use kaiju_core::{Service, Value};
use kaiju_rpc::{CallError, RpcClient, Scope};
use kaiju_streams::{Headers, StreamWriter};
use kaiju_tests::rpc::{Seen, seen_len, serve};
use kaiju_tests::streams::rpc_stream;
use kaiju_tests::{Target, app, eventually};
use kaiju_transport::fred::prelude::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_work_again_after_the_reply_connection_was_cut() {
    let Some((proxy, through, direct)) = kaiju_tests::through_proxy().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&direct, &app, &seen, Scope::System).await;
    let client = RpcClient::new(through.clone(), &app);
    let sum: i64 = client
        .request("svc.add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // Every connection of the client goes half-open (the reply subscription included).
    proxy.cut_existing();
    let started = Instant::now();
    eventually(
        "a request answered after the cut",
        Duration::from_secs(15),
        || async {
            client
                .request::<_, i64>("svc.add", json!({"a": 2, "b": 2}))
                .timeout(Duration::from_millis(500))
                .await
                .is_ok()
        },
    )
    .await;
    eprintln!(
        "requests answered again {:?} after the cut",
        started.elapsed()
    );
    // And keep working: the subscription was made again.
    for i in 0..10 {
        let sum: i64 = client
            .request("svc.add", json!({"a": i, "b": 1}))
            .await
            .unwrap();
        assert_eq!(sum, i + 1);
    }
    assert_eq!(
        client.waiting_requests(),
        0,
        "timed-out requests are forgotten"
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_reply_is_lost_is_not_written_twice() {
    let Some((proxy, through, direct)) = kaiju_tests::through_proxy().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let client = RpcClient::new(through, &app);
    proxy.drop_next_reply();
    let result = client.call("svc.add", json!({"a": 1, "b": 2})).await;
    assert!(
        result.is_err(),
        "the client cannot know whether it was written: {result:?}"
    );
    assert_eq!(proxy.dropped(), 1);
    let len: u64 = direct.pool().xlen(rpc_stream(&app).as_str()).await.unwrap();
    assert_eq!(
        len, 1,
        "written once, never resent behind the caller's back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_are_forgotten_at_every_await() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &app);
    // Cancel after 0, 1, 2, ... polls: before the subscription, before the write, while waiting.
    for budget in [0_u64, 50, 100, 200, 400, 800, 1600] {
        let request = client.request::<_, i64>("svc.add", json!({"a": 1, "b": 1}));
        let _ = tokio::time::timeout(Duration::from_micros(budget), request).await;
        assert_eq!(client.waiting_requests(), 0, "after {budget} µs");
    }
    // The client still works, and its subscription too.
    let sum: i64 = client
        .request("svc.add", json!({"a": 5, "b": 5}))
        .await
        .unwrap();
    assert_eq!(sum, 10);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_address_that_is_not_a_reply_channel_gets_nothing() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    // Someone listens on another component's channel (a lock release channel, say).
    let victim = format!("{{{}.lock.x}}:__release", app.name);
    let sub = kaiju_tests::connect(Target::Single).await.unwrap();
    let watcher = sub.dedicated_connection().await.unwrap();
    let mut messages = watcher.client().message_rx();
    watcher.client().subscribe(victim.as_str()).await.unwrap();
    let writer = StreamWriter::new(t.clone());
    let body = Value::Array(vec![
        Value::Str("svc.add".into()),
        Value::Map(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Str("b".into()), Value::Int(1)),
        ]),
    ]);
    let mut h = Headers::new();
    h.insert("Reply-To", victim.as_str());
    h.insert("Request-Id", "1");
    writer.write(&rpc_stream(&app), &body, h).await.unwrap();
    // A Request-Id of the wrong type, and a Reply-To that is a map: the call runs, no reply.
    let mut h = Headers::new();
    h.insert("Reply-To", kaiju_streams::HeaderValue::Int(5));
    writer.write(&rpc_stream(&app), &body, h).await.unwrap();
    seen_len(&seen, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        messages.try_recv().is_err(),
        "the server published into a foreign channel"
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_an_app_nobody_serves_times_out_at_its_deadline() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let client = RpcClient::new(t, &app);
    let started = Instant::now();
    let r = client
        .request::<_, i64>("svc.add", json!({"a": 1}))
        .timeout(Duration::from_millis(700))
        .await;
    let took = started.elapsed();
    assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
