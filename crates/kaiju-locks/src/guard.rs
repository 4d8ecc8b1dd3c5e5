//! `LockGuard`: a held lock, its renewal, and the signal that it was lost.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::batch::Batcher;
use crate::keepers::{Due, Entry};
use crate::keys::LockKeys;
use crate::metrics::LockMetrics;
use crate::ops::{self, Released};
use crate::{LockError, Result};

/// A held lock (or set of locks from [`Locks::acquire_many`](crate::Locks::acquire_many)).
///
/// - [`release`](Self::release) releases it (compare-and-delete) and stops renewal first.
/// - While held with `renew`, it is extended every `lease / 3`.
/// - [`lost`](Self::lost) resolves, and [`is_lost`](Self::is_lost) turns true, as soon as the
///   holder can no longer be sure it holds the lock: when a renewal finds it gone or taken, and
///   at the latest at *(send time of the last successful renewal, or of the acquire) + lease −
///   lease/10*, whether or not a renewal is still waiting for its reply. Redis expires the lock
///   no earlier than that send time plus the lease, so the signal comes before anyone else can
///   hold the lock (as long as this process's timers run on time).
/// - Dropping the guard never blocks: the release runs in the background on the Tokio runtime
///   the lock was acquired on, wherever the guard is dropped (once that runtime has shut down,
///   the lock expires after its lease).
#[derive(Debug)]
pub struct LockGuard {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    set: Arc<Locked>,
    lost: watch::Receiver<bool>,
}

/// The timers that start guards' keepers: one per `Locks` and runtime, see [`crate::keepers`].
pub(crate) type Keepers = crate::keepers::Keepers<Locked>;

/// The locks of one guard, shared with its keeper (one allocation, not a copy of every key
/// name per guard).
#[derive(Debug)]
pub(crate) struct Locked {
    /// The runtime the guard was made on: a guard dropped elsewhere releases there.
    runtime: tokio::runtime::Handle,
    batcher: Arc<Batcher>,
    keepers: Arc<Keepers>,
    metrics: Arc<LockMetrics>,
    keys: Vec<LockKeys>,
    owner: String,
    tokens: Vec<u64>,
    lease: Lease,
    lost: watch::Sender<bool>,
    /// Until when the lock is surely held (moved on by every successful renewal).
    safe_until: Mutex<Instant>,
    keeper: Mutex<Keeper>,
}

/// Where a guard's keeper is.
#[derive(Debug)]
enum Keeper {
    /// Being handed to the timer (which may start it at once).
    Scheduling,
    /// Not started: the timer starts it when the first renewal (or the loss deadline) comes.
    Scheduled(Entry),
    Running(JoinHandle<()>),
    /// The guard let go (or never had one).
    Stopped,
}

impl Due for Locked {
    fn start(self: Arc<Self>) {
        let mut keeper = lock(&self.keeper);
        if matches!(*keeper, Keeper::Scheduling | Keeper::Scheduled(_)) {
            *keeper = Keeper::Running(self.runtime.spawn(keep(self.clone())));
        }
    }
}

impl Locked {
    /// Stops renewal: takes back the keeper's timer entry, or aborts the keeper.
    fn stop_keeper(&self) {
        let keeper = std::mem::replace(&mut *lock(&self.keeper), Keeper::Stopped);
        match keeper {
            Keeper::Scheduled(entry) => self.keepers.cancel(entry),
            Keeper::Running(task) => task.abort(),
            Keeper::Scheduling | Keeper::Stopped => {}
        }
    }

    fn first_key(&self) -> &str {
        self.keys.first().map_or("", |k| k.lock.as_str())
    }

    /// Releases every lock; the last error, if any.
    async fn release(&self) -> Result<()> {
        let mut result = Ok(());
        for (keys, token) in self.keys.iter().zip(&self.tokens) {
            if let Err(e) = release(&self.batcher, keys, &self.owner, *token).await {
                result = Err(e);
            }
        }
        result
    }
}

/// What a guard keeps alive, and until when it may trust it holds the lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub(crate) duration: Duration,
    pub(crate) renew: bool,
    /// When the acquire script was sent: the lock expires no earlier than this plus the lease.
    pub(crate) sent_at: Instant,
}

impl Lease {
    /// How long after a successful send the lock is surely held: the lease less a tenth.
    fn trusted(&self) -> Duration {
        self.duration.saturating_sub(self.duration / 10)
    }

    /// How often a renewing guard renews.
    fn period(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(10))
    }

    /// When the keeper has something to do: the first renewal, or the loss deadline.
    fn keeper_due(&self) -> Instant {
        if self.renew {
            self.sent_at + self.period()
        } else {
            self.sent_at + self.trusted()
        }
    }
}

