//! `Locks`: acquiring, releasing and inspecting locks.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Script, Transport, TransportError};

use crate::guard::LockGuard;
use crate::keys::LockKeys;
use crate::wakeups::Wakeups;
use crate::{LockError, Result};

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/acquire.lua")));
static ACQUIRE_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/acquire_many.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/release.lua")));
pub(crate) static RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/renew.lua")));

/// A waiter that stops refreshing its place in the queue for this long loses it.
const WAITER_ALIVE: Duration = Duration::from_secs(2);
/// Waiters try again at least this often, in case a release notification was missed.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Options of [`Locks::acquire_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireOptions {
    /// The owner written as the lock's value. Default: the owner given to [`Locks::new`]
    /// (kaiju uses the app id).
    pub owner: Option<String>,
    /// The lock's time to live in Redis. With `renew`, the lock is extended every `lease / 3`
    /// while held; without, it expires after `lease`. Default: 30 s.
    pub lease: Duration,
    /// Keep the lock alive until it is released. Default: `true`.
    pub renew: bool,
    /// Wait for a held lock. `false` fails at once with [`LockError::Exists`]. Default: `true`.
    pub wait: bool,
    /// Give up waiting after this long with [`LockError::Timeout`]. Default: `None` (forever).
    pub timeout: Option<Duration>,
}

impl Default for AcquireOptions {
    fn default() -> Self {
        Self {
            owner: None,
            lease: Duration::from_secs(30),
            renew: true,
            wait: true,
            timeout: None,
        }
    }
}

/// Distributed locks on one Redis deployment. Cheap to clone; create one per app.
///
/// ```no_run
/// # async fn demo(transport: kaiju_transport::Transport) -> kaiju_locks::Result<()> {
/// use kaiju_locks::Locks;
/// let locks = Locks::new(transport, "my-app-id").await?;
/// let guard = locks.acquire("prod.billing.invoice:42").await?;
/// // ... the critical section; pass guard.token() to the resource to fence stale holders ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Locks {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) transport: Transport,
    owner: String,
    wakeups: Arc<Wakeups>,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

