//! `RedisTransportService`'s settings: kaiju-rs's [`RedisSettings`] under their own names, plus
//! the names kaiju (coredis, Python's `ssl` module) gives some of them, read as typed values and
//! mapped onto [`RedisSettings`].

use std::path::PathBuf;

use kaiju_core::{RedisSettings, Secret};
use serde::{Deserialize, Deserializer};

use crate::error::AppError;
use crate::service::Build;

/// The keys of kaiju's transport settings that are not [`RedisSettings`] names. Every other key
/// is read as a [`RedisSettings`] field (an unknown one is an error naming it).
#[derive(Deserialize)]
struct KaijuNames {
    /// Read here, not in `rest`: YAML reads an unquoted `password: 12345` as a number, and
    /// coredis sent its text.
    #[serde(default)]
    password: Option<Text>,
    #[serde(default)]
    username: Option<Text>,
    /// Seconds (kaiju-rs: `connect_timeout_ms`).
    #[serde(default)]
    connect_timeout: Option<Seconds>,
    /// 2 or 3 (kaiju-rs: `resp3`).
    #[serde(default)]
    protocol_version: Option<Protocol>,
    /// coredis' cluster seed nodes (kaiju-rs: `nodes`).
    #[serde(default)]
    startup_nodes: Option<Vec<StartupNode>>,
    /// kaiju-rs: `tls`.
    #[serde(default)]
    ssl: Option<bool>,
    /// kaiju-rs: `tls_ca_file`.
    #[serde(default)]
    ssl_ca_certs: Option<PathBuf>,
    /// kaiju-rs: `tls_cert_file`.
    #[serde(default)]
    ssl_certfile: Option<PathBuf>,
    /// kaiju-rs: `tls_key_file`.
    #[serde(default)]
    ssl_keyfile: Option<PathBuf>,
    /// Only `required`: kaiju-rs always verifies the server's certificate.
    #[serde(default)]
    ssl_cert_reqs: Option<String>,
    /// Only `true`: kaiju-rs always checks the server's host name.
    #[serde(default)]
    ssl_check_hostname: Option<bool>,
    /// Only `false`: kaiju's values are bytes (msgpack).
    #[serde(default)]
    decode_responses: Option<bool>,
    /// Only `false`: client-side caching is kaiju-cache's near cache.
    #[serde(default)]
    tracking: Option<bool>,
    /// Only `null`: kaiju-rs connects over TCP.
    #[serde(default)]
    unix_socket_path: Option<String>,
    /// coredis tuning, accepted without effect (logged when set).
    #[serde(default)]
    max_idle_time: Option<serde_json::Value>,
    #[serde(default)]
    max_connections: Option<serde_json::Value>,
    #[serde(default)]
    client_name: Option<serde_json::Value>,
    #[serde(default)]
    stream_timeout: Option<serde_json::Value>,
    #[serde(default)]
    readonly: Option<serde_json::Value>,
    #[serde(default)]
    read_from_replicas: Option<serde_json::Value>,
    #[serde(default)]
    non_atomic_cross_slot: Option<serde_json::Value>,
    #[serde(default)]
    tracking_cache_settings: Option<serde_json::Value>,
    /// Everything else: [`RedisSettings`] fields, under kaiju-rs's names.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// A text setting YAML may have typed as a number or a boolean.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Self(s)),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                Ok(Self(v.to_string()))
            }
            _ => Err(serde::de::Error::custom("expected text")),
        }
    }
}

/// A time in seconds, as a whole or fractional number, up to a day.
struct Seconds(f64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match f64::deserialize(d) {
            Ok(s) if (0.0..=86_400.0).contains(&s) => Ok(Self(s)),
            _ => Err(serde::de::Error::custom(
                "expected seconds, a number from 0 to 86400 (a day)",
            )),
        }
    }
}

/// The RESP version: 2 or 3 (`3.0` too: Python compares it as a number). `true` for RESP3.
struct Protocol(bool);

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match f64::deserialize(d) {
            Ok(2.0) => Ok(Self(false)),
            Ok(3.0) => Ok(Self(true)),
            _ => Err(serde::de::Error::custom("expected 2 or 3")),
        }
    }
}

/// One of coredis' `startup_nodes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartupNode {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: Port,
}

/// A port number, 1-65535, also written as a string (`"7000"`), as Python's `int()` reads it.
struct Port(u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let port = match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            serde_json::Value::String(s) => s.trim().parse::<u16>().ok(),
            _ => None,
        };
        match port {
            Some(p) if p > 0 => Ok(Self(p)),
            _ => Err(serde::de::Error::custom(
                "expected a port number, 1 to 65535",
            )),
        }
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}

fn default_port() -> Port {
    Port(6379)
}

/// kaiju's names of kaiju-rs settings, `(kaiju-rs field, key as written)`, for errors about a
/// value written under kaiju's name.
pub(super) type Aliases = Vec<(&'static str, &'static str)>;

