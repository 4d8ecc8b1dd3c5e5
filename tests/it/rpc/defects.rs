//! The defects an adversarial review of kaiju-rpc found, each a regression test named after the
//! behaviour it checks (single node: they break their own connections and servers).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kaiju_core::{AppSettings, Service, Value};
use kaiju_rpc::{CallError, RpcClient, RpcSubscriber, Scope, Server, ServerSettings};
use kaiju_streams::{HeaderValue, Headers, ListenerSettings, StreamWriter};
use kaiju_tests::rpc::sleeper::{Counts, listen, module, quick, sleep_params};
use kaiju_tests::streams::{dead_letters, field, pending_of, rpc_stream};
use kaiju_tests::{app, eventually, single};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

// ---------------------------------------------------------------------------------------------
// D-1: a client and its `with_topic` copy share the reply channel but count request ids from 1
// each: replies are crossed.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_a_client_never_get_each_others_replies() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l1 = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let other = ListenerSettings {
        topic: "other".into(),
        ..quick()
    };
    let mut l2 = listen(&t, &app, other, ServerSettings::default(), &counts).await;

    let a = RpcClient::new(t.clone(), &app);
    // Copy made before the first request: two subscriptions on the same channel.
    let b = a.with_topic("other");
    let (ra, rb) = tokio::join!(
        a.request::<_, String>("svc.sleep", sleep_params(600, "A"))
            .timeout(Duration::from_secs(5))
            .into_future(),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            b.request::<_, String>("svc.sleep", sleep_params(50, "B"))
                .timeout(Duration::from_secs(5))
                .await
        }
    );
    let first = format!("{ra:?} / {rb:?}");

    // Copy made after the first request: one shared pending map.
    let c = RpcClient::new(t.clone(), &app);
    let _: String = c
        .request("svc.sleep", sleep_params(0, "warm"))
        .await
        .unwrap();
    let d = c.with_topic("other");
    let (rc, rd) = tokio::join!(
        c.request::<_, String>("svc.sleep", sleep_params(600, "C"))
            .timeout(Duration::from_secs(5))
            .into_future(),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.request::<_, String>("svc.sleep", sleep_params(50, "D"))
                .timeout(Duration::from_secs(5))
                .await
        }
    );
    let second = format!("{rc:?} / {rd:?}");
    l1.stop(Duration::from_secs(5)).await.unwrap();
    l2.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!((&ra, &rb), (Ok(x), Ok(y)) if x == "A" && y == "B")
            && matches!((&rc, &rd), (Ok(x), Ok(y)) if x == "C" && y == "D"),
        "copy before first request: {first}; copy after first request: {second}"
    );
}

use std::future::IntoFuture;

// ---------------------------------------------------------------------------------------------
// D-2: `request(..).timeout(huge)` panics (Instant + Duration overflow).
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_huge_timeout_is_clamped_not_a_panic() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let joined = tokio::spawn(async move {
        client
            .request::<_, String>("svc.sleep", sleep_params(0, "x"))
            .timeout(Duration::MAX)
            .await
    })
    .await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&joined, Ok(Ok(s)) if s == "x"),
        "request().timeout(Duration::MAX): {joined:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// D-3: the client's `Deadline` is floored to whole seconds: a 1 s request may get ~0 s.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_request_gets_its_whole_second() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let _: String = client
        .request("svc.sleep", sleep_params(0, "warm"))
        .await
        .unwrap();
    // Start at .75 s past a whole second.
    loop {
        let sub = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if (740..760).contains(&sub) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = std::time::Instant::now();
    let r = client
        .request::<_, String>("svc.sleep", sleep_params(400, "ok"))
        .timeout(Duration::from_secs(1))
        .await;
    let took = started.elapsed();
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&r, Ok(s) if s == "ok"),
        "a 400 ms method under a 1 s request timeout: {r:?} after {took:?}; dead letters: {}",
        dead.iter()
            .map(|d| format!("{:?}", field(d, "reason")))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

// ---------------------------------------------------------------------------------------------
// D-4: the listener's handler timeout cuts requests the server would still allow, re-runs them
// (max_deliveries times) and never answers.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_never_cuts_a_method_within_its_rpc_timeout() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    // Scaled-down defaults: handler_timeout 30 s vs default_request_time 90 s.
    let settings = ListenerSettings {
        handler_timeout_ms: 1_000,
        pending_messages_time_ms: None,
        ..quick()
    };
    let server = ServerSettings {
        default_request_time: 3,
        ..ServerSettings::default()
    };
    let mut l = listen(&t, &app, settings, server, &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let r = client
        .request::<_, String>("svc.sleep", sleep_params(1_500, "slow"))
        .timeout(Duration::from_secs(8))
        .await;
    let runs = counts.sleep.load(Ordering::SeqCst);
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        matches!(&r, Ok(s) if s == "slow") && runs == 1,
        "a 1.5 s method with Timeout 8 s: {r:?}; it ran {runs} times"
    );
}