impl Locks {
    /// Locks whose default owner is `owner` (kaiju uses the app id). Opens one pub/sub
    /// connection for release notifications.
    pub async fn new(transport: Transport, owner: impl Into<String>) -> Result<Self> {
        let wakeups = Wakeups::connect(&transport).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                owner: owner.into(),
                wakeups,
            }),
        })
    }

    /// The default owner.
    pub fn owner_id(&self) -> &str {
        &self.inner.owner
    }

    /// Acquires `key` with the default options: wait as long as needed, keep it until released.
    pub async fn acquire(&self, key: impl AsRef<str>) -> Result<LockGuard> {
        self.acquire_with(key, AcquireOptions::default()).await
    }

    /// Acquires `key`. Waiters are served in arrival order across processes; a release wakes the
    /// next one at once.
    pub async fn acquire_with(
        &self,
        key: impl AsRef<str>,
        options: AcquireOptions,
    ) -> Result<LockGuard> {
        let keys = LockKeys::new(key.as_ref());
        let owner = options
            .owner
            .clone()
            .unwrap_or_else(|| self.inner.owner.clone());
        let lease = ms(options.lease).to_string();
        let alive = ms(WAITER_ALIVE).to_string();
        if !options.wait {
            let token = self.try_acquire(&keys, &owner, &lease, "", &alive).await?;
            return match token {
                Some(token) => Ok(self.held(keys, owner, token, &options)),
                None => Err(LockError::Exists {
                    owner: self.owner(&keys.lock).await?,
                    key: keys.lock,
                }),
            };
        }
        // Fast path: a free lock nobody waits for is taken without joining the queue or
        // subscribing (the script refuses it if anyone is queued, so order is kept).
        if let Some(token) = self.try_acquire(&keys, &owner, &lease, "", &alive).await? {
            return Ok(self.held(keys, owner, token, &options));
        }
        let ticket = uuid::Uuid::new_v4().simple().to_string();
        let waiting = self.inner.wakeups.wait_on(&keys.channel).await?;
        let started = Instant::now();
        loop {
            // Listen before trying, so a release between the try and the wait is not missed.
            let notified = waiting.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let attempt = self
                .try_acquire(&keys, &owner, &lease, &ticket, &alive)
                .await;
            match attempt {
                Ok(Some(token)) => {
                    return Ok(self.held(keys, owner, token, &options));
                }
                Ok(None) => {}
                Err(e) => {
                    self.leave_queue(&keys, &ticket).await;
                    return Err(e);
                }
            }
            let Some(pause) = pause_before_retry(&options, started) else {
                self.leave_queue(&keys, &ticket).await;
                return Err(LockError::Timeout {
                    key: keys.lock,
                    waited: started.elapsed(),
                });
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn held(
        &self,
        keys: LockKeys,
        owner: String,
        token: u64,
        options: &AcquireOptions,
    ) -> LockGuard {
        LockGuard::new(self, vec![keys], owner, vec![token], options)
    }

    async fn try_acquire(
        &self,
        keys: &LockKeys,
        owner: &str,
        lease: &str,
        ticket: &str,
        alive: &str,
    ) -> Result<Option<u64>> {
        let token: i64 = ACQUIRE
            .run(
                &self.inner.transport,
                vec![
                    keys.lock.as_str(),
                    keys.fence.as_str(),
                    keys.queue.as_str(),
                    keys.alive.as_str(),
                    keys.arrivals.as_str(),
                ],
                vec![owner, lease, ticket, alive],
            )
            .await?;
        Ok(u64::try_from(token).ok().filter(|t| *t > 0))
    }

    /// Best effort: a waiter that gives up leaves the queue now rather than after its liveness
    /// runs out, so the next waiter is not held up.
    async fn leave_queue(&self, keys: &LockKeys, ticket: &str) {
        let pipeline = self.inner.transport.client().pipeline();
        let _: std::result::Result<Value, _> = pipeline.zrem(keys.queue.as_str(), ticket).await;
        let _: std::result::Result<Value, _> = pipeline.hdel(keys.alive.as_str(), ticket).await;
        let _ = pipeline.try_all::<Value>().await;
    }

    /// Acquires every key or none (one script), with the default owner and `options`.
    ///
    /// In a cluster every key must be in one slot ([`LockError::CrossSlot`] otherwise). Waiting
    /// retries on any release of these keys; arrival order is kept only for single-key locks.
    pub async fn acquire_many<K: AsRef<str>>(
        &self,
        keys: &[K],
        options: AcquireOptions,
    ) -> Result<LockGuard> {
        let all: Vec<LockKeys> = keys.iter().map(|k| LockKeys::new(k.as_ref())).collect();
        let Some(first) = all.first() else {
            return Err(LockError::NoKeys);
        };
        if self.inner.transport.is_cluster() && all.iter().any(|k| k.slot() != first.slot()) {
            return Err(LockError::CrossSlot {
                keys: all.into_iter().map(|k| k.lock).collect(),
            });
        }
        let owner = options
            .owner
            .clone()
            .unwrap_or_else(|| self.inner.owner.clone());
        let lease = ms(options.lease).to_string();
        let script_keys: Vec<String> = all
            .iter()
            .map(|k| k.lock.clone())
            .chain(all.iter().map(|k| k.fence.clone()))
            .collect();
        let waiting = if options.wait {
            let mut waiting = Vec::with_capacity(all.len());
            for k in &all {
                waiting.push(self.inner.wakeups.wait_on(&k.channel).await?);
            }
            waiting
        } else {
            Vec::new()
        };
        let started = Instant::now();
        loop {
            // Listen before trying, so a release between the try and the wait is not missed.
            let mut wakes: Vec<_> = waiting
                .iter()
                .map(|w| {
                    let mut notified = Box::pin(w.notify.notified());
                    notified.as_mut().enable();
                    notified
                })
                .collect();
            let tokens: Vec<i64> = ACQUIRE_MANY
                .run(
                    &self.inner.transport,
                    script_keys.clone(),
                    vec![owner.as_str(), lease.as_str()],
                )
                .await?;
            if !tokens.is_empty() {
                let tokens = tokens
                    .into_iter()
                    .map(|t| u64::try_from(t).unwrap_or(0))
                    .collect();
                return Ok(LockGuard::new(self, all, owner, tokens, &options));
            }
            if !options.wait {
                let held = self.exists(keys).await?;
                let key = held
                    .iter()
                    .position(|h| *h)
                    .map_or_else(|| first.lock.clone(), |i| all[i].lock.clone());
                return Err(LockError::Exists {
                    owner: self.owner(&key).await?,
                    key,
                });
            }
            let Some(pause) = pause_before_retry(&options, started) else {
                return Err(LockError::Timeout {
                    key: first.lock.clone(),
                    waited: started.elapsed(),
                });
            };
            tokio::select! {
                _ = futures_select_any(wakes.iter_mut().map(|w| w.as_mut())) => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Releases `key` if `owner` holds it (the seed's `release(key, id)`); otherwise
    /// [`LockError::NotOwner`]. Prefer [`LockGuard::release`], which also checks the fencing
    /// token.
    pub async fn release(&self, key: impl AsRef<str>, owner: &str) -> Result<()> {
        let keys = LockKeys::new(key.as_ref());
        self.release_keys(&keys, owner, None).await
    }

    pub(crate) async fn release_keys(
        &self,
        keys: &LockKeys,
        owner: &str,
        token: Option<u64>,
    ) -> Result<()> {
        let token = token.map(|t| t.to_string()).unwrap_or_default();
        let result: i64 = RELEASE
            .run(
                &self.inner.transport,
                vec![keys.lock.as_str(), keys.fence.as_str()],
                vec![owner, token.as_str(), keys.channel.as_str()],
            )
            .await?;
        if result == 1 {
            Ok(())
        } else {
            Err(LockError::NotOwner {
                owner: self.owner(&keys.lock).await?,
                key: keys.lock.clone(),
            })
        }
    }

    /// Who holds `key`, if anyone.
    pub async fn owner(&self, key: impl AsRef<str>) -> Result<Option<String>> {
        let value: Option<String> = self
            .inner
            .transport
            .pool()
            .get(key.as_ref())
            .await
            .map_err(TransportError::from)?;
        Ok(value)
    }

    /// Whether `owner` holds `key`.
    pub async fn is_owner(&self, key: impl AsRef<str>, owner: &str) -> Result<bool> {
        Ok(self.owner(key).await?.as_deref() == Some(owner))
    }

    /// For each key, whether a lock exists (works across cluster slots).
    pub async fn exists<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<bool>> {
        let pipeline = self.inner.transport.client().pipeline();
        for key in keys {
            let _: Value = pipeline
                .exists(key.as_ref())
                .await
                .map_err(TransportError::from)?;
        }
        let replies: Vec<i64> = pipeline.all().await.map_err(TransportError::from)?;
        Ok(replies.into_iter().map(|n| n > 0).collect())
    }

    /// Closes the notification connection. Held guards keep working until released.
    pub async fn close(&self) {
        self.inner.wakeups.close().await;
    }
}

/// How long to wait before the next attempt, or `None` once the caller's timeout has passed.
fn pause_before_retry(options: &AcquireOptions, started: Instant) -> Option<Duration> {
    match options.timeout {
        None => Some(RETRY_EVERY),
        Some(timeout) => {
            let left = timeout.saturating_sub(started.elapsed());
            (!left.is_zero()).then(|| RETRY_EVERY.min(left))
        }
    }
}

/// Resolves when any of the futures does.
async fn futures_select_any<F: std::future::Future<Output = ()> + Unpin>(
    futures: impl Iterator<Item = F>,
) {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(|cx| {
        for future in &mut futures {
            if std::pin::Pin::new(future).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}
