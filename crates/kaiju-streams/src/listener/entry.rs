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

use crate::envelope::{PAYLOAD_FIELD, decode};
use crate::handler::{Disposition, Handler, Message};
use crate::listener::reply::RawEntry;
use crate::listener::retries::Retry;
use crate::listener::{Counters, Shared};

/// The longest wait between two attempts to write a dead letter.
const DEAD_LETTER_MAX_PAUSE: Duration = Duration::from_secs(5);

/// How a delivery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The handler returned a retryable error.
    Error,
    /// The handler did not finish within `handler_timeout_ms`.
    TimedOut,
    /// The handler panicked.
    Panicked,
}

impl Failure {
    fn kind(self) -> &'static str {
        match self {
            Self::Error => "failed",
            Self::TimedOut => "timed_out",
            Self::Panicked => "panicked",
        }
    }
}

/// The outcome of one delivery.
enum Verdict {
    Done,
    Malformed(String),
    Rejected(String),
    Failed(Failure, String),
}

impl<B, H> Shared<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// Runs one entry to its outcome. Runs in a task of its own.
    pub(crate) async fn process(self: Arc<Self>, entry: RawEntry, shutdown: Shutdown) {
        match self.verdict(&entry).await {
            Verdict::Done => {
                Counters::add(&self.counters.processed, 1);
                self.acks.push(entry.id);
            }
            // Boxed: the failure paths hold Redis command futures (several KB); keeping them out
            // of every entry's task keeps the task small, and spawning it cheap.
            failure => Box::pin(self.settle(entry, failure, &shutdown)).await,
        }
    }

    async fn verdict(&self, entry: &RawEntry) -> Verdict {
        let Some(payload) = entry.field(PAYLOAD_FIELD.as_bytes()) else {
            return Verdict::Malformed(
                "malformed entry: no `_` field with the msgpack payload".to_owned(),
            );
        };
        // A body type's own `Deserialize` may panic; that must not take the task with it.
        let (body, headers) = match catch_unwind(|| decode::<B>(payload)) {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(e)) => return Verdict::Malformed(format!("malformed payload: {e}")),
            Err(panic) => {
                return Verdict::Malformed(format!(
                    "malformed payload: decoding panicked: {}",
                    panic_message(&*panic)
                ));
            }
        };
        let message = Message::new(entry.id.to_string(), body, headers, entry.deliveries);
        let timeout = self.settings.handler_timeout();
        let handled =
            tokio::time::timeout(timeout, CatchUnwind(Box::pin(self.handler.handle(message))))
                .await;
        match handled {
            Ok(Ok(Ok(()))) => Verdict::Done,
            Ok(Ok(Err(error))) => match error.disposition() {
                Disposition::Reject => Verdict::Rejected(error.to_string()),
                _ => Verdict::Failed(Failure::Error, error.to_string()),
            },
            Ok(Err(panic)) => Verdict::Failed(
                Failure::Panicked,
                format!("the handler panicked: {}", panic_message(&*panic)),
            ),
            Err(_) => Verdict::Failed(
                Failure::TimedOut,
                format!("the handler did not finish within {timeout:?}"),
            ),
        }
    }

    async fn settle(&self, entry: RawEntry, verdict: Verdict, shutdown: &Shutdown) {
        let c = &self.counters;
        match verdict {
            Verdict::Done => {
                Counters::add(&c.processed, 1);
                self.acks.push(entry.id);
            }
            Verdict::Malformed(reason) => {
                self.dead_letter_until_written(entry, "malformed", &reason, shutdown)
                    .await;
            }
            Verdict::Rejected(reason) => {
                Counters::add(&c.rejected, 1);
                tracing::info!(stream = %self.stream, id = %entry.id, %reason, "the handler rejected the entry");
                self.dead_letter_until_written(entry, "rejected", &reason, shutdown)
                    .await;
            }
            Verdict::Failed(failure, reason) => {
                Counters::add(&c.failed, 1);
                match failure {
                    Failure::TimedOut => Counters::add(&c.timed_out, 1),
                    Failure::Panicked => Counters::add(&c.panicked, 1),
                    Failure::Error => {}
                }
                if entry.deliveries >= self.settings.max_deliveries {
                    let reason = format!("handler failed {} time(s): {reason}", entry.deliveries);
                    self.dead_letter_until_written(entry, failure.kind(), &reason, shutdown)
                        .await;
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
                Err(e) => {
                    tracing::warn!(stream = %self.stream, id = %entry.id, error = %e, "writing the dead letter failed; the entry stays pending and the write is retried");
                }
            }
            tokio::select! {
                () = shutdown.triggered() => {
                    self.unmark_in_flight(&[entry.id]);
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
