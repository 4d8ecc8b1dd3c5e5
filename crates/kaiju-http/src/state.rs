//! `Shared`: what every handler of a front shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kaiju_rpc::Server;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;

use crate::auth::Authenticate;
use crate::ready::Readiness;
use crate::settings::HttpSettings;

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) settings: HttpSettings,
    pub(crate) server: Server,
    pub(crate) auth: Arc<dyn Authenticate>,
    pub(crate) checks: Vec<Arc<dyn Readiness>>,
    pub(crate) metrics: Option<PrometheusHandle>,
    /// `max_concurrent_requests` permits: a `/public/rpc` request holds one from before its
    /// body is read until its answer is built.
    pub(crate) permits: Arc<Semaphore>,
    /// Set by `shutdown`: new requests get 503.
    pub(crate) closing: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
