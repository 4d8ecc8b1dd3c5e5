//! The read loop and the processing of a batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kaiju_core::Shutdown;
use kaiju_transport::BlockingConnection;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::Poll;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::StreamError;
use crate::envelope::{PAYLOAD_FIELD, decode};
use crate::handler::{Handler, Message};
use crate::listener::Shared;
use crate::listener::commands::RawEntry;
use kaiju_transport::TransportError;

/// What became of one entry.
enum Outcome {
    /// Done (handled or dead-lettered): acknowledge it.
    Ack(String),
    /// Failed; try again after a backoff. It stays pending meanwhile.
    Retry(String, u64),
}

/// Pause after an error of Redis itself (connection lost, server restarting).
const ERROR_PAUSE: Duration = Duration::from_millis(200);

impl<B, H> Shared<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// Runs until `shutdown`; then waits for the batches in flight.
    pub(crate) async fn run(self: Arc<Self>, reader: BlockingConnection, shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.settings.max_parallel_batches));
        let mut batches = JoinSet::new();
        let mut own_pending_done = false;
        let mut paused_until_check = Instant::now();
        let mut paused = false;
        let mut next_claim = Instant::now();
        let mut claim_cursor = "0-0".to_owned();
        let mut next_trim = Instant::now() + Duration::from_millis(self.settings.trim_interval_ms);

        while !shutdown.is_triggered() {
            while batches.try_join_next().is_some() {}

            if Instant::now() >= paused_until_check {
                paused = self.paused().await.unwrap_or(paused);
                paused_until_check =
                    Instant::now() + Duration::from_millis(self.settings.pause_check_interval_ms);
            }
            if paused {
                tokio::select! {
                    () = shutdown.triggered() => break,
                    () = tokio::time::sleep_until(paused_until_check.into()) => continue,
                }
            }

            let permit = tokio::select! {
                () = shutdown.triggered() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };

            if Instant::now() >= next_trim {
                next_trim = Instant::now() + Duration::from_millis(self.settings.trim_interval_ms);
                match self.trim().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(stream = %self.stream, trimmed = n, "trimmed"),
                    Err(e) => tracing::warn!(stream = %self.stream, error = %e, "trim failed"),
                }
            }

            let entries = match self
                .next_entries(
                    &reader,
                    &mut own_pending_done,
                    &mut next_claim,
                    &mut claim_cursor,
                )
                .await
            {
                Ok(entries) => entries,
                Err(StreamError::Transport(TransportError::NoGroup { .. })) => {
                    tracing::warn!(stream = %self.stream, group = %self.group, "group or stream vanished; re-creating it");
                    if let Err(e) = self.ensure_group().await {
                        tracing::warn!(error = %e, "re-creating the group failed");
                    }
                    own_pending_done = false;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "read failed; retrying");
                    tokio::select! {
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep(ERROR_PAUSE) => continue,
                    }
                }
            };
            if entries.is_empty() {
                continue;
            }
            let shared = self.clone();
            batches.spawn(async move {
                shared.process_batch(entries).await;
                drop(permit);
            });
        }
        // Graceful: finish what was read. `Listener::stop` bounds this with its deadline.
        while batches.join_next().await.is_some() {}
    }

    /// Own pending entries first (after a restart), then retries that are due, then entries
    /// claimed from other consumers, then new entries.
    async fn next_entries(
        &self,
        reader: &BlockingConnection,
        own_pending_done: &mut bool,
        next_claim: &mut Instant,
        claim_cursor: &mut String,
    ) -> crate::Result<Vec<RawEntry>> {
        if !*own_pending_done {
            let own = self.read(reader, "0", false).await?;
            let own: Vec<RawEntry> = own
                .into_iter()
                .filter(|e| !self.is_in_flight(&e.id))
                .collect();
            if own.is_empty() {
                *own_pending_done = true;
            } else {
                self.mark_in_flight(&own);
                return Ok(own);
            }
        }
        let due = self.due_retries();
        if !due.is_empty() {
            let entries = self.reclaim(&due).await?;
            self.unmark_in_flight(&due);
            self.mark_in_flight(&entries);
            if !entries.is_empty() {
                return Ok(entries);
            }
        }
        if let Some(min_idle) = self.settings.pending_messages_time_ms
            && Instant::now() >= *next_claim
        {
            let (next, claimed) = self.autoclaim(min_idle, claim_cursor).await?;
            let claimed: Vec<RawEntry> = claimed
                .into_iter()
                .filter(|e| !self.is_in_flight(&e.id))
                .collect();
            if next == "0-0" {
                *next_claim = Instant::now() + Duration::from_millis((min_idle / 2).max(100));
            }
            *claim_cursor = next;
            if !claimed.is_empty() {
                self.counters
                    .claimed
                    .fetch_add(claimed.len() as u64, Ordering::Relaxed);
                self.mark_in_flight(&claimed);
                return Ok(claimed);
            }
        }
        // After a full batch more entries are likely waiting: skip BLOCK, which costs a
        // blocking-command round trip in the client even when data is there.
        let block = !self.last_read_full.load(Ordering::Relaxed);
        let new = self.read(reader, ">", block).await?;
        self.last_read_full
            .store(new.len() >= self.settings.max_batch_size, Ordering::Relaxed);
        if self.tracks_in_flight() {
            self.mark_in_flight(&new);
        }
        Ok(new)
    }

    async fn process_batch(self: Arc<Self>, entries: Vec<RawEntry>) {
        let meta: Vec<(String, u64)> = entries
            .iter()
            .map(|e| (e.id.clone(), e.deliveries))
            .collect();
        let ids: Vec<String> = meta.iter().map(|(id, _)| id.clone()).collect();
        let results = if self.settings.max_batch_size > 1 {
            // Concurrently within this task: no task spawn per entry.
            join_catching(
                entries
                    .into_iter()
                    .map(|e| Box::pin(self.process_one(e)))
                    .collect(),
            )
            .await
        } else {
            let mut results = Vec::with_capacity(entries.len());
            for entry in entries {
                results.extend(join_catching(vec![Box::pin(self.process_one(entry))]).await);
            }
            results
        };
        let outcomes: Vec<Outcome> = results
            .into_iter()
            .zip(meta)
            .map(|(result, (id, deliveries))| {
                result.unwrap_or_else(|| self.panicked(id, deliveries))
            })
            .collect();
        let mut acks = Vec::new();
        let mut retrying = std::collections::HashSet::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Ack(id) => acks.push(id),
                Outcome::Retry(id, deliveries) => {
                    retrying.insert(id.clone());
                    self.schedule_retry(id, deliveries);
                }
            }
        }
        if let Err(e) = self.ack(acks).await {
            // Not acked means redelivered later: at least once, never lost.
            tracing::warn!(stream = %self.stream, error = %e, "ack failed; the entries will be delivered again");
        }
        // Entries waiting for a retry stay "in flight", so a claim pass does not take them too.
        let done: Vec<String> = ids
            .into_iter()
            .filter(|id| !retrying.contains(id))
            .collect();
        self.unmark_in_flight(&done);
    }

    fn panicked(&self, id: String, deliveries: u64) -> Outcome {
        tracing::error!(id = %id, "the handler panicked");
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        Outcome::Retry(id, deliveries)
    }

    async fn process_one(&self, entry: RawEntry) -> Outcome {
        // Decode in place: no copy of the payload.
        let decoded = entry
            .fields
            .get(PAYLOAD_FIELD)
            .and_then(|v| v.as_bytes())
            .map(decode::<B>);
        let (body, headers) = match decoded {
            Some(Ok(decoded)) => decoded,
            Some(Err(e)) => return self.dead(&entry, &format!("malformed payload: {e}")).await,
            None => {
                return self
                    .dead(
                        &entry,
                        "malformed entry: no `_` field with the msgpack payload",
                    )
                    .await;
            }
        };
        let message = Message {
            id: entry.id.clone(),
            body,
            headers,
            deliveries: entry.deliveries,
        };
        match self.handler.handle(message).await {
            Ok(()) => {
                self.counters.processed.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack(entry.id)
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                if entry.deliveries >= self.settings.max_deliveries {
                    let reason = format!("handler failed {} time(s): {error}", entry.deliveries);
                    self.dead(&entry, &reason).await
                } else {
                    tracing::debug!(id = %entry.id, deliveries = entry.deliveries, %error, "handler failed; will retry");
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    Outcome::Retry(entry.id, entry.deliveries)
                }
            }
        }
    }

    /// Boxed: the dead-letter path holds an XADD future, and keeping it out of
    /// `process_one`'s state keeps the per-entry future small on the hot path.
    fn dead<'a>(
        &'a self,
        entry: &'a RawEntry,
        reason: &'a str,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'a>> {
        Box::pin(self.dead_inner(entry, reason))
    }

    async fn dead_inner(&self, entry: &RawEntry, reason: &str) -> Outcome {
        match self.dead_letter(entry, reason).await {
            Ok(()) => {
                tracing::warn!(stream = %self.stream, id = %entry.id, reason, "entry dead-lettered");
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack(entry.id.clone())
            }
            Err(e) => {
                tracing::warn!(error = %e, "dead-lettering failed; the entry stays pending");
                Outcome::Retry(entry.id.clone(), entry.deliveries)
            }
        }
    }

    fn schedule_retry(&self, id: String, deliveries: u64) {
        let exponent = u32::try_from(deliveries.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(10);
        let delay =
            Duration::from_millis(self.settings.retry_backoff_ms.saturating_mul(1 << exponent));
        if let Ok(mut retries) = self.retries.lock() {
            retries.push((Instant::now() + delay, id));
        }
    }

    fn due_retries(&self) -> Vec<String> {
        let Ok(mut retries) = self.retries.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut due = Vec::new();
        retries.retain(|(at, id)| {
            let take = *at <= now && due.len() < self.settings.max_batch_size;
            if take {
                due.push(id.clone());
            }
            !take
        });
        due
    }

    /// New entries only need in-flight bookkeeping when a claim pass could take them too.
    /// Own-pending re-reads, retries and claims always mark theirs.
    fn tracks_in_flight(&self) -> bool {
        self.settings.pending_messages_time_ms.is_some()
    }

    fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight.lock().is_ok_and(|f| f.contains(id))
    }

    fn mark_in_flight(&self, entries: &[RawEntry]) {
        if let Ok(mut f) = self.in_flight.lock() {
            f.extend(entries.iter().map(|e| e.id.clone()));
        }
    }

    fn unmark_in_flight(&self, ids: &[String]) {
        if let Ok(mut f) = self.in_flight.lock() {
            if f.is_empty() {
                return;
            }
            for id in ids {
                f.remove(id);
            }
        }
    }
}

/// Drives every future to completion concurrently in the current task. A future that panics
/// yields `None` and is not polled again; the others go on.
async fn join_catching<F: Future>(mut futures: Vec<Pin<Box<F>>>) -> Vec<Option<F::Output>> {
    let mut results: Vec<Option<Option<F::Output>>> = futures.iter().map(|_| None).collect();
    let mut left = futures.len();
    std::future::poll_fn(|cx| {
        for (future, result) in futures.iter_mut().zip(results.iter_mut()) {
            if result.is_some() {
                continue;
            }
            match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Ready(value)) => *result = Some(Some(value)),
                Ok(Poll::Pending) => continue,
                Err(_) => *result = Some(None),
            }
            left -= 1;
        }
        if left == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    results.into_iter().map(Option::flatten).collect()
}
