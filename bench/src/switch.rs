//! Metrics on and off in one run: a global recorder that hands out Prometheus handles while
//! on and no-op handles (as with no recorder at all) while off. kaiju registers its handles
//! when a server, listener, lock set or cache is built, or at its first request, so each run
//! is measured with what was switched on when it began.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

struct Switch {
    on: AtomicBool,
    prometheus: PrometheusRecorder,
}

static SWITCH: OnceLock<&'static Switch> = OnceLock::new();

impl Recorder for &'static Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.on.load(Ordering::Relaxed) {
            self.prometheus.register_counter(key, metadata)
        } else {
            Counter::noop()
        }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.on.load(Ordering::Relaxed) {
            self.prometheus.register_gauge(key, metadata)
        } else {
            Gauge::noop()
        }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.on.load(Ordering::Relaxed) {
            self.prometheus.register_histogram(key, metadata)
        } else {
            Histogram::noop()
        }
    }
}

/// Installs the switch (off) as the global recorder, and renders the Prometheus text every
/// second as a scrape would (which also drains the histograms' samples).
pub(crate) fn install() -> Result<(), crate::BoxError> {
    let prometheus = PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])?
        .build_recorder();
    let handle: PrometheusHandle = prometheus.handle();
    let switch: &'static Switch = Box::leak(Box::new(Switch {
        on: AtomicBool::new(false),
        prometheus,
    }));
    metrics::set_global_recorder(switch).map_err(|_| "a recorder is installed already")?;
    let _ = SWITCH.set(switch);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            std::hint::black_box(handle.render());
        }
    });
    Ok(())
}

/// Metrics on (Prometheus handles) or off (no-op handles) for what is built from now on.
pub(crate) fn set(on: bool) {
    if let Some(switch) = SWITCH.get() {
        switch.on.store(on, Ordering::Relaxed);
    }
}
