//! The transport on a bad network: a reply lost with its connection, and a server that stalls
//! for longer than the old half-open limit. Nothing that must run once may run twice.

use std::time::{Duration, Instant};

use kaiju_streams::{Headers, StreamWriter};
use kaiju_tests::proxy::Proxy;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Transport, TransportError};

/// A transport through `proxy`, with one connection so the proxy sees every command.
async fn through(proxy: &Proxy) -> Transport {
    let settings = proxy.settings();
    Transport::connect(&settings).await.unwrap()
}

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
    // The XADD ran once; its reply was lost, so the caller hears of a lost connection (the
    // write may or may not have happened) instead of a silent second entry.
    match written {
        Err(kaiju_streams::StreamError::Transport(e)) => {
            assert!(matches!(e, TransportError::Connection { .. }), "{e:?}")
        }
        other => panic!("expected a lost connection, got {other:?}"),
    }
    let len: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!(len, 1, "the write was sent again behind the caller's back");

    // An idempotent read on the pool is sent again after the reconnect: no error at all.
    proxy.drop_next_reply();
    let again: u64 = t.pool().xlen(stream.as_str()).await.unwrap();
    assert_eq!((again, proxy.dropped()), (1, 2));
    let _: i64 = t.pool().del(stream.as_str()).await.unwrap();
    t.close().await.unwrap();
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
