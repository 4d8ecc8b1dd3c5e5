//! The entries this listener holds: being handled, waiting for a retry, or waiting for their
//! ack. A read or claim never starts one of them a second time, and the ones held long enough
//! to look abandoned are touched so that other consumers do not claim them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::id::StreamId;
use crate::listener::reply::Item;

/// Entry id -> when this listener took it.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Mutex<HashMap<StreamId, Instant>>);

impl InFlight {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Instant>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the entries not held yet, and holds them from now on. Deleted items pass through.
    pub(crate) fn take(&self, items: Vec<Item>) -> Vec<Item> {
        let now = Instant::now();
        let mut map = self.map();
        items
            .into_iter()
            .filter(|item| match item {
                Item::Entry(entry) => map.insert(entry.id, now).is_none(),
                Item::Deleted(_) => true,
            })
            .collect()
    }

    /// Holds `id`; whether it was not held before.
    pub(crate) fn insert(&self, id: StreamId) -> bool {
        self.map().insert(id, Instant::now()).is_none()
    }

    /// Lets go of `ids`.
    pub(crate) fn remove(&self, ids: &[StreamId]) {
        let mut map = self.map();
        for id in ids {
            map.remove(id);
        }
    }

    /// The ids held for at least `age`.
    pub(crate) fn older_than(&self, age: Duration) -> Vec<StreamId> {
        let now = Instant::now();
        self.map()
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= age)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Lets go of everything (a new run starts from Redis's pending list).
    pub(crate) fn clear(&self) {
        self.map().clear();
    }
}
