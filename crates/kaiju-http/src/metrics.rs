//! The Prometheus exporter: [`install_metrics`], and the front's own counters.

use std::sync::Mutex;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets of every `*_seconds` metric: 0.5 ms to 30 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Histogram buckets of every `*_batch_size` metric (requests in a batch, entries in a read).
pub const BATCH_SIZE_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process-wide Prometheus recorder of the `metrics` facade, once, and returns
/// its handle (what [`HttpFront::metrics`](crate::HttpFront::metrics) serves on `/metrics`).
/// A second call returns the same handle. Histograms: [`SECONDS_BUCKETS`] for every
/// `*_seconds` metric, [`BATCH_SIZE_BUCKETS`] for every `*_batch_size` one. A thread runs the
/// recorder's upkeep every 5 s (bounded memory without a scrape).
///
/// # Errors
/// Another crate installed a different global recorder first.
///
/// ```
/// let a = kaiju_http::install_metrics()?;
/// let b = kaiju_http::install_metrics()?;
/// metrics::counter!("demo_total").increment(1);
/// assert!(b.render().contains("demo_total 1"));
/// # drop(a);
/// # Ok::<(), metrics_exporter_prometheus::BuildError>(())
/// ```
pub fn install_metrics() -> Result<PrometheusHandle, BuildError> {
    let mut slot = HANDLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_SIZE_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    // Failing to start the thread only means histograms are drained at each scrape.
    let _ = std::thread::Builder::new()
        .name("kaiju-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        });
    *slot = Some(handle.clone());
    Ok(handle)
}

/// The routes `kaiju_http_requests_total` labels (anything else is `other`).
pub(crate) fn route_label(path: &str) -> &'static str {
    match path {
        "/public/rpc" => "/public/rpc",
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Counts one answered request.
pub(crate) fn count(route: &'static str, status: u16) {
    metrics::counter!("kaiju_http_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
}

/// Counts one shed request.
pub(crate) fn shed() {
    metrics::counter!("kaiju_http_shed_total").increment(1);
}
