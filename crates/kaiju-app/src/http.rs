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
//! ```

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
        let (Some(host), Some(port)) = (&run.host, run.port) else {
            return Ok(None);
        };
        let mut tokens = StaticTokens::new();
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
        }
        let settings = HttpSettings {
            host: host.clone(),
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
