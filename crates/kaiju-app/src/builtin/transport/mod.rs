//! `RedisTransportService`: the connection every other Redis service uses.

mod settings;

use std::sync::OnceLock;
use std::time::Duration;

use kaiju_core::RedisSettings;
use kaiju_transport::Transport;

use crate::error::{AppError, BoxError};
use crate::service::{Build, Context, Dependency, Service, ServiceClass};

/// kaiju's `RedisTransportService`: connects in `init`, closes in `close`.
///
/// Settings are kaiju-rs's [`RedisSettings`] (`host`, `port`, `password`, `db`, `cluster`,
/// `username`, `url`, `nodes`, ...), plus kaiju's `connect_timeout` (seconds),
/// `protocol_version` (2 or 3) and `startup_nodes` (a list of `{host, port}`). coredis
/// tuning keys kaiju forwarded (`max_idle_time`, `max_connections`, `client_name`,
/// `stream_timeout`, `readonly`, `read_from_replicas`, `non_atomic_cross_slot`,
/// `decode_responses`: false, `tracking`: false, `unix_socket_path`: null) are accepted and
/// have no effect; `ssl` is `tls`, and `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` are
/// `tls_ca_file`, `tls_cert_file`, `tls_key_file` (`ssl_cert_reqs: required` and
/// `ssl_check_hostname: true` are accepted; verification cannot be turned off). The URL and
/// every value are checked when the service is built, before anything connects.
#[derive(Debug)]
pub struct TransportService {
    settings: RedisSettings,
    transport: OnceLock<Transport>,
}

impl TransportService {
    /// The connection (after `init`).
    pub fn transport(&self) -> Result<Transport, BoxError> {
        super::ready(&self.transport, "the transport", "its init")
    }

    /// The connection of the transport `dep` names (`null`: the first one), for the `init` of
    /// a service that depends on it.
    pub fn discover(cx: &Context, dep: &Dependency) -> Result<Transport, BoxError> {
        cx.require::<Self>(dep)?.transport()
    }

    /// The settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }
}

impl ServiceClass for TransportService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let (settings, aliases) = settings::read(b)?;
        Transport::check(&settings).map_err(|e| match e {
            kaiju_transport::TransportError::Config(kaiju_core::ConfigError::Invalid {
                field,
                reason,
            }) => {
                let written = aliases
                    .iter()
                    .find(|(ours, _)| *ours == field)
                    .map_or(field, |(_, kaijus)| *kaijus);
                b.invalid(written, reason)
            }
            kaiju_transport::TransportError::Config(e) => b.config_error(e),
            other => b.invalid("", other.to_string()),
        })?;
        Ok(Self {
            settings,
            transport: OnceLock::new(),
        })
    }
}

impl Service for TransportService {
    async fn init(&self, _cx: &Context) -> Result<(), BoxError> {
        let transport = Transport::connect(&self.settings).await?;
        let _ = self.transport.set(transport);
        Ok(())
    }

    async fn close(&self, _deadline: Duration) -> Result<(), BoxError> {
        if let Some(t) = self.transport.get() {
            t.close().await?;
        }
        Ok(())
    }
}
