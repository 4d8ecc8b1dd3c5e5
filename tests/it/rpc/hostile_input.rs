//! Hostile input: malformed entries and headers each end in one outcome, extreme settings and
//! headers never panic, and a reply address that is not a reply channel gets nothing.
//! (Single node.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kaiju_core::{AppSettings, Lifecycle, Value};
use kaiju_rpc::{Scope, Server, ServerSettings};
use kaiju_streams::{HeaderValue, Headers, StreamWriter};
use kaiju_tests::rpc::sleeper::{Counts, listen, module, quick};
use kaiju_tests::rpc::{Seen, seen_len, serve};
use kaiju_tests::streams::{dead_letters, field, pending_of, rpc_stream};
use kaiju_tests::{Target, app, eventually, single};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

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

// ---------------------------------------------------------------------------------------------
// Issue 31, item 5: only reply channels of the server's own env, and a bounded re-publishing.
// ---------------------------------------------------------------------------------------------

/// A request may name any channel as its reply channel. Names that look like reply channels
/// but are another env's, or a keyspace notification channel of this env's reply channel,
/// get nothing (both were answered: anything matching `*._reply.<x>` was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_channel_of_another_env_or_a_keyspace_channel_gets_nothing() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let foreign = [
        format!("other.{}._reply.victim", app.name),
        format!("__keyspace@0__:{}.{}._reply.victim", app.env, app.name),
        format!("{}.{}.x._reply.victim", app.env, app.name),
    ];
    let ours = format!("{}.{}._reply.victim", app.env, app.name);
    let sub = kaiju_tests::connect(Target::Single).await.unwrap();
    let watcher = sub.dedicated_connection().await.unwrap();
    let mut messages = watcher.client().message_rx();
    for channel in foreign.iter().chain([&ours]) {
        watcher.client().subscribe(channel.as_str()).await.unwrap();
    }
    let writer = StreamWriter::new(t.clone());
    let body = Value::Array(vec![
        Value::Str("svc.add".into()),
        Value::Map(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Str("b".into()), Value::Int(1)),
        ]),
    ]);
    for channel in &foreign {
        let mut h = Headers::new();
        h.insert("Reply-To", channel.as_str());
        h.insert("Request-Id", "1");
        writer.write(&rpc_stream(&app), &body, h).await.unwrap();
    }
    seen_len(&seen, foreign.len()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    while let Ok(m) = messages.try_recv() {
        got.push(m.channel.to_string());
    }
    assert!(got.is_empty(), "the server published into {got:?}");
    // This env's own reply channel is answered: the check is not simply "never".
    let mut h = Headers::new();
    h.insert("Reply-To", ours.as_str());
    h.insert("Request-Id", "2");
    writer.write(&rpc_stream(&app), &body, h).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.channel.to_string(), ours);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}