// ---------------------------------------------------------------------------------------------
// D-5: a method that finished but whose result cannot be encoded is run again.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_whose_result_cannot_be_encoded_runs_once() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    client.call("svc.unencodable", ()).await.unwrap();
    let dead = l.listener().dead_letter_key().to_owned();
    eventually("a dead letter", Duration::from_secs(10), || async {
        dead_letters(&t, &dead).await.len() == 1
    })
    .await;
    let runs = counts.unencodable.load(Ordering::SeqCst);
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        runs, 1,
        "the method finished (side effects done) but ran {runs} times"
    );
}

// ---------------------------------------------------------------------------------------------
// D-6: a drained server behind a running listener: entries burn their deliveries and are
// dead-lettered without ever running.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_after_a_drain_stay_pending_unrun() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    assert!(l.server().drain(Duration::from_secs(1)).await);
    let client = RpcClient::new(t.clone(), &app);
    client
        .call("svc.sleep", sleep_params(0, "x"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    let pending = pending_of(&t, rpc_stream(&app).as_str(), &app.name).await;
    let deferred = l.stats().await.unwrap().deferred;
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        dead.is_empty(),
        "never ran ({} runs), pending {pending}, yet dead-lettered: {:?}",
        counts.sleep.load(Ordering::SeqCst),
        dead.iter().map(|d| field(d, "reason")).collect::<Vec<_>>()
    );
    assert_eq!(
        (pending, deferred),
        (1, 1),
        "left pending, counted as deferred"
    );
    assert_eq!(counts.sleep.load(Ordering::SeqCst), 0);
    // The next start (a fresh server) runs it.
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    eventually("the deferred entry ran", Duration::from_secs(10), || {
        let n = counts.sleep.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    l.stop(Duration::from_secs(5)).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// D-7: RpcSubscriber::stop returns while calls still start afterwards.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_subscriber_call_starts_after_stop_returned() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let server = Server::new(
        &app,
        ServerSettings {
            max_parallel_tasks: 1,
            ..ServerSettings::default()
        },
        module(&counts),
    )
    .unwrap();
    let mut sub = RpcSubscriber::new(t.clone(), &app, "rpc", Scope::Guest, server).unwrap();
    sub.start().await.unwrap();
    let client = RpcClient::new(t.clone(), &app);
    for i in 0..5 {
        client
            .publish("svc.sleep", sleep_params(200, &i.to_string()), None)
            .await
            .unwrap();
    }
    eventually("the first call", Duration::from_secs(5), || {
        let n = counts.sleep.load(Ordering::SeqCst);
        async move { n >= 1 }
    })
    .await;
    let stopped = sub.stop(Duration::from_secs(10)).await;
    let at_stop = counts.sleep.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = counts.sleep.load(Ordering::SeqCst);
    assert_eq!(
        at_stop, later,
        "stop returned {stopped:?} after {at_stop} calls started; {later} had started 1.5 s later"
    );
}

// ---------------------------------------------------------------------------------------------
// S-1: the reply subscription after its connection is killed.
// ---------------------------------------------------------------------------------------------

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new(kaiju_testkit::cli_path().unwrap())
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On a server of its own: `CLIENT KILL TYPE pubsub` would hit other tests' subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_right_after_the_reply_connection_was_killed_is_answered() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let _: String = client
        .request("svc.sleep", sleep_params(0, "warm"))
        .await
        .unwrap();
    for round in 0..5 {
        let killed = redis_cli(server.port(), &["CLIENT", "KILL", "TYPE", "pubsub"]);
        let r1 = client
            .request::<_, String>("svc.sleep", sleep_params(0, "r1"))
            .timeout(Duration::from_secs(3))
            .await;
        let r2 = client
            .request::<_, String>("svc.sleep", sleep_params(0, "r2"))
            .timeout(Duration::from_secs(3))
            .await;
        assert!(
            r1.is_ok() && r2.is_ok(),
            "round {round}: killed {killed:?}; right after: {r1:?}; next: {r2:?}"
        );
    }
    l.stop(Duration::from_secs(5)).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Hostile entries: each ends in one outcome, nothing stays pending, the listener keeps going.
// ---------------------------------------------------------------------------------------------

async fn xadd_raw(t: &Transport, stream: &str, payload: &[u8]) -> String {
    let fields: Vec<(Key, kaiju_transport::fred::types::Value)> = vec![(
        Key::from("_"),
        kaiju_transport::fred::types::Value::Bytes(payload.to_vec().into()),
    )];
    t.pool()
        .xadd(stream, false, None, "*", fields)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_entries_each_end_in_one_outcome() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let s = |v: &str| Value::Str(v.into());
    let good = Value::Array(vec![
        s("svc.sleep"),
        Value::Map(vec![(s("ms"), Value::Int(0)), (s("tag"), s("t"))]),
    ]);
    let mut bodies: Vec<(&str, Value, Headers)> = vec![
        ("empty", Value::Array(vec![]), Headers::new()),
        ("m only", Value::Array(vec![s("svc.sleep")]), Headers::new()),
        ("[5]", Value::Array(vec![Value::Int(5)]), Headers::new()),
        ("nil", Value::Nil, Headers::new()),
        (
            "obj no method",
            Value::Map(vec![(s("params"), Value::Nil)]),
            Headers::new(),
        ),
        (
            "batch 101",
            Value::Array(vec![good.clone(); 101]),
            Headers::new(),
        ),
    ];
    let mut weird = Headers::new();
    weird
        .insert("Reply-To", "x._reply.y")
        .insert("Request-Id", HeaderValue::Float(1.5))
        .insert("Deadline", i64::MAX)
        .insert("Timeout", i64::MIN)
        .insert("RPC-Retries", i64::MAX);
    bodies.push(("weird headers", good.clone(), weird));
    let mut garbage = Headers::new();
    garbage
        .insert("Reply-To", "nope")
        .insert("Deadline", -1_i64)
        .insert("Timeout", "abc");
    bodies.push(("garbage reply-to", good.clone(), garbage));
    let mut ids = Vec::new();
    for (what, body, h) in &bodies {
        let mut h = h.clone();
        h.insert("Correlation-Id", *what);
        ids.push(writer.write(&stream, body, h).await.unwrap());
    }
    // nil headers; a map Request-Id; a deep template batch
    ids.push(xadd_raw(&t, stream.as_str(), b"\x92\x92\xa9svc.sleep\xc0\xc0").await);
    ids.push(
        xadd_raw(
            &t,
            stream.as_str(),
            b"\x92\x92\xa9svc.sleep\xc0\x81\xaaRequest-Id\x81\xa1a\x01",
        )
        .await,
    );
    ids.push(writer.write(&stream, &good, Headers::new()).await.unwrap());
    let dead = l.listener().dead_letter_key().to_owned();
    eventually("nothing pending", Duration::from_secs(15), || async {
        pending_of(&t, stream.as_str(), &app.name).await == 0
    })
    .await;
    let letters = dead_letters(&t, &dead).await;
    let stats = l.stats().await.unwrap();
    l.stop(Duration::from_secs(5)).await.unwrap();
    let mut report = String::new();
    for (i, id) in ids.iter().enumerate() {
        let letter = letters.iter().find(|d| field(d, "id") == Some(id.as_str()));
        report.push_str(&format!(
            "{i}: {:?}\n",
            letter.map(|d| (
                field(d, "kind"),
                field(d, "reason").map(|r| &r[..r.len().min(160)])
            ))
        ));
    }
    eprintln!(
        "{report}\nstats {stats:?}\nsleep runs {}",
        counts.sleep.load(Ordering::SeqCst)
    );
    // Six bad bodies, nil headers and a request without its params are dead-lettered (8); the
    // three good requests ran (weird and garbage headers fall back to the defaults).
    assert_eq!(letters.len(), 8, "{report}");
    assert_eq!(counts.sleep.load(Ordering::SeqCst), 3, "{report}");
    for i in [6, 7, 10] {
        assert!(
            report.lines().nth(i).unwrap().ends_with("None"),
            "{i} ran: {report}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Many concurrent requests over the one subscription.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_are_all_answered_correctly() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let settings = ListenerSettings {
        max_batch_size: 100,
        max_parallel_batches: 4,
        ..quick()
    };
    let mut l = listen(&t, &app, settings, ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let mut handles = Vec::new();
    for i in 0..1500 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let r: Result<String, CallError> = client
                .request("svc.sleep", sleep_params(0, &i.to_string()))
                .timeout(Duration::from_secs(20))
                .await;
            (i, r)
        }));
    }
    let mut wrong = Vec::new();
    for h in handles {
        let (i, r) = h.await.unwrap();
        if !matches!(&r, Ok(s) if *s == i.to_string()) {
            wrong.push(format!("{i}: {r:?}"));
        }
    }
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------------
// D-8: settings that are not validated turn wire headers into panics.
// ---------------------------------------------------------------------------------------------

