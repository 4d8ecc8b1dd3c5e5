//! `RpcListener`: the server behind a stream listener, and responses to reply addresses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kaiju_core::{AppSettings, Key, Lifecycle, LifecycleError, Value, shortened};
use kaiju_streams::{
    HandlerError, HeaderValue, Headers, Listener, ListenerSettings, ListenerStats, Message,
    StreamError, encode,
};
use kaiju_transport::fred::interfaces::PubsubInterface;
use kaiju_transport::{Classify, Transport};

use crate::context::headers;
use crate::error::RpcError;
use crate::request::{Outcome, Reply, ReplyBody, Response};
use crate::scope::Scope;
use crate::server::Server;
use crate::state::ServerSettings;

/// Sends replies to the `Reply-To` channels of requests (kaiju-rs request/response), for one
/// listener or subscriber.
#[derive(Clone)]
pub(crate) struct Replier {
    transport: Transport,
    /// The environment of the app served: the only one whose reply channels are answered.
    env: Arc<str>,
    /// Replies nobody received that wait to be published again.
    republishing: Arc<Republishing>,
}

impl Replier {
    pub(crate) fn new(transport: Transport, env: &str) -> Self {
        Self {
            transport,
            env: Arc::from(env),
            republishing: Arc::default(),
        }
    }

    /// The channel a reply to `request` goes to: its `Reply-To`, if that is a reply channel of
    /// this app's environment, named exactly as kaiju-rs names them. A request without one is
    /// answered by nobody (a notification, as far as its outcome goes).
    pub(crate) fn channel<'a>(&self, request: &'a Headers) -> Option<&'a str> {
        match request.get(headers::REPLY_TO)? {
            HeaderValue::Str(channel)
                if Key::parse_reply_channel(channel).is_some_and(|c| c.env == &*self.env) =>
            {
                Some(channel)
            }
            _ => None,
        }
    }

    /// Sends a reply to the request's `Reply-To` channel, if it has one. A reply that cannot
    /// be sent is logged: the requester times out.
    ///
    /// Only a reply channel of this app's environment, named exactly as kaiju-rs names them
    /// ([`Key::parse_reply_channel`]), is answered: never another environment's channel, a
    /// keyspace notification channel, or any other component's channel.
    ///
    /// Nor is a request whose `Deadline` has passed: its caller stopped waiting then (a client
    /// waits until that second at most), and after an outage thousands of such replies would
    /// each cost a PUBLISH, and a place among those waiting to be published again.
    pub(crate) async fn send(&self, request: &Headers, reply: &Reply) {
        let Some(channel) = self.channel(request) else {
            if let Some(named) = request.get(headers::REPLY_TO) {
                let named = match named {
                    HeaderValue::Str(channel) => shortened(channel).to_string(),
                    other => shortened(&format!("{other:?}")).to_string(),
                };
                tracing::warn!(
                    channel = %named,
                    env = %self.env,
                    "a request named a reply channel that is not one of this environment; no reply sent"
                );
            }
            return;
        };
        let deadline = crate::context::deadline_header(request);
        if deadline.is_some_and(|d| unix_now() >= d) {
            tracing::debug!(channel = %shortened(channel), "the request's deadline has passed, and its caller with it; no reply sent");
            return;
        }
        let mut out = Headers::new();
        out.insert(headers::CORRELATION_ID, reply.correlation_id.as_str());
        // Echoed only as a string of a sane length: kaiju-rs clients send 32 characters, and
        // match nothing else; a caller's megabyte would be copied into the reply.
        match request.get(headers::REQUEST_ID) {
            Some(HeaderValue::Str(id)) if id.len() <= MAX_REQUEST_ID => {
                out.insert(headers::REQUEST_ID, id.as_str());
            }
            None => {}
            Some(_) => {
                tracing::debug!(
                    "a request's Request-Id is not a string of at most {MAX_REQUEST_ID} bytes; not echoed"
                );
            }
        }
        let payload = match encode(reply, &out) {
            Ok(payload) => Bytes::from(payload),
            Err(e) => {
                tracing::error!(error = %e, "a reply could not be encoded");
                return;
            }
        };
        // A resent PUBLISH after a reconnect at worst delivers a reply twice; the requester
        // takes the first and ignores the other.
        if publish(&self.transport, channel, &payload).await != Some(0)
            || self.transport.is_cluster()
        {
            return;
        }
        // Nobody listens on a single node: the requester is gone, or its subscription is
        // being made again after a reconnect. Try again a few times, in the background (the
        // entry's outcome does not wait for it), while the requester may still wait, and
        // only for a bounded number of replies at once.
        let Some(held) = Held::take(&self.republishing, payload.len()) else {
            tracing::debug!(channel = %shortened(channel), "nobody took the reply, and too many replies wait to be sent again; dropped");
            return;
        };
        let (transport, channel) = (self.transport.clone(), channel.to_owned());
        tokio::spawn(async move {
            // Released when the task ends, however it ends.
            let _held = held;
            for pause in REPUBLISH_PAUSES {
                tokio::time::sleep(pause).await;
                if deadline.is_some_and(|d| unix_now() >= d) {
                    break;
                }
                if publish(&transport, &channel, &payload).await != Some(0) {
                    return;
                }
            }
            tracing::debug!(channel = %shortened(&channel), "nobody took the reply; the requester is gone");
        });
    }
}

