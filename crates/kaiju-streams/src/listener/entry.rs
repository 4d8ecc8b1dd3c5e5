//! What happens to one entry: decode, run the handler under a timeout, settle the outcome.
//!
//! Every entry ends in exactly one of: acked after its handler succeeded; dead-lettered (and then
//! acked) because it is malformed, was rejected, or ran out of deliveries; scheduled for a retry
//! (still pending); or, when the listener stops first, left pending for redelivery.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kaiju_core::Shutdown;
use serde::de::DeserializeOwned;

use crate::envelope::{PAYLOAD_FIELD, decode, headers_only};
use crate::handler::{Disposition, Handler, Message};
use crate::listener::reply::RawEntry;
use crate::listener::retries::Retry;
use crate::listener::{Counters, Shared};
use crate::{StreamError, admin};

/// The most an oversized entry's headers, read on their own, may take decoded.
const HEADERS_MAX_DECODED: usize = 1 << 20;

/// The longest wait between two attempts to write a dead letter.
const DEAD_LETTER_MAX_PAUSE: Duration = Duration::from_secs(5);

/// At most this many retries wait in memory per batch of room; failures beyond them stay
/// pending in Redis for the claim pass (which takes them back after `pending_messages_time_ms`).
const RETRIES_PER_PLACE: usize = 100;

/// How a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The handler returned a retryable error.
    Error,
    /// The handler did not finish within `handler_timeout_ms`.
    TimedOut,
    /// The handler panicked.
    Panicked,
    /// Delivered more than `max_deliveries` times without an outcome: a consumer died (or
    /// stopped) while handling it, again and again. Not run again.
    Exhausted,
}

impl Failure {
    fn kind(self) -> &'static str {
        match self {
            Self::Error => admin::KIND_FAILED,
            Self::TimedOut => admin::KIND_TIMED_OUT,
            Self::Panicked => admin::KIND_PANICKED,
            Self::Exhausted => admin::KIND_EXHAUSTED,
        }
    }
}

/// The outcome of a delivery that did not succeed.
enum Verdict {
    Malformed(String),
    /// Over `max_entry_bytes` or `max_decoded_bytes`: never decoded.
    TooLarge(String),
    Rejected(String),
    Deferred(String),
    Discarded(String),
    Failed(Failure, String),
}

