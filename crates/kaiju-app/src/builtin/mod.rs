//! The service classes kaiju-rs implements, under kaiju's class names and default names.

mod accepted;
#[cfg(feature = "cache")]
mod cache;
#[cfg(feature = "rpc")]
mod client;
#[cfg(feature = "locks")]
mod locks;
#[cfg(feature = "rpc")]
mod rpc;
mod transport;

pub use accepted::Accepted;
#[cfg(feature = "cache")]
pub use cache::CacheService;
#[cfg(feature = "rpc")]
pub use client::ClientService;
#[cfg(feature = "locks")]
pub use locks::LocksService;
#[cfg(feature = "rpc")]
pub use rpc::{ListenerService, RpcServerService, SubscriberService};
pub use transport::TransportService;

use std::sync::OnceLock;

use crate::error::BoxError;
use crate::registry::Registry;

impl Registry {
    /// The built-in classes: `RedisTransportService`, `Scheduler` and `LoggingService`
    /// (accepted; tokio and tracing do their jobs), and with the default features `RedisCache`,
    /// `RedisCacheService`, `RedisLocksService`, `JSONRPCServer`, `RedisListener`,
    /// `RedisSubscriber`, `RedisStreamRPCClient`, `RedisPublisher`.
    pub fn builtin() -> Self {
        let mut r = Self::new();
        r.insert::<TransportService>("RedisTransportService", "RedisTransportService");
        r.insert::<Accepted>("Scheduler", "Scheduler");
        r.insert::<Accepted>("LoggingService", "LoggingService");
        #[cfg(feature = "cache")]
        {
            r.insert::<CacheService>("RedisCache", "RedisCache");
            r.insert::<CacheService>("RedisCacheService", "cache");
        }
        #[cfg(feature = "locks")]
        r.insert::<LocksService>("RedisLocksService", "locks");
        #[cfg(feature = "rpc")]
        {
            r.insert::<RpcServerService>("JSONRPCServer", "rpc");
            r.insert::<ListenerService>("RedisListener", "RedisListener");
            r.insert::<SubscriberService>("RedisSubscriber", "RedisSubscriber");
            r.insert::<ClientService>("RedisStreamRPCClient", "RedisStreamRPCClient");
            r.insert::<ClientService>("RedisPublisher", "RedisPublisher");
        }
        r
    }
}

/// What a service set up in one of its hooks, or an error saying it was used before `hook`.
pub(crate) fn ready<T: Clone>(cell: &OnceLock<T>, what: &str, hook: &str) -> Result<T, BoxError> {
    cell.get()
        .cloned()
        .ok_or_else(|| format!("{what} is not ready yet (used before {hook})").into())
}

/// Removes the keys kaiju accepts but kaiju-rs has no use for, logging each one that is set.
pub(crate) fn drop_unused(map: &mut serde_json::Value, service: &str, keys: &[&str]) {
    if let serde_json::Value::Object(m) = map {
        for key in keys {
            if let Some(v) = m.remove(*key)
                && !matches!(v, serde_json::Value::Null | serde_json::Value::Bool(false))
            {
                tracing::info!(
                    service,
                    setting = key,
                    "kaiju setting has no effect in kaiju-rs"
                );
            }
        }
    }
}

/// Removes `keys` whose value is `null`: kaiju's way of saying "the default".
#[cfg(feature = "rpc")]
pub(crate) fn drop_null(map: &mut serde_json::Value, keys: &[&str]) {
    if let serde_json::Value::Object(m) = map {
        for key in keys {
            if m.get(*key).is_some_and(serde_json::Value::is_null) {
                m.remove(*key);
            }
        }
    }
}

/// Moves `keys` out of `map` into a map of their own.
#[cfg(feature = "rpc")]
pub(crate) fn take(map: &mut serde_json::Value, keys: &[&str]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let serde_json::Value::Object(m) = map {
        for key in keys {
            if let Some(v) = m.remove(*key) {
                out.insert((*key).to_owned(), v);
            }
        }
    }
    serde_json::Value::Object(out)
}
