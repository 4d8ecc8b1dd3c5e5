//! The Redis keys of one lock: the lock itself (the caller's key, verbatim, as kaiju-redis uses
//! it) and its side keys, named by [`kaiju_core::side_key`] so they share the lock's slot.

use kaiju_core::{key_slot, side_key_prefix};

/// The names Redis sees for one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockKeys {
    /// The lock: value = owner id, as Python kaiju writes it.
    pub(crate) lock: String,
    /// `<token> <attempt>` of the current holder, or `<token> released` after its release: the
    /// last fencing token handed out, and which acquire call got it. It expires with the lock.
    pub(crate) fence: String,
    /// Waiters in arrival order (zset ticket -> arrival number).
    pub(crate) queue: String,
    /// Live waiters (hash waiter -> deadline ms); a release wakes waiters only if it exists.
    pub(crate) alive: String,
    /// The arrival counter of the queue.
    pub(crate) arrivals: String,
    /// The pub/sub channel a release publishes on.
    pub(crate) channel: String,
}

impl LockKeys {
    pub(crate) fn new(key: &str) -> Self {
        // The naming rules run once, not once per side key.
        let prefix = side_key_prefix(key);
        let side = |suffix: &str| {
            let mut name = String::with_capacity(prefix.len() + suffix.len());
            name.push_str(&prefix);
            name.push_str(suffix);
            name
        };
        Self {
            lock: key.to_owned(),
            fence: side("fence"),
            queue: side("queue"),
            alive: side("alive"),
            arrivals: side("arrivals"),
            channel: side("released"),
        }
    }

    pub(crate) fn slot(&self) -> u16 {
        key_slot(self.lock.as_bytes())
    }

    /// Every key a lock may leave behind (the channel is not a key).
    #[cfg(test)]
    pub(crate) fn all(&self) -> [&str; 5] {
        [
            &self.lock,
            &self.fence,
            &self.queue,
            &self.alive,
            &self.arrivals,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_lock_shares_its_slot() {
        for key in ["plain", "app.locks.x", "{tag}.x", "a}b", "}"] {
            let keys = LockKeys::new(key);
            for side in keys.all() {
                assert_eq!(key_slot(side.as_bytes()), keys.slot(), "{key} -> {side}");
            }
            assert_eq!(keys.fence, kaiju_core::side_key(key, "fence"));
            assert_eq!(keys.channel, kaiju_core::side_key(key, "released"));
        }
        assert_eq!(LockKeys::new("a.b").fence, "{a.b}:__fence");
        assert_ne!(LockKeys::new("x").fence, LockKeys::new("{x}").fence);
    }
}
