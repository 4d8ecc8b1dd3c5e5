//! `Listener`: a consumer-group reader that never loses an entry.
//!
//! - `run.rs`: the read loop (own pending entries, retries, claims, new entries; pause,
//!   trimming, housekeeping) and the hand-off of each entry to a task of its own.
//! - `entry.rs`: what happens to one entry (decode, handler under a timeout, outcome).
//! - `acks.rs`: acknowledgements, grouped and sent as entries finish.
//! - `retries.rs`: the schedule of failed entries waiting for their next delivery.
//! - `takeover.rs`: taking over the pending entries of consumers that are gone.
//! - `published.rs`: the counters each listener publishes to Redis for `kaiju streams`.
//! - `metrics.rs`: the counters behind `ListenerStats` and the metrics (entries by outcome,
//!   read sizes, and the group's lag and pending entries, sampled every 5 s).
//! - `commands.rs`: every Redis command the listener sends; `reply.rs`: reading the replies.

mod acks;
mod commands;

pub(crate) use commands::scripts;
mod entry;
mod in_flight;
mod metrics;
mod published;
mod reply;
mod retries;
mod run;
mod takeover;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kaiju_core::lifecycle::within;
use kaiju_core::{AppSettings, Lifecycle, LifecycleError, Namespace, Shutdown};
use kaiju_transport::Transport;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::handler::Handler;
use crate::settings::ListenerSettings;
use crate::{Result, StreamError};

use acks::Acks;
use commands::{ConsumerLease, Lease};
use in_flight::InFlight;
pub(crate) use metrics::Counters;
use retries::Retries;
use takeover::Gone;

/// How long a consumer-name lease lasts without renewal; renewed every third of it.
const LEASE: Duration = Duration::from_secs(10);

/// How long a consumer's published counters live without another write (they are written at
/// each lease renewal).
const STATS_TTL: Duration = Duration::from_secs(30);
/// What a listener did, and the state of its stream in Redis.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Entries handled successfully.
    pub processed: u64,
    /// Failed deliveries (an error, a timeout or a panic); each failed delivery counts.
    pub failed: u64,
    /// Of the failed deliveries, those cancelled at `handler_timeout_ms`.
    pub timed_out: u64,
    /// Of the failed deliveries, those whose handler panicked.
    pub panicked: u64,
    /// Failed entries scheduled for another delivery.
    pub retried: u64,
    /// Entries the handler rejected as permanently unprocessable.
    pub rejected: u64,
    /// Entries the handler deferred: left pending for a later delivery.
    pub deferred: u64,
    /// Entries the handler discarded ([`HandlerError::discard`](crate::HandlerError::discard)):
    /// acked without a dead letter (an RPC listener's expired requests).
    pub discarded: u64,
    /// Entries moved to the dead-letter stream (malformed, rejected, or out of deliveries).
    pub dead_lettered: u64,
    /// Entries claimed from other consumers.
    pub claimed: u64,
    /// Entries taken over from consumers of the group that are gone (their consumer-name lease
    /// ran out), whatever `pending_messages_time_ms` says.
    pub recovered: u64,
    /// Pending entries that were deleted from the stream (XDEL, trimming) before they were
    /// handled: acknowledged and counted, since there is nothing left to handle.
    pub lost: u64,
    /// Idle consumers removed from the group.
    pub consumers_removed: u64,
    /// Failed entries waiting in memory for their next delivery now (bounded: beyond
    /// `max_batch_size × max_parallel_batches × 100`, failed entries wait in Redis for the
    /// claim pass instead).
    pub retries_waiting: u64,
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
    /// The lease on the consumer name (one live instance per name).
    pub(crate) lease: Arc<ConsumerLease>,
    pub(crate) settings: ListenerSettings,
    pub(crate) handler: H,
    pub(crate) counters: Counters,
    /// Entries being handled here, waiting here for a retry, or for their ack: a read or claim
    /// must not start them a second time.
    pub(crate) in_flight: InFlight,
    /// Whether this instance holds its consumer name (it stops reading while it does not).
    pub(crate) lease_held: AtomicBool,
    /// Set when the consumer name was lost and regained: its pending entries are read again.
    pub(crate) regained_name: AtomicBool,
    pub(crate) retries: Retries,
    pub(crate) acks: Acks,
    /// The group's consumers that are gone (their name lease ran out).
    pub(crate) gone: Gone,
    _body: PhantomData<fn() -> B>,
}

