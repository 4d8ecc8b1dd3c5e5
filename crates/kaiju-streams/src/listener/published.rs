//! The counters a listener publishes to Redis at each consumer-name lease renewal (every
//! third of the lease), so that `kaiju streams`, another process, can show them: one row per
//! consumer in `<env>.<app>._stream._stats.<topic>`, `name=n` pairs separated by spaces (read
//! by [`admin::consumer_counters`](crate::admin::consumer_counters)).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::listener::Counters;

/// Now, unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The row of a listener: its counters since it was created, and when that was.
pub(crate) fn format(c: &Counters, started_at: u64) -> String {
    let mut row = String::with_capacity(128);
    for (name, counter) in [
        ("processed", &c.processed),
        ("failed", &c.failed),
        ("retried", &c.retried),
        ("rejected", &c.rejected),
        ("dead_lettered", &c.dead_lettered),
        ("claimed", &c.claimed),
    ] {
        let _ = write!(row, "{name}={} ", counter.get());
    }
    let _ = write!(row, "started_at={started_at}");
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_names_every_counter() {
        let c = Counters::new("s", "g");
        Counters::add(&c.processed, 7);
        Counters::add(&c.failed, 2);
        assert_eq!(
            format(&c, 1_700_000_000_000),
            "processed=7 failed=2 retried=0 rejected=0 dead_lettered=0 claimed=0 started_at=1700000000000"
        );
    }
}
