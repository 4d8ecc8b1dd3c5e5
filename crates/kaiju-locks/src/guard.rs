//! `LockGuard`: a held lock, its renewal, and the signal that it was lost.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;
use crate::keys::LockKeys;
use crate::locks::{AcquireOptions, Locks, RENEW};

/// A held lock (or set of locks from [`Locks::acquire_many`]).
///
/// - [`release`](Self::release) releases it (compare-and-delete) and stops renewal first.
/// - While held with `renew`, it is extended every `lease / 3`. If a renewal finds the lock gone
///   or owned by someone else, or no renewal succeeded for a whole lease, the guard is marked
///   lost: [`is_lost`](Self::is_lost) turns true and [`lost`](Self::lost) resolves, so the
///   critical section can stop. Renewal then stops.
/// - Dropping the guard never blocks: the release runs in the background on the current Tokio
///   runtime (or, outside one, the lock expires after its lease).
#[derive(Debug)]
pub struct LockGuard {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    locks: Locks,
    keys: Vec<LockKeys>,
    owner: String,
    tokens: Vec<u64>,
    lost: watch::Receiver<bool>,
    renewal: Option<JoinHandle<()>>,
}

impl LockGuard {
    pub(crate) fn new(
        locks: &Locks,
        keys: Vec<LockKeys>,
        owner: String,
        tokens: Vec<u64>,
        options: &AcquireOptions,
    ) -> Self {
        let (lost_tx, lost) = watch::channel(false);
        let renewal = options.renew.then(|| {
            tokio::spawn(renew(
                locks.clone(),
                keys.clone(),
                owner.clone(),
                tokens.clone(),
                options.lease,
                lost_tx,
            ))
        });
        Self {
            held: Some(Held {
                locks: locks.clone(),
                keys,
                owner,
                tokens,
                lost,
                renewal,
            }),
        }
    }

    /// The lock key (the first one for several locks).
    pub fn key(&self) -> &str {
        self.held
            .as_ref()
            .and_then(|h| h.keys.first())
            .map_or("", |k| k.lock.as_str())
    }

    /// The owner written in the lock.
    pub fn owner(&self) -> &str {
        self.held.as_ref().map_or("", |h| h.owner.as_str())
    }

    /// The fencing token: strictly larger than every earlier token of this key. Hand it to the
    /// resource the lock protects, and have the resource reject writes with a smaller token than
    /// it has seen; that stops a holder that paused past its lease from doing damage.
    pub fn token(&self) -> u64 {
        self.held
            .as_ref()
            .and_then(|h| h.tokens.first().copied())
            .unwrap_or(0)
    }

    /// The fencing tokens of every key, in the order given to `acquire_many`.
    pub fn tokens(&self) -> &[u64] {
        self.held.as_ref().map_or(&[], |h| h.tokens.as_slice())
    }

    /// Whether the lock is known to be lost (expired or taken while held).
    pub fn is_lost(&self) -> bool {
        self.held.as_ref().is_some_and(|h| *h.lost.borrow())
    }

    /// Resolves when the lock is lost. Never resolves while it is held. Use it with
    /// `tokio::select!` around the critical section.
    pub async fn lost(&self) {
        let Some(held) = &self.held else { return };
        let mut lost = held.lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // Renewal ended without a verdict (the lock was not renewed): never resolve.
            std::future::pending::<()>().await;
        }
    }

    /// Releases the lock. Renewal stops before the release is sent. Fails with
    /// [`LockError::NotOwner`](crate::LockError::NotOwner) if it was lost meanwhile.
    pub async fn release(mut self) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        if let Some(renewal) = &held.renewal {
            renewal.abort();
        }
        let mut result = Ok(());
        for (keys, token) in held.keys.iter().zip(&held.tokens) {
            if let Err(e) = held
                .locks
                .release_keys(keys, &held.owner, Some(*token))
                .await
            {
                result = Err(e);
            }
        }
        result
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else { return };
        if let Some(renewal) = &held.renewal {
            renewal.abort();
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for (keys, token) in held.keys.iter().zip(&held.tokens) {
                    if let Err(e) = held.locks.release_keys(keys, &held.owner, Some(*token)).await {
                        tracing::debug!(key = %keys.lock, error = %e, "background release of a dropped lock guard failed");
                    }
                }
            });
        }
    }
}

/// Extends every lock of a guard every `lease / 3` until lost or aborted.
async fn renew(
    locks: Locks,
    keys: Vec<LockKeys>,
    owner: String,
    tokens: Vec<u64>,
    lease: Duration,
    lost: watch::Sender<bool>,
) {
    let period = (lease / 3).max(Duration::from_millis(10));
    let lease_ms = i64::try_from(lease.as_millis())
        .unwrap_or(i64::MAX)
        .to_string();
    let mut last_success = Instant::now();
    loop {
        tokio::time::sleep(period).await;
        let mut all_held = true;
        let mut failed = false;
        for (k, token) in keys.iter().zip(&tokens) {
            let token = token.to_string();
            let renewed: std::result::Result<i64, _> = RENEW
                .run(
                    &locks.inner.transport,
                    vec![k.lock.as_str(), k.fence.as_str()],
                    vec![owner.as_str(), token.as_str(), lease_ms.as_str()],
                )
                .await;
            match renewed {
                Ok(1) => {}
                Ok(_) => all_held = false,
                Err(e) => {
                    tracing::warn!(key = %k.lock, error = %e, "lock renewal failed; retrying");
                    failed = true;
                }
            }
        }
        if !all_held || (failed && last_success.elapsed() >= lease) {
            tracing::warn!(key = %keys.first().map_or("", |k| k.lock.as_str()), "lock lost while held");
            lost.send_replace(true);
            return;
        }
        if !failed {
            last_success = Instant::now();
        }
    }
}