/// Reads a kaiju stream with a consumer group and hands each entry to a [`Handler`].
///
/// - An entry is acknowledged only after its handler returned `Ok`, or after it was moved to the
///   dead-letter stream. A crash in between means redelivery, never loss.
/// - Each entry runs in a task of its own, under `handler_timeout_ms`; it is acknowledged as
///   soon as it finishes. A panic or a timeout is a failed delivery like an `Err`.
/// - The group is created (at `start_id`, default `0`) before the first read; a group or stream
///   deleted at run time is re-created.
/// - Entries that cannot be read as `[body, headers]` of type `B`, and entries the handler
///   [rejects](crate::HandlerError::reject), go to the dead-letter stream
///   `<env>.<app>._stream._dead.<topic>` with the reason. Failed entries are retried with
///   backoff and dead-lettered after `max_deliveries`.
/// - One entry's cost is bounded: a payload over `max_entry_bytes`, or one that would take over
///   `max_decoded_bytes` once decoded (measured before decoding), is dead-lettered (kind
///   `too_large`) without being decoded, after [`Handler::refused`] heard of it.
/// - Entries another consumer left pending for `pending_messages_time_ms` are claimed.
/// - Reads block on a connection of their own; Redis restarts and failovers are ridden out.
///
/// ```no_run
/// use std::time::Duration;
/// use kaiju_core::{AppSettings, Lifecycle};
/// use kaiju_streams::{HandlerError, Listener, ListenerSettings, Message};
///
/// # async fn demo(transport: kaiju_transport::Transport) -> Result<(), Box<dyn std::error::Error>> {
/// type Body = (String, Option<std::collections::BTreeMap<String, i64>>);
/// let app = AppSettings { env: "prod".into(), name: "billing".into(), ..Default::default() };
/// let mut listener = Listener::new(transport, &app, ListenerSettings::default(), |m: Message<Body>| async move {
///     println!("{} called with {:?}", m.body.0, m.body.1);
///     Ok::<_, HandlerError>(())
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
    /// [`start`](Lifecycle::start).
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
        let group = settings
            .group_id
            .clone()
            .unwrap_or_else(|| app.name.clone());
        let consumer = settings
            .consumer_id
            .clone()
            .unwrap_or_else(|| app.id.to_string());
        let lease = Arc::new(ConsumerLease::new(
            transport.clone(),
            (
                own.stream_consumers(&settings.topic)?.into_string(),
                own.stream_stats(&settings.topic)?.into_string(),
            ),
            &group,
            &consumer,
        ));
        let counters = Counters::new(&stream, &group);
        let shared = Arc::new(Shared {
            transport,
            dead: own.dead_letter_stream(&settings.topic)?.into_string(),
            pause_key: own.stream_lock(&settings.topic)?.into_string(),
            group,
            consumer,
            lease,
            stream,
            retries: Retries::default(),
            acks: Acks::new(settings.max_batch_size),
            gone: Gone::default(),
            settings,
            handler,
            counters,
            in_flight: InFlight::default(),
            lease_held: AtomicBool::new(true),
            regained_name: AtomicBool::new(false),
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
        let state = self.shared.state().await?;
        let c = &self.shared.counters;
        let get = metrics::Stat::get;
        Ok(ListenerStats {
            processed: get(&c.processed),
            failed: get(&c.failed),
            timed_out: get(&c.timed_out),
            panicked: get(&c.panicked),
            retried: get(&c.retried),
            rejected: get(&c.rejected),
            deferred: get(&c.deferred),
            discarded: get(&c.discarded),
            dead_lettered: get(&c.dead_lettered),
            claimed: get(&c.claimed),
            recovered: get(&c.recovered),
            lost: get(&c.lost),
            consumers_removed: get(&c.consumers_removed),
            retries_waiting: self.shared.retries.len() as u64,
            stream_length: state.length,
            lag: state.lag,
            pending: state.pending,
            oldest_pending_age: state.oldest_pending_idle,
        })
    }
}

