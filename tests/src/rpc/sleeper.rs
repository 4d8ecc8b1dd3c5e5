//! A server whose `svc.sleep` sleeps as long as it is asked and counts its runs, and whose
//! `svc.unencodable` returns a result that cannot be encoded: the RPC tests of deadlines,
//! replies, delivery and shutdown run against it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kaiju_core::{AppSettings, Lifecycle};
use kaiju_rpc::{
    NoParams, RequestContext, RpcError, RpcListener, RpcListenerOptions, RpcModule, Scope, Server,
    ServerSettings,
};
use kaiju_streams::ListenerSettings;
use kaiju_transport::Transport;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Sleep {
    ms: u64,
    tag: String,
}

/// Fails to serialize: a method whose result cannot be encoded.
struct Unencodable;
impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("cannot encode this"))
    }
}

/// How many times each method started.
#[derive(Default)]
pub struct Counts {
    /// Runs of `svc.sleep`.
    pub sleep: AtomicU64,
    /// Runs of `svc.unencodable`.
    pub unencodable: AtomicU64,
    /// Runs of `svc.boom`.
    pub boom: AtomicU64,
}

/// `svc.sleep` (`{ms, tag}`: sleeps `ms`, returns `tag`), `svc.unencodable` and `svc.boom`
/// (fails with an internal error: worth a retry), open to guests, counting their runs in
/// `counts`.
pub fn module(counts: &Arc<Counts>) -> RpcModule {
    let mut m = RpcModule::new("svc").permissions([("*", Scope::Guest)]);
    let c = counts.clone();
    m.method("sleep", move |_, p: Sleep, _ctx: RequestContext| {
        let c = c.clone();
        async move {
            c.sleep.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(p.ms)).await;
            Ok::<_, RpcError>(p.tag)
        }
    })
    .unwrap();
    let c = counts.clone();
    m.method("unencodable", move |_, _: NoParams, _| {
        let c = c.clone();
        async move {
            c.unencodable.fetch_add(1, Ordering::SeqCst);
            Ok::<_, RpcError>(Unencodable)
        }
    })
    .unwrap();
    let c = counts.clone();
    m.method("boom", move |_, _: NoParams, _| {
        let c = c.clone();
        async move {
            c.boom.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(RpcError::internal("database down"))
        }
    })
    .unwrap();
    m
}

/// Listener settings for quick tests: short reads, quick retries, three deliveries.
pub fn quick() -> ListenerSettings {
    ListenerSettings {
        max_wait_time_ms: 50,
        retry_backoff_ms: 10,
        max_deliveries: 3,
        ..ListenerSettings::default()
    }
}

/// [`module`] served for `app` behind a started guest-scope listener.
pub async fn listen(
    t: &Transport,
    app: &AppSettings,
    settings: ListenerSettings,
    server_settings: ServerSettings,
    counts: &Arc<Counts>,
) -> RpcListener {
    listen_with(
        t,
        app,
        settings,
        server_settings,
        counts,
        RpcListenerOptions::default(),
    )
    .await
}

/// [`listen`] with `options`.
pub async fn listen_with(
    t: &Transport,
    app: &AppSettings,
    settings: ListenerSettings,
    server_settings: ServerSettings,
    counts: &Arc<Counts>,
    options: RpcListenerOptions,
) -> RpcListener {
    let server = Server::new(app, server_settings, module(counts)).unwrap();
    let mut l =
        RpcListener::with_options(t.clone(), app, settings, Scope::Guest, server, options).unwrap();
    l.start().await.unwrap();
    l
}

/// The params of `svc.sleep`.
pub fn sleep_params(ms: u64, tag: &str) -> serde_json::Value {
    json!({"ms": ms, "tag": tag})
}
