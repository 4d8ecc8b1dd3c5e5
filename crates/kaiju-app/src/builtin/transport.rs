//! `RedisTransportService`: the connection every other Redis service uses.

use std::sync::OnceLock;
use std::time::Duration;

use kaiju_core::RedisSettings;
use kaiju_transport::Transport;

use crate::error::AppError;
use crate::error::BoxError;
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
        cx.require::<Self>(dep)?
            .transport()
    }

    /// The settings.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }
}

impl ServiceClass for TransportService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let mut json = b.raw_settings().to_json();
        // Settings read under kaiju's names: an error names the key the user wrote.
        let mut aliases: Vec<(&'static str, &'static str)> = Vec::new();
        if let serde_json::Value::Object(m) = &mut json {
            // YAML reads an unquoted `password: 12345` as a number; coredis sent its text.
            for key in ["password", "username"] {
                if let Some(v) = m.get_mut(key).filter(|v| v.is_number() || v.is_boolean()) {
                    *v = serde_json::Value::String(v.to_string());
                }
            }
            if let Some(v) = m.remove("connect_timeout") {
                let secs = v
                    .as_f64()
                    .ok_or_else(|| b.invalid("connect_timeout", "expected seconds"))?;
                m.insert(
                    "connect_timeout_ms".into(),
                    serde_json::json!((secs * 1000.0) as u64),
                );
            }
            if let Some(v) = m.remove("protocol_version") {
                match v.as_i64() {
                    Some(2) => m.insert("resp3".into(), false.into()),
                    Some(3) | None => m.insert("resp3".into(), true.into()),
                    Some(_) => return Err(b.invalid("protocol_version", "expected 2 or 3")),
                };
            }
            if let Some(serde_json::Value::Array(nodes)) = m.remove("startup_nodes") {
                let mut list = Vec::new();
                for n in nodes {
                    let host = n
                        .get("host")
                        .and_then(|h| h.as_str())
                        .unwrap_or("127.0.0.1")
                        .to_owned();
                    let port = n
                        .get("port")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(6379);
                    list.push(serde_json::Value::String(format!("{host}:{port}")));
                }
                m.insert("nodes".into(), list.into());
            }
            if m.get("decode_responses")
                .and_then(serde_json::Value::as_bool)
                == Some(true)
            {
                return Err(b.invalid(
                    "decode_responses",
                    "must be false: kaiju's values are bytes (msgpack)",
                ));
            }
            if m.get("tracking").and_then(serde_json::Value::as_bool) == Some(true) {
                return Err(b.invalid("tracking", "is not supported; use kaiju-cache's near cache (NearCache) for client-side caching"));
            }
            if m.get("unix_socket_path").is_some_and(|v| !v.is_null()) {
                return Err(b.invalid(
                    "unix_socket_path",
                    "Unix sockets are not supported by kaiju-rs; connect over TCP",
                ));
            }
            m.remove("unix_socket_path");
            // kaiju's name and kaiju-rs's for one setting: both given must agree, or TLS
            // could be switched off by the one read last.
            if let Some(v) = m.remove("ssl") {
                let on = v
                    .as_bool()
                    .ok_or_else(|| b.invalid("ssl", "expected true or false"))?;
                if m.get("tls").is_some_and(|tls| tls.as_bool() != Some(on)) {
                    return Err(b.invalid("ssl", "contradicts `tls`; give one of them"));
                }
                m.insert("tls".into(), on.into());
            }
            // coredis' (Python ssl module's) names for the same files.
            for (ssl, tls) in [
                ("ssl_ca_certs", "tls_ca_file"),
                ("ssl_certfile", "tls_cert_file"),
                ("ssl_keyfile", "tls_key_file"),
            ] {
                if let Some(v) = m.remove(ssl).filter(|v| !v.is_null()) {
                    if m.get(tls)
                        .is_some_and(|given| !given.is_null() && *given != v)
                    {
                        return Err(
                            b.invalid(ssl, format!("contradicts `{tls}`; give one of them"))
                        );
                    }
                    m.insert(tls.into(), v);
                    aliases.push((tls, ssl));
                }
            }
            // Verification is always on in kaiju-rs; settings that ask for it are accepted.
            if let Some(v) = m.remove("ssl_cert_reqs").filter(|v| !v.is_null())
                && v.as_str() != Some("required")
            {
                return Err(b.invalid(
                    "ssl_cert_reqs",
                    "only \"required\": kaiju-rs always verifies the server's certificate",
                ));
            }
            if let Some(v) = m.remove("ssl_check_hostname").filter(|v| !v.is_null())
                && v.as_bool() != Some(true)
            {
                return Err(b.invalid(
                    "ssl_check_hostname",
                    "only true: kaiju-rs always checks the server's host name",
                ));
            }
            let ssl_other: Vec<String> = m
                .keys()
                .filter(|k| k.starts_with("ssl_"))
                .cloned()
                .collect();
            for key in ssl_other {
                if m.get(&key).is_some_and(|v| !v.is_null()) {
                    return Err(b.invalid(
                        &key,
                        "is not supported; kaiju-rs takes ssl_ca_certs, ssl_certfile and \
                         ssl_keyfile (or tls_ca_file, tls_cert_file, tls_key_file)",
                    ));
                }
                m.remove(&key);
            }
        }
        super::drop_unused(
            &mut json,
            b.name(),
            &[
                "max_idle_time",
                "max_connections",
                "client_name",
                "stream_timeout",
                "readonly",
                "read_from_replicas",
                "non_atomic_cross_slot",
                "decode_responses",
                "tracking",
                "tracking_cache_settings",
            ],
        );
        let settings: RedisSettings = b.parse(json)?;
        Transport::check(&settings).map_err(|e| match e {
            kaiju_transport::TransportError::Config(kaiju_core::ConfigError::Invalid {
                field,
                reason,
            }) => {
                let written = aliases
                    .iter()
                    .find(|(tls, _)| *tls == field)
                    .map_or(field, |(_, ssl)| *ssl);
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
