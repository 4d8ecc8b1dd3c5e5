//! `RpcClient`: kaiju's `RedisStreamRPCClient` (notifications into another app's stream), plus
//! request/response and pub/sub.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kaiju_core::{AppSettings, Key, KeyError, Namespace, Value};
use kaiju_streams::{HeaderValue, Headers, Outgoing, StreamError, StreamWriter, encode, short_uid};
use kaiju_transport::fred::interfaces::PubsubInterface;
use kaiju_transport::{Classify, Transport, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::context::{RequestContext, headers};
use crate::error::{RpcError, to_value};
use crate::replies::Replies;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The params could not be encoded, or a response could not be read as the expected type.
    #[error("codec: {0}")]
    Codec(#[from] kaiju_core::CodecError),
    /// An app or topic name that kaiju cannot use in a key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Writing the entry failed. After a lost connection it may or may not have been written
    /// (it is never written twice behind the caller's back).
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A Redis command failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered with an error object.
    #[error("the server answered: {0}")]
    Rpc(RpcError),
    /// No response arrived before the deadline. The request may still run (or have run).
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The response does not fit the expected type.
    #[error("the response does not fit the expected type: {0}")]
    Response(String),
    /// The operating system's random generator failed, so no request id could be made (the
    /// request was not sent).
    #[error("no request id: the operating system's random generator failed: {0}")]
    Random(String),
}

/// The bytes of randomness in a request id: 128 bits, from the operating system's
/// cryptographically secure generator.
const REQUEST_ID_BYTES: usize = 16;

/// A new `Request-Id`: 128 bits from the operating system's generator (`getrandom`), as 32
/// lowercase hex characters. Not the `short_uid` of correlation ids, which are meant to be
/// seen and are 40 bits of a fast, predictable generator.
fn request_id() -> CallResult<String> {
    let mut bytes = [0_u8; REQUEST_ID_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| CallError::Random(e.to_string()))?;
    let mut id = String::with_capacity(2 * REQUEST_ID_BYTES);
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    Ok(id)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Result of client calls.
pub type CallResult<T> = Result<T, CallError>;

/// What every copy of a client shares: one reply subscription.
struct Shared {
    transport: Transport,
    writer: StreamWriter,
    env: String,
    app: String,
    client_id: String,
    reply_channel: Key,
    replies: OnceCell<Arc<Replies>>,
}

/// kaiju's `RedisStreamRPCClient`: calls methods of an app by writing notifications into its
/// stream `<env>.<app>._stream.<topic>` (the env is the client's), read by a Python
/// `RedisListener` or a Rust [`RpcListener`](crate::RpcListener). Cheap to clone.
///
/// - [`call`](Self::call): one notification, no result (as kaiju).
/// - [`call_multiple`](Self::call_multiple): one batch entry, with kaiju's abort and template
///   flags. [`call_each`](Self::call_each): N entries in one call (per 1,000).
/// - [`request`](Self::request): waits for the result (kaiju-rs servers only).
/// - [`publish`](Self::publish): the same envelope over pub/sub (kaiju's `RedisPublisher`).
///
/// Each returns a builder that takes the same options: `.app(..)`, `.topic(..)`,
/// `.header(..)`, `.timeout(..)`, `.retries(..)`; `.await` sends it.
///
/// Inside a method, calls carry the running request's `Correlation-Id`; otherwise a new one.
///
/// ```no_run
/// # async fn demo(transport: kaiju_transport::Transport) -> Result<(), kaiju_rpc::CallError> {
/// use std::time::Duration;
/// use kaiju_core::AppSettings;
/// use kaiju_rpc::RpcClient;
/// use serde_json::json;
///
/// let app = AppSettings { env: "prod".into(), name: "web".into(), ..Default::default() };
/// let client = RpcClient::new(transport, &app);
/// // kaiju: await client.call("users.create", {"name": "bob"}, app="users")
/// client
///     .call("users.create", json!({"name": "bob"}))
///     .app("users")
///     .timeout(Duration::from_secs(10))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RpcClient {
    shared: Arc<Shared>,
    topic: Arc<str>,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("env", &self.shared.env)
            .field("app", &self.shared.app)
            .field("topic", &self.topic)
            .field("client_id", &self.shared.client_id)
            .finish()
    }
}

