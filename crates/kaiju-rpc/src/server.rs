//! `Server`: dispatches requests to registered methods under scopes, deadlines and a bound on
//! concurrent work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kaiju_core::{AppSettings, Value};
use kaiju_streams::Headers;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::context::{Limits, Parsed, RequestContext};
use crate::dispatch;
use crate::error::RpcError;
use crate::module::{Erased, MethodFuture, RegisterError, RpcModule};
use crate::request::{Body, Outcome, Reply, ReplyBody, Response, Via};
use crate::scope::{Scope, fnmatch};
use crate::state::{Counters, Inner, ServerSettings, ServerStats};

/// A JSON-RPC server with kaiju's rules, fed by a [`RpcListener`](crate::RpcListener), an
/// [`RpcSubscriber`](crate::RpcSubscriber), or anything else that has a body and headers.
/// Cheap to clone.
///
/// - Scopes: a method above the caller's scope answers "method not found", exactly like an
///   unknown one.
/// - Deadlines: `Deadline` over `Timeout` over `default_request_time`, capped at
///   `max_request_time`; a request whose deadline passed never starts its method, and is a
///   `RequestTimeout` (reporting its own deadline) even when its method does not exist.
/// - Batches run in order under one deadline, with a response per request; `RPC-Batch-Abort-Error`
///   keeps the failing request's real error and aborts the rest; `RPC-Batch-Template` fills
///   params from earlier results (`[0.id]`).
/// - `max_parallel_tasks` is a semaphore: a request takes a slot before its method runs, so
///   callers (a listener's read loop) wait when the server is full; [`drain`](Self::drain)
///   waits for running requests on shutdown.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use kaiju_core::{AppSettings, Value};
/// use kaiju_rpc::{RequestContext, RpcError, RpcModule, Scope, Server, ServerSettings};
/// use kaiju_streams::Headers;
///
/// let mut m = RpcModule::new("math").permissions([("*", Scope::Guest)]);
/// m.method("double", |_, n: std::collections::BTreeMap<String, i64>, _: RequestContext| async move {
///     Ok::<_, RpcError>(n.get("n").copied().unwrap_or(0) * 2)
/// })?;
/// let server = Server::new(&AppSettings::default(), ServerSettings::default(), m)?;
/// let body = Value::Array(vec![
///     Value::Str("math.double".into()),
///     Value::Map(vec![(Value::Str("n".into()), Value::Int(21))]),
/// ]);
/// let reply = server.call(body, &Headers::new(), Scope::Guest).await;
/// assert_eq!(reply.responses()[0].result.as_ref().ok(), Some(&Value::Int(42)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server(Arc<Inner>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("methods", &self.0.methods.len())
            .field("settings", &self.0.settings)
            .finish()
    }
}

