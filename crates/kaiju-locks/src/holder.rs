//! Who holds a lock, for how long, with which fencing token: read from outside
//! ([`Locks::holder`](crate::Locks::holder)).

use std::time::Duration;

use kaiju_transport::fred::prelude::*;
use kaiju_transport::fred::types::Value;
use kaiju_transport::{Classify, Transport};

use crate::Result;
use crate::keys::LockKeys;

/// A held lock, as [`Locks::holder`](crate::Locks::holder) reads it in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The owner id the lock holds (what kaiju-redis and kaiju-rs write as its value).
    pub owner: String,
    /// The time left before the lock expires, unless renewed; `None` for a lock without an
    /// expiry (written by hand: it never expires).
    pub ttl: Option<Duration>,
    /// The fencing token of the current hold; `None` when the holder got no token (a Python
    /// kaiju-redis client, which writes only the lock key).
    pub token: Option<u64>,
    /// Callers queued for the lock (kaiju-rs' fair queue).
    pub waiters: u64,
}

pub(crate) async fn holder(transport: &Transport, key: &str) -> Result<Option<Holder>> {
    let keys = LockKeys::new(key);
    // One slot: the side keys share the lock's hash tag, so one pipeline reads them all.
    let pipeline = transport.pipeline();
    let _: Value = pipeline.get(&keys.lock).await.classify()?;
    let _: Value = pipeline.pttl(&keys.lock).await.classify()?;
    let _: Value = pipeline.get(&keys.fence).await.classify()?;
    let _: Value = pipeline.zcard(&keys.queue).await.classify()?;
    let (owner, ttl_ms, fence, waiters): (Option<String>, i64, Option<String>, u64) =
        pipeline.all().await.classify()?;
    let Some(owner) = owner else {
        return Ok(None);
    };
    Ok(Some(Holder {
        owner,
        ttl: u64::try_from(ttl_ms).ok().map(Duration::from_millis),
        token: fence.as_deref().and_then(token_of_hold),
        waiters,
    }))
}

/// The token in a fence value (`<token> <attempt>`), unless it records a release
/// (`<token> released`): then nobody holds that token now.
fn token_of_hold(fence: &str) -> Option<u64> {
    let (token, attempt) = fence.split_once(' ')?;
    if attempt == "released" {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_gives_the_token_of_a_hold_not_of_a_release() {
        assert_eq!(
            token_of_hold("1765000000000001 a1b2"),
            Some(1_765_000_000_000_001)
        );
        assert_eq!(token_of_hold("1765000000000001 released"), None);
        assert_eq!(token_of_hold("garbage"), None);
        assert_eq!(token_of_hold("x y"), None);
    }
}
