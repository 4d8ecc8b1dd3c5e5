//! The read loop: what to read next, and the hand-off of each entry to a task of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kaiju_core::Shutdown;
use kaiju_transport::{BlockingConnection, Feature, TransportError};
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::StreamError;
use crate::handler::Handler;
use crate::id::StreamId;
use crate::listener::commands::{Lease, Reclaimed};
use crate::listener::reply::Item;
use crate::listener::retries::Retry;
use crate::listener::{Counters, LEASE, STATS_TTL, Shared};

/// The idle time only an entry handed back with `XNACK` has (about 31 years: its delivery
/// time is 0, the epoch, so its idle time is the whole of the clock's ms, ~1.8e12).
const HANDED_BACK_IDLE_MS: u64 = 1_000_000_000_000;

/// Pause after an error of Redis itself (connection lost, server restarting).
const ERROR_PAUSE: Duration = Duration::from_millis(200);

/// With claiming in the reads, the XAUTOCLAIM sweep (for pending entries deleted from the
/// stream) runs this many times less often than the claim pass it replaces.
const SWEEP_ROUNDS: u64 = 4;

/// Where the loop stands between two reads.
struct Cursor {
    /// While recovering this consumer's own pending entries (after a start, a re-created
    /// group, a failed read, or a regained consumer name): the id after which the next page
    /// starts.
    recovering: Option<StreamId>,
    /// Where the next XAUTOCLAIM scan starts.
    claim_from: StreamId,
    /// When to look again for entries of consumers that are gone.
    next_takeover: Instant,
    next_claim: Instant,
    next_housekeeping: Instant,
    next_pause_check: Instant,
    paused: bool,
    /// Whether the last read of new entries filled all the room it had (then more are likely
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
    pub(crate) async fn run(self: Arc<Self>, mut reader: BlockingConnection, shutdown: Shutdown) {
        // A new run starts from what Redis says is pending, not from what an earlier (aborted)
        // run held.
        self.in_flight.clear();
        self.retries.clear();
        self.lease_held.store(true, Ordering::SeqCst);
        self.check_ids().await;

        let limit = self
            .settings
            .max_batch_size
            .saturating_mul(self.settings.max_parallel_batches);
        let permits = Arc::new(Semaphore::new(limit));
        let mut entries = JoinSet::new();
        // Helpers live in a JoinSet too: dropping this future aborts them with it.
        let mut helpers = JoinSet::new();
        let finished = Shutdown::new();
        helpers.spawn({
            let (shared, finished) = (self.clone(), finished.clone());
            async move { shared.ack_loop(finished).await }
        });
        helpers.spawn({
            let (shared, finished) = (self.clone(), finished.clone());
            async move { shared.keep_name_and_entries(finished).await }
        });
        helpers.spawn({
            let (shared, finished) = (self.clone(), finished.clone());
            async move { shared.sample_metrics(finished).await }
        });

        let now = Instant::now();
        // With claiming in the reads, the first sweep waits its period: the reads claim.
        let claims_in_reads = self.claims_in_reads();
        let mut cursor = Cursor {
            recovering: Some(StreamId::ZERO),
            claim_from: StreamId::ZERO,
            next_takeover: now,
            next_claim: if claims_in_reads {
                now + self.claim_pass_every(true)
            } else {
                now
            },
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
            if self.regained_name.swap(false, Ordering::SeqCst) {
                cursor.recovering = Some(StreamId::ZERO);
            }
            if Instant::now() >= cursor.next_pause_check {
                cursor.paused = self.paused().await.unwrap_or(cursor.paused);
                cursor.next_pause_check =
                    Instant::now() + Duration::from_millis(self.settings.pause_check_interval_ms);
            }
            // Paused by the shared pause key, or this instance lost its consumer name to
            // another live instance: read nothing until that changes.
            if cursor.paused || !self.lease_held.load(Ordering::SeqCst) {
                tokio::select! {
                    () = shutdown.triggered() => break,
                    () = tokio::time::sleep_until(cursor.next_pause_check.into()) => {}
                }
                continue;
            }
            if Instant::now() >= cursor.next_housekeeping {
                cursor.next_housekeeping =
                    Instant::now() + Duration::from_millis(self.settings.trim_interval_ms);
                self.housekeeping().await;
            }

            let Some(mut room) = room(&permits, self.settings.max_batch_size, &shutdown).await
            else {
                break;
            };
            let read = {
                let reading = self.next_items(&reader, &mut cursor, room.num_permits());
                tokio::pin!(reading);
                tokio::select! {
                    read = &mut reading => read,
                    // A stop ends a blocking read early (as if its block time had run out), and
                    // still takes what it read: nothing is left delivered but unseen.
                    () = shutdown.triggered() => {
                        if let Err(e) = reader.unblock().await {
                            tracing::debug!(error = %e, "could not unblock the read; waiting for it");
                        }
                        reading.await
                    }
                }
            };
            let items = match read {
                Ok(items) => items,
                Err(StreamError::Transport(TransportError::NoGroup { .. })) => {
                    tracing::warn!(stream = %self.stream, group = %self.group, "group or stream vanished; re-creating it");
                    if let Err(e) = self.ensure_group().await {
                        tracing::warn!(error = %e, "re-creating the group failed");
                    }
                    cursor.recovering = Some(StreamId::ZERO);
                    continue;
                }
                // Another client's `CLIENT UNBLOCK <id> ERROR` (anyone allowed the command may
                // send it to any client): the read took nothing, so it is an empty read, not a
                // failure to warn about and pause after.
                Err(StreamError::Transport(TransportError::Server { code, .. }))
                    if code == "UNBLOCKED" =>
                {
                    tracing::debug!(stream = %self.stream, "a blocking read was unblocked by another client");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "read failed; retrying");
                    // A read or claim whose reply was lost may still have delivered entries to
                    // this consumer (they are sent once, never resent): they wait in its
                    // pending list, so read that again first.
                    cursor.recovering = Some(StreamId::ZERO);
                    if matches!(
                        e,
                        StreamError::Transport(
                            TransportError::Timeout { .. } | TransportError::Connection { .. }
                        )
                    ) {
                        // fred does not watch a connection in a blocking read for silence (it
                        // may block legitimately), so a half-open one would time out forever:
                        // open a new one.
                        match self
                            .transport
                            .blocking_connection(self.settings.block())
                            .await
                        {
                            Ok(fresh) => reader = fresh,
                            Err(e) => {
                                tracing::warn!(error = %e, "reopening the read connection failed")
                            }
                        }
                    }
                    tokio::select! {
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep(ERROR_PAUSE) => continue,
                    }
                }
            };
            self.counters.batch(items.len());
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
        self.hand_back_retries().await;
    }