/// Per-call options, shared by every kind of call.
#[derive(Debug, Clone, Default)]
struct Options {
    app: Option<String>,
    topic: Option<String>,
    headers: Headers,
    timeout: Option<Duration>,
    retries: Option<u32>,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl RpcClient {
    /// A client of `app` (its env names the target streams; its name is the default target).
    pub fn new(transport: Transport, app: &AppSettings) -> Self {
        let client_id = uuid::Uuid::new_v4().simple().to_string();
        let reply_channel = Key::reply_channel(&app.env, &app.name, &client_id);
        Self {
            shared: Arc::new(Shared {
                writer: StreamWriter::new(transport.clone()),
                transport,
                env: app.env.clone(),
                app: app.name.clone(),
                client_id,
                reply_channel,
                replies: OnceCell::new(),
            }),
            topic: Arc::from("rpc"),
        }
    }

    /// The same client with another default topic (kaiju's `topic` setting; default `rpc`).
    /// The copies share one reply subscription.
    #[must_use]
    pub fn with_topic(&self, topic: impl Into<String>) -> Self {
        Self {
            shared: self.shared.clone(),
            topic: Arc::from(topic.into()),
        }
    }

    /// Requests waiting for their response now (a cancelled or timed-out request is not).
    pub fn waiting_requests(&self) -> usize {
        self.shared.replies.get().map_or(0, |r| r.waiting())
    }

    /// The stream of `app`'s `topic` in this client's env (kaiju's `get_topic_key`).
    pub fn topic_key(&self, app: &str, topic: &str) -> Result<Key, KeyError> {
        Namespace::new(&self.shared.env, app)?.stream(topic)
    }

    /// Calls `method` with `params` (a map, or `()` / `None` for none) as a notification:
    /// returns the id of the written entry once it is in Redis; the method's result is not
    /// returned (use [`request`](Self::request) for that). Options: [`Call::app`],
    /// [`Call::topic`], [`Call::header`], [`Call::timeout`], [`Call::retries`].
    pub fn call<P: Serialize>(&self, method: impl Into<String>, params: P) -> Call<'_, P> {
        Call {
            client: self,
            method: method.into(),
            params,
            options: Options::default(),
        }
    }

