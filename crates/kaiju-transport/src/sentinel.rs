//! What fred leaves out for Sentinel deployments.
//!
//! - [`diagnose`]: fred reports only "Failed to connect to all sentinel nodes" and keeps each
//!   sentinel's error to its log, so a wrong sentinel password, a wrong address and a wrong
//!   service name look alike. It asks the sentinels directly and returns the error that says
//!   what to fix.
//! - [`ask_for_primary`] and [`follow_primary`]: fred asks the sentinels where the primary is
//!   only when a connection drops. One asker per transport asks every sentinel twice a second;
//!   when a majority name the same primary, every connection of the transport that is
//!   elsewhere is moved there.
//!
//! Both read the sentinels from the fred configuration ([`Sentinels::of`]), so a
//! `redis-sentinel://` URL and the `sentinel` settings are treated alike.

use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::prelude::*;
use fred::types::{CustomCommand, Value};
use kaiju_core::{ConfigError, RedisSettings, Secret};
use tokio::sync::watch;

use crate::TransportError;
use crate::builder::builder;

/// How often the sentinels are asked where the primary is.
const PRIMARY_CHECK: Duration = Duration::from_millis(500);

/// How long one sentinel may take to answer the watch; a slower one does not count this time.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(400);

/// How long the watch leaves a sentinel it could not connect to before trying it again.
const RETRY_SENTINEL: Duration = Duration::from_secs(5);

/// How long a forced reconnection may take before the watch moves on.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The sentinels of a deployment, as fred uses them.
#[derive(Debug, Clone)]
pub(crate) struct Sentinels {
    addresses: Vec<(String, u16)>,
    service_name: String,
    username: Option<String>,
    password: Option<String>,
    /// The data connection's settings: TLS and timeouts for the sentinel connections too.
    base: RedisSettings,
}

impl Sentinels {
    /// The sentinels of `config`, if it is a Sentinel deployment.
    pub(crate) fn of(config: &Config, settings: &RedisSettings) -> Option<Self> {
        match &config.server {
            ServerConfig::Sentinel {
                hosts,
                service_name,
                username,
                password,
            } => Some(Self {
                addresses: hosts.iter().map(|s| (s.host.to_string(), s.port)).collect(),
                service_name: service_name.clone(),
                username: username.clone(),
                password: password.clone(),
                base: settings.clone(),
            }),
            _ => None,
        }
    }

    /// Settings for one plain connection to the sentinel at `host:port`, with the sentinels'
    /// credentials and the data connection's TLS and timeouts.
    fn probe(&self, host: &str, port: u16) -> RedisSettings {
        RedisSettings {
            url: None,
            host: host.to_owned(),
            port,
            username: self.username.clone(),
            password: self.password.clone().map(Secret::new),
            db: None,
            cluster: false,
            nodes: Vec::new(),
            sentinel: None,
            pool_size: 1,
            reconnect_max_attempts: 1,
            ..self.base.clone()
        }
    }
}

