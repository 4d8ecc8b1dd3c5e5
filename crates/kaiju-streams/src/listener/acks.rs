//! Acknowledgements, sent as entries finish.
//!
//! An entry is acked as soon as it is done, not when the slowest entry of its batch is: its id
//! goes into a queue, and one task sends the queue as one `XACK`. The task lingers up to
//! [`LINGER`] (or until a batch worth of ids is queued) before it sends, so the entries of a batch,
//! which finish close together, travel in one XACK instead of a handful; acking runs beside the
//! reads on the shared pool.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::id::StreamId;
use crate::listener::Shared;

/// How long the first queued id waits for others before the XACK goes out.
const LINGER: Duration = Duration::from_millis(1);

/// Wait before sending a failed XACK again (XACK is idempotent, so resending is safe).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Ids waiting to be acked.
pub(crate) struct Acks {
    queue: Mutex<Vec<StreamId>>,
    /// The queue is no longer empty.
    ready: Notify,
    /// The queue holds `full` ids: send without lingering.
    filled: Notify,
    full: usize,
}

impl Acks {
    /// Acks for a listener whose batches have `full` entries.
    pub(crate) fn new(full: usize) -> Self {
        Self {
            queue: Mutex::default(),
            ready: Notify::new(),
            filled: Notify::new(),
            full: full.max(1),
        }
    }

    /// Queues an id for the next XACK. Only the first id of an empty queue wakes the ack task:
    /// the others join it, so a batch of entries costs one wake-up, not one each.
    pub(crate) fn push(&self, id: StreamId) {
        let len = {
            let mut queue = self.queue();
            queue.push(id);
            queue.len()
        };
        if len == 1 {
            self.ready.notify_one();
        }
        if len == self.full {
            self.filled.notify_one();
        }
    }

    fn queue(&self) -> MutexGuard<'_, Vec<StreamId>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn len(&self) -> usize {
        self.queue().len()
    }

    fn take(&self) -> Vec<StreamId> {
        std::mem::take(&mut *self.queue())
    }

    /// Returns ids whose XACK failed; the ack task sends them with the next ones.
    fn put_back(&self, ids: Vec<StreamId>) {
        self.queue().extend(ids);
        self.ready.notify_one();
    }
}

impl<B, H> Shared<B, H> {
    /// Sends queued acks until `done` and the queue is empty. An XACK that fails is sent again
    /// (an entry that is done must not be redelivered for want of its ack); acked ids leave the
    /// in-flight set.
    pub(crate) async fn ack_loop(&self, done: kaiju_core::Shutdown) {
        loop {
            if !done.is_triggered() && (1..self.acks.full).contains(&self.acks.len()) {
                tokio::select! {
                    () = self.acks.filled.notified() => {}
                    () = tokio::time::sleep(LINGER) => {}
                    () = done.triggered() => {}
                }
            }
            let ids = self.acks.take();
            if ids.is_empty() {
                if done.is_triggered() {
                    return;
                }
                tokio::select! {
                    () = self.acks.ready.notified() => {}
                    () = done.triggered() => {}
                }
                continue;
            }
            match self.ack(&ids).await {
                Ok(()) => self.in_flight.remove(&ids),
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, count = ids.len(), "ack failed; sending it again");
                    self.acks.put_back(ids);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}