/// A reply nobody receives is published again at most 3 times (it was 9 in all), never after
/// the request's `Deadline`, and only for 100 replies at once per listener: a flood of
/// requests naming channels nobody listens to costs about one PUBLISH each. Counted with
/// MONITOR on a server of the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_nobody_receives_are_published_again_a_bounded_number_of_times() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let monitor = kaiju_tests::observe::Monitor::start(&server, &t).await;
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let writer = StreamWriter::new(t.clone());
    let body = Value::Array(vec![
        Value::Str("svc.add".into()),
        Value::Map(vec![
            (Value::Str("a".into()), Value::Int(1)),
            (Value::Str("b".into()), Value::Int(1)),
        ]),
    ]);
    let channel = |what: &str| format!("{}.{}._reply.{what}", app.env, app.name);
    let request = |reply_to: String, deadline: Option<i64>| {
        let mut h = Headers::new();
        h.insert("Reply-To", reply_to);
        h.insert("Request-Id", "1");
        if let Some(d) = deadline {
            h.insert("Deadline", d);
        }
        h
    };
    // One reply nobody takes, then one whose request's deadline is a second away.
    writer
        .write(&rpc_stream(&app), &body, request(channel("gone"), None))
        .await
        .unwrap();
    seen_len(&seen, 1).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    writer
        .write(
            &rpc_stream(&app),
            &body,
            request(channel("late"), Some(now + 1)),
        )
        .await
        .unwrap();
    seen_len(&seen, 2).await;
    // Let those two finish, then a flood: 150 requests, each naming a channel nobody has.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..150 {
        writer
            .write(
                &rpc_stream(&app),
                &body,
                request(channel(&format!("flood{i}")), None),
            )
            .await
            .unwrap();
    }
    seen_len(&seen, 152).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    t.close().await.unwrap();
    let lines = monitor.lines();
    let publishes = |to: &str| {
        let quoted = format!("\"{to}\"");
        lines
            .iter()
            .filter(|l| l.contains("\"PUBLISH\"") && l.contains(&quoted))
            .count()
    };
    let gone = publishes(&channel("gone"));
    let late = publishes(&channel("late"));
    let flood: usize = (0..150)
        .map(|i| publishes(&channel(&format!("flood{i}"))))
        .sum();
    eprintln!("publications: gone {gone}, late {late}, flood of 150: {flood}");
    assert_eq!(gone, 4, "the first publication and 3 more");
    assert!((1..=3).contains(&late), "not after the deadline: {late}");
    assert!(
        (150..=150 + 100 * 3).contains(&flood),
        "at most 100 replies are published again at once: {flood}"
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 31, item 8: a huge method name costs logs and dead letters a few hundred bytes, and
// dead-letter streams are bounded.
// ---------------------------------------------------------------------------------------------

/// A 1 MiB method name (unknown, so dead-lettered) took 2 MB of log lines and 2.3 MB of dead
/// letter: the name went whole into the error, its reason and two log lines. Now the name is
/// shown shortened; the dead letter still holds the entry itself (`field:_`), for replay.
/// Current-thread runtime: the listener's tasks log on the test's thread, where the capture is.
#[tokio::test(flavor = "current_thread")]
async fn a_huge_method_name_is_shortened_in_logs_and_dead_letters() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let (captured, _guard) = kaiju_tests::observe::Captured::this_thread(tracing::Level::DEBUG);
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    let name = format!("svc.{}", "m".repeat(1 << 20));
    let body = Value::Array(vec![Value::Str(name.clone()), Value::Map(vec![])]);
    let writer = StreamWriter::new(t.clone());
    let mut h = Headers::new();
    h.insert("Correlation-Id", "huge-name");
    writer.write(&rpc_stream(&app), &body, h).await.unwrap();
    let dead = listener.listener().dead_letter_key().to_owned();
    eventually("the dead letter", Duration::from_secs(15), || async {
        !dead_letters(&t, &dead).await.is_empty()
    })
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let letters = dead_letters(&t, &dead).await;
    let letter = &letters[0];
    let reason = field(letter, "reason").unwrap();
    let others: usize = letter
        .iter()
        .filter(|(n, _)| n != b"field:_")
        .map(|(n, v)| n.len() + v.len())
        .sum();
    let logged = captured.len();
    eprintln!(
        "reason {} bytes, dead letter without the entry {others} bytes, logs {logged} bytes: {reason}",
        reason.len()
    );
    assert!(reason.contains("MethodNotFound"), "{reason}");
    assert!(
        reason.contains(&format!("({} bytes)", name.len())),
        "the name's length is shown: {reason}"
    );
    assert!(reason.len() < 1024, "reason of {} bytes", reason.len());
    assert!(others < 2048, "dead letter fields of {others} bytes");
    assert!(logged > 0, "the capture works");
    assert!(logged < 16 * 1024, "{logged} bytes of logs");
}

