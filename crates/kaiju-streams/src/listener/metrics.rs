//! The listener's metrics (docs/metrics.md), labelled by stream key and group: entries by
//! outcome (the counters of [`ListenerStats`](crate::ListenerStats)), the size of each read,
//! and the group's lag, pending count and oldest pending age, sampled every
//! [`SAMPLE_EVERY`] by a helper task, never per entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram};
use kaiju_core::Shutdown;
use serde::de::DeserializeOwned;

use crate::handler::Handler;
use crate::listener::Shared;

/// How often the group's lag, pending count and oldest pending age are read from Redis.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);

const ENTRIES: &str = "kaiju_stream_entries_total";

/// One counter of [`ListenerStats`](crate::ListenerStats), and its metric.
#[derive(Debug)]
pub(crate) struct Stat {
    count: AtomicU64,
    metric: Counter,
}

impl Stat {
    fn new(stream: &str, group: &str, outcome: &'static str) -> Self {
        Self {
            count: AtomicU64::new(0),
            metric: ::metrics::counter!(ENTRIES, "stream" => stream.to_owned(), "group" => group.to_owned(), "outcome" => outcome),
        }
    }

    /// Counted in the stats only (not an entry's outcome).
    fn unlabelled() -> Self {
        Self {
            count: AtomicU64::new(0),
            metric: Counter::noop(),
        }
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Counters of one listener since it was created, and its metric handles.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) processed: Stat,
    pub(crate) failed: Stat,
    pub(crate) timed_out: Stat,
    pub(crate) panicked: Stat,
    pub(crate) retried: Stat,
    pub(crate) rejected: Stat,
    pub(crate) deferred: Stat,
    pub(crate) discarded: Stat,
    pub(crate) dead_lettered: Stat,
    pub(crate) claimed: Stat,
    pub(crate) recovered: Stat,
    pub(crate) lost: Stat,
    pub(crate) consumers_removed: Stat,
    batch_size: Histogram,
    lag: Gauge,
    pending: Gauge,
    oldest_pending_age: Gauge,
}

impl Counters {
    /// Counters of the listener of `stream` in `group`, registered with the recorder
    /// installed now.
    pub(crate) fn new(stream: &str, group: &str) -> Self {
        let stat = |outcome| Stat::new(stream, group, outcome);
        let labels = [("stream", stream.to_owned()), ("group", group.to_owned())];
        Self {
            processed: stat("processed"),
            failed: stat("failed"),
            timed_out: stat("timed_out"),
            panicked: stat("panicked"),
            retried: stat("retried"),
            rejected: stat("rejected"),
            deferred: stat("deferred"),
            discarded: stat("discarded"),
            dead_lettered: stat("dead_lettered"),
            claimed: stat("claimed"),
            recovered: stat("recovered"),
            lost: stat("lost"),
            consumers_removed: Stat::unlabelled(),
            batch_size: ::metrics::histogram!("kaiju_stream_batch_size", &labels),
            lag: ::metrics::gauge!("kaiju_stream_lag_entries", &labels),
            pending: ::metrics::gauge!("kaiju_stream_pending_entries", &labels),
            oldest_pending_age: ::metrics::gauge!(
                "kaiju_stream_oldest_pending_age_seconds",
                &labels
            ),
        }
    }

    /// Adds `n` to a counter and its metric.
    pub(crate) fn add(stat: &Stat, n: u64) {
        stat.count.fetch_add(n, Ordering::Relaxed);
        stat.metric.increment(n);
    }

    /// A read (or claim) that returned `n` entries.
    pub(crate) fn batch(&self, n: usize) {
        if n > 0 {
            self.batch_size.record(n as f64);
        }
    }
}

impl<B, H> Shared<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// Samples the group's lag, pending count and oldest pending age every [`SAMPLE_EVERY`]
    /// (as [`Listener::stats`](crate::Listener::stats) reads them), until `finished`.
    pub(crate) async fn sample_metrics(&self, finished: Shutdown) {
        loop {
            match self.state().await {
                Ok(state) => {
                    let c = &self.counters;
                    // Unknown lag (Redis cannot tell after deletions) reads as 0 rather than a
                    // stale value.
                    c.lag.set(state.lag.unwrap_or(0) as f64);
                    c.pending.set(state.pending as f64);
                    c.oldest_pending_age
                        .set(state.oldest_pending_idle.map_or(0.0, |d| d.as_secs_f64()));
                }
                Err(e) => {
                    tracing::debug!(stream = %self.stream, error = %e, "sampling the stream's metrics failed")
                }
            }
            tokio::select! {
                () = finished.triggered() => return,
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    }
}
