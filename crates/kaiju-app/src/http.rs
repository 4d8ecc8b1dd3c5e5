//! The app's HTTP front (feature `http`): kaiju's `run: {host, port, path}` served with
//! kaiju-http, started after every service and stopped before any.
//!
//! Bearer tokens come from `etc.http.tokens` (kaiju's `run` section allows no other keys, and
//! `etc` is the app's free-form section):
//!
//! ```yaml
//! etc:
//!   http:
//!     tokens:
//!       - {token: "[OPS_TOKEN]", user: ops, scope: SYSTEM}
//!     max_concurrent_requests: 1024   # above it: 503 at once (load shedding)
//!     body_read_timeout: 10           # seconds; a slower sender gets 408
//!     request_timeout: 300            # seconds; the whole exchange
//! ```
//!
//! `run.port` without `run.host` binds every interface (`0.0.0.0`), as kaiju's aiohttp
//! `run_app` does.

use std::time::Duration;

use kaiju_http::{Flag, HttpFront, HttpSettings, Running, StaticTokens};
use kaiju_rpc::Scope;
use serde::Deserialize;

use crate::builtin::{RpcServerService, TransportService};
use crate::config::{Config, ConfigError};
use crate::error::BoxError;
use crate::service::Context;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcHttp {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    /// `HttpSettings::max_concurrent_requests`.
    #[serde(default)]
    max_concurrent_requests: Option<usize>,
    /// `HttpSettings::body_read_timeout`, seconds.
    #[serde(default)]
    body_read_timeout: Option<f64>,
    /// `HttpSettings::request_timeout`, seconds.
    #[serde(default)]
    request_timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    #[serde(default)]
    user: Option<String>,
    scope: Scope,
}

/// The configured front, before and while it runs.
pub(crate) struct Front {
    settings: HttpSettings,
    tokens: StaticTokens,
    started: Flag,
    metrics: Option<kaiju_http::PrometheusHandle>,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("settings", &self.settings)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl Front {
    /// The front `config` asks for: `None` without both `run.host` and `run.port`.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Self>, ConfigError> {
        let run = &config.project.run;
        let Some(port) = run.port else {
            if run.host.is_some() {
                tracing::warn!("run.host is set without run.port: the HTTP front is not served");
            }
            return Ok(None);
        };
        // kaiju's aiohttp `run_app` binds every interface when no host is given.
        let host = run.host.clone().unwrap_or_else(|| "0.0.0.0".to_owned());
        let mut tokens = StaticTokens::new();
        let mut bounds = None;
        if let Some(node) = config.project.etc.get("http") {
            let etc: EtcHttp = serde_path_to_error::deserialize(node.to_json()).map_err(|e| {
                ConfigError::new(
                    node.place.clone(),
                    format!("etc.http.{}: {}", e.path(), e.inner()),
                )
            })?;
            for t in etc.tokens {
                tokens = tokens.token(t.token, t.user.as_deref(), t.scope);
            }
            let seconds = |v: Option<f64>, what: &str| -> Result<Option<Duration>, ConfigError> {
                v.map(|s| {
                    Duration::try_from_secs_f64(s)
                        .ok()
                        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(86_400))
                        .ok_or_else(|| {
                            ConfigError::new(
                                node.place.clone(),
                                format!("etc.http.{what}: expected seconds, more than 0 and at most 86400"),
                            )
                        })
                })
                .transpose()
            };
            bounds = Some((
                etc.max_concurrent_requests,
                seconds(etc.body_read_timeout, "body_read_timeout")?,
                seconds(etc.request_timeout, "request_timeout")?,
            ));
        }
        let defaults = HttpSettings::default();
        let (max_concurrent_requests, body_read_timeout, request_timeout) =
            bounds.unwrap_or((None, None, None));
        let settings = HttpSettings {
            max_concurrent_requests: max_concurrent_requests
                .unwrap_or(defaults.max_concurrent_requests)
                .clamp(1, 1 << 20),
            body_read_timeout: body_read_timeout.unwrap_or(defaults.body_read_timeout),
            request_timeout: request_timeout.unwrap_or(defaults.request_timeout),
            host,
            port,
            path: run.path.as_ref().map(Into::into),
            max_body_bytes: usize::try_from(config.project.app.client_max_size)
                .unwrap_or(usize::MAX),
            keepalive_timeout: Duration::from_secs(run.keepalive_timeout),
            shutdown_grace: Duration::from_secs(run.shutdown_timeout),
            ..HttpSettings::default()
        };
        // Installed now, before the app builds its services: a component registers its
        // metric handles when it is built, with the recorder installed then.
        let metrics = match kaiju_http::install_metrics() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "no Prometheus recorder: /metrics answers 404");
                None
            }
        };
        Ok(Some(Self {
            settings,
            tokens,
            started: Flag::new("services"),
            metrics,
            running: tokio::sync::Mutex::new(None),
        }))
    }

    /// Serves the app's RPC server; `/ready` is every service started and every Redis
    /// transport answering PING.
    pub(crate) async fn start(&self, cx: &Context) -> Result<(), BoxError> {
        let server = cx
            .first::<RpcServerService>()
            .ok_or("run.host and run.port serve JSON-RPC over HTTP, which needs a JSONRPCServer service")?
            .server()?;
        let mut front = HttpFront::new(self.settings.clone(), server)
            .auth(self.tokens.clone())
            .readiness(self.started.clone());
        for (name, transport) in cx.all::<TransportService>() {
            front = front.readiness(kaiju_http::TransportPing::new(name, transport.transport()?));
        }
        if let Some(handle) = &self.metrics {
            front = front.metrics(handle.clone());
        }
        let running = front.serve().await?;
        self.started.set(true);
        *self.running.lock().await = Some(running);
        Ok(())
    }

    /// Stops serving (gracefully, within `within`), if it serves.
    pub(crate) async fn stop(&self, within: Duration) {
        self.started.set(false);
        if let Some(running) = self.running.lock().await.take()
            && !running.shutdown(within).await
        {
            tracing::warn!("the HTTP front did not finish its requests in time");
        }
    }
}
