//! `Locks`: acquiring, releasing and inspecting locks.
//!
//! The first try of an acquire runs in the caller's task ([`first_try`](crate::first_try));
//! the queued tries after it run in a task of its own and report through a channel. A
//! caller that gives up (a timeout around the call, a `select!`, a dropped request) only drops
//! its end: a script already sent still completes in the task, and a lock it took is released
//! at once; a waiter leaves the queue. No lock is ever held without a guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Transport, TransportError};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::batch::Batcher;
use crate::first_try::{FirstTry, Try};
use crate::guard::{Keepers, Lease, LockGuard};
use crate::keys::LockKeys;
use crate::metrics::LockMetrics;
use crate::ops::{self, Attempt, Released};
use crate::wakeups::{Waiting, Wakeups};
use crate::{LockError, Result};

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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    /// Sends acquire and release calls, batching those that overlap.
    batcher: Arc<Batcher>,
    /// Starts guards' keepers when their first renewal comes.
    keepers: Arc<Keepers>,
    owner: String,
    wakeups: Arc<Wakeups>,
    ids: AttemptIds,
    metrics: Arc<LockMetrics>,
}

/// Ids of acquire attempts and queue tickets: unique across processes (a random prefix per
/// `Locks`) without a call to the system's random source per acquire.
#[derive(Debug)]
struct AttemptIds {
    prefix: String,
    next: AtomicU64,
}

