//! Single flight in one process: one caller per key leads a fill, the others wait for its
//! outcome (shared by clones of a `Cache`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::CacheError;

/// How a fill ended, as the callers waiting on it in this process learn it.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The stored bytes of the value, or the error (the loader's, or Redis's).
    Done(std::result::Result<Bytes, CacheError>),
    /// The leader was cancelled or panicked: someone else must lead.
    Abandoned,
}

/// The fills in flight in this process, one per key; shared by clones of a `Cache`.
#[derive(Debug, Default, Clone)]
pub(crate) struct LocalFills(Arc<Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>>);

/// This caller's part in a key's fill.
pub(crate) enum Role {
    Lead(Flight),
    Follow(watch::Receiver<Option<Outcome>>),
}

/// A led fill: publishes its outcome to the followers, and leaves the map, when dropped.
pub(crate) struct Flight {
    fills: LocalFills,
    key: String,
    outcome: watch::Sender<Option<Outcome>>,
}

impl LocalFills {
    pub(crate) fn join(&self, key: &str) -> Role {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = map.get(key)
            && running.borrow().is_none()
        {
            return Role::Follow(running.clone());
        }
        let (outcome, watching) = watch::channel(None);
        map.insert(key.to_owned(), watching);
        Role::Lead(Flight {
            fills: self.clone(),
            key: key.to_owned(),
            outcome,
        })
    }
}

impl Flight {
    pub(crate) fn finish(self, outcome: std::result::Result<Bytes, CacheError>) {
        self.outcome.send_replace(Some(Outcome::Done(outcome)));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Not finished: the leader was cancelled or panicked.
        self.outcome
            .send_if_modified(|o| o.is_none() && o.replace(Outcome::Abandoned).is_none());
        let mut map = self.fills.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .get(&self.key)
            .is_some_and(|r| r.same_channel(&self.outcome.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}
