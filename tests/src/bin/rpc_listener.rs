//! A separate RPC listener process for the memory tests, whose peak RSS (`VmHWM`) the test reads
//! from `/proc` after feeding it hostile entries.
//!
//! `rpc_listener <url> <env> <app>`: runs an [`RpcListener`] with the default listener and
//! server settings (what the limits' defaults are meant to bound) and the methods `svc.echo`
//! (returns its params) and `svc.mark` (`{key}`: increments `key`, so the test knows when the
//! entries before it were read), until killed. Prints `started` once it reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kaiju_core::{AppSettings, Lifecycle, RedisSettings, Value};
use kaiju_rpc::{RequestContext, RpcError, RpcListener, RpcModule, Scope, Server, ServerSettings};
use kaiju_streams::ListenerSettings;
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

#[derive(serde::Deserialize)]
struct Mark {
    key: String,
}

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
    let mut m = RpcModule::new("svc").permissions([("*", Scope::Guest)]);
    m.method("echo", |_, p: Value, _: RequestContext| async move {
        Ok::<_, RpcError>(p)
    })
    .unwrap();
    let pool = transport.pool().clone();
    m.method("mark", move |_, p: Mark, _: RequestContext| {
        let pool = pool.clone();
        async move {
            let n: i64 = pool
                .incr(p.key.as_str())
                .await
                .map_err(RpcError::internal)?;
            Ok::<_, RpcError>(n)
        }
    })
    .unwrap();
    let server = Server::new(&app, ServerSettings::default(), m).unwrap();
    let mut listener = RpcListener::new(
        transport,
        &app,
        ListenerSettings::default(),
        Scope::Guest,
        server,
    )
    .unwrap();
    listener.start().await.unwrap();
    println!("started");
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
}