impl ConsumerLease {
    /// Takes the consumer-name lease. The lease of an instance that is gone (a crash) runs out
    /// within [`LEASE`] and is then taken; a lease that is renewed meanwhile belongs to a live
    /// instance, and the start fails with [`StreamError::ConsumerInUse`] (within about a third
    /// of [`LEASE`], the renewal period).
    ///
    /// Returns the group's consumers that are gone.
    async fn take(&self) -> Result<Vec<String>> {
        let mut expiry: Option<tokio::time::Instant> = None;
        loop {
            match self.run(LEASE, false).await? {
                Lease::Held(gone) => return Ok(gone),
                Lease::Taken(left) => {
                    let now = tokio::time::Instant::now();
                    // Renewed since the last look (with room for clock jitter): a live holder.
                    if expiry.is_some_and(|seen| now + left > seen + Duration::from_millis(250)) {
                        return Err(StreamError::ConsumerInUse {
                            consumer: self.consumer().to_owned(),
                        });
                    }
                    expiry.get_or_insert(now + left);
                    tracing::info!(consumer = %self.consumer(), ?left, "the consumer name is held by another instance; waiting to see whether it is alive");
                    tokio::time::sleep(left.min(LEASE / 3 + Duration::from_millis(500))).await;
                }
            }
        }
    }
}

impl<B, H> Lifecycle for Listener<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    fn name(&self) -> &str {
        &self.name
    }

    /// Creates the group (if needed), takes the consumer name and opens the blocking
    /// connection, then starts reading.
    async fn start(&mut self) -> std::result::Result<(), LifecycleError> {
        // A run whose stop was cancelled may still be finishing: it must end first (call
        // `stop` again), or two runs would share this instance.
        if self.task.as_ref().is_some_and(|task| !task.is_finished()) {
            return Err(LifecycleError::AlreadyStarted {
                service: self.name.clone(),
            });
        }
        self.task = None;
        let failed = |e: StreamError| LifecycleError::Failed {
            service: self.name.clone(),
            source: Box::new(e),
        };
        self.shared.ensure_group().await.map_err(failed)?;
        let gone = self.shared.lease.take().await.map_err(failed)?;
        self.shared.gone.seen(gone);
        let block = self.shared.settings.block();
        let reader = match self.shared.transport.blocking_connection(block).await {
            Ok(reader) => reader,
            Err(e) => {
                let _ = self.shared.lease.run(LEASE, true).await;
                return Err(failed(e.into()));
            }
        };
        self.shutdown = Shutdown::new();
        let shared = self.shared.clone();
        let shutdown = self.shutdown.clone();
        // The counters are published at start (a row at once), at each lease renewal, and
        // once more when the run ends (its final counts, until the row expires).
        let _ = self
            .shared
            .lease
            .publish(&self.shared.counters, STATS_TTL)
            .await;
        self.task = Some(tokio::spawn(async move {
            shared.clone().run(reader, shutdown).await;
            let _ = shared.lease.publish(&shared.counters, STATS_TTL).await;
            let _ = shared.lease.run(LEASE, true).await;
        }));
        tracing::info!(stream = %self.shared.stream, group = %self.shared.group, consumer = %self.shared.consumer, "listener started");
        Ok(())
    }

    /// Stops reading, finishes and acks what is in flight, and returns within `deadline`.
    /// Entries not finished by then stay pending and are delivered again.
    ///
    /// Cancel-safe: if this future is dropped, the run keeps stopping in the background and
    /// stays attached to the listener (a later `stop` waits for it; dropping the listener aborts
    /// it).
    async fn stop(&mut self, deadline: Duration) -> std::result::Result<(), LifecycleError> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        self.shutdown.trigger();
        let result = within(&self.name, deadline, task).await;
        if let Some(task) = self.task.take()
            && result.is_err()
        {
            task.abort();
            self.shared.lease.release_in_background();
        }
        result.map(|_| ())
    }
}

impl ConsumerLease {
    /// After an abort: give the consumer name back without waiting (best effort; the lease runs
    /// out by itself otherwise). The read connection closes when the aborted task drops it.
    fn release_in_background(self: &Arc<Self>) {
        let lease = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = lease.run(LEASE, true).await;
            });
        }
    }
}

impl<B, H> Drop for Listener<B, H> {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.abort();
            self.shared.lease.release_in_background();
        }
    }
}
