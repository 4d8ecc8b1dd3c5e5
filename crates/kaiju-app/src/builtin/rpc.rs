//! `JSONRPCServer`, `RedisListener` and `RedisSubscriber`: the RPC server and what feeds it.

use std::sync::OnceLock;
use std::time::Duration;

use kaiju_core::Lifecycle as _;
use kaiju_rpc::{RpcListener, RpcListenerOptions, RpcSubscriber, Scope, Server, ServerSettings};
use kaiju_streams::{ListenerSettings, ListenerStats};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::TransportService;
use crate::error::{AppError, BoxError, SettingsError};
use crate::service::{Build, Context, Dependency, Service, ServiceClass};

/// kaiju's `JSONRPCServer`: in `post_init` it collects the RPC methods of every service
/// ([`Service::rpc_module`]) into one [`Server`]; in `close` it drains running requests.
///
/// Settings are [`ServerSettings`]; kaiju's `scheduler`, `session_service`, `auth_service`
/// and `use_annotation_parser` are accepted and have no effect.
#[derive(Debug)]
pub struct RpcServerService {
    settings: ServerSettings,
    server: OnceLock<Server>,
}

impl RpcServerService {
    /// The settings, as written (the server clamps them: [`ServerSettings::clamped`]).
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// The server (after `post_init`).
    pub fn server(&self) -> Result<Server, BoxError> {
        super::ready(&self.server, "the RPC server", "post_init")
    }
}

/// kaiju's `JSONRPCServer` settings that are not [`ServerSettings`].
#[derive(Debug, Deserialize)]
struct ServerEntry {
    // kaiju's, without effect here (logged when set).
    #[serde(default)]
    scheduler: Dependency,
    #[serde(default)]
    session_service: Dependency,
    #[serde(default)]
    auth_service: Dependency,
    #[serde(default)]
    use_annotation_parser: Option<bool>,
    /// [`ServerSettings`], read next.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl ServiceClass for RpcServerService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let entry: ServerEntry = b.settings()?;
        super::no_effect(
            b,
            &[
                ("scheduler", entry.scheduler != Dependency::Any),
                ("session_service", entry.session_service != Dependency::Any),
                ("auth_service", entry.auth_service != Dependency::Any),
                (
                    "use_annotation_parser",
                    entry.use_annotation_parser == Some(true),
                ),
            ],
        );
        let rest = super::null_is_default(entry.rest, &["blacklist_routes", "max_parallel_tasks"]);
        Ok(Self {
            settings: b.parse(rest)?,
            server: OnceLock::new(),
        })
    }
}

impl Service for RpcServerService {
    async fn post_init(&self, cx: &Context) -> Result<(), BoxError> {
        let server = Server::new(cx.app(), self.settings.clone(), cx.rpc_methods()?)?;
        tracing::info!(methods = server.methods().count(), "RPC server ready");
        let _ = self.server.set(server);
        Ok(())
    }

    async fn close(&self, deadline: Duration) -> Result<(), BoxError> {
        if let Some(server) = self.server.get()
            && !server.drain(deadline).await
        {
            return Err(format!("requests were still running after {deadline:?}").into());
        }
        Ok(())
    }
}

/// The settings a listener or subscriber takes besides [`ListenerSettings`].
#[derive(Debug, Deserialize)]
struct Feed {
    /// The caller scope of every request read (`SYSTEM`, `ADMIN`, `USER`, `GUEST`).
    #[serde(default = "guest")]
    scope: String,
    #[serde(default)]
    transport: Dependency,
    #[serde(default)]
    rpc_service: Dependency,
    // kaiju's, without effect here:
    #[serde(default)]
    locks_service: Dependency,
    #[serde(default)]
    scheduler: Dependency,
    #[serde(default)]
    session_service: Dependency,
    #[serde(default)]
    authentication_service: Dependency,
    #[serde(default)]
    use_sessions: bool,
    /// kaiju-rs: dead-letter requests with a `Reply-To` whose deadline passed before they
    /// started ([`RpcListenerOptions`]); a listener only.
    #[serde(default)]
    dead_letter_expired_requests: bool,
    /// The listener's own settings ([`ListenerSettings`]), read next.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Feed {
    /// The services this feed needs exist (no I/O): the transport and the RPC server.
    fn check(&self, cx: &Context) -> Result<std::sync::Arc<RpcServerService>, BoxError> {
        cx.require::<TransportService>(&self.transport)?;
        Ok(cx.require::<RpcServerService>(&self.rpc_service)?)
    }