impl AttemptIds {
    fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string(),
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

/// Where an acquire task reports to its caller.
type Reply = oneshot::Sender<Result<LockGuard>>;

impl Locks {
    /// Locks whose default owner is `owner` (kaiju uses the app id). Opens one pub/sub
    /// connection for release notifications; it closes when the last clone is dropped.
    ///
    /// Needs Redis 6.2+ (or a fork compatible with it, such as KeyDB 6.2+): an older server is
    /// a [`TransportError::Protocol`] error here, not a failed call later.
    pub async fn new(transport: Transport, owner: impl Into<String>) -> Result<Self> {
        let server = transport.capabilities();
        if !server.has_set_get() {
            return Err(LockError::Transport(TransportError::Protocol {
                message: format!(
                    "kaiju-locks needs Redis 6.2+ (SET ... GET); the server is compatible with Redis {}",
                    server.redis_version
                ),
            }));
        }
        let wakeups = Wakeups::connect(&transport).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                batcher: Batcher::new(transport.clone()),
                keepers: Keepers::new(),
                transport,
                owner: owner.into(),
                wakeups,
                ids: AttemptIds::new(),
                metrics: Arc::new(LockMetrics::new()),
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
    /// next one at once. Cancel-safe: dropping the returned future never leaves the lock held.
    pub async fn acquire_with(
        &self,
        key: impl AsRef<str>,
        options: AcquireOptions,
    ) -> Result<LockGuard> {
        let sent_at = Instant::now();
        // Fast path, and the only try with `wait: false`: a free lock nobody waits for is taken
        // without joining the queue or subscribing, from the caller's task.
        let first = FirstTry::new(Try {
            batcher: self.inner.batcher.clone(),
            keys: LockKeys::new(key.as_ref()),
            owner: self.owner_for(&options),
            lease: options.lease,
            id: self.inner.ids.next(),
            waiter_alive: WAITER_ALIVE,
            wait: options.wait,
        });
        let (parts, outcome) = first.await;
        match outcome {
            Ok(Some(token)) => {
                return Ok(self.guard(
                    vec![parts.keys],
                    parts.owner,
                    vec![token],
                    &options,
                    sent_at,
                ));
            }
            Ok(None) => {}
            Err(e) => {
                if matches!(e, LockError::Transport(_)) {
                    // The script may have run without the caller hearing of it. In a task, so
                    // that it completes even if the caller leaves meanwhile.
                    let _ = tokio::spawn(async move {
                        let transport = parts.batcher.transport();
                        ops::abandon(transport, &parts.keys, &parts.owner, &parts.id).await
                    })
                    .await;
                }
                return Err(e);
            }
        }
        if !options.wait {
            return Err(LockError::Exists {
                owner: ops::owner(parts.batcher.transport(), &parts.keys.lock).await?,
                key: parts.keys.lock,
            });
        }
        let (reply, answer) = oneshot::channel();
        tokio::spawn(self.clone().acquire_task(parts, options, sent_at, reply));
        answer.await.unwrap_or_else(|_| Err(LockError::Abandoned))
    }

    /// Acquires every key or none (one script), with the default owner and `options`.
    ///
    /// In a cluster every key must be in one slot ([`LockError::CrossSlot`] otherwise). The
    /// same key twice is [`LockError::DuplicateKey`]. Waiting retries on any release of these
    /// keys; arrival order is kept for single-key locks only. Cancel-safe like
    /// [`acquire_with`](Self::acquire_with).
    pub async fn acquire_many<K: AsRef<str>>(
        &self,
        keys: &[K],
        options: AcquireOptions,
    ) -> Result<LockGuard> {
        let all: Vec<LockKeys> = keys.iter().map(|k| LockKeys::new(k.as_ref())).collect();
        let Some(first) = all.first() else {
            return Err(LockError::NoKeys);
        };
        for (i, k) in all.iter().enumerate() {
            if all[..i].iter().any(|earlier| earlier.lock == k.lock) {
                return Err(LockError::DuplicateKey {
                    key: k.lock.clone(),
                });
            }
        }
        if self.inner.transport.is_cluster() && all.iter().any(|k| k.slot() != first.slot()) {
            return Err(LockError::CrossSlot {
                keys: all.into_iter().map(|k| k.lock).collect(),
            });
        }
        let (reply, answer) = oneshot::channel();
        tokio::spawn(self.clone().acquire_many_task(all, options, reply));
        answer.await.unwrap_or_else(|_| Err(LockError::Abandoned))
    }

    fn owner_for(&self, options: &AcquireOptions) -> String {
        options
            .owner
            .clone()
            .unwrap_or_else(|| self.inner.owner.clone())
    }

    /// The guard of locks a script sent at `sent_at` took.
    fn guard(
        &self,
        keys: Vec<LockKeys>,
        owner: String,
        tokens: Vec<u64>,
        options: &AcquireOptions,
        sent_at: Instant,
    ) -> LockGuard {
        let lease = Lease {
            duration: options.lease,
            renew: options.renew,
            sent_at,
        };
        self.inner.metrics.acquisitions.increment(1);
        LockGuard::new(
            &self.inner.batcher,
            &self.inner.keepers,
            &self.inner.metrics,
            keys,
            owner,
            tokens,
            lease,
        )
    }

    /// Hands the locks a script took to the caller in a guard, or releases them at once if the
    /// caller is gone.
    fn deliver(
        &self,
        reply: Reply,
        keys: Vec<LockKeys>,
        owner: String,
        tokens: Vec<u64>,
        options: &AcquireOptions,
        sent_at: Instant,
    ) {
        let guard = self.guard(keys, owner, tokens, options, sent_at);
        if let Err(Ok(unwanted)) = reply.send(Ok(guard)) {
            tracing::debug!(key = %unwanted.key(), "the caller stopped waiting; releasing the lock it would have got");
            drop(unwanted); // the guard releases in the background
        }
    }

    /// The queued tries of an acquire whose first try found the lock taken.
    async fn acquire_task(
        self,
        parts: Try,
        options: AcquireOptions,
        started: Instant,
        mut reply: Reply,
    ) {
        let mut ticket = String::new();
        self.inner.metrics.waits.increment(1);
        let outcome = self
            .acquire_loop(&parts, &mut ticket, &options, started, &mut reply)
            .await;
        let Try {
            keys, owner, id, ..
        } = parts;
        match outcome {
            Ok(Some((token, sent_at))) => {
                let metrics = &self.inner.metrics;
                metrics.handoffs.increment(1);
                metrics.wait_seconds.record(started.elapsed().as_secs_f64());
                self.deliver(reply, vec![keys], owner, vec![token], &options, sent_at);
            }
            Ok(None) => self.leave_queue(&keys, &ticket).await,
            Err(e) => {
                self.leave_queue(&keys, &ticket).await;
                if matches!(e, LockError::Transport(_)) {
                    // The script may have run without the caller hearing of it.
                    let _ = ops::abandon(&self.inner.transport, &keys, &owner, &id).await;
                }
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Tries in the queue until the lock is taken (its token and when the winning script was
    /// sent), the caller is gone (`None`), or an error. The queue ticket is made into `ticket`.
    async fn acquire_loop(
        &self,
        parts: &Try,
        ticket: &mut String,
        options: &AcquireOptions,
        started: Instant,
        reply: &mut Reply,
    ) -> Result<Option<(u64, Instant)>> {
        let waiting = self.inner.wakeups.wait_on(&parts.keys.channel).await?;
        *ticket = self.inner.ids.next();
        let queued = Attempt {
            keys: &parts.keys,
            owner: &parts.owner,
            lease: parts.lease,
            id: &parts.id,
            ticket: ticket.as_str(),
            waiter_alive: parts.waiter_alive,
        };
        loop {
            // Listen before trying, so a release between the try and the wait is not missed.
            let notified = waiting.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let sent_at = Instant::now();
            if let Some(token) = ops::acquire(&self.inner.transport, &queued).await? {
                return Ok(Some((token, sent_at)));
            }
            let Some(pause) = pause_before_retry(options, started) else {
                return Err(LockError::Timeout {
                    key: queued.keys.lock.clone(),
                    waited: started.elapsed(),
                });
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(pause) => {}
                () = reply.closed() => return Ok(None),
            }
        }
    }

    async fn acquire_many_task(
        self,
        all: Vec<LockKeys>,
        options: AcquireOptions,
        mut reply: Reply,
    ) {
        let owner = self.owner_for(&options);
        let id = self.inner.ids.next();
        let outcome = self
            .acquire_many_loop(&all, &owner, &id, &options, &mut reply)
            .await;
        match outcome {
            Ok(Some((tokens, sent_at))) => {
                self.deliver(reply, all, owner, tokens, &options, sent_at);
            }
            Ok(None) => {}
            Err(e) => {
                if matches!(e, LockError::Transport(_)) {
                    for keys in &all {
                        let _ = ops::abandon(&self.inner.transport, keys, &owner, &id).await;
                    }
                }
                let _ = reply.send(Err(e));
            }
        }
    }

    async fn acquire_many_loop(
        &self,
        all: &[LockKeys],
        owner: &str,
        id: &str,
        options: &AcquireOptions,
        reply: &mut Reply,
    ) -> Result<Option<(Vec<u64>, Instant)>> {
        let transport = &self.inner.transport;
        let mut waiting: Vec<Waiting> = Vec::new();
        if options.wait {
            for k in all {
                waiting.push(self.inner.wakeups.wait_on(&k.channel).await?);
            }
        }
        let started = Instant::now();
        let outcome = loop {
            // Listen before trying, so a release between the try and the wait is not missed.
            let mut wakes: Vec<_> = waiting
                .iter()
                .map(|w| {
                    let mut notified = Box::pin(w.notify.notified());
                    notified.as_mut().enable();
                    notified
                })
                .collect();
            let sent_at = Instant::now();
            if let Some(tokens) =
                ops::acquire_many(transport, all, owner, options.lease, id).await?
            {
                break Ok(Some((tokens, sent_at)));
            }
            if !options.wait {
                let held = self
                    .exists(&all.iter().map(|k| &k.lock).collect::<Vec<_>>())
                    .await?;
                let key = held
                    .iter()
                    .position(|h| *h)
                    .and_then(|i| all.get(i))
                    .map_or_else(|| all[0].lock.clone(), |k| k.lock.clone());
                break Err(LockError::Exists {
                    owner: ops::owner(transport, &key).await?,
                    key,
                });
            }
            let Some(pause) = pause_before_retry(options, started) else {
                break Err(LockError::Timeout {
                    key: all[0].lock.clone(),
                    waited: started.elapsed(),
                });
            };
            // Announce the wait, so releases of these keys publish a wake-up.
            self.announce_waiter(all, id, true).await;
            tokio::select! {
                _ = futures_select_any(wakes.iter_mut().map(|w| w.as_mut())) => {}
                () = tokio::time::sleep(pause) => {}
                () = reply.closed() => break Ok(None),
            }
        };
        if options.wait {
            self.announce_waiter(all, id, false).await;
        }
        outcome
    }

    /// Registers (or removes) a multi-key waiter in each lock's live-waiter hash: a release
    /// publishes a wake-up only when that hash exists.
    async fn announce_waiter(&self, all: &[LockKeys], id: &str, waiting: bool) {
        let pipeline = self.inner.transport.pipeline();
        let deadline = (std::time::SystemTime::now() + WAITER_ALIVE)
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let expiry = i64::try_from((WAITER_ALIVE * 4).as_millis()).unwrap_or(i64::MAX);
        for k in all {
            let key = k.alive.as_str();
            // Best effort (a missed wake-up is covered by the periodic retry): queueing errors
            // here would come back from `try_all` below, which is ignored.
            if waiting {
                let _: std::result::Result<Value, _> =
                    pipeline.hset(key, (id, deadline.to_string())).await;
                let _: std::result::Result<Value, _> = pipeline.pexpire(key, expiry, None).await;
            } else {
                let _: std::result::Result<Value, _> = pipeline.hdel(key, id).await;
            }
        }
        let _ = pipeline.try_all::<Value>().await;
    }

    /// Best effort: a waiter that gives up leaves the queue now rather than after its liveness
    /// runs out, so the next waiter is not held up.
    async fn leave_queue(&self, keys: &LockKeys, ticket: &str) {
        if ticket.is_empty() {
            return;
        }
        let pipeline = self.inner.transport.pipeline();
        let _: std::result::Result<Value, _> = pipeline.zrem(keys.queue.as_str(), ticket).await;
        let _: std::result::Result<Value, _> = pipeline.hdel(keys.alive.as_str(), ticket).await;
        let _ = pipeline.try_all::<Value>().await;
    }

    /// Releases `key` if `owner` holds it (the seed's `release(key, id)`); otherwise
    /// [`LockError::NotOwner`]. Prefer [`LockGuard::release`], which also checks the fencing
    /// token.
    ///
    /// A release by owner alone cannot tell its own earlier run from a later holder with the
    /// same owner id, so it is never sent twice: if the connection drops before the reply,
    /// this is a [`LockError::Transport`] error and the release may or may not have run
    /// ([`Locks::owner`] shows who holds the key now, which may be a later hold with the same
    /// owner id).
    pub async fn release(&self, key: impl AsRef<str>, owner: &str) -> Result<()> {
        let keys = LockKeys::new(key.as_ref());
        match ops::release(&self.inner.batcher, &keys, owner, None).await? {
            Released::Yes => Ok(()),
            Released::NotOwner | Released::Superseded => Err(LockError::NotOwner {
                owner: self.owner(&keys.lock).await?,
                key: keys.lock,
            }),
        }
    }

    /// Who holds `key`, if anyone.
    pub async fn owner(&self, key: impl AsRef<str>) -> Result<Option<String>> {
        ops::owner(&self.inner.transport, key.as_ref()).await
    }

    /// Who holds `key`, for how long, with which fencing token and how many waiting, read in
    /// one round trip; `None` when nobody does.
    ///
    /// ```no_run
    /// # async fn demo(locks: kaiju_locks::Locks) -> kaiju_locks::Result<()> {
    /// if let Some(h) = locks.holder("billing.lock.invoice-7").await? {
    ///     println!("{} holds it for {:?} more (token {:?})", h.owner, h.ttl, h.token);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn holder(&self, key: impl AsRef<str>) -> Result<Option<crate::Holder>> {
        crate::holder::holder(&self.inner.transport, key.as_ref()).await
    }

    /// Whether `owner` holds `key`.
    pub async fn is_owner(&self, key: impl AsRef<str>, owner: &str) -> Result<bool> {
        Ok(self.owner(key).await?.as_deref() == Some(owner))
    }

    /// For each key, whether a lock exists (works across cluster slots).
    pub async fn exists<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<bool>> {
        let pipeline = self.inner.transport.pipeline();
        for key in keys {
            let _: Value = pipeline.exists(key.as_ref()).await.classify()?;
        }
        let replies: Vec<i64> = pipeline.all().await.classify()?;
        Ok(replies.into_iter().map(|n| n > 0).collect())
    }

    /// Closes the notification connection now. Held guards keep working until released.
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
