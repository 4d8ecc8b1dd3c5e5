//! A separate listener process for the stream tests.
//!
//! `stream_worker <url> <env> <app> <consumer> <handled-set> <handled-count>`: runs a listener
//! (batch 50, handler timeout 0.5 s, claims entries idle for 1 s) whose handler adds each entry id to the set
//! `<handled-set>` and increments `<handled-count>`, until killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kaiju_core::{AppSettings, Lifecycle, RedisSettings};
use kaiju_streams::{HandlerError, Listener, ListenerSettings, Message};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

type Body = (String, Option<i64>);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let transport = Transport::connect(&RedisSettings::from_url(args[0].clone()))
        .await
        .unwrap();
    let app = AppSettings {
        env: args[1].clone(),
        name: args[2].clone(),
        ..AppSettings::default()
    };
    let settings = ListenerSettings {
        consumer_id: Some(args[3].clone()),
        max_batch_size: 50,
        max_parallel_batches: 2,
        pending_messages_time_ms: Some(1000),
        handler_timeout_ms: 500,
        retry_backoff_ms: 50,
        ..ListenerSettings::default()
    };
    let (set, count) = (args[4].clone(), args[5].clone());
    let pool = transport.pool().clone();
    let mut listener = Listener::new(transport, &app, settings, move |m: Message<Body>| {
        let (pool, set, count) = (pool.clone(), set.clone(), count.clone());
        async move {
            let _: i64 = pool.sadd(set.as_str(), m.id.as_str()).await?;
            let _: i64 = pool.incr(count.as_str()).await?;
            Ok::<_, HandlerError>(())
        }
    })
    .unwrap();
    listener.start().await.unwrap();
    println!("started");
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
}