    /// Calls several methods as one batch entry (run in order by one server, under one
    /// deadline). See [`Batch::abort_on_error`] and [`Batch::template`].
    ///
    /// Towards a **Python** kaiju 2.4 listener, prefer [`call_each`](Self::call_each) unless
    /// you need the batch semantics: a batch whose calls all succeed makes a Python listener
    /// lose the rest of the entries it read together with it (kaiju's defect D10).
    pub fn call_multiple<P: Serialize>(&self, calls: Vec<(String, P)>) -> Batch<'_, P> {
        Batch {
            client: self,
            calls,
            abort_on_error: false,
            template: false,
            options: Options::default(),
        }
    }

    /// Calls several methods as separate entries, written with
    /// [`StreamWriter::write_many`](kaiju_streams::StreamWriter::write_many) (one script call
    /// per 1,000 entries, each written at most once). `.await` it for the entry ids, in order;
    /// when only some were written, the error is [`StreamError::PartialWrite`] with the ids of
    /// those that were. Takes the same options as [`call`](Self::call).
    pub fn call_each<P: Serialize>(&self, calls: Vec<(String, P)>) -> Each<'_, P> {
        Each {
            client: self,
            calls,
            options: Options::default(),
        }
    }

    /// The namespace of the app `options` name (default: the client's own), and their topic
    /// (default: the client's).
    fn destination<'o>(&'o self, options: &'o Options) -> Result<(Namespace, &'o str), KeyError> {
        let app = options.app.as_deref().unwrap_or(&self.shared.app);
        let topic = options.topic.as_deref().unwrap_or(&self.topic);
        Ok((Namespace::new(&self.shared.env, app)?, topic))
    }

    /// The stream `options` target.
    fn target(&self, options: &Options) -> Result<Key, KeyError> {
        let (ns, topic) = self.destination(options)?;
        ns.stream(topic)
    }

    /// kaiju's `write`: appends `body` with `headers` to the stream `topic_key` as is
    /// (`Correlation-Id` is added when missing).
    pub async fn write<B: Serialize + ?Sized>(
        &self,
        topic_key: &Key,
        body: &B,
        headers: Headers,
    ) -> CallResult<String> {
        Ok(self.shared.writer.write(topic_key, body, headers).await?)
    }

    /// Calls `method` and waits for its result, read as `R` (kaiju-rs servers only: the
    /// request carries a `Reply-To` channel, to which the server publishes the response; a
    /// Python kaiju listener runs it as a notification and the request times out).
    ///
    /// The deadline is [`Request::timeout`] (default 30 s), sent as `Deadline` (and capped by
    /// the running request's own deadline inside a method). Subscribes once per client before
    /// the first request is written, so no response can be missed; nothing is left in Redis
    /// when the client goes away.
    pub fn request<P: Serialize, R: DeserializeOwned>(
        &self,
        method: impl Into<String>,
        params: P,
    ) -> Request<'_, P, R> {
        Request {
            call: self.call(method, params),
            _result: std::marker::PhantomData,
        }
    }

    /// Publishes `[method, params]` on `<env>.<app>._sub.<topic>` (kaiju's `RedisPublisher`):
    /// fire and forget; subscribers that are not connected at that moment never see it.
    /// `.await` it for how many subscribers received it. Takes the same options as
    /// [`call`](Self::call).
    pub fn publish<P: Serialize>(&self, method: impl Into<String>, params: P) -> Publish<'_, P> {
        Publish {
            call: self.call(method, params),
        }
    }

    /// The headers of a call, in kaiju's order: `Correlation-Id` first (the caller's, the
    /// running request's, or a new one), then `Timeout`, `RPC-Retries`, the caller's own.
    fn headers(&self, options: &Options, deadline: Option<u64>) -> Headers {
        let mut h = Headers::new();
        let correlation = match options.headers.get(headers::CORRELATION_ID) {
            Some(v) => v.clone(),
            None => match RequestContext::current() {
                Some(ctx) => HeaderValue::Str(ctx.correlation_id().to_owned()),
                None => HeaderValue::Str(short_uid()),
            },
        };
        h.insert(headers::CORRELATION_ID, correlation);
        if let Some(t) = options.timeout {
            h.insert(headers::TIMEOUT, timeout_secs(t));
        }
        if let Some(d) = deadline {
            h.insert(headers::DEADLINE, i64::try_from(d).unwrap_or(i64::MAX));
        }
        if let Some(n) = options.retries {
            h.insert(headers::RETRIES, i64::from(n));
        }
        // W3C trace context: inside a request that carried one, a child of it (same trace,
        // a new parent id) and its `tracestate`; a caller's own header wins (copied below).
        // Outside a request none is made up: entries stay small unless a caller starts a
        // trace (`TraceParent::new_root`).
        if options.headers.get(headers::TRACEPARENT).is_none()
            && let Some(ctx) = RequestContext::current()
            && let Some(parent) = ctx.trace()
        {
            match parent.child() {
                Ok(child) => {
                    h.insert(headers::TRACEPARENT, child.to_string());
                    if let Some(state) = ctx.tracestate() {
                        h.insert(headers::TRACESTATE, state);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "no span id for traceparent"),
            }
        }
        for (name, value) in options.headers.iter() {
            h.insert(name, value.clone());
        }
        h
    }

    async fn replies(&self) -> CallResult<&Arc<Replies>> {
        Ok(self
            .shared
            .replies
            .get_or_try_init(|| {
                Replies::connect(&self.shared.transport, self.shared.reply_channel.as_str())
            })
            .await?)
    }
}

/// kaiju sends `Timeout` as whole seconds, at least 1.
fn timeout_secs(t: Duration) -> i64 {
    let t = t.min(MAX_REQUEST_WAIT);
    let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Params as they go on the wire: a map, or `nil` for none.
fn params_value<P: Serialize + ?Sized>(params: &P) -> CallResult<Value> {
    let value = to_value(params)?;
    Ok(match value {
        Value::Array(items) if items.is_empty() => Value::Nil,
        other => other,
    })
}

/// `[method, params]` of each call, as they go on the wire.
fn bodies<P: Serialize>(calls: &[(String, P)]) -> CallResult<Vec<(&str, Value)>> {
    calls
        .iter()
        .map(|(method, params)| Ok((method.as_str(), params_value(params)?)))
        .collect()
}

/// One call being built; `.await` it to send it.
#[must_use = "a call is sent when awaited"]
pub struct Call<'a, P> {
    client: &'a RpcClient,
    method: String,
    params: P,
    options: Options,
}

