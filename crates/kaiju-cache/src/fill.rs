//! `get_or_set_with`: compute a missing value once across every task and process that asks.
//!
//! 1. `GET key`, with no lock of any kind: a hit (the common case) costs one round trip.
//! 2. In this process, one caller per key leads (single flight); the others wait for its
//!    outcome (the value's bytes, or its error) without touching Redis.
//! 3. Across processes, the leader takes the fill lock `{key}:__fill` (a token, `PX lock_ttl`).
//!    The winner runs the loader, stores the value with its TTL and releases the lock
//!    (compare-and-delete). A failing loader stores nothing under `key`; it writes
//!    `{key}:__fill_error` = `<token>\n<message>` for one second, so the callers that were
//!    waiting on *that* fill get the error, while later callers try again.
//! 4. Leaders of other processes poll (5 ms doubling to 50 ms) for the value, for the winner's
//!    failure marker, or for the lock to vanish (the winner died: start over).
//!
//! The fill lock is released on every path: success, failure, a cancelled call, a panicking
//! loader (a drop guard sends the release). `wait_timeout` bounds the whole call.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use kaiju_core::side_key;
use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::{Expiration, Value};
use kaiju_transport::{Classify, Script, Transport};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::flights::{Outcome, Role};
use crate::reply::{all, bytes, decode_bytes, encode};
use crate::{Cache, CacheError, Result};

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/take_fill.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/release_fill.lua")));

/// The scripts of `get_or_set_with`.
pub(crate) fn scripts() -> [&'static Script; 2] {
    [&*TAKE, &*RELEASE]
}

/// Options of [`Cache::get_or_set_with_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillOptions {
    /// How long the filler may take before another process may try. Default: 30 s.
    pub lock_ttl: Duration,
    /// How long the whole call may take, waiting for another filler included
    /// ([`CacheError::FillTimeout`] after that). Default: 35 s.
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

/// The fill lock, released when dropped unless released already.
struct FillLock {
    transport: Transport,
    key: String,
    token: String,
    held: bool,
}

impl FillLock {
    /// Tries to take the fill lock of a key. The script runs in a task of its own: a caller
    /// cancelled while it is on its way never leaves the lock behind, because a lock won for
    /// nobody is dropped, and released, in that task.
    async fn take(transport: &Transport, key: &str, ttl: Duration) -> Result<Option<Self>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (transport, key) = (transport.clone(), key.to_owned());
        tokio::spawn(async move {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let ttl_ms = crate::cache::ttl_ms(ttl).to_string();
            let won: Result<i64> = TAKE
                .run(&transport, key.as_str(), vec![token.clone(), ttl_ms])
                .await
                .map_err(CacheError::from);
            let outcome = won.map(|won| {
                (won == 1).then_some(Self {
                    transport,
                    key,
                    token,
                    held: true,
                })
            });
            // If the caller is gone, a lock won for it is dropped here, which releases it.
            let _ = reply.send(outcome);
        });
        answer.await.unwrap_or(Ok(None))
    }

    async fn release(mut self) {
        self.held = false;
        let released: Result<i64> = RELEASE
            .run(&self.transport, self.key.as_str(), self.token.as_str())
            .await
            .map_err(CacheError::from);
        if let Err(e) = released {
            tracing::warn!(key = %self.key, error = %e, "could not release the fill lock; it expires by itself");
        }
    }
}

impl Drop for FillLock {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        // A cancelled call or a panicking loader: release from a task.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (transport, key, token) =
                (self.transport.clone(), self.key.clone(), self.token.clone());
            runtime.spawn(async move {
                let _: std::result::Result<i64, _> =
                    RELEASE.run(&transport, key.as_str(), token.as_str()).await;
            });
        }
    }
}

const ERROR_MARKER_TTL_MS: i64 = 1000;

