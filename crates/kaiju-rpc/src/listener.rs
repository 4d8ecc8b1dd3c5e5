//! `RpcListener`: the server behind a stream listener, and responses to reply addresses.

use std::time::Duration;

use bytes::Bytes;
use kaiju_core::{AppSettings, Service, ServiceError, Value, is_reply_channel};
use kaiju_streams::{
    HandlerError, HeaderValue, Headers, Listener, ListenerSettings, ListenerStats, Message,
    StreamError, encode,
};
use kaiju_transport::Transport;
use kaiju_transport::fred::interfaces::PubsubInterface;

use crate::context::headers;
use crate::request::{Outcome, Reply};
use crate::scope::Scope;
use crate::server::Server;

/// Sends a reply to the request's `Reply-To` channel, if it has one (kaiju-rs
/// request/response). A reply that cannot be sent is logged: the requester times out.
pub(crate) async fn send_reply(transport: &Transport, request: &Headers, reply: &Reply) {
    let Some(HeaderValue::Str(channel)) = request.get(headers::REPLY_TO) else {
        return;
    };
    if !is_reply_channel(channel) {
        tracing::warn!(%channel, "a request named a reply channel that is not one; no reply sent");
        return;
    }
    let mut out = Headers::new();
    out.insert(headers::CORRELATION_ID, reply.correlation_id.as_str());
    if let Some(id) = request.get(headers::REQUEST_ID) {
        out.insert(headers::REQUEST_ID, id.clone());
    }
    let payload = match encode(&reply.to_value(), &out) {
        Ok(payload) => Bytes::from(payload),
        Err(e) => {
            tracing::error!(error = %e, "a reply could not be encoded");
            return;
        }
    };
    // A resent PUBLISH after a reconnect at worst delivers a reply twice; the requester takes
    // the first and ignores the other.
    let sent: Result<i64, _> = transport.client().publish(channel.as_str(), payload).await;
    if let Err(e) = sent {
        tracing::warn!(%channel, error = %e, "a reply could not be sent; the requester will time out");
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
            if responses.len() > 1 || matches!(reply.body, crate::ReplyBody::Batch(_)) {
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
    transport: Transport,
    max_deliveries: u64,
}

impl kaiju_streams::Handler<Value> for RpcHandler {
    async fn handle(&self, message: Message<Value>) -> Result<(), HandlerError> {
        let headers = message.headers;
        let reply = self.server.call(message.body, &headers, self.scope).await;
        let outcome = reply.outcome();
        // A reply goes out once the outcome is final: not for a failure that will be delivered
        // again, unless this was the last delivery.
        if !outcome.is_transient() || message.deliveries >= self.max_deliveries {
            send_reply(&self.transport, &headers, &reply).await;
        }
        match outcome {
            Outcome::Ok | Outcome::ClientError | Outcome::Aborted => Ok(()),
            Outcome::Rejected => Err(HandlerError::reject(reason(&reply, outcome))),
            Outcome::Failed | Outcome::TimedOut => {
                Err(HandlerError::retry(reason(&reply, outcome)))
            }
        }
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
/// | unknown or forbidden method, invalid params, a template that cannot be filled, an expired deadline, not a request at all | dead-lettered with the error object as the reason |
/// | an internal error, a panic, a timeout | delivered again after a backoff, dead-lettered after `max_deliveries` |
///
/// An entry is acked only after its methods finished. A batch is one unit: its worst request
/// decides, so a batch that is delivered again runs all its requests again (make batch methods
/// idempotent, or use `RPC-Batch-Abort-Error`).
///
/// ```no_run
/// use std::time::Duration;
/// use kaiju_core::{AppSettings, Service};
/// use kaiju_rpc::{RequestContext, RpcError, RpcListener, RpcModule, Scope, Server, ServerSettings};
/// use kaiju_streams::ListenerSettings;
///
/// # async fn demo(transport: kaiju_transport::Transport) -> Result<(), Box<dyn std::error::Error>> {
/// let app = AppSettings { env: "prod".into(), name: "billing".into(), ..Default::default() };
/// let mut m = RpcModule::new("invoices");
/// m.method("create", |p: serde_json::Value, _ctx: RequestContext| async move { Ok::<_, RpcError>(p) })?;
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

impl RpcListener {
    /// A listener on `app`'s stream of `settings.topic`, calling `server` at `scope`.
    pub fn new(
        transport: Transport,
        app: &AppSettings,
        settings: ListenerSettings,
        scope: Scope,
        server: Server,
    ) -> Result<Self, StreamError> {
        let handler = RpcHandler {
            server: server.clone(),
            scope,
            transport: transport.clone(),
            max_deliveries: settings.max_deliveries,
        };
        Ok(Self {
            listener: Listener::new(transport, app, settings, handler)?,
            server,
        })
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

impl Service for RpcListener {
    fn name(&self) -> &str {
        self.listener.name()
    }

    async fn start(&mut self) -> Result<(), ServiceError> {
        self.listener.start().await
    }

    /// Stops reading and waits for the running requests (they are acked when they finish),
    /// within `deadline`; unfinished entries stay pending and are delivered again.
    async fn stop(&mut self, deadline: Duration) -> Result<(), ServiceError> {
        self.listener.stop(deadline).await
    }
}
