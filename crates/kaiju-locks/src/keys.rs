//! The side keys of a lock: fence counter, wait queue, wake-up channel.
//!
//! They must live in the lock key's cluster slot, so one script can touch them all. If the key
//! has a hash tag, suffixes keep it; otherwise the whole key becomes the tag: `{<key>}.__fence`
//! hashes like `<key>` itself.

use kaiju_core::key_slot;

/// The names Redis sees for one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockKeys {
    pub(crate) lock: String,
    pub(crate) fence: String,
    pub(crate) queue: String,
    pub(crate) alive: String,
    pub(crate) arrivals: String,
    pub(crate) channel: String,
}

/// Whether `key` contains a hash tag Redis honours (`{` then a non-empty `...}`).
fn has_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// The first of `0`, `1`, `2`, ... whose slot is `slot` (found within a few thousand tries).
fn tag_for_slot(slot: u16) -> String {
    (0_u32..)
        .map(|n| n.to_string())
        .find(|tag| key_slot(tag.as_bytes()) == slot)
        .unwrap_or_default()
}

impl LockKeys {
    pub(crate) fn new(key: &str) -> Self {
        let base = if has_tag(key) {
            key.to_owned()
        } else if !key.contains('}') {
            format!("{{{key}}}")
        } else {
            // A `}` without a valid tag (`a}b`, `{}x`): wrapping would make a different tag.
            // Use a short tag that hashes to the key's slot, followed by the key for uniqueness.
            format!("{{{}}}.{key}", tag_for_slot(key_slot(key.as_bytes())))
        };
        let side = |suffix: &str| format!("{base}.__{suffix}");
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_keys_share_the_lock_slot() {
        for key in [
            "plain",
            "app.locks.x",
            "{tag}.x",
            "a{t}b",
            "{}odd",
            "x{",
            "a}b",
            "}",
        ] {
            let keys = LockKeys::new(key);
            for side in [&keys.fence, &keys.queue, &keys.alive, &keys.arrivals] {
                assert_eq!(key_slot(side.as_bytes()), keys.slot(), "{key} -> {side}");
            }
        }
        assert_eq!(LockKeys::new("a.b").fence, "{a.b}.__fence");
        assert_eq!(LockKeys::new("{t}.b").fence, "{t}.b.__fence");
    }
}
