//! Turning [`RedisSettings`] into a fred `Builder`, with the defaults fred lacks.
//!
//! fred has no reconnect policy and no command timeout by default; without them a client never
//! recovers after a failover and calls hang forever during an outage (measured before the project
//! started: with no reconnect policy, nothing succeeded for 18 s after a cluster failover). Both are
//! always set here.

use std::time::Duration;

use fred::prelude::{Builder, Config, ReconnectPolicy, Server, ServerConfig};
use fred::types::RespVersion;
use fred::types::config::ClusterDiscoveryPolicy;
use kaiju_core::{ConfigError, RedisSettings, parse_host_port};

use crate::{Result, TransportError};

/// How the servers are deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Deployment {
    /// One server (with or without replicas that the client does not use).
    Single,
    /// A Redis Cluster: keys are sharded over slots.
    Cluster,
    /// A primary found through Redis Sentinel.
    Sentinel,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn servers(settings: &RedisSettings, field: &'static str) -> Result<Vec<Server>> {
    let mut hosts = vec![Server::new(settings.host.clone(), settings.port)];
    for node in &settings.nodes {
        let (host, port) = parse_host_port(node).map_err(|reason| invalid(field, reason))?;
        hosts.push(Server::new(host, port));
    }
    Ok(hosts)
}

/// The fred `Config` for these settings.
pub(crate) fn config(settings: &RedisSettings) -> Result<Config> {
    settings.validate()?;
    let mut config = match &settings.url {
        Some(url) => {
            check_scheme(url.expose())?;
            Config::from_url(url.expose())
                .map_err(|e| TransportError::config("url", "not a valid Redis URL", &e))?
        }
        None => Config {
            server: if let Some(sentinel) = &settings.sentinel {
                let mut hosts = servers(settings, "nodes")?;
                for node in &sentinel.nodes {
                    let (host, port) = parse_host_port(node)
                        .map_err(|reason| invalid("sentinel.nodes", reason))?;
                    hosts.push(Server::new(host, port));
                }
                ServerConfig::Sentinel {
                    hosts,
                    service_name: sentinel.service_name.clone(),
                    username: sentinel.username.clone(),
                    password: sentinel.password.as_ref().map(|p| p.expose().to_owned()),
                }
            } else if settings.cluster {
                ServerConfig::Clustered {
                    hosts: servers(settings, "nodes")?,
                    policy: ClusterDiscoveryPolicy::default(),
                }
            } else {
                ServerConfig::new_centralized(settings.host.clone(), settings.port)
            },
            ..Config::default()
        },
    };
    if let Some(username) = &settings.username {
        config.username = Some(username.clone());
    }
    if let Some(password) = &settings.password {
        config.password = Some(password.expose().to_owned());
    }
    if settings.db.is_some() {
        config.database = settings.db;
    }
    if settings.resp3 {
        config.version = RespVersion::RESP3;
    }
    // Surface a wrong address or password at connect time instead of retrying in silence.
    config.fail_fast = true;
    apply_tls(&mut config, settings)?;
    Ok(config)
}

