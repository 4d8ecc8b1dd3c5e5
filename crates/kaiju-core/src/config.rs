//! Settings, with the field names kaiju users already write in YAML.
//!
//! Every struct implements `serde::Deserialize` with `#[serde(default)]`, so a YAML or JSON file
//! needs only the fields that differ from the defaults, and unknown fields are rejected (a typo in
//! a setting name is an error, not a silently ignored line). Use any serde format crate to load
//! them; kaiju-core does not pick one for you.
//!
//! ```
//! use kaiju_core::RedisSettings;
//!
//! let settings = RedisSettings {
//!     host: "redis.internal".into(),
//!     port: 6380,
//!     password: Some("hunter2".into()),
//!     ..RedisSettings::default()
//! };
//! settings.validate()?;
//! assert!(!format!("{settings:?}").contains("hunter2"));
//! # Ok::<(), kaiju_core::ConfigError>(())
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::key::{KeyError, Namespace};
use crate::secret::{Secret, redact_url};

/// A setting has a value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One field is invalid.
    #[error("invalid setting `{field}`: {reason}")]
    Invalid {
        /// The field name, as written in the settings file.
        field: &'static str,
        /// Why it cannot work.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Identity of the running app (kaiju's `app` settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    /// Environment name, the first part of every key. Default: `"dev"`.
    pub env: String,
    /// App name, the second part of every key; also the default consumer group. Default: `"app"`.
    pub name: String,
    /// Unique id of this process; the default lock owner and consumer name.
    /// Default: a random UUID v4.
    pub id: Uuid,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            env: "dev".into(),
            name: "app".into(),
            id: Uuid::new_v4(),
        }
    }
}

impl AppSettings {
    /// The app's namespace, `<env>.<name>`.
    pub fn namespace(&self) -> Result<Namespace, KeyError> {
        Namespace::new(&self.env, &self.name)
    }

    /// The environment's shared namespace, `<env>._shared`.
    pub fn shared_namespace(&self) -> Result<Namespace, KeyError> {
        Namespace::shared(&self.env)
    }
}

/// The most connections [`RedisSettings::pool_size`] allows: 100,000 asked for once took 23 GB
/// and minutes to start; commands are pipelined, so a few connections are enough.
pub const MAX_POOL_SIZE: usize = 1024;

/// Connection settings for Redis, KeyDB or Valkey (kaiju's transport settings).
///
/// Either give `url` (any `redis://`, `rediss://`, `redis-cluster://`, `redis-sentinel://` URL),
/// or `host`/`port` and friends. When `url` is set, the other connection fields that are set
/// (`username`, `password`, `db`) override what the URL says.
/// Deliberately not `Serialize`: settings carry secrets and are read, never written.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// A connection URL. Default: `None` (use `host` and `port`).
    pub url: Option<Secret>,
    /// Server host. Default: `"127.0.0.1"`.
    pub host: String,
    /// Server port. Default: `6379`.
    pub port: u16,
    /// ACL user name. Default: `None` (the `default` user).
    pub username: Option<String>,
    /// Password. Never printed by `Debug`. Default: `None`.
    pub password: Option<Secret>,
    /// Database number (single node only; a cluster has only db 0). Default: `None` (db 0).
    pub db: Option<u8>,
    /// Connect to a Redis Cluster; `host:port` and `nodes` are seed nodes. Default: `false`.
    pub cluster: bool,
    /// More seed nodes as `"host:port"`, for a cluster or for sentinels. Default: empty.
    pub nodes: Vec<String>,
    /// Connect through Redis Sentinel. Default: `None`.
    pub sentinel: Option<SentinelSettings>,
    /// Use TLS (needs the `tls` feature of kaiju-transport). A `rediss://` URL turns it on too.
    /// The server's certificate is always verified, against `tls_ca_file` or else the system's
    /// roots, and must name the host dialled. Default: `false`.
    pub tls: bool,
    /// PEM file of the CA certificate(s) the server's certificate must chain to, instead of the
    /// system's roots (a private CA). Default: `None`.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate chain, for servers that require client
    /// certificates (mutual TLS, `tls-auth-clients yes`). Needs `tls_key_file`. Default: `None`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `tls_cert_file` (PKCS#8, PKCS#1 or SEC1). Its contents are
    /// read when connecting and never kept in the settings. Default: `None`.
    pub tls_key_file: Option<PathBuf>,
    /// Speak RESP3 (`HELLO 3`), as kaiju-redis does. Needs Redis 6+. Default: `true`.
    pub resp3: bool,
    /// Connections in the shared pool. Commands from many tasks are pipelined on each connection,
    /// so a few are enough. Default: `4`; at most [`MAX_POOL_SIZE`].
    pub pool_size: usize,
    /// Time allowed to open a connection, in ms. Default: `2000`.
    pub connect_timeout_ms: u64,
    /// Time allowed for one command, retries included, in ms. A command issued while the server
    /// is unreachable fails after this long instead of hanging. Default: `5000`.
    pub command_timeout_ms: u64,
    /// First reconnect delay, in ms; doubles after each failed attempt. Default: `50`.
    pub reconnect_min_delay_ms: u64,
    /// Largest reconnect delay, in ms. Keeps the time to notice a server that came back short.
    /// Default: `1000`.
    pub reconnect_max_delay_ms: u64,
    /// Reconnect attempts before giving up; `0` retries forever. Default: `0`.
    pub reconnect_max_attempts: u32,
    /// Whether to probe the newer servers' optional commands at connect time (kaiju-transport's
    /// `Feature`s). `None` probes unless the connection is an ACL user other than `default`:
    /// the probes name a key of their own (`{kaiju-probe}:...`), which a least-privilege user
    /// may not touch, and a refused probe would be written to the server's `ACL LOG`. `Some(true)`
    /// always probes (grant the user kaiju-transport's "feature probes" ACL row);
    /// `Some(false)` never does (the Redis 7 paths on any server). Default: `None`.
    pub probe_features: Option<bool>,
}