    /// The transport and the RPC server this feed uses (after the server's `post_init`).
    fn parts(&self, cx: &Context) -> Result<(kaiju_transport::Transport, Server), BoxError> {
        let transport = TransportService::discover(cx, &self.transport)?;
        let server = cx
            .require::<RpcServerService>(&self.rpc_service)?
            .server()?;
        Ok((transport, server))
    }
}

/// Stops the running component in `slot`, if any, within `deadline`.
async fn stop_taken<S: kaiju_core::Lifecycle>(
    slot: &Mutex<Option<S>>,
    deadline: Duration,
) -> Result<(), BoxError> {
    let running = slot.lock().await.take();
    if let Some(mut s) = running {
        s.stop(deadline).await?;
    }
    Ok(())
}

fn guest() -> String {
    "GUEST".into()
}

/// kaiju writes `null` for "the default" of these listener settings (which have no null).
const NULL_IS_DEFAULT: [&str; 4] = [
    "max_parallel_batches",
    "max_batch_size",
    "max_wait_time_ms",
    "topic",
];

/// Reads the feed settings and the listener settings of `b`.
fn feed(b: &Build<'_>) -> Result<(Feed, Scope, ListenerSettings), AppError> {
    let mut feed: Feed = b.settings()?;
    let scope: Scope = feed
        .scope
        .parse()
        .map_err(|e: kaiju_rpc::UnknownScope| b.invalid("scope", e.to_string()))?;
    if feed.use_sessions {
        return Err(b.invalid(
            "use_sessions",
            "sessions are not part of kaiju-rs yet; requests run at `scope`",
        ));
    }
    super::no_effect(
        b,
        &[
            ("locks_service", feed.locks_service != Dependency::Any),
            ("scheduler", feed.scheduler != Dependency::Any),
            ("session_service", feed.session_service != Dependency::Any),
            (
                "authentication_service",
                feed.authentication_service != Dependency::Any,
            ),
        ],
    );
    let rest = super::null_is_default(std::mem::take(&mut feed.rest), &NULL_IS_DEFAULT);
    let settings: ListenerSettings = b.parse(rest)?;
    settings.validate().map_err(|e| b.config_error(e))?;
    kaiju_core::Namespace::new(&b.app().env, &b.app().name)
        .and_then(|ns| ns.stream(&settings.topic))
        .map_err(|e| b.invalid("topic", e.to_string()))?;
    Ok((feed, scope, settings))
}

/// kaiju's `RedisListener`: reads `<env>.<app>._stream.<topic>` and calls the RPC server at
/// `scope`. Starts reading in `start`, after every route is registered; `close` stops reading
/// and finishes the requests in flight within the deadline (unfinished ones stay pending and
/// are delivered again).
///
/// Settings are [`ListenerSettings`] plus `scope` (default `GUEST`, as kaiju), `transport` and
/// `rpc_service`; kaiju's `locks_service`, `scheduler`, `session_service` and
/// `authentication_service` are accepted and have no effect.
#[derive(Debug)]
pub struct ListenerService {
    name: String,
    feed: Feed,
    scope: Scope,
    settings: ListenerSettings,
    /// `pending_messages_time_ms` as written, if it was: the place of an error about it.
    claim_written: Option<SettingsError>,
    listener: Mutex<Option<RpcListener>>,
}

impl ListenerService {
    /// The listener's counters and its stream's state, while it runs.
    pub async fn stats(&self) -> Option<Result<ListenerStats, kaiju_streams::StreamError>> {
        let guard = self.listener.lock().await;
        match guard.as_ref() {
            Some(l) => Some(l.stats().await),
            None => None,
        }
    }

