//! Taking over the pending entries of consumers that are gone.
//!
//! A consumer whose name lease ran out has not renewed it for [`LEASE`]: its process died, or
//! was cut off from Redis (or frozen) for that long. Its pending entries would otherwise wait
//! for a claim pass, and with claiming off (kaiju's `pending_messages_time_ms: null`) for
//! ever, because a restarted process with the default consumer name (the random app id) joins
//! as a new consumer. So the live consumers of the group take them over, whatever the claim
//! setting: `null` then means "never take work from a live consumer, however slow", not
//! "strand a dead one's work". A live consumer keeps renewing its lease, so it is never
//! taken from; a consumer without a lease (a Python kaiju consumer) is never taken from
//! either.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::de::DeserializeOwned;

use crate::handler::Handler;
use crate::listener::reply::Item;
use crate::listener::{Counters, LEASE, Shared};

/// At most this many entries per script call.
const MAX_PER_CALL: usize = 100;

/// The consumers of the group that are gone, as the last lease renewal saw them.
#[derive(Debug, Default)]
pub(crate) struct Gone(Mutex<Option<(Instant, Vec<String>)>>);

impl Gone {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Vec<String>)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the lease renewal just saw.
    pub(crate) fn seen(&self, names: Vec<String>) {
        *self.lock() = Some((Instant::now(), names));
    }

    /// The names, if they were seen within half a lease. An older list may name a consumer
    /// that came back since (a restart with the same name); the idle-time guard of the
    /// takeover covers such a one for a whole lease.
    fn fresh(&self) -> Vec<String> {
        match &*self.lock() {
            Some((at, names)) if at.elapsed() < LEASE / 2 => names.clone(),
            _ => Vec::new(),
        }
    }

    fn forget(&self, name: &str) {
        if let Some((_, names)) = &mut *self.lock() {
            names.retain(|n| n != name);
        }
    }
}

impl<B, H> Shared<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: Handler<B>,
{
    /// Takes over up to `room` pending entries of the group's consumers that are gone, among
    /// those idle for a whole lease (so none that a restarted instance of the same name
    /// re-read). A consumer left with nothing is removed from the group, and its lease
    /// forgotten. Entries deleted from the stream meanwhile are counted as lost.
    pub(crate) async fn take_over_from_gone(&self, room: usize) -> crate::Result<Vec<Item>> {
        let mut taken = Vec::new();
        for name in self.gone.fresh() {
            if taken.len() >= room {
                break;
            }
            let count = (room - taken.len()).min(MAX_PER_CALL);
            let recovered = self.recover(&name, LEASE, count).await?;
            let mut entries = 0;
            for item in recovered.items {
                match item {
                    Item::Deleted(id) => self.lost(id, false),
                    entry => {
                        entries += 1;
                        taken.push(entry);
                    }
                }
            }
            if entries > 0 {
                tracing::info!(stream = %self.stream, group = %self.group, consumer = %name, entries, "took over pending entries of a consumer that is gone (its name lease ran out)");
            }
            if recovered.left == 0 {
                self.gone.forget(&name);
                if let Err(e) = self.lease.forget(&name).await {
                    tracing::debug!(consumer = %name, error = %e, "could not drop the lease of a consumer that is gone; tried again later");
                }
            }
        }
        let taken = self.in_flight.take(taken);
        Counters::add(&self.counters.recovered, taken.len() as u64);
        Ok(taken)
    }
}
