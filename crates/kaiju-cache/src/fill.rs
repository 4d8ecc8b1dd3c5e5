//! `get_or_set_with`: compute a missing value once across every process that asks for it.
//!
//! Protocol (all single-key commands, so it works in a cluster):
//! 1. `GET key`: a hit returns at once.
//! 2. `SET key.__fill <token> NX PX <lock_ttl>`: the winner runs the loader, stores the value
//!    with its TTL, and deletes the fill lock (compare-and-delete, so a late filler never deletes
//!    another's lock).
//! 3. Everyone else polls (5 ms doubling to 50 ms) for the value, for the winner's failure
//!    marker, or for the lock to vanish (the winner died: start over at 1).
//!
//! A failing loader stores nothing under `key`; it writes `key.__fill_error` = `<token>\n<msg>`
//! for one second, so the callers that were waiting on *that* fill get the error, while later
//! callers try the loader again. Inside one process, callers of the same key queue on a local
//! lock first, so a burst from one process costs one Redis round trip per caller at most.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use kaiju_transport::Script;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{Expiration, SetOptions, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::FredExt;
use crate::reply::{all, bytes, decode};
use crate::{Cache, CacheError, Result};

static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/release_fill.lua")));

/// Options of [`Cache::get_or_set_with_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillOptions {
    /// How long the filler may take before another process may try. Default: 30 s.
    pub lock_ttl: Duration,
    /// How long a waiter waits for another process's fill. Default: 35 s.
    pub wait_timeout: Duration,
}

impl Default for FillOptions {
    fn default() -> Self {
        Self {
            lock_ttl: Duration::from_secs(30),
            wait_timeout: Duration::from_secs(35),
        }
    }
}

/// Per-key local locks, shared by clones of a `Cache`.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalFills(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl LocalFills {
    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds any more, so the map stays as small as the keys in flight.
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(key.to_owned()).or_default().clone()
    }
}

const ERROR_MARKER_TTL_MS: i64 = 1000;

enum Wait<T> {
    Value(T),
    Failed(String),
    LockGone,
}

impl Cache {
    /// The value at `key`; if missing, `loader` computes it and it is stored with `ttl`. When
    /// many tasks or processes ask for the same missing key at once, the loader runs once and the
    /// others wait for its result. A failing loader is an error for everybody waiting on it and
    /// leaves nothing cached.
    ///
    /// ```no_run
    /// # async fn demo(cache: kaiju_cache::Cache) -> kaiju_cache::Result<()> {
    /// use std::time::Duration;
    /// let report: String = cache
    ///     .get_or_set_with("report:today", Duration::from_secs(60), || async {
    ///         Ok::<_, std::io::Error>("expensive".to_owned())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_or_set_with<T, F, Fut, E>(
        &self,
        key: impl AsRef<str>,
        ttl: Duration,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.get_or_set_with_options(key, ttl, FillOptions::default(), loader)
            .await
    }

    /// [`get_or_set_with`](Self::get_or_set_with) with explicit [`FillOptions`].
    pub async fn get_or_set_with_options<T, F, Fut, E>(
        &self,
        key: impl AsRef<str>,
        ttl: Duration,
        options: FillOptions,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let key = key.as_ref();
        let local = self.fills.lock_for(key);
        let _local = local.lock().await;
        let fill_key = format!("{key}.__fill");
        let error_key = format!("{key}.__fill_error");
        let deadline = Instant::now() + options.wait_timeout;
        loop {
            if let Some(value) = self.get::<T>(key).await? {
                return Ok(value);
            }
            let token = uuid::Uuid::new_v4().simple().to_string();
            let won: Value = self
                .transport
                .pool()
                .set(
                    fill_key.as_str(),
                    token.as_str(),
                    Some(Expiration::PX(crate::cache::ttl_ms(options.lock_ttl))),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .or_cache()?;
            if !won.is_null() {
                // Moving the loader inside the loop is fine: this branch always returns.
                let result = self.fill(key, &error_key, &token, ttl, loader).await;
                let released: Result<i64> = RELEASE
                    .run(&self.transport, fill_key.as_str(), token.as_str())
                    .await
                    .map_err(CacheError::from);
                if let Err(e) = released {
                    tracing::warn!(key, error = %e, "could not release the fill lock; it expires by itself");
                }
                return result;
            }
            match self
                .wait_for_fill::<T>(key, &fill_key, &error_key, deadline)
                .await?
            {
                Wait::Value(value) => return Ok(value),
                Wait::Failed(message) => {
                    return Err(CacheError::Loader {
                        key: key.to_owned(),
                        message,
                        source: None,
                    });
                }
                Wait::LockGone => continue,
            }
        }
    }

    async fn fill<T, F, Fut, E>(
        &self,
        key: &str,
        error_key: &str,
        token: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Someone may have filled the key between our GET and winning the lock.
        if let Some(value) = self.get::<T>(key).await? {
            return Ok(value);
        }
        match loader().await {
            Ok(value) => {
                self.set(key, &value, Some(ttl)).await?;
                Ok(value)
            }
            Err(error) => {
                let error: Arc<dyn std::error::Error + Send + Sync> = Arc::from(error.into());
                let message = error.to_string();
                let marker = format!("{token}\n{message}");
                let stored: std::result::Result<Value, _> = self
                    .transport
                    .pool()
                    .set(
                        error_key,
                        marker,
                        Some(Expiration::PX(ERROR_MARKER_TTL_MS)),
                        None,
                        false,
                    )
                    .await;
                if let Err(e) = stored {
                    tracing::warn!(key, error = %e, "could not tell waiters that the loader failed");
                }
                Err(CacheError::Loader {
                    key: key.to_owned(),
                    message,
                    source: Some(error),
                })
            }
        }
    }

    async fn wait_for_fill<T: DeserializeOwned>(
        &self,
        key: &str,
        fill_key: &str,
        error_key: &str,
        deadline: Instant,
    ) -> Result<Wait<T>> {
        let mut delay = Duration::from_millis(5);
        let mut waited_on: Option<String> = None;
        loop {
            let pipeline = self.transport.client().pipeline();
            let _: Value = pipeline.get(key).await.or_cache()?;
            let _: Value = pipeline.get(fill_key).await.or_cache()?;
            let _: Value = pipeline.get(error_key).await.or_cache()?;
            let mut replies = all(&pipeline).await.into_iter();
            let mut next = || replies.next().unwrap_or(Ok(Value::Null));
            let (value, lock, failure) = (next()?, next()?, next()?);
            if let Some(value) = decode::<T>(self.codec, key, value)? {
                return Ok(Wait::Value(value));
            }
            let lock = bytes(lock)?.map(|b| String::from_utf8_lossy(&b).into_owned());
            if let Some(failure) = bytes(failure)? {
                let failure = String::from_utf8_lossy(&failure);
                if let Some((token, message)) = failure.split_once('\n')
                    && waited_on.as_deref() == Some(token)
                {
                    return Ok(Wait::Failed(message.to_owned()));
                }
            }
            match lock {
                None => return Ok(Wait::LockGone),
                Some(token) => waited_on = Some(token),
            }
            if Instant::now() >= deadline {
                return Err(CacheError::FillTimeout {
                    key: key.to_owned(),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}
