//! The service classes kaiju-rs implements, under kaiju's class names and default names, and
//! what becomes of every setting a kaiju config gives them.
//!
//! Every key of a service's `settings` is one of four kinds:
//!
//! - **read**: it does what kaiju's does (its type and range are checked at build, with the
//!   file, line and column of an error);
//! - **no effect**: accepted so that kaiju configs load unchanged; when it is set, one line
//!   `kaiju setting has no effect in kaiju-rs` is logged at start-up (level INFO), naming the
//!   service and the setting;
//! - **only as kaiju's default**: accepted with the value kaiju uses by default, refused with
//!   an error saying why for any other value (kaiju-rs cannot honour it);
//! - **refused**: an error at build naming the setting and what to use instead.
//!
//! Any key not listed is an error (`unknown field`), so a misspelt setting never passes
//! silently. kaiju's `null` for "the default" is read as the default where the setting has no
//! null meaning of its own.
//!
//! # `RedisTransportService` ([`TransportService`])
//!
//! | setting | kind |
//! |---|---|
//! | [`RedisSettings`](kaiju_core::RedisSettings)'s fields: `url`, `host`, `port`, `username`, `password`, `db`, `cluster`, `nodes`, `sentinel`, `tls`, `tls_ca_file`, `tls_cert_file`, `tls_key_file`, `resp3`, `pool_size`, `connect_timeout_ms`, `command_timeout_ms`, `reconnect_*` | read |
//! | `password`, `username` written as numbers (`password: 12345`) | read, as their text (coredis sent the text) |
//! | `connect_timeout` (seconds) | read, as `connect_timeout_ms` |
//! | `protocol_version` (2 or 3) | read, as `resp3` |
//! | `startup_nodes` (`[{host, port}]`) | read, as `nodes` |
//! | `ssl`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` | read, as `tls`, `tls_ca_file`, `tls_cert_file`, `tls_key_file`; given under both names they must agree |
//! | `ssl_cert_reqs: required`, `ssl_check_hostname: true` | only as kaiju's default: certificate and host name are always verified |
//! | `decode_responses: false`, `tracking: false`, `unix_socket_path: null` | only as kaiju's default: values are bytes; client-side caching is `kaiju_cache::NearCache`; connections are TCP |
//! | `max_idle_time`, `max_connections`, `client_name`, `stream_timeout`, `readonly`, `read_from_replicas`, `non_atomic_cross_slot`, `tracking_cache_settings` | no effect (coredis tuning) |
//! | any other `ssl_*` (`ssl_ciphers`, `ssl_password`, ...) | refused |
//!
//! # `RedisCache`, `RedisCacheService` ([`CacheService`])
//!
//! | setting | kind |
//! |---|---|
//! | `transport` | read: a service name, `null` (the first transport) |
//! | `serializer_type: application/msgpack` | only as kaiju's default: values are msgpack |
//!
//! # `RedisLocksService` ([`LocksService`])
//!
//! | setting | kind |
//! |---|---|
//! | `transport` | read |
//! | `refresh_interval`, `scheduler` | no effect: each lock renews on a timer of its own |
//!
//! # `JSONRPCServer` ([`RpcServerService`])
//!
//! | setting | kind |
//! |---|---|
//! | [`ServerSettings`](kaiju_rpc::ServerSettings)'s fields: `max_parallel_tasks`, `default_request_time`, `max_request_time`, `enable_permissions`, `request_logs`, `response_logs`, `blacklist_routes`, `blacklist_scope`, `max_batch_length`, and kaiju-rs's own `access_log` (default `true`: one info line per request), `max_batch_bytes` (default 8 MiB) and `max_reply_bytes` (default 8 MiB) | read (`null` is the default for `blacklist_routes` and `max_parallel_tasks`) |
//! | `scheduler`, `session_service`, `auth_service`, `use_annotation_parser` | no effect |
//!
//! # `RedisListener` ([`ListenerService`]) and `RedisSubscriber` ([`SubscriberService`])
//!
//! | setting | kind |
//! |---|---|
//! | `scope` (`SYSTEM`, `ADMIN`, `USER`, `GUEST`; default `GUEST`), `transport`, `rpc_service` | read |
//! | [`ListenerSettings`](kaiju_streams::ListenerSettings)'s fields (`topic`, `group_id`, `max_batch_size`, `pending_messages_time_ms`, `trim_size`, ..., and kaiju-rs's own `max_entry_bytes`, default 8 MiB, and `max_decoded_bytes`, default 16 MiB) | read by the listener (`null` is the default for `max_parallel_batches`, `max_batch_size`, `max_wait_time_ms`, `topic`); a subscriber reads only `topic` and accepts the rest without effect |
//! | `pending_messages_time_ms` | also checked against the handler timeout the RPC server imposes (above its `max_request_time`) |
//! | `dead_letter_expired_requests` (kaiju-rs; default `false`) | read by the listener: whether a request with a `Reply-To` whose deadline passed before it started is dead-lettered, or acked and counted ([`RpcListenerOptions`](kaiju_rpc::RpcListenerOptions)) |
//! | `locks_service`, `scheduler`, `session_service`, `authentication_service` | no effect |
//! | `use_sessions: true` | refused: sessions are not part of kaiju-rs yet; requests run at `scope` |
//!
//! # `RedisStreamRPCClient`, `RedisPublisher` ([`ClientService`])
//!
//! | setting | kind |
//! |---|---|
//! | `transport`, `app_name` (the app called by default), `topic` (default `rpc`) | read |
//! | `request_logs`, `response_logs`, `scheduler` | no effect |
//! | `token_client` other than `false`, `auth_str` | refused: token authentication and the `Authorization` header are not part of kaiju-rs yet |
//!
//! # `Scheduler`, `LoggingService` ([`Accepted`])
//!
//! Accepted and inactive (tokio schedules, `tracing` logs; one line says so at build). Their
//! settings (`refresh_rate`; `loggers`, `handlers`, `loglevel`) are checked for unknown keys and
//! otherwise ignored.
//!
//! # Classes that are not available
//!
//! `HealthService`, `SessionService`, `AuthenticationService`, `LoginService`, `HTTPService`,
//! `RPCClientService`, `TokenClientService`, `JSONRPCHTTPService` and `PermissionService` fail
//! the build with "not available in kaiju-rs" and the reason, unless their entry has
//! `enabled: false`.

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

/// Logs each kaiju setting that is set (`true`) but has no effect in kaiju-rs: accepted, so
/// that kaiju configs load unchanged, and said once at start-up.
pub(crate) fn no_effect(b: &crate::service::Build<'_>, settings: &[(&str, bool)]) {
    for (setting, set) in settings {
        if *set {
            tracing::info!(
                service = b.name(),
                setting,
                "kaiju setting has no effect in kaiju-rs"
            );
        }
    }
}

/// `settings` without the `keys` whose value is `null`: kaiju's way of saying "the default" for
/// settings that have no null meaning of their own (for others, such as
/// `pending_messages_time_ms`, null means "off", so the list is per class).
#[cfg(feature = "rpc")]
pub(crate) fn null_is_default(
    mut settings: serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
) -> serde_json::Value {
    settings.retain(|key, value| !(value.is_null() && keys.contains(&key.as_str())));
    serde_json::Value::Object(settings)
}
