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
//! either, even under a name that has a stale lease: a consumer that read within the last
//! lease is alive, whatever its lease says, and is looked at again a lease later.
//!
//! A process frozen (or cut off from Redis) for longer than the lease, in the middle of an
//! entry, is taken for gone: the entry is taken over and run again, and the frozen process
//! finishes its own run too when it resumes. So is one whose handlers block every thread of
//! its runtime that long (the renewal runs there).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::handler::Handler;
use crate::listener::commands::Found;
use crate::listener::reply::Item;
use crate::listener::{Counters, LEASE, Shared};

/// At most this many entries per script call.
const MAX_PER_CALL: usize = 100;

/// The consumers of the group that are gone, as the last lease renewal saw them, and the names
/// to leave alone.
#[derive(Debug, Default)]
pub(crate) struct Gone(Mutex<Names>);

#[derive(Debug, Default)]
struct Names {
    seen: Option<(Instant, Vec<String>)>,
    /// Names to leave alone for a while: a consumer that still reads, or a name read off an
    /// ambiguous lease field (`a/b/c` is consumer `b/c` of group `a`, or consumer `c` of group
    /// `a/b`) that names no consumer of this group: likely another group's, whose lease this
    /// one must not forget.
    skip: HashMap<String, Instant>,
}

/// At most this many names are left alone.
const MAX_SKIPPED: usize = 1000;

impl Gone {
    fn lock(&self) -> std::sync::MutexGuard<'_, Names> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a lease renewal just saw.
    pub(crate) fn seen(&self, names: Vec<String>) {
        self.lock().seen = Some((Instant::now(), names));
    }

    /// The names to look at now: seen within half a lease (an older list may name a consumer
    /// that came back since, a restart with the same name; the idle-time guards of the
    /// takeover cover such a one for a whole lease), and not left alone.
    fn fresh(&self) -> Vec<String> {
        let this = &mut *self.lock();
        let now = Instant::now();
        this.skip.retain(|_, until| *until > now);
        match &this.seen {
            Some((at, names)) if at.elapsed() < LEASE / 2 => names
                .iter()
                .filter(|n| !this.skip.contains_key(*n))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `name` is dealt with: its lease is forgotten.
    fn done(&self, name: &str) {
        if let Some((_, names)) = &mut self.lock().seen {
            names.retain(|n| n != name);
        }
    }

    /// Leaves `name` alone until `until`.
    fn skip(&self, name: &str, until: Instant) {
        let mut this = self.lock();
        if this.skip.len() >= MAX_SKIPPED {
            this.skip.clear();
        }
        this.skip.insert(name.to_owned(), until);
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
            let forget = match recovered.status {
                Found::Taken => recovered.left == 0,
                // Read within the last lease: alive whatever its lease says (a consumer without
                // a lease, such as Python kaiju's, under a name a kaiju-rs listener once had),
                // or dead so recently that it has not been idle for a lease yet. Looked at again
                // once it would have been.
                Found::Alive => {
                    tracing::debug!(stream = %self.stream, group = %self.group, consumer = %name, "a consumer whose name lease ran out read within the lease; nothing taken from it yet");
                    let idle = Duration::from_millis(recovered.left);
                    let wait = LEASE.saturating_sub(idle).max(Duration::from_millis(500));
                    self.gone.skip(&name, Instant::now() + wait);
                    false
                }
                // A name with a `/` may be another group's consumer (see `Names::skip`), whose
                // lease is not this group's to forget; without one, the field can only be this
                // group's. Looked at again a lease later: the name may become a consumer of
                // this group (and die) meanwhile.
                Found::Absent if name.contains('/') => {
                    self.gone.skip(&name, Instant::now() + LEASE);
                    false
                }
                Found::Absent => true,
            };
            if forget {
                self.gone.done(&name);
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