/// Reads the settings of `b` as kaiju writes them: kaiju-rs's names and kaiju's, each with its
/// type; a contradiction or a value kaiju-rs cannot honour is an error at the key as written.
/// Returns the settings and which kaiju-rs fields came from kaiju's names.
pub(super) fn read(b: &Build<'_>) -> Result<(RedisSettings, Aliases), AppError> {
    let k: KaijuNames = b.settings()?;
    if k.decode_responses == Some(true) {
        return Err(b.invalid(
            "decode_responses",
            "must be false: kaiju's values are bytes (msgpack)",
        ));
    }
    if k.tracking == Some(true) {
        return Err(b.invalid(
            "tracking",
            "is not supported; use kaiju-cache's near cache (NearCache) for client-side caching",
        ));
    }
    if k.unix_socket_path.is_some() {
        return Err(b.invalid(
            "unix_socket_path",
            "Unix sockets are not supported by kaiju-rs; connect over TCP",
        ));
    }
    if k.ssl_cert_reqs.as_deref().is_some_and(|v| v != "required") {
        return Err(b.invalid(
            "ssl_cert_reqs",
            "only \"required\": kaiju-rs always verifies the server's certificate",
        ));
    }
    if k.ssl_check_hostname == Some(false) {
        return Err(b.invalid(
            "ssl_check_hostname",
            "only true: kaiju-rs always checks the server's host name",
        ));
    }
    let mut rest = k.rest;
    // Python's other `ssl_*` options (ciphers, passwords of key files, ...) cannot be honoured.
    let ssl_other: Vec<String> = rest
        .keys()
        .filter(|key| key.starts_with("ssl_"))
        .cloned()
        .collect();
    for key in ssl_other {
        if rest.get(&key).is_some_and(|v| !v.is_null()) {
            return Err(b.invalid(
                &key,
                "is not supported; kaiju-rs takes ssl_ca_certs, ssl_certfile and ssl_keyfile \
                 (or tls_ca_file, tls_cert_file, tls_key_file)",
            ));
        }
        rest.remove(&key);
    }
    // Which kaiju-rs names were written, for contradictions with kaiju's names of them.
    let written = |key: &str| rest.get(key).is_some_and(|v| !v.is_null());
    let tls_written = written("tls");
    let files_written = [
        written("tls_ca_file"),
        written("tls_cert_file"),
        written("tls_key_file"),
    ];
    let mut settings: RedisSettings = b.parse(serde_json::Value::Object(rest))?;

    if let Some(Text(password)) = k.password {
        settings.password = Some(Secret::new(password));
    }
    if let Some(Text(username)) = k.username {
        settings.username = Some(username);
    }
    let mut aliases = Aliases::new();
    if let Some(Seconds(secs)) = k.connect_timeout {
        // At most a day in ms: far inside u64.
        settings.connect_timeout_ms = (secs * 1000.0).round() as u64;
        aliases.push(("connect_timeout_ms", "connect_timeout"));
    }
    if let Some(Protocol(resp3)) = k.protocol_version {
        settings.resp3 = resp3;
    }
    if let Some(nodes) = k.startup_nodes {
        settings.nodes = nodes
            .into_iter()
            .map(|n| format!("{}:{}", n.host, n.port.0))
            .collect();
    }
    // kaiju's name and kaiju-rs's for one setting: both given must agree, or TLS could be
    // switched off by the one read last.
    if let Some(on) = k.ssl {
        if tls_written && settings.tls != on {
            return Err(b.invalid("ssl", "contradicts `tls`; give one of them"));
        }
        settings.tls = on;
    }
    for (i, (ssl, tls, value, field)) in [
        (
            "ssl_ca_certs",
            "tls_ca_file",
            k.ssl_ca_certs,
            &mut settings.tls_ca_file,
        ),
        (
            "ssl_certfile",
            "tls_cert_file",
            k.ssl_certfile,
            &mut settings.tls_cert_file,
        ),
        (
            "ssl_keyfile",
            "tls_key_file",
            k.ssl_keyfile,
            &mut settings.tls_key_file,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(value) = value else { continue };
        if files_written[i] && field.as_ref() != Some(&value) {
            return Err(b.invalid(ssl, format!("contradicts `{tls}`; give one of them")));
        }
        *field = Some(value);
        aliases.push((tls, ssl));
    }
    let set = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .is_some_and(|v| !v.is_null() && *v != serde_json::Value::Bool(false))
    };
    crate::builtin::no_effect(
        b,
        &[
            ("max_idle_time", set(&k.max_idle_time)),
            ("max_connections", set(&k.max_connections)),
            ("client_name", set(&k.client_name)),
            ("stream_timeout", set(&k.stream_timeout)),
            ("readonly", set(&k.readonly)),
            ("read_from_replicas", set(&k.read_from_replicas)),
            ("non_atomic_cross_slot", set(&k.non_atomic_cross_slot)),
            ("tracking_cache_settings", set(&k.tracking_cache_settings)),
        ],
    );
    Ok((settings, aliases))
}
