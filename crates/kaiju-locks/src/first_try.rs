//! The first try of an acquire, run in the caller's own task.
//!
//! Most acquires find the lock free; sending their script from the caller's task, not from a
//! task spawned for it, saves a spawn and two task wake-ups per acquire (about a quarter of an
//! uncontended acquire+release on a 2-core machine). Cancel safety is kept: if the caller drops
//! the future while the script is in flight, the rest of the try moves to a task of its own,
//! which waits for the script's outcome and undoes a lock it took, exactly as the acquire task
//! does for the later, queued tries.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::batch::Batcher;
use crate::keys::LockKeys;
use crate::ops::{self, Attempt};
use crate::{LockError, Result};

/// What one try needs, owned, so that it can outlive its caller.
pub(crate) struct Try {
    pub(crate) batcher: Arc<Batcher>,
    pub(crate) keys: LockKeys,
    pub(crate) owner: String,
    pub(crate) lease: Duration,
    /// The attempt id (the acquire script's replay key).
    pub(crate) id: String,
    pub(crate) waiter_alive: Duration,
    /// Whether the caller waits: if not, a try that finds others waiting also clears waiters
    /// that are gone (crashed, gave up) and takes the lock if nobody is left.
    pub(crate) wait: bool,
}

/// The token if the lock was free and nobody waited, `None` if not.
async fn try_once(parts: &Try) -> Result<Option<u64>> {
    let found = ops::first_try(
        &parts.batcher,
        &parts.keys,
        &parts.owner,
        parts.lease,
        &parts.id,
    )
    .await?;
    Ok(match found {
        ops::FirstTry::Taken(token) => Some(token),
        ops::FirstTry::Held => None,
        // A waiting caller joins the queue, whose tries clear dead waiters themselves.
        ops::FirstTry::Waiters if parts.wait => None,
        ops::FirstTry::Waiters => {
            let attempt = Attempt {
                keys: &parts.keys,
                owner: &parts.owner,
                lease: parts.lease,
                id: &parts.id,
                ticket: "",
                waiter_alive: parts.waiter_alive,
            };
            ops::acquire(parts.batcher.transport(), &attempt).await?
        }
    })
}

type Running = Pin<Box<dyn Future<Output = (Try, Result<Option<u64>>)> + Send>>;

/// The first try: the token if the lock was free and nobody waited, `None` if not. Gives its
/// parts back for the later tries.
pub(crate) struct FirstTry {
    running: Option<Running>,
    /// The runtime it was started on: a drop elsewhere (a plain thread) still finishes it there.
    runtime: Option<tokio::runtime::Handle>,
}

impl FirstTry {
    pub(crate) fn new(parts: Try) -> Self {
        let running: Running = Box::pin(async move {
            let outcome = try_once(&parts).await;
            (parts, outcome)
        });
        Self {
            running: Some(running),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl Future for FirstTry {
    type Output = (Try, Result<Option<u64>>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(running) = self.running.as_mut() else {
            // Polled after it finished: a bug in this crate, never reached from outside.
            return Poll::Pending;
        };
        let done = std::task::ready!(running.as_mut().poll(cx));
        self.running = None;
        Poll::Ready(done)
    }
}

impl Drop for FirstTry {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        // Only when its runtime is gone (shut down) can nothing run it: a lock it took then
        // expires after its lease.
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        runtime.spawn(async move {
            let (parts, outcome) = running.await;
            // Taken, or unknown (the reply was lost): undo it if this attempt holds the lock.
            if matches!(outcome, Ok(Some(_)) | Err(LockError::Transport(_))) {
                tracing::debug!(key = %parts.keys.lock, "the caller stopped waiting; releasing the lock it would have got");
                let _ = ops::abandon(parts.batcher.transport(), &parts.keys, &parts.owner, &parts.id).await;
            }
        });
    }
}