/// Dead letters are written with `XADD MAXLEN ~ dead_letter_max_length`: a flood of bad
/// entries leaves about that many (Redis trims whole nodes of 100 entries), where every one
/// of them was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_stream_keeps_about_dead_letter_max_length_letters() {
    let Some((t, ns)) = single().await else {
        return;
    };
    let app = app(&ns);
    let seen = Seen::default();
    let server = Server::new(
        &app,
        ServerSettings::default(),
        kaiju_tests::rpc::module(&seen),
    )
    .unwrap();
    let settings = kaiju_streams::ListenerSettings {
        dead_letter_max_length: Some(10),
        max_batch_size: 100,
        ..kaiju_tests::rpc::settings()
    };
    let mut listener =
        kaiju_rpc::RpcListener::new(t.clone(), &app, settings, Scope::System, server).unwrap();
    listener.start().await.unwrap();
    let stream = rpc_stream(&app);
    let writer = StreamWriter::new(t.clone());
    let body = Value::Array(vec![Value::Str("svc.nope".into()), Value::Map(vec![])]);
    let sent = 350;
    for _ in 0..sent / 50 {
        let entries = (0..50)
            .map(|_| kaiju_streams::Outgoing {
                stream: &stream,
                body: &body,
                headers: Headers::new(),
            })
            .collect();
        writer.write_many(entries).await.unwrap();
    }
    let dead = listener.listener().dead_letter_key().to_owned();
    eventually(
        "every entry dead-lettered",
        Duration::from_secs(30),
        || async { listener.stats().await.unwrap().dead_lettered == sent },
    )
    .await;
    listener.stop(Duration::from_secs(5)).await.unwrap();
    let length: u64 = t.pool().xlen(dead.as_str()).await.unwrap();
    eprintln!("{sent} dead letters written, {length} kept");
    assert!(
        (10..=110).contains(&length),
        "about 10 kept (whole nodes of 100): {length}"
    );
    // The letters kept are the newest, in kaiju-rs's format.
    let letters = dead_letters(&t, &dead).await;
    assert_eq!(field(letters.last().unwrap(), "kind"), Some("rejected"));
    assert!(letters.last().unwrap().iter().any(|(n, _)| n == b"field:_"));
}

/// A client whose settings name no namespace (an app name holding `.`) has the reply channel
/// `kaiju._reply.<client>`, which names no env, so no server answers it: its requests fail
/// at once with the key error instead of timing out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_namespace_of_its_own_fails_at_once() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let me = AppSettings {
        env: "test".into(),
        name: "a.b".into(),
        ..AppSettings::default()
    };
    let client = kaiju_rpc::RpcClient::new(t, &me);
    let started = std::time::Instant::now();
    let r = client
        .request::<_, serde_json::Value>("svc.add", serde_json::json!({"a": 1, "b": 1}))
        .app(app(&kaiju_tests::namespace()).name)
        .timeout(Duration::from_secs(5))
        .await;
    assert!(matches!(r, Err(kaiju_rpc::CallError::Key(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Headers Python kaiju runs with and kaiju-rs once dead-lettered (issue 25 items 2 and 3): an
/// integer header name and a value above `i64::MAX`. The call runs, and its method reads both.
/// (The interop tests send the same from the real Python client.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_with_an_integer_name_or_a_value_above_i64_max_runs_the_call() {
    let Some(t) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let app = app(&kaiju_tests::namespace());
    let seen = Seen::default();
    let mut listener = serve(&t, &app, &seen, Scope::System).await;
    // [["svc.echo", {"value": 2}], {"Correlation-Id": "odd", 7: "v", "X-Big": 2**63}], as
    // msgspec writes it.
    let mut payload = b"\x92\x92\xa8svc.echo\x81\xa5value\x02\x83".to_vec();
    payload.extend_from_slice(b"\xaeCorrelation-Id\xa3odd\x07\xa1v");
    payload.extend_from_slice(b"\xa5X-Big\xcf\x80\x00\x00\x00\x00\x00\x00\x00");
    xadd_raw(&t, rpc_stream(&app).as_str(), &payload).await;
    seen_len(&seen, 1).await;
    let record = seen.lock().unwrap()[0].clone();
    assert_eq!(record["correlation_id"], "odd");
    assert_eq!(record["headers"]["Int(7)"], "v", "{record}");
    assert_eq!(
        record["headers"]["X-Big"],
        serde_json::json!(1_u64 << 63),
        "{record}"
    );
    eventually("acked", Duration::from_secs(5), || async {
        pending_of(&t, listener.listener().stream_key(), &app.name).await == 0
    })
    .await;
    assert_eq!(listener.stats().await.unwrap().dead_lettered, 0);
    listener.stop(Duration::from_secs(5)).await.unwrap();
}
