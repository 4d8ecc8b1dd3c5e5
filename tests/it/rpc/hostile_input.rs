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
