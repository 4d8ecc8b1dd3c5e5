//! `RedisLocksService`.

use std::sync::OnceLock;
use std::time::Duration;

use kaiju_locks::Locks;
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
    /// kaiju's renewal period; kaiju-rs renews each lock on its own timer.
    #[serde(default)]
    refresh_interval: Option<f64>,
    /// kaiju's Scheduler dependency; not needed.
    #[serde(default)]
    scheduler: Dependency,
}

/// kaiju's `RedisLocksService`: [`Locks`] owned by the app's id, on the transport named by
/// `transport`.
#[derive(Debug)]
pub struct LocksService {
    transport: Dependency,
    locks: OnceLock<Locks>,
}

impl LocksService {
    /// The locks (after `init`).
    pub fn locks(&self) -> Result<Locks, BoxError> {
        super::ready(&self.locks, "the locks", "their init")
    }
}

impl ServiceClass for LocksService {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        let s: Settings = b.settings()?;
        super::no_effect(
            b,
            &[
                ("refresh_interval", s.refresh_interval.is_some()),
                ("scheduler", s.scheduler != Dependency::Any),
            ],
        );
        Ok(Self {
            transport: s.transport,
            locks: OnceLock::new(),
        })
    }
}

impl Service for LocksService {
    fn check(&self, cx: &Context) -> Result<(), BoxError> {
        cx.require::<TransportService>(&self.transport)?;
        Ok(())
    }

    async fn init(&self, cx: &Context) -> Result<(), BoxError> {
        let transport = TransportService::discover(cx, &self.transport)?;
        let locks = Locks::new(transport, cx.app().id.to_string()).await?;
        let _ = self.locks.set(locks);
        Ok(())
    }

    async fn close(&self, _deadline: Duration) -> Result<(), BoxError> {
        if let Some(l) = self.locks.get() {
            l.close().await;
        }
        Ok(())
    }
}
