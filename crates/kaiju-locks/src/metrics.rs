//! The locks' metrics (docs/metrics.md). No label carries a key (keys are unbounded); the
//! handles are registered once per [`Locks`](crate::Locks), so that an event costs one atomic
//! add.

use metrics::{Counter, Histogram};

/// The handles of one [`Locks`](crate::Locks), shared with its guards.
#[derive(Debug)]
pub(crate) struct LockMetrics {
    /// Locks taken (every successful acquire; an `acquire_many` counts once).
    pub(crate) acquisitions: Counter,
    /// Single-key acquires whose first try found the lock taken, and that queued.
    pub(crate) waits: Counter,
    /// How long a queued acquire waited before it got the lock.
    pub(crate) wait_seconds: Histogram,
    /// Queued acquires that got the lock: a release handed it over.
    pub(crate) handoffs: Counter,
    /// Renewals that failed (an error, or the lock found gone or taken).
    pub(crate) renewal_failures: Counter,
    /// Held locks declared lost (see [`LockGuard::lost`](crate::LockGuard::lost)).
    pub(crate) losses: Counter,
}

impl LockMetrics {
    /// Registers the handles with the recorder installed now.
    pub(crate) fn new() -> Self {
        Self {
            acquisitions: metrics::counter!("kaiju_lock_acquisitions_total"),
            waits: metrics::counter!("kaiju_lock_waits_total"),
            wait_seconds: metrics::histogram!("kaiju_lock_wait_seconds"),
            handoffs: metrics::counter!("kaiju_lock_handoffs_total"),
            renewal_failures: metrics::counter!("kaiju_lock_renewal_failures_total"),
            losses: metrics::counter!("kaiju_lock_losses_total"),
        }
    }
}
