//! The counters kaiju-rs listeners publish (each process's own, since it started, written every
//! few seconds), read from outside: what `kaiju streams` shows per consumer.

use std::collections::HashMap;

use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Classify, Transport};

use crate::Result;

/// The counters one listener process published for its consumer: what it did since it
/// started. A consumer without a row is a Python kaiju consumer, a kaiju-rs listener older
/// than the rows, or one that stopped over 30 s ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConsumerCounters {
    /// Entries handled successfully.
    pub processed: u64,
    /// Failed deliveries (each failed delivery counts).
    pub failed: u64,
    /// Failed entries scheduled for another delivery.
    pub retried: u64,
    /// Entries the handler rejected as permanently unprocessable.
    pub rejected: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries claimed from other consumers.
    pub claimed: u64,
    /// When the listener process started, unix ms.
    pub started_at_ms: u64,
    /// When the row was written, unix ms of the server's clock (0 when the row does not say):
    /// the counters are as of then.
    pub published_at_ms: u64,
    /// How long ago the row was written, by the server's clock, when it says.
    pub published_ago: Option<std::time::Duration>,
}

/// The published counters of a stream's consumers ([`consumer_counters`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    rows: HashMap<String, ConsumerCounters>,
}

impl Counters {
    /// The counters of `consumer` of `group`, if its listener published them and they have not
    /// expired.
    pub fn of(&self, group: &str, consumer: &str) -> Option<&ConsumerCounters> {
        self.rows.get(&format!("{group}/{consumer}"))
    }
}

/// Reads a row: `"<expiry ms> processed=n failed=n ..."`; unknown names are skipped (a newer
/// listener may publish more), a row without an expiry is no row.
fn row(value: &str, now_ms: u64) -> Option<ConsumerCounters> {
    let (expires, rest) = value.split_once(' ')?;
    if expires.parse::<u64>().ok()? <= now_ms {
        return None;
    }
    let mut c = ConsumerCounters::default();
    for pair in rest.split(' ') {
        let Some((name, n)) = pair.split_once('=') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match name {
            "processed" => c.processed = n,
            "failed" => c.failed = n,
            "retried" => c.retried = n,
            "rejected" => c.rejected = n,
            "dead_lettered" => c.dead_lettered = n,
            "claimed" => c.claimed = n,
            "started_at" => c.started_at_ms = n,
            "published_at" => {
                c.published_at_ms = n;
                c.published_ago = Some(std::time::Duration::from_millis(now_ms.saturating_sub(n)));
            }
            _ => {}
        }
    }
    Some(c)
}

/// The counters in the hash `key` (a listener's
/// [`Namespace::stream_stats`](kaiju_core::Namespace::stream_stats)) of the given consumers
/// (`(group, consumer)`), those that have not expired, against the server's clock. Only those
/// rows are read (one `HMGET`), so a hash grown large, or a row that is not text, costs or
/// hides nothing else; a hash that does not exist gives none.
pub async fn consumer_counters<'a>(
    transport: &Transport,
    key: &str,
    consumers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Counters> {
    let fields: Vec<String> = consumers
        .into_iter()
        .map(|(group, consumer)| format!("{group}/{consumer}"))
        .collect();
    if fields.is_empty() {
        return Ok(Counters::default());
    }
    let values: Vec<Option<bytes::Bytes>> = transport
        .pool()
        .hmget(key, fields.clone())
        .await
        .classify()?;
    if values.iter().all(Option::is_none) {
        return Ok(Counters::default());
    }
    let now_ms = super::server_time_ms(transport, key).await?;
    let rows = fields
        .into_iter()
        .zip(values)
        .filter_map(|(field, value)| {
            let text = std::str::from_utf8(value.as_deref()?).ok()?;
            Some((field, row(text, now_ms)?))
        })
        .collect();
    Ok(Counters { rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_and_expired_ones_ignored() {
        let c = row(
            "2000 published_at=900 processed=7 failed=2 retried=1 rejected=0 dead_lettered=1 claimed=3 started_at=5 future=9 bad",
            1000,
        )
        .unwrap();
        assert_eq!((c.processed, c.failed, c.retried), (7, 2, 1));
        assert_eq!((c.dead_lettered, c.claimed, c.started_at_ms), (1, 3, 5));
        assert_eq!(c.published_at_ms, 900);
        assert_eq!(c.published_ago, Some(std::time::Duration::from_millis(100)));
        assert_eq!(row("2000 processed=7", 2000), None, "expired");
        assert_eq!(row("garbage", 0), None);
        assert_eq!(row("x processed=1", 0), None);
    }
}
