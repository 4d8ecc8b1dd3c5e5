//! `RpcSubscriber`: kaiju's `RedisSubscriber`, the server fed by a pub/sub channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kaiju_core::codec::decoded_size;
use kaiju_core::{AppSettings, Lifecycle, LifecycleError, Namespace, Value};
use kaiju_streams::{DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_ENTRY_BYTES, decode};
use kaiju_transport::fred::interfaces::EventInterface;
use kaiju_transport::fred::types::Message;
use kaiju_transport::{Connection, Transport, events};
use tokio::sync::Semaphore;

use crate::listener::Replier;
use crate::scope::Scope;
use crate::server::Server;
use crate::subscription;

/// Feeds a [`Server`] from `<env>.<app>._sub.<topic>` (kaiju's `RedisSubscriber`): the same
/// envelope as the stream, fire and forget.
///
/// **No delivery guarantee**: a message published while no subscriber is connected (a
/// restart, a reconnect) is gone, and so is one that arrives while the subscriber is more than
/// about a thousand messages behind. Use the stream ([`RpcListener`](crate::RpcListener)) for
/// anything that must run.
///
/// A message over the listener's default `max_entry_bytes` (8 MiB), or that would take over its
/// default `max_decoded_bytes` (16 MiB) once decoded, is dropped undecoded, with a warning.
pub struct RpcSubscriber {
    transport: Transport,
    replier: Replier,
    channel: String,
    scope: Scope,
    server: Server,
    /// The connection and the run's state, while started.
    running: Option<(Connection, Run)>,
    name: String,
}

/// One start-to-stop run: its slots, and whether it was stopped (messages still buffered in
/// the client when `stop` began are dropped, not run).
#[derive(Clone)]
struct Run {
    slots: Arc<Semaphore>,
    stopped: Arc<AtomicBool>,
}

impl std::fmt::Debug for RpcSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcSubscriber")
            .field("channel", &self.channel)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl RpcSubscriber {
    /// A subscriber on `app`'s channel of `topic`, calling `server` at `scope`.
    pub fn new(
        transport: Transport,
        app: &AppSettings,
        topic: &str,
        scope: Scope,
        server: Server,
    ) -> Result<Self, kaiju_core::KeyError> {
        let channel = Namespace::new(&app.env, &app.name)?
            .channel(topic)?
            .into_string();
        Ok(Self {
            name: format!("subscriber {channel}"),
            replier: Replier::new(transport.clone(), &app.env),
            transport,
            channel,
            scope,
            server,
            running: None,
        })
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Lifecycle for RpcSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    /// Subscribes (on a connection of its own, subscribed again after a reconnect).
    async fn start(&mut self) -> Result<(), LifecycleError> {
        if self.running.is_some() {
            return Err(LifecycleError::AlreadyStarted {
                service: self.name.clone(),
            });
        }
        let failed = |e: kaiju_transport::TransportError| LifecycleError::Failed {
            service: self.name.clone(),
            source: Box::new(e),
        };
        let connection = self
            .transport
            .dedicated_connection()
            .await
            .map_err(failed)?;
        let client = connection.client().clone();
        let run = Run {
            slots: Arc::new(Semaphore::new(self.server.settings().max_parallel_tasks)),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let (server, scope, replier, this_run) = (
            self.server.clone(),
            self.scope,
            self.replier.clone(),
            run.clone(),
        );
        events::listen(
            client.message_rx(),
            move |message: Message| {
                let (server, replier, run) = (server.clone(), replier.clone(), this_run.clone());
                async move {
                    // The listener's bounds: a message is never decoded when it is too large, or
                    // would be once decoded.
                    let bounded = |bytes: &[u8]| {
                        bytes.len() <= DEFAULT_MAX_ENTRY_BYTES
                            && decoded_size(bytes, DEFAULT_MAX_DECODED_BYTES).is_ok()
                    };
                    let Some(Ok((body, headers))) = message
                        .value
                        .as_bytes()
                        .filter(|bytes| bounded(bytes))
                        .map(decode::<Value>)
                    else {
                        tracing::warn!(channel = %message.channel, "an unreadable or oversized message was dropped");
                        return;
                    };
                    // Waiting for a slot here stops reading: the messages queue in the
                    // client (and beyond its buffer, are lost: pub/sub has no guarantee).
                    let Ok(slot) = run.slots.clone().acquire_owned().await else {
                        return;
                    };
                    if run.stopped.load(Ordering::Acquire) {
                        return;
                    }
                    tokio::spawn(async move {
                        let reply = server
                            .call_via(body, &headers, scope, crate::Via::PubSub)
                            .await;
                        replier.send(&headers, &reply).await;
                        drop(slot);
                    });
                }
            },
            |count| tracing::warn!(count, "pub/sub messages were missed in a burst"),
        );
        // Subscribed again after every reconnect; messages published meanwhile are lost
        // (pub/sub), so nothing waits on the state.
        subscription::subscribe_and_keep(&client, &self.channel)
            .await
            .map_err(failed)?;
        self.running = Some((connection, run));
        Ok(())
    }

    /// Unsubscribes (closing the connection), then waits for running calls within `deadline`.
    /// No call starts after this returns; messages still buffered are dropped.
    async fn stop(&mut self, deadline: Duration) -> Result<(), LifecycleError> {
        let Some((connection, run)) = self.running.take() else {
            return Ok(());
        };
        run.stopped.store(true, Ordering::Release);
        let _ = connection.close().await;
        let all = u32::try_from(self.server.settings().max_parallel_tasks).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(deadline, run.slots.acquire_many(all)).await;
        run.slots.close();
        match drained {
            Ok(_) => Ok(()),
            Err(_) => Err(LifecycleError::StopTimeout {
                service: self.name.clone(),
                deadline,
            }),
        }
    }
}
