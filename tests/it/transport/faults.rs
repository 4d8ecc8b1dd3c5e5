//! The transport on a bad network: a reply lost with its connection, and a server that stalls
//! for longer than the old half-open limit. Nothing that must run once may run twice.

use std::time::{Duration, Instant};

use kaiju_streams::{Headers, StreamWriter};
use kaiju_tests::proxy::Proxy;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Feature, Transport, TransportError};

/// A transport through `proxy`, with one connection so the proxy sees every command.
async fn through(proxy: &Proxy) -> Transport {
    let settings = proxy.settings();
    Transport::connect(&settings).await.unwrap()
}

/// A write whose reply is lost. On a server with `XADD ... IDMP` (Redis 8.6+) the writer sends
/// it again with the same ids: the caller gets the entry's id once and the stream grows by
/// exactly one. Elsewhere (Redis 7, Valkey, `KAIJU_REDIS_FEATURES_OFF`) it is written once and
/// the caller hears that it may have been: never a duplicate either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_reply_is_lost_is_not_written_twice() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let t = through(&proxy).await;
    let stream = kaiju_tests::namespace().stream("rpc").unwrap();
    let writer = StreamWriter::new(t.clone());
    proxy.drop_next_reply();
    let written = writer
        .write(&stream, &("m".to_owned(), 1_i64), Headers::new())
        .await;
    assert_eq!(proxy.dropped(), 1);
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 1, "the write was appended twice");
    if t.capabilities().has(Feature::XAddIdmp) {
        // Resent with the same ids: the id of the one entry, once.
        let id = written.unwrap();
        let entries: Vec<(String, std::collections::HashMap<String, Value>)> = t
            .pool()
            .xrange(stream.as_str(), "-", "+", None)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, id);
        // An ordinary entry: the one field `_`, as Python kaiju reads it.
        let fields: Vec<&String> = entries[0].1.keys().collect();
        assert_eq!(fields, vec!["_"]);
    } else {
        // The XADD ran once; its reply was lost, so the caller hears of a lost connection (the
        // write may or may not have happened) instead of a silent second entry.
        match written {
            Err(kaiju_streams::StreamError::Transport(e)) => {
                assert!(matches!(e, TransportError::Connection { .. }), "{e:?}")
            }
            other => panic!("expected a lost connection, got {other:?}"),
        }
    }

    // An idempotent read on the pool is sent again after the reconnect: no error at all.
    proxy.drop_next_reply();
    let again: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!((again, proxy.dropped()), (1, 2));
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    t.close().await.unwrap();
}

/// No send of a write gets a reply (a network that swallows everything): the writer cannot
/// read whether the stream still keeps the write's IDMP ids, so it does not send it again, and
/// says the write may have been applied. Nothing reached the server here, so nothing was
/// appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_never_gets_a_reply_is_not_resent_blind() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let settings = kaiju_core::RedisSettings {
        command_timeout_ms: 300,
        ..proxy.settings()
    };
    let t = Transport::connect(&settings).await.unwrap();
    if !t.capabilities().has(Feature::XAddIdmp) {
        // One send only: the test above covers it.
        t.close().await.unwrap();
        return;
    }
    let stream = kaiju_tests::namespace().stream("rpc").unwrap();
    let writer = StreamWriter::new(t.clone());
    proxy.black_hole(true);
    let started = Instant::now();
    let written = writer
        .write(&stream, &("m".to_owned(), 1_i64), Headers::new())
        .await;
    let took = started.elapsed();
    proxy.black_hole(false);
    match written {
        Err(kaiju_streams::StreamError::Transport(e)) => assert!(e.is_retryable(), "{e:?}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The first send waited its timeout; then the writer could not read whether the stream
    // still keeps its IDMP ids (that read timed out too), so it did not send again blind:
    // bounded by the command timeout, at most MAX_SENDS sends and their checks.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let sends = u64::from(kaiju_streams::MAX_SENDS);
    assert!(
        took < Duration::from_millis(2 * 300 * sends + 1000),
        "{took:?}"
    );
    let direct = kaiju_tests::connect(kaiju_tests::Target::Single)
        .await
        .unwrap();
    let len: u64 = direct.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 0);
    t.close().await.unwrap();
    direct.close().await.unwrap();
}

/// A server that stalls for 3 s (SIGSTOP) is slow, not dead: a write in flight completes once
/// it resumes. The connection used to be declared unresponsive after 2 s, reconnected, and the
/// write sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_is_waited_for_not_reconnected_and_written_twice() {
    let Some((server, t)) = kaiju_tests::own_server().await else {
        return;
    };
    let stream = kaiju_tests::namespace().stream("rpc").unwrap();
    let pid = server.pid().unwrap();
    kaiju_tests::signal(pid, "-STOP");
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        kaiju_tests::signal(pid, "-CONT");
    });
    let started = Instant::now();
    let written = StreamWriter::new(t.clone())
        .write(&stream, &("m".to_owned(), 1_i64), Headers::new())
        .await;
    resume.await.unwrap();
    assert!(written.is_ok(), "{written:?}");
    assert!(started.elapsed() >= Duration::from_millis(2900));
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 1, "the stall caused a reconnect and a second write");
    t.close().await.unwrap();
}

/// A pooled connection that goes half-open (nothing answers, nothing closes) while a caller
/// keeps sending commands is still replaced. fred only notices silence after the *last* write,
/// which a retrying caller keeps resetting; the transport's watchdog PINGs each connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_replaced_while_callers_retry() {
    let Some(port) = kaiju_tests::single_port() else {
        return;
    };
    let proxy = Proxy::start(port).await.unwrap();
    let t = Transport::connect(&kaiju_core::RedisSettings {
        command_timeout_ms: 1000,
        ..proxy.settings()
    })
    .await
    .unwrap();
    let key = kaiju_tests::namespace().key("k").unwrap();
    let _: Option<String> = t.pool().get(key.as_str()).await.unwrap();
    proxy.cut_existing();
    let began = Instant::now();
    loop {
        let got: Result<Option<String>, _> = t.pool().get(key.as_str()).await;
        if got.is_ok() {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "still no answer after {:?}",
            began.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("half-open connection replaced after {:?}", began.elapsed());
    t.close().await.unwrap();
}
