//! kaiju-rpc against a real single node and a real cluster: the listener's outcomes, the
//! client's calls, request/response, pub/sub, correlation ids across apps.

use std::time::Duration;

use kaiju_core::{AppSettings, Lifecycle, Namespace};
use kaiju_rpc::{
    CallError, NoParams, RequestContext, RpcClient, RpcError, RpcListener, RpcModule,
    RpcSubscriber, Scope, Server, ServerSettings, codes,
};
use kaiju_streams::{Headers, StreamWriter};
use kaiju_tests::rpc::{Add, Seen, module, module_of, seen_len, serve, serve_module, settings};
use kaiju_tests::streams::{dead_letters, field, pending_of, rpc_stream};
use kaiju_tests::{Target, app, eventually, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use serde_json::json;

on_both!(
    calls_reach_typed_methods_with_their_headers,
    each_entry_ends_in_its_documented_outcome,
    batches_and_templates_run_behind_the_listener,
    call_each_writes_one_entry_per_call_in_one_round_trip,
    requests_get_typed_results_and_error_objects,
    a_request_nobody_answers_times_out_and_leaves_nothing,
    correlation_ids_follow_calls_across_apps,
    published_calls_reach_a_subscriber,
    the_clients_entries_are_byte_for_byte_kaijus,
    captured_python_entries_run_on_a_rust_server,
);

/// WIRE.md §2: entries captured from kaiju-redis 2.4.2's `RedisStreamRPCClient`.
const CAPTURES: [&str; 4] = [
    // [["ext.record", {"value": 42}], {"Correlation-Id": "67522f3c63"}]
    "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 2a 81 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 64 aa 36 37 35 32 32 66 33 63 36 33",
    // [["ext.record", {"value": "x"}], {"Correlation-Id": "my-corr-id", "Timeout": 5, "RPC-Retries": 2}]
    "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 a1 78 83 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 64 aa 6d 79 2d 63 6f 72 72 2d 69 64 a7 54 69 6d 65 6f 75 74 05 ab 52 50 43 2d 52 65 74 72 69 65 73 02",
    // [["ext.record", nil], {"Correlation-Id": "7ca5936eaf"}]
    "92 92 aa 65 78 74 2e 72 65 63 6f 72 64 c0 81 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 64 aa 37 63 61 35 39 33 36 65 61 66",
    // [[["ext.record", {"value": 1}], ["ext.record", {"value": 2}]], {"Correlation-Id": "74f161b76b"}]
    "92 92 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 01 92 aa 65 78 74 2e 72 65 63 6f 72 64 81 a5 76 61 6c 75 65 02 81 ae 43 6f 72 72 65 6c 61 74 69 6f 6e 2d 49 64 aa 37 34 66 31 36 31 62 37 36 62",
];

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// The `_` field of every entry of a stream, raw.
async fn payloads(t: &Transport, stream: &str) -> Vec<Vec<u8>> {
    let entries: Vec<(String, std::collections::HashMap<String, bytes::Bytes>)> =
        t.pool().xrange(stream, "-", "+", None).await.unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| fields["_"].to_vec())
        .collect()
}

async fn the_clients_entries_are_byte_for_byte_kaijus(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let client = RpcClient::new(t.clone(), &app);
    client
        .call("ext.record", json!({"value": 42}))
        .header("Correlation-Id", "67522f3c63")
        .await
        .unwrap();
    client
        .call("ext.record", json!({"value": "x"}))
        .header("Correlation-Id", "my-corr-id")
        .timeout(Duration::from_secs(5))
        .retries(2)
        .await
        .unwrap();
    client
        .call("ext.record", ())
        .header("Correlation-Id", "7ca5936eaf")
        .await
        .unwrap();
    let calls = vec![
        ("ext.record".to_owned(), json!({"value": 1})),
        ("ext.record".to_owned(), json!({"value": 2})),
    ];
    client
        .call_multiple(calls)
        .header("Correlation-Id", "74f161b76b")
        .await
        .unwrap();
    let got = payloads(t, rpc_stream(&app).as_str()).await;
    assert_eq!(got, CAPTURES.map(hex).to_vec());
}