impl Server {
    /// A server with the methods of `module` and the built-in `rpc.api` and `rpc.status`,
    /// minus what `blacklist_routes` and `blacklist_scope` remove.
    pub fn new<C: ?Sized + Send + Sync + 'static>(
        app: &AppSettings,
        settings: ServerSettings,
        module: RpcModule<C>,
    ) -> Result<Self, RegisterError> {
        let mut all = RpcModule::new("");
        all.merge(module)?;
        let weak: Arc<std::sync::OnceLock<Weak<Inner>>> = Arc::default();
        all.insert("rpc.api", builtin(&weak, api), Some(Scope::Guest))?;
        all.insert("rpc.status", builtin(&weak, status), Some(Scope::System))?;
        let methods = all
            .into_methods()
            .into_iter()
            .filter(|(name, method)| {
                let listed = settings.blacklist_routes.iter().any(|p| fnmatch(p, name));
                let below = i64::from(method.permission.value()) <= settings.blacklist_scope;
                !(listed || below)
            })
            .collect();
        let settings = settings.clamped();
        let limits = Limits {
            default: Duration::from_secs(settings.default_request_time),
            max: Duration::from_secs(settings.max_request_time),
        };
        let metrics = crate::metrics::Metrics::new(methods_names(&methods));
        let inner = Arc::new(Inner {
            metrics,
            methods,
            limits,
            app: app.clone(),
            slots: Arc::new(Semaphore::new(settings.max_parallel_tasks)),
            settings,
            closing: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let _ = weak.set(Arc::downgrade(&inner));
        Ok(Self(inner))
    }

    /// Handles a body (`[method, params]`, a batch of them, or request objects) with its
    /// headers, for a caller at `scope`. Always answers: errors are responses.
    ///
    /// Waits for a slot when `max_parallel_tasks` requests are running. After
    /// [`drain`](Self::drain) began, answers at once with a retryable internal error and the
    /// outcome [`Outcome::Unavailable`].
    pub async fn call(&self, body: Value, headers: &Headers, scope: Scope) -> Reply {
        self.call_via(body, headers, scope, Via::Stream).await
    }

    /// [`call`](Self::call) for a request that arrived `via` a given transport (its metrics
    /// label and log field).
    pub async fn call_via(&self, body: Value, headers: &Headers, scope: Scope, via: Via) -> Reply {
        let parsed = Parsed::read(headers, self.0.limits);
        let body = Body::read(body, self.0.settings.max_batch_length);
        let Some(_slot) = self.slot(via).await else {
            let stopping = RpcError::internal("the server is stopping").retryable();
            let failed = |c: crate::request::Call| {
                // Counted as every other answer is (ServerStats::unavailable and the metrics).
                self.0.counters.count(Outcome::Unavailable);
                (self.0.metrics).skipped(c.method.as_deref().ok(), via, Outcome::Unavailable);
                Response::error(c.id, stopping.clone(), Outcome::Unavailable)
            };
            let body = match body {
                Body::Single(c) => ReplyBody::Single(failed(c)),
                Body::Batch(cs) => ReplyBody::Batch(cs.into_iter().map(failed).collect()),
            };
            return Reply {
                correlation_id: parsed.correlation_id,
                body,
            };
        };
        let _in_flight = self.0.metrics.in_flight(via);
        let run = dispatch::Run {
            inner: &self.0,
            parsed: &parsed,
            headers,
            scope,
            via,
        };
        let body = match body {
            Body::Single(c) => ReplyBody::Single(run.one(c, None).await),
            Body::Batch(cs) => ReplyBody::Batch(run.batch(cs).await),
        };
        let reply = Reply {
            correlation_id: parsed.correlation_id,
            body,
        };
        let max = self.0.settings.max_reply_bytes;
        if reply.fits(max) {
            return reply;
        }
        tracing::warn!(correlation_id = %reply.correlation_id, max_reply_bytes = max, "a reply over max_reply_bytes was replaced by an error");
        let error = RpcError::internal(format_args!(
            "the reply is over max_reply_bytes ({max} bytes)"
        ))
        .with_data("max_reply_bytes", max);
        Reply {
            correlation_id: reply.correlation_id,
            body: ReplyBody::Single(Response::error(Value::Nil, error, Outcome::Rejected)),
        }
    }

    /// Whether [`drain`](Self::drain) was called: new requests are refused.
    pub fn is_draining(&self) -> bool {
        self.0.closing.load(Ordering::Acquire)
    }

    async fn slot(&self, via: Via) -> Option<OwnedSemaphorePermit> {
        if self.0.closing.load(Ordering::Acquire) {
            return None;
        }
        match self.0.slots.clone().try_acquire_owned() {
            Ok(permit) => return Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => self.0.metrics.queue_full(via),
        }
        self.0.slots.clone().acquire_owned().await.ok()
    }

    /// Stops taking requests (new ones are answered with a retryable error) and waits until
    /// the running ones finished, at most `within`. Returns whether they all finished.
    pub async fn drain(&self, within: Duration) -> bool {
        self.0.closing.store(true, Ordering::Release);
        let all = u32::try_from(self.0.settings.max_parallel_tasks).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(within, self.0.slots.acquire_many(all))
            .await
            .is_ok_and(|permit| permit.is_ok());
        // A call that passed the closing check before it was set cannot take a slot now.
        self.0.slots.close();
        if !drained {
            tracing::warn!(
                running = self.0.running(),
                "rpc requests still running after the drain deadline"
            );
        }
        drained
    }

    /// The registered method names (built-ins included), sorted.
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.0.methods.keys().map(String::as_str)
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        let c = &self.0.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ServerStats {
            requests: get(&c.requests),
            ok: get(&c.ok),
            client_errors: get(&c.client_errors),
            rejected: get(&c.rejected),
            expired: get(&c.expired),
            failed: get(&c.failed),
            timed_out: get(&c.timed_out),
            aborted: get(&c.aborted),
            unavailable: get(&c.unavailable),
            running: self.0.running() as u64,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.0.settings
    }

    /// The time limits requests are read with.
    pub(crate) fn limits(&self) -> Limits {
        self.0.limits
    }
}

fn methods_names(
    methods: &std::collections::BTreeMap<String, crate::module::Method>,
) -> impl Iterator<Item = &str> {
    methods.keys().map(String::as_str)
}

/// A built-in method: reads the server through a weak reference (the server owns its methods).
fn builtin(
    server: &Arc<std::sync::OnceLock<Weak<Inner>>>,
    f: fn(&Inner, &Value, &RequestContext) -> Result<Value, RpcError>,
) -> Erased {
    let server = server.clone();
    let call: Erased = Arc::new(move |params: Value, ctx: RequestContext| -> MethodFuture {
        let result = match server.get().and_then(Weak::upgrade) {
            Some(inner) => f(&inner, &params, &ctx),
            None => Err(RpcError::internal("the server is gone")),
        };
        Box::pin(async move { result.map_err(crate::module::Failure::Method) })
    });
    call
}

/// `rpc.api`: the methods the caller may call, filtered by `pattern` (fnmatch on the full
/// name, default `*`). kaiju listed nothing to callers without a session (D17).
fn api(inner: &Inner, params: &Value, ctx: &RequestContext) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        #[serde(default)]
        pattern: Option<String>,
    }
    let p: Params = crate::module::parse_params(params)?;
    let pattern = p.pattern.unwrap_or_else(|| "*".into());
    let s = |v: &str| Value::Str(v.to_owned());
    let routes = inner
        .methods
        .iter()
        .filter(|(name, m)| inner.visible(ctx.scope(), m) && fnmatch(&pattern, name))
        .map(|(name, m)| {
            Value::Map(vec![
                (s("route"), s(name)),
                (s("permission"), s(m.permission.name())),
            ])
        })
        .collect();
    Ok(Value::Map(vec![
        (s("api"), s("jsonrpc")),
        (s("version"), s("2.0")),
        (s("spec"), s("https://www.jsonrpc.org/specification")),
        (s("routes"), Value::Array(routes)),
    ]))
}

/// `rpc.status`: kaiju's status object.
fn status(inner: &Inner, _: &Value, _: &RequestContext) -> Result<Value, RpcError> {
    let s = |v: &str| Value::Str(v.to_owned());
    let max = inner.settings.max_parallel_tasks;
    let free = inner.slots.available_permits();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Ok(Value::Map(vec![
        (s("app"), s(&inner.app.name)),
        (s("app_id"), s(&inner.app.id.to_string())),
        (s("env"), s(&inner.app.env)),
        (s("debug"), Value::Bool(false)),
        (s("rpc_tasks"), Value::Int(inner.running() as i64)),
        (s("queue_full"), Value::Bool(free == 0)),
        (s("server_time"), Value::Int(now as i64)),
        (s("max_tasks"), Value::Int(max as i64)),
        (
            s("max_timeout"),
            Value::Int(inner.limits.max.as_secs() as i64),
        ),
        (
            s("default_timeout"),
            Value::Int(inner.limits.default.as_secs() as i64),
        ),
        (
            s("enable_permissions"),
            Value::Bool(inner.settings.enable_permissions),
        ),
    ]))
}