/// Where these settings connect, for error messages: `Redis at 127.0.0.1:7199`, `the Redis
/// Cluster at 10.0.0.1:7000, 10.0.0.2:7000`, `the Redis primary \`mymaster\` of the sentinels
/// at 10.0.0.1:26379`. Never holds a password.
pub(crate) fn target(config: &Config) -> String {
    let list = |hosts: &[Server]| {
        hosts
            .iter()
            .map(|h| format!("{}:{}", h.host, h.port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &config.server {
        ServerConfig::Centralized { server } => format!("Redis at {}:{}", server.host, server.port),
        ServerConfig::Clustered { hosts, .. } => format!("the Redis Cluster at {}", list(hosts)),
        ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        } => format!(
            "the Redis primary `{service_name}` of the sentinels at {}",
            list(hosts)
        ),
        // A Unix socket (fred's `unix-sockets` feature, not enabled here).
        #[allow(unreachable_patterns)]
        _ => "the configured Redis server".to_owned(),
    }
}

/// URL schemes fred understands. fred itself treats an unknown scheme as a plain TCP URL, which
/// would turn a typo like `redis-clutser://` into a silent single-node connection.
const SCHEMES: [&str; 12] = [
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
    "valkey",
    "valkeys",
    "valkey-cluster",
    "valkeys-cluster",
    "valkey-sentinel",
    "valkeys-sentinel",
];

fn check_scheme(url: &str) -> Result<()> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    if SCHEMES.contains(&scheme) {
        return Ok(());
    }
    Err(invalid(
        "url",
        format!("unknown scheme {scheme:?}; expected one of {SCHEMES:?}"),
    )
    .into())
}

#[cfg(feature = "tls")]
fn apply_tls(config: &mut Config, settings: &RedisSettings) -> Result<()> {
    // Replaces the connector fred made for a rediss:// URL too, so every TLS connection is
    // set up the same way (and none through fred's `default_rustls`, which panics when the
    // application links two rustls crypto providers).
    config.tls = if settings.uses_tls() {
        Some(crate::tls::connector(settings)?.into())
    } else {
        None
    };
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn apply_tls(_config: &mut Config, settings: &RedisSettings) -> Result<()> {
    if settings.uses_tls() {
        return Err(invalid("tls", "TLS needs the `tls` feature of kaiju-transport").into());
    }
    Ok(())
}

/// A fred `Builder` with reconnects, timeouts and health checks set from the settings.
pub(crate) fn builder(settings: &RedisSettings) -> Result<(Builder, Deployment)> {
    let config = config(settings)?;
    let deployment = match config.server {
        ServerConfig::Clustered { .. } => Deployment::Cluster,
        ServerConfig::Sentinel { .. } => Deployment::Sentinel,
        _ => Deployment::Single,
    };
    let command_timeout = settings.command_timeout();
    let connect_timeout = settings.connect_timeout();
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = connect_timeout;
            // A command sent on a connection that drops before its reply is sent again after
            // the reconnect, within the command timeout: right for the idempotent commands of
            // `Transport::pool`. Commands that must not run twice go through `Transport::once`,
            // which allows a single attempt.
            c.max_command_attempts = 20;
            c.max_redirections = 10;
            c.cluster_cache_update_delay = Duration::ZERO;
            // Detect half-open connections (a server that vanished without a FIN), but never
            // before a command could time out: a server that is merely slow must not cause a
            // reconnect (and with it a resend of every command in flight).
            c.unresponsive.max_timeout = Some(unresponsive_after(command_timeout, connect_timeout));
            c.unresponsive.interval = Duration::from_millis(200);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
            // Room for bursts of events (invalidations, pub/sub messages) between two reads
            // of a listener; a burst beyond it is survived too (see `events::listen`).
            p.broadcast_channel_capacity = 1024;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            settings.reconnect_max_attempts,
            clamp_ms(settings.reconnect_min_delay_ms),
            clamp_ms(settings.reconnect_max_delay_ms),
            2,
        ));
    Ok((builder, deployment))
}

/// When a connection that owes replies is declared dead: after the command timeout (so no
/// command is ever resent while it could still be answered), and not before 2 s.
pub(crate) fn unresponsive_after(command_timeout: Duration, connect_timeout: Duration) -> Duration {
    command_timeout
        .max(connect_timeout)
        .max(Duration::from_secs(2))
        + Duration::from_millis(500)
}

fn clamp_ms(ms: u64) -> u32 {
    u32::try_from(ms).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_map_to_fred() {
        let settings = RedisSettings {
            cluster: true,
            nodes: vec!["10.0.0.2:7001".into()],
            password: Some("pw".into()),
            ..RedisSettings::default()
        };
        let (_, deployment) = builder(&settings).unwrap();
        assert_eq!(deployment, Deployment::Cluster);
        let config = config(&settings).unwrap();
        assert_eq!(config.password.as_deref(), Some("pw"));
        assert_eq!(config.version, RespVersion::RESP3);
        match config.server {
            ServerConfig::Clustered { hosts, .. } => assert_eq!(hosts.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_slow_server_times_commands_out_before_the_connection_is_dropped() {
        for (command, connect) in [(5000, 2000), (100, 2000), (30_000, 1000)] {
            let after = unresponsive_after(
                Duration::from_millis(command),
                Duration::from_millis(connect),
            );
            assert!(
                after > Duration::from_millis(command),
                "{command} {connect}"
            );
        }
    }

    #[test]
    fn urls_and_overrides() {
        let mut settings = RedisSettings::from_url("redis://:urlpw@example:6390/3");
        settings.password = Some("override".into());
        let config = config(&settings).unwrap();
        assert_eq!(config.password.as_deref(), Some("override"));
        assert_eq!(config.database, Some(3));
        let bad = RedisSettings::from_url("nope://x");
        assert!(matches!(
            config_err(&bad),
            crate::TransportError::Config(ConfigError::Invalid { field: "url", .. })
        ));
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_the_feature_is_a_clear_error() {
        let settings = RedisSettings::from_url("rediss://example:6390");
        let err = config_err(&settings);
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }

    fn config_err(settings: &RedisSettings) -> crate::TransportError {
        match config(settings) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }
}
