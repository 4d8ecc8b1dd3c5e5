#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
mod error;
mod front;
mod metrics;
mod ready;
mod routes;
mod rpc;
mod settings;
mod state;

pub use auth::{AuthFuture, Authenticate, Caller, GuestOnly, RequestView, StaticTokens};
pub use error::HttpError;
pub use front::{HttpFront, Running};
pub use metrics::{BATCH_SIZE_BUCKETS, SECONDS_BUCKETS, install_metrics};
pub use metrics_exporter_prometheus::PrometheusHandle;
#[cfg(feature = "transport")]
pub use ready::TransportPing;
pub use ready::{Flag, Readiness, ReadyFuture};
pub use settings::{DEFAULT_MAX_BODY_BYTES, HttpSettings};
