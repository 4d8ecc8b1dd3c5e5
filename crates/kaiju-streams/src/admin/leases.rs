//! Which consumers of a stream are alive: the consumer-name leases kaiju-rs listeners hold
//! (see the listener's takeover), read from outside.

use std::collections::HashMap;
use std::time::Duration;

use kaiju_transport::fred::prelude::*;
use kaiju_transport::{Classify, Transport};

use crate::Result;

/// The consumer-name leases of one stream's listeners, read at one moment of the server's
/// clock ([`leases`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    /// `"<group>/<consumer>"` → the time left on its lease (zero when it ran out).
    left: HashMap<String, Duration>,
}

/// Whether a consumer is alive, as its lease or its idle time tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Liveness {
    /// A kaiju-rs listener holds the consumer's name lease: it renewed it within the lease
    /// time (10 s), so it runs.
    Live {
        /// How long the lease lasts without another renewal.
        lease_left: Duration,
    },
    /// The consumer's lease ran out or was released: its listener stopped or died, and its
    /// pending entries are taken over by the group's other consumers.
    Gone,
    /// No lease (a Python kaiju consumer, or a kaiju-rs listener older than the leases): judged
    /// by its idle time, which is `stale` past the threshold. On Redis before 7.2 a consumer
    /// that reads and finds nothing does not reset its idle time, so a live but quiet one can
    /// look stale.
    Idle {
        /// Idle past the threshold.
        stale: bool,
    },
}

impl Liveness {
    /// Whether the consumer counts as live.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Live { .. } | Self::Idle { stale: false })
    }
}

impl Leases {
    /// The liveness of `consumer` of `group`, idle for `idle` (from `XINFO CONSUMERS`); a
    /// lease-less consumer is stale when idle longer than `stale_after`.
    pub fn liveness(
        &self,
        group: &str,
        consumer: &str,
        idle: Duration,
        stale_after: Duration,
    ) -> Liveness {
        match self.left.get(&format!("{group}/{consumer}")) {
            Some(left) if !left.is_zero() => Liveness::Live { lease_left: *left },
            Some(_) => Liveness::Gone,
            None => Liveness::Idle {
                stale: idle > stale_after,
            },
        }
    }
}

/// The consumer-name leases in the hash `key` (a listener's
/// [`Namespace::stream_consumers`](kaiju_core::Namespace::stream_consumers)), against the
/// server's clock. A hash that does not exist gives no leases.
pub async fn leases(transport: &Transport, key: &str) -> Result<Leases> {
    let pool = transport.pool();
    let fields: HashMap<String, String> = pool.hgetall(key).await.classify()?;
    if fields.is_empty() {
        return Ok(Leases::default());
    }
    let now_ms = super::ids::server_time_ms(transport, key).await?;
    let left = fields
        .into_iter()
        .filter_map(|(field, value)| {
            // "<instance token> <expiry in ms, server time>"
            let expires: u64 = value.rsplit(' ').next()?.parse().ok()?;
            Some((field, Duration::from_millis(expires.saturating_sub(now_ms))))
        })
        .collect();
    Ok(Leases { left })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_tells_live_or_gone_and_no_lease_goes_by_idle_time() {
        let leases = Leases {
            left: HashMap::from([
                ("g/a".to_owned(), Duration::from_secs(4)),
                ("g/b".to_owned(), Duration::ZERO),
            ]),
        };
        let minute = Duration::from_secs(60);
        let idle = Duration::from_secs(600);
        assert_eq!(
            leases.liveness("g", "a", idle, minute),
            Liveness::Live {
                lease_left: Duration::from_secs(4)
            }
        );
        assert_eq!(
            leases.liveness("g", "b", Duration::ZERO, minute),
            Liveness::Gone
        );
        assert_eq!(
            leases.liveness("g", "c", idle, minute),
            Liveness::Idle { stale: true }
        );
        assert!(leases.liveness("h", "a", Duration::ZERO, minute).is_live());
    }
}
