//! Acknowledgements, sent as entries finish.
//!
//! An entry is acked the moment it is done, not when the slowest entry of its batch is: its id
//! goes into a queue, and one task sends the queue as one `XACK` whenever it is not empty.
//! Under load the ids of many entries travel together (those that finished while the previous
//! XACK was on the wire), so acking costs no extra round trips, and it runs beside the reads.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::id::StreamId;
use crate::listener::Shared;

/// Wait before sending a failed XACK again (XACK is idempotent, so resending is safe).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Ids waiting to be acked.
#[derive(Default)]
pub(crate) struct Acks {
    queue: Mutex<Vec<StreamId>>,
    ready: Notify,
}

impl Acks {
    /// Queues an id for the next XACK.
    pub(crate) fn push(&self, id: StreamId) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.push(id);
        }
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<StreamId> {
        self.queue
            .lock()
            .map(|mut queue| std::mem::take(&mut *queue))
            .unwrap_or_default()
    }

    fn put_back(&self, ids: Vec<StreamId>) {
        if let Ok(mut queue) = self.queue.lock() {
            queue.extend(ids);
        }
    }
}

impl<B, H> Shared<B, H> {
    /// Sends queued acks until `done` and the queue is empty. An XACK that fails is sent again
    /// (an entry that is done must not be redelivered for want of its ack); acked ids leave the
    /// in-flight set.
    pub(crate) async fn ack_loop(&self, done: kaiju_core::Shutdown) {
        loop {
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
                Ok(()) => self.unmark_in_flight(&ids),
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, count = ids.len(), "ack failed; sending it again");
                    self.acks.put_back(ids);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}