    /// The scope requests run at.
    pub fn scope(&self) -> Scope {
        self.scope
    }
}

impl ServiceClass for ListenerService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let (feed, scope, settings) = feed(b)?;
        let written = b
            .raw_settings()
            .get("pending_messages_time_ms")
            .is_some_and(|v| !matches!(v.value, crate::config::Value::Null));
        Ok(Self {
            name: b.name().to_owned(),
            feed,
            scope,
            settings,
            claim_written: written.then(|| b.setting_error("pending_messages_time_ms", "")),
            listener: Mutex::new(None),
        })
    }
}

impl Service for ListenerService {
    /// The listener runs with its handler timeout raised above the server's
    /// `max_request_time`; a `pending_messages_time_ms` written in the config must still be
    /// above that timeout plus the longest backoff, or entries a live consumer works on would
    /// be claimed by others. It is checked here, with the final values, not against the
    /// listener's own default timeout.
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        let server = self.feed.check(cx)?;
        let running = RpcListener::settings_for(self.settings.clone(), server.settings());
        if let Some(error) = &self.claim_written
            && running.pending_messages_time_ms != self.settings.pending_messages_time_ms
        {
            // The listener would raise it to this; a value written in the config is not
            // changed behind the user's back, it is refused with the number.
            let needed = running.pending_messages_time_ms.unwrap_or_default();
            let mut error = error.clone();
            error.message = format!(
                "must be at least {needed} ms: the RPC server's max_request_time ({} s) raises \
                 this listener's handler timeout to {} ms, and claiming must wait for it plus \
                 the longest retry backoff and a second; raise it, set null to disable \
                 claiming, or lower the server's max_request_time",
                server.settings().clamped_max_request_time(),
                running.handler_timeout_ms,
            );
            return Err(Box::new(error));
        }
        Ok(())
    }

    async fn start(&self, cx: &Context) -> Result<(), BoxError> {
        let (transport, server) = self.feed.parts(cx)?;
        let options = RpcListenerOptions {
            dead_letter_expired_requests: self.feed.dead_letter_expired_requests,
        };
        let mut listener = RpcListener::with_options(
            transport,
            cx.app(),
            self.settings.clone(),
            self.scope,
            server,
            options,
        )?;
        listener.start().await?;
        tracing::info!(service = %self.name, stream = listener.listener().stream_key(), "listening");
        *self.listener.lock().await = Some(listener);
        Ok(())
    }

    async fn close(&self, deadline: Duration) -> Result<(), BoxError> {
        stop_taken(&self.listener, deadline).await
    }
}

/// kaiju's `RedisSubscriber`: the RPC server fed from the pub/sub channel
/// `<env>.<app>._sub.<topic>`, with no delivery guarantee (see [`RpcSubscriber`]). Takes the
/// listener's settings; only `topic`, `scope`, `transport` and `rpc_service` matter.
#[derive(Debug)]
pub struct SubscriberService {
    feed: Feed,
    scope: Scope,
    topic: String,
    subscriber: Mutex<Option<RpcSubscriber>>,
}

impl ServiceClass for SubscriberService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let (feed, scope, settings) = feed(b)?;
        Ok(Self {
            feed,
            scope,
            topic: settings.topic,
            subscriber: Mutex::new(None),
        })
    }
}

impl Service for SubscriberService {
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        self.feed.check(cx).map(drop)
    }

    async fn start(&self, cx: &Context) -> Result<(), BoxError> {
        let (transport, server) = self.feed.parts(cx)?;
        let mut subscriber =
            RpcSubscriber::new(transport, cx.app(), &self.topic, self.scope, server)?;
        subscriber.start().await?;
        *self.subscriber.lock().await = Some(subscriber);
        Ok(())
    }

    async fn close(&self, deadline: Duration) -> Result<(), BoxError> {
        stop_taken(&self.subscriber, deadline).await
    }
}