enum Wait {
    Value(Bytes),
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
        let within = tokio::time::timeout(options.wait_timeout, async {
            // No lock of any kind on a hit.
            if let Some(value) = self.get::<T>(key).await? {
                return Ok(value);
            }
            let mut loader = Some(loader);
            loop {
                match self.fills.join(key) {
                    Role::Follow(mut running) => {
                        let outcome = running
                            .wait_for(Option::is_some)
                            .await
                            .map(|o| o.clone())
                            .ok()
                            .flatten();
                        match outcome {
                            Some(Outcome::Done(Ok(raw))) => {
                                return decode_bytes(self.codec, key, Some(raw))?
                                    .ok_or_else(|| missing(key));
                            }
                            Some(Outcome::Done(Err(e))) => return Err(e),
                            Some(Outcome::Abandoned) | None => continue,
                        }
                    }
                    Role::Lead(flight) => {
                        let Some(loader) = loader.take() else {
                            return Err(missing(key));
                        };
                        let result = self.fill_across_processes(key, ttl, options, loader).await;
                        flight.finish(
                            result
                                .as_ref()
                                .map(|(_, raw)| raw.clone())
                                .map_err(Clone::clone),
                        );
                        return result.map(|(value, _)| value);
                    }
                }
            }
        })
        .await;
        within.unwrap_or_else(|_| {
            Err(CacheError::FillTimeout {
                key: key.to_owned(),
            })
        })
    }

    /// The cross-process part, run by this process's leader: the value and its stored bytes.
    async fn fill_across_processes<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        options: FillOptions,
        loader: F,
    ) -> Result<(T, Bytes)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let fill_key = side_key(key, "fill");
        let error_key = side_key(key, "fill_error");
        loop {
            if let Some(found) = self.stored::<T>(key).await? {
                return Ok(found);
            }
            if let Some(lock) = FillLock::take(&self.transport, &fill_key, options.lock_ttl).await?
            {
                let result = self.fill(key, &error_key, &lock.token, ttl, loader).await;
                lock.release().await;
                return result;
            }
            match self.wait_for_fill(key, &fill_key, &error_key).await? {
                Wait::Value(raw) => {
                    let value = decode_bytes(self.codec, key, Some(raw.clone()))?
                        .ok_or_else(|| missing(key))?;
                    return Ok((value, raw));
                }
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

    /// The value at `key` and its bytes, if present.
    async fn stored<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, Bytes)>> {
        let value: Value = self.transport.pool().get(key).await.classify()?;
        let Some(raw) = bytes(value)?.filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        Ok(decode_bytes(self.codec, key, Some(raw.clone()))?.map(|v| (v, raw)))
    }

    async fn fill<T, F, Fut, E>(
        &self,
        key: &str,
        error_key: &str,
        token: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<(T, Bytes)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Someone may have filled the key between our GET and winning the lock.
        if let Some(found) = self.stored::<T>(key).await? {
            return Ok(found);
        }
        match loader().await {
            Ok(value) => {
                let raw = encode(self.codec, key, &value)?;
                let _: Value = self
                    .transport
                    .pool()
                    .set(
                        key,
                        raw.clone(),
                        crate::cache::expiration(Some(ttl)),
                        None,
                        false,
                    )
                    .await
                    .classify()?;
                self.metrics.fills.increment(1);
                Ok((value, raw))
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

    async fn wait_for_fill(&self, key: &str, fill_key: &str, error_key: &str) -> Result<Wait> {
        let mut delay = Duration::from_millis(5);
        let mut waited_on: Option<String> = None;
        loop {
            let pipeline = self.transport.pipeline();
            let _: Value = pipeline.get(key).await.classify()?;
            let _: Value = pipeline.get(fill_key).await.classify()?;
            let _: Value = pipeline.get(error_key).await.classify()?;
            let mut replies = all(&pipeline).await.into_iter();
            let mut next = || replies.next().unwrap_or(Ok(Value::Null));
            let (value, lock, failure) = (next()?, next()?, next()?);
            if let Some(raw) = bytes(value)?.filter(|b| !b.is_empty()) {
                return Ok(Wait::Value(raw));
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
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}

/// A value that was stored as empty (kaiju reads that as missing) where one was expected.
fn missing(key: &str) -> CacheError {
    CacheError::Loader {
        key: key.to_owned(),
        message: "the filled value is empty".to_owned(),
        source: None,
    }
}