async fn captured_python_entries_run_on_a_rust_server(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let seen = Seen::default();
    let mut listener = serve_module(t, &app, module_of("ext", &seen), Scope::System).await;
    for capture in CAPTURES {
        let _: String = t
            .pool()
            .xadd(
                rpc_stream(&app).as_str(),
                false,
                None,
                "*",
                vec![("_", bytes::Bytes::from(hex(capture)))],
            )
            .await
            .unwrap();
    }
    seen_len(&seen, 5).await;
    // Entries run concurrently (the batch's two in order): compare by correlation id.
    let seen = seen.lock().unwrap().clone();
    let by = |id: &str| -> Vec<serde_json::Value> {
        seen.iter()
            .filter(|r| r["correlation_id"] == id)
            .map(|r| r["params"].clone())
            .collect()
    };
    assert_eq!(by("67522f3c63"), [json!({"value": 42})]);
    assert_eq!(by("my-corr-id"), [json!({"value": "x"})]);
    assert_eq!(by("7ca5936eaf"), [json!({})]);
    assert_eq!(by("74f161b76b"), [json!({"value": 1}), json!({"value": 2})]);
    let timed = seen
        .iter()
        .find(|r| r["correlation_id"] == "my-corr-id")
        .unwrap();
    assert_eq!(
        (timed["timeout"].as_i64(), timed["retries"].as_i64()),
        (Some(5), Some(2))
    );
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

async fn calls_reach_typed_methods_with_their_headers(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let seen = Seen::default();
    let mut listener = serve(t, &app, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &app);
    client
        .call("svc.record", json!({"value": 1, "text": "héllo"}))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .header("Correlation-Id", "rust-corr-1")
        .timeout(Duration::from_secs(7))
        .retries(2)
        .await
        .unwrap();
    client.call("svc.record", ()).await.unwrap();
    // Header values of every scalar kind, an integer above i64::MAX included (Python carries
    // any int): the entry runs, it is not malformed.
    client
        .call("svc.record", json!({"big": true}))
        .header("Correlation-Id", "rust-corr-3")
        .header("X-Big", u64::MAX)
        .header("X-Ratio", 0.5)
        .header("X-Flag", true)
        .await
        .unwrap();
    seen_len(&seen, 3).await;
    // Entries run concurrently: find each by its correlation id.
    let mut seen = seen.lock().unwrap().clone();
    let big = seen
        .iter()
        .position(|r| r["correlation_id"] == "rust-corr-3")
        .expect("the entry with big headers ran");
    assert_eq!(seen.remove(big)["params"], json!({"big": true}));
    seen.sort_by_key(|r| r["correlation_id"] != "rust-corr-1");
    assert_eq!(seen[0]["params"], json!({"value": 1, "text": "héllo"}));
    assert_eq!(seen[0]["correlation_id"], "rust-corr-1");
    assert_eq!(seen[0]["auth"], "Basic dXNlcjpwYXNz");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let deadline = seen[0]["deadline"].as_u64().unwrap();
    assert!(
        deadline > now && deadline <= now + 8,
        "Timeout 7 gives a 7 s deadline: {deadline} vs {now}"
    );
    assert_eq!(
        seen[1]["params"],
        json!({}),
        "no params reads as an empty map"
    );
    assert_eq!(seen[1]["correlation_id"].as_str().unwrap().len(), 10);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

async fn each_entry_ends_in_its_documented_outcome(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let seen = Seen::default();
    // A USER-scope listener: `svc.admin` is above it.
    let mut listener = serve(t, &app, &seen, Scope::User).await;
    let writer = StreamWriter::new(t.clone());
    let stream = rpc_stream(&app);
    let s = |v: &str| kaiju_core::Value::Str(v.into());
    let entries: Vec<(&str, kaiju_core::Value)> = vec![
        (
            "unknown",
            kaiju_core::Value::Array(vec![s("svc.nope"), kaiju_core::Value::Nil]),
        ),
        (
            "denied",
            kaiju_core::Value::Array(vec![s("svc.admin"), kaiju_core::Value::Nil]),
        ),
        (
            "invalid",
            kaiju_core::Value::Array(vec![
                s("svc.add"),
                kaiju_core::Value::Map(vec![(s("a"), s("x"))]),
            ]),
        ),
        (
            "positional",
            kaiju_core::Value::Array(vec![
                s("svc.add"),
                kaiju_core::Value::Array(vec![kaiju_core::Value::Int(1)]),
            ]),
        ),
        ("not a request", kaiju_core::Value::Int(5)),
        (
            "client error",
            kaiju_core::Value::Array(vec![s("svc.fail"), kaiju_core::Value::Nil]),
        ),
        (
            "internal",
            kaiju_core::Value::Array(vec![s("svc.boom"), kaiju_core::Value::Nil]),
        ),
        (
            "ok",
            kaiju_core::Value::Array(vec![
                s("svc.add"),
                kaiju_core::Value::Map(vec![
                    (s("a"), kaiju_core::Value::Int(1)),
                    (s("b"), kaiju_core::Value::Int(2)),
                ]),
            ]),
        ),
    ];
    let mut ids = Vec::new();
    for (what, body) in &entries {
        let mut h = Headers::new();
        h.insert("Correlation-Id", *what);
        ids.push(writer.write(&stream, body, h).await.unwrap());
    }
    let dead = listener.listener().dead_letter_key().to_owned();
    eventually(
        "6 dead letters and nothing pending",
        Duration::from_secs(15),
        || async {
            dead_letters(t, &dead).await.len() == 6
                && pending_of(t, stream.as_str(), &app.name).await == 0
        },
    )
    .await;
    let letters = dead_letters(t, &dead).await;
    let reason_of = |id: &str| {
        let letter = letters
            .iter()
            .find(|l| field(l, "id") == Some(id))
            .unwrap_or_else(|| panic!("no dead letter for {id}"));
        (
            field(letter, "kind").unwrap().to_owned(),
            field(letter, "reason").unwrap().to_owned(),
        )
    };
    let expect = [
        (0, "rejected", r#""code":-32601"#),
        (1, "rejected", r#""code":-32601"#),
        (2, "rejected", r#""name":"params.a""#),
        (3, "rejected", "positional"),
        (4, "rejected", r#""code":-32600"#),
        (6, "failed", r#""code":-32603"#),
    ];
    for (i, kind, text) in expect {
        let (k, reason) = reason_of(&ids[i]);
        assert_eq!(k, kind, "{}: {reason}", entries[i].0);
        assert!(reason.contains(text), "{}: {reason}", entries[i].0);
        assert!(
            reason.contains(r#""type":"#) && reason.contains(r#""base_type":"#),
            "{reason}"
        );
    }
    // The denied method looks exactly like an unknown one.
    assert_eq!(
        reason_of(&ids[0]).1.replace("svc.nope", "X"),
        reason_of(&ids[1]).1.replace("svc.admin", "X")
    );
    let stats = listener.server().stats();
    assert_eq!((stats.ok, stats.client_errors), (1, 1), "{stats:?}");
    assert_eq!(
        stats.failed, 2,
        "the internal error ran max_deliveries = 2 times"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

async fn batches_and_templates_run_behind_the_listener(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let seen = Seen::default();
    let mut listener = serve(t, &app, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &app);
    let calls = vec![
        ("svc.add".to_owned(), json!({"a": 1, "b": 2})),
        ("svc.add".to_owned(), json!({"a": "[0]", "b": 10})),
    ];
    client.call_multiple(calls).template().await.unwrap();
    seen_len(&seen, 2).await;
    assert_eq!(seen.lock().unwrap()[1]["params"], json!({"a": 3, "b": 10}));
    // Abort: the failing call keeps its error; the rest never runs; the entry is acked (a
    // client error).
    let calls = vec![
        ("svc.fail".to_owned(), json!({})),
        ("svc.add".to_owned(), json!({"a": 1, "b": 1})),
    ];
    client.call_multiple(calls).abort_on_error().await.unwrap();
    // Then an ordinary batch: both run.
    let calls = vec![
        ("svc.add".to_owned(), json!({"a": 5, "b": 5})),
        ("svc.add".to_owned(), json!({"a": 6, "b": 6})),
    ];
    client.call_multiple(calls).await.unwrap();
    seen_len(&seen, 4).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[2]["params"],
        json!({"a": 5, "b": 5}),
        "the aborted add never ran: {seen:?}"
    );
    eventually("nothing pending", Duration::from_secs(5), || async {
        pending_of(t, rpc_stream(&app).as_str(), &app.name).await == 0
    })
    .await;
    assert_eq!(listener.stats().await.unwrap().dead_lettered, 0);
    assert_eq!(listener.server().stats().aborted, 1);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

async fn call_each_writes_one_entry_per_call_in_one_round_trip(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let app = app(ns);
    let client = RpcClient::new(t.clone(), &app);
    let calls: Vec<_> = (0..5)
        .map(|i| ("svc.add".to_owned(), json!({"a": i, "b": 1})))
        .collect();
    let ids = client.call_each(calls).await.unwrap();
    assert_eq!(ids.len(), 5);
    let len: u64 = t.pool().xlen(rpc_stream(&app).as_str()).await.unwrap();
    assert_eq!(len, 5);
    let seen = Seen::default();
    let mut listener = serve(t, &app, &seen, Scope::System).await;
    seen_len(&seen, 5).await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

async fn requests_get_typed_results_and_error_objects(t: &Transport, ns: &Namespace, _: Target) {
    let app = app(ns);
    let seen = Seen::default();
    let mut listener = serve(t, &app, &seen, Scope::Guest).await;
    let client = RpcClient::new(t.clone(), &app);
    let sum: i64 = client.request("svc.add", Add { a: 2, b: 3 }).await.unwrap();
    assert_eq!(sum, 5);
    // Many at once, over the one reply subscription.
    let all = futures_join((0..20).map(|i| {
        let client = client.clone();
        async move {
            client
                .request::<_, i64>("svc.add", Add { a: i, b: 1 })
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(all, (1..21).collect::<Vec<i64>>());
    match client.request::<_, ()>("svc.fail", ()).await {
        Err(CallError::Rpc(e)) => {
            assert_eq!(
                (e.code(), e.class(), e.base_class()),
                (404, "NotFound", "ClientError")
            );
            assert_eq!(e.data("key"), Some(&kaiju_core::Value::Str("k1".into())));
        }
        other => panic!("{other:?}"),
    }
    match client.request::<_, ()>("svc.admin", ()).await {
        Err(CallError::Rpc(e)) => assert_eq!(e.code(), codes::METHOD_NOT_FOUND),
        other => panic!("{other:?}"),
    }
    match client
        .request::<_, String>("svc.add", Add { a: 1, b: 1 })
        .await
    {
        Err(CallError::Response(e)) => assert!(e.contains("invalid type"), "{e}"),
        other => panic!("{other:?}"),
    }
    // An internal error is answered after the last delivery (max_deliveries = 2).
    match client
        .request::<_, ()>("svc.boom", ())
        .timeout(Duration::from_secs(10))
        .await
    {
        Err(CallError::Rpc(e)) => assert_eq!(e.code(), codes::INTERNAL_ERROR),
        other => panic!("{other:?}"),
    }
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn a_request_nobody_answers_times_out_and_leaves_nothing(
    t: &Transport,
    ns: &Namespace,
    target: Target,
) {
    let app = app(ns);
    let client = RpcClient::new(t.clone(), &app);
    let started = std::time::Instant::now();
    match client
        .request::<_, i64>("svc.add", Add { a: 1, b: 1 })
        .timeout(Duration::from_millis(300))
        .await
    {
        Err(CallError::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // A cancelled request is forgotten too: drop one mid-wait.
    let pending = client
        .request::<_, i64>("svc.add", Add { a: 1, b: 1 })
        .timeout(Duration::from_secs(30));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), pending)
            .await
            .is_err()
    );
    // The reply channel is pub/sub: it exists only while the client's connection does.
    let channels = || async {
        let c: Vec<String> = t
            .client()
            .pubsub_channels(format!("{}._reply.*", app.namespace().unwrap().prefix()))
            .await
            .unwrap();
        c.len()
    };
    // (PUBSUB CHANNELS answers for one node; in a cluster the subscriber may be on another.)
    if target == Target::Single {
        assert_eq!(channels().await, 1);
    }
    drop(client);
    eventually(
        "the reply channel is gone",
        Duration::from_secs(5),
        || async { channels().await == 0 },
    )
    .await;
    // The request entries stay in the stream (a later listener runs them, as notifications).
    let len: u64 = t.pool().xlen(rpc_stream(&app).as_str()).await.unwrap();
    assert_eq!(len, 2);
}

async fn correlation_ids_follow_calls_across_apps(t: &Transport, ns: &Namespace, _: Target) {
    // App A's method calls app B; B sees A's request's correlation id.
    let a = app(ns);
    let b = AppSettings {
        name: format!("{}-b", a.name),
        ..a.clone()
    };
    let seen = Seen::default();
    let mut lb = serve(t, &b, &seen, Scope::System).await;
    let client = RpcClient::new(t.clone(), &a);
    let mut m = RpcModule::new("front").permissions([("*", Scope::Guest)]);
    let (c, target) = (client.clone(), b.name.clone());
    m.method("forward", move |_, _: NoParams, _ctx: RequestContext| {
        let (c, target) = (c.clone(), target.clone());
        async move {
            c.call("svc.record", json!({"from": "a"}))
                .app(target.clone())
                .await
                .map_err(RpcError::internal)?;
            let sum: i64 = c
                .request("svc.add", Add { a: 1, b: 2 })
                .app(target)
                .await
                .map_err(RpcError::internal)?;
            Ok::<_, RpcError>(sum)
        }
    })
    .unwrap();
    let server = Server::new(&a, ServerSettings::default(), m).unwrap();
    let mut la = RpcListener::new(t.clone(), &a, settings(), Scope::Guest, server).unwrap();
    la.start().await.unwrap();
    let sum: i64 = client
        .request("front.forward", ())
        .header("Correlation-Id", "origin-42")
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // The notification runs in a task of B's own: it may finish after the request did.
    let recorded = || {
        seen.lock()
            .unwrap()
            .iter()
            .find(|r| r["method"] == "svc.record")
            .cloned()
    };
    eventually("B ran svc.record", Duration::from_secs(10), || {
        std::future::ready(recorded().is_some())
    })
    .await;
    let record = recorded().unwrap();
    assert_eq!(record["correlation_id"], "origin-42", "{record}");
    la.stop(Duration::from_secs(5)).await.unwrap();
    lb.stop(Duration::from_secs(5)).await.unwrap();
}

async fn published_calls_reach_a_subscriber(t: &Transport, ns: &Namespace, target: Target) {
    let app = app(ns);
    let seen = Seen::default();
    let server = Server::new(&app, ServerSettings::default(), module(&seen)).unwrap();
    let mut sub = RpcSubscriber::new(t.clone(), &app, "rpc", Scope::System, server).unwrap();
    sub.start().await.unwrap();
    let client = RpcClient::new(t.clone(), &app);
    if target == Target::Single {
        let mut receivers = 0;
        for i in 0..3 {
            receivers += client.publish("svc.record", json!({"i": i})).await.unwrap();
        }
        assert_eq!(receivers, 3);
        seen_len(&seen, 3).await;
    } else {
        // In a cluster, PUBLISH counts the subscribers of the node it was sent to, and a
        // message travels between nodes on the cluster bus: pub/sub promises nothing, so
        // publish again until it arrives (measured: lost only under heavy parallel load).
        for i in 0..3 {
            let arrived = || {
                let seen = seen.lock().unwrap();
                seen.iter().any(|r| r["params"]["i"] == i)
            };
            for _ in 0..20 {
                if arrived() {
                    break;
                }
                client.publish("svc.record", json!({"i": i})).await.unwrap();
                eventually_or_not(&arrived, Duration::from_secs(1)).await;
            }
            assert!(arrived(), "message {i} never arrived");
        }
    }
    sub.stop(Duration::from_secs(5)).await.unwrap();
    // After stop, nothing listens.
    eventually("no subscriber left", Duration::from_secs(5), || async {
        client.publish("svc.record", json!({"i": 9})).await.unwrap() == 0
    })
    .await;
}

/// Waits up to `within` for `check`, without failing.
async fn eventually_or_not(check: &impl Fn() -> bool, within: Duration) {
    let started = std::time::Instant::now();
    while !check() && started.elapsed() < within {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
