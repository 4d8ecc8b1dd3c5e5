//! An app built from the seed's own configs, for the crash tests.
//!
//! `seed_app <url> <env> <app>`: `examples/kaiju/app.yml` and `server.yml` verbatim (claiming
//! off: `pending_messages_time_ms: null`, and no consumer id, so each process is a new consumer
//! named after its random app id), a layer pointing the transport `redis` at `url`, and one
//! more service, `work`: `work.mark {key, id, ms}` sleeps `ms` ms, then counts one run of `id`
//! in the hash `key` (`HINCRBY key id 1`). Prints `started` once the app runs, then runs until
//! killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kaiju_app::{App, AppError, Build, Registry, Service, ServiceClass};
use kaiju_core::RedisSettings;
use kaiju_rpc::{RegisterError, RpcError, RpcModule};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;

static TRANSPORT: OnceLock<Transport> = OnceLock::new();

#[derive(serde::Deserialize)]
struct Mark {
    key: String,
    id: String,
    ms: u64,
}

struct Work(Transport);

impl ServiceClass for Work {
    fn build(_: &Build<'_>) -> Result<Self, AppError> {
        Ok(Self(TRANSPORT.get().unwrap().clone()))
    }
}

impl Service for Work {
    fn rpc_module(self: Arc<Self>) -> Result<RpcModule<Self>, RegisterError> {
        let mut m = RpcModule::with_context("work", self);
        m.method("mark", |this, p: Mark, _| async move {
            tokio::time::sleep(Duration::from_millis(p.ms)).await;
            let _: i64 = this
                .0
                .pool()
                .hincrby(p.key.as_str(), p.id.as_str(), 1)
                .await
                .map_err(RpcError::internal)?;
            Ok::<_, RpcError>(true)
        })?;
        Ok(m)
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, env, name) = (&args[0], &args[1], &args[2]);
    let transport = Transport::connect(&RedisSettings::from_url(url.clone()))
        .await
        .unwrap();
    TRANSPORT.set(transport).ok().unwrap();
    let config = kaiju_tests::seed_server_config(url, env, name, "  - cls: Work\n    name: work\n");
    let mut registry = Registry::builtin();
    registry.register::<Work>("Work", "work").unwrap();
    let app = App::build(&config, &registry).unwrap();
    app.start().await.unwrap();
    println!("started");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}