macro_rules! options {
    ($($path:ident).+) => {
        /// The target app (default: the client's own app).
        pub fn app(mut self, app: impl Into<String>) -> Self {
            self.$($path).+.app = Some(app.into());
            self
        }

        /// The target topic (default: the client's, `rpc`).
        pub fn topic(mut self, topic: impl Into<String>) -> Self {
            self.$($path).+.topic = Some(topic.into());
            self
        }

        /// Adds a header (`Authorization`, `Correlation-Id`, anything the method reads).
        pub fn header(
            mut self,
            name: impl Into<kaiju_streams::HeaderName>,
            value: impl Into<HeaderValue>,
        ) -> Self {
            self.$($path).+.headers.insert(name, value);
            self
        }

        /// The server-side time limit, sent as `Timeout` in whole seconds (at least 1).
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.$($path).+.timeout = Some(timeout);
            self
        }

        /// `RPC-Retries`: attempts in total (kaiju's meaning), for transient method errors.
        pub fn retries(mut self, attempts: u32) -> Self {
            self.$($path).+.retries = Some(attempts);
            self
        }
    };
}

impl<'a, P: Serialize> Call<'a, P> {
    options!(options);

    async fn send(self) -> CallResult<String> {
        let key = self.client.target(&self.options)?;
        let body = self.body()?;
        let headers = self.client.headers(&self.options, None);
        Ok(self
            .client
            .shared
            .writer
            .write(&key, &body, headers)
            .await?)
    }

    /// `[method, params]`, as it goes on the wire.
    fn body(&self) -> CallResult<(&str, Value)> {
        Ok((self.method.as_str(), params_value(&self.params)?))
    }
}

impl<'a, P: Serialize + Send + Sync + 'a> IntoFuture for Call<'a, P> {
    type Output = CallResult<String>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A batch being built; `.await` it to send it as one entry.
#[must_use = "a batch is sent when awaited"]
pub struct Batch<'a, P> {
    client: &'a RpcClient,
    calls: Vec<(String, P)>,
    abort_on_error: bool,
    template: bool,
    options: Options,
}

impl<'a, P: Serialize> Batch<'a, P> {
    options!(options);

    /// `RPC-Batch-Abort-Error`: stop at the first failing call; the rest are `Aborted`.
    pub fn abort_on_error(mut self) -> Self {
        self.abort_on_error = true;
        self
    }

    /// `RPC-Batch-Template`: fill params from earlier results, e.g. `{"user_id": "[0.id]"}`.
    /// The grammar is in [`template`](crate::template).
    pub fn template(mut self) -> Self {
        self.template = true;
        self
    }

    async fn send(self) -> CallResult<String> {
        let key = self.client.target(&self.options)?;
        let body = bodies(&self.calls)?;
        let mut headers = self.client.headers(&self.options, None);
        if self.abort_on_error {
            headers.insert(headers::BATCH_ABORT, headers::TRUE);
        }
        if self.template {
            headers.insert(headers::BATCH_TEMPLATE, headers::TRUE);
        }
        Ok(self
            .client
            .shared
            .writer
            .write(&key, &body, headers)
            .await?)
    }
}

impl<'a, P: Serialize + Send + Sync + 'a> IntoFuture for Batch<'a, P> {
    type Output = CallResult<String>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A request being built; `.await` it for the typed result.
#[must_use = "a request is sent when awaited"]
pub struct Request<'a, P, R> {
    call: Call<'a, P>,
    _result: std::marker::PhantomData<fn() -> R>,
}

/// How long a request waits for its response when no timeout is given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a request waits (a longer timeout is cut to it): one day.
pub const MAX_REQUEST_WAIT: Duration = Duration::from_secs(86_400);

impl<'a, P: Serialize, R: DeserializeOwned> Request<'a, P, R> {
    options!(call.options);

