//! The server's metrics (docs/metrics.md): requests by method, outcome and transport, their
//! duration, requests in flight, and waits for a slot.
//!
//! Handles are registered on first use and kept, so that a request costs a few atomic adds
//! and no registry lookup. The method label is a registered method name, or `unknown`: a
//! caller cannot grow the label set. A recorder installed after the server was built is not
//! seen by it (install it first, as an app does at start).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};

use crate::request::{Outcome, Response, Via};

/// Requests by method, outcome and transport.
pub(crate) const REQUESTS: &str = "kaiju_rpc_requests_total";
/// Duration of a request, from its lookup to its response, by method and transport.
pub(crate) const DURATION: &str = "kaiju_rpc_request_duration_seconds";
/// Bodies (a request or a batch) holding a `max_parallel_tasks` slot, by transport.
pub(crate) const IN_FLIGHT: &str = "kaiju_rpc_in_flight_requests";
/// Bodies that had to wait for a `max_parallel_tasks` slot, by transport.
pub(crate) const QUEUE_FULL: &str = "kaiju_rpc_queue_full_total";

/// The label of unregistered (and unparsable) method names.
const UNKNOWN: &str = "unknown";

const VIAS: [Via; 4] = [Via::Stream, Via::PubSub, Via::Http, Via::Local];
const OUTCOMES: [Outcome; 8] = [
    Outcome::Ok,
    Outcome::ClientError,
    Outcome::Rejected,
    Outcome::Expired,
    Outcome::TimedOut,
    Outcome::Failed,
    Outcome::Aborted,
    Outcome::Unavailable,
];

/// An outcome's label value.
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::ClientError => "client_error",
        Outcome::Rejected => "rejected",
        Outcome::Expired => "expired",
        Outcome::TimedOut => "timed_out",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
        Outcome::Unavailable => "unavailable",
    }
}

fn via_index(via: Via) -> usize {
    VIAS.iter().position(|v| *v == via).unwrap_or(0)
}

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0)
}

/// The handles of one method label.
struct Method {
    name: String,
    requests: [[OnceLock<Counter>; OUTCOMES.len()]; VIAS.len()],
    duration: [OnceLock<Histogram>; VIAS.len()],
}

impl Method {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            requests: Default::default(),
            duration: Default::default(),
        }
    }

    fn count(&self, via: Via, outcome: Outcome) {
        self.requests[via_index(via)][outcome_index(outcome)]
            .get_or_init(|| {
                metrics::counter!(REQUESTS, "method" => self.name.clone(), "outcome" => outcome_label(outcome), "transport" => via.as_str())
            })
            .increment(1);
    }

    fn observe(&self, via: Via, seconds: f64) {
        self.duration[via_index(via)]
            .get_or_init(|| {
                metrics::histogram!(DURATION, "method" => self.name.clone(), "transport" => via.as_str())
            })
            .record(seconds);
    }
}

/// A server's metric handles.
pub(crate) struct Metrics {
    methods: BTreeMap<String, Method>,
    unknown: Method,
    in_flight: [OnceLock<Gauge>; VIAS.len()],
    queue_full: [OnceLock<Counter>; VIAS.len()],
}

impl Metrics {
    /// Handles for the registered `methods`.
    pub(crate) fn new<'a>(methods: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            methods: methods
                .into_iter()
                .map(|name| (name.to_owned(), Method::new(name)))
                .collect(),
            unknown: Method::new(UNKNOWN),
            in_flight: Default::default(),
            queue_full: Default::default(),
        }
    }

    fn method(&self, name: Option<&str>) -> &Method {
        name.and_then(|n| self.methods.get(n))
            .unwrap_or(&self.unknown)
    }

    /// A request to `method` starts running (`None`: its method name could not be read).
    pub(crate) fn start(&self, method: Option<&str>, via: Via) -> Timer<'_> {
        Timer {
            method: self.method(method),
            via,
            started: Instant::now(),
        }
    }

    /// A request that was answered without running (an aborted batch item).
    pub(crate) fn skipped(&self, method: Option<&str>, via: Via, outcome: Outcome) {
        self.method(method).count(via, outcome);
    }

    /// A body waited for a slot.
    pub(crate) fn queue_full(&self, via: Via) {
        self.queue_full[via_index(via)]
            .get_or_init(|| metrics::counter!(QUEUE_FULL, "transport" => via.as_str()))
            .increment(1);
    }

    /// A body holds a slot until the returned guard is dropped.
    pub(crate) fn in_flight(&self, via: Via) -> InFlight<'_> {
        let gauge = self.in_flight[via_index(via)]
            .get_or_init(|| metrics::gauge!(IN_FLIGHT, "transport" => via.as_str()));
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

/// A request being timed.
pub(crate) struct Timer<'a> {
    method: &'a Method,
    via: Via,
    started: Instant,
}

impl Timer<'_> {
    /// The request was answered: counts it by outcome and records its duration, which it
    /// returns (the access line logs the same duration, read off the clock once).
    pub(crate) fn finish(self, response: &Response) -> Duration {
        let took = self.started.elapsed();
        self.method.count(self.via, response.outcome);
        self.method.observe(self.via, took.as_secs_f64());
        took
    }
}

/// A body in flight; decrements the gauge when dropped.
pub(crate) struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_and_transport_has_its_own_slot() {
        for (i, o) in OUTCOMES.iter().enumerate() {
            assert_eq!(outcome_index(*o), i);
        }
        for (i, v) in VIAS.iter().enumerate() {
            assert_eq!(via_index(*v), i);
        }
    }

    #[test]
    fn unregistered_names_share_the_unknown_label() {
        let m = Metrics::new(["svc.a"]);
        assert_eq!(m.method(Some("svc.a")).name, "svc.a");
        assert_eq!(m.method(Some("svc.nope")).name, UNKNOWN);
        assert_eq!(m.method(None).name, UNKNOWN);
    }
}
