//! `Listener`: a consumer-group reader that never loses an entry.

mod commands;
mod run;

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kaiju_core::lifecycle::within;
use kaiju_core::{AppSettings, Namespace, Service, ServiceError, Shutdown};
use kaiju_transport::Transport;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::error::FredExt;
use crate::handler::Handler;
use crate::settings::ListenerSettings;
use crate::{Result, StreamError};

/// Counters of one listener since it was created.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) processed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) claimed: AtomicU64,
}

/// What a listener did, and the state of its stream in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Entries handled successfully.
    pub processed: u64,
    /// Handler failures (each failed delivery counts).
    pub failed: u64,
    /// Failed entries scheduled for another delivery.
    pub retried: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries claimed from other consumers.
    pub claimed: u64,
    /// `XLEN` of the stream.
    pub stream_length: u64,
    /// Entries not yet delivered to this group (`lag` of XINFO GROUPS; `None` if Redis does not
    /// know it).
    pub lag: Option<u64>,
    /// Entries delivered to this group and not acknowledged.
    pub pending: u64,
    /// How long the oldest pending entry has waited since its last delivery.
    pub oldest_pending_age: Option<Duration>,
}

pub(crate) struct Shared<B, H> {
    pub(crate) transport: Transport,
    pub(crate) stream: String,
    pub(crate) dead: String,
    pub(crate) pause_key: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) settings: ListenerSettings,
    pub(crate) handler: Arc<H>,
    pub(crate) counters: Counters,
    pub(crate) in_flight: Mutex<HashSet<String>>,
    pub(crate) retries: Mutex<Vec<(Instant, String)>>,
    /// Whether the last read of new entries filled a whole batch.
    pub(crate) last_read_full: std::sync::atomic::AtomicBool,
    _body: PhantomData<fn() -> B>,
}

/// Reads a kaiju stream with a consumer group and hands each entry to a [`Handler`].
///
/// - An entry is acknowledged only after its handler returned `Ok`, or after it was moved to the
///   dead-letter stream. A crash in between means redelivery, never loss.
/// - The group is created (at `start_id`, default `0`) before the first read; a group or stream
///   deleted at run time is re-created.
/// - Malformed entries (no `_` field, not msgpack, not `[body, headers]` of type `B`) go to the
///   dead-letter stream `<env>.<app>._stream._dead.<topic>` with the reason and are acked; the
///   rest of their batch runs normally. Failing handlers are retried with backoff and
///   dead-lettered after `max_deliveries`.
/// - Reads block on a connection of their own; Redis restarts and failovers are ridden out.
///
/// ```no_run
/// use std::time::Duration;
/// use kaiju_core::{AppSettings, Service};
/// use kaiju_streams::{Listener, ListenerSettings, Message};
///
/// # async fn demo(transport: kaiju_transport::Transport) -> Result<(), Box<dyn std::error::Error>> {
/// type Body = (String, Option<std::collections::BTreeMap<String, i64>>);
/// let app = AppSettings { env: "prod".into(), name: "billing".into(), ..Default::default() };
/// let mut listener = Listener::new(transport, &app, ListenerSettings::default(), |m: Message<Body>| async move {
///     println!("{} called with {:?}", m.body.0, m.body.1);
///     Ok(())
/// })?;
/// listener.start().await?;
/// // ...
/// listener.stop(Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub struct Listener<B, H> {
    shared: Arc<Shared<B, H>>,
    shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
    name: String,
}

impl<B, H> std::fmt::Debug for Listener<B, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("stream", &self.shared.stream)
            .field("group", &self.shared.group)
            .field("consumer", &self.shared.consumer)
            .field("running", &self.task.is_some())
            .finish()
    }
}

