//! An in-process near cache in front of Redis, kept fresh by Redis client tracking.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kaiju_core::key_slot;
use kaiju_transport::fred::clients::Client;
use kaiju_transport::fred::interfaces::{
    ClientInterface, ClientLike, EventInterface, KeysInterface, TrackingInterface,
};
use kaiju_transport::fred::types::client::Invalidation;
use kaiju_transport::fred::types::{ClusterHash, CustomCommand, Value};
use kaiju_transport::{Classify, Connection, TransportError, events};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::reply::{all, bytes, decode_bytes};
use crate::{Cache, CacheError, Result};

/// Options of a [`NearCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheOptions {
    /// Most keys kept in process; the oldest are dropped first. Default: `10_000`.
    pub capacity: usize,
    /// How long a local copy is trusted at most, even without an invalidation. Bounds staleness
    /// if an invalidation is ever missed. Default: 60 s.
    pub ttl: Duration,
}

impl Default for NearCacheOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            ttl: Duration::from_secs(60),
        }
    }
}

/// What a reconnect does: invalidations may have been missed while disconnected, and tracking
/// is per connection, so drop everything and track again before keeping new reads.
#[derive(Clone)]
struct Retrack {
    local: Arc<Mutex<Local>>,
    client: Client,
    ready: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
}

impl Retrack {
    /// After a disconnect: invalidations may have been missed and tracking is off until it is
    /// switched on again, so drop every local copy and keep no read that started before.
    fn forget_all(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        lock(&self.local).clear();
    }

    async fn run(self) {
        self.forget_all();
        match self
            .client
            .start_tracking(None, false, false, false, false)
            .await
        {
            Ok(()) => self.ready.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::warn!(error = %e, "could not re-enable client tracking; the near cache passes reads through")
            }
        }
    }
}

/// Whether a `CLIENT TRACKINGINFO` reply says tracking is on (its `flags` include `on`).
fn tracking_on(info: &Value) -> bool {
    let flags = match info {
        Value::Map(map) => map
            .iter()
            .find(|(k, _)| k.as_str() == Some("flags"))
            .map(|(_, v)| v.clone()),
        Value::Array(items) => items
            .iter()
            .position(|v| v.as_str().as_deref() == Some("flags"))
            .and_then(|i| items.get(i + 1).cloned()),
        _ => None,
    };
    flags.is_some_and(|flags| {
        flags
            .into_array()
            .iter()
            .any(|f| f.as_str().as_deref() == Some("on"))
    })
}

/// Counters of a [`NearCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NearCacheStats {
    /// Reads answered from process memory (no round trip).
    pub hits: u64,
    /// Reads that went to Redis.
    pub misses: u64,
    /// Keys dropped because Redis said they changed.
    pub invalidations: u64,
    /// Keys held now.
    pub len: usize,
}

#[derive(Debug, Default)]
struct Local {
    /// key -> (value or known-missing, expiry, insertion number)
    entries: HashMap<String, (Option<Bytes>, Instant, u64)>,
    /// Insertion order, for dropping the oldest; stale numbers are skipped.
    order: VecDeque<(String, u64)>,
    /// Reads from Redis in flight: key -> (readers, invalidated since the first started). A read
    /// that raced an invalidation is not kept. Only keys being read are here, so this stays as
    /// small as the reads in flight.
    reads: HashMap<String, (usize, bool)>,
    next: u64,
}

impl Local {
    fn invalidate(&mut self, key: &str) {
        self.entries.remove(key);
        if let Some((_, invalidated)) = self.reads.get_mut(key) {
            *invalidated = true;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        for (_, invalidated) in self.reads.values_mut() {
            *invalidated = true;
        }
    }
}

/// One read from Redis in flight; leaves `Local::reads` when dropped (also when cancelled).
struct Reading<'a> {
    local: &'a Mutex<Local>,
    key: &'a str,
}

impl<'a> Reading<'a> {
    fn start(local: &'a Mutex<Local>, key: &'a str) -> Self {
        lock(local)
            .reads
            .entry(key.to_owned())
            .or_insert((0, false))
            .0 += 1;
        Self { local, key }
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut local = lock(self.local);
        if let Some((readers, _)) = local.reads.get_mut(self.key) {
            *readers -= 1;
            if *readers == 0 {
                local.reads.remove(self.key);
            }
        }
    }
}

