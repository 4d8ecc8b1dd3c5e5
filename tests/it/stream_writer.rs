//! `StreamWriter::write_many`: one call per stream (a script running one XADD per entry), in
//! chunks of `MAX_ENTRIES_PER_CALL`. Order and ids across chunks and streams, the length cap,
//! and a lost reply in the middle of a stream's batch.

use kaiju_core::{Key, Namespace};
use kaiju_streams::{Headers, MAX_ENTRIES_PER_CALL, Outgoing, StreamError, StreamWriter, decode};
use kaiju_tests::proxy::Proxy;
use kaiju_tests::{Target, on_both};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;

on_both!(
    write_many_keeps_order_and_ids_across_calls_and_streams,
    write_many_with_a_cap_trims_about_to_it,
);

type Body = (String, u64);

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
        let entries = (0..100)
            .map(|_| Outgoing {
                stream: &stream,
                body: &body,
                headers: Headers::new(),
            })
            .collect();
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

/// A call whose reply is lost may or may not have written its entries: the rest of that
/// stream's batch is not sent after it (it could overtake them when the caller writes them
/// again), and the other streams' entries are still written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_stops_the_rest_of_that_streams_batch_only() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let t = Transport::connect(&proxy.settings()).await.unwrap();
    let ns = kaiju_tests::namespace();
    let (a, b) = (ns.stream("a").unwrap(), ns.stream("b").unwrap());
    let body: Body = ("m".to_owned(), 1);
    let entry = |stream| Outgoing {
        stream,
        body: &body,
        headers: Headers::new(),
    };
    let mut entries: Vec<_> = (0..MAX_ENTRIES_PER_CALL + 500).map(|_| entry(&a)).collect();
    entries.extend((0..10).map(|_| entry(&b)));
    proxy.drop_next_reply();
    let result = StreamWriter::new(t.clone()).write_many(entries).await;
    assert_eq!(proxy.dropped(), 1);
    // The first call for `a` ran (its reply was dropped); the second was never sent.
    let len_a: u64 = t.pool().xlen(a.as_str()).await.unwrap();
    assert_eq!(len_a, MAX_ENTRIES_PER_CALL as u64);
    match result {
        Err(StreamError::PartialWrite { ids, error }) => {
            assert!(retryable(&error), "{error}");
            assert!(
                ids[..MAX_ENTRIES_PER_CALL + 500]
                    .iter()
                    .all(Option::is_none)
            );
            let len_b: u64 = t.pool().xlen(b.as_str()).await.unwrap();
            assert_eq!(
                ids[MAX_ENTRIES_PER_CALL + 500..].iter().flatten().count() as u64,
                len_b
            );
        }
        // `b`'s call may also find the connection still down.
        Err(error) => assert!(retryable(&error), "{error}"),
        Ok(ids) => panic!("a lost reply reported as written: {} ids", ids.len()),
    }
    for stream in [&a, &b] {
        let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    }
    t.close().await.unwrap();
}