/// The longest `Request-Id` echoed in a reply, in bytes.
const MAX_REQUEST_ID: usize = 128;

/// The waits before each new publication of a reply nobody received (single node only): three
/// more at most, within about 2.6 s, and never after the request's `Deadline`.
const REPUBLISH_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_millis(2000),
];

/// At most this many replies nobody received wait to be published again, per listener or
/// subscriber; beyond them, such a reply is dropped at once (a flood of requests naming a
/// channel nobody listens to costs one PUBLISH each).
const MAX_REPUBLISHING: usize = 100;

/// At most this many bytes of such replies wait, per listener or subscriber: a hundred
/// replies of `max_reply_bytes` would otherwise be held for seconds.
const MAX_REPUBLISHING_BYTES: usize = 16 << 20;

/// The replies nobody received that wait to be published again, and their bytes.
#[derive(Default)]
pub(crate) struct Republishing {
    replies: AtomicUsize,
    bytes: AtomicUsize,
}

/// One reply's place among those waiting: given back when dropped.
struct Held {
    waiting: Arc<Republishing>,
    bytes: usize,
}

impl Held {
    /// A place for a reply of `bytes` bytes, if both bounds leave room for it.
    fn take(waiting: &Arc<Republishing>, bytes: usize) -> Option<Self> {
        let replies = waiting.replies.fetch_add(1, Ordering::AcqRel);
        let held = waiting.bytes.fetch_add(bytes, Ordering::AcqRel);
        let this = Self {
            waiting: waiting.clone(),
            bytes,
        };
        (replies < MAX_REPUBLISHING && held.saturating_add(bytes) <= MAX_REPUBLISHING_BYTES)
            .then_some(this)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.waiting.replies.fetch_sub(1, Ordering::AcqRel);
        self.waiting.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Publishes a reply: how many subscribers received it (in a cluster, on the node it was sent
/// to), or `None` if it could not be sent.
async fn publish(transport: &Transport, channel: &str, payload: &Bytes) -> Option<i64> {
    match transport
        .client()
        .publish::<i64, _, _>(channel, payload.clone())
        .await
        .classify()
    {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(%channel, error = %e, "a reply could not be sent; the requester will time out");
            None
        }
    }
}

/// The first response with the body's outcome, as the reason of a dead letter or a retry.
fn reason(reply: &Reply, outcome: Outcome) -> String {
    let responses = reply.responses();
    let first = responses
        .iter()
        .enumerate()
        .find(|(_, r)| r.outcome == outcome);
    match first {
        Some((i, r)) => {
            let error = r
                .result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            if matches!(reply.body, crate::ReplyBody::Batch(_)) {
                format!("batch request {i}: {error}")
            } else {
                error
            }
        }
        None => format!("{outcome:?}"),
    }
}

/// What the listener hands each entry to.
struct RpcHandler {
    server: Server,
    scope: Scope,
    replier: Replier,
    max_deliveries: u64,
    dead_letter_expired_requests: bool,
}

impl kaiju_streams::Handler<Value> for RpcHandler {
    async fn handle(&self, message: Message<Value>) -> Result<(), HandlerError> {
        let (headers, deliveries) = (message.headers, message.deliveries);
        let reply = self.server.call(message.body, &headers, self.scope).await;
        let outcome = reply.outcome();
        // A reply goes out once the outcome is final: not for a failure that will be delivered
        // again, unless this was the last delivery.
        let last = message.deliveries >= self.max_deliveries && outcome != Outcome::Unavailable;
        if !outcome.is_transient() || last {
            self.replier.send(&headers, &reply).await;
        }
        match outcome {
            Outcome::Ok | Outcome::ClientError | Outcome::Aborted => Ok(()),
            // A request/response caller stopped waiting at that deadline, and was told there
            // is no answer: a dead letter would only bury the real ones (a restart after an
            // outage turned every request of the outage into one).
            //
            // Only when nothing else happened to it: its first delivery (an earlier one failed
            // or died, and that is worth a dead letter), every request of it expired (none
            // failed or was refused first), and it names a channel that would be answered
            // (anything else counts as a notification: nobody was told).
            Outcome::Expired
                if !self.dead_letter_expired_requests
                    && deliveries == 1
                    && reply
                        .responses()
                        .iter()
                        .all(|r| r.outcome == Outcome::Expired)
                    && self.replier.channel(&headers).is_some() =>
            {
                Err(HandlerError::discard(reason(&reply, outcome)))
            }
            Outcome::Rejected | Outcome::Expired => {
                Err(HandlerError::reject(reason(&reply, outcome)))
            }
            Outcome::Failed | Outcome::TimedOut => {
                Err(HandlerError::retry(reason(&reply, outcome)))
            }
            // The server is stopping: the entry waits, pending, for the next start (or for
            // another consumer), without counting as a failure.
            Outcome::Unavailable => Err(HandlerError::defer("the rpc server is stopping")),
        }
    }

    /// A batch longer than `max_batch_length` is refused before it is decoded (its length is
    /// in its array header): none of its requests is read.
    fn check_payload(&self, payload: &[u8]) -> Result<(), String> {
        let max = self.server.settings().max_batch_length;
        match crate::request::batch_length(payload) {
            Some(n) if n > max => Err(format!(
                "a batch of {n} requests, at most {max} are accepted (max_batch_length)"
            )),
            _ => Ok(()),
        }
    }

    /// An entry too large to decode: the requester gets one `InvalidRequest` answer, with
    /// the listener's reason, instead of waiting for its timeout.
    async fn refused(&self, headers: Option<Headers>, reason: &str) {
        let Some(headers) = headers else {
            return;
        };
        let parsed = crate::context::Parsed::read(&headers, self.server.limits());
        let error = RpcError::invalid_request(format!("Invalid request: {reason}"));
        let reply = Reply {
            correlation_id: parsed.correlation_id,
            body: ReplyBody::Single(Response::error(Value::Nil, error, Outcome::Rejected)),
        };
        self.replier.send(&headers, &reply).await;
    }
}

/// kaiju's `RedisListener` feeding a [`Server`]: reads `<env>.<app>._stream.<topic>` and calls
/// each entry's methods at the configured scope.
///
/// Every entry ends in exactly one outcome:
///
/// | the entry's requests | the entry |
/// |---|---|
/// | all succeeded, or failed with the method's own client error (`NotFound`, 4xx) | acked (client errors logged and counted in [`Server::stats`]) |
/// | unknown or forbidden method, invalid params, a template that cannot be filled, not a request at all | dead-lettered with the error object as the reason |
/// | a request with a `Reply-To` (of this environment) whose deadline passed before it started, at its first delivery | acked and counted (`discarded` in [`ListenerStats`], `expired` in [`ServerStats`](crate::ServerStats)); dead-lettered with [`RpcListenerOptions::dead_letter_expired_requests`] |
/// | a notification (no `Reply-To`) whose deadline passed before it started, or a request that expired after an earlier delivery failed | dead-lettered (nobody was told it did not run, or why it failed) |
/// | an internal error, a panic, a timeout | delivered again after a backoff, dead-lettered after `max_deliveries` |
///
/// An entry is acked only after its methods finished. A batch is one unit: its worst request
/// decides, so a batch that is delivered again runs all its requests again (make batch methods
/// idempotent, or use `RPC-Batch-Abort-Error`). An entry read while the server is
/// [draining](Server::drain) is not run and stays pending for the next start.
///
/// The server's `max_request_time` (plus a second) is the least `handler_timeout_ms` of the
/// listener: it is raised to that when lower (and `pending_messages_time_ms` with it, when
/// claiming is on), so the server always times a request out first, and answers. Lower
/// `max_request_time` for faster claiming of a crashed consumer's entries.
///
/// ```no_run
/// use std::time::Duration;
/// use kaiju_core::{AppSettings, Lifecycle};
/// use kaiju_rpc::{RequestContext, RpcError, RpcListener, RpcModule, Scope, Server, ServerSettings};
/// use kaiju_streams::ListenerSettings;
///
/// # async fn demo(transport: kaiju_transport::Transport) -> Result<(), Box<dyn std::error::Error>> {
/// let app = AppSettings { env: "prod".into(), name: "billing".into(), ..Default::default() };
/// let mut m = RpcModule::new("invoices");
/// m.method("create", |_, p: serde_json::Value, _ctx: RequestContext| async move { Ok::<_, RpcError>(p) })?;
/// let server = Server::new(&app, ServerSettings::default(), m)?;
/// // kaiju's `scope: SYSTEM`: internal callers reach every method.
/// let mut listener = RpcListener::new(transport, &app, ListenerSettings::default(), Scope::System, server)?;
/// listener.start().await?;
/// // ...
/// listener.stop(Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub struct RpcListener {
    listener: Listener<Value, RpcHandler>,
    server: Server,
}

impl std::fmt::Debug for RpcListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// What an [`RpcListener`] does beyond its [`ListenerSettings`].
#[derive(Debug, Clone, Default)]
pub struct RpcListenerOptions {
    /// Dead-letter a request that has a `Reply-To` (kaiju-rs request/response) when its
    /// deadline passed before it started, as an expired notification is. Default `false`:
    /// such a request is acked without a dead letter and counted (`discarded` in
    /// [`ListenerStats`], `expired` in [`ServerStats`](crate::ServerStats)), because its caller
    /// stopped waiting at that deadline and was told there is no answer; after an outage,
    /// every request of the outage would otherwise become a dead letter. A notification
    /// (no `Reply-To`) is dead-lettered either way: nobody was told that it did not run.
    ///
    /// YAML: the `RedisListener` setting `dead_letter_expired_requests`.
    pub dead_letter_expired_requests: bool,
}

impl RpcListener {
    /// A listener on `app`'s stream of `settings.topic`, calling `server` at `scope`, with the
    /// default [`RpcListenerOptions`].
    pub fn new(
        transport: Transport,
        app: &AppSettings,
        settings: ListenerSettings,
        scope: Scope,
        server: Server,
    ) -> Result<Self, StreamError> {
        Self::with_options(
            transport,
            app,
            settings,
            scope,
            server,
            RpcListenerOptions::default(),
        )
    }