/// A [`Cache`] with an in-process tier: a read served from memory costs no round trip. Redis
/// client tracking (RESP3) tells this process when a key it read changes anywhere, and the local
/// copy is dropped; on a disconnect the whole local tier is dropped, since invalidations may
/// have been missed. Writes go to Redis and drop the local copy.
///
/// Staleness is bounded: a read sees another process's write once its invalidation arrived
/// (sub-millisecond on a local network), and never later than `ttl`.
///
/// ```no_run
/// # async fn demo(cache: kaiju_cache::Cache) -> kaiju_cache::Result<()> {
/// use kaiju_cache::{NearCache, NearCacheOptions};
/// let near = NearCache::new(cache, NearCacheOptions::default()).await?;
/// let a: Option<String> = near.get("config:flags").await?; // from Redis
/// let b: Option<String> = near.get("config:flags").await?; // from memory
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NearCache {
    cache: Cache,
    /// The tracking connection; closed when the last clone is dropped.
    connection: Connection,
    local: Arc<Mutex<Local>>,
    options: NearCacheOptions,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
    invalidations: Arc<AtomicU64>,
    /// Whether tracking is on for the current connection; until it is, reads are not kept.
    tracking: Arc<AtomicBool>,
    /// Bumped on every disconnect and reconnect: a read that started in an earlier epoch may
    /// have been answered on a connection Redis was not tracking, so it is not kept.
    epoch: Arc<AtomicU64>,
}

