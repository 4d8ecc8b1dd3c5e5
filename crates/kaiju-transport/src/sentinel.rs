//! Why a connection through Sentinel failed.
//!
//! fred reports only "Failed to connect to all sentinel nodes" and keeps each sentinel's error
//! to its log, so a wrong sentinel password, a wrong address and a wrong service name look
//! alike. [`diagnose`] asks the sentinels directly and turns that into the error that says
//! what to fix.

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
    let mut addresses = vec![format!("{}:{}", settings.host, settings.port)];
    addresses.extend(sentinel.nodes.iter().cloned());
    let mut answers = Vec::new();
    for address in addresses {
        let Ok((host, port)) = parse_host_port(&address) else {
            continue;
        };
        let probe = RedisSettings {
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
