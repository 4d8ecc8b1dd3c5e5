//! RPC helpers several test areas share: a module whose methods record what they saw, served
//! behind a listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kaiju_core::{AppSettings, Lifecycle};
use kaiju_rpc::{
    NoParams, RequestContext, RpcError, RpcListener, RpcModule, Scope, Server, ServerSettings,
};
use kaiju_streams::ListenerSettings;
use kaiju_transport::Transport;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::eventually;

pub mod sleeper;

/// What the methods saw.
pub type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// The params of `svc.add`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    /// The first term.
    pub a: i64,
    /// The second term.
    pub b: i64,
}

/// Listener settings for quick tests: short reads, quick retries, two deliveries.
pub fn settings() -> ListenerSettings {
    ListenerSettings {
        max_wait_time_ms: 50,
        retry_backoff_ms: 10,
        max_deliveries: 2,
        ..ListenerSettings::default()
    }
}

/// Every header as a JSON object: names as [`HeaderName`](kaiju_streams::HeaderName) displays
/// them (`Int(7)` for the integer 7), values as JSON (an integer above `i64::MAX` as a
/// number, a value JSON has no form for as its debug text).
pub fn headers_json(headers: &kaiju_streams::Headers) -> serde_json::Value {
    use kaiju_streams::HeaderValue;
    let mut out = serde_json::Map::new();
    for (name, value) in headers.iter() {
        let value = match value {
            HeaderValue::Str(v) => json!(v),
            HeaderValue::Int(n) => json!(n),
            HeaderValue::Float(f) => json!(f),
            HeaderValue::Bool(b) => json!(b),
            HeaderValue::Nil => serde_json::Value::Null,
            HeaderValue::Other(kaiju_core::Value::UInt(n)) => json!(n),
            other => json!(format!("{other:?}")),
        };
        out.insert(name.to_string(), value);
    }
    serde_json::Value::Object(out)
}

/// `svc.record` (records params and context), `svc.add`, `svc.fail` (NotFound), `svc.boom`
/// (internal), `svc.admin` (ADMIN only).
pub fn module(seen: &Seen) -> RpcModule {
    module_of("svc", seen)
}

/// [`module`] under the service name `service`.
pub fn module_of(service: &str, seen: &Seen) -> RpcModule {
    let mut m = RpcModule::new(service).permissions([("*", Scope::Guest), ("admin", Scope::Admin)]);
    for route in ["record", "echo"] {
        let s = seen.clone();
        m.method(
            route,
            move |_, p: serde_json::Value, ctx: RequestContext| {
                let s = s.clone();
                async move {
                    let header = |name: &str| match ctx.headers().get(name) {
                        Some(kaiju_streams::HeaderValue::Str(v)) => json!(v),
                        Some(kaiju_streams::HeaderValue::Int(n)) => json!(n),
                        _ => serde_json::Value::Null,
                    };
                    s.lock().unwrap().push(json!({
                        "method": ctx.method(),
                        "params": p,
                        "correlation_id": ctx.correlation_id(),
                        "deadline": ctx.deadline_unix(),
                        "remaining_ms": ctx.remaining().as_millis() as u64,
                        "auth": header("Authorization"),
                        "retries": header("RPC-Retries"),
                        "timeout": header("Timeout"),
                        "headers": headers_json(ctx.headers()),
                    }));
                    Ok::<_, RpcError>(p)
                }
            },
        )
        .unwrap();
    }
    let s = seen.clone();
    m.method("add", move |_, p: Add, _| {
        let s = s.clone();
        async move {
            s.lock()
                .unwrap()
                .push(json!({"method": "svc.add", "params": p}));
            Ok::<_, RpcError>(p.a + p.b)
        }
    })
    .unwrap();
    m.method("fail", |_, _: NoParams, _| async {
        Err::<(), _>(RpcError::not_found("no such thing").with_data("key", "k1"))
    })
    .unwrap();
    m.method("boom", |_, _: NoParams, _| async {
        Err::<(), _>(RpcError::internal("db down"))
    })
    .unwrap();
    m.method("admin", |_, _: NoParams, _| async {
        Ok::<_, RpcError>("admin")
    })
    .unwrap();
    m
}

/// [`module`] served for `app` behind a started listener at `scope`.
pub async fn serve(t: &Transport, app: &AppSettings, seen: &Seen, scope: Scope) -> RpcListener {
    serve_module(t, app, module(seen), scope).await
}

/// `module` served for `app` behind a started listener at `scope`.
pub async fn serve_module(
    t: &Transport,
    app: &AppSettings,
    module: RpcModule,
    scope: Scope,
) -> RpcListener {
    let server = Server::new(app, ServerSettings::default(), module).unwrap();
    let mut listener = RpcListener::new(t.clone(), app, settings(), scope, server).unwrap();
    listener.start().await.unwrap();
    listener
}

/// Waits (up to 20 s) until the methods saw `n` calls.
pub async fn seen_len(seen: &Seen, n: usize) {
    eventually(&format!("{n} calls"), Duration::from_secs(20), || {
        let len = seen.lock().unwrap().len();
        async move { len >= n }
    })
    .await;
}
