//! The read loop: what to read next, and the hand-off of each entry to a task of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kaiju_core::Shutdown;
use kaiju_transport::{BlockingConnection, TransportError};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::StreamError;
use crate::handler::Handler;
use crate::id::StreamId;
use crate::listener::commands::{ConsumerLease, Lease, Reclaimed};
use crate::listener::reply::Item;
use crate::listener::retries::Retry;
use crate::listener::{Counters, LEASE, Shared};

/// Pause after an error of Redis itself (connection lost, server restarting).
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Where the loop stands between two reads.
struct Cursor {
    /// While recovering this consumer's own pending entries (after a start or a re-created
    /// group): the id after which the next page starts.
    recovering: Option<StreamId>,
    /// Where the next XAUTOCLAIM scan starts.
    claim_from: StreamId,
    next_claim: Instant,
    next_housekeeping: Instant,
    next_pause_check: Instant,
    paused: bool,
    /// Whether the last read of new entries filled a whole batch (then more are likely
    /// waiting, and the next read does not block).
    last_read_full: bool,
}

impl<B, H> Shared<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// Runs until `shutdown`; then lets the entries in flight finish, sends their acks, and
    /// returns. `Listener::stop` bounds all of it with its deadline; if the future is dropped
    /// instead, every task it started is aborted with it, and unfinished entries stay pending.
    pub(crate) async fn run(self: Arc<Self>, reader: BlockingConnection, shutdown: Shutdown) {
        let batch = self.settings.max_batch_size;
        let limit = batch.saturating_mul(self.settings.max_parallel_batches);
        let permits = Arc::new(Semaphore::new(limit));
        let mut entries = JoinSet::new();
        // Helpers live in a JoinSet too: dropping this future aborts them with it.
        let mut helpers = JoinSet::new();
        let finished = Shutdown::new();
        helpers.spawn({
            let (shared, finished) = (self.clone(), finished.clone());
            async move { shared.ack_loop(finished).await }
        });
        helpers.spawn(keep_lease(self.lease.clone(), finished.clone()));

        let now = Instant::now();
        let mut cursor = Cursor {
            recovering: Some(StreamId::ZERO),
            claim_from: StreamId::ZERO,
            next_claim: now,
            next_housekeeping: now + Duration::from_millis(self.settings.trim_interval_ms),
            next_pause_check: now,
            paused: false,
            last_read_full: false,
        };

        while !shutdown.is_triggered() {
            while let Some(done) = entries.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(stream = %self.stream, error = %e, "an entry task failed");
                }
            }
            if Instant::now() >= cursor.next_pause_check {
                cursor.paused = self.paused().await.unwrap_or(cursor.paused);
                cursor.next_pause_check =
                    Instant::now() + Duration::from_millis(self.settings.pause_check_interval_ms);
            }
            if cursor.paused {
                tokio::select! {
                    () = shutdown.triggered() => break,
                    () = tokio::time::sleep_until(cursor.next_pause_check.into()) => continue,
                }
            }
            if Instant::now() >= cursor.next_housekeeping {
                cursor.next_housekeeping =
                    Instant::now() + Duration::from_millis(self.settings.trim_interval_ms);
                self.housekeeping().await;
            }

            // A whole batch worth of room first, so that in-flight entries stay bounded.
            let mut room = tokio::select! {
                () = shutdown.triggered() => break,
                permit = permits.clone().acquire_many_owned(batch as u32) => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let items = match self.next_items(&reader, &mut cursor).await {
                Ok(items) => items,
                Err(StreamError::Transport(TransportError::NoGroup { .. })) => {
                    tracing::warn!(stream = %self.stream, group = %self.group, "group or stream vanished; re-creating it");
                    if let Err(e) = self.ensure_group().await {
                        tracing::warn!(error = %e, "re-creating the group failed");
                    }
                    cursor.recovering = Some(StreamId::ZERO);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "read failed; retrying");
                    // A read or claim whose reply was lost may still have delivered entries to
                    // this consumer (they are sent once, never resent): they wait in its
                    // pending list, so read that again first.
                    cursor.recovering = Some(StreamId::ZERO);
                    tokio::select! {
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep(ERROR_PAUSE) => continue,
                    }
                }
            };
            for item in items {
                let entry = match item {
                    Item::Entry(entry) => entry,
                    Item::Deleted(id) => {
                        self.lost(id, true);
                        continue;
                    }
                };
                let permit = match room.split(1) {
                    Some(permit) => permit,
                    // More entries than asked for: wait for room rather than exceed the bound.
                    None => match permits.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let (shared, shutdown) = (self.clone(), shutdown.clone());
                entries.spawn(async move {
                    shared.process(entry, shutdown).await;
                    drop(permit);
                });
            }
        }
        // Graceful: finish what was read, then send the last acks.
        while entries.join_next().await.is_some() {}
        finished.trigger();
        while helpers.join_next().await.is_some() {}
    }

    /// This consumer's own pending entries first (after a start), page by page; then retries
    /// that are due; then entries claimed from other consumers; then new entries.
    async fn next_items(
        &self,
        reader: &BlockingConnection,
        cursor: &mut Cursor,
    ) -> crate::Result<Vec<Item>> {
        let batch = self.settings.max_batch_size;
        if let Some(after) = cursor.recovering {
            let page = self.read(reader, &after.to_string(), batch, None).await?;
            cursor.recovering = page.last().map(item_id);
            let mine = self.take_unless_in_flight(page);
            if !mine.is_empty() {
                return Ok(mine);
            }
            if cursor.recovering.is_some() {
                return Ok(Vec::new());
            }
        }

        let due = self.retries.due(batch);
        if !due.is_empty() {
            let claimed = self.retry_due(due).await;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }

        if let Some(min_idle) = self.settings.pending_messages_time_ms
            && Instant::now() >= cursor.next_claim
        {
            let claimed = self.autoclaim(min_idle, cursor.claim_from).await?;
            for id in claimed.deleted {
                self.lost(id, false);
            }
            if claimed.next == StreamId::ZERO {
                cursor.next_claim = Instant::now() + Duration::from_millis((min_idle / 2).max(100));
            }
            cursor.claim_from = claimed.next;
            let claimed = self.take_unless_in_flight(claimed.items);
            if !claimed.is_empty() {
                Counters::add(&self.counters.claimed, claimed.len() as u64);
                return Ok(claimed);
            }
        }

        // After a full batch more entries are likely waiting: skip BLOCK, which costs a
        // blocking-command round trip in the client even when data is there. Otherwise block,
        // but not past the next due retry.
        let block = (!cursor.last_read_full).then(|| {
            let wait = Duration::from_millis(self.settings.max_wait_time_ms);
            let until_retry = self
                .retries
                .next_due()
                .map_or(wait, |due| due.saturating_duration_since(Instant::now()));
            wait.min(until_retry).as_millis().max(1) as u64
        });
        let new = self.read(reader, ">", batch, block).await?;
        cursor.last_read_full = new.len() >= batch;
        Ok(self.take_unless_in_flight(new))
    }

    /// Claims back the retries that are due. A claim that fails goes back into the schedule;
    /// a retry that is no longer this consumer's is dropped from it.
    async fn retry_due(&self, due: Vec<Retry>) -> Vec<Item> {
        let mut claimed = Vec::new();
        let mut failed = Vec::new();
        for retry in due {
            match self.reclaim(retry.id).await {
                Ok(Reclaimed::Entry(entry)) => claimed.push(Item::Entry(entry)),
                Ok(Reclaimed::Deleted) => self.lost(retry.id, true),
                Ok(Reclaimed::NotMine) => {
                    tracing::debug!(stream = %self.stream, id = %retry.id, "a retry was taken over by another consumer (or acked); not retrying it here");
                    self.unmark_in_flight(&[retry.id]);
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, id = %retry.id, error = %e, "claiming an entry back for its retry failed; trying again");
                    failed.push(retry);
                }
            }
        }
        self.retries.postpone(failed, ERROR_PAUSE);
        claimed
    }

    /// Marks entries in flight and keeps them, except those already in flight here (an entry
    /// handled or awaiting a retry here is never started twice).
    fn take_unless_in_flight(&self, items: Vec<Item>) -> Vec<Item> {
        let Ok(mut in_flight) = self.in_flight.lock() else {
            return items;
        };
        items
            .into_iter()
            .filter(|item| match item {
                Item::Entry(entry) => in_flight.insert(entry.id),
                Item::Deleted(_) => true,
            })
            .collect()
    }

    /// Trimming and the removal of idle consumers, every `trim_interval_ms`.
    async fn housekeeping(&self) {
        match self.trim().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(stream = %self.stream, trimmed = n, "trimmed"),
            Err(e) => tracing::warn!(stream = %self.stream, error = %e, "trim failed"),
        }
        if let Some(idle) = self.settings.remove_idle_consumers_ms {
            match self
                .remove_idle_consumers(Duration::from_millis(idle))
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    Counters::add(&self.counters.consumers_removed, n);
                    tracing::info!(stream = %self.stream, group = %self.group, removed = n, "removed idle consumers with nothing pending");
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "removing idle consumers failed");
                }
            }
        }
    }
}

