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