fn call_catching(settings: ServerSettings, headers: Headers) -> String {
    let counts = Arc::new(Counts::default());
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = Server::new(&AppSettings::default(), settings, module(&counts)).unwrap();
            let body = Value::Array(vec![
                Value::Str("svc.sleep".into()),
                Value::Map(vec![
                    (Value::Str("ms".into()), Value::Int(0)),
                    (Value::Str("tag".into()), Value::Str("t".into())),
                ]),
            ]);
            let reply = server.call(body, &headers, Scope::Guest).await;
            format!("{:?}", reply.responses()[0].result)
        })
    })
    .join();
    match joined {
        Ok(s) => s,
        Err(p) => format!(
            "PANIC: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        ),
    }
}

#[test]
fn extreme_settings_and_headers_never_panic() {
    let mut results = Vec::new();
    let mut h = Headers::new();
    h.insert("Timeout", i64::MAX);
    results.push((
        "max_request_time=u64::MAX + Timeout i64::MAX",
        call_catching(
            ServerSettings {
                max_request_time: u64::MAX,
                ..ServerSettings::default()
            },
            h,
        ),
    ));
    results.push((
        "default_request_time=u64::MAX, no headers",
        call_catching(
            ServerSettings {
                default_request_time: u64::MAX,
                ..ServerSettings::default()
            },
            Headers::new(),
        ),
    ));
    results.push((
        "max_parallel_tasks=usize::MAX",
        call_catching(
            ServerSettings {
                max_parallel_tasks: usize::MAX,
                ..ServerSettings::default()
            },
            Headers::new(),
        ),
    ));
    for r in &results {
        eprintln!("{r:?}");
    }
    assert!(
        results.iter().all(|(_, r)| !r.starts_with("PANIC")),
        "{results:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Stop while a request runs: answered once, acked, not run again after a restart.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_a_request_runs_drains_it() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let req = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .request::<_, String>("svc.sleep", sleep_params(1000, "s"))
                .timeout(Duration::from_secs(5))
                .await
        })
    };
    eventually("running", Duration::from_secs(5), || {
        let n = counts.sleep.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    let r = req.await.unwrap();
    let pending = pending_of(&t, rpc_stream(&app).as_str(), &app.name).await;
    let mut l = listen(&t, &app, quick(), ServerSettings::default(), &counts).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    l.stop(Duration::from_secs(5)).await.unwrap();
    let runs = counts.sleep.load(Ordering::SeqCst);
    assert!(
        matches!(&r, Ok(s) if s == "s") && pending == 0 && runs == 1,
        "{r:?} pending {pending} runs {runs}"
    );
}

// ---------------------------------------------------------------------------------------------
// Entries waiting for a server slot (max_parallel_tasks 1) all run; none is dead-lettered.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_waiting_for_a_server_slot_are_not_dead_lettered() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let counts = Arc::new(Counts::default());
    let settings = ListenerSettings {
        handler_timeout_ms: 1_000,
        pending_messages_time_ms: None,
        max_deliveries: 2,
        ..quick()
    };
    let server = ServerSettings {
        max_parallel_tasks: 1,
        ..ServerSettings::default()
    };
    let mut l = listen(&t, &app, settings, server, &counts).await;
    let client = RpcClient::new(t.clone(), &app);
    let calls: Vec<_> = (0..8)
        .map(|i| ("svc.sleep".to_owned(), sleep_params(300, &i.to_string())))
        .collect();
    client.call_each(calls).await.unwrap();
    eventually("nothing pending", Duration::from_secs(20), || async {
        pending_of(&t, rpc_stream(&app).as_str(), &app.name).await == 0
    })
    .await;
    let dead = dead_letters(&t, l.listener().dead_letter_key()).await;
    let stats = l.stats().await.unwrap();
    l.stop(Duration::from_secs(5)).await.unwrap();
    assert!(
        dead.is_empty(),
        "{} dead-lettered ({:?}); {} runs for 8 entries; {stats:?}",
        dead.len(),
        dead.iter().map(|d| field(d, "kind")).collect::<Vec<_>>(),
        counts.sleep.load(Ordering::SeqCst)
    );
}
