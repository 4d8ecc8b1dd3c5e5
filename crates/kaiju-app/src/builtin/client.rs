//! `RedisStreamRPCClient` and `RedisPublisher`.

use std::sync::OnceLock;

use kaiju_core::AppSettings;
use kaiju_rpc::RpcClient;
use serde::Deserialize;

use super::TransportService;
use crate::error::AppError;
use crate::error::BoxError;
use crate::service::{Build, Context, Dependency, Service, ServiceClass};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    transport: Dependency,
    /// The app called by default (default: this app).
    #[serde(default)]
    app_name: Option<String>,
    #[serde(default = "rpc")]
    topic: String,
    // kaiju's, without effect here:
    #[serde(default)]
    request_logs: bool,
    #[serde(default)]
    response_logs: bool,
    #[serde(default)]
    scheduler: Dependency,
    #[serde(default)]
    auth_str: Option<String>,
    #[serde(default = "disabled")]
    token_client: Dependency,
}

fn rpc() -> String {
    "rpc".into()
}

fn disabled() -> Dependency {
    Dependency::Disabled
}

/// kaiju's `RedisStreamRPCClient` (and `RedisPublisher`, the same client used with
/// [`RpcClient::publish`]): an [`RpcClient`] whose default target is `app_name` (default: this
/// app) and `topic` (default `rpc`).
#[derive(Debug)]
pub struct ClientService {
    transport: Dependency,
    target: Option<String>,
    topic: String,
    client: OnceLock<RpcClient>,
}

impl ClientService {
    /// The client (after `init`).
    pub fn client(&self) -> Result<RpcClient, BoxError> {
        super::ready(&self.client, "the RPC client", "its init")
    }
}

impl ServiceClass for ClientService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let s: Settings = b.settings()?;
        if s.token_client != Dependency::Disabled {
            return Err(b.invalid(
                "token_client",
                "token authentication is not part of kaiju-rs yet; use false",
            ));
        }
        if s.auth_str.is_some() {
            return Err(b.invalid(
                "auth_str",
                "the Authorization header is not part of kaiju-rs yet",
            ));
        }
        super::no_effect(
            b,
            &[
                ("request_logs", s.request_logs),
                ("response_logs", s.response_logs),
                ("scheduler", s.scheduler != Dependency::Any),
            ],
        );
        Ok(Self {
            transport: s.transport,
            target: s.app_name,
            topic: s.topic,
            client: OnceLock::new(),
        })
    }
}

impl Service for ClientService {
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        cx.require::<TransportService>(&self.transport)?;
        Ok(())
    }

    async fn init(&self, cx: &Context) -> Result<(), BoxError> {
        let transport = TransportService::discover(cx, &self.transport)?;
        let app = AppSettings {
            name: self.target.clone().unwrap_or_else(|| cx.app().name.clone()),
            ..cx.app().clone()
        };
        let _ = self
            .client
            .set(RpcClient::new(transport, &app).with_topic(self.topic.clone()));
        Ok(())
    }
}