/// The longest timeout or reconnect delay a setting may give, in ms: a day.
const MAX_WAIT_MS: u64 = 86_400_000;

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: None,
            db: None,
            cluster: false,
            nodes: Vec::new(),
            sentinel: None,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            resp3: true,
            pool_size: 4,
            connect_timeout_ms: 2000,
            command_timeout_ms: 5000,
            reconnect_min_delay_ms: 50,
            reconnect_max_delay_ms: 1000,
            reconnect_max_attempts: 0,
            probe_features: None,
        }
    }
}

impl RedisSettings {
    /// Settings that connect to `url` with every other field at its default.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(Secret::new(url)),
            ..Self::default()
        }
    }

    /// [`command_timeout_ms`](Self::command_timeout_ms) as a `Duration`.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    /// [`connect_timeout_ms`](Self::connect_timeout_ms) as a `Duration`.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// Check the settings for values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pool_size == 0 {
            return Err(invalid("pool_size", "must be at least 1"));
        }
        if self.pool_size > MAX_POOL_SIZE {
            return Err(invalid(
                "pool_size",
                "must be at most 1024: each connection costs memory and a connect at start, and commands are pipelined, so a few are enough",
            ));
        }
        if self.url.is_none() && self.host.is_empty() {
            return Err(invalid("host", "must not be empty"));
        }
        if self.url.is_none() && self.port == 0 {
            return Err(invalid("port", "must be 1 to 65535"));
        }
        if self.command_timeout_ms == 0 {
            return Err(invalid(
                "command_timeout_ms",
                "must be above 0: without a timeout a call can hang forever during an outage",
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(invalid("connect_timeout_ms", "must be above 0"));
        }
        // Timeouts are multiplied and added to instants; a day keeps every sum far from
        // overflowing, and no Redis call should wait longer.
        for (field, ms) in [
            ("command_timeout_ms", self.command_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("reconnect_min_delay_ms", self.reconnect_min_delay_ms),
            ("reconnect_max_delay_ms", self.reconnect_max_delay_ms),
        ] {
            if ms > MAX_WAIT_MS {
                return Err(invalid(field, "must be at most 86400000 (a day)"));
            }
        }
        if self.reconnect_min_delay_ms > self.reconnect_max_delay_ms {
            return Err(invalid(
                "reconnect_min_delay_ms",
                "must not exceed reconnect_max_delay_ms",
            ));
        }
        if self.cluster && self.sentinel.is_some() {
            return Err(invalid("sentinel", "cannot be combined with cluster: true"));
        }
        if self.cluster && self.db.is_some_and(|db| db != 0) {
            return Err(invalid("db", "a Redis Cluster has only database 0"));
        }
        if let Some(sentinel) = &self.sentinel
            && sentinel.service_name.is_empty()
        {
            return Err(invalid("sentinel.service_name", "must not be empty"));
        }
        for node in &self.nodes {
            parse_host_port(node).map_err(|reason| invalid("nodes", reason))?;
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err(invalid("tls_key_file", "tls_cert_file needs it")),
            (None, Some(_)) => return Err(invalid("tls_cert_file", "tls_key_file needs it")),
            _ => {}
        }
        let tls_file = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
        ]
        .into_iter()
        .find_map(|(field, file)| file.as_ref().map(|_| field));
        if let Some(field) = tls_file
            && !self.uses_tls()
        {
            return Err(invalid(
                field,
                "is set but TLS is off: set `tls: true` or use a rediss:// URL \
                 (a plain connection would silently ignore it)",
            ));
        }
        Ok(())
    }

    /// Whether connections use TLS: `tls: true`, or a `rediss://` (`valkeys://`) URL.
    pub fn uses_tls(&self) -> bool {
        self.tls
            || self.url.as_ref().is_some_and(|url| {
                let scheme = url.expose().split_once("://").map_or("", |(s, _)| s);
                let scheme = scheme.to_ascii_lowercase();
                scheme.starts_with("rediss") || scheme.starts_with("valkeys")
            })
    }
}