    /// At a graceful stop, with `XNACK` (Redis 8.8) and claiming on: hands the failed entries
    /// still waiting here for their retry back to the group, so that another consumer claims
    /// them at once instead of after `pending_messages_time_ms`. Their delivery counts stay
    /// (each failed delivery counts toward `max_deliveries`). Without it they stay pending as
    /// this consumer's, for its restart, the takeover or the claim pass.
    async fn hand_back_retries(&self) {
        // An instance cut off from its consumer name (another took it) hands back nothing:
        // the entries are the new holder's to run.
        if !self.hands_back() || !self.lease_held.load(Ordering::SeqCst) {
            return;
        }
        let ids: Vec<StreamId> = self.retries.take_all().into_iter().map(|r| r.id).collect();
        if ids.is_empty() {
            return;
        }
        match self.nack(&ids).await {
            Ok(n) => {
                tracing::debug!(stream = %self.stream, handed_back = n, "handed the entries waiting for a retry back to the group");
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream, error = %e, "could not hand the entries waiting for a retry back to the group; they stay pending as this consumer's");
            }
        }
        self.in_flight.remove(&ids);
    }

    /// Claims entries handed back to the group (`XNACK`, Redis 8.8): they alone are idle for
    /// [`HANDED_BACK_IDLE_MS`] (their delivery time is set to 0, the epoch), so the claim never
    /// takes an entry a live consumer holds. Nothing where the server has no `XNACK`.
    async fn take_handed_back(&self, room: usize) -> crate::Result<Vec<Item>> {
        if !self.transport.capabilities().has(Feature::XNack) {
            return Ok(Vec::new());
        }
        let claimed = self
            .autoclaim(HANDED_BACK_IDLE_MS, StreamId::ZERO, room)
            .await?;
        for id in claimed.deleted {
            self.lost(id, false);
        }
        let claimed = self.in_flight.take(claimed.items);
        Counters::add(&self.counters.claimed, claimed.len() as u64);
        Ok(claimed)
    }

    /// This consumer's own pending entries first (after a start), page by page; then retries
    /// that are due; then entries of consumers that are gone; then entries claimed from other
    /// consumers; then new entries. At most `room` entries.
    async fn next_items(
        &self,
        reader: &BlockingConnection,
        cursor: &mut Cursor,
        room: usize,
    ) -> crate::Result<Vec<Item>> {
        if let Some(after) = cursor.recovering {
            let page = self.read(reader, &after.to_string(), room, None).await?;
            cursor.recovering = page.last().map(item_id);
            let mine = self.in_flight.take(page);
            if !mine.is_empty() {
                return Ok(mine);
            }
            if cursor.recovering.is_some() {
                return Ok(Vec::new());
            }
        }

        let due = self.retries.due(room);
        if !due.is_empty() {
            let claimed = self.retry_due(due).await;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }

        if Instant::now() >= cursor.next_takeover {
            let taken = self.take_over_from_gone(room).await?;
            if !taken.is_empty() {
                return Ok(taken);
            }
            // Entries another listener handed back at its stop (XNACK: they have no consumer)
            // are taken here too, claiming on or off, so none waits for a consumer that claims.
            let handed = self.take_handed_back(room).await?;
            if !handed.is_empty() {
                return Ok(handed);
            }
            cursor.next_takeover = Instant::now() + LEASE / 10;
        }

        // With claiming in the reads (XREADGROUP ... CLAIM), XAUTOCLAIM still sweeps the
        // pending list, less often: a CLAIM read skips a pending entry that was deleted from
        // the stream and leaves it pending for ever, where XAUTOCLAIM drops it and reports it
        // (counted lost here).
        let claims_in_reads = self.claims_in_reads();
        if let Some(min_idle) = self.settings.pending_messages_time_ms
            && Instant::now() >= cursor.next_claim
        {
            let claimed = self.autoclaim(min_idle, cursor.claim_from, room).await?;
            for id in claimed.deleted {
                self.lost(id, false);
            }
            if claimed.next == StreamId::ZERO {
                cursor.next_claim = Instant::now() + self.claim_pass_every(claims_in_reads);
            } else if claims_in_reads && !claimed.items.is_empty() {
                // Idle entries are waiting: the reads claim them (with their counts, in the
                // same round trip); the sweep goes on from here later.
                cursor.next_claim = Instant::now() + self.claim_pass_every(false);
            }
            cursor.claim_from = claimed.next;
            let claimed = self.in_flight.take(claimed.items);
            if !claimed.is_empty() {
                Counters::add(&self.counters.claimed, claimed.len() as u64);
                return Ok(claimed);
            }
        }

        // After a read that filled its room, more entries are likely waiting: skip BLOCK,
        // which costs a blocking-command round trip in the client even when data is there.
        // Otherwise block, but not past the next due retry.
        let block = (!cursor.last_read_full).then(|| {
            let wait = Duration::from_millis(self.settings.max_wait_time_ms);
            let until_retry = self
                .retries
                .next_due()
                .map_or(wait, |due| due.saturating_duration_since(Instant::now()));
            wait.min(until_retry).as_millis().max(1) as u64
        });
        if claims_in_reads && let Some(min_idle) = self.settings.pending_messages_time_ms {
            let read = self.read_claiming(reader, room, block, min_idle).await?;
            cursor.last_read_full = read.len() >= room;
            let claimed: HashSet<StreamId> = read
                .iter()
                .filter(|(_, claimed)| *claimed)
                .map(|(item, _)| item_id(item))
                .collect();
            let taken = self
                .in_flight
                .take(read.into_iter().map(|(item, _)| item).collect());
            let n = taken
                .iter()
                .filter(|item| matches!(item, Item::Entry(e) if claimed.contains(&e.id)))
                .count();
            Counters::add(&self.counters.claimed, n as u64);
            return Ok(taken);
        }
        let new = self.read(reader, ">", room, block).await?;
        cursor.last_read_full = new.len() >= room;
        Ok(self.in_flight.take(new))
    }

    /// The pause between two rounds of the XAUTOCLAIM pass: half the claim time, or, as the
    /// sweep beside claiming reads, [`SWEEP_ROUNDS`] times that.
    fn claim_pass_every(&self, sweep: bool) -> Duration {
        let min_idle = self.settings.pending_messages_time_ms.unwrap_or(0);
        let every = if sweep {
            min_idle.saturating_mul(SWEEP_ROUNDS)
        } else {
            min_idle
        };
        Duration::from_millis((every / 2).max(100))
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
                    self.in_flight.remove(&[retry.id]);
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

    /// Logs an error when the stream's or the dead-letter stream's last id is the largest
    /// there is or far ahead of the server clock (someone wrote an entry with such an id:
    /// writes fail, or will). Run at start and with the housekeeping, not per read.
    async fn check_ids(&self) {
        for stream in [&self.stream, &self.dead] {
            match crate::admin::check_newest_entry(&self.transport, stream).await {
                Ok(None) => {}
                Ok(Some(warning)) => tracing::error!(stream = %stream, "{warning}"),
                Err(e) => {
                    tracing::debug!(stream = %stream, error = %e, "checking the stream's ids failed")
                }
            }
        }
    }

    /// Trimming, the removal of idle consumers and the check of the ids, every
    /// `trim_interval_ms`.
    async fn housekeeping(&self) {
        self.check_ids().await;
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

/// Room for the next read: at least one free place (waiting for it), and as many more as are
/// free right now, up to a batch. `None` once `shutdown` fires.
async fn room(
    permits: &Arc<Semaphore>,
    batch: usize,
    shutdown: &Shutdown,
) -> Option<OwnedSemaphorePermit> {
    let mut room = tokio::select! {
        () = shutdown.triggered() => return None,
        permit = permits.clone().acquire_owned() => permit.ok()?,
    };
    // One call for the rest (the settings cap a batch far below u32::MAX).
    let wanted = batch.saturating_sub(room.num_permits());
    let more = wanted.min(permits.available_permits());
    if let Ok(more) = u32::try_from(more)
        && more > 0
        && let Ok(extra) = permits.clone().try_acquire_many_owned(more)
    {
        room.merge(extra);
    }
    Some(room)
}

impl<B, H> Shared<B, H> {
    /// A pending entry whose content was deleted from the stream before it was handled. It is
    /// acked (Redis 7 has already dropped the ids XAUTOCLAIM reports, so `ack == false` there).
    pub(crate) fn lost(&self, id: StreamId, ack: bool) {
        // Counted once: until its ack is sent, the id stays held, and a claim pass that reports
        // it deleted again (it is still in the pending list) is not counted twice.
        if !self.in_flight.insert(id) && !ack {
            return;
        }
        tracing::warn!(stream = %self.stream, %id, "a pending entry was deleted from the stream before it was handled (XDEL or trimming); it is lost");
        Counters::add(&self.counters.lost, 1);
        if ack {
            self.acks.push(id);
        } else {
            self.in_flight.remove(&[id]);
        }
    }

    /// Keeps the consumer name (renewing its lease every third of it) and, with claiming on,
    /// touches the entries held longer than a quarter of the claim time, until `finished`. A
    /// name lost to another live instance stops the reading until it is regained.
    async fn keep_name_and_entries(&self, finished: Shutdown) {
        let touch_after = self
            .settings
            .pending_messages_time_ms
            .map(|ms| Duration::from_millis(ms / 4).max(Duration::from_millis(50)));
        let every = touch_after.map_or(LEASE / 3, |t| t.min(LEASE / 3));
        let mut next_lease = Instant::now() + LEASE / 3;
        loop {
            tokio::select! {
                () = finished.triggered() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Some(age) = touch_after {
                let held = self.in_flight.older_than(age);
                if !held.is_empty()
                    && let Err(e) = self.touch(&held).await
                {
                    tracing::warn!(stream = %self.stream, error = %e, "could not mark held entries as in progress; another consumer may claim them");
                }
            }
            if Instant::now() < next_lease {
                continue;
            }
            next_lease = Instant::now() + LEASE / 3;
            match self.lease.run(LEASE, false).await {
                Ok(Lease::Held(gone)) => {
                    self.gone.seen(gone);
                    if let Err(e) = self.lease.publish(&self.counters, STATS_TTL).await {
                        tracing::debug!(error = %e, "publishing the listener's counters failed");
                    }
                    if !self.lease_held.swap(true, Ordering::SeqCst) {
                        tracing::warn!(consumer = %self.consumer, "consumer name regained; reading again");
                        self.regained_name.store(true, Ordering::SeqCst);
                    }
                }
                Ok(Lease::Taken(_)) => {
                    if self.lease_held.swap(false, Ordering::SeqCst) {
                        tracing::error!(consumer = %self.consumer, "another listener instance took this consumer name (this one was cut off for longer than the lease): reading stops until the name is free again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "renewing the consumer-name lease failed"),
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
