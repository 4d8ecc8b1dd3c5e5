//! `StreamWriter::write_many`: calls of a script running one XADD per entry for streams with
//! several entries, bounded by `MAX_ENTRIES_PER_CALL` and `MAX_BYTES_PER_CALL`, and a pipeline
//! for the rest. Order and ids across calls and streams, the length cap, a lost reply in the
//! middle of a stream's batch, a user without scripting, and which writes use calls.

use kaiju_core::{Key, Namespace, RedisSettings};
use kaiju_streams::{
    Headers, MAX_BYTES_PER_CALL, MAX_ENTRIES_PER_CALL, Outgoing, StreamError, StreamWriter, decode,
};
use kaiju_tests::acl::acl;
use kaiju_tests::proxy::Proxy;
use kaiju_tests::{Target, on_both};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_transport::{Feature, Transport};

on_both!(
    write_many_keeps_order_and_ids_across_calls_and_streams,
    write_many_with_a_cap_trims_about_to_it,
    write_many_with_a_cap_beyond_i64_writes_uncapped,
);

type Body = (String, u64);

/// `n` entries with the same body for one stream.
fn copies<'a>(stream: &'a Key, body: &'a Body, n: usize) -> Vec<Outgoing<'a, Body>> {
    (0..n)
        .map(|_| Outgoing {
            stream,
            body,
            headers: Headers::new(),
        })
        .collect()
}

/// Every entry of a stream: (id, body).
async fn stored(t: &Transport, stream: &Key) -> Vec<(String, Body)> {
    let entries: Vec<(String, std::collections::HashMap<String, Value>)> = t
        .pool()
        .xrange(stream.as_str(), "-", "+", None)
        .await
        .unwrap();
    entries
        .into_iter()
        .map(|(id, fields)| {
            let payload = fields.get("_").and_then(Value::as_bytes).unwrap().to_vec();
            let (body, _headers): (Body, Headers) = decode(&payload).unwrap();
            (id, body)
        })
        .collect()
}

async fn write_many_keeps_order_and_ids_across_calls_and_streams(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let (a, b) = (ns.stream("a").unwrap(), ns.stream("b").unwrap());
    let n = MAX_ENTRIES_PER_CALL * 2 + 500;
    // Interleaved: every third entry goes to `b`; each stream's bodies count up.
    let bodies: Vec<(bool, Body)> = (0..n)
        .map(|i| (i % 3 == 0, ("m".to_owned(), i as u64)))
        .collect();
    let entries = bodies
        .iter()
        .map(|(to_b, body)| Outgoing {
            stream: if *to_b { &b } else { &a },
            body,
            headers: Headers::new(),
        })
        .collect();
    let ids = StreamWriter::new(t.clone())
        .write_many(entries)
        .await
        .unwrap();
    assert_eq!(ids.len(), n);
    let (in_a, in_b) = (stored(t, &a).await, stored(t, &b).await);
    assert_eq!(in_a.len() + in_b.len(), n);
    let (mut next_a, mut next_b) = (in_a.iter(), in_b.iter());
    for ((to_b, body), id) in bodies.iter().zip(&ids) {
        let (stored_id, stored_body) = if *to_b {
            next_b.next().unwrap()
        } else {
            next_a.next().unwrap()
        };
        assert_eq!(stored_id, id);
        assert_eq!(stored_body, body);
    }
    for stream in [&a, &b] {
        let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    }
}

async fn write_many_with_a_cap_trims_about_to_it(t: &Transport, ns: &Namespace, _: Target) {
    let stream = ns.stream("capped").unwrap();
    let body: Body = ("m".to_owned(), 1);
    let writer = StreamWriter::new(t.clone()).with_max_len(100);
    for _ in 0..10 {
        let entries = copies(&stream, &body, 100);
        writer.write_many(entries).await.unwrap();
    }
    // `MAXLEN ~` trims whole nodes (100 entries each by default): about the cap, never below.
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert!((100..=300).contains(&len), "{len}");
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

fn retryable(error: &StreamError) -> bool {
    matches!(error, StreamError::Transport(e) if e.is_retryable())
}

/// A call whose reply is lost may or may not have written its entries: without IDMP, the rest
/// of that stream's batch is not sent after it (it could overtake them when the caller writes
/// them again); with IDMP (Redis 8.6+) the call is sent again and appends nothing twice. One stream only: calls for other streams go at the same time, and the proxy drops
/// whichever reply comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_stops_the_rest_of_that_streams_batch() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let t = Transport::connect(&proxy.settings()).await.unwrap();
    let stream = kaiju_tests::namespace().stream("a").unwrap();
    let body: Body = ("m".to_owned(), 1);
    let entries: Vec<_> = copies(&stream, &body, MAX_ENTRIES_PER_CALL + 500);
    // The script loaded first: on a fresh server the dropped reply would be the NOSCRIPT of a
    // call that never ran.
    let warm_up = kaiju_tests::namespace().stream("warm").unwrap();
    StreamWriter::new(t.clone())
        .write_many(copies(&warm_up, &body, 4))
        .await
        .unwrap();
    let _: i64 = t.pool().del(warm_up.as_str()).await.unwrap();
    proxy.drop_next_reply();
    let result = StreamWriter::new(t.clone()).write_many(entries).await;
    assert_eq!(proxy.dropped(), 1);
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    if t.capabilities().has(Feature::XAddIdmp) {
        // The first call ran (its reply was dropped) and was sent again with the same IDMP
        // ids: nothing appended twice, every entry's id reported, in order.
        let ids = result.unwrap();
        assert_eq!(len, (MAX_ENTRIES_PER_CALL + 500) as u64);
        let stored: Vec<String> = stored(&t, &stream).await.into_iter().map(|e| e.0).collect();
        assert_eq!(ids, stored);
    } else {
        // The first call ran (its reply was dropped); the second was never sent.
        assert_eq!(len, MAX_ENTRIES_PER_CALL as u64);
        match result {
            Err(error) => assert!(retryable(&error), "{error}"),
            Ok(ids) => panic!("a lost reply reported as written: {} ids", ids.len()),
        }
    }
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    t.close().await.unwrap();
}