impl<B, H> Listener<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// A listener for `app`'s stream of `settings.topic`. Nothing is read before
    /// [`start`](Service::start).
    pub fn new(
        transport: Transport,
        app: &AppSettings,
        settings: ListenerSettings,
        handler: H,
    ) -> Result<Self> {
        settings.validate()?;
        let namespace = if settings.shared {
            Namespace::shared(&app.env)?
        } else {
            app.namespace()?
        };
        let own = app.namespace()?;
        let stream = namespace.stream(&settings.topic)?.into_string();
        let shared = Arc::new(Shared {
            transport,
            dead: own.dead_letter_stream(&settings.topic)?.into_string(),
            pause_key: own.stream_lock(&settings.topic)?.into_string(),
            group: settings
                .group_id
                .clone()
                .unwrap_or_else(|| app.name.clone()),
            consumer: settings
                .consumer_id
                .clone()
                .unwrap_or_else(|| app.id.to_string()),
            stream,
            settings,
            handler: Arc::new(handler),
            counters: Counters::default(),
            in_flight: Mutex::default(),
            retries: Mutex::default(),
            last_read_full: std::sync::atomic::AtomicBool::new(false),
            _body: PhantomData,
        });
        let name = format!("listener {}", shared.stream);
        Ok(Self {
            shared,
            shutdown: Shutdown::new(),
            task: None,
            name,
        })
    }
}

impl<B, H> Listener<B, H> {
    /// The stream key.
    pub fn stream_key(&self) -> &str {
        &self.shared.stream
    }

    /// The dead-letter stream key.
    pub fn dead_letter_key(&self) -> &str {
        &self.shared.dead
    }

    /// The pause key: while it exists, every listener of this topic stops reading.
    pub fn pause_key(&self) -> &str {
        &self.shared.pause_key
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// This consumer's name.
    pub fn consumer(&self) -> &str {
        &self.shared.consumer
    }

    /// Counters, plus stream length, lag, pending count and oldest pending age from Redis.
    pub async fn stats(&self) -> Result<ListenerStats> {
        let s = &self.shared;
        let c = &s.counters;
        let pool = s.transport.pool();
        let stream_length: u64 = pool.xlen(s.stream.as_str()).await.or_stream()?;
        let groups: Vec<HashMap<String, Value>> =
            pool.xinfo_groups(s.stream.as_str()).await.or_stream()?;
        let mine = groups.into_iter().find(|g| {
            g.get("name").and_then(Value::as_string).as_deref() == Some(s.group.as_str())
        });
        let lag = mine
            .as_ref()
            .and_then(|g| g.get("lag"))
            .and_then(Value::as_u64);
        let pending = mine
            .as_ref()
            .and_then(|g| g.get("pending"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let oldest: Vec<(String, String, u64, u64)> = if pending > 0 {
            pool.xpending(s.stream.as_str(), s.group.as_str(), ("-", "+", 1))
                .await
                .or_stream()?
        } else {
            Vec::new()
        };
        Ok(ListenerStats {
            processed: c.processed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            claimed: c.claimed.load(Ordering::Relaxed),
            stream_length,
            lag,
            pending,
            oldest_pending_age: oldest
                .first()
                .map(|(_, _, idle, _)| Duration::from_millis(*idle)),
        })
    }
}

impl<B, H> Service for Listener<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    fn name(&self) -> &str {
        &self.name
    }

    /// Creates the group (if needed) and opens the blocking connection, then starts reading.
    async fn start(&mut self) -> std::result::Result<(), ServiceError> {
        if self.task.is_some() {
            return Err(ServiceError::AlreadyStarted {
                service: self.name.clone(),
            });
        }
        let failed = |e: StreamError| ServiceError::Failed {
            service: self.name.clone(),
            source: Box::new(e),
        };
        self.shared.ensure_group().await.map_err(failed)?;
        let block = self.shared.settings.block();
        let reader = self
            .shared
            .transport
            .blocking_connection(block)
            .await
            .map_err(|e| failed(e.into()))?;
        self.shutdown = Shutdown::new();
        let shared = self.shared.clone();
        let shutdown = self.shutdown.clone();
        self.task = Some(tokio::spawn(async move {
            shared.run(reader.clone(), shutdown).await;
            let _ = reader.close().await;
        }));
        tracing::info!(stream = %self.shared.stream, group = %self.shared.group, consumer = %self.shared.consumer, "listener started");
        Ok(())
    }

    /// Stops reading, finishes and acks what is in flight, and returns within `deadline`.
    /// Entries not finished by then stay pending and are delivered again.
    async fn stop(&mut self, deadline: Duration) -> std::result::Result<(), ServiceError> {
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        self.shutdown.trigger();
        let result = within(&self.name, deadline, &mut task).await;
        if result.is_err() {
            task.abort();
        }
        result.map(|_| ())
    }
}

impl<B, H> Drop for Listener<B, H> {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