    /// [`new`](Self::new) with `options`.
    pub fn with_options(
        transport: Transport,
        app: &AppSettings,
        settings: ListenerSettings,
        scope: Scope,
        server: Server,
        options: RpcListenerOptions,
    ) -> Result<Self, StreamError> {
        let requested = settings.handler_timeout_ms;
        let settings = Self::settings_for(settings, server.settings());
        if settings.handler_timeout_ms != requested {
            tracing::info!(
                handler_timeout_ms = settings.handler_timeout_ms,
                pending_messages_time_ms = ?settings.pending_messages_time_ms,
                "handler timeout raised above the rpc server's max_request_time"
            );
        }
        let handler = RpcHandler {
            server: server.clone(),
            scope,
            replier: Replier::new(transport.clone(), &app.env),
            max_deliveries: settings.max_deliveries,
            dead_letter_expired_requests: options.dead_letter_expired_requests,
        };
        Ok(Self {
            listener: Listener::new(transport, app, settings, handler)?,
            server,
        })
    }

    /// The listener settings an `RpcListener` runs with in front of a server with
    /// `server`'s settings: the server's time limit must run out first, so that it answers
    /// (and a method within its limit is never cut by the listener and run again), so
    /// `handler_timeout_ms` is raised above `max_request_time`, and `pending_messages_time_ms`
    /// with it ([`ListenerSettings::with_handler_timeout_at_least`]).
    pub fn settings_for(settings: ListenerSettings, server: &ServerSettings) -> ListenerSettings {
        let limit = Duration::from_secs(server.clamped_max_request_time() + 1);
        settings.with_handler_timeout_at_least(limit)
    }