    async fn send(self) -> CallResult<R> {
        let call = self.call;
        let client = call.client;
        let mut wait = call
            .options
            .timeout
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
            .min(MAX_REQUEST_WAIT);
        if let Some(ctx) = RequestContext::current() {
            wait = wait.min(ctx.remaining());
        }
        let deadline = tokio::time::Instant::now() + wait;
        // Rounded up: a whole-second `Deadline` must not give the server less than `wait`.
        let until = unix_now() + wait;
        let deadline_unix = until.as_secs() + u64::from(until.subsec_nanos() > 0);
        // Without a namespace of its own (an empty name, or one holding `.`), a client's reply
        // channel is `kaiju._reply.<client>`, which no server answers: fail now, not by timeout.
        Namespace::new(&client.shared.env, &client.shared.app)?;
        let replies = client.replies().await?;
        replies.ready(deadline).await;
        // The only thing that ties a response to its request: a response is accepted for
        // exactly this id, so it must not be guessable (anyone who can make a server answer
        // could otherwise answer for it).
        let request_id = request_id()?;
        let mut headers = client.headers(&call.options, Some(deadline_unix));
        headers.insert(headers::REPLY_TO, client.shared.reply_channel.as_str());
        headers.insert(headers::REQUEST_ID, request_id.as_str());
        let key = client.target(&call.options)?;
        let body = call.body()?;
        // Registered before the write: the response cannot arrive before anyone waits for it.
        let pending = replies.expect(request_id);
        client.shared.writer.write(&key, &body, headers).await?;
        let response = tokio::time::timeout_at(deadline, pending.wait())
            .await
            .map_err(|_| CallError::Timeout(wait))?
            .ok_or(CallError::Timeout(wait))?;
        match response.result {
            Ok(value) => R::deserialize(&value).map_err(|e| CallError::Response(e.to_string())),
            Err(e) => Err(CallError::Rpc(e)),
        }
    }
}

impl<'a, P: Serialize + Send + Sync + 'a, R: DeserializeOwned + Send + 'a> IntoFuture
    for Request<'a, P, R>
{
    type Output = CallResult<R>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Several calls being built, each its own entry; `.await` it to write them.
#[must_use = "calls are sent when awaited"]
pub struct Each<'a, P> {
    client: &'a RpcClient,
    calls: Vec<(String, P)>,
    options: Options,
}

impl<'a, P: Serialize> Each<'a, P> {
    options!(options);

    async fn send(self) -> CallResult<Vec<String>> {
        let client = self.client;
        let key = client.target(&self.options)?;
        let bodies = bodies(&self.calls)?;
        let entries = bodies
            .iter()
            .map(|body| Outgoing {
                stream: &key,
                body,
                headers: client.headers(&self.options, None),
            })
            .collect();
        Ok(client.shared.writer.write_many(entries).await?)
    }
}

impl<'a, P: Serialize + Send + Sync + 'a> IntoFuture for Each<'a, P> {
    type Output = CallResult<Vec<String>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A pub/sub message being built; `.await` it to publish it.
#[must_use = "a message is published when awaited"]
pub struct Publish<'a, P> {
    call: Call<'a, P>,
}

impl<'a, P: Serialize> Publish<'a, P> {
    options!(call.options);

    async fn send(self) -> CallResult<u64> {
        let call = self.call;
        let client = call.client;
        let (ns, topic) = client.destination(&call.options)?;
        let channel = ns.channel(topic)?;
        let payload = Bytes::from(encode(&call.body()?, &client.headers(&call.options, None))?);
        let receivers: i64 = client
            .shared
            .transport
            .client_once()
            .publish(channel.as_str(), payload)
            .await
            .classify()?;
        Ok(receivers.max(0) as u64)
    }
}

impl<'a, P: Serialize + Send + Sync + 'a> IntoFuture for Publish<'a, P> {
    type Output = CallResult<u64>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 128 bits in 32 hex characters, a new value every time (no counter, no shared state
    /// with correlation ids).
    #[test]
    fn request_ids_are_128_random_bits() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| request_id().unwrap()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| HEX.contains(&b)), "{id}");
        }
        // Every bit varies: OR-ing and AND-ing many ids gives all ones and all zeros.
        let (mut or, mut and) = (0_u128, u128::MAX);
        for id in &ids {
            let n = u128::from_str_radix(id, 16).unwrap();
            or |= n;
            and &= n;
        }
        assert_eq!((or, and), (u128::MAX, 0));
    }
}