/// Splits `"host:port"`; IPv6 hosts are written `[::1]:6379`.
pub fn parse_host_port(node: &str) -> Result<(String, u16), String> {
    let (host, port) = node
        .rsplit_once(':')
        .ok_or_else(|| format!("{node:?} is not host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{node:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{node:?} has an empty host"));
    }
    Ok((host.to_owned(), port))
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url.as_ref().map(|u| redact_url(u.expose())))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("db", &self.db)
            .field("cluster", &self.cluster)
            .field("nodes", &self.nodes)
            .field("sentinel", &self.sentinel)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("resp3", &self.resp3)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("reconnect_min_delay_ms", &self.reconnect_min_delay_ms)
            .field("reconnect_max_delay_ms", &self.reconnect_max_delay_ms)
            .field("reconnect_max_attempts", &self.reconnect_max_attempts)
            .field("probe_features", &self.probe_features)
            .finish()
    }
}

/// Redis Sentinel settings: the sentinels are `host:port` plus `nodes`.
///
/// The top-level `username` and `password` are the data nodes' credentials (the primary's and
/// replicas'); sentinels that require a password of their own (`requirepass` in
/// sentinel.conf) take `username` and `password` here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentinelSettings {
    /// The name of the monitored primary (`sentinel monitor <name> ...`). Required.
    pub service_name: String,
    /// Sentinel addresses as `"host:port"`. Default: empty (use the top-level `host:port`).
    pub nodes: Vec<String>,
    /// ACL user name on the sentinels. Default: `None` (the `default` user).
    pub username: Option<String>,
    /// The sentinels' password. Never printed by `Debug`. Default: `None` (sentinels without
    /// a password).
    pub password: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_passwords() {
        let s = RedisSettings {
            url: Some("redis://u:topsecret@h:1".into()),
            password: Some("hunter2".into()),
            ..RedisSettings::default()
        };
        let out = format!("{s:?}");
        assert!(!out.contains("topsecret"), "{out}");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("u:***@h:1"), "{out}");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RedisSettings {
            command_timeout_ms: 0,
            ..RedisSettings::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Invalid {
                field: "command_timeout_ms",
                ..
            })
        ));
        let bad = RedisSettings {
            cluster: true,
            db: Some(2),
            ..RedisSettings::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Invalid { field: "db", .. })
        ));
        let bad = RedisSettings {
            nodes: vec!["nohost".into()],
            ..RedisSettings::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Invalid { field: "nodes", .. })
        ));
        assert!(RedisSettings::default().validate().is_ok());
    }

    #[test]
    fn tls_files_need_tls_and_come_in_pairs() {
        let ca_only = RedisSettings {
            tls_ca_file: Some("/ca.pem".into()),
            ..RedisSettings::default()
        };
        assert!(matches!(
            ca_only.validate(),
            Err(ConfigError::Invalid {
                field: "tls_ca_file",
                ..
            })
        ));
        let over_url = RedisSettings {
            tls_ca_file: Some("/ca.pem".into()),
            ..RedisSettings::from_url("rediss://h:1")
        };
        assert!(over_url.uses_tls() && over_url.validate().is_ok());
        let cert_only = RedisSettings {
            tls: true,
            tls_cert_file: Some("/c.pem".into()),
            ..RedisSettings::default()
        };
        assert!(matches!(
            cert_only.validate(),
            Err(ConfigError::Invalid {
                field: "tls_key_file",
                ..
            })
        ));
        assert!(!RedisSettings::from_url("redis://rediss:1").uses_tls());
        assert!(RedisSettings::from_url("valkeys://h:1").uses_tls());
    }

    #[test]
    fn host_port_parsing() {
        assert_eq!(parse_host_port("h:1").unwrap(), ("h".into(), 1));
        assert_eq!(parse_host_port("[::1]:7000").unwrap(), ("::1".into(), 7000));
        assert!(parse_host_port("h:x").is_err());
        assert!(parse_host_port(":1").is_err());
    }

    #[test]
    fn app_namespace() {
        let app = AppSettings {
            env: "prod".into(),
            name: "billing".into(),
            ..AppSettings::default()
        };
        assert_eq!(app.namespace().unwrap().prefix(), "prod.billing");
        assert_eq!(app.shared_namespace().unwrap().prefix(), "prod._shared");
    }
}