/// `with_max_len(u64::MAX)` means no real cap, for `write_many` as for `write`.
async fn write_many_with_a_cap_beyond_i64_writes_uncapped(
    t: &Transport,
    ns: &Namespace,
    _: Target,
) {
    let stream = ns.stream("uncapped").unwrap();
    let writer = StreamWriter::new(t.clone()).with_max_len(u64::MAX);
    let body: Body = ("m".to_owned(), 1);
    writer.write(&stream, &body, Headers::new()).await.unwrap();
    let entries = copies(&stream, &body, 10);
    assert_eq!(writer.write_many(entries).await.unwrap().len(), 10);
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 11);
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
}

/// An ACL user that may write streams but not run scripts still batch-writes (in pipelines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_many_without_script_permission_uses_pipelines() {
    let Some(admin) = kaiju_tests::connect(Target::Single).await else {
        return;
    };
    let user = format!("nolua_{}", uuid::Uuid::new_v4().simple());
    acl(
        &admin,
        &[
            "SETUSER",
            &user,
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            "-@scripting",
        ],
    )
    .await;
    let t = Transport::connect(&RedisSettings {
        username: Some(user.clone()),
        password: Some("pw".to_owned().into()),
        ..admin.settings().clone()
    })
    .await
    .unwrap();
    let stream = kaiju_tests::namespace().stream("nolua").unwrap();
    let writer = StreamWriter::new(t.clone());
    let body: Body = ("m".to_owned(), 7);
    for _ in 0..2 {
        let entries = copies(&stream, &body, 10);
        assert_eq!(writer.write_many(entries).await.unwrap().len(), 10);
    }
    assert_eq!(stored(&admin, &stream).await.len(), 20);
    let _: i64 = admin.pool().del(stream.as_str()).await.unwrap();
    acl(&admin, &["DELUSER", &user]).await;
    t.close().await.unwrap();
}

/// Calls only where they pay: single entries for many streams go in one pipeline; large
/// entries are split so that no call carries more than `MAX_BYTES_PER_CALL` (a script holds
/// the server while it runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_many_uses_calls_only_where_they_pay() {
    let Some((_server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let evalsha_calls = || async {
        let info: String = t
            .client()
            .custom(
                CustomCommand::new_static("INFO", ClusterHash::Random, false),
                vec!["commandstats"],
            )
            .await
            .unwrap();
        // Calls that ran (a NOSCRIPT before the script is loaded fails, and is sent again).
        let field = |line: &str, name: &str| -> u64 {
            line.split([':', ','])
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0)
        };
        info.lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .map_or(0, |l| field(l, "calls") - field(l, "failed_calls"))
    };
    let ns = kaiju_tests::namespace();
    let writer = StreamWriter::new(t.clone());
    let streams: Vec<Key> = (0..200)
        .map(|i| ns.stream(&format!("s{i}")).unwrap())
        .collect();
    let body: Body = ("m".to_owned(), 1);
    let entries = streams
        .iter()
        .map(|stream| Outgoing {
            stream,
            body: &body,
            headers: Headers::new(),
        })
        .collect();
    assert_eq!(writer.write_many(entries).await.unwrap().len(), 200);
    assert_eq!(evalsha_calls().await, 0);
    let big = ns.stream("big").unwrap();
    let large: Body = ("z".repeat(64 * 1024), 0);
    let entries = copies(&big, &large, 100);
    assert_eq!(writer.write_many(entries).await.unwrap().len(), 100);
    let per_call = (MAX_BYTES_PER_CALL / (64 * 1024 + 64)) as u64;
    assert_eq!(evalsha_calls().await, 100_u64.div_ceil(per_call));
    t.close().await.unwrap();
}
