//! Failed entries waiting for their next delivery.
//!
//! A failed entry stays pending in Redis, owned by this consumer; here it waits out its backoff.
//! It leaves the schedule only once it was claimed back for the retry, or once Redis showed it
//! is no longer this consumer's to retry (another consumer claimed it, or it was deleted). A
//! retry whose claim failed (timeout, failover) goes back into the schedule.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::id::StreamId;

/// One scheduled retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) due: Instant,
    pub(crate) id: StreamId,
}

#[derive(Default)]
pub(crate) struct Retries(Mutex<Vec<Retry>>);

impl Retries {
    fn all(&self) -> MutexGuard<'_, Vec<Retry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn schedule(&self, retry: Retry) {
        self.all().push(retry);
    }

    /// Takes up to `max` retries that are due.
    pub(crate) fn due(&self, max: usize) -> Vec<Retry> {
        let now = Instant::now();
        let mut due = Vec::new();
        self.all().retain(|r| {
            let take = r.due <= now && due.len() < max;
            if take {
                due.push(*r);
            }
            !take
        });
        due
    }

    /// Puts retries back after their claim failed, to be tried again after `pause`.
    pub(crate) fn postpone(&self, retries: impl IntoIterator<Item = Retry>, pause: Duration) {
        let due = Instant::now() + pause;
        self.all()
            .extend(retries.into_iter().map(|r| Retry { due, ..r }));
    }

    /// How many retries wait.
    pub(crate) fn len(&self) -> usize {
        self.all().len()
    }

    /// Takes every scheduled retry, due or not.
    pub(crate) fn take_all(&self) -> Vec<Retry> {
        std::mem::take(&mut *self.all())
    }

    /// Forgets every scheduled retry (a new run recovers them from Redis's pending list).
    pub(crate) fn clear(&self) {
        self.all().clear();
    }

    /// The earliest due time, if any retry waits.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.all().iter().map(|r| r.due).min()
    }
}
