//! What fred leaves out for Sentinel deployments.
//!
//! - [`diagnose`]: fred reports only "Failed to connect to all sentinel nodes" and keeps each
//!   sentinel's error to its log, so a wrong sentinel password, a wrong address and a wrong
//!   service name look alike. It asks the sentinels directly and returns the error that says
//!   what to fix.
//! - [`watch_primary`]: fred asks the sentinels where the primary is only when a connection
//!   drops; the watch asks them twice a second and moves connections that are elsewhere.

use std::sync::Weak;
use std::time::Duration;

use fred::clients::Client;
use fred::prelude::*;
use fred::types::{CustomCommand, Value};
use kaiju_core::{ConfigError, RedisSettings, SentinelSettings, parse_host_port};

use crate::TransportError;
use crate::builder::builder;

/// The error to report for `failure`, a failed connect through Sentinel: [`TransportError::Auth`]
/// if a sentinel refused the credentials, a config error if none monitors the service name,
/// else a connection error naming each sentinel's answer.
pub(crate) async fn diagnose(
    settings: &RedisSettings,
    sentinel: &SentinelSettings,
    failure: TransportError,
) -> TransportError {
    let mut answers = Vec::new();
    for address in addresses(settings, sentinel) {
        let Some(probe) = probe_settings(settings, sentinel, &address) else {
            continue;
        };
        match ask(&probe, &sentinel.service_name).await {
            Err(TransportError::Auth { message }) => {
                return TransportError::Auth {
                    message: format!("sentinel {address}: {message}"),
                };
            }
            Err(e) => answers.push(format!("{address}: {e}")),
            Ok(primary) => match primary {
                Value::Null => {
                    return TransportError::Config(ConfigError::Invalid {
                        field: "sentinel.service_name",
                        reason: format!(
                            "sentinel {address} monitors no primary named {:?}",
                            sentinel.service_name
                        ),
                    });
                }
                _ => answers.push(format!("{address}: knows the primary")),
            },
        }
    }
    match failure {
        TransportError::Client { message, .. } | TransportError::Connection { message } => {
            TransportError::Connection {
                message: format!("{message} ({})", answers.join("; ")),
            }
        }
        TransportError::Timeout { message } => TransportError::Timeout {
            message: format!("{message} ({})", answers.join("; ")),
        },
        other => other,
    }
}

/// The sentinels: `host:port`, then `sentinel.nodes`.
fn addresses(settings: &RedisSettings, sentinel: &SentinelSettings) -> Vec<String> {
    let mut addresses = vec![format!("{}:{}", settings.host, settings.port)];
    addresses.extend(sentinel.nodes.iter().cloned());
    addresses
}

/// Settings for one plain connection to the sentinel at `address`, with the sentinels'
/// credentials and the data connection's TLS and timeouts.
fn probe_settings(
    settings: &RedisSettings,
    sentinel: &SentinelSettings,
    address: &str,
) -> Option<RedisSettings> {
    let (host, port) = parse_host_port(address).ok()?;
    Some(RedisSettings {
        url: None,
        host,
        port,
        username: sentinel.username.clone(),
        password: sentinel.password.clone(),
        db: None,
        cluster: false,
        nodes: Vec::new(),
        sentinel: None,
        pool_size: 1,
        reconnect_max_attempts: 1,
        ..settings.clone()
    })
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on the one server of `probe`.
async fn ask(probe: &RedisSettings, service_name: &str) -> Result<Value, TransportError> {
    let (builder, _) = builder(probe)?;
    let client = builder.build()?;
    let asked = async {
        client.init().await?;
        client
            .custom(
                CustomCommand::new_static("SENTINEL", None, false),
                vec!["GET-MASTER-ADDR-BY-NAME", service_name],
            )
            .await
    };
    let answer = tokio::time::timeout(probe.connect_timeout() * 2, asked).await;
    let _ = client.quit().await;
    match answer {
        Ok(answer) => answer.map_err(TransportError::from),
        Err(_) => Err(TransportError::Timeout {
            message: "no answer".into(),
        }),
    }
}

/// How often the sentinels are asked where the primary is.
const PRIMARY_CHECK: Duration = Duration::from_millis(500);

/// Follows the primary the sentinels name, for as long as `alive` can be upgraded: a client
/// connected anywhere else is reconnected (fred asks the sentinels again when it reconnects).
///
/// fred asks the sentinels only when a connection drops. A primary that was paused (SIGSTOP, a
/// long GC-like stall, a network partition) and comes back after the sentinels promoted its
/// replica still answers, as a primary, until the sentinels demote it; every write sent to it
/// meanwhile is acknowledged and then discarded by the demotion. Measured before this watch:
/// 14-499 of ~800 acknowledged writes lost after a SIGSTOP/SIGCONT of the primary.
pub(crate) fn watch_primary<T, F>(
    alive: Weak<T>,
    settings: RedisSettings,
    sentinel: SentinelSettings,
    clients: F,
) where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Vec<Client> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut asker = Asker {
            settings,
            sentinel,
            client: None,
        };
        loop {
            tokio::time::sleep(PRIMARY_CHECK).await;
            let Some(primary) = asker.primary().await else {
                if alive.strong_count() == 0 {
                    return;
                }
                continue;
            };
            let Some(owner) = alive.upgrade() else {
                asker.close().await;
                return;
            };
            let watched = clients(&owner);
            drop(owner);
            for client in watched {
                let elsewhere = client.is_connected()
                    && client
                        .active_connections()
                        .iter()
                        .any(|s| *s.host != *primary.0 || s.port != primary.1);
                if elsewhere {
                    tracing::warn!(
                        client = %client.id(),
                        primary = %format!("{}:{}", primary.0, primary.1),
                        "connected to a server the sentinels no longer name as the primary: reconnecting"
                    );
                    if let Err(e) = client.force_reconnection().await {
                        tracing::warn!(error = %e, "forcing a reconnection failed");
                    }
                }
            }
        }
    });
}

/// One connection to a sentinel, reopened (to the next sentinel) after an error.
struct Asker {
    settings: RedisSettings,
    sentinel: SentinelSettings,
    client: Option<Client>,
}

impl Asker {
    /// The primary's `(host, port)` as a sentinel names it now, if one answers.
    async fn primary(&mut self) -> Option<(String, u16)> {
        if self.client.is_none() {
            self.client = self.open().await;
        }
        let client = self.client.as_ref()?;
        let asked = tokio::time::timeout(
            self.settings.command_timeout(),
            client.custom::<Value, _>(
                CustomCommand::new_static("SENTINEL", None, false),
                vec![
                    "GET-MASTER-ADDR-BY-NAME",
                    self.sentinel.service_name.as_str(),
                ],
            ),
        )
        .await;
        let parsed = match asked {
            Ok(Ok(Value::Array(parts))) => match parts.as_slice() {
                [host, port] => host
                    .as_string()
                    .zip(port.as_string().and_then(|p| p.parse().ok())),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.close().await;
        }
        parsed
    }

    /// A connection to the first sentinel that accepts one.
    async fn open(&self) -> Option<Client> {
        for address in addresses(&self.settings, &self.sentinel) {
            let Some(probe) = probe_settings(&self.settings, &self.sentinel, &address) else {
                continue;
            };
            let Ok((builder, _)) = builder(&probe) else {
                continue;
            };
            let Ok(client) = builder.build() else {
                continue;
            };
            let connected = tokio::time::timeout(probe.connect_timeout() * 2, client.init()).await;
            if matches!(connected, Ok(Ok(_))) {
                return Some(client);
            }
            let _ = client.quit().await;
        }
        None
    }

    async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.quit().await;
        }
    }
}