impl<B, H> Shared<B, H> {
    /// A pending entry whose content was deleted from the stream before it was handled. It is
    /// acked (Redis 7 has already dropped the ids XAUTOCLAIM reports, so `ack == false` there).
    pub(crate) fn lost(&self, id: StreamId, ack: bool) {
        // Counted once: until its ack is sent, the id stays "in flight", and a claim pass that
        // reports it deleted again (it is still in the pending list) is not counted twice.
        let first = self.in_flight.lock().is_ok_and(|mut f| f.insert(id) || ack);
        if !first {
            return;
        }
        tracing::warn!(stream = %self.stream, %id, "a pending entry was deleted from the stream before it was handled (XDEL or trimming); it is lost");
        Counters::add(&self.counters.lost, 1);
        if ack {
            self.acks.push(id);
        } else {
            self.unmark_in_flight(&[id]);
        }
    }

    pub(crate) fn unmark_in_flight(&self, ids: &[StreamId]) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            for id in ids {
                in_flight.remove(id);
            }
        }
    }
}

fn item_id(item: &Item) -> StreamId {
    match item {
        Item::Entry(entry) => entry.id,
        Item::Deleted(id) => *id,
    }
}

/// Renews the consumer-name lease until `finished`.
async fn keep_lease(lease: Arc<ConsumerLease>, finished: Shutdown) {
    loop {
        tokio::select! {
            () = finished.triggered() => return,
            () = tokio::time::sleep(LEASE / 3) => {}
        }
        match lease.run(LEASE, false).await {
            Ok(Lease::Held) => {}
            Ok(Lease::Taken(_)) => tracing::error!(
                consumer = %lease.consumer(),
                "another listener instance holds this consumer name: two processes are reading as the same consumer"
            ),
            Err(e) => tracing::warn!(error = %e, "renewing the consumer-name lease failed"),
        }
    }
}