impl LockGuard {
    pub(crate) fn new(
        batcher: &Arc<Batcher>,
        keepers: &Arc<Keepers>,
        metrics: &Arc<LockMetrics>,
        keys: Vec<LockKeys>,
        owner: String,
        tokens: Vec<u64>,
        lease: Lease,
    ) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let set = Arc::new(Locked {
            runtime: tokio::runtime::Handle::current(),
            batcher: batcher.clone(),
            keepers: keepers.clone(),
            metrics: metrics.clone(),
            keys,
            owner,
            tokens,
            lease,
            lost: lost_tx,
            safe_until: Mutex::new(lease.sent_at + lease.trusted()),
            keeper: Mutex::new(Keeper::Scheduling),
        });
        // Not under the keeper's lock: the timer may start the keeper before `schedule`
        // returns (and, its runtime gone, from inside it). Recorded only if not started yet.
        let entry = keepers.schedule(lease.keeper_due(), set.clone());
        {
            let mut keeper = lock(&set.keeper);
            if matches!(*keeper, Keeper::Scheduling) {
                *keeper = Keeper::Scheduled(entry);
            }
        }
        Self {
            held: Some(Held { set, lost }),
        }
    }

    /// The lock key (the first one for several locks).
    pub fn key(&self) -> &str {
        self.held.as_ref().map_or("", |h| h.set.first_key())
    }

    /// The owner written in the lock.
    pub fn owner(&self) -> &str {
        self.held.as_ref().map_or("", |h| h.set.owner.as_str())
    }

    /// The fencing token: strictly larger than every earlier token of this key, also across
    /// expired side keys, server restarts and failovers (it is derived from the server clock).
    /// Hand it to the resource the lock protects, and have the resource reject writes with a
    /// smaller token than it has seen; that stops a holder that paused past its lease from
    /// doing damage.
    pub fn token(&self) -> u64 {
        self.held
            .as_ref()
            .and_then(|h| h.set.tokens.first().copied())
            .unwrap_or(0)
    }

    /// The fencing tokens of every key, in the order given to `acquire_many`.
    pub fn tokens(&self) -> &[u64] {
        self.held.as_ref().map_or(&[], |h| h.set.tokens.as_slice())
    }

    /// Whether the lock may be lost (taken, expired, or not renewed in time). Reads the clock
    /// too, so it is right even when this process's timers ran late (a blocked executor).
    pub fn is_lost(&self) -> bool {
        self.held
            .as_ref()
            .is_some_and(|h| *h.lost.borrow() || Instant::now() >= *lock(&h.set.safe_until))
    }

    /// Resolves when the lock may be lost; never while it is surely held. Use it with
    /// `tokio::select!` around the critical section.
    pub async fn lost(&self) {
        let Some(held) = &self.held else { return };
        let mut lost = held.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // Not reached: the guard's parts (and so the sender) live as long as the guard.
            std::future::pending::<()>().await;
        }
    }

    /// Releases the lock. Renewal stops before the release is sent. Fails with
    /// [`LockError::NotOwner`] if it was lost meanwhile.
    pub async fn release(mut self) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        held.set.stop_keeper();
        held.set.release().await
    }
}

/// Releases one lock of a guard; a lock held by someone else is [`LockError::NotOwner`].
async fn release(batcher: &Arc<Batcher>, keys: &LockKeys, owner: &str, token: u64) -> Result<()> {
    match ops::release(batcher, keys, owner, Some(token)).await? {
        Released::Yes => Ok(()),
        Released::NotOwner | Released::Superseded => Err(LockError::NotOwner {
            owner: ops::owner(batcher.transport(), &keys.lock).await?,
            key: keys.lock.clone(),
        }),
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        held.set.stop_keeper();
        // On the guard's own runtime, wherever it is dropped (if that runtime has shut down,
        // the task never runs and the lock expires after its lease).
        let runtime = held.set.runtime.clone();
        runtime.spawn(async move {
            if let Err(e) = held.set.release().await {
                tracing::debug!(key = %held.set.first_key(), error = %e, "background release of a dropped lock guard failed");
            }
        });
    }
}

/// Renews every lock of a guard every `lease / 3` (if asked to), and declares the lock lost
/// when a renewal finds it gone, or when the time it is surely held runs out first.
async fn keep(set: Arc<Locked>) {
    let lease = set.lease;
    let first = set.first_key();
    let declare = |why: &str| {
        tracing::warn!(key = %first, why, "lock lost while held");
        set.metrics.losses.increment(1);
        set.lost.send_replace(true);
    };
    let trusted = lease.trusted();
    let mut valid_until = lease.sent_at + trusted;
    if !lease.renew {
        tokio::time::sleep_until(valid_until).await;
        declare("its lease ran out without renewal");
        return;
    }
    let period = lease.period();
    let mut next = lease.sent_at + period;
    loop {
        // The wait for the next renewal and the renewal itself both race the deadline.
        let renewal = async {
            tokio::time::sleep_until(next).await;
            let sent = Instant::now();
            (sent, renew_all(&set, lease.duration).await)
        };
        let (sent, renewed) = tokio::select! {
            () = tokio::time::sleep_until(valid_until) => {
                declare("no renewal succeeded in time");
                return;
            }
            renewed = renewal => renewed,
        };
        match renewed {
            Ok(true) => {
                valid_until = sent + trusted;
                *lock(&set.safe_until) = valid_until;
                next = sent + period;
            }
            Ok(false) => {
                set.metrics.renewal_failures.increment(1);
                declare("a renewal found it gone or taken");
                return;
            }
            Err(e) => {
                set.metrics.renewal_failures.increment(1);
                tracing::warn!(key = %first, error = %e, "lock renewal failed; retrying");
                next = Instant::now() + (period / 4).max(Duration::from_millis(10));
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Renews every lock; `Ok(false)` if any of them is no longer held by this acquisition.
async fn renew_all(set: &Locked, lease: Duration) -> Result<bool> {
    for (k, token) in set.keys.iter().zip(&set.tokens) {
        if !ops::renew(set.batcher.transport(), k, &set.owner, *token, lease).await? {
            return Ok(false);
        }
    }
    Ok(true)
}
