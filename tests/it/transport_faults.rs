//! The transport on a bad network: a reply lost with its connection, and a server that stalls
//! for longer than the old half-open limit. Nothing that must run once may run twice.

use std::time::{Duration, Instant};

use kaiju_core::RedisSettings;
use kaiju_streams::{Headers, StreamWriter};
use kaiju_testkit::{RedisServer, ServerOptions};
use kaiju_tests::proxy::Proxy;
use kaiju_tests::{Target, can_spawn_servers};
use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Transport, TransportError};

/// The port of the shared single node.
fn single_port() -> Option<u16> {
    let settings = kaiju_tests::settings(Target::Single)?;
    let url = settings.url?;
    url.expose()
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

/// A transport through `proxy`, with one connection so the proxy sees every command.
async fn through(proxy: &Proxy) -> Transport {
    let settings = RedisSettings {
        pool_size: 1,
        ..RedisSettings::from_url(proxy.url())
    };
    Transport::connect(&settings).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_reply_is_lost_is_not_written_twice() {
    let Some(port) = single_port() else { return };
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
    if !can_spawn_servers() {
        return;
    }
    let server = tokio::task::spawn_blocking(|| RedisServer::start(ServerOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let t = Transport::connect(&RedisSettings::from_url(server.url()))
        .await
        .unwrap();
    let stream = kaiju_tests::namespace().stream("rpc").unwrap();
    let pid = server.pid().unwrap().to_string();
    let signal = move |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        signal("-CONT");
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