    /// The stream listener (keys, group, consumer).
    pub fn listener(&self) -> &Listener<Value, impl kaiju_streams::Handler<Value>> {
        &self.listener
    }

    /// The listener's counters and stream state.
    pub async fn stats(&self) -> Result<ListenerStats, StreamError> {
        self.listener.stats().await
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }
}

impl Lifecycle for RpcListener {
    fn name(&self) -> &str {
        self.listener.name()
    }

    async fn start(&mut self) -> Result<(), LifecycleError> {
        self.listener.start().await
    }

    /// Stops reading and waits for the running requests (they are acked when they finish),
    /// within `deadline`; unfinished entries stay pending and are delivered again.
    async fn stop(&mut self, deadline: Duration) -> Result<(), LifecycleError> {
        self.listener.stop(deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies waiting to be published again are bounded in number and in bytes (a review
    /// held twenty 6 MiB replies, 124 MiB, for 2.6 s with a count bound alone), and each
    /// place is given back when its task ends.
    #[test]
    fn replies_waiting_to_be_published_again_are_bounded_in_number_and_bytes() {
        let waiting = Arc::<Republishing>::default();
        let small: Vec<Held> = (0..MAX_REPUBLISHING)
            .map(|_| Held::take(&waiting, 10).unwrap())
            .collect();
        assert!(
            Held::take(&waiting, 10).is_none(),
            "one more than the count"
        );
        drop(small);
        let big = Held::take(&waiting, 9 << 20).unwrap();
        assert!(Held::take(&waiting, 9 << 20).is_none(), "over the bytes");
        assert!(Held::take(&waiting, 1 << 20).is_some(), "room left");
        drop(big);
        assert!(Held::take(&waiting, 9 << 20).is_some());
        assert_eq!(waiting.replies.load(Ordering::Acquire), 0);
        assert_eq!(waiting.bytes.load(Ordering::Acquire), 0);
    }
}
