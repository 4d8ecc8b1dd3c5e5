//! The cache's metrics (docs/metrics.md): hits and misses by tier, fills, and values that
//! could not be decoded. Handles are registered once per [`Cache`](crate::Cache) (its clones
//! and near caches share them), so that a read costs one atomic add more.

use metrics::Counter;

/// Requests by tier and result.
const REQUESTS: &str = "kaiju_cache_requests_total";

/// The handles of one cache.
#[derive(Debug)]
pub(crate) struct CacheMetrics {
    redis_hit: Counter,
    redis_miss: Counter,
    #[cfg_attr(not(feature = "near-cache"), allow(dead_code))]
    near_hit: Counter,
    #[cfg_attr(not(feature = "near-cache"), allow(dead_code))]
    near_miss: Counter,
    /// Values a loader produced and the cache stored (`get_or_set_with`).
    pub(crate) fills: Counter,
}

impl CacheMetrics {
    /// Registers the handles with the recorder installed now.
    pub(crate) fn new() -> Self {
        Self {
            redis_hit: metrics::counter!(REQUESTS, "tier" => "redis", "result" => "hit"),
            redis_miss: metrics::counter!(REQUESTS, "tier" => "redis", "result" => "miss"),
            near_hit: metrics::counter!(REQUESTS, "tier" => "near", "result" => "hit"),
            near_miss: metrics::counter!(REQUESTS, "tier" => "near", "result" => "miss"),
            fills: metrics::counter!("kaiju_cache_fills_total"),
        }
    }

    /// A key read from Redis: found (`hit`) or not.
    pub(crate) fn redis(&self, hit: bool) {
        if hit {
            self.redis_hit.increment(1);
        } else {
            self.redis_miss.increment(1);
        }
    }

    /// A key read through a near cache: found in memory (`hit`) or not.
    #[cfg(feature = "near-cache")]
    pub(crate) fn near(&self, hit: bool) {
        if hit {
            self.near_hit.increment(1);
        } else {
            self.near_miss.increment(1);
        }
    }
}

/// A stored value that is not the type asked for (rare: looked up in the registry each time,
/// so that it needs no handle where values are decoded).
pub(crate) fn decode_failure() {
    metrics::counter!("kaiju_cache_decode_failures_total").increment(1);
}