impl<B, H> Shared<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// Runs one entry to its outcome. Runs in a task of its own.
    pub(crate) async fn process(self: Arc<Self>, entry: RawEntry, shutdown: Shutdown) {
        match self.deliver(&entry).await {
            Ok(()) => {
                Counters::add(&self.counters.processed, 1);
                self.acks.push(entry.id);
            }
            // Boxed: the failure paths hold Redis command futures (several KB); keeping them out
            // of every entry's task keeps the task small, and spawning it cheap.
            Err(verdict) => Box::pin(self.settle(entry, verdict, &shutdown)).await,
        }
    }

    /// Decodes the entry and runs its handler: `Ok` if the handler succeeded.
    async fn deliver(&self, entry: &RawEntry) -> Result<(), Verdict> {
        if entry.deliveries > self.settings.max_deliveries {
            // It never came back from its earlier deliveries (a crash loop on this entry, say):
            // running it again could crash the process again.
            return Err(Verdict::Failed(
                Failure::Exhausted,
                format!(
                    "delivered {} times without an outcome (its consumer stopped or died while handling it)",
                    entry.deliveries - 1
                ),
            ));
        }
        let Some(payload) = entry.field(PAYLOAD_FIELD.as_bytes()) else {
            return Err(Verdict::Malformed(
                "not a kaiju entry: it has no `_` field (where kaiju puts the msgpack [body, headers])"
                    .to_owned(),
            ));
        };
        if let Some(reason) = self.too_large(payload) {
            return Err(Verdict::TooLarge(reason));
        }
        if let Err(reason) = self.handler.check_payload(payload) {
            return Err(Verdict::TooLarge(reason));
        }
        // A body type's own `Deserialize` may panic; that must not take the task with it.
        let (body, headers) = match catch_unwind(|| decode::<B>(payload)) {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(e)) => return Err(Verdict::Malformed(e.to_string())),
            Err(panic) => {
                return Err(Verdict::Malformed(format!(
                    "the payload could not be read: its decoding panicked: {}",
                    panic_message(&*panic)
                )));
            }
        };
        let message = Message::new(entry.id.to_string(), body, headers, entry.deliveries);
        let timeout = self.settings.handler_timeout();
        let started = Instant::now();
        let handled =
            tokio::time::timeout(timeout, CatchUnwind(Box::pin(self.handler.handle(message))))
                .await;
        if handled.is_ok() && started.elapsed() > timeout {
            // It returned, but late: it blocked its thread, so the timeout could not cancel
            // it. Its outcome stands (its work is done); it is counted as timed out.
            Counters::add(&self.counters.timed_out, 1);
            tracing::warn!(stream = %self.stream, id = %entry.id, elapsed = ?started.elapsed(), "a handler returned after its timeout (it blocked its thread?)");
        }
        match handled {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(match error.disposition() {
                Disposition::Reject => Verdict::Rejected(error.to_string()),
                Disposition::Defer => Verdict::Deferred(error.to_string()),
                Disposition::Discard => Verdict::Discarded(error.to_string()),
                _ => Verdict::Failed(Failure::Error, error.to_string()),
            }),
            Ok(Err(panic)) => Err(Verdict::Failed(
                Failure::Panicked,
                format!("the handler panicked: {}", panic_message(&*panic)),
            )),
            Err(_) => Err(Verdict::Failed(
                Failure::TimedOut,
                format!("the handler did not finish within {timeout:?}"),
            )),
        }
    }

    async fn settle(&self, entry: RawEntry, verdict: Verdict, shutdown: &Shutdown) {
        let c = &self.counters;
        match verdict {
            Verdict::Malformed(reason) => {
                self.dead_letter_until_written(entry, admin::KIND_MALFORMED, &reason, shutdown)
                    .await;
            }
            Verdict::TooLarge(reason) => {
                let headers = entry
                    .field(PAYLOAD_FIELD.as_bytes())
                    .and_then(|payload| headers_only(payload, HEADERS_MAX_DECODED));
                self.handler.refused(headers, &reason).await;
                self.dead_letter_until_written(entry, admin::KIND_TOO_LARGE, &reason, shutdown)
                    .await;
            }
            Verdict::Rejected(reason) => {
                Counters::add(&c.rejected, 1);
                tracing::info!(stream = %self.stream, id = %entry.id, %reason, "the handler rejected the entry");
                self.dead_letter_until_written(entry, admin::KIND_REJECTED, &reason, shutdown)
                    .await;
            }
            Verdict::Deferred(reason) => {
                Counters::add(&c.deferred, 1);
                tracing::info!(stream = %self.stream, id = %entry.id, %reason, "the handler deferred the entry; it stays pending");
                self.in_flight.remove(&[entry.id]);
            }
            Verdict::Discarded(reason) => {
                Counters::add(&c.discarded, 1);
                tracing::debug!(stream = %self.stream, id = %entry.id, %reason, "the handler discarded the entry; acked without a dead letter");
                self.acks.push(entry.id);
            }
            Verdict::Failed(Failure::Exhausted, reason) => {
                self.dead_letter_until_written(entry, Failure::Exhausted.kind(), &reason, shutdown)
                    .await;
            }
            Verdict::Failed(failure, reason) => {
                Counters::add(&c.failed, 1);
                match failure {
                    Failure::TimedOut => Counters::add(&c.timed_out, 1),
                    Failure::Panicked => Counters::add(&c.panicked, 1),
                    Failure::Error | Failure::Exhausted => {}
                }
                if entry.deliveries >= self.settings.max_deliveries {
                    let reason = format!("handler failed {} time(s): {reason}", entry.deliveries);
                    self.dead_letter_until_written(entry, failure.kind(), &reason, shutdown)
                        .await;
                } else if self.settings.pending_messages_time_ms.is_some()
                    && self.retries.len() >= self.retry_limit()
                {
                    // Too many retries waiting in memory: this one waits in Redis instead, and
                    // the claim pass takes it back later (its delivery count still rises).
                    tracing::debug!(stream = %self.stream, id = %entry.id, "retry schedule full; leaving the entry pending for the claim pass");
                    Counters::add(&c.retried, 1);
                    self.in_flight.remove(&[entry.id]);
                } else {
                    tracing::debug!(stream = %self.stream, id = %entry.id, deliveries = entry.deliveries, %reason, "delivery failed; will retry");
                    Counters::add(&c.retried, 1);
                    self.retries.schedule(Retry {
                        due: Instant::now() + self.settings.backoff(entry.deliveries),
                        id: entry.id,
                    });
                }
            }
        }
    }

    /// Why `payload` is refused undecoded, if it is: longer than `max_entry_bytes`, or larger
    /// than `max_decoded_bytes` once decoded (measured without decoding it). A payload that is
    /// not msgpack at all is left to the decoder, which says what is wrong with it.
    fn too_large(&self, payload: &[u8]) -> Option<String> {
        let max = self.settings.max_entry_bytes;
        if payload.len() > max {
            return Some(format!(
                "the payload is {} bytes, over max_entry_bytes ({max}); not decoded",
                payload.len()
            ));
        }
        let max = self.settings.max_decoded_bytes;
        match kaiju_core::codec::decoded_size(payload, max) {
            Err(kaiju_core::codec::SizeError::OverLimit { .. }) => Some(format!(
                "the payload of {} bytes would take over max_decoded_bytes ({max}) decoded; not decoded",
                payload.len()
            )),
            _ => None,
        }
    }

    /// How many retries may wait in memory.
    fn retry_limit(&self) -> usize {
        self.settings
            .max_batch_size
            .saturating_mul(self.settings.max_parallel_batches)
            .saturating_mul(RETRIES_PER_PLACE)
    }

    /// Writes the dead letter, then acks the entry. A failed write is retried (with backoff) on
    /// its own: the handler does not run again, and the entry stays pending until the dead
    /// letter is written. A stop ends the attempts and leaves the entry pending.
    async fn dead_letter_until_written(
        &self,
        entry: RawEntry,
        kind: &str,
        reason: &str,
        shutdown: &Shutdown,
    ) {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.dead_letter(&entry, kind, reason).await {
                Ok(()) => {
                    tracing::warn!(stream = %self.stream, id = %entry.id, kind, reason, "entry dead-lettered");
                    Counters::add(&self.counters.dead_lettered, 1);
                    self.acks.push(entry.id);
                    return;
                }
                Err(StreamError::Transport(e)) if e.is_stream_id_exhausted() => {
                    // Retrying cannot help until someone repairs the dead-letter stream: say so
                    // loudly (every attempt, at most every DEAD_LETTER_MAX_PAUSE per entry).
                    tracing::error!(
                        stream = %self.stream,
                        dead = %self.dead,
                        id = %entry.id,
                        error = %e,
                        "the dead-letter stream {} is unusable (its last id is the largest there is, so every XADD fails): the entry stays pending and the write is retried; repair it with `kaiju streams <app> {} --repair`",
                        self.dead,
                        self.settings.topic,
                    );
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, id = %entry.id, error = %e, "writing the dead letter failed; the entry stays pending and the write is retried");
                }
            }
            tokio::select! {
                () = shutdown.triggered() => {
                    self.in_flight.remove(&[entry.id]);
                    return;
                }
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(DEAD_LETTER_MAX_PAUSE);
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Resolves to `Err(payload)` if polling the inner future panics.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
