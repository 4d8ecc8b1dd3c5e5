//! kaiju classes whose job something else does in a Rust app: accepted, and they do nothing.

use serde::Deserialize;

use crate::error::AppError;
use crate::service::{Build, Service, ServiceClass};

/// `Scheduler` (tokio schedules kaiju-rs's periodic work) and `LoggingService` (logging is
/// `tracing`, configured by the binary, e.g. `RUST_LOG`): accepted so that kaiju configs load
/// unchanged; their settings are ignored, with a log line.
#[derive(Debug)]
pub struct Accepted;

impl Service for Accepted {}

impl ServiceClass for Accepted {
    fn build(b: &Build<'_>) -> Result<Self, AppError> {
        // Their settings are still checked, so that a typo is not silently accepted.
        if b.cls() == "Scheduler" {
            let _: SchedulerSettings = b.settings()?;
        } else {
            let _: LoggingSettings = b.settings()?;
        }
        let what = match b.cls() {
            "Scheduler" => "tokio schedules kaiju-rs's periodic work",
            _ => {
                "kaiju-rs logs through `tracing`; set the level with RUST_LOG or `kaiju run --log`"
            }
        };
        tracing::info!(
            service = b.name(),
            cls = b.cls(),
            "accepted and inactive: {what}"
        );
        Ok(Self)
    }
}

/// kaiju's `Scheduler` settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SchedulerSettings {
    #[serde(default)]
    refresh_rate: Option<f64>,
}

/// kaiju's `LoggingService` settings (their shape is not checked further).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct LoggingSettings {
    #[serde(default)]
    loggers: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    handlers: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    loglevel: Option<String>,
}