/// The error to report for `failure`, a failed connect through Sentinel: [`TransportError::Auth`]
/// if a sentinel refused the credentials, a config error if none monitors the service name,
/// else the failure with each sentinel's answer.
pub(crate) async fn diagnose(sentinels: &Sentinels, failure: TransportError) -> TransportError {
    let mut answers = Vec::new();
    for (host, port) in &sentinels.addresses {
        let address = format!("{host}:{port}");
        let probe = sentinels.probe(host, *port);
        match ask(&probe, &sentinels.service_name).await {
            Err(TransportError::Auth { message }) => {
                return TransportError::Auth {
                    message: format!("sentinel {address}: {message}"),
                };
            }
            Err(e) => answers.push(format!("{address}: {e}")),
            Ok(Value::Null) => {
                return TransportError::Config(ConfigError::Invalid {
                    field: "sentinel.service_name",
                    reason: format!(
                        "sentinel {address} monitors no primary named {:?}",
                        sentinels.service_name
                    ),
                });
            }
            Ok(_) => answers.push(format!("{address}: knows the primary")),
        }
    }
    let answers = answers.join("; ");
    match failure {
        TransportError::Client { message, .. } | TransportError::Connection { message } => {
            TransportError::Connection {
                message: format!("{message} ({answers})"),
            }
        }
        TransportError::Timeout { message } => TransportError::Timeout {
            message: format!("{message} ({answers})"),
        },
        other => other,
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on the one server of `probe`, over a connection of its
/// own.
async fn ask(probe: &RedisSettings, service_name: &str) -> Result<Value, TransportError> {
    let (builder, _) = builder(probe)?;
    let client = builder.build()?;
    let asked = async {
        client.init().await?;
        let (command, args) = get_master(service_name);
        client.custom(command, args).await
    };
    let answer = tokio::time::timeout(probe.connect_timeout() * 2, asked).await;
    let _ = client.quit().await;
    match answer {
        Ok(answer) => answer.map_err(TransportError::from),
        Err(_) => Err(TransportError::Timeout {
            message: "timed out: no answer".into(),
        }),
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME <service_name>`.
fn get_master(service_name: &str) -> (CustomCommand, Vec<String>) {
    (
        CustomCommand::new_static("SENTINEL", None, false),
        vec!["GET-MASTER-ADDR-BY-NAME".into(), service_name.into()],
    )
}

/// Where a majority of the sentinels say the primary is, as last asked: `None` until they
/// agreed once. The sending side is dropped when the asker stops.
pub(crate) type Primary = watch::Receiver<Option<(String, u16)>>;

/// Asks every sentinel where the primary is, twice a second, over one connection to each,
/// until `closed` is set or nothing follows the answer any more (the transport and every
/// connection it opened are gone), and publishes the primary a majority of them name. One
/// asker per transport; every connection of the transport follows it ([`follow_primary`]).
pub(crate) fn ask_for_primary(
    closed: std::sync::Arc<AtomicBool>,
    sentinels: Sentinels,
) -> Option<Primary> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (tx, rx) = watch::channel(None);
    runtime.spawn(async move {
        let mut asker = Asker::new(sentinels);
        loop {
            tokio::time::sleep(PRIMARY_CHECK).await;
            if tx.is_closed() || closed.load(Ordering::Relaxed) {
                asker.close().await;
                return;
            }
            if let Some(primary) = asker.majority().await {
                tx.send_if_modified(|known| {
                    let changed = known.as_ref() != Some(&primary);
                    *known = Some(primary);
                    changed
                });
            }
        }
    });
    Some(rx)
}

/// Twice a second, while `alive` can be upgraded and the asker runs: a client of `clients`
/// connected anywhere but the primary the sentinels name is reconnected (fred asks the
/// sentinels again when it reconnects).
///
/// fred asks the sentinels only when a connection drops. A primary that was paused (SIGSTOP, a
/// stall, a network partition) and comes back after the sentinels promoted its replica still
/// answers, as a primary, until the sentinels demote it; every write sent to it meanwhile is
/// acknowledged and then discarded by the demotion. Measured before this watch: 14-499 of ~800
/// acknowledged writes lost after a SIGSTOP/SIGCONT of the primary.
///
/// A client's servers are known from `CLIENT ID` (fred's connection ids): a user whose ACL rule
/// lacks `+client|id` is never moved.
pub(crate) fn follow_primary<T, F>(alive: Weak<T>, mut primary: Primary, clients: F)
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Vec<Client> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(PRIMARY_CHECK).await;
            // The asker stopped (its transport was closed or dropped): its last answer would
            // go stale.
            if primary.has_changed().is_err() {
                return;
            }
            let Some((host, port)) = primary.borrow_and_update().clone() else {
                continue;
            };
            let Some(owner) = alive.upgrade() else {
                return;
            };
            let watched = clients(&owner);
            drop(owner);
            for client in watched {
                let elsewhere = client.is_connected()
                    && client
                        .active_connections()
                        .iter()
                        .any(|s| *s.host != *host || s.port != port);
                if !elsewhere {
                    continue;
                }
                tracing::warn!(
                    client = %client.id(),
                    primary = %format!("{host}:{port}"),
                    "connected to a server the sentinels no longer name as the primary: reconnecting"
                );
                match tokio::time::timeout(RECONNECT_TIMEOUT, client.force_reconnection()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "forcing a reconnection failed"),
                    Err(_) => tracing::warn!("forcing a reconnection did not finish in time"),
                }
            }
        }
    });
}

/// One connection to each sentinel, opened when needed; one that cannot be reached is tried
/// again after [`RETRY_SENTINEL`].
struct Asker {
    sentinels: Sentinels,
    clients: Vec<Option<Client>>,
    retry_at: Vec<Instant>,
}

impl Asker {
    fn new(sentinels: Sentinels) -> Self {
        let n = sentinels.addresses.len();
        Self {
            sentinels,
            clients: vec![None; n],
            retry_at: vec![Instant::now(); n],
        }
    }

    /// The primary a majority of the configured sentinels name now, if they agree.
    async fn majority(&mut self) -> Option<(String, u16)> {
        let mut answers: Vec<((String, u16), usize)> = Vec::new();
        for index in 0..self.clients.len() {
            if let Some(answer) = self.ask(index).await {
                match answers.iter_mut().find(|(a, _)| *a == answer) {
                    Some((_, count)) => *count += 1,
                    None => answers.push((answer, 1)),
                }
            }
        }
        let needed = self.clients.len() / 2 + 1;
        answers
            .into_iter()
            .find(|(_, count)| *count >= needed)
            .map(|(answer, _)| answer)
    }

    /// One sentinel's answer; an error closes its connection.
    async fn ask(&mut self, index: usize) -> Option<(String, u16)> {
        if self.clients[index].is_none() {
            if Instant::now() < self.retry_at[index] {
                return None;
            }
            self.clients[index] = self.open(index).await;
            if self.clients[index].is_none() {
                self.retry_at[index] = Instant::now() + RETRY_SENTINEL;
                return None;
            }
        }
        let client = self.clients[index].as_ref()?;
        let (command, args) = get_master(&self.sentinels.service_name);
        let asked =
            tokio::time::timeout(ANSWER_TIMEOUT, client.custom::<Value, _>(command, args)).await;
        let parsed = match asked {
            Ok(Ok(Value::Array(parts))) => match parts.as_slice() {
                [host, port] => host
                    .as_string()
                    .zip(port.as_string().and_then(|p| p.parse().ok())),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none()
            && let Some(client) = self.clients[index].take()
        {
            let _ = client.quit().await;
        }
        parsed
    }

    async fn open(&self, index: usize) -> Option<Client> {
        let (host, port) = &self.sentinels.addresses[index];
        let probe = self.sentinels.probe(host, *port);
        let (builder, _) = builder(&probe).ok()?;
        let client = builder.build().ok()?;
        let connected = tokio::time::timeout(probe.connect_timeout(), client.init()).await;
        if matches!(connected, Ok(Ok(_))) {
            return Some(client);
        }
        let _ = client.quit().await;
        None
    }

    async fn close(&mut self) {
        for client in self.clients.iter_mut().filter_map(Option::take) {
            let _ = client.quit().await;
        }
    }
}
