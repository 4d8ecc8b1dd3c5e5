//! Ways the XADD IDMP resend could append an entry twice (found by an adversarial review).

use kaiju_core::Key;
use kaiju_streams::{Headers, Outgoing, StreamWriter};
use kaiju_tests::proxy::Proxy;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_transport::{Feature, Transport};

async fn through(proxy: &Proxy) -> Transport {
    Transport::connect(&proxy.settings()).await.unwrap()
}

async fn xcfgset(t: &Transport, stream: &Key, args: &[&str]) {
    let mut all: Vec<Value> = vec![stream.as_str().into()];
    all.extend(args.iter().map(|a| Value::from(*a)));
    let _: Value = t
        .pool()
        .custom(
            CustomCommand::new_static("XCFGSET", ClusterHash::FirstKey, false),
            all,
        )
        .await
        .unwrap();
}

/// The writer assumes every stream keeps at least `BLOCK` (100) idempotency ids per producer,
/// the server default. A stream (XCFGSET IDMP-MAXSIZE) or a server (CONFIG SET
/// stream-idmp-maxsize) that keeps fewer evicts the ids of a batch's earlier entries while the
/// batch is still being written; when the batch's reply is lost, the resend appends those
/// entries a second time and write_many returns Ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_batch_on_a_stream_keeping_few_idmp_ids_is_not_resent() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let t = through(&proxy).await;
    if !t.capabilities().has(Feature::XAddIdmp) {
        t.close().await.unwrap();
        return;
    }
    let stream = kaiju_tests::namespace().stream("small-idmp").unwrap();
    let _: String = t
        .pool()
        .xadd(stream.as_str(), false, None, "*", ("seed", "1"))
        .await
        .unwrap();
    // Allowed values are 1..=10000; an operator saving memory might pick 10.
    xcfgset(&t, &stream, &["IDMP-MAXSIZE", "1"]).await;
    let writer = StreamWriter::new(t.clone());
    let body = ("m".to_owned(), 1_i64);
    let entries: Vec<Outgoing<'_, (String, i64)>> = (0..4)
        .map(|_| Outgoing {
            stream: &stream,
            body: &body,
            headers: Headers::new(),
        })
        .collect();
    // Load the script first, so that the dropped reply is the batch's, not a NOSCRIPT.
    let warm = kaiju_tests::namespace().stream("warm").unwrap();
    let warm_entries: Vec<Outgoing<'_, (String, i64)>> = (0..4)
        .map(|_| Outgoing {
            stream: &warm,
            body: &body,
            headers: Headers::new(),
        })
        .collect();
    writer.write_many(warm_entries).await.unwrap();
    let _: i64 = t.pool().del(warm.as_str()).await.unwrap();
    proxy.drop_next_reply();
    let written = writer.write_many(entries).await;
    assert_eq!(proxy.dropped(), 1);
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    let info: Value = t
        .pool()
        .custom(
            CustomCommand::new_static("XINFO", ClusterHash::Random, false),
            vec![Value::from("STREAM"), stream.as_str().into()],
        )
        .await
        .unwrap();
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    t.close().await.unwrap();
    assert_eq!(
        len,
        1 + 4,
        "write_many returned {:?} but the 4 entries were appended {} times in all",
        written.as_ref().map(|ids| ids.len()),
        len - 1
    );
    // The stream keeps 1 id per producer, so the ids of the lost call may be gone: no resend,
    // and the caller is told the outcome is unknown ({info:?}).
    assert!(written.is_err(), "{written:?} {info:?}");
}