fn lock(local: &Mutex<Local>) -> std::sync::MutexGuard<'_, Local> {
    local.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NearCache {
    /// Opens the tracking connection. Needs RESP3 (`resp3: true`, the default) and Redis 6.2+.
    /// The connection closes when the last clone is dropped.
    pub async fn new(cache: Cache, options: NearCacheOptions) -> Result<Self> {
        let transport = cache.transport();
        // RESP3 tracking, and CLIENT TRACKINGINFO (6.2) to check each read was tracked.
        if !transport.settings().resp3 || !transport.capabilities().has_tracking_info() {
            return Err(CacheError::Transport(TransportError::Protocol {
                message: "the near cache needs RESP3 client tracking (resp3: true, Redis 6.2+)"
                    .into(),
            }));
        }
        let connection = transport.dedicated_connection().await?;
        let client = connection.client().clone();
        let local: Arc<Mutex<Local>> = Arc::default();
        let invalidations = Arc::new(AtomicU64::new(0));
        let (on_change, counter, on_missed) = (local.clone(), invalidations.clone(), local.clone());
        events::listen(
            client.invalidation_rx(),
            move |invalidation: Invalidation| {
                let mut local = lock(&on_change);
                for key in &invalidation.keys {
                    if let Some(key) = key.as_str() {
                        local.invalidate(key);
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::future::ready(())
            },
            // Invalidations were missed in a burst: any copy may be stale.
            move |_| lock(&on_missed).clear(),
        );
        let ready = Arc::new(AtomicBool::new(false));
        let epoch = Arc::new(AtomicU64::new(0));
        let retrack = Retrack {
            local: local.clone(),
            client: client.clone(),
            ready: ready.clone(),
            epoch: epoch.clone(),
        };
        let (again, on_error, on_lost) = (retrack.clone(), retrack.clone(), retrack.clone());
        events::listen(
            client.reconnect_rx(),
            move |_| retrack.clone().run(),
            move |_| {
                tokio::spawn(again.clone().run());
            },
        );
        events::listen(
            client.error_rx(),
            move |_| {
                on_error.forget_all();
                std::future::ready(())
            },
            move |_| on_lost.forget_all(),
        );
        client
            .start_tracking(None, false, false, false, false)
            .await
            .classify()?;
        ready.store(true, Ordering::SeqCst);
        Ok(Self {
            cache,
            connection,
            local,
            options,
            hits: Arc::default(),
            misses: Arc::default(),
            invalidations,
            tracking: ready,
            epoch,
        })
    }

    /// The value at `key`: from memory if this process read it before and it has not changed,
    /// else from Redis (and kept).
    pub async fn get<T: DeserializeOwned>(&self, key: impl AsRef<str>) -> Result<Option<T>> {
        let key = key.as_ref();
        let now = Instant::now();
        let cached = lock(&self.local)
            .entries
            .get(key)
            .filter(|(_, expires, _)| *expires > now)
            .map(|(value, _, _)| value.clone());
        let raw = match cached {
            Some(raw) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.cache.metrics.near(true);
                raw
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                let reading = Reading::start(&self.local, key);
                let epoch = self.epoch.load(Ordering::SeqCst);
                let (raw, tracked) = self.read_tracked(key).await?;
                self.cache.metrics.near(false);
                self.cache
                    .metrics
                    .redis(raw.as_ref().is_some_and(|b| !b.is_empty()));
                if tracked {
                    self.store(key, raw.clone(), epoch, &reading);
                }
                raw
            }
        };
        decode_bytes(self.cache.codec, key, raw)
    }

    /// `CLIENT TRACKINGINFO` then `GET key`, in one pipeline on the tracking connection, sent
    /// once: the value, and whether Redis tracks it for this connection. A GET that ran on a
    /// connection without tracking (a new one, before tracking was switched on again) would
    /// never be invalidated, so it is not kept.
    async fn read_tracked(&self, key: &str) -> Result<(Option<Bytes>, bool)> {
        let pipeline = self.connection.pipeline_once();
        let info = CustomCommand::new_static(
            "CLIENT",
            ClusterHash::Custom(key_slot(key.as_bytes())),
            false,
        );
        let _: Value = pipeline
            .custom(info, vec!["TRACKINGINFO"])
            .await
            .classify()?;
        let _: Value = pipeline.get(key).await.classify()?;
        let mut replies = all(&pipeline).await.into_iter();
        let info = replies.next().unwrap_or(Ok(Value::Null))?;
        let value = replies.next().unwrap_or(Ok(Value::Null))?;
        Ok((bytes(value)?, tracking_on(&info)))
    }

    fn store(&self, key: &str, value: Option<Bytes>, epoch: u64, reading: &Reading<'_>) {
        if !self.tracking.load(Ordering::SeqCst) || self.epoch.load(Ordering::SeqCst) != epoch {
            return; // the connection changed since the read started
        }
        let mut local = lock(&self.local);
        if local
            .reads
            .get(reading.key)
            .is_none_or(|(_, invalidated)| *invalidated)
        {
            return; // invalidated while the read was in flight: do not keep a stale copy
        }
        local.next += 1;
        let number = local.next;
        let expires = Instant::now() + self.options.ttl;
        local
            .entries
            .insert(key.to_owned(), (value, expires, number));
        local.order.push_back((key.to_owned(), number));
        while local.entries.len() > self.options.capacity {
            let Some((oldest, n)) = local.order.pop_front() else {
                break;
            };
            if local
                .entries
                .get(&oldest)
                .is_some_and(|(_, _, current)| *current == n)
            {
                local.entries.remove(&oldest);
            }
        }
        if local.order.len() > self.options.capacity.saturating_mul(4) {
            // Compact the order queue when it is mostly stale numbers.
            let Local { entries, order, .. } = &mut *local;
            order.retain(|(k, n)| entries.get(k).is_some_and(|(_, _, current)| current == n));
        }
    }

    /// Stores `value` in Redis (through the underlying cache) and drops the local copy.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<str>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let key = key.as_ref();
        lock(&self.local).invalidate(key);
        self.cache.set(key, value, ttl).await
    }

    /// Deletes `keys` in Redis and drops their local copies.
    pub async fn delete<K: AsRef<str>>(&self, keys: &[K]) -> Result<u64> {
        {
            let mut local = lock(&self.local);
            for key in keys {
                local.invalidate(key.as_ref());
            }
        }
        self.cache.delete(keys).await
    }

    /// Drops every local copy.
    pub fn clear_local(&self) {
        lock(&self.local).clear();
    }

    /// Hit, miss and invalidation counts, and the local size.
    pub fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            len: lock(&self.local).entries.len(),
        }
    }

    /// The id of the tracking connection (`CLIENT ID`), e.g. to find it in `CLIENT LIST`.
    pub async fn connection_id(&self) -> Result<i64> {
        Ok(self.connection.client().client_id().await.classify()?)
    }

    /// How many keys the local tier holds any state for: kept values, reads in flight, and
    /// insertion-order records. Bounded by the capacity (plus concurrent reads), whatever the
    /// number of keys ever read, written or invalidated; for tests of that bound.
    #[doc(hidden)]
    pub fn local_state_len(&self) -> usize {
        let local = lock(&self.local);
        local.entries.len() + local.reads.len() + local.order.len()
    }

    /// The underlying cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
}
